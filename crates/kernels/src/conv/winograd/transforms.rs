//! The three Winograd transforms, vectorised over channels.
//!
//! NHWC keeps channels contiguous, so every transform works on `L::WIDTH`
//! channels at once: one SIMD register holds the same tile element of
//! `WIDTH` channels, and the 1-D transforms below are plain adds, subtracts
//! and FMAs on registers. Channel remainders run through the same generic
//! code instantiated with scalar `f32` lanes.
//!
//! Matrices (Lavin & Gray 2015, arXiv:1509.09308; derived in
//! `docs/ALGORITHMS.md`), for correlation `y = A^T [(G g G^T) . (B^T d B)] A`:
//!
//! ```text
//! F(2,3), points 0, 1, -1, inf        F(4,3), points 0, 1, -1, 2, -2, inf
//! B^T = | 1  0 -1  0 |                B^T = | 4  0 -5  0  1  0 |
//!       | 0  1  1  0 |                      | 0 -4 -4  1  1  0 |
//!       | 0 -1  1  0 |                      | 0  4 -4 -1  1  0 |
//!       | 0  1  0 -1 |                      | 0 -2 -1  2  1  0 |
//!                                           | 0  2 -1 -2  1  0 |
//! G   = |  1    0    0  |                   | 0  4  0 -5  0  1 |
//!       | 1/2  1/2  1/2 |               G = |  1/4     0     0  |
//!       | 1/2 -1/2  1/2 |                   | -1/6  -1/6  -1/6  |
//!       |  0    0    1  |                   | -1/6   1/6  -1/6  |
//!                                           | 1/24  1/12   1/6  |
//! A^T = | 1  1  1  0 |                      | 1/24 -1/12   1/6  |
//!       | 0  1 -1 -1 |                      |   0     0     1   |
//!                                     A^T = | 1  1  1  1  1  0 |
//!                                           | 0  1 -1  2 -2  0 |
//!                                           | 0  1  1  4  4  0 |
//!                                           | 0  1 -1  8 -8  1 |
//! ```

#[cfg(target_arch = "x86_64")]
use core::arch::x86_64::*;

/// `G` of F(2x2, 3x3): 4 x 3.
pub(super) const G_F2: [[f64; 3]; 4] = [[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]];

/// `G` of F(4x4, 3x3): 6 x 3.
pub(super) const G_F4: [[f64; 3]; 6] = [
    [0.25, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

/// A vector of `WIDTH` f32 lanes. Every method is `unsafe` because the SIMD
/// implementations need their instruction set: the caller guarantees the
/// CPU has it (the driver only instantiates a type inside a
/// `#[target_feature]` function chosen from `simd::level()`), and that
/// pointers are valid for `WIDTH` floats.
pub(super) trait Lanes: Copy {
    /// Lanes per vector.
    const WIDTH: usize;
    /// Loads `WIDTH` floats (unaligned).
    unsafe fn load(p: *const f32) -> Self;
    /// Stores `WIDTH` floats (unaligned).
    unsafe fn store(self, p: *mut f32);
    /// Every lane `x`.
    unsafe fn splat(x: f32) -> Self;
    /// `self + o`.
    unsafe fn add(self, o: Self) -> Self;
    /// `self - o`.
    unsafe fn sub(self, o: Self) -> Self;
    /// `self * k + acc`.
    unsafe fn mul_add(self, k: Self, acc: Self) -> Self;
    /// Lane-wise maximum.
    unsafe fn max(self, o: Self) -> Self;
}

impl Lanes for f32 {
    const WIDTH: usize = 1;
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: the caller guarantees `p` is valid for one read.
        unsafe { *p }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: the caller guarantees `p` is valid for one write.
        unsafe { *p = self }
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        x
    }
    #[inline(always)]
    unsafe fn add(self, o: Self) -> Self {
        self + o
    }
    #[inline(always)]
    unsafe fn sub(self, o: Self) -> Self {
        self - o
    }
    #[inline(always)]
    unsafe fn mul_add(self, k: Self, acc: Self) -> Self {
        self * k + acc
    }
    #[inline(always)]
    unsafe fn max(self, o: Self) -> Self {
        self.max(o)
    }
}

impl Lanes for wide::f32x8 {
    const WIDTH: usize = 8;
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: the caller guarantees `p` is valid for 8 reads; unaligned read.
        wide::f32x8::from(unsafe { core::ptr::read_unaligned(p as *const [f32; 8]) })
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: the caller guarantees `p` is valid for 8 writes; unaligned write.
        unsafe { core::ptr::write_unaligned(p as *mut [f32; 8], self.to_array()) }
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        wide::f32x8::splat(x)
    }
    #[inline(always)]
    unsafe fn add(self, o: Self) -> Self {
        self + o
    }
    #[inline(always)]
    unsafe fn sub(self, o: Self) -> Self {
        self - o
    }
    #[inline(always)]
    unsafe fn mul_add(self, k: Self, acc: Self) -> Self {
        self * k + acc
    }
    #[inline(always)]
    unsafe fn max(self, o: Self) -> Self {
        self.max(o)
    }
}

#[cfg(target_arch = "x86_64")]
impl Lanes for __m256 {
    const WIDTH: usize = 8;
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: AVX is enabled by the caller's target_feature; `p` valid for 8 reads.
        unsafe { _mm256_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: AVX is enabled by the caller's target_feature; `p` valid for 8 writes.
        unsafe { _mm256_storeu_ps(p, self) }
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        // SAFETY: AVX is enabled by the caller's target_feature.
        unsafe { _mm256_set1_ps(x) }
    }
    #[inline(always)]
    unsafe fn add(self, o: Self) -> Self {
        // SAFETY: AVX is enabled by the caller's target_feature.
        unsafe { _mm256_add_ps(self, o) }
    }
    #[inline(always)]
    unsafe fn sub(self, o: Self) -> Self {
        // SAFETY: AVX is enabled by the caller's target_feature.
        unsafe { _mm256_sub_ps(self, o) }
    }
    #[inline(always)]
    unsafe fn mul_add(self, k: Self, acc: Self) -> Self {
        // SAFETY: FMA is enabled by the caller's target_feature.
        unsafe { _mm256_fmadd_ps(self, k, acc) }
    }
    #[inline(always)]
    unsafe fn max(self, o: Self) -> Self {
        // SAFETY: AVX is enabled by the caller's target_feature.
        unsafe { _mm256_max_ps(self, o) }
    }
}

#[cfg(target_arch = "x86_64")]
impl Lanes for __m512 {
    const WIDTH: usize = 16;
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: AVX-512F is enabled by the caller's target_feature; `p` valid for 16 reads.
        unsafe { _mm512_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: AVX-512F is enabled by the caller's target_feature; `p` valid for 16 writes.
        unsafe { _mm512_storeu_ps(p, self) }
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        // SAFETY: AVX-512F is enabled by the caller's target_feature.
        unsafe { _mm512_set1_ps(x) }
    }
    #[inline(always)]
    unsafe fn add(self, o: Self) -> Self {
        // SAFETY: AVX-512F is enabled by the caller's target_feature.
        unsafe { _mm512_add_ps(self, o) }
    }
    #[inline(always)]
    unsafe fn sub(self, o: Self) -> Self {
        // SAFETY: AVX-512F is enabled by the caller's target_feature.
        unsafe { _mm512_sub_ps(self, o) }
    }
    #[inline(always)]
    unsafe fn mul_add(self, k: Self, acc: Self) -> Self {
        // SAFETY: AVX-512F is enabled by the caller's target_feature.
        unsafe { _mm512_fmadd_ps(self, k, acc) }
    }
    #[inline(always)]
    unsafe fn max(self, o: Self) -> Self {
        // SAFETY: AVX-512F is enabled by the caller's target_feature.
        unsafe { _mm512_max_ps(self, o) }
    }
}

/// `B^T d` for F(2,3), one column of 4.
#[inline(always)]
unsafe fn bt_f2<L: Lanes>(d: [L; 4]) -> [L; 4] {
    // SAFETY: lane arithmetic only; the caller's instruction set is enabled.
    unsafe { [d[0].sub(d[2]), d[1].add(d[2]), d[2].sub(d[1]), d[1].sub(d[3])] }
}

/// `B^T d` for F(4,3), one column of 6, in 12 adds and 6 FMAs.
#[inline(always)]
unsafe fn bt_f4<L: Lanes>(d: [L; 6]) -> [L; 6] {
    // SAFETY: lane arithmetic only; the caller's instruction set is enabled.
    unsafe {
        let (four, m_four, m_five, two) = (L::splat(4.0), L::splat(-4.0), L::splat(-5.0), L::splat(2.0));
        let d4_d2 = d[4].sub(d[2]);
        [
            d[0].mul_add(four, d[2].mul_add(m_five, d[4])),
            d[1].add(d[2]).mul_add(m_four, d[3].add(d[4])),
            d[1].sub(d[2]).mul_add(four, d[4].sub(d[3])),
            d[3].sub(d[1]).mul_add(two, d4_d2),
            d[1].sub(d[3]).mul_add(two, d4_d2),
            d[1].mul_add(four, d[3].mul_add(m_five, d[5])),
        ]
    }
}

/// `A^T m` for F(2,3): 4 -> 2.
#[inline(always)]
unsafe fn at_f2<L: Lanes>(m: [L; 4]) -> [L; 2] {
    // SAFETY: lane arithmetic only.
    unsafe { [m[0].add(m[1]).add(m[2]), m[1].sub(m[2]).sub(m[3])] }
}

/// `A^T m` for F(4,3): 6 -> 4.
#[inline(always)]
unsafe fn at_f4<L: Lanes>(m: [L; 6]) -> [L; 4] {
    // SAFETY: lane arithmetic only.
    unsafe {
        let (a, b) = (m[1].add(m[2]), m[1].sub(m[2]));
        let (c, d) = (m[3].add(m[4]), m[3].sub(m[4]));
        [
            m[0].add(a).add(c),
            d.mul_add(L::splat(2.0), b),
            c.mul_add(L::splat(4.0), a),
            d.mul_add(L::splat(8.0), b.add(m[5])),
        ]
    }
}

/// Input transform of one tile for the channels `[c, c + L::WIDTH)`:
/// `V = B^T d B`. `src[i * t + j]` points at the first channel of tile pixel
/// `(i, j)` (a zero row for pixels outside the image); `V[e]` goes to
/// `dst + e * estride + c`.
///
/// # Safety
/// Every `src[e] + c` is valid for `WIDTH` reads, every `dst + e * estride + c`
/// for `WIDTH` writes, and `L`'s instruction set is enabled.
#[inline(always)]
pub(super) unsafe fn input_tile_f2<L: Lanes>(src: &[*const f32; 16], c: usize, dst: *mut f32, estride: usize) {
    // SAFETY: the pointer contract is the caller's (see # Safety).
    unsafe {
        let mut rows = [[L::splat(0.0); 4]; 4];
        for j in 0..4 {
            let col = [
                L::load(src[j].add(c)),
                L::load(src[4 + j].add(c)),
                L::load(src[8 + j].add(c)),
                L::load(src[12 + j].add(c)),
            ];
            let r = bt_f2(col);
            for i in 0..4 {
                rows[i][j] = r[i];
            }
        }
        for (i, row) in rows.into_iter().enumerate() {
            for (k, v) in bt_f2(row).into_iter().enumerate() {
                v.store(dst.add((i * 4 + k) * estride + c));
            }
        }
    }
}

/// F(4x4, 3x3) version of [`input_tile_f2`] (6x6 tiles, 36 elements).
///
/// # Safety
/// As [`input_tile_f2`].
#[inline(always)]
pub(super) unsafe fn input_tile_f4<L: Lanes>(src: &[*const f32; 36], c: usize, dst: *mut f32, estride: usize) {
    // SAFETY: the pointer contract is the caller's (see # Safety).
    unsafe {
        let mut rows = [[L::splat(0.0); 6]; 6];
        for j in 0..6 {
            let col = [
                L::load(src[j].add(c)),
                L::load(src[6 + j].add(c)),
                L::load(src[12 + j].add(c)),
                L::load(src[18 + j].add(c)),
                L::load(src[24 + j].add(c)),
                L::load(src[30 + j].add(c)),
            ];
            let r = bt_f4(col);
            for i in 0..6 {
                rows[i][j] = r[i];
            }
        }
        for (i, row) in rows.into_iter().enumerate() {
            for (k, v) in bt_f4(row).into_iter().enumerate() {
                v.store(dst.add((i * 6 + k) * estride + c));
            }
        }
    }
}

/// Output transform of one tile for channels `[c, c + L::WIDTH)` with the
/// epilogue fused: `y = act(A^T M A + bias)`. `M[e]` is read from
/// `src + e * estride + c`; output pixel `(i, j)` goes to `dst[i * 2 + j] + c`
/// (a sink row for pixels outside the output); `bias + c` is read.
///
/// # Safety
/// Every address formed is valid for `WIDTH` reads/writes, and `L`'s
/// instruction set is enabled.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // j indexes both the loads and a column of `rows`
pub(super) unsafe fn output_tile_f2<L: Lanes>(
    src: *const f32,
    estride: usize,
    c: usize,
    dst: &[*mut f32; 4],
    bias: *const f32,
    relu: bool,
) {
    // SAFETY: the pointer contract is the caller's (see # Safety).
    unsafe {
        let mut rows = [[L::splat(0.0); 4]; 2];
        for j in 0..4 {
            let at = |i: usize| src.add((i * 4 + j) * estride + c);
            let col = [L::load(at(0)), L::load(at(1)), L::load(at(2)), L::load(at(3))];
            let r = at_f2(col);
            rows[0][j] = r[0];
            rows[1][j] = r[1];
        }
        let b = L::load(bias.add(c));
        let zero = L::splat(0.0);
        for (i, row) in rows.into_iter().enumerate() {
            for (k, v) in at_f2(row).into_iter().enumerate() {
                let mut y = v.add(b);
                if relu {
                    y = y.max(zero);
                }
                y.store(dst[i * 2 + k].add(c));
            }
        }
    }
}

/// F(4x4, 3x3) version of [`output_tile_f2`]: 36 elements in, 4x4 pixels out.
///
/// # Safety
/// As [`output_tile_f2`].
#[inline(always)]
#[allow(clippy::needless_range_loop)] // j indexes both the loads and a column of `rows`
pub(super) unsafe fn output_tile_f4<L: Lanes>(
    src: *const f32,
    estride: usize,
    c: usize,
    dst: &[*mut f32; 16],
    bias: *const f32,
    relu: bool,
) {
    // SAFETY: the pointer contract is the caller's (see # Safety).
    unsafe {
        let mut rows = [[L::splat(0.0); 6]; 4];
        for j in 0..6 {
            let at = |i: usize| src.add((i * 6 + j) * estride + c);
            let col = [L::load(at(0)), L::load(at(1)), L::load(at(2)), L::load(at(3)), L::load(at(4)), L::load(at(5))];
            let r = at_f4(col);
            for i in 0..4 {
                rows[i][j] = r[i];
            }
        }
        let b = L::load(bias.add(c));
        let zero = L::splat(0.0);
        for (i, row) in rows.into_iter().enumerate() {
            for (k, v) in at_f4(row).into_iter().enumerate() {
                let mut y = v.add(b);
                if relu {
                    y = y.max(zero);
                }
                y.store(dst[i * 4 + k].add(c));
            }
        }
    }
}

/// `A y` for F(2,3) (the transpose of the output transform): 2 -> 4.
#[inline(always)]
unsafe fn a_f2<L: Lanes>(y: [L; 2]) -> [L; 4] {
    // SAFETY: lane arithmetic only.
    unsafe { [y[0], y[0].add(y[1]), y[0].sub(y[1]), L::splat(0.0).sub(y[1])] }
}

/// `A y` for F(4,3): 4 -> 6.
#[inline(always)]
unsafe fn a_f4<L: Lanes>(y: [L; 4]) -> [L; 6] {
    // SAFETY: lane arithmetic only.
    unsafe {
        let (even1, odd1) = (y[0].add(y[2]), y[1].add(y[3]));
        let four = L::splat(4.0);
        let (even4, odd4) = (y[2].mul_add(four, y[0]), y[3].mul_add(four, y[1]));
        let two = L::splat(2.0);
        [y[0], even1.add(odd1), even1.sub(odd1), odd4.mul_add(two, even4), odd4.mul_add(L::splat(-2.0), even4), y[3]]
    }
}

/// Gradient of the output transform for one tile, channels `[c, c + L::WIDTH)`:
/// `dM = A dY A^T` from the `2 x 2` output-gradient pixels `src[i * 2 + j] + c`
/// (a zero row past the output's edge); `dM[e]` goes to `dst + e * estride + c`.
///
/// # Safety
/// Every address formed is valid for `WIDTH` reads/writes, and `L`'s
/// instruction set is enabled.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // j indexes both the loads and a column of `cols`
pub(super) unsafe fn grad_tile_f2<L: Lanes>(src: &[*const f32; 4], c: usize, dst: *mut f32, estride: usize) {
    // SAFETY: the pointer contract is the caller's (see # Safety).
    unsafe {
        let mut rows = [[L::splat(0.0); 2]; 4];
        for j in 0..2 {
            let r = a_f2([L::load(src[j].add(c)), L::load(src[2 + j].add(c))]);
            for i in 0..4 {
                rows[i][j] = r[i];
            }
        }
        for (i, row) in rows.into_iter().enumerate() {
            for (k, v) in a_f2(row).into_iter().enumerate() {
                v.store(dst.add((i * 4 + k) * estride + c));
            }
        }
    }
}

/// F(4x4, 3x3) version of [`grad_tile_f2`]: 4x4 gradient pixels in, 36 elements out.
///
/// # Safety
/// As [`grad_tile_f2`].
#[inline(always)]
#[allow(clippy::needless_range_loop)] // j indexes both the loads and a column of `rows`
pub(super) unsafe fn grad_tile_f4<L: Lanes>(src: &[*const f32; 16], c: usize, dst: *mut f32, estride: usize) {
    // SAFETY: the pointer contract is the caller's (see # Safety).
    unsafe {
        let mut rows = [[L::splat(0.0); 4]; 6];
        for j in 0..4 {
            let col = [
                L::load(src[j].add(c)),
                L::load(src[4 + j].add(c)),
                L::load(src[8 + j].add(c)),
                L::load(src[12 + j].add(c)),
            ];
            let r = a_f4(col);
            for i in 0..6 {
                rows[i][j] = r[i];
            }
        }
        for (i, row) in rows.into_iter().enumerate() {
            for (k, v) in a_f4(row).into_iter().enumerate() {
                v.store(dst.add((i * 6 + k) * estride + c));
            }
        }
    }
}

/// The non-zero coefficients of tile element `e = a * t + b` of `G g G^T`:
/// `(tap, G[a][i] * G[b][j])` with `tap = i * 3 + j`, products in f64 and
/// rounded once. Returns the coefficients and how many of the 9 are used.
pub(super) fn filter_coefficients(g: &[[f64; 3]], e: usize) -> ([(usize, f32); 9], usize) {
    let t = g.len();
    let (a, b) = (e / t, e % t);
    let mut out = [(0, 0.0); 9];
    let mut used = 0;
    for i in 0..3 {
        for j in 0..3 {
            let c = g[a][i] * g[b][j];
            if c != 0.0 {
                out[used] = (i * 3 + j, c as f32);
                used += 1;
            }
        }
    }
    (out, used)
}

/// `G g` for F(2,3): 3 taps -> 4.
#[inline(always)]
unsafe fn g_f2<L: Lanes>(g: [L; 3]) -> [L; 4] {
    // SAFETY: lane arithmetic only.
    unsafe {
        let (half, zero) = (L::splat(0.5), L::splat(0.0));
        let s02 = g[0].add(g[2]);
        [g[0], s02.add(g[1]).mul_add(half, zero), s02.sub(g[1]).mul_add(half, zero), g[2]]
    }
}

/// `G g` for F(4,3): 3 taps -> 6.
#[inline(always)]
unsafe fn g_f4<L: Lanes>(g: [L; 3]) -> [L; 6] {
    // SAFETY: lane arithmetic only.
    unsafe {
        let zero = L::splat(0.0);
        let (sixth, twenty_fourth) = (L::splat(-1.0 / 6.0), L::splat(1.0 / 24.0));
        let s02 = g[0].add(g[2]);
        let s04 = g[2].mul_add(L::splat(4.0), g[0]);
        let g1x2 = g[1].add(g[1]);
        [
            g[0].mul_add(L::splat(0.25), zero),
            s02.add(g[1]).mul_add(sixth, zero),
            s02.sub(g[1]).mul_add(sixth, zero),
            s04.add(g1x2).mul_add(twenty_fourth, zero),
            s04.sub(g1x2).mul_add(twenty_fourth, zero),
            g[2],
        ]
    }
}

/// Filter transform `U = G g G^T` of input channel `ci` for output channels
/// `[co, co + L::WIDTH)`: `g[tap]` is read at `filter + (tap * c_in + ci) *
/// c_out + co` (HWIO), and tile element `e` is stored at `dst(e) + co_offset`
/// where `dst(e) = base + e * estride`.
///
/// # Safety
/// `filter` holds the HWIO filter with `co + WIDTH <= c_out`; every
/// `base + e * estride` is valid for `WIDTH` writes; `L`'s instruction set is enabled.
#[inline(always)]
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
pub(super) unsafe fn filter_tile<L: Lanes, const F4: bool>(
    filter: *const f32,
    ci: usize,
    c_in: usize,
    c_out: usize,
    co: usize,
    base: *mut f32,
    estride: usize,
) {
    // SAFETY: the pointer contract is the caller's (see # Safety).
    unsafe {
        let tap = |t: usize| L::load(filter.add((t * c_in + ci) * c_out + co));
        let g = [[tap(0), tap(1), tap(2)], [tap(3), tap(4), tap(5)], [tap(6), tap(7), tap(8)]];
        if F4 {
            let mut rows = [[L::splat(0.0); 3]; 6];
            for kx in 0..3 {
                let col = g_f4([g[0][kx], g[1][kx], g[2][kx]]);
                for a in 0..6 {
                    rows[a][kx] = col[a];
                }
            }
            for (a, row) in rows.into_iter().enumerate() {
                for (b, u) in g_f4(row).into_iter().enumerate() {
                    u.store(base.add((a * 6 + b) * estride));
                }
            }
        } else {
            let mut rows = [[L::splat(0.0); 3]; 4];
            for kx in 0..3 {
                let col = g_f2([g[0][kx], g[1][kx], g[2][kx]]);
                for a in 0..4 {
                    rows[a][kx] = col[a];
                }
            }
            for (a, row) in rows.into_iter().enumerate() {
                for (b, u) in g_f2(row).into_iter().enumerate() {
                    u.store(base.add((a * 4 + b) * estride));
                }
            }
        }
    }
}
