//! The fast warp: row bands in parallel, each row's input coordinates,
//! fill-mode mapping and bilinear taps computed in the vector lanes of the
//! level's instruction set (`arch`'s `Isa`/`Vf32`/`VOps`: 16 lanes on
//! AVX-512, 8 on AVX2 and on the portable `wide` baseline), then every pixel's
//! channels interpolated from those taps.
//!
//! Every f32 operation is the oracle's, in the oracle's order (no fused
//! multiply-add, the same truncations), so every level gives the oracle's
//! result bit for bit. The vector mapping handles coordinates below 2^23 in
//! magnitude, where TensorFlow's int64 arithmetic and f32 arithmetic agree
//! exactly; a group of lanes with a larger (or non-finite) coordinate is
//! mapped by the scalar code, as are images of 2^24 values or more (whose tap
//! offsets f32 lanes cannot hold exactly).

use super::reference::map_coordinate;
use super::{Affine, FillMode, Interpolation, WarpOptions, WarpShape};
use crate::arch::{Isa, Token, VOps, Vf32};
use rayon::prelude::*;

/// Output rows per parallel task: 16 rows of a 150-wide RGB image are 7,200
/// values (about 30 us of work), enough to amortise a rayon task, small
/// enough to balance a batch of a few images over the cores.
const BAND_ROWS: usize = 16;

pub(super) fn warp(
    token: Token,
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
                map_row(token, t, oy, shape, options.fill_mode, &mut taps);
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
fn map_row(token: Token, t: Affine, oy: usize, shape: WarpShape, mode: FillMode, taps: &mut Taps) {
    // Reflect and wrap of a 1-pixel axis, and tap offsets beyond f32's exact
    // integers, are the scalar code's cases.
    let scalar_only = (matches!(mode, FillMode::Reflect | FillMode::Wrap) && (shape.w <= 1 || shape.h <= 1))
        || shape.h * shape.w * shape.c >= 1 << 24;
    if scalar_only {
        map_columns_scalar(t, oy, 0..shape.w, shape, mode, taps);
        return;
    }
    match token {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the token proves AVX-512F, AVX2 and FMA.
        Token::Avx512(isa) => unsafe { map_row_avx512(isa, t, oy, shape, mode, taps) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the token proves AVX2 and FMA.
        Token::Avx2(isa) => unsafe { map_row_avx2(isa, t, oy, shape, mode, taps) },
        Token::Portable(isa) => map_row_lanes(isa, t, oy, shape, mode, taps),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn map_row_avx512(isa: crate::arch::Avx512, t: Affine, oy: usize, shape: WarpShape, mode: FillMode, taps: &mut Taps) {
    map_row_lanes(isa, t, oy, shape, mode, taps)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn map_row_avx2(isa: crate::arch::Avx2, t: Affine, oy: usize, shape: WarpShape, mode: FillMode, taps: &mut Taps) {
    map_row_lanes(isa, t, oy, shape, mode, taps)
}

/// `0, 1, 2, ...`: the column offsets of the lanes.
static IOTA: [f32; 16] = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0];

/// Coordinates of magnitude below this map exactly in f32 lanes (see the module doc).
const EXACT_LIMIT: f32 = 8_388_608.0; // 2^23

/// Row `oy`'s taps, `S::LANES` columns at a time; the columns left over, and
/// any group of lanes outside the exact range, the scalar way.
#[inline(always)]
fn map_row_lanes<S: Isa>(isa: S, t: Affine, oy: usize, shape: WarpShape, mode: FillMode, taps: &mut Taps)
where
    S::V: VOps,
{
    let lanes = S::LANES;
    debug_assert!(lanes <= IOTA.len() && taps.xs.len() >= shape.w && taps.inside.len() >= shape.w);
    let oyf = oy as f32;
    // SAFETY: IOTA holds 16 >= LANES floats.
    let iota = unsafe { isa.load(IOTA.as_ptr()) };
    let (a0, a2, ay) = (isa.splat(t.a0), isa.splat(t.a2), isa.splat(t.a1 * oyf));
    let (b0, b2, by) = (isa.splat(t.b0), isa.splat(t.b2), isa.splat(t.b1 * oyf));
    let (one, zero) = (isa.splat(1.0), isa.zero());
    let (wf, hf, cf) = (isa.splat(shape.w as f32), isa.splat(shape.h as f32), isa.splat(shape.c as f32));
    let mut offsets = [0f32; 16];
    let mut ox = 0;
    while ox + lanes <= shape.w {
        let oxv = isa.splat(ox as f32).add(iota);
        let ix = a0.mul(oxv).add(ay).add(a2);
        let iy = b0.mul(oxv).add(by).add(b2);
        let (Some(x), Some(y)) = (map(isa, mode, ix, shape.w), map(isa, mode, iy, shape.h)) else {
            // A huge or non-finite coordinate: these lanes the scalar way.
            map_columns_scalar(t, oy, ox..ox + lanes, shape, mode, taps);
            ox += lanes;
            continue;
        };
        let (xf, yf) = (x.floor(), y.floor());
        let (xc, yc) = (xf.add(one), yf.add(one));
        let inside = S::V::and(S::V::and(xf.ge(zero), wf.gt(xc)), S::V::and(yf.ge(zero), hf.gt(yc)));
        // (y0 w + x0) c, exact in f32 where inside (the image has fewer than 2^24 values).
        let offset = S::V::select(inside, yf.mul(wf).add(xf).mul(cf), zero);
        let bits = S::V::bits(inside);
        // SAFETY: ox + LANES <= w <= the length of every vector of `taps`,
        // and `offsets` holds 16 >= LANES floats.
        unsafe {
            x.store(taps.xs.as_mut_ptr().add(ox));
            y.store(taps.ys.as_mut_ptr().add(ox));
            xc.sub(x).store(taps.wx0.as_mut_ptr().add(ox));
            x.sub(xf).store(taps.wx1.as_mut_ptr().add(ox));
            yc.sub(y).store(taps.wy0.as_mut_ptr().add(ox));
            y.sub(yf).store(taps.wy1.as_mut_ptr().add(ox));
            offset.store(offsets.as_mut_ptr());
        }
        for (k, &offset) in offsets[..lanes].iter().enumerate() {
            taps.inside[ox + k] = ((bits >> k) & 1) as u8;
            taps.offset[ox + k] = offset as u32;
        }
        ox += lanes;
    }
    map_columns_scalar(t, oy, ox..shape.w, shape, mode, taps);
}

/// The lanes' `map_coordinate`, or `None` if a lane is beyond the exact range.
#[inline(always)]
fn map<S: Isa>(isa: S, mode: FillMode, c: S::V, len: usize) -> Option<S::V>
where
    S::V: VOps,
{
    if mode == FillMode::Constant {
        return Some(c);
    }
    if S::V::bits(c.abs().lt(isa.splat(EXACT_LIMIT))) != (1u32 << S::LANES) - 1 {
        return None;
    }
    let (zero, one) = (isa.zero(), isa.splat(1.0));
    let lenf = isa.splat(len as f32);
    let last = isa.splat(len as f32 - 1.0);
    let neg = c.lt(zero);
    let past = c.gt(last);
    let mapped = match mode {
        FillMode::Nearest | FillMode::Constant => c,
        FillMode::Reflect => {
            let sz2 = isa.splat(2.0 * len as f32);
            // c < 0: c += sz2 * trunc(-c / sz2); then c < -len ? c + sz2 : -c - 1.
            let t = c.add(sz2.mul(c.neg().div(sz2).trunc()));
            let t = S::V::select(t.lt(lenf.neg()), t.add(sz2), t.neg().sub(one));
            // c > len - 1: c -= sz2 * trunc(c / sz2); then c >= len ? sz2 - c - 1 : c.
            let u = c.sub(sz2.mul(c.div(sz2).trunc()));
            let u = S::V::select(u.ge(lenf), sz2.sub(u).sub(one), u);
            S::V::select(neg, t, S::V::select(past, u, c))
        }
        FillMode::Wrap => {
            let sz = isa.splat(len as f32 - 1.0);
            // c < 0: c += len * (trunc(-c / sz) + 1); c > len - 1: c -= len * trunc(c / sz).
            let t = c.add(lenf.mul(c.neg().div(sz).trunc().add(one)));
            let u = c.sub(lenf.mul(c.div(sz).trunc()));
            S::V::select(neg, t, S::V::select(past, u, c))
        }
    };
    // Eigen's clamp: lo = c < 0 ? 0 : c; then (len - 1) < lo ? len - 1 : lo.
    let lo = S::V::select(mapped.lt(zero), zero, mapped);
    Some(S::V::select(last.lt(lo), last, lo))
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
