//! The one vector layer every SIMD kernel is written against.
//!
//! Two halves:
//!
//! - **Instruction-set tokens** ([`Avx512`], [`Avx2`], [`Portable`],
//!   [`Scalar`]): zero-sized values whose existence proves that this CPU runs
//!   the instruction set. [`Avx512::detect`] and [`Avx2::detect`] return one
//!   only after run-time detection; the only other way to make one is the
//!   `unsafe` `new_unchecked`. A token is the factory for its vectors
//!   ([`Isa::zero`], [`Isa::splat`], [`Isa::load`]).
//! - **Vectors** ([`Vf32`]): [`Zmm`] (16 lanes, AVX-512F), [`Ymm`] (8 lanes,
//!   AVX2 + FMA), [`Wide`] (`wide::f32x8`, the portable baseline) and plain
//!   `f32` (one lane, for channel remainders). Their fields are private to
//!   this module, so a vector can only come from a token or from other
//!   vectors: arithmetic on a vector is therefore safe, the instruction set
//!   having been proven when its token was made.
//!
//! A kernel is written once as an `#[inline(always)]` function generic over
//! `S: Isa`, taking the token as an argument, and instantiated in one
//! `#[target_feature]` wrapper per instruction set (which also receives the
//! token, as its proof of availability): every method here is
//! `#[inline(always)]`, so the intrinsics inline into the wrapper and compile
//! to single instructions there. [`super::Token`] carries the chosen token
//! from the public entry points to those wrappers; [`super::multiversion!`]
//! writes the wrappers for kernels that need no vectors of their own.

#[cfg(target_arch = "x86_64")]
use core::arch::x86_64::*;

mod ops;
pub(crate) use ops::VOps;

/// An instruction set, proven available: the factory for its vectors.
pub(crate) trait Isa: Copy + Send + Sync + 'static {
    /// The vector type of this instruction set.
    type V: Vf32;
    /// Lanes of [`Isa::V`].
    const LANES: usize;
    /// All lanes zero.
    fn zero(self) -> Self::V;
    /// All lanes `x`.
    fn splat(self, x: f32) -> Self::V;
    /// Unaligned load of `LANES` floats.
    ///
    /// # Safety
    /// `p` is valid for `LANES` reads.
    unsafe fn load(self, p: *const f32) -> Self::V;
    /// The one-lane token, for channel remainders next to this instruction set.
    #[inline(always)]
    fn scalar(self) -> Scalar {
        Scalar(())
    }
}

/// A vector of `Isa::LANES` f32, made by an [`Isa`] token.
pub(crate) trait Vf32: Copy {
    /// Unaligned store of `LANES` values.
    ///
    /// # Safety
    /// `p` is valid for `LANES` writes.
    unsafe fn store(self, p: *mut f32);
    /// Non-temporal store of `LANES` values: written around the caches
    /// (no read for ownership, nothing evicted) where the instruction set
    /// has one, a plain [`Vf32::store`] elsewhere. For destinations too big
    /// to stay cached; the writing thread must call [`store_fence`] before
    /// another thread may read them.
    ///
    /// # Safety
    /// `p` is valid for `LANES` writes and aligned to `LANES * 4` bytes.
    unsafe fn stream(self, p: *mut f32);
    /// Lane-wise `self + o`.
    fn add(self, o: Self) -> Self;
    /// Lane-wise `self - o`.
    fn sub(self, o: Self) -> Self;
    /// Lane-wise `self * b + c`: fused (one rounding) where the instruction
    /// set has FMA (AVX2, AVX-512), two roundings on the portable baseline
    /// and on scalar lanes.
    fn mul_add(self, b: Self, c: Self) -> Self;
    /// Lane-wise maximum (`f32::max` on scalar lanes).
    fn max(self, o: Self) -> Self;
    /// Lane-wise `if y > 0 { self } else { 0 }`: the gradient through a relu
    /// whose output is `y` (as `relu_backward_inplace`, same bits: the lanes
    /// kept are untouched, the others `+0.0`, a NaN `y` masks).
    fn relu_mask(self, y: Self) -> Self;
}

/// Proof that this CPU runs AVX-512F, AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx512(());

#[cfg(target_arch = "x86_64")]
impl Avx512 {
    /// The token, if this CPU has AVX-512F, AVX2 and FMA.
    #[inline]
    pub(crate) fn detect() -> Option<Self> {
        (is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
            .then_some(Avx512(()))
    }

    /// The token without detection.
    ///
    /// # Safety
    /// The CPU has AVX-512F, AVX2 and FMA.
    #[allow(dead_code)] // the documented escape hatch; detection is the normal way
    pub(crate) unsafe fn new_unchecked() -> Self {
        Avx512(())
    }
}

/// Proof that this CPU runs AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx2(());

#[cfg(target_arch = "x86_64")]
impl Avx2 {
    /// The token, if this CPU has AVX2 and FMA.
    #[inline]
    pub(crate) fn detect() -> Option<Self> {
        (is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")).then_some(Avx2(()))
    }

    /// The token without detection.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA.
    #[allow(dead_code)] // the documented escape hatch; detection is the normal way
    pub(crate) unsafe fn new_unchecked() -> Self {
        Avx2(())
    }
}

/// The portable baseline (`wide::f32x8`): runs everywhere.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Portable;

/// One scalar lane: runs everywhere; the channel remainder of every level.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Scalar(());

/// 16 lanes in a zmm register; exists only where an [`Avx512`] token does.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub(crate) struct Zmm(__m512);

/// 8 lanes in a ymm register; exists only where an [`Avx2`] (or [`Avx512`]) token does.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub(crate) struct Ymm(__m256);

/// 8 lanes via `wide::f32x8`, whose instructions are fixed at compile time
/// for the baseline target.
#[derive(Clone, Copy)]
pub(crate) struct Wide(wide::f32x8);

#[cfg(target_arch = "x86_64")]
impl Isa for Avx512 {
    type V = Zmm;
    const LANES: usize = 16;
    #[inline(always)]
    fn zero(self) -> Zmm {
        // SAFETY: the token proves AVX-512F.
        Zmm(unsafe { _mm512_setzero_ps() })
    }
    #[inline(always)]
    fn splat(self, x: f32) -> Zmm {
        // SAFETY: the token proves AVX-512F.
        Zmm(unsafe { _mm512_set1_ps(x) })
    }
    #[inline(always)]
    unsafe fn load(self, p: *const f32) -> Zmm {
        // SAFETY: the token proves AVX-512F; the caller, 16 readable floats.
        Zmm(unsafe { _mm512_loadu_ps(p) })
    }
}

#[cfg(target_arch = "x86_64")]
impl Vf32 for Zmm {
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: a Zmm proves AVX-512F; the caller, 16 writable floats.
        unsafe { _mm512_storeu_ps(p, self.0) }
    }
    #[inline(always)]
    unsafe fn stream(self, p: *mut f32) {
        // SAFETY: a Zmm proves AVX-512F; the caller, 16 writable floats at
        // a 64-byte boundary.
        unsafe { _mm512_stream_ps(p, self.0) }
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        // SAFETY: a Zmm exists only where an Avx512 token proved AVX-512F.
        Zmm(unsafe { _mm512_add_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        // SAFETY: a Zmm exists only where an Avx512 token proved AVX-512F.
        Zmm(unsafe { _mm512_sub_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn mul_add(self, b: Self, c: Self) -> Self {
        // SAFETY: a Zmm exists only where an Avx512 token proved AVX-512F.
        Zmm(unsafe { _mm512_fmadd_ps(self.0, b.0, c.0) })
    }
    #[inline(always)]
    fn max(self, o: Self) -> Self {
        // SAFETY: a Zmm exists only where an Avx512 token proved AVX-512F.
        Zmm(unsafe { _mm512_max_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn relu_mask(self, y: Self) -> Self {
        // SAFETY: a Zmm exists only where an Avx512 token proved AVX-512F.
        Zmm(unsafe {
            let keep = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(y.0, _mm512_setzero_ps());
            _mm512_maskz_mov_ps(keep, self.0)
        })
    }
}

#[cfg(target_arch = "x86_64")]
impl Isa for Avx2 {
    type V = Ymm;
    const LANES: usize = 8;
    #[inline(always)]
    fn zero(self) -> Ymm {
        // SAFETY: the token proves AVX2 (which includes AVX).
        Ymm(unsafe { _mm256_setzero_ps() })
    }
    #[inline(always)]
    fn splat(self, x: f32) -> Ymm {
        // SAFETY: the token proves AVX2 (which includes AVX).
        Ymm(unsafe { _mm256_set1_ps(x) })
    }
    #[inline(always)]
    unsafe fn load(self, p: *const f32) -> Ymm {
        // SAFETY: the token proves AVX; the caller, 8 readable floats.
        Ymm(unsafe { _mm256_loadu_ps(p) })
    }
}

#[cfg(target_arch = "x86_64")]
impl Vf32 for Ymm {
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: a Ymm proves AVX; the caller, 8 writable floats.
        unsafe { _mm256_storeu_ps(p, self.0) }
    }
    #[inline(always)]
    unsafe fn stream(self, p: *mut f32) {
        // SAFETY: a Ymm proves AVX; the caller, 8 writable floats at a
        // 32-byte boundary.
        unsafe { _mm256_stream_ps(p, self.0) }
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        // SAFETY: a Ymm exists only where an Avx2 token proved AVX2 and FMA.
        Ymm(unsafe { _mm256_add_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        // SAFETY: a Ymm exists only where an Avx2 token proved AVX2 and FMA.
        Ymm(unsafe { _mm256_sub_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn mul_add(self, b: Self, c: Self) -> Self {
        // SAFETY: a Ymm exists only where an Avx2 token proved AVX2 and FMA.
        Ymm(unsafe { _mm256_fmadd_ps(self.0, b.0, c.0) })
    }
    #[inline(always)]
    fn max(self, o: Self) -> Self {
        // SAFETY: a Ymm exists only where an Avx2 token proved AVX2 and FMA.
        Ymm(unsafe { _mm256_max_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn relu_mask(self, y: Self) -> Self {
        // SAFETY: a Ymm exists only where an Avx2 token proved AVX2 and FMA.
        Ymm(unsafe { _mm256_and_ps(self.0, _mm256_cmp_ps::<_CMP_GT_OQ>(y.0, _mm256_setzero_ps())) })
    }
}

impl Isa for Portable {
    type V = Wide;
    const LANES: usize = 8;
    #[inline(always)]
    fn zero(self) -> Wide {
        Wide(wide::f32x8::ZERO)
    }
    #[inline(always)]
    fn splat(self, x: f32) -> Wide {
        Wide(wide::f32x8::splat(x))
    }
    #[inline(always)]
    unsafe fn load(self, p: *const f32) -> Wide {
        // SAFETY: the caller guarantees 8 readable floats; unaligned read.
        Wide(wide::f32x8::from(unsafe { p.cast::<[f32; 8]>().read_unaligned() }))
    }
}

impl Vf32 for Wide {
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: the caller guarantees 8 writable floats; unaligned write.
        unsafe { p.cast::<[f32; 8]>().write_unaligned(self.0.to_array()) }
    }
    #[inline(always)]
    unsafe fn stream(self, p: *mut f32) {
        // SAFETY: forwarded (the portable baseline has no streaming store).
        unsafe { self.store(p) }
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        Wide(self.0 + o.0)
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        Wide(self.0 - o.0)
    }
    #[inline(always)]
    fn mul_add(self, b: Self, c: Self) -> Self {
        Wide(self.0.mul_add(b.0, c.0))
    }
    #[inline(always)]
    fn max(self, o: Self) -> Self {
        Wide(self.0.max(o.0))
    }
    #[inline(always)]
    fn relu_mask(self, y: Self) -> Self {
        Wide(self.0 & wide::CmpGt::cmp_gt(y.0, wide::f32x8::ZERO))
    }
}

impl Isa for Scalar {
    type V = f32;
    const LANES: usize = 1;
    #[inline(always)]
    fn zero(self) -> f32 {
        0.0
    }
    #[inline(always)]
    fn splat(self, x: f32) -> f32 {
        x
    }
    #[inline(always)]
    unsafe fn load(self, p: *const f32) -> f32 {
        // SAFETY: the caller guarantees one readable float.
        unsafe { *p }
    }
}

impl Vf32 for f32 {
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: the caller guarantees one writable float.
        unsafe { *p = self }
    }
    #[inline(always)]
    unsafe fn stream(self, p: *mut f32) {
        // SAFETY: forwarded.
        unsafe { self.store(p) }
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        self + o
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        self - o
    }
    #[inline(always)]
    fn mul_add(self, b: Self, c: Self) -> Self {
        // Two roundings, as the portable lanes: `f32::mul_add` would call
        // `fmaf` on CPUs without FMA, a hundred times slower.
        self * b + c
    }
    #[inline(always)]
    fn max(self, o: Self) -> Self {
        f32::max(self, o)
    }
    #[inline(always)]
    fn relu_mask(self, y: Self) -> Self {
        if y > 0.0 {
            self
        } else {
            0.0
        }
    }
}

/// Orders this thread's earlier [`Vf32::stream`] stores before its later
/// stores (SFENCE): called at the end of a task that streamed, before the
/// fork-join hands its results to another thread.
#[inline(always)]
pub(crate) fn store_fence() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SFENCE is SSE (x86-64 baseline).
    unsafe {
        _mm_sfence()
    };
}

/// Prefetches the cache line holding `p` into L1. A hint: it never faults,
/// whatever the address, so `p` may point past the end of a buffer.
#[inline(always)]
pub(crate) fn prefetch(p: *const f32) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 is SSE (x86-64 baseline) and never faults, for any address.
    unsafe {
        _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
