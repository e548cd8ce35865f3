//! From a [`SimdLevel`] to a proven instruction set, and the
//! [`multiversion!`] macro that instantiates a kernel body per level.
//!
//! Every public entry point turns its level (the cached
//! [`crate::simd::try_level`], or the explicit level of a `*_at` entry point)
//! into a [`Token`] once, with [`Token::new`]: a level this CPU cannot run is
//! an [`Error::Simd`], the one policy for every kernel. Below that point no
//! kernel checks availability again; it matches on the token and hands the
//! proof to the `#[target_feature]` wrapper of that instruction set.

use super::vector::Portable;
#[cfg(target_arch = "x86_64")]
use super::vector::{Avx2, Avx512};
use crate::simd::SimdLevel;
use crate::{Error, Result};

/// A SIMD level together with the proof that this CPU runs it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Token {
    /// AVX-512F + AVX2 + FMA.
    #[cfg(target_arch = "x86_64")]
    Avx512(Avx512),
    /// AVX2 + FMA.
    #[cfg(target_arch = "x86_64")]
    Avx2(Avx2),
    /// The `wide` baseline.
    Portable(Portable),
}

impl Token {
    /// The token for `level`: an [`Error::Simd`] if this CPU cannot run it.
    pub(crate) fn new(level: SimdLevel) -> Result<Token> {
        let missing = || Error::Simd(format!("this CPU cannot run {}", level.name()));
        match level {
            SimdLevel::Portable => Ok(Token::Portable(Portable)),
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx512 => Avx512::detect().map(Token::Avx512).ok_or_else(missing),
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx2 => Avx2::detect().map(Token::Avx2).ok_or_else(missing),
            #[cfg(not(target_arch = "x86_64"))]
            _ => Err(missing()),
        }
    }

    /// The token of the process-wide level ([`crate::simd::try_level`]).
    pub(crate) fn current() -> Result<Token> {
        Token::new(crate::simd::try_level()?)
    }

    /// A token for every level this CPU runs, best last (tests loop over these).
    #[cfg(test)]
    pub(crate) fn every() -> Vec<Token> {
        SimdLevel::available().into_iter().filter_map(|l| Token::new(l).ok()).collect()
    }

    /// The level this token proves.
    pub(crate) fn level(self) -> SimdLevel {
        match self {
            #[cfg(target_arch = "x86_64")]
            Token::Avx512(_) => SimdLevel::Avx512,
            #[cfg(target_arch = "x86_64")]
            Token::Avx2(_) => SimdLevel::Avx2,
            Token::Portable(_) => SimdLevel::Portable,
        }
    }
}

/// Instantiates an `#[inline(always)]` body once per instruction set and
/// adds a dispatcher that takes the [`Token`] as its first argument:
/// `multiversion!(fn name(a: A, b: B) -> R => body)` defines
/// `fn name(token: Token, a: A, b: B) -> R` running `body(a, b)` compiled
/// for AVX-512, AVX2+FMA or the baseline. For element-wise loops that LLVM
/// vectorises by itself; kernels with explicit vectors take an
/// [`Isa`](super::vector::Isa) token instead.
macro_rules! multiversion {
    ($vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $body:path) => {
        #[allow(clippy::too_many_arguments)]
        $vis fn $name(token: $crate::arch::Token, $($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                fn avx2(_proof: $crate::arch::Avx2, $($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx512f,avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                fn avx512(_proof: $crate::arch::Avx512, $($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                match token {
                    // SAFETY: the token proves this CPU has AVX-512F, AVX2 and FMA.
                    $crate::arch::Token::Avx512(isa) => return unsafe { avx512(isa, $($arg),*) },
                    // SAFETY: the token proves this CPU has AVX2 and FMA.
                    $crate::arch::Token::Avx2(isa) => return unsafe { avx2(isa, $($arg),*) },
                    $crate::arch::Token::Portable(_) => {}
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            let _ = token;
            $body($($arg),*)
        }
    };
}
pub(crate) use multiversion;
