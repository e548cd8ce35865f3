//! Single-precision GEMM over slices: our own packed, register-tiled GEMM
//! (AVX-512 12x32, AVX2+FMA 6x16, portable 4x8 micro-kernels), with
//! `matrixmultiply` kept as the test reference.
//!
//! [`sgemm`] is the safe public entry point; the conv kernels call the
//! crate-internal `sgemm_strided`, which takes raw strided pointers so a
//! task can multiply into a sub-block of a larger matrix.
//!
//! Why our own: `matrixmultiply` 0.3 allocates its packing buffers on every
//! call, and the training step must not touch the heap once warm; ours packs
//! into growth-only thread-local scratch. The loop nest is the classic
//! Goto/BLIS one (as in matrixmultiply): split N into `NC` blocks, K into
//! `KC` blocks (pack that `KC x NC` block of B into `NR`-wide panels), M into
//! `MC` blocks (pack `MC x KC` of A into `MR`-tall panels), then the
//! micro-kernel multiplies one A panel by one B panel into an `MR x NR`
//! register tile and updates C. A one-row product (`m == 1`, B rows
//! contiguous: a dense layer at batch 1) skips the packing and runs as a
//! matrix-vector product (`crate::gemv`), with the same bits. Single-threaded: callers (im2col, dense)
//! split their work over rayon tasks themselves.

use crate::arch::{scratch_f32, Isa, Slot, Token, Vf32};
#[cfg(target_arch = "x86_64")]
use crate::arch::{Avx2, Avx512};
use crate::{Error, Result};

/// A row-major matrix operand: `rows x cols` with a row stride (`ld`, in
/// elements, >= cols), optionally read transposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatLayout {
    /// Rows as stored.
    pub rows: usize,
    /// Columns as stored.
    pub cols: usize,
    /// Distance between rows, in elements.
    pub ld: usize,
}

impl MatLayout {
    /// A dense row-major `rows x cols` matrix.
    pub fn dense(rows: usize, cols: usize) -> Self {
        MatLayout { rows, cols, ld: cols }
    }

    fn needed(&self) -> Option<usize> {
        if self.rows == 0 || self.cols == 0 {
            return Some(0);
        }
        (self.rows - 1).checked_mul(self.ld)?.checked_add(self.cols)
    }
}

/// `c = alpha * op(a) * op(b) + beta * c`, where `op` transposes when asked.
///
/// `a` is stored as `a_layout`, `b` as `b_layout`, `c` is dense row-major
/// `m x n` with `m = rows of op(a)`, `n = cols of op(b)`. With `beta == 0`,
/// `c` is not read (it may hold NaN). Runs on the process-wide SIMD level
/// ([`crate::simd::try_level`]); a `CONVNET_SIMD` level this CPU lacks is an
/// [`Error::Simd`].
///
/// ```
/// use convnet_kernels::gemm::{sgemm, MatLayout};
/// let a = [1.0, 2.0, 3.0, 4.0]; // 2x2
/// let b = [1.0, 0.0, 0.0, 1.0]; // identity
/// let mut c = [f32::NAN; 4];
/// sgemm(1.0, &a, MatLayout::dense(2, 2), false, &b, MatLayout::dense(2, 2), false, 0.0, &mut c)?;
/// assert_eq!(c, a);
/// # Ok::<(), convnet_kernels::Error>(())
/// ```
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    alpha: f32,
    a: &[f32],
    a_layout: MatLayout,
    transpose_a: bool,
    b: &[f32],
    b_layout: MatLayout,
    transpose_b: bool,
    beta: f32,
    c: &mut [f32],
) -> Result<()> {
    sgemm_at(crate::simd::try_level()?, alpha, a, a_layout, transpose_a, b, b_layout, transpose_b, beta, c)
}

/// [`sgemm`] on an explicit SIMD level (an [`Error::Simd`] if this CPU cannot
/// run it): tests run every micro-kernel through this without touching the
/// process-wide level.
#[allow(clippy::too_many_arguments)] // sgemm's arguments, plus the level
pub fn sgemm_at(
    level: crate::simd::SimdLevel,
    alpha: f32,
    a: &[f32],
    a_layout: MatLayout,
    transpose_a: bool,
    b: &[f32],
    b_layout: MatLayout,
    transpose_b: bool,
    beta: f32,
    c: &mut [f32],
) -> Result<()> {
    let token = Token::new(level)?;
    let (m, k) = if transpose_a { (a_layout.cols, a_layout.rows) } else { (a_layout.rows, a_layout.cols) };
    let (k2, n) = if transpose_b { (b_layout.cols, b_layout.rows) } else { (b_layout.rows, b_layout.cols) };
    let bad = |what: &str| Error::InvalidShape {
        shape: format!("gemm a {a_layout:?} t={transpose_a}, b {b_layout:?} t={transpose_b}"),
        reason: what.to_string(),
    };
    if k != k2 {
        return Err(bad("inner dimensions differ"));
    }
    if a_layout.ld < a_layout.cols || b_layout.ld < b_layout.cols {
        return Err(bad("leading dimension smaller than the column count"));
    }
    if a_layout.needed().is_none_or(|need| a.len() < need) {
        return Err(bad("a is too short for its layout"));
    }
    if b_layout.needed().is_none_or(|need| b.len() < need) {
        return Err(bad("b is too short for its layout"));
    }
    if m.checked_mul(n).is_none_or(|need| c.len() != need) {
        return Err(bad("c does not hold m*n elements"));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        if beta == 0.0 {
            c.fill(0.0);
        } else {
            c.iter_mut().for_each(|x| *x *= beta);
        }
        return Ok(());
    }
    let (rsa, csa) = if transpose_a { (1, a_layout.ld) } else { (a_layout.ld, 1) };
    let (rsb, csb) = if transpose_b { (1, b_layout.ld) } else { (b_layout.ld, 1) };
    let _ftz = crate::arch::FtzGuard::new();
    let g = Gemm {
        m,
        k,
        n,
        alpha,
        a: a.as_ptr(),
        rsa,
        csa,
        b: b.as_ptr(),
        rsb,
        csb,
        beta,
        c: c.as_mut_ptr(),
        rsc: n,
        csc: 1,
    };
    // SAFETY: the checks above prove every index the GEMM forms lies in
    // bounds: op(a) is m x k with strides (rsa, csa) inside `a` (its last
    // element is at (rows-1)*ld + cols-1 < a.len()), likewise op(b) inside `b`,
    // and c is dense m x n with strides (n, 1) and exactly m*n elements.
    unsafe { gemm_at(token, &g) };
    Ok(())
}

/// Rows of A packed per block (a multiple of every `MR`: 12, 6 and 4).
/// 96 x [`KC`] floats = 96 KiB: stays in L2 next to the B block.
const MC: usize = 96;
/// Depth of one packed block. 256: an A panel (12 x 256 floats, 12 KiB)
/// and a B panel (256 x 32 floats, 32 KiB) fit L1 together.
pub(crate) const KC: usize = 256;
/// Vectors per micro-kernel row (its width `NR` is this times the lanes):
/// AVX-512 12x32, AVX2 6x16, portable 4x8. The one-row path needs `NR` to
/// store each column as the micro-kernel would.
const AVX512_NV: usize = 2;
/// See [`AVX512_NV`].
const AVX2_NV: usize = 2;
/// See [`AVX512_NV`].
const PORTABLE_NV: usize = 1;
/// Columns of B packed per block: 512 x [`KC`] floats = 512 KiB, in L2.
const NC: usize = 512;

/// `c = alpha * a * b + beta * c` on the raw strided operands of `g`, on
/// `token`'s instruction set; with `beta == 0`, `c` is not read.
/// Allocation-free once warm.
///
/// # Safety
///
/// Every element the strides address must be in bounds of its allocation,
/// `c` must be valid for writes, and no other thread may access the part of
/// `c` this call writes while it runs.
#[inline]
pub(crate) unsafe fn sgemm_strided(token: Token, g: &Gemm) {
    // SAFETY: forwarded from the caller's contract.
    unsafe { gemm_at(token, g) }
}

/// One GEMM problem on raw strided operands, `c = alpha * a * b + beta * c`:
/// `a` is `m x k` with strides `(rsa, csa)`, `b` is `k x n` with `(rsb, csb)`,
/// `c` is `m x n` with `(rsc, csc)` (strides in elements).
pub(crate) struct Gemm {
    pub(crate) m: usize,
    pub(crate) k: usize,
    pub(crate) n: usize,
    pub(crate) alpha: f32,
    pub(crate) a: *const f32,
    pub(crate) rsa: usize,
    pub(crate) csa: usize,
    pub(crate) b: *const f32,
    pub(crate) rsb: usize,
    pub(crate) csb: usize,
    pub(crate) beta: f32,
    pub(crate) c: *mut f32,
    pub(crate) rsc: usize,
    pub(crate) csc: usize,
}

/// Runs `g` with the micro-kernel of `token`'s instruction set.
///
/// # Safety
///
/// As [`sgemm_strided`].
unsafe fn gemm_at(token: Token, g: &Gemm) {
    if g.m == 0 || g.n == 0 {
        return;
    }
    if g.k == 0 {
        for i in 0..g.m {
            for j in 0..g.n {
                // SAFETY: (i, j) is inside c.
                unsafe {
                    let p = g.c.add(i * g.rsc + j * g.csc);
                    *p = if g.beta == 0.0 { 0.0 } else { *p * g.beta };
                }
            }
        }
        return;
    }
    // SAFETY: forwarded contract (k > 0 here).
    unsafe { gemm_at_path(token, g, g.m != 1 || g.csb != 1) }
}

/// Runs `g` (with `k > 0`) on the blocked loop nest, or, if not `blocked`,
/// on the one-row product of [`crate::gemv`] (which needs `m == 1`,
/// `csb == 1`, and gives the same bits).
///
/// # Safety
///
/// As [`sgemm_strided`].
pub(crate) unsafe fn gemm_at_path(token: Token, g: &Gemm, blocked: bool) {
    if !blocked {
        let nr = match token {
            #[cfg(target_arch = "x86_64")]
            Token::Avx512(_) => AVX512_NV * 16,
            #[cfg(target_arch = "x86_64")]
            Token::Avx2(_) => AVX2_NV * 8,
            Token::Portable(_) => PORTABLE_NV * 8,
        };
        // SAFETY: forwarded contract; the caller checked m == 1 and csb == 1.
        return unsafe { crate::gemv::gemv_at(token, g, nr) };
    }
    match token {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the token proves AVX-512F/AVX2/FMA; the operands are the caller's contract.
        Token::Avx512(isa) => unsafe { gemm_avx512(isa, g) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the token proves AVX2/FMA; the operands are the caller's contract.
        Token::Avx2(isa) => unsafe { gemm_avx2(isa, g) },
        // SAFETY: the operands are the caller's contract.
        Token::Portable(isa) => unsafe { gemm_blocked::<_, 4, PORTABLE_NV>(isa, g) },
    }
}

/// # Safety
/// As [`sgemm_strided`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn gemm_avx512(isa: Avx512, g: &Gemm) {
    // SAFETY: forwarded contract.
    unsafe { gemm_blocked::<_, 12, AVX512_NV>(isa, g) }
}

/// # Safety
/// As [`sgemm_strided`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gemm_avx2(isa: Avx2, g: &Gemm) {
    // SAFETY: forwarded contract.
    unsafe { gemm_blocked::<_, 6, AVX2_NV>(isa, g) }
}

/// The blocked loop nest around the `MR x (NV * LANES)` micro-kernel.
///
/// # Safety
///
/// As [`sgemm_strided`].
#[inline(always)]
unsafe fn gemm_blocked<S: Isa, const MR: usize, const NV: usize>(isa: S, g: &Gemm) {
    let nr = NV * S::LANES;
    let mut bp = scratch_f32(Slot::GemmB, KC * NC.next_multiple_of(nr));
    let mut ap = scratch_f32(Slot::GemmA, MC * KC);
    // LOOP 5: split n into NC-wide blocks.
    for jc in (0..g.n).step_by(NC) {
        let nc = NC.min(g.n - jc);
        let panels_n = nc.div_ceil(nr);
        // LOOP 4: split k into KC-deep blocks; pack B once per block.
        for pc in (0..g.k).step_by(KC) {
            let kc = KC.min(g.k - pc);
            for jp in 0..panels_n {
                let dst = &mut bp[jp * kc * nr..(jp + 1) * kc * nr];
                let col0 = jc + jp * nr;
                let w = nr.min(g.n - col0);
                for (kk, drow) in dst.chunks_exact_mut(nr).enumerate() {
                    // SAFETY: row pc+kk, columns col0..col0+w are inside op(b).
                    let src = unsafe { g.b.add((pc + kk) * g.rsb + col0 * g.csb) };
                    if g.csb == 1 {
                        // SAFETY: w contiguous floats (csb == 1).
                        drow[..w].copy_from_slice(unsafe { std::slice::from_raw_parts(src, w) });
                    } else {
                        for (j, d) in drow[..w].iter_mut().enumerate() {
                            // SAFETY: column col0+j < n.
                            *d = unsafe { *src.add(j * g.csb) };
                        }
                    }
                    drow[w..].fill(0.0);
                }
            }
            let beta = if pc == 0 { g.beta } else { 1.0 };
            // LOOP 3: split m into MC-tall blocks; pack A.
            for ic in (0..g.m).step_by(MC) {
                let mc = MC.min(g.m - ic);
                let panels_m = mc.div_ceil(MR);
                for ip in 0..panels_m {
                    let dst = &mut ap[ip * kc * MR..(ip + 1) * kc * MR];
                    let row0 = ic + ip * MR;
                    let h = MR.min(g.m - row0);
                    // MR source rows (or columns, when A is transposed) read
                    // in parallel, the panel written contiguously.
                    let mut src = [g.a; MR];
                    for (i, s) in src.iter_mut().enumerate().take(h) {
                        // SAFETY: row row0+i < m of op(a), column pc.
                        *s = unsafe { g.a.add((row0 + i) * g.rsa + pc * g.csa) };
                    }
                    for (kk, drow) in dst.chunks_exact_mut(MR).enumerate() {
                        for i in 0..MR {
                            drow[i] = if i < h {
                                // SAFETY: (row0+i, pc+kk) is inside op(a).
                                unsafe { *src[i].add(kk * g.csa) }
                            } else {
                                0.0
                            };
                        }
                    }
                }
                // LOOPS 2 and 1: B panels, A panels; the micro-kernel.
                for jp in 0..panels_n {
                    let cols = nr.min(nc - jp * nr);
                    for ip in 0..panels_m {
                        let rows = MR.min(mc - ip * MR);
                        let i0 = ic + ip * MR;
                        let j0 = jc + jp * nr;
                        // SAFETY: the panels hold kc x MR and kc x nr
                        // floats; the C tile (rows x cols at (i0, j0)) is
                        // inside c.
                        unsafe {
                            micro::<S, MR, NV>(
                                isa,
                                kc,
                                ap[ip * kc * MR..].as_ptr(),
                                bp[jp * kc * nr..].as_ptr(),
                                g.c.add(i0 * g.rsc + j0 * g.csc),
                                g.rsc,
                                g.csc,
                                rows,
                                cols,
                                g.alpha,
                                beta,
                            )
                        };
                    }
                }
            }
        }
    }
}

/// `C[rows x cols] = alpha * A_panel * B_panel + beta * C` (C not read when
/// `beta == 0`), over an `MR x NV*LANES` register tile.
///
/// # Safety
///
/// `a` holds `kc * MR` floats, `b` holds `kc * NV * LANES`; the
/// `rows x cols` tile of C at `c` with strides `(rsc, csc)` is writable.
#[allow(clippy::too_many_arguments)]
#[allow(clippy::needless_range_loop)]
#[inline(always)]
unsafe fn micro<S: Isa, const MR: usize, const NV: usize>(
    isa: S,
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    rsc: usize,
    csc: usize,
    rows: usize,
    cols: usize,
    alpha: f32,
    beta: f32,
) {
    let nr = NV * S::LANES;
    let mut acc = [[isa.zero(); NV]; MR];
    for kk in 0..kc {
        let mut bv = [isa.zero(); NV];
        for j in 0..NV {
            // SAFETY: row kk of the B panel holds nr floats.
            bv[j] = unsafe { isa.load(b.add(kk * nr + j * S::LANES)) };
        }
        for i in 0..MR {
            // SAFETY: row kk of the A panel holds MR floats.
            let av = isa.splat(unsafe { *a.add(kk * MR + i) });
            for j in 0..NV {
                acc[i][j] = av.mul_add(bv[j], acc[i][j]);
            }
        }
    }
    let va = isa.splat(alpha);
    let vb = isa.splat(beta);
    if csc == 1 && cols == nr {
        for i in 0..rows {
            for j in 0..NV {
                // SAFETY: row i < rows, columns j*LANES.. < cols are in the tile.
                unsafe {
                    let p = c.add(i * rsc + j * S::LANES);
                    let v = if beta == 0.0 {
                        acc[i][j].mul_add(va, isa.zero())
                    } else {
                        acc[i][j].mul_add(va, isa.load(p).mul_add(vb, isa.zero()))
                    };
                    v.store(p);
                }
            }
        }
    } else {
        let mut tmp = [0f32; 64];
        for i in 0..rows {
            for j in 0..NV {
                // SAFETY: tmp holds 64 >= NV*LANES floats.
                unsafe { acc[i][j].store(tmp.as_mut_ptr().add(j * S::LANES)) };
            }
            for (j, &t) in tmp[..cols].iter().enumerate() {
                // SAFETY: (i, j) is inside the tile.
                unsafe {
                    let p = c.add(i * rsc + j * csc);
                    *p = if beta == 0.0 { alpha * t } else { alpha * t + beta * *p };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize, seed: u32) -> Vec<f32> {
        (0..len).map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 500.0 - 1.0).collect()
    }

    /// Our GEMM against matrixmultiply at every SIMD level, over transposes,
    /// padded leading dimensions, beta 0 (C poisoned with NaN) and beta != 0,
    /// and sizes that cross every block edge.
    #[test]
    fn matches_matrixmultiply_at_every_level() {
        let sizes = [(1, 1, 1), (3, 5, 7), (13, 300, 33), (100, 257, 520), (97, 9, 32), (12, 520, 1)];
        for level in crate::simd::SimdLevel::available() {
            let token = Token::new(level).unwrap();
            for &(m, k, n) in &sizes {
                for (ta, tb, beta) in [(false, false, 0.0), (true, false, 0.5), (false, true, 1.0), (true, true, 0.0)] {
                    let (ar, ac) = if ta { (k, m) } else { (m, k) };
                    let (br, bc) = if tb { (n, k) } else { (k, n) };
                    let (lda, ldb) = (ac + 3, bc + 1);
                    let a = data(ar * lda, 1);
                    let b = data(br * ldb, 2);
                    let c0 = data(m * n, 3);
                    let (rsa, csa) = if ta { (1, lda) } else { (lda, 1) };
                    let (rsb, csb) = if tb { (1, ldb) } else { (ldb, 1) };
                    let mut want = c0.clone();
                    // SAFETY: strides address inside a, b; c is m x n dense.
                    unsafe {
                        matrixmultiply::sgemm(
                            m,
                            k,
                            n,
                            0.75,
                            a.as_ptr(),
                            rsa as isize,
                            csa as isize,
                            b.as_ptr(),
                            rsb as isize,
                            csb as isize,
                            beta,
                            want.as_mut_ptr(),
                            n as isize,
                            1,
                        )
                    };
                    let mut got = if beta == 0.0 { vec![f32::NAN; m * n] } else { c0.clone() };
                    let g = Gemm {
                        m,
                        k,
                        n,
                        alpha: 0.75,
                        a: a.as_ptr(),
                        rsa,
                        csa,
                        b: b.as_ptr(),
                        rsb,
                        csb,
                        beta,
                        c: got.as_mut_ptr(),
                        rsc: n,
                        csc: 1,
                    };
                    // SAFETY: as above.
                    unsafe { gemm_at(token, &g) };
                    for (i, (x, y)) in got.iter().zip(&want).enumerate() {
                        assert!(
                            (x - y).abs() <= 1e-5 * k as f32,
                            "{level:?} {m}x{k}x{n} ta={ta} tb={tb} [{i}]: {x} vs {y}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn identity_product_is_exact() {
        let n = 37;
        let a = data(n * n, 4);
        let mut id = vec![0.0; n * n];
        for i in 0..n {
            id[i * n + i] = 1.0;
        }
        let mut c = vec![f32::NAN; n * n];
        sgemm(1.0, &a, MatLayout::dense(n, n), false, &id, MatLayout::dense(n, n), false, 0.0, &mut c).unwrap();
        assert_eq!(c, a);
    }
}
