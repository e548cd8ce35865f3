//! The fast warp: row bands in parallel, each row's input coordinates mapped
//! in SIMD lanes (AVX2, 8 at a time) or one at a time (portable), then every
//! pixel's channels interpolated from those coordinates.
//!
//! Every f32 operation is the oracle's, in the oracle's order (no fused
//! multiply-add, the same truncations), so every level gives the oracle's
//! result bit for bit. The SIMD coordinate mapping handles coordinates below
//! 2^23 in magnitude, where TensorFlow's int64 arithmetic and f32 arithmetic
//! agree exactly; a group of lanes with a larger (or non-finite) coordinate
//! is mapped by the scalar code.

use super::reference::map_coordinate;
use super::{Affine, FillMode, Interpolation, WarpOptions, WarpShape};
use crate::simd::SimdLevel;
use rayon::prelude::*;

/// Output rows per parallel task: 16 rows of a 150-wide RGB image are 7,200
/// values (about 30 us of work), enough to amortise a rayon task, small
/// enough to balance a batch of a few images over the cores.
const BAND_ROWS: usize = 16;

pub(super) fn warp(
    level: SimdLevel,
    input: &[f32],
    shape: WarpShape,
    transforms: &[Affine],
    options: WarpOptions,
    output: &mut [f32],
) {
    let WarpShape { h, w, c, .. } = shape;
    let image_len = h * w * c;
    let row_len = w * c;
    output.par_chunks_mut(image_len).enumerate().for_each(|(b, out_image)| {
        let image = &input[b * image_len..][..image_len];
        let t = if transforms.len() == 1 { transforms[0] } else { transforms[b] };
        out_image.par_chunks_mut(BAND_ROWS * row_len).enumerate().for_each(|(band, out_band)| {
            let mut taps = Taps::new(w);
            for (r, out_row) in out_band.chunks_exact_mut(row_len).enumerate() {
                let oy = band * BAND_ROWS + r;
                map_row(level, t, oy, shape, options.fill_mode, &mut taps);
                let args = Row { image, h, w, taps: &taps, options };
                match c {
                    1 => interpolate_row::<1>(&args, out_row),
                    3 => interpolate_row::<3>(&args, out_row),
                    4 => interpolate_row::<4>(&args, out_row),
                    _ => interpolate_row_any(&args, c, out_row),
                }
            }
        });
    });
}

/// One output row's sampling positions and bilinear taps, column by column.
pub(super) struct Taps {
    /// Mapped input column and row.
    xs: Vec<f32>,
    ys: Vec<f32>,
    /// Offset (in values) of the top-left tap, valid where `inside` is set.
    offset: Vec<u32>,
    /// Bilinear weights: `x1 - x`, `x - x0`, `y1 - y`, `y - y0`.
    wx0: Vec<f32>,
    wx1: Vec<f32>,
    wy0: Vec<f32>,
    wy1: Vec<f32>,
    /// 1 where all four taps are inside the image.
    inside: Vec<u8>,
}

impl Taps {
    fn new(w: usize) -> Taps {
        let f = || vec![0f32; w];
        Taps { xs: f(), ys: f(), offset: vec![0; w], wx0: f(), wx1: f(), wy0: f(), wy1: f(), inside: vec![0; w] }
    }
}

/// Maps output row `oy`'s input coordinates and bilinear taps into `taps`.
fn map_row(level: SimdLevel, t: Affine, oy: usize, shape: WarpShape, mode: FillMode, taps: &mut Taps) {
    #[cfg(target_arch = "x86_64")]
    if level != SimdLevel::Portable && shape.w >= 8 {
        // SAFETY: the level was checked available by the caller, and Avx2 and
        // Avx512 both imply AVX2; every `taps` vector holds `shape.w` values.
        unsafe { avx2::map_row(t, oy, shape, mode, taps) };
        return;
    }
    let _ = level;
    map_columns_scalar(t, oy, 0..shape.w, shape, mode, taps);
}

/// Scalar coordinates and taps for output columns `columns` of row `oy`.
fn map_columns_scalar(
    t: Affine,
    oy: usize,
    columns: std::ops::Range<usize>,
    shape: WarpShape,
    mode: FillMode,
    taps: &mut Taps,
) {
    let oyf = oy as f32;
    let (ay, by) = (t.a1 * oyf, t.b1 * oyf);
    let (wf, hf) = (shape.w as f32, shape.h as f32);
    for ox in columns {
        let oxf = ox as f32;
        // ((a0 x + a1 y) + a2), as the oracle and TensorFlow sum it.
        let x = map_coordinate(mode, t.a0 * oxf + ay + t.a2, shape.w);
        let y = map_coordinate(mode, t.b0 * oxf + by + t.b2, shape.h);
        let (xf, yf) = (x.floor(), y.floor());
        let (xc, yc) = (xf + 1.0, yf + 1.0);
        taps.xs[ox] = x;
        taps.ys[ox] = y;
        taps.wx0[ox] = xc - x;
        taps.wx1[ox] = x - xf;
        taps.wy0[ox] = yc - y;
        taps.wy1[ox] = y - yf;
        let inside = xf >= 0.0 && xc < wf && yf >= 0.0 && yc < hf;
        taps.inside[ox] = u8::from(inside);
        taps.offset[ox] = if inside { ((yf as usize) * shape.w + xf as usize) as u32 * shape.c as u32 } else { 0 };
    }
}

struct Row<'a> {
    image: &'a [f32],
    h: usize,
    w: usize,
    taps: &'a Taps,
    options: WarpOptions,
}

/// The tap at integer position `(y, x)` (floats holding integers), or the fill value outside.
#[inline(always)]
fn tap(args: &Row<'_>, c: usize, y: f32, x: f32, ch: usize) -> f32 {
    if y >= 0.0 && y < args.h as f32 && x >= 0.0 && x < args.w as f32 {
        args.image[((y as usize) * args.w + x as usize) * c + ch]
    } else {
        args.options.fill_value
    }
}

/// Pixel `ox` of the row, the general way (taps outside read the fill value;
/// nearest interpolation), into `px`.
#[inline(never)]
fn pixel_general(args: &Row<'_>, c: usize, ox: usize, px: &mut [f32]) {
    let (x, y) = (args.taps.xs[ox], args.taps.ys[ox]);
    if args.options.interpolation == Interpolation::Nearest {
        let (yr, xr) = (y.round(), x.round());
        for (ch, v) in px.iter_mut().enumerate() {
            *v = tap(args, c, yr, xr, ch);
        }
        return;
    }
    let (yf, xf) = (y.floor(), x.floor());
    let (yc, xc) = (yf + 1.0, xf + 1.0);
    let t = args.taps;
    let (wx0, wx1, wy0, wy1) = (t.wx0[ox], t.wx1[ox], t.wy0[ox], t.wy1[ox]);
    for (ch, v) in px.iter_mut().enumerate() {
        let top = wx0 * tap(args, c, yf, xf, ch) + wx1 * tap(args, c, yf, xc, ch);
        let bottom = wx0 * tap(args, c, yc, xf, ch) + wx1 * tap(args, c, yc, xc, ch);
        *v = wy0 * top + wy1 * bottom;
    }
}

/// Interpolates a row of pixels of `C` channels.
fn interpolate_row<const C: usize>(args: &Row<'_>, out: &mut [f32]) {
    let row_len = args.w * C;
    let t = args.taps;
    let bilinear = args.options.interpolation == Interpolation::Bilinear;
    for (ox, px) in out.chunks_exact_mut(C).enumerate() {
        if !(bilinear && t.inside[ox] != 0) {
            pixel_general(args, C, ox, px);
            continue;
        }
        // All four taps inside: read them directly.
        let p00 = t.offset[ox] as usize;
        let (wx0, wx1, wy0, wy1) = (t.wx0[ox], t.wx1[ox], t.wy0[ox], t.wy1[ox]);
        let top0: &[f32; C] = args.image[p00..p00 + C].try_into().expect("C");
        let top1: &[f32; C] = args.image[p00 + C..p00 + 2 * C].try_into().expect("C");
        let bot0: &[f32; C] = args.image[p00 + row_len..p00 + row_len + C].try_into().expect("C");
        let bot1: &[f32; C] = args.image[p00 + row_len + C..p00 + row_len + 2 * C].try_into().expect("C");
        let px: &mut [f32; C] = px.try_into().expect("C channels");
        for ch in 0..C {
            let top = wx0 * top0[ch] + wx1 * top1[ch];
            let bottom = wx0 * bot0[ch] + wx1 * bot1[ch];
            px[ch] = wy0 * top + wy1 * bottom;
        }
    }
}

/// Any channel count (the same arithmetic, the channel loop not unrolled).
fn interpolate_row_any(args: &Row<'_>, c: usize, out: &mut [f32]) {
    for (ox, px) in out.chunks_exact_mut(c).enumerate() {
        pixel_general(args, c, ox, px);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    //! The coordinate mapping eight output columns at a time.
    use super::{map_columns_scalar, Affine, FillMode, Taps, WarpShape};
    use core::arch::x86_64::*;

    /// Coordinates of magnitude below this map exactly in f32 lanes (see the module doc).
    const EXACT_LIMIT: f32 = 8_388_608.0; // 2^23

    /// # Safety
    /// The CPU must support AVX2; every vector of `taps` must hold `shape.w` values.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn map_row(t: Affine, oy: usize, shape: WarpShape, mode: FillMode, taps: &mut Taps) {
        debug_assert!(taps.xs.len() >= shape.w && taps.inside.len() >= shape.w);
        // Reflect and wrap of a 1-pixel axis are the scalar code's special case.
        if matches!(mode, FillMode::Reflect | FillMode::Wrap) && (shape.w <= 1 || shape.h <= 1) {
            map_columns_scalar(t, oy, 0..shape.w, shape, mode, taps);
            return;
        }
        let oyf = oy as f32;
        let iota = _mm256_setr_ps(0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0);
        let (a0, a2, ay) = (_mm256_set1_ps(t.a0), _mm256_set1_ps(t.a2), _mm256_set1_ps(t.a1 * oyf));
        let (b0, b2, by) = (_mm256_set1_ps(t.b0), _mm256_set1_ps(t.b2), _mm256_set1_ps(t.b1 * oyf));
        let (one, zero) = (_mm256_set1_ps(1.0), _mm256_setzero_ps());
        let (wf, hf) = (_mm256_set1_ps(shape.w as f32), _mm256_set1_ps(shape.h as f32));
        let (w_i, c_i) = (_mm256_set1_epi32(shape.w as i32), _mm256_set1_epi32(shape.c as i32));
        let mut ox = 0;
        while ox + 8 <= shape.w {
            let oxv = _mm256_add_ps(_mm256_set1_ps(ox as f32), iota);
            let ix = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(a0, oxv), ay), a2);
            let iy = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(b0, oxv), by), b2);
            let (Some(x), Some(y)) = (map(mode, ix, shape.w), map(mode, iy, shape.h)) else {
                // A huge or non-finite coordinate: these eight the scalar way.
                map_columns_scalar(t, oy, ox..ox + 8, shape, mode, taps);
                ox += 8;
                continue;
            };
            let xf = _mm256_round_ps::<{ _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC }>(x);
            let yf = _mm256_round_ps::<{ _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC }>(y);
            let (xc, yc) = (_mm256_add_ps(xf, one), _mm256_add_ps(yf, one));
            let inside = _mm256_and_ps(
                _mm256_and_ps(_mm256_cmp_ps::<_CMP_GE_OQ>(xf, zero), _mm256_cmp_ps::<_CMP_LT_OQ>(xc, wf)),
                _mm256_and_ps(_mm256_cmp_ps::<_CMP_GE_OQ>(yf, zero), _mm256_cmp_ps::<_CMP_LT_OQ>(yc, hf)),
            );
            // (y0 w + x0) c: exact in i32 where inside (the image has fewer than 2^31 values).
            let offset = _mm256_mullo_epi32(
                _mm256_add_epi32(_mm256_mullo_epi32(_mm256_cvttps_epi32(yf), w_i), _mm256_cvttps_epi32(xf)),
                c_i,
            );
            let offset = _mm256_and_si256(offset, _mm256_castps_si256(inside));
            let mask = _mm256_movemask_ps(inside) as u32;
            let (wx0, wx1) = (_mm256_sub_ps(xc, x), _mm256_sub_ps(x, xf));
            let (wy0, wy1) = (_mm256_sub_ps(yc, y), _mm256_sub_ps(y, yf));
            // SAFETY: ox + 8 <= w <= the length of every vector of `taps`, so
            // each unaligned 8-lane store stays inside its vector.
            unsafe {
                _mm256_storeu_ps(taps.xs.as_mut_ptr().add(ox), x);
                _mm256_storeu_ps(taps.ys.as_mut_ptr().add(ox), y);
                _mm256_storeu_ps(taps.wx0.as_mut_ptr().add(ox), wx0);
                _mm256_storeu_ps(taps.wx1.as_mut_ptr().add(ox), wx1);
                _mm256_storeu_ps(taps.wy0.as_mut_ptr().add(ox), wy0);
                _mm256_storeu_ps(taps.wy1.as_mut_ptr().add(ox), wy1);
                _mm256_storeu_si256(taps.offset.as_mut_ptr().add(ox).cast(), offset);
            }
            for k in 0..8 {
                taps.inside[ox + k] = ((mask >> k) & 1) as u8;
            }
            ox += 8;
        }
        map_columns_scalar(t, oy, ox..shape.w, shape, mode, taps);
    }

    /// `select(mask, a, b)`: `a` where the mask lane is set.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn select(mask: __m256, a: __m256, b: __m256) -> __m256 {
        _mm256_blendv_ps(b, a, mask)
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn trunc(v: __m256) -> __m256 {
        _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(v)
    }

    /// The lanes' `map_coordinate`, or `None` if a lane is beyond the exact range.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn map(mode: FillMode, c: __m256, len: usize) -> Option<__m256> {
        if mode == FillMode::Constant {
            return Some(c);
        }
        let sign = _mm256_set1_ps(-0.0);
        let abs = _mm256_andnot_ps(sign, c);
        if _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_LT_OQ>(abs, _mm256_set1_ps(EXACT_LIMIT))) != 0xff {
            return None;
        }
        let zero = _mm256_setzero_ps();
        let one = _mm256_set1_ps(1.0);
        let lenf = _mm256_set1_ps(len as f32);
        let last = _mm256_set1_ps(len as f32 - 1.0);
        let neg = _mm256_cmp_ps::<_CMP_LT_OQ>(c, zero);
        let past = _mm256_cmp_ps::<_CMP_GT_OQ>(c, last);
        let mapped = match mode {
            FillMode::Nearest | FillMode::Constant => c,
            FillMode::Reflect => {
                let sz2 = _mm256_set1_ps(2.0 * len as f32);
                // c < 0: c += sz2 * trunc(-c / sz2); then c < -len ? c + sz2 : -c - 1.
                let minus_c = _mm256_xor_ps(c, sign);
                let t = _mm256_add_ps(c, _mm256_mul_ps(sz2, trunc(_mm256_div_ps(minus_c, sz2))));
                let below = _mm256_cmp_ps::<_CMP_LT_OQ>(t, _mm256_xor_ps(lenf, sign));
                let t = select(below, _mm256_add_ps(t, sz2), _mm256_sub_ps(_mm256_xor_ps(t, sign), one));
                // c > len - 1: c -= sz2 * trunc(c / sz2); then c >= len ? sz2 - c - 1 : c.
                let u = _mm256_sub_ps(c, _mm256_mul_ps(sz2, trunc(_mm256_div_ps(c, sz2))));
                let over = _mm256_cmp_ps::<_CMP_GE_OQ>(u, lenf);
                let u = select(over, _mm256_sub_ps(_mm256_sub_ps(sz2, u), one), u);
                select(neg, t, select(past, u, c))
            }
            FillMode::Wrap => {
                let sz = _mm256_set1_ps(len as f32 - 1.0);
                // c < 0: c += len * (trunc(-c / sz) + 1); c > len - 1: c -= len * trunc(c / sz).
                let minus_c = _mm256_xor_ps(c, sign);
                let t = _mm256_add_ps(c, _mm256_mul_ps(lenf, _mm256_add_ps(trunc(_mm256_div_ps(minus_c, sz)), one)));
                let u = _mm256_sub_ps(c, _mm256_mul_ps(lenf, trunc(_mm256_div_ps(c, sz))));
                select(neg, t, select(past, u, c))
            }
        };
        // Eigen's clamp: lo = c < 0 ? 0 : c; then (len - 1) < lo ? len - 1 : lo.
        let lo = select(_mm256_cmp_ps::<_CMP_LT_OQ>(mapped, zero), zero, mapped);
        Some(select(_mm256_cmp_ps::<_CMP_LT_OQ>(last, lo), last, lo))
    }
}
