//! Run-time choice of instruction set: detected once and cached, forced by
//! `CONVNET_SIMD=portable|avx2|avx512` or [`force`].

use crate::{Error, Result};
use std::sync::atomic::{AtomicU8, Ordering};

/// The instruction-set paths the kernels have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SimdLevel {
    /// `wide`-based code that compiles everywhere.
    Portable,
    /// AVX2 + FMA (x86-64).
    Avx2,
    /// AVX-512F (x86-64).
    Avx512,
}

impl SimdLevel {
    /// `portable`, `avx2` or `avx512`.
    pub fn name(self) -> &'static str {
        match self {
            SimdLevel::Portable => "portable",
            SimdLevel::Avx2 => "avx2",
            SimdLevel::Avx512 => "avx512",
        }
    }

    /// Whether this CPU can run the level (the same detection that makes the
    /// kernels' instruction-set tokens).
    pub fn is_available(self) -> bool {
        crate::arch::Token::new(self).is_ok()
    }

    /// Every level this CPU can run, best last.
    pub fn available() -> Vec<SimdLevel> {
        [SimdLevel::Portable, SimdLevel::Avx2, SimdLevel::Avx512].into_iter().filter(|l| l.is_available()).collect()
    }

    /// The best level this CPU can run.
    pub fn detect() -> SimdLevel {
        *Self::available().last().unwrap_or(&SimdLevel::Portable)
    }

    fn from_u8(v: u8) -> Option<SimdLevel> {
        match v {
            1 => Some(SimdLevel::Portable),
            2 => Some(SimdLevel::Avx2),
            3 => Some(SimdLevel::Avx512),
            _ => None,
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            SimdLevel::Portable => 1,
            SimdLevel::Avx2 => 2,
            SimdLevel::Avx512 => 3,
        }
    }
}

impl std::str::FromStr for SimdLevel {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "portable" => Ok(SimdLevel::Portable),
            "avx2" => Ok(SimdLevel::Avx2),
            "avx512" => Ok(SimdLevel::Avx512),
            other => Err(Error::Simd(format!("unknown level {other:?} (CONVNET_SIMD takes portable, avx2 or avx512)"))),
        }
    }
}

/// 0 = not chosen yet.
static LEVEL: AtomicU8 = AtomicU8::new(0);

/// The level named by `CONVNET_SIMD`, if set: an unknown or unavailable level is an error.
pub fn from_env() -> Result<Option<SimdLevel>> {
    match std::env::var("CONVNET_SIMD") {
        Ok(v) if !v.trim().is_empty() => {
            let level: SimdLevel = v.parse()?;
            if !level.is_available() {
                return Err(Error::Simd(format!("CONVNET_SIMD={v}: this CPU cannot run {}", level.name())));
            }
            Ok(Some(level))
        }
        _ => Ok(None),
    }
}

/// Chooses the level once: `CONVNET_SIMD` if set (an error if this CPU lacks
/// it), else the best detected. Later calls return the cached choice.
pub fn try_level() -> Result<SimdLevel> {
    if let Some(l) = SimdLevel::from_u8(LEVEL.load(Ordering::Relaxed)) {
        return Ok(l);
    }
    let level = from_env()?.unwrap_or_else(SimdLevel::detect);
    LEVEL.store(level.to_u8(), Ordering::Relaxed);
    Ok(level)
}

/// Forces a level for the whole process, as `CONVNET_SIMD` does, for a
/// program that chooses at run time; an unavailable level is an error.
///
/// Every kernel call after it, on every thread, uses the new level, so a
/// test must not call this (tests run in parallel): call the kernels'
/// explicit-level `*_at(level, ..)` entry points instead.
pub fn force(level: SimdLevel) -> Result<()> {
    if !level.is_available() {
        return Err(Error::Simd(format!("this CPU cannot run {}", level.name())));
    }
    LEVEL.store(level.to_u8(), Ordering::Relaxed);
    Ok(())
}
