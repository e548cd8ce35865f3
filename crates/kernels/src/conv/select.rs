//! [`select`]: the algorithm [`ConvAlgo::Auto`] runs, as one pure function of
//! the shape and pass.
//!
//! Grouped shapes (`groups > 1`) go to [`ConvAlgo::Depthwise`] when they
//! are depthwise (`groups == c_in`: memory-bound, channels on the lanes);
//! otherwise to Winograd F(4x4, 3x3) when the ladder below picks it for one
//! group's dense shape (`c_in / groups -> c_out / groups`; each group is
//! gathered and run dense), and to [`ConvAlgo::Im2col`] (one GEMM per
//! group) when it does not. For dense shapes, the ladder, per pass:
//!
//! 1. **Winograd F(4x4, 3x3)** for 3x3, stride-1, undilated layers with at
//!    least [`WINOGRAD_MIN_CHANNELS`] channels on both sides (and, for
//!    backward-data, at least [`WINOGRAD_MIN_OUTPUT_PIXELS`] output pixels
//!    per image, for backward-filter [`WINOGRAD_MIN_FILTER_GRAD_PIXELS`];
//!    for the forward pass, at least [`WINOGRAD_MIN_FORWARD_TILES`]
//!    output tiles in the call, so batch-1 inference does not pay the filter
//!    transform for a handful of tiles), if [`winograd`](super::winograd)
//!    supports the shape. It
//!    does 4x fewer multiplies than direct, which pays once the transforms
//!    are amortised over many channels.
//! 2. **im2col** when the filter is too big for the direct kernel's
//!    working set ([`DIRECT_MAX_FILTER_BYTES`], every pass): the GEMM blocks
//!    the filter for cache, direct streams one packed block per channel
//!    block; for backward-data into fewer than
//!    [`DIRECT_BWD_DATA_MIN_CIN`] input channels, where direct's vectors
//!    over input channels would be mostly empty; and for the backward-filter
//!    of a 1x1 layer with at least [`POINTWISE_BWD_FILTER_IM2COL_MIN_CIN`]
//!    input channels whose output channels direct's pointwise path cannot
//!    take (one GEMM).
//! 3. **direct** otherwise: small channel counts (the first layer, where
//!    im2col's K=9 GEMM is poor), small images, and any shape whose filter
//!    fits comfortably in L2.
//!
//! Thresholds were measured with `cargo run --release -p convnet-kernels
//! --example conv_timing` on the 2-core AVX-512 Xeon VM this project is
//! benchmarked on (Nov 2026, 2 rayon threads, medians; figures in
//! `docs/BENCHMARKS.md`). The machine was shared and noisy; every threshold
//! sits between shapes whose winner differed by well over the noise.

use super::{winograd, ConvAlgo, ConvPass, ConvShape};

/// Winograd needs at least this many input AND output channels. Measured
/// (02:47 UTC run, min of 5): 64x13x13x32->64 F4 vs direct: forward 0.69 vs
/// 1.07 ms, backward-data 1.30 vs 2.70 ms, backward-filter 1.41 vs 1.73 ms;
/// the first layer (1 input channel): F4 forward 0.80 ms vs direct 0.21 ms.
pub const WINOGRAD_MIN_CHANNELS: usize = 32;

/// Backward-data uses Winograd only with at least this many output
/// pixels per image. Measured: 64x5x5x64->64 (a 3x3 output, one partial
/// 4x4 tile) backward-data F4 0.62 ms vs direct 0.23 ms, while its forward
/// is still F4's (0.17 vs 0.22 ms).
pub const WINOGRAD_MIN_OUTPUT_PIXELS: usize = 64;

/// Backward-filter uses Winograd with at least this many output pixels per
/// image. Since it streams tiles through a register-tiled outer product
/// (Dec 2026), F(4x4) wins from a 3x3 output on (one 6x6 tile per image:
/// 36 products per channel pair against direct's 81): 64x5x5x64->64
/// backward-filter F4 0.24-0.27 ms vs direct 0.35-0.47 ms (Zen 4, 1
/// thread, `convnet bench conv --shape 64,5,5,64,64 --backward`, three
/// alternated runs at load 11). A 2x2 output ties on products (36 vs 36)
/// and a 1x1 output loses 4x, so the threshold is the measured 3x3.
pub const WINOGRAD_MIN_FILTER_GRAD_PIXELS: usize = 9;

/// The forward pass uses Winograd F(4x4) only with at least this many 4x4
/// output tiles in the whole call (`n * ceil(out_h/4) * ceil(out_w/4)`): below
/// it the per-call filter transform is not amortised. Measured on the idle
/// machine (Nov 25 03:08 UTC, `convnet bench conv --shape N,H,W,CIN,COUT
/// --algo all`, 2 threads, medians), F4 vs direct forward:
/// 1x13x13x32->64 (9 tiles) 65 vs 49 us, 16x5x5x64->64 (16 tiles) 150 vs
/// 101 us, 4x13x13x32->64 (36 tiles) 101 vs 140 us, 64x5x5x64->64 (64 tiles)
/// 264 vs 314 us, 1x28x28x256->256 (49 tiles) 3.0 vs 5.4 ms.
pub const WINOGRAD_MIN_FORWARD_TILES: usize = 32;

/// Above this filter size (bytes) every pass uses im2col, not direct.
/// Measured: 8x28x28x256->256 (2.4 MB filter) im2col 97 ms vs direct 205 ms
/// forward, 86 ms vs 430 ms backward-filter; at 147 KB (64->64) direct
/// wins: 8x56x56x64->64 forward 24 ms vs 45 ms, 64x5x5x64->64
/// backward-filter 0.42 ms vs 0.63 ms, 64x13x13x32->64 (74 KB)
/// backward-filter 2.15 ms vs 4.34 ms.
pub const DIRECT_MAX_FILTER_BYTES: usize = 1 << 20;

/// Backward-data into fewer input channels than this uses im2col: direct
/// vectorises over the input channels. Measured: the first layer (1 input
/// channel) im2col 2.4 ms vs direct 9.6 ms (it is never needed in training:
/// nothing asks for the gradient of the images).
pub const DIRECT_BWD_DATA_MIN_CIN: usize = 8;

/// Backward-filter of a 1x1 stride-1 convolution with at least this many
/// input channels, and output channels that are not whole 16-lane vectors,
/// uses im2col (a plain GEMM for 1x1). With whole vectors, direct's
/// pointwise path (one GEMM-shaped reduction, `conv/direct/pointwise.rs`)
/// beats im2col there: `convnet bench conv --shape N,H,W,CIN,COUT --kernel 1
/// --backward --reps 11`, 2 threads, ms direct vs im2col, 32x28x28x128->128
/// 2.97-3.12 vs 3.41, 32x14x14x256->256 2.70-2.81 vs 2.89, 32x56x56x32->64
/// 1.70-1.79 vs 5.08. Without the pointwise path (the general per-tap
/// reduction) im2col wins from 128 input channels: 32x28x28x128->128 3.73
/// vs 5.30, 32x14x14x256->256 2.89 vs 4.87.
pub const POINTWISE_BWD_FILTER_IM2COL_MIN_CIN: usize = 128;

/// The algorithm [`ConvAlgo::Auto`] runs for `shape` and `pass`: a pure function.
///
/// The batch size is part of the shape, so the same layer may run another
/// algorithm at another batch size (Winograd's forward needs
/// `WINOGRAD_MIN_FORWARD_TILES` tiles): results then agree within the
/// algorithms' tolerances, not bit for bit. For a given shape the choice,
/// and so the result, is always the same.
///
/// ```
/// use convnet_kernels::conv::{select, ConvAlgo, ConvPass, ConvShape};
/// // The first layer of the chapter's model: one input channel -> direct.
/// let first = ConvShape::new(64, 28, 28, 1, 32, 3, 3)?;
/// assert_eq!(select(&first, ConvPass::Forward), ConvAlgo::Direct);
/// # Ok::<(), convnet_kernels::Error>(())
/// ```
pub fn select(shape: &ConvShape, pass: ConvPass) -> ConvAlgo {
    // Grouped shapes: the depthwise kernel when each group has one input
    // channel, else Winograd if one group's dense shape would run it, else
    // one GEMM per group. (A one-channel input is depthwise too, but dense:
    // it keeps the dense ladder below.)
    if shape.groups > 1 {
        if shape.depthwise_multiplier().is_some() {
            return ConvAlgo::Depthwise;
        }
        let group = ConvShape { c_in: shape.c_in_per_group(), c_out: shape.c_out_per_group(), groups: 1, ..*shape };
        return match select(&group, pass) {
            a @ (ConvAlgo::WinogradF2 | ConvAlgo::WinogradF4) => a,
            _ => ConvAlgo::Im2col,
        };
    }
    let filter_bytes = shape.filter_len() * 4;
    let out_pixels = shape.out_h() * shape.out_w();
    let channels = shape.c_in.min(shape.c_out);
    let winograd = channels >= WINOGRAD_MIN_CHANNELS && winograd::supports(shape).is_ok();
    match pass {
        ConvPass::Forward => {
            let tiles = shape.n * shape.out_h().div_ceil(4) * shape.out_w().div_ceil(4);
            if winograd && tiles >= WINOGRAD_MIN_FORWARD_TILES {
                ConvAlgo::WinogradF4
            } else if filter_bytes > DIRECT_MAX_FILTER_BYTES {
                ConvAlgo::Im2col
            } else {
                ConvAlgo::Direct
            }
        }
        ConvPass::BackwardData => {
            if winograd && out_pixels >= WINOGRAD_MIN_OUTPUT_PIXELS {
                ConvAlgo::WinogradF4
            } else if filter_bytes > DIRECT_MAX_FILTER_BYTES || shape.c_in < DIRECT_BWD_DATA_MIN_CIN {
                ConvAlgo::Im2col
            } else {
                ConvAlgo::Direct
            }
        }
        ConvPass::BackwardFilter => {
            if winograd && out_pixels >= WINOGRAD_MIN_FILTER_GRAD_PIXELS {
                ConvAlgo::WinogradF4
            } else if filter_bytes > DIRECT_MAX_FILTER_BYTES || pointwise_wide(shape) {
                ConvAlgo::Im2col
            } else {
                ConvAlgo::Direct
            }
        }
    }
}

/// A 1x1, stride-1 convolution (a separable layer's pointwise half) with at
/// least [`POINTWISE_BWD_FILTER_IM2COL_MIN_CIN`] input channels and output
/// channels that direct's pointwise path cannot take (not whole 16-lane
/// vectors): its backward-filter is one GEMM (`x^T dy`, no column copy),
/// which beats direct's general per-tap reduction there.
fn pointwise_wide(shape: &ConvShape) -> bool {
    shape.kh == 1
        && shape.kw == 1
        && shape.stride_h == 1
        && shape.stride_w == 1
        && shape.c_in >= POINTWISE_BWD_FILTER_IM2COL_MIN_CIN
        && !shape.c_out.is_multiple_of(16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::{supports, Padding};

    #[test]
    fn chapter_layers_route_as_measured() {
        let l1 = ConvShape::new(64, 28, 28, 1, 32, 3, 3).unwrap();
        let l3 = ConvShape::new(64, 5, 5, 64, 64, 3, 3).unwrap();
        assert_eq!(select(&l1, ConvPass::Forward), ConvAlgo::Direct);
        assert_eq!(select(&l1, ConvPass::BackwardData), ConvAlgo::Im2col);
        assert_eq!(select(&l1, ConvPass::BackwardFilter), ConvAlgo::Direct);
        assert_eq!(select(&l3, ConvPass::BackwardData), ConvAlgo::Direct);
        assert_eq!(select(&l3, ConvPass::BackwardFilter), ConvAlgo::WinogradF4);
        // A 2x2 output: one mostly empty tile per image, direct's.
        let l3_small = ConvShape::new(64, 4, 4, 64, 64, 3, 3).unwrap();
        assert_eq!(select(&l3_small, ConvPass::BackwardFilter), ConvAlgo::Direct);
        // Batch-1 inference: too few tiles to amortise the filter transform.
        let l2_single = ConvShape::new(1, 13, 13, 32, 64, 3, 3).unwrap();
        assert_eq!(select(&l2_single, ConvPass::Forward), ConvAlgo::Direct);
        assert_eq!(select(&l2_single.with_batch(4).unwrap(), ConvPass::Forward), ConvAlgo::WinogradF4);
        assert_eq!(select(&l3.with_batch(1).unwrap(), ConvPass::Forward), ConvAlgo::Direct);
        // Strided big layers cannot use Winograd: big filters go to im2col.
        let big = ConvShape::new(8, 28, 28, 256, 256, 3, 3).unwrap().with_stride(2, 2).unwrap();
        assert_eq!(select(&big, ConvPass::BackwardFilter), ConvAlgo::Im2col);
        assert_eq!(select(&big, ConvPass::Forward), ConvAlgo::Im2col);
        // Pointwise (1x1) layers: direct's pointwise path, unless the output
        // channels are not whole vectors and there are 128 inputs or more.
        let pw = |c_in, c_out| ConvShape::new(32, 14, 14, c_in, c_out, 1, 1).unwrap();
        assert_eq!(select(&pw(128, 256), ConvPass::BackwardFilter), ConvAlgo::Direct);
        assert_eq!(select(&pw(128, 250), ConvPass::BackwardFilter), ConvAlgo::Im2col);
        assert_eq!(select(&pw(64, 128), ConvPass::BackwardFilter), ConvAlgo::Direct);
        assert_eq!(select(&pw(128, 256), ConvPass::Forward), ConvAlgo::Direct);
        let strided = pw(128, 256).with_stride(2, 2).unwrap();
        assert_eq!(select(&strided, ConvPass::BackwardFilter), ConvAlgo::Direct);
    }

    #[test]
    fn every_choice_is_supported() {
        let shapes = [
            ConvShape::new(2, 9, 9, 3, 5, 3, 3).unwrap(),
            ConvShape::new(1, 30, 30, 64, 64, 3, 3).unwrap().with_padding(Padding::Same).unwrap(),
            ConvShape::new(1, 30, 30, 64, 64, 3, 3).unwrap().with_stride(2, 2).unwrap(),
            ConvShape::new(1, 9, 9, 300, 300, 3, 3).unwrap(),
            ConvShape::new(1, 9, 9, 40, 40, 5, 5).unwrap(),
        ];
        for s in shapes {
            for pass in [ConvPass::Forward, ConvPass::BackwardData, ConvPass::BackwardFilter] {
                let a = select(&s, pass);
                assert_ne!(a, ConvAlgo::Auto);
                supports(a, &s, pass).unwrap();
            }
        }
    }
}
