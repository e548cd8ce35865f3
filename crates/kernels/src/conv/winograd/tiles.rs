//! Tile gathering of the Winograd driver: each tile's pixel pointers (a zero
//! row outside the image, a sink row outside the output) and the input and
//! output transforms over them, `LANES` channels at a time with scalar lanes
//! for the remainder.

use super::transforms::{input_tile_f2, input_tile_f4, output_tile_f2, output_tile_f4};
use super::{Problem, Variant};
#[cfg(target_arch = "x86_64")]
use crate::arch::{Avx2, Avx512};
use crate::arch::{Isa, Scalar, Token};

/// Input transform of tiles `first .. first + count` into `v` (`[e][count][c_in]`).
pub(super) fn input_block(
    p: &Problem,
    token: Token,
    input: &[f32],
    first: usize,
    count: usize,
    zeros: &[f32],
    v: &mut [f32],
) {
    assert!(zeros.len() >= p.c_in && v.len() >= p.variant.elems() * count * p.c_in);
    assert_eq!(input.len(), p.n * p.in_h * p.in_w * p.c_in);
    let args = InputArgs { input: input.as_ptr(), zeros: zeros.as_ptr(), v: v.as_mut_ptr(), estride: count * p.c_in };
    // SAFETY: `input` is the problem's input and `zeros` holds c_in zeros
    // (asserted); `v` holds t*t rows of `count * c_in` floats (asserted), so
    // tile b's element e row at b*c_in + e*count*c_in is inside it, and `v`
    // is borrowed mutably here, so no other thread touches it.
    unsafe { input_block_raw(p, token, &args, first, count) }
}

/// Input transform of tiles `first .. first + count`: tile `b`'s element `e`
/// (its `c_in` channels) goes to `args.v + e * args.estride + b * c_in`.
///
/// # Safety
/// `args.input` is the problem's NHWC input, `args.zeros` holds at least
/// `c_in` zeros, and every `v + e * estride + b * c_in` (e < t*t, b < count)
/// is valid for `c_in` writes that no other thread touches concurrently.
pub(super) unsafe fn input_block_raw(p: &Problem, token: Token, args: &InputArgs, first: usize, count: usize) {
    // Soundness of every arm below: the tile gather only forms pointers to pixels inside
    // the input (bounds-checked per pixel) or into `zeros` (>= c_in floats);
    // writes stay inside the rows the caller guarantees.
    match token {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as noted above; the token proves AVX-512F, AVX2 and FMA.
        Token::Avx512(isa) => unsafe { input_block_avx512(isa, p, args, first, count) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as noted above; the token proves AVX2 and FMA.
        Token::Avx2(isa) => unsafe { input_block_avx2(isa, p, args, first, count) },
        // SAFETY: as noted above (the portable code needs no CPU feature).
        Token::Portable(isa) => unsafe { input_block_impl(isa, p, args, first, count) },
    }
}

/// Where the input transform reads and writes (see [`input_block_raw`]).
#[derive(Clone, Copy)]
pub(super) struct InputArgs {
    /// The problem's NHWC input.
    pub(super) input: *const f32,
    /// At least `c_in` zeros (pixels outside the image).
    pub(super) zeros: *const f32,
    /// Tile 0's element-0 row of `V`.
    pub(super) v: *mut f32,
    /// Distance between the rows of consecutive tile elements.
    pub(super) estride: usize,
}

/// # Safety
/// As [`input_block_impl`], on a CPU with AVX-512F, AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn input_block_avx512(isa: Avx512, p: &Problem, args: &InputArgs, first: usize, count: usize) {
    // SAFETY: forwarded contract; AVX-512F is enabled here.
    unsafe { input_block_impl(isa, p, args, first, count) }
}

/// # Safety
/// As [`input_block_impl`], on a CPU with AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn input_block_avx2(isa: Avx2, p: &Problem, args: &InputArgs, first: usize, count: usize) {
    // SAFETY: forwarded contract; AVX2 is enabled here.
    unsafe { input_block_impl(isa, p, args, first, count) }
}

/// Gathers each tile's `t x t` pixel pointers (the zero row outside the
/// image) and transforms `S::LANES` channels at a time, then the remainder
/// one channel at a time.
///
/// # Safety
/// As [`input_block_raw`]; the token `isa` proves the instruction set.
#[inline(always)]
unsafe fn input_block_impl<S: Isa>(isa: S, p: &Problem, args: &InputArgs, first: usize, count: usize) {
    let (m, t, c_in) = (p.variant.m(), p.variant.t(), p.c_in);
    let InputArgs { input, zeros, v, estride } = *args;
    let mut src = [zeros; 36];
    for b in 0..count {
        let (img, ty, tx) = p.tile_coords(first + b);
        let y0 = (ty * m) as isize - p.pad_top;
        let x0 = (tx * m) as isize - p.pad_left;
        for i in 0..t {
            let iy = y0 + i as isize;
            for j in 0..t {
                let ix = x0 + j as isize;
                let inside = iy >= 0 && (iy as usize) < p.in_h && ix >= 0 && (ix as usize) < p.in_w;
                src[i * t + j] = if inside {
                    // SAFETY: (img, iy, ix) is a pixel of the input, so its row of c_in floats is in bounds.
                    unsafe { input.add(((img * p.in_h + iy as usize) * p.in_w + ix as usize) * c_in) }
                } else {
                    zeros
                };
            }
        }
        // SAFETY: tile b's V rows start at b*c_in, inside v.
        let dst = unsafe { v.add(b * c_in) };
        // SAFETY: every src row holds c_in floats and every
        // dst + e*estride row c_in floats, and c + LANES <= c_in in each loop.
        unsafe {
            match p.variant {
                Variant::F2 => {
                    let src: &[*const f32; 16] = src.first_chunk().unwrap_or_else(|| unreachable!());
                    let mut c = 0;
                    while c + S::LANES <= c_in {
                        input_tile_f2::<S>(isa, src, c, dst, estride);
                        c += S::LANES;
                    }
                    for c in c..c_in {
                        input_tile_f2::<Scalar>(isa.scalar(), src, c, dst, estride);
                    }
                }
                Variant::F4 => {
                    let mut c = 0;
                    while c + S::LANES <= c_in {
                        input_tile_f4::<S>(isa, &src, c, dst, estride);
                        c += S::LANES;
                    }
                    for c in c..c_in {
                        input_tile_f4::<Scalar>(isa.scalar(), &src, c, dst, estride);
                    }
                }
            }
        }
    }
}

/// Output transform of tiles `first .. first + count` from `args.m`
/// (`[e][count][ldm]`) into the output, with bias and activation.
///
/// # Safety
/// `args.m` holds `t*t*count*ldm` floats, `args.bias` and `args.sink` `c_out`
/// each (the sink written by this thread only), `args.out` the problem's
/// NHWC output, whose pixels of these tiles no other thread writes.
pub(super) unsafe fn output_block(p: &Problem, token: Token, args: &OutputArgs, first: usize, count: usize) {
    // Soundness of every arm below: reads stay inside `m` and `bias`; writes
    // go to output pixels inside the image (each written by this block only)
    // or to `sink` (c_out floats): the caller's contract.
    match token {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as noted above; the token proves AVX-512F, AVX2 and FMA.
        Token::Avx512(isa) => unsafe { output_block_avx512(isa, p, args, first, count) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as noted above; the token proves AVX2 and FMA.
        Token::Avx2(isa) => unsafe { output_block_avx2(isa, p, args, first, count) },
        // SAFETY: as noted above (the portable code needs no CPU feature).
        Token::Portable(isa) => unsafe { output_block_impl(isa, p, args, first, count) },
    }
}

/// Where an output transform reads and writes (see [`output_block`], and
/// the pooled one of `pooled`).
pub(super) struct OutputArgs {
    /// Tile 0's element-0 row of `M` (`[e][count][ldm]`).
    pub(super) m: *const f32,
    /// Row length of `M`.
    pub(super) ldm: usize,
    /// `c_out` biases.
    pub(super) bias: *const f32,
    /// Whether the epilogue applies ReLU.
    pub(super) relu: bool,
    /// The NHWC output: the conv map, or the pooled map for the pooled transform.
    pub(super) out: *mut f32,
    /// `c_out` floats for pixels past the output's edges.
    pub(super) sink: *mut f32,
}

/// # Safety
/// As [`output_block_impl`], on a CPU with AVX-512F, AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn output_block_avx512(isa: Avx512, p: &Problem, args: &OutputArgs, first: usize, count: usize) {
    // SAFETY: forwarded contract; AVX-512F is enabled here.
    unsafe { output_block_impl(isa, p, args, first, count) }
}

/// # Safety
/// As [`output_block_impl`], on a CPU with AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn output_block_avx2(isa: Avx2, p: &Problem, args: &OutputArgs, first: usize, count: usize) {
    // SAFETY: forwarded contract; AVX2 is enabled here.
    unsafe { output_block_impl(isa, p, args, first, count) }
}

/// Points each tile's `m x m` output pixels at the output (or the sink row
/// past the bottom/right edge) and transforms `S::LANES` channels at a time,
/// then the remainder one channel at a time, group by group: output channel
/// `g * cog + j` reads `M`'s column `g * ldm_g + j` (`ldm_g = ldm / groups`).
///
/// # Safety
/// `args.m` holds `t*t*count*ldm` floats, `args.bias` and `args.sink` `c_out`,
/// `args.out` the problem's NHWC output with no other task writing these
/// tiles' pixels; the token `isa` proves the instruction set.
#[inline(always)]
unsafe fn output_block_impl<S: Isa>(isa: S, p: &Problem, args: &OutputArgs, first: usize, count: usize) {
    let (m, c_out, cog) = (p.variant.m(), p.c_out, p.cog());
    let estride = count * args.ldm;
    let ldm_g = args.ldm / p.groups;
    let mut dst = [args.sink; 16];
    for b in 0..count {
        let (img, ty, tx) = p.tile_coords(first + b);
        for i in 0..m {
            let oy = ty * m + i;
            for j in 0..m {
                let ox = tx * m + j;
                dst[i * m + j] = if oy < p.out_h && ox < p.out_w {
                    // SAFETY: (img, oy, ox) is an output pixel, its c_out floats are in bounds.
                    unsafe { args.out.add(((img * p.out_h + oy) * p.out_w + ox) * c_out) }
                } else {
                    args.sink
                };
            }
        }
        for g in 0..p.groups {
            let (lo, hi) = (g * cog, (g + 1) * cog);
            // Group g's M columns start at g * ldm_g: shifted by g * (ldm_g -
            // cog) >= 0, `src + c` is column g * ldm_g + (c - lo) for output
            // channel c in lo..hi.
            // SAFETY: tile b's M rows start at b*ldm, and b*ldm + g*(ldm_g - cog) < (b + 1)*ldm, inside m.
            let src = unsafe { args.m.add(b * args.ldm + g * (ldm_g - cog)) };
            // SAFETY: for c in lo..hi, src + e*estride + c is inside tile b's
            // row of M (column g*ldm_g + c - lo < ldm) and dst[k] + c, bias +
            // c inside their c_out floats, for LANES floats while c + LANES <= hi.
            unsafe {
                match p.variant {
                    Variant::F2 => {
                        let dst: &[*mut f32; 4] = dst.first_chunk().unwrap_or_else(|| unreachable!());
                        let mut c = lo;
                        while c + S::LANES <= hi {
                            output_tile_f2::<S>(isa, src, estride, c, dst, args.bias, args.relu);
                            c += S::LANES;
                        }
                        for c in c..hi {
                            output_tile_f2::<Scalar>(isa.scalar(), src, estride, c, dst, args.bias, args.relu);
                        }
                    }
                    Variant::F4 => {
                        let mut c = lo;
                        while c + S::LANES <= hi {
                            output_tile_f4::<S>(isa, src, estride, c, &dst, args.bias, args.relu);
                            c += S::LANES;
                        }
                        for c in c..hi {
                            output_tile_f4::<Scalar>(isa.scalar(), src, estride, c, &dst, args.bias, args.relu);
                        }
                    }
                }
            }
        }
    }
}
