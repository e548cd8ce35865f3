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

/// Resizes an interleaved `in_h x in_w x channels` image to `out_h x out_w`,
/// calling `store(index, value)` for each output sample in order.
fn resize_with(
    src: &[u8],
    (in_h, in_w): (usize, usize),
    channels: usize,
    (out_h, out_w): (usize, usize),
    mut store: impl FnMut(usize, f32),
) {
    debug_assert_eq!(src.len(), in_h * in_w * channels);
    let xs = Axis::new(in_w, out_w);
    let ys = Axis::new(in_h, out_h);
    let row_len = in_w * channels;
    let mut index = 0;
    for y in 0..out_h {
        let top_row = &src[ys.lower[y] * row_len..][..row_len];
        let bottom_row = &src[ys.upper[y] * row_len..][..row_len];
        let y_lerp = ys.lerp[y];
        for x in 0..out_w {
            let (l, u, x_lerp) = (xs.lower[x] * channels, xs.upper[x] * channels, xs.lerp[x]);
            for c in 0..channels {
                let tl = f32::from(top_row[l + c]);
                let tr = f32::from(top_row[u + c]);
                let bl = f32::from(bottom_row[l + c]);
                let br = f32::from(bottom_row[u + c]);
                let top = tl + (tr - tl) * x_lerp;
                let bottom = bl + (br - bl) * x_lerp;
                store(index, top + (bottom - top) * y_lerp);
                index += 1;
            }
        }
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
    let mut out = vec![0.0; output.0 * output.1 * channels];
    resize_with(src, input, channels, output, |i, v| out[i] = v);
    out
}

/// The bilinear resize rounded to `u8` (how this crate holds images), into `out`.
pub fn resize_bilinear_u8(src: &[u8], input: (usize, usize), channels: usize, output: (usize, usize), out: &mut [u8]) {
    debug_assert_eq!(out.len(), output.0 * output.1 * channels);
    resize_with(src, input, channels, output, |i, v| out[i] = (v + 0.5) as u8);
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
