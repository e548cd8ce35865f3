//! The three Winograd transforms, vectorised over channels.
//!
//! NHWC keeps channels contiguous, so every transform works on `S::LANES`
//! channels at once: one SIMD register holds the same tile element of
//! `LANES` channels, and the 1-D transforms below are plain adds, subtracts
//! and FMAs on registers. Channel remainders run through the same generic
//! code instantiated with the scalar token (`f32` lanes).
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

use crate::arch::{Isa, Vf32};

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

/// `B^T d` for F(2,3), one column of 4.
#[inline(always)]
fn bt_f2<V: Vf32>(d: [V; 4]) -> [V; 4] {
    [d[0].sub(d[2]), d[1].add(d[2]), d[2].sub(d[1]), d[1].sub(d[3])]
}

/// `B^T d` for F(4,3), one column of 6, in 12 adds and 6 FMAs.
#[inline(always)]
fn bt_f4<S: Isa>(isa: S, d: [S::V; 6]) -> [S::V; 6] {
    let (four, m_four, m_five, two) = (isa.splat(4.0), isa.splat(-4.0), isa.splat(-5.0), isa.splat(2.0));
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

/// `A^T m` for F(2,3): 4 -> 2.
#[inline(always)]
pub(super) fn at_f2<V: Vf32>(m: [V; 4]) -> [V; 2] {
    [m[0].add(m[1]).add(m[2]), m[1].sub(m[2]).sub(m[3])]
}

/// `A^T m` for F(4,3): 6 -> 4.
#[inline(always)]
pub(super) fn at_f4<S: Isa>(isa: S, m: [S::V; 6]) -> [S::V; 4] {
    let (a, b) = (m[1].add(m[2]), m[1].sub(m[2]));
    let (c, d) = (m[3].add(m[4]), m[3].sub(m[4]));
    [
        m[0].add(a).add(c),
        d.mul_add(isa.splat(2.0), b),
        c.mul_add(isa.splat(4.0), a),
        d.mul_add(isa.splat(8.0), b.add(m[5])),
    ]
}

/// Input transform of one tile for the channels `[c, c + S::LANES)`:
/// `V = B^T d B`. `src[i * t + j]` points at the first channel of tile pixel
/// `(i, j)` (a zero row for pixels outside the image); `V[e]` goes to
/// `dst + e * estride + c`.
///
/// # Safety
/// Every `src[e] + c` is valid for `LANES` reads, every `dst + e * estride + c`
/// for `LANES` writes, and the token `isa` proves the instruction set.
#[inline(always)]
pub(super) unsafe fn input_tile_f2<S: Isa>(isa: S, src: &[*const f32; 16], c: usize, dst: *mut f32, estride: usize) {
    // SAFETY: the pointer contract is the caller's (see # Safety).
    unsafe {
        let mut rows = [[isa.zero(); 4]; 4];
        for j in 0..4 {
            let col = [
                isa.load(src[j].add(c)),
                isa.load(src[4 + j].add(c)),
                isa.load(src[8 + j].add(c)),
                isa.load(src[12 + j].add(c)),
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
pub(super) unsafe fn input_tile_f4<S: Isa>(isa: S, src: &[*const f32; 36], c: usize, dst: *mut f32, estride: usize) {
    // SAFETY: the pointer contract is the caller's (see # Safety).
    unsafe {
        let mut rows = [[isa.zero(); 6]; 6];
        for j in 0..6 {
            let col = [
                isa.load(src[j].add(c)),
                isa.load(src[6 + j].add(c)),
                isa.load(src[12 + j].add(c)),
                isa.load(src[18 + j].add(c)),
                isa.load(src[24 + j].add(c)),
                isa.load(src[30 + j].add(c)),
            ];
            let r = bt_f4(isa, col);
            for i in 0..6 {
                rows[i][j] = r[i];
            }
        }
        for (i, row) in rows.into_iter().enumerate() {
            for (k, v) in bt_f4(isa, row).into_iter().enumerate() {
                v.store(dst.add((i * 6 + k) * estride + c));
            }
        }
    }
}

/// Output transform of one tile for channels `[c, c + S::LANES)` with the
/// epilogue fused: `y = act(A^T M A + bias)`. `M[e]` is read from
/// `src + e * estride + c`; output pixel `(i, j)` goes to `dst[i * 2 + j] + c`
/// (a sink row for pixels outside the output); `bias + c` is read.
///
/// # Safety
/// Every address formed is valid for `LANES` reads/writes, and the token `isa`
/// proves the instruction set.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // j indexes both the loads and a column of `rows`
pub(super) unsafe fn output_tile_f2<S: Isa>(
    isa: S,
    src: *const f32,
    estride: usize,
    c: usize,
    dst: &[*mut f32; 4],
    bias: *const f32,
    relu: bool,
) {
    // SAFETY: the pointer contract is the caller's (see # Safety).
    unsafe {
        let mut rows = [[isa.zero(); 4]; 2];
        for j in 0..4 {
            let at = |i: usize| src.add((i * 4 + j) * estride + c);
            let col = [isa.load(at(0)), isa.load(at(1)), isa.load(at(2)), isa.load(at(3))];
            let r = at_f2(col);
            rows[0][j] = r[0];
            rows[1][j] = r[1];
        }
        let b = isa.load(bias.add(c));
        let zero = isa.zero();
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
pub(super) unsafe fn output_tile_f4<S: Isa>(
    isa: S,
    src: *const f32,
    estride: usize,
    c: usize,
    dst: &[*mut f32; 16],
    bias: *const f32,
    relu: bool,
) {
    // SAFETY: the pointer contract is the caller's (see # Safety).
    unsafe {
        let mut rows = [[isa.zero(); 6]; 4];
        for j in 0..6 {
            let at = |i: usize| src.add((i * 6 + j) * estride + c);
            let col =
                [isa.load(at(0)), isa.load(at(1)), isa.load(at(2)), isa.load(at(3)), isa.load(at(4)), isa.load(at(5))];
            let r = at_f4(isa, col);
            for i in 0..4 {
                rows[i][j] = r[i];
            }
        }
        let b = isa.load(bias.add(c));
        let zero = isa.zero();
        for (i, row) in rows.into_iter().enumerate() {
            for (k, v) in at_f4(isa, row).into_iter().enumerate() {
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
fn a_f2<S: Isa>(isa: S, y: [S::V; 2]) -> [S::V; 4] {
    [y[0], y[0].add(y[1]), y[0].sub(y[1]), isa.zero().sub(y[1])]
}

/// `A y` for F(4,3): 4 -> 6.
#[inline(always)]
fn a_f4<S: Isa>(isa: S, y: [S::V; 4]) -> [S::V; 6] {
    let (even1, odd1) = (y[0].add(y[2]), y[1].add(y[3]));
    let four = isa.splat(4.0);
    let (even4, odd4) = (y[2].mul_add(four, y[0]), y[3].mul_add(four, y[1]));
    let two = isa.splat(2.0);
    [y[0], even1.add(odd1), even1.sub(odd1), odd4.mul_add(two, even4), odd4.mul_add(isa.splat(-2.0), even4), y[3]]
}

/// Gradient of the output transform for one tile, channels `[c, c + S::LANES)`:
/// `dM = A dY A^T` from the `2 x 2` output-gradient pixels `src[i * 2 + j] + c`
/// (a zero row past the output's edge); `dM[e]` goes to `dst + e * estride + c`.
///
/// # Safety
/// Every address formed is valid for `LANES` reads/writes, and the token `isa`
/// proves the instruction set.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // j indexes both the loads and a column of `cols`
pub(super) unsafe fn grad_tile_f2<S: Isa>(isa: S, src: &[*const f32; 4], c: usize, dst: *mut f32, estride: usize) {
    // SAFETY: the pointer contract is the caller's (see # Safety).
    unsafe {
        let mut rows = [[isa.zero(); 2]; 4];
        for j in 0..2 {
            let r = a_f2(isa, [isa.load(src[j].add(c)), isa.load(src[2 + j].add(c))]);
            for i in 0..4 {
                rows[i][j] = r[i];
            }
        }
        for (i, row) in rows.into_iter().enumerate() {
            for (k, v) in a_f2(isa, row).into_iter().enumerate() {
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
pub(super) unsafe fn grad_tile_f4<S: Isa>(isa: S, src: &[*const f32; 16], c: usize, dst: *mut f32, estride: usize) {
    // SAFETY: the pointer contract is the caller's (see # Safety).
    unsafe {
        let mut rows = [[isa.zero(); 4]; 6];
        for j in 0..4 {
            let col = [
                isa.load(src[j].add(c)),
                isa.load(src[4 + j].add(c)),
                isa.load(src[8 + j].add(c)),
                isa.load(src[12 + j].add(c)),
            ];
            let r = a_f4(isa, col);
            for i in 0..6 {
                rows[i][j] = r[i];
            }
        }
        for (i, row) in rows.into_iter().enumerate() {
            for (k, v) in a_f4(isa, row).into_iter().enumerate() {
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
fn g_f2<S: Isa>(isa: S, g: [S::V; 3]) -> [S::V; 4] {
    let (half, zero) = (isa.splat(0.5), isa.zero());
    let s02 = g[0].add(g[2]);
    [g[0], s02.add(g[1]).mul_add(half, zero), s02.sub(g[1]).mul_add(half, zero), g[2]]
}

/// `G g` for F(4,3): 3 taps -> 6.
#[inline(always)]
fn g_f4<S: Isa>(isa: S, g: [S::V; 3]) -> [S::V; 6] {
    let zero = isa.zero();
    let (sixth, twenty_fourth) = (isa.splat(-1.0 / 6.0), isa.splat(1.0 / 24.0));
    let s02 = g[0].add(g[2]);
    let s04 = g[2].mul_add(isa.splat(4.0), g[0]);
    let g1x2 = g[1].add(g[1]);
    [
        g[0].mul_add(isa.splat(0.25), zero),
        s02.add(g[1]).mul_add(sixth, zero),
        s02.sub(g[1]).mul_add(sixth, zero),
        s04.add(g1x2).mul_add(twenty_fourth, zero),
        s04.sub(g1x2).mul_add(twenty_fourth, zero),
        g[2],
    ]
}

/// Filter transform `U = G g G^T` of input channel `ci` for output channels
/// `[co, co + S::LANES)`: `g[tap]` is read at `filter + (tap * c_in + ci) *
/// c_out + co` (HWIO), and tile element `e` is stored at `dst(e) + co_offset`
/// where `dst(e) = base + e * estride`.
///
/// # Safety
/// `filter` holds the HWIO filter with `co + LANES <= c_out`; every
/// `base + e * estride` is valid for `LANES` writes; the token `isa` proves the instruction set.
#[inline(always)]
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
pub(super) unsafe fn filter_transform<S: Isa, const F4: bool>(
    isa: S,
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
        let tap = |t: usize| isa.load(filter.add((t * c_in + ci) * c_out + co));
        let g = [[tap(0), tap(1), tap(2)], [tap(3), tap(4), tap(5)], [tap(6), tap(7), tap(8)]];
        if F4 {
            let mut rows = [[isa.zero(); 3]; 6];
            for kx in 0..3 {
                let col = g_f4(isa, [g[0][kx], g[1][kx], g[2][kx]]);
                for a in 0..6 {
                    rows[a][kx] = col[a];
                }
            }
            for (a, row) in rows.into_iter().enumerate() {
                for (b, u) in g_f4(isa, row).into_iter().enumerate() {
                    u.store(base.add((a * 6 + b) * estride));
                }
            }
        } else {
            let mut rows = [[isa.zero(); 3]; 4];
            for kx in 0..3 {
                let col = g_f2(isa, [g[0][kx], g[1][kx], g[2][kx]]);
                for a in 0..4 {
                    rows[a][kx] = col[a];
                }
            }
            for (a, row) in rows.into_iter().enumerate() {
                for (b, u) in g_f2(isa, row).into_iter().enumerate() {
                    u.store(base.add((a * 4 + b) * estride));
                }
            }
        }
    }
}
