//! Bilinear resizing exactly as `tf.image.resize(method="bilinear",
//! antialias=False)` does it, and Keras's `crop_to_aspect_ratio` box.
//!
//! TensorFlow's `ResizeBilinear` with `half_pixel_centers=True`
//! (`tensorflow/core/kernels/image/resize_bilinear_op.cc`): the scale is
//! `in / out` in f32; output index `i` samples input position
//! `(i + 0.5) * scale - 0.5`; its lower neighbour is `max(floor(pos), 0)`, the
//! upper `min(ceil(pos), in - 1)`, the weight `pos - floor(pos)`; the value is
//! `top + (bottom - top) * y_lerp` with `top = tl + (tr - tl) * x_lerp` (and
//! `bottom` alike), all in f32 in that order. Matching the order matters: the
//! fixture test compares with TensorFlow's own output to within 2e-5.
//!
//! Keras's `image_dataset_from_directory` keeps that f32 result; this crate
//! holds images as `u8` (a quarter of the memory), rounding to nearest, so a
//! held pixel is within 0.5 of Keras's value.

/// One axis's interpolation: for each output index, the two input indices and
/// the weight of the upper one.
#[derive(Clone, Debug)]
struct Axis {
    lower: Vec<usize>,
    upper: Vec<usize>,
    lerp: Vec<f32>,
}

impl Axis {
    fn new(input: usize, output: usize) -> Axis {
        let scale = input as f32 / output as f32;
        let mut axis = Axis {
            lower: Vec::with_capacity(output),
            upper: Vec::with_capacity(output),
            lerp: Vec::with_capacity(output),
        };
        for i in 0..output {
            let pos = (i as f32 + 0.5) * scale - 0.5;
            let floor = pos.floor();
            axis.lower.push((floor.max(0.0) as usize).min(input - 1));
            axis.upper.push((pos.ceil().max(0.0) as usize).min(input - 1));
            axis.lerp.push(pos - floor);
        }
        axis
    }
}

/// One input row interpolated along x: `out[x * C + c] = l + (u - l) * x_lerp`
/// (TensorFlow's `top = top_left + (top_right - top_left) * x_lerp`).
fn interpolate_row<const C: usize>(row: &[u8], xs: &Axis, out: &mut [f32]) {
    for (((px, &l), &u), &lerp) in out.chunks_exact_mut(C).zip(&xs.lower).zip(&xs.upper).zip(&xs.lerp) {
        let a: &[u8; C] = row[l * C..l * C + C].try_into().expect("C samples");
        let b: &[u8; C] = row[u * C..u * C + C].try_into().expect("C samples");
        let px: &mut [f32; C] = px.try_into().expect("C samples");
        for c in 0..C {
            let (a, b) = (f32::from(a[c]), f32::from(b[c]));
            px[c] = a + (b - a) * lerp;
        }
    }
}

/// Resizes an interleaved `in_h x in_w x channels` image to `out_h x out_w`,
/// handing each finished output row (`out_w * channels` values) to `store`.
///
/// Each output row blends two input rows already interpolated along x; a row
/// interpolated for the previous output row is reused, so upsampling
/// interpolates each input row once. The arithmetic and its order are
/// TensorFlow's, so the values are the same as the per-pixel formula.
fn resize_rows(
    src: &[u8],
    (in_h, in_w): (usize, usize),
    channels: usize,
    (out_h, out_w): (usize, usize),
    mut store: impl FnMut(usize, &[f32], &[f32], f32),
) {
    debug_assert_eq!(src.len(), in_h * in_w * channels);
    let xs = Axis::new(in_w, out_w);
    let ys = Axis::new(in_h, out_h);
    let row_len = in_w * channels;
    let interpolate = |row: usize, out: &mut [f32]| {
        let row = &src[row * row_len..][..row_len];
        match channels {
            1 => interpolate_row::<1>(row, &xs, out),
            3 => interpolate_row::<3>(row, &xs, out),
            4 => interpolate_row::<4>(row, &xs, out),
            2 => interpolate_row::<2>(row, &xs, out),
            _ => {
                for (x, px) in out.chunks_exact_mut(channels).enumerate() {
                    for (c, v) in px.iter_mut().enumerate() {
                        let a = f32::from(row[xs.lower[x] * channels + c]);
                        let b = f32::from(row[xs.upper[x] * channels + c]);
                        *v = a + (b - a) * xs.lerp[x];
                    }
                }
            }
        }
    };
    let n = out_w * channels;
    let (mut top, mut bottom) = (vec![0f32; n], vec![0f32; n]);
    let (mut top_row, mut bottom_row) = (usize::MAX, usize::MAX);
    for y in 0..out_h {
        let (want_top, want_bottom) = (ys.lower[y], ys.upper[y]);
        if want_top != top_row {
            if want_top == bottom_row {
                std::mem::swap(&mut top, &mut bottom);
                std::mem::swap(&mut top_row, &mut bottom_row);
            } else {
                interpolate(want_top, &mut top);
                top_row = want_top;
            }
        }
        if want_bottom != bottom_row {
            if want_bottom == top_row {
                bottom.copy_from_slice(&top);
            } else {
                interpolate(want_bottom, &mut bottom);
            }
            bottom_row = want_bottom;
        }
        store(y, &top, &bottom, ys.lerp[y]);
    }
}

/// TensorFlow's bilinear resize of `u8` samples to f32 (`tf.image.resize`).
///
/// ```
/// use convnet_datasets::folder::resize_bilinear_f32;
/// // 1x2 grey image [0, 100] widened to 1x4: positions -0.25, 0.25, 0.75, 1.25.
/// let out = resize_bilinear_f32(&[0, 100], (1, 2), 1, (1, 4));
/// assert_eq!(out, [0.0, 25.0, 75.0, 100.0]);
/// ```
pub fn resize_bilinear_f32(src: &[u8], input: (usize, usize), channels: usize, output: (usize, usize)) -> Vec<f32> {
    let n = output.1 * channels;
    let mut out = vec![0.0; output.0 * n];
    resize_rows(src, input, channels, output, |y, top, bottom, lerp| {
        for ((o, &t), &b) in out[y * n..(y + 1) * n].iter_mut().zip(top).zip(bottom) {
            *o = t + (b - t) * lerp;
        }
    });
    out
}

/// The bilinear resize rounded to `u8` (how this crate holds images), into `out`.
pub fn resize_bilinear_u8(src: &[u8], input: (usize, usize), channels: usize, output: (usize, usize), out: &mut [u8]) {
    debug_assert_eq!(out.len(), output.0 * output.1 * channels);
    let n = output.1 * channels;
    resize_rows(src, input, channels, output, |y, top, bottom, lerp| {
        for ((o, &t), &b) in out[y * n..(y + 1) * n].iter_mut().zip(top).zip(bottom) {
            // Values are in [0, 255]: adding 0.5 and truncating rounds to nearest.
            *o = (t + (b - t) * lerp + 0.5) as u8;
        }
    });
}

/// Keras's `smart_resize` crop (as its TensorFlow graph computes it, in f32):
/// the largest centred box of the target's aspect ratio, as
/// `(top, left, height, width)`.
///
/// ```
/// use convnet_datasets::folder::crop_box;
/// // 400x300 (h x w) to a square: a 300x300 box, 50 rows down.
/// assert_eq!(crop_box((400, 300), (150, 150)), (50, 0, 300, 300));
/// ```
pub fn crop_box((height, width): (usize, usize), (target_h, target_w): (usize, usize)) -> (usize, usize, usize, usize) {
    // cast(cast(width * target_h, float32) / target_w, int32), then
    // clamped to [1, height]; likewise for the width.
    let crop_h = (((width * target_h) as f32 / target_w as f32) as usize).min(height).max(1);
    let crop_w = (((height * target_w) as f32 / target_h as f32) as usize).min(width).max(1);
    let top = ((height - crop_h) as f32 / 2.0) as usize;
    let left = ((width - crop_w) as f32 / 2.0) as usize;
    (top, left, crop_h, crop_w)
}

/// Copies the `(top, left, height, width)` box out of an interleaved image.
pub(crate) fn crop(
    src: &[u8],
    width: usize,
    channels: usize,
    (top, left, h, w): (usize, usize, usize, usize),
) -> Vec<u8> {
    let mut out = Vec::with_capacity(h * w * channels);
    for row in top..top + h {
        let start = (row * width + left) * channels;
        out.extend_from_slice(&src[start..start + w * channels]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_size_is_identity_and_downscale_by_two_averages() {
        let src: Vec<u8> = (0..24).map(|v| v * 10).collect();
        assert_eq!(resize_bilinear_f32(&src, (2, 4), 3, (2, 4)), src.iter().map(|&v| f32::from(v)).collect::<Vec<_>>());
        // 2x2 -> 1x1 samples the centre: the mean of four.
        assert_eq!(resize_bilinear_f32(&[0, 10, 20, 50], (2, 2), 1, (1, 1)), [20.0]);
        let mut out = [0u8; 1];
        resize_bilinear_u8(&[0, 1, 0, 0], (2, 2), 1, (1, 1), &mut out);
        assert_eq!(out, [0]); // 0.25 rounds down
    }

    #[test]
    fn crop_box_keeps_the_full_side() {
        assert_eq!(crop_box((100, 100), (50, 50)), (0, 0, 100, 100));
        assert_eq!(crop_box((350, 400), (150, 150)), (0, 25, 350, 350));
        assert_eq!(crop_box((1, 1000), (10, 10)), (0, 499, 1, 1));
    }
}
