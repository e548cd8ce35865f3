//! Comparison, selection, division and rounding on the vectors of
//! [`super::Vf32`]: what a kernel needs to branch per lane (the affine warp's
//! fill-mode mapping of coordinates, `kernels::image`).
//!
//! Every operation is one IEEE-exact instruction on each instruction set
//! (`floor`, `trunc` and `div` are correctly rounded everywhere), so a kernel
//! written with them gives the same bits at every level and in scalar lanes.

use super::{Vf32, Wide};
#[cfg(target_arch = "x86_64")]
use super::{Ymm, Zmm};
#[cfg(target_arch = "x86_64")]
use core::arch::x86_64::*;

/// Lane-wise comparisons, selection and rounding.
pub(crate) trait VOps: Vf32 {
    /// One flag per lane.
    type Mask: Copy;
    /// Lane-wise `self * o` (one rounding, never fused).
    fn mul(self, o: Self) -> Self;
    /// Lane-wise `self / o`.
    fn div(self, o: Self) -> Self;
    /// Lane-wise `floor`.
    fn floor(self) -> Self;
    /// Lane-wise rounding toward zero (exact for every f32 on the x86 levels;
    /// for `|x| < 2^31` on the portable level, which converts through i32).
    fn trunc(self) -> Self;
    /// Lane-wise `-self` (the sign bit flipped).
    fn neg(self) -> Self;
    /// Lane-wise `|self|`.
    fn abs(self) -> Self;
    /// Lanes where `self < o` (false for NaN).
    fn lt(self, o: Self) -> Self::Mask;
    /// Lanes where `self > o` (false for NaN).
    fn gt(self, o: Self) -> Self::Mask;
    /// Lanes where `self >= o` (false for NaN).
    fn ge(self, o: Self) -> Self::Mask;
    /// `a` in the lanes of `m`, `b` elsewhere.
    fn select(m: Self::Mask, a: Self, b: Self) -> Self;
    /// Lanes set in both masks.
    fn and(a: Self::Mask, b: Self::Mask) -> Self::Mask;
    /// Bit `i` set for lane `i` of the mask.
    fn bits(m: Self::Mask) -> u32;
}

// SAFETY (every unsafe block of the AVX-512 impl): a `Zmm` exists only where
// an `Avx512` token proved AVX-512F; the intrinsics used are AVX-512F ones.
#[cfg(target_arch = "x86_64")]
impl VOps for Zmm {
    type Mask = __mmask16;
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        // SAFETY: see the impl comment.
        Zmm(unsafe { _mm512_mul_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn div(self, o: Self) -> Self {
        // SAFETY: see the impl comment.
        Zmm(unsafe { _mm512_div_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn floor(self) -> Self {
        // SAFETY: see the impl comment.
        Zmm(unsafe { _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC }>(self.0) })
    }
    #[inline(always)]
    fn trunc(self) -> Self {
        // SAFETY: see the impl comment.
        Zmm(unsafe { _mm512_roundscale_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(self.0) })
    }
    #[inline(always)]
    fn neg(self) -> Self {
        // SAFETY: see the impl comment (integer xor: AVX-512F, unlike the DQ float xor).
        Zmm(unsafe { _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(self.0), _mm512_set1_epi32(i32::MIN))) })
    }
    #[inline(always)]
    fn abs(self) -> Self {
        // SAFETY: see the impl comment.
        Zmm(unsafe { _mm512_abs_ps(self.0) })
    }
    #[inline(always)]
    fn lt(self, o: Self) -> __mmask16 {
        // SAFETY: see the impl comment.
        unsafe { _mm512_cmp_ps_mask::<_CMP_LT_OQ>(self.0, o.0) }
    }
    #[inline(always)]
    fn gt(self, o: Self) -> __mmask16 {
        // SAFETY: see the impl comment.
        unsafe { _mm512_cmp_ps_mask::<_CMP_GT_OQ>(self.0, o.0) }
    }
    #[inline(always)]
    fn ge(self, o: Self) -> __mmask16 {
        // SAFETY: see the impl comment.
        unsafe { _mm512_cmp_ps_mask::<_CMP_GE_OQ>(self.0, o.0) }
    }
    #[inline(always)]
    fn select(m: __mmask16, a: Self, b: Self) -> Self {
        // SAFETY: see the impl comment. blend takes the second operand where the mask is set.
        Zmm(unsafe { _mm512_mask_blend_ps(m, b.0, a.0) })
    }
    #[inline(always)]
    fn and(a: __mmask16, b: __mmask16) -> __mmask16 {
        a & b
    }
    #[inline(always)]
    fn bits(m: __mmask16) -> u32 {
        u32::from(m)
    }
}

// SAFETY (every unsafe block of the AVX2 impl): a `Ymm` exists only where an
// `Avx2` (or `Avx512`) token proved AVX2; the intrinsics used are AVX ones.
#[cfg(target_arch = "x86_64")]
impl VOps for Ymm {
    type Mask = __m256;
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        // SAFETY: see the impl comment.
        Ymm(unsafe { _mm256_mul_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn div(self, o: Self) -> Self {
        // SAFETY: see the impl comment.
        Ymm(unsafe { _mm256_div_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn floor(self) -> Self {
        // SAFETY: see the impl comment.
        Ymm(unsafe { _mm256_round_ps::<{ _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC }>(self.0) })
    }
    #[inline(always)]
    fn trunc(self) -> Self {
        // SAFETY: see the impl comment.
        Ymm(unsafe { _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(self.0) })
    }
    #[inline(always)]
    fn neg(self) -> Self {
        // SAFETY: see the impl comment.
        Ymm(unsafe { _mm256_xor_ps(self.0, _mm256_set1_ps(-0.0)) })
    }
    #[inline(always)]
    fn abs(self) -> Self {
        // SAFETY: see the impl comment.
        Ymm(unsafe { _mm256_andnot_ps(_mm256_set1_ps(-0.0), self.0) })
    }
    #[inline(always)]
    fn lt(self, o: Self) -> __m256 {
        // SAFETY: see the impl comment.
        unsafe { _mm256_cmp_ps::<_CMP_LT_OQ>(self.0, o.0) }
    }
    #[inline(always)]
    fn gt(self, o: Self) -> __m256 {
        // SAFETY: see the impl comment.
        unsafe { _mm256_cmp_ps::<_CMP_GT_OQ>(self.0, o.0) }
    }
    #[inline(always)]
    fn ge(self, o: Self) -> __m256 {
        // SAFETY: see the impl comment.
        unsafe { _mm256_cmp_ps::<_CMP_GE_OQ>(self.0, o.0) }
    }
    #[inline(always)]
    fn select(m: __m256, a: Self, b: Self) -> Self {
        // SAFETY: see the impl comment. blendv takes the second operand where the mask is set.
        Ymm(unsafe { _mm256_blendv_ps(b.0, a.0, m) })
    }
    #[inline(always)]
    fn and(a: __m256, b: __m256) -> __m256 {
        // SAFETY: see the impl comment.
        unsafe { _mm256_and_ps(a, b) }
    }
    #[inline(always)]
    fn bits(m: __m256) -> u32 {
        // SAFETY: see the impl comment.
        unsafe { _mm256_movemask_ps(m) as u32 }
    }
}

/// A zero result of `floor` or `trunc` of `x` with `x`'s sign, as the scalar
/// functions give it (`floor(-0.0)` and `trunc(-0.5)` are `-0.0`), where
/// `wide`'s emulation returns `+0.0`.
#[inline(always)]
fn zero_sign_of(r: wide::f32x8, x: wide::f32x8) -> wide::f32x8 {
    wide::CmpEq::cmp_eq(r, wide::f32x8::ZERO).blend(x & wide::f32x8::splat(-0.0), r)
}

impl VOps for Wide {
    type Mask = wide::f32x8;
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        Wide(self.0 * o.0)
    }
    #[inline(always)]
    fn div(self, o: Self) -> Self {
        Wide(self.0 / o.0)
    }
    #[inline(always)]
    fn floor(self) -> Self {
        Wide(zero_sign_of(self.0.floor(), self.0))
    }
    #[inline(always)]
    fn trunc(self) -> Self {
        Wide(zero_sign_of(self.0.trunc_int().round_float(), self.0))
    }
    #[inline(always)]
    fn neg(self) -> Self {
        // The sign bit flipped (`wide`'s `-x` is `0 - x`, which gives +0.0 for +0.0).
        Wide(self.0 ^ wide::f32x8::splat(-0.0))
    }
    #[inline(always)]
    fn abs(self) -> Self {
        Wide(self.0.abs())
    }
    #[inline(always)]
    fn lt(self, o: Self) -> wide::f32x8 {
        wide::CmpLt::cmp_lt(self.0, o.0)
    }
    #[inline(always)]
    fn gt(self, o: Self) -> wide::f32x8 {
        wide::CmpGt::cmp_gt(self.0, o.0)
    }
    #[inline(always)]
    fn ge(self, o: Self) -> wide::f32x8 {
        wide::CmpGe::cmp_ge(self.0, o.0)
    }
    #[inline(always)]
    fn select(m: wide::f32x8, a: Self, b: Self) -> Self {
        Wide(m.blend(a.0, b.0))
    }
    #[inline(always)]
    fn and(a: wide::f32x8, b: wide::f32x8) -> wide::f32x8 {
        a & b
    }
    #[inline(always)]
    fn bits(m: wide::f32x8) -> u32 {
        m.move_mask() as u32
    }
}

impl VOps for f32 {
    type Mask = bool;
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        self * o
    }
    #[inline(always)]
    fn div(self, o: Self) -> Self {
        self / o
    }
    #[inline(always)]
    fn floor(self) -> Self {
        f32::floor(self)
    }
    #[inline(always)]
    fn trunc(self) -> Self {
        f32::trunc(self)
    }
    #[inline(always)]
    fn neg(self) -> Self {
        -self
    }
    #[inline(always)]
    fn abs(self) -> Self {
        f32::abs(self)
    }
    #[inline(always)]
    fn lt(self, o: Self) -> bool {
        self < o
    }
    #[inline(always)]
    fn gt(self, o: Self) -> bool {
        self > o
    }
    #[inline(always)]
    fn ge(self, o: Self) -> bool {
        self >= o
    }
    #[inline(always)]
    fn select(m: bool, a: Self, b: Self) -> Self {
        if m {
            a
        } else {
            b
        }
    }
    #[inline(always)]
    fn and(a: bool, b: bool) -> bool {
        a & b
    }
    #[inline(always)]
    fn bits(m: bool) -> u32 {
        u32::from(m)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Isa, Portable};
    use super::*;

    /// Every lane of every level agrees with the scalar operations.
    #[test]
    fn lanes_agree_with_scalar() {
        let xs: [f32; 16] =
            [-2.5, -1.0, -0.5, -0.0, 0.0, 0.49, 0.5, 1.5, 2.5, -3.7, 7e6, -8e6, 1.0e-3, 3.0, -3.0, 9.99];
        let ys: [f32; 16] = [1.0, 3.0, -2.0, 0.5, -0.5, 7.0, 0.5, -1.5, 2.5, 2.0, 3.0, -4.0, 1.0, -3.0, 3.0, 0.1];
        fn check<S: Isa>(isa: S, xs: &[f32; 16], ys: &[f32; 16])
        where
            S::V: VOps,
        {
            // SAFETY: 16 floats are readable and writable, at least LANES.
            let (x, y) = unsafe { (isa.load(xs.as_ptr()), isa.load(ys.as_ptr())) };
            let lanes = S::LANES;
            let out = |v: S::V| {
                let mut o = [0f32; 16];
                // SAFETY: as above.
                unsafe { v.store(o.as_mut_ptr()) };
                o
            };
            let (m, d, f, t, n, a) =
                (out(x.mul(y)), out(x.div(y)), out(x.floor()), out(x.trunc()), out(x.neg()), out(x.abs()));
            let sel = out(S::V::select(x.lt(y), x, y));
            let lt = S::V::bits(x.lt(y));
            let both = S::V::bits(S::V::and(x.gt(y), x.ge(y)));
            for i in 0..lanes {
                let (a_, b_) = (xs[i], ys[i]);
                assert_eq!(m[i].to_bits(), (a_ * b_).to_bits());
                assert_eq!(d[i].to_bits(), (a_ / b_).to_bits());
                assert_eq!(f[i].to_bits(), a_.floor().to_bits());
                assert_eq!(t[i].to_bits(), a_.trunc().to_bits());
                assert_eq!(n[i].to_bits(), (-a_).to_bits());
                assert_eq!(a[i].to_bits(), a_.abs().to_bits());
                assert_eq!(sel[i], if a_ < b_ { a_ } else { b_ });
                assert_eq!((lt >> i) & 1 == 1, a_ < b_);
                assert_eq!((both >> i) & 1 == 1, a_ > b_);
            }
        }
        check(Portable, &xs, &ys);
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2,fma")]
            fn avx2(isa: super::super::Avx2, xs: &[f32; 16], ys: &[f32; 16]) {
                check(isa, xs, ys)
            }
            #[target_feature(enable = "avx512f,avx2,fma")]
            fn avx512(isa: super::super::Avx512, xs: &[f32; 16], ys: &[f32; 16]) {
                check(isa, xs, ys)
            }
            if let Some(isa) = super::super::Avx2::detect() {
                // SAFETY: the token proves AVX2 and FMA.
                unsafe { avx2(isa, &xs, &ys) };
            }
            if let Some(isa) = super::super::Avx512::detect() {
                // SAFETY: the token proves AVX-512F, AVX2 and FMA.
                unsafe { avx512(isa, &xs, &ys) };
            }
        }
    }
}
