//! One update rule, two widths: every optimizer's element-wise rule is
//! written once, generic over [`Lane`], and run on eight lanes at a time
//! (`wide::f32x8`, which compiles to AVX/SSE/NEON as the target allows) and on
//! scalars for the tail. The loops read each buffer once and write each once.

use std::ops::{Add, Div, Mul, Sub};
use wide::f32x8;

/// A number or a vector of numbers the update rules compute on.
pub(crate) trait Lane:
    Copy + Add<Output = Self> + Sub<Output = Self> + Mul<Output = Self> + Div<Output = Self>
{
    fn splat(x: f32) -> Self;
    fn sqrt(self) -> Self;
    fn max(self, other: Self) -> Self;
}

impl Lane for f32 {
    #[inline(always)]
    fn splat(x: f32) -> Self {
        x
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
    #[inline(always)]
    fn max(self, other: Self) -> Self {
        f32::max(self, other)
    }
}

impl Lane for f32x8 {
    #[inline(always)]
    fn splat(x: f32) -> Self {
        f32x8::splat(x)
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        f32x8::sqrt(self)
    }
    #[inline(always)]
    fn max(self, other: Self) -> Self {
        f32x8::max(self, other)
    }
}

/// An element-wise update: `w` and the `K` state buffers are read and
/// rewritten, `g` is read.
pub(crate) trait Rule<const K: usize> {
    fn apply<L: Lane>(&self, w: &mut L, g: L, state: &mut [L; K]);
}

#[inline(always)]
fn load(s: &[f32]) -> f32x8 {
    let mut a = [0.0f32; 8];
    a.copy_from_slice(&s[..8]);
    f32x8::from(a)
}

/// Runs `rule` over every element; all slices have `w.len()` elements
/// (checked by the caller).
pub(crate) fn run<R: Rule<K>, const K: usize>(rule: &R, w: &mut [f32], g: &[f32], state: &mut [Vec<f32>]) {
    debug_assert_eq!(state.len(), K);
    let n = w.len();
    let body = n - n % 8;
    let mut i = 0;
    while i < body {
        let mut wv = load(&w[i..]);
        let gv = load(&g[i..]);
        let mut sv = [f32x8::splat(0.0); K];
        for (s, buf) in sv.iter_mut().zip(state.iter()) {
            *s = load(&buf[i..]);
        }
        rule.apply(&mut wv, gv, &mut sv);
        w[i..i + 8].copy_from_slice(&wv.to_array());
        for (s, buf) in sv.iter().zip(state.iter_mut()) {
            buf[i..i + 8].copy_from_slice(&s.to_array());
        }
        i += 8;
    }
    for i in body..n {
        let mut sv = [0.0f32; K];
        for (s, buf) in sv.iter_mut().zip(state.iter()) {
            *s = buf[i];
        }
        rule.apply(&mut w[i], g[i], &mut sv);
        for (s, buf) in sv.iter().zip(state.iter_mut()) {
            buf[i] = *s;
        }
    }
}
