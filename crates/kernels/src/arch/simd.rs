//! The vector type the micro-kernels are generic over.
//!
//! A micro-kernel is written once as an `#[inline(always)]` function generic
//! over [`Vf32`] and instantiated three times: with [`Avx512`] inside a
//! `#[target_feature(enable = "avx512f,avx2,fma")]` function, with [`Avx2`]
//! inside `#[target_feature(enable = "avx2,fma")]`, and with [`Portable`]
//! (`wide::f32x8`, whose width and instructions are fixed at compile time for
//! the baseline target) in a plain function. Because every method here is
//! `#[inline(always)]`, the intrinsics end up inlined into the
//! target-feature function and compile to single instructions there; the
//! callers pick the instantiation with [`crate::simd::level`] at each call.

#[cfg(target_arch = "x86_64")]
use core::arch::x86_64::*;

/// A vector of `LANES` f32.
///
/// # Safety
///
/// The `unsafe` methods take raw pointers that must be valid for `LANES`
/// reads (or writes), unaligned; implementations for an instruction set may
/// only be called from code compiled with (and running on a CPU that has)
/// that instruction set.
pub(crate) trait Vf32: Copy {
    /// Number of f32 lanes.
    const LANES: usize;
    /// All lanes zero.
    fn zero() -> Self;
    /// All lanes `x`.
    fn splat(x: f32) -> Self;
    /// Unaligned load of `LANES` values.
    ///
    /// # Safety
    /// `p` valid for `LANES` reads.
    unsafe fn load(p: *const f32) -> Self;
    /// Unaligned store of `LANES` values.
    ///
    /// # Safety
    /// `p` valid for `LANES` writes.
    unsafe fn store(self, p: *mut f32);
    /// `a * b + c` (fused where the instruction set has FMA).
    fn mul_add(a: Self, b: Self, c: Self) -> Self;
    /// Lane-wise sum.
    fn add(a: Self, b: Self) -> Self;
    /// Lane-wise maximum.
    fn max(a: Self, b: Self) -> Self;
}

/// 16 lanes in a zmm register. Only constructed inside AVX-512 code.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub(crate) struct Avx512(__m512);

#[cfg(target_arch = "x86_64")]
impl Vf32 for Avx512 {
    const LANES: usize = 16;
    #[inline(always)]
    fn zero() -> Self {
        // SAFETY: only instantiated in avx512f target-feature functions.
        Avx512(unsafe { _mm512_setzero_ps() })
    }
    #[inline(always)]
    fn splat(x: f32) -> Self {
        // SAFETY: as above.
        Avx512(unsafe { _mm512_set1_ps(x) })
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: caller guarantees 16 readable floats and AVX-512.
        Avx512(unsafe { _mm512_loadu_ps(p) })
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: caller guarantees 16 writable floats and AVX-512.
        unsafe { _mm512_storeu_ps(p, self.0) }
    }
    #[inline(always)]
    fn mul_add(a: Self, b: Self, c: Self) -> Self {
        // SAFETY: only instantiated in avx512f target-feature functions.
        Avx512(unsafe { _mm512_fmadd_ps(a.0, b.0, c.0) })
    }
    #[inline(always)]
    fn add(a: Self, b: Self) -> Self {
        // SAFETY: as above.
        Avx512(unsafe { _mm512_add_ps(a.0, b.0) })
    }
    #[inline(always)]
    fn max(a: Self, b: Self) -> Self {
        // SAFETY: as above.
        Avx512(unsafe { _mm512_max_ps(a.0, b.0) })
    }
}

/// 8 lanes in a ymm register, with FMA. Only constructed inside AVX2+FMA code.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub(crate) struct Avx2(__m256);

#[cfg(target_arch = "x86_64")]
impl Vf32 for Avx2 {
    const LANES: usize = 8;
    #[inline(always)]
    fn zero() -> Self {
        // SAFETY: only instantiated in avx2,fma target-feature functions.
        Avx2(unsafe { _mm256_setzero_ps() })
    }
    #[inline(always)]
    fn splat(x: f32) -> Self {
        // SAFETY: as above.
        Avx2(unsafe { _mm256_set1_ps(x) })
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: caller guarantees 8 readable floats and AVX.
        Avx2(unsafe { _mm256_loadu_ps(p) })
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: caller guarantees 8 writable floats and AVX.
        unsafe { _mm256_storeu_ps(p, self.0) }
    }
    #[inline(always)]
    fn mul_add(a: Self, b: Self, c: Self) -> Self {
        // SAFETY: only instantiated in avx2,fma target-feature functions.
        Avx2(unsafe { _mm256_fmadd_ps(a.0, b.0, c.0) })
    }
    #[inline(always)]
    fn add(a: Self, b: Self) -> Self {
        // SAFETY: as above.
        Avx2(unsafe { _mm256_add_ps(a.0, b.0) })
    }
    #[inline(always)]
    fn max(a: Self, b: Self) -> Self {
        // SAFETY: as above.
        Avx2(unsafe { _mm256_max_ps(a.0, b.0) })
    }
}

/// 8 lanes via `wide::f32x8`: compiles on every target.
#[derive(Clone, Copy)]
pub(crate) struct Portable(wide::f32x8);

impl Vf32 for Portable {
    const LANES: usize = 8;
    #[inline(always)]
    fn zero() -> Self {
        Portable(wide::f32x8::ZERO)
    }
    #[inline(always)]
    fn splat(x: f32) -> Self {
        Portable(wide::f32x8::splat(x))
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: caller guarantees 8 readable floats; unaligned read.
        Portable(wide::f32x8::from(unsafe { p.cast::<[f32; 8]>().read_unaligned() }))
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: caller guarantees 8 writable floats; unaligned write.
        unsafe { p.cast::<[f32; 8]>().write_unaligned(self.0.to_array()) }
    }
    #[inline(always)]
    fn mul_add(a: Self, b: Self, c: Self) -> Self {
        Portable(a.0.mul_add(b.0, c.0))
    }
    #[inline(always)]
    fn add(a: Self, b: Self) -> Self {
        Portable(a.0 + b.0)
    }
    #[inline(always)]
    fn max(a: Self, b: Self) -> Self {
        Portable(a.0.max(b.0))
    }
}
