//! The one-row case of the GEMM, `c[1 x n] = alpha * a[1 x k] * b[k x n] +
//! beta * c`, as a matrix-vector product that streams B once, in place:
//! what a dense layer does at batch 1 (the chapter model's `Dense(64)` on
//! 576 features: 147 KiB of weights, 74 KFLOP).
//!
//! The blocked GEMM ([`super::gemm`]) spends such a call packing all of B
//! (a 147 KiB copy) and running its `MR`-row micro-kernel with `MR - 1` rows
//! of zero padding; here each row of B is read once, straight from the
//! caller's matrix, into `COLS` columns of accumulators.
//!
//! **Bit-identical to the blocked GEMM** on the same SIMD level, so routing
//! `m == 1` here changes no result anywhere (the dense layer's tape forward
//! and the inference plan stay equal bit for bit): every output starts at
//! zero and takes one `mul_add` per `k` in ascending order within each
//! [`KC`](super::gemm)-deep block, exactly the micro-kernel's chain; the
//! first block is stored with the GEMM's `beta`, later blocks are added with
//! `beta = 1`; and each column is stored with the formula the GEMM uses for
//! it (a vector `mul_add` for columns in a full `NR`-wide panel, scalar
//! arithmetic for the columns of a partial last panel). The tests check the
//! equality bit for bit at every level.

#[cfg(target_arch = "x86_64")]
use crate::arch::{Avx2, Avx512};
use crate::arch::{Isa, Token, Vf32};
use crate::gemm::{Gemm, KC};

/// Columns of C per pass over a K block: 64 (four zmm, eight ymm or eight
/// `wide` vectors of accumulators). Eight independent ymm chains cover the
/// FMA latency (4 cycles) at two FMAs per cycle; four zmm chains cover it
/// where a 512-bit FMA issues once per cycle (Zen 4), half of it on Zen 5.
/// The weights stream from L2 at batch 1 anyway.
const COLS: usize = 64;

/// Runs `g` (which must have `m == 1` and `csb == 1`) on `token`'s
/// instruction set; `nr` is the blocked GEMM's panel width on that
/// instruction set (it decides each column's store formula).
///
/// # Safety
///
/// As [`super::gemm::sgemm_strided`]; `g.m == 1`, `g.csb == 1`, `g.k > 0`.
pub(crate) unsafe fn gemv_at(token: Token, g: &Gemm, nr: usize) {
    debug_assert!(g.m == 1 && g.csb == 1 && g.k > 0);
    match token {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the token proves AVX-512F/AVX2/FMA; the operands are the caller's contract.
        Token::Avx512(isa) => unsafe { gemv_avx512(isa, g, nr) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the token proves AVX2/FMA; the operands are the caller's contract.
        Token::Avx2(isa) => unsafe { gemv_avx2(isa, g, nr) },
        // SAFETY: the operands are the caller's contract.
        Token::Portable(isa) => unsafe { gemv::<_, { COLS / 8 }>(isa, g, nr) },
    }
}

/// # Safety
/// As [`gemv_at`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn gemv_avx512(isa: Avx512, g: &Gemm, nr: usize) {
    // SAFETY: forwarded contract.
    unsafe { gemv::<_, { COLS / 16 }>(isa, g, nr) }
}

/// # Safety
/// As [`gemv_at`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gemv_avx2(isa: Avx2, g: &Gemm, nr: usize) {
    // SAFETY: forwarded contract.
    unsafe { gemv::<_, { COLS / 8 }>(isa, g, nr) }
}

/// The loop nest: column groups of `V` vectors, K blocks of `KC` in order,
/// one `mul_add` chain per column.
///
/// # Safety
/// As [`gemv_at`].
#[inline(always)]
unsafe fn gemv<S: Isa, const V: usize>(isa: S, g: &Gemm, nr: usize) {
    let lanes = S::LANES;
    // The blocked GEMM stores with a vector only for full panels of a
    // unit-stride C.
    let full_panel_cols = if g.csc == 1 { g.n / nr * nr } else { 0 };
    for j0 in (0..g.n).step_by(V * lanes) {
        let width = (V * lanes).min(g.n - j0);
        // Vectors with all lanes inside `n`; then at most one partial vector.
        let whole = width / lanes;
        let rem = width % lanes;
        for pc in (0..g.k).step_by(KC) {
            let kc = KC.min(g.k - pc);
            let mut acc = [isa.zero(); V];
            for kk in pc..pc + kc {
                // SAFETY: column kk of the single row of A is in bounds.
                let x = isa.splat(unsafe { *g.a.add(kk * g.csa) });
                // SAFETY: row kk of B holds columns j0..j0 + width (csb == 1).
                let row = unsafe { g.b.add(kk * g.rsb + j0) };
                for (v, a) in acc.iter_mut().enumerate().take(whole) {
                    // SAFETY: lanes v*LANES.. of this row are columns < n.
                    let w = unsafe { isa.load(row.add(v * lanes)) };
                    *a = x.mul_add(w, *a);
                }
                if rem > 0 {
                    let mut pad = [0f32; 16];
                    // SAFETY: `rem` columns remain in the row; pad holds 16 >= LANES floats.
                    let w = unsafe {
                        std::ptr::copy_nonoverlapping(row.add(whole * lanes), pad.as_mut_ptr(), rem);
                        isa.load(pad.as_ptr())
                    };
                    acc[whole] = x.mul_add(w, acc[whole]);
                }
            }
            let beta = if pc == 0 { g.beta } else { 1.0 };
            for (v, a) in acc.iter().enumerate().take(whole + usize::from(rem > 0)) {
                let col0 = j0 + v * lanes;
                let count = lanes.min(g.n - col0);
                // SAFETY: columns col0..col0 + count are inside C's single row.
                unsafe { store(isa, *a, g, col0, count, beta, full_panel_cols) };
            }
        }
    }
}

/// Stores `count` lanes of `acc` to columns `col0..` of C with the blocked
/// GEMM's formulas: a vector `mul_add` for columns before
/// `full_panel_cols`, scalar arithmetic after (its partial-panel path).
///
/// # Safety
///
/// Columns `col0..col0 + count` of C's row are valid (strided by `csc`),
/// `count <= LANES`.
#[inline(always)]
unsafe fn store<S: Isa>(isa: S, acc: S::V, g: &Gemm, col0: usize, count: usize, beta: f32, full_panel_cols: usize) {
    let (mut raw, mut old, mut vec) = ([0f32; 16], [0f32; 16], [0f32; 16]);
    // SAFETY: each array holds 16 >= LANES floats; C's columns are valid (contract).
    unsafe {
        acc.store(raw.as_mut_ptr());
        if beta != 0.0 {
            for (i, o) in old.iter_mut().enumerate().take(count) {
                *o = *g.c.add((col0 + i) * g.csc);
            }
        }
        let (va, vb) = (isa.splat(g.alpha), isa.splat(beta));
        let v = if beta == 0.0 {
            acc.mul_add(va, isa.zero())
        } else {
            acc.mul_add(va, isa.load(old.as_ptr()).mul_add(vb, isa.zero()))
        };
        v.store(vec.as_mut_ptr());
        for i in 0..count {
            let t = raw[i];
            let out = if col0 + i < full_panel_cols {
                vec[i]
            } else if beta == 0.0 {
                g.alpha * t
            } else {
                g.alpha * t + beta * old[i]
            };
            *g.c.add((col0 + i) * g.csc) = out;
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::arch::Token;
    use crate::gemm::Gemm;

    fn data(len: usize, seed: u32) -> Vec<f32> {
        (0..len).map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 500.0 - 1.0).collect()
    }

    /// Runs the one-row product through `gemm_at` (which routes it here) and
    /// through the blocked loop nest directly, at every level: equal bit for
    /// bit, over sizes that cross the K block (256) and every panel edge,
    /// strided A and C, alpha != 1 and beta 0 (C poisoned), 0.5 and 1.
    #[test]
    fn equals_the_blocked_gemm_bit_for_bit_at_every_level() {
        let sizes = [(1, 1), (5, 7), (576, 64), (64, 10), (300, 33), (513, 97), (257, 16), (9, 200)];
        for token in Token::every() {
            for &(k, n) in &sizes {
                for (alpha, beta) in [(1.0, 0.0), (0.75, 0.5), (1.0, 1.0), (-1.5, 0.0)] {
                    for (csa, csc, ldb) in [(1, 1, n), (3, 2, n + 5)] {
                        let a = data(k * csa, 1);
                        let b = data(k * ldb, 2);
                        let c0 = data(n * csc, 3);
                        let run = |blocked: bool| {
                            let mut c = if beta == 0.0 { vec![f32::NAN; n * csc] } else { c0.clone() };
                            let g = Gemm {
                                m: 1,
                                k,
                                n,
                                alpha,
                                a: a.as_ptr(),
                                rsa: k * csa,
                                csa,
                                b: b.as_ptr(),
                                rsb: ldb,
                                csb: 1,
                                beta,
                                c: c.as_mut_ptr(),
                                rsc: n * csc,
                                csc,
                            };
                            // SAFETY: the strides address inside a, b and c.
                            unsafe { crate::gemm::gemm_at_path(token, &g, blocked) };
                            c
                        };
                        let (got, want) = (run(false), run(true));
                        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                        assert_eq!(
                            bits(&got),
                            bits(&want),
                            "{:?} k={k} n={n} alpha={alpha} beta={beta} csa={csa} csc={csc}",
                            token.level()
                        );
                    }
                }
            }
        }
    }
}
