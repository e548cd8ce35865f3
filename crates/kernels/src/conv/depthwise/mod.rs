//! Depthwise convolution (`groups == c_in`, channel multiplier
//! `m = c_out / c_in`): output channel `co` sees input channel `co / m`
//! only, through its own `kh x kw` filter `w[ky, kx, 0, co]` (Keras's
//! `depthwise_kernel` `[kh, kw, c_in, m]` read flat).
//!
//! Depthwise convolution does `kh * kw` multiply-adds per output element
//! and touches every input element only `kh * kw / stride^2` times, so it
//! is bound by memory, not arithmetic: the kernels here stream each image's
//! rows once, keep the channels of one pixel on the vector lanes (NHWC
//! makes them contiguous) and never pack or transpose anything.
//!
//! - **forward** and **backward-data** are one gather
//!   (`gather`): each destination pixel is
//!   `sum over (row tap) x (column tap)` of a source pixel times a filter
//!   vector. The per-axis tap tables make padding, stride and dilation free
//!   in the inner loop: forward lists, per output row (column), the
//!   `(ky, iy)` pairs inside the image; backward-data lists, per INPUT row
//!   (column), the `(ky, oy)` pairs with `oy * stride + ky * dilation - pad
//!   = iy`, so every input gradient element is written exactly once (no
//!   scatter, no atomics) for any stride. The columns of a row are cut into
//!   runs of pixels whose taps are the same up to a shift (`column_runs`:
//!   the interior of a row is one run, each border pixel its own; for
//!   backward-data with stride > 1 every pixel its own), and a run goes in
//!   register tiles of 2 pixels x 4 vectors of channels (4 x 2, 8 x 1 with
//!   fewer channels): 8 independent FMA chains, every
//!   filter vector loaded once per tap for the whole tile, the source read
//!   straight from the image rows (no im2col, no copy). Runs whose taps
//!   are three neighbouring source columns (3-wide undilated filters,
//!   forward stride 1 or 2, backward-data stride 1) go in *sliding* tiles
//!   instead: each source vector of a filter row is loaded once and feeds
//!   every pixel of the tile that reads it. Backward-data at stride 2
//!   (3-wide, undilated) cuts the interior of a row into column *pairs*
//!   (one pixel with two taps, one with one) whose tiles slide the same
//!   way (`gather::Pairs`). A multiplier
//!   `m > 1` repeats each input channel `m` times in a per-task row buffer
//!   (forward) or sums `m` lanes per input channel (backward-data).
//! - **backward-filter** (`filter`) sums fixed chunks of
//!   output rows into per-chunk partial filters, added in chunk order:
//!   no atomics, bit-identical for any thread count. Within a row, the three
//!   taps of a filter row share each output-gradient load, with `3 x 2`
//!   vector accumulators over the columns where all three are inside, and
//!   (undilated, stride 1 or 2) the three input vectors slide along as a
//!   window of registers.
//!
//! - **both gradients** (`combined`, [`backward`]): backward-filter's
//!   chunks of output rows, each also writing the input-gradient rows
//!   that start in its output rows, right after the filter contribution
//!   of the last output-gradient row they read: one sweep over the output
//!   gradient, results bit-identical to the two passes apart.
//!
//! - **non-temporal stores**: a pass that moves more than three quarters
//!   of the L3 (the 112x112 layers of a batch of 8) writes its destination
//!   around the caches (`stream_dst`): no read for ownership of each
//!   destination line, and its source stays in the L3 for the next pass
//!   that reads it.
//!
//! Threads: forward and backward-data split `n x rows` into fixed blocks
//! (at most 32, each writing at least 128 KiB where the call is that big).
//! Each body is generic over the vector type and instantiated for
//! AVX-512, AVX2+FMA and the portable baseline; the `*_at` entry points
//! take the level explicitly, so tests run every path without touching
//! the process-wide choice. Everything is checked against
//! [`reference`](super::reference) (f64) in the tests below and in the
//! property suite.

mod combined;
mod filter;
mod gather;

use super::{ConvAlgo, ConvShape};
use crate::activation::Activation;
use crate::arch::{cache, scratch_isize, FtzGuard, SendPtr, Slot, Token};
use crate::error::check_len;
use crate::simd::SimdLevel;
use crate::Result;

/// Whether [`ConvAlgo::Depthwise`] runs `shape`: any depthwise shape
/// (`groups == c_in`), every pass.
pub(crate) fn supports(s: &ConvShape) -> std::result::Result<(), String> {
    if s.depthwise_multiplier().is_none() {
        return Err(format!("not depthwise: {} groups for {} input channels (needs groups == c_in)", s.groups, s.c_in));
    }
    Ok(())
}

/// Per destination coordinate along one axis, up to `k` `(tap, source)`
/// pairs: entry `o` is `[count, tap0, src0, tap1, src1, ...]` with a fixed
/// stride of `2k + 1`.
#[derive(Clone, Copy)]
pub(super) struct TapTable<'a> {
    data: &'a [isize],
    stride: usize,
}

impl<'a> TapTable<'a> {
    /// Builds the table for `len` destinations and `k` taps into `buf`
    /// (`len * (2k + 1)` entries); `src(o, t)` is the source of tap `t` of
    /// destination `o`, if inside.
    fn build(buf: &'a mut [isize], len: usize, k: usize, src: impl Fn(usize, usize) -> Option<usize>) -> Self {
        let stride = 2 * k + 1;
        for (o, e) in buf[..len * stride].chunks_exact_mut(stride).enumerate() {
            let mut count = 0;
            for t in 0..k {
                if let Some(i) = src(o, t) {
                    e[1 + 2 * count] = t as isize;
                    e[2 + 2 * count] = i as isize;
                    count += 1;
                }
            }
            e[0] = count as isize;
        }
        TapTable { data: &buf[..len * stride], stride }
    }

    /// The `(tap, source)` pairs of destination `o`, flat.
    #[inline(always)]
    pub(super) fn taps(&self, o: usize) -> &'a [isize] {
        let e = &self.data[o * self.stride..][..self.stride];
        &e[1..1 + 2 * e[0] as usize]
    }
}

/// Cuts the `len` destination columns of `cols` into runs, written to
/// `out` as `(start, len)` pairs; returns the number of pairs. A run is a
/// maximal sequence of columns `start, start + dstep, ...` in which each
/// column's taps are its predecessor's with every source column moved by
/// `sstep`: the interior of a row, where one register tile can serve
/// several pixels with the same filter vectors. Forward: `dstep = 1`,
/// `sstep = stride` (the border columns, with fewer taps, are runs of
/// one). Backward-data: `dstep = stride`, `sstep = 1`, one set of runs per
/// phase `start % stride`. Every column is in exactly one run.
fn column_runs(cols: &TapTable, len: usize, dstep: usize, sstep: usize, out: &mut [isize]) -> usize {
    let follows = |a: usize, b: usize| {
        let (ta, tb) = (cols.taps(a), cols.taps(b));
        ta.len() == tb.len()
            && ta.chunks_exact(2).zip(tb.chunks_exact(2)).all(|(x, y)| x[0] == y[0] && x[1] + sstep as isize == y[1])
    };
    let mut count = 0;
    for phase in 0..dstep.min(len) {
        let mut p = phase;
        while p < len {
            let start = p;
            let mut n = 1;
            while p + dstep < len && follows(p, p + dstep) {
                p += dstep;
                n += 1;
            }
            out[2 * count] = start as isize;
            out[2 * count + 1] = n as isize;
            count += 1;
            p += dstep;
        }
    }
    count
}

/// The interior of a backward-data row at stride 2 for an undilated
/// 3-wide filter, as [`gather::Pairs`]: the longest sequence of column
/// pairs `(q + 2i, q + 2i + 1)` whose taps are `[(0, g + i), (2, g + i -
/// 1)]` and `[(1, g + i)]`, if at least two pairs long. Every such column
/// reads all three taps of its filter row between them, so the pair tiles
/// need no bounds test. `None` for any other shape (other strides, widths,
/// dilations, or rows too short).
fn pair_range(cols: &TapTable, len: usize) -> Option<gather::Pairs> {
    let is_pair = |p: usize| -> Option<usize> {
        if p + 1 >= len {
            return None;
        }
        match (cols.taps(p), cols.taps(p + 1)) {
            (&[0, g, 2, h], &[1, g1]) if h + 1 == g && g1 == g => Some(g as usize),
            _ => None,
        }
    };
    let q = (0..len).find(|&p| is_pair(p).is_some())?;
    let g = is_pair(q)?;
    let mut n = 1;
    while is_pair(q + 2 * n) == Some(g + n) {
        n += 1;
    }
    (n >= 2).then_some(gather::Pairs { q, g, len: n })
}

/// Whether a pass that moves `moved` bytes writes its destination `dst`
/// (`ce` floats a pixel, `reduce` lanes summed into each element) with
/// non-temporal stores: when the pass is too big for the L3 to keep
/// ([`cache::stream_min_bytes`]), and every vector store of the
/// destination falls on a vector boundary (a 64-byte aligned buffer, as
/// tensors are, and whole vectors per pixel). The lane reduction of a
/// channel multiplier goes through a scratch row: never streamed.
fn stream_dst(dst: &[f32], ce: usize, reduce: usize, moved: usize) -> bool {
    reduce == 1
        && ce.is_multiple_of(16)
        && (dst.as_ptr() as usize).is_multiple_of(64)
        && moved >= cache::stream_min_bytes()
}

/// Forward tap: input coordinate of output `o`, tap `k`, if inside.
fn forward_tap(o: usize, k: usize, stride: usize, dilation: usize, pad: usize, size: usize) -> Option<usize> {
    (o * stride + k * dilation).checked_sub(pad).filter(|&i| i < size)
}

/// Backward tap: the output coordinate whose tap `k` reads input `i`, if any.
fn backward_tap(i: usize, k: usize, stride: usize, dilation: usize, pad: usize, out: usize) -> Option<usize> {
    let t = (i + pad).checked_sub(k * dilation)?;
    (t.is_multiple_of(stride) && t / stride < out).then_some(t / stride)
}

/// At most this many tasks per call: enough for load balance on any pool
/// we target.
const MAX_TASKS: usize = 32;

/// Each task writes at least about this many bytes of destination, so a
/// small layer (batch-1 inference, a 14x14 map) runs as a few tasks and
/// does not pay a rayon hand-off per row: 128 KiB is a few tens of
/// microseconds of streaming, against a few microseconds per hand-off.
const MIN_TASK_BYTES: usize = 128 << 10;

/// Destination rows per task (whole rows of one image): at most
/// [`MAX_TASKS`] tasks, each writing at least [`MIN_TASK_BYTES`] where the
/// call is big enough. A function of the shape only.
fn block_rows(n: usize, rows: usize, row_floats: usize) -> usize {
    let total = n * rows;
    let tasks = (total * row_floats * 4 / MIN_TASK_BYTES).clamp(1, MAX_TASKS);
    total.div_ceil(tasks).clamp(1, rows)
}

/// Depthwise forward at an explicit SIMD level: `output = activation(conv(input, filter) + bias)`,
/// NHWC `input` `[n, h, w, c_in]`, `filter` `[kh, kw, 1, c_out]`, `bias`
/// `[c_out]`, `output` `[n, out_h, out_w, c_out]` (overwritten).
///
/// ```
/// use convnet_kernels::activation::Activation;
/// use convnet_kernels::conv::{depthwise, ConvShape};
/// use convnet_kernels::simd::SimdLevel;
/// // Two channels, multiplier 1: each channel convolved with its own 2x2 filter.
/// let s = ConvShape::new(1, 2, 2, 2, 2, 2, 2)?.with_groups(2)?;
/// let x = [1.0, 10.0, 2.0, 20.0, 3.0, 30.0, 4.0, 40.0];
/// let w = [1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0]; // ch0: all ones; ch1: bottom-right only
/// let mut y = [0.0; 2];
/// depthwise::forward_at(SimdLevel::Portable, &s, &x, &w, None, Activation::Linear, &mut y)?;
/// assert_eq!(y, [10.0, 40.0]);
/// # Ok::<(), convnet_kernels::Error>(())
/// ```
pub fn forward_at(
    level: SimdLevel,
    s: &ConvShape,
    input: &[f32],
    filter: &[f32],
    bias: Option<&[f32]>,
    activation: Activation,
    output: &mut [f32],
) -> Result<()> {
    super::conv2d_forward_at(level, ConvAlgo::Depthwise, s, input, filter, bias, activation, output)
}

/// Depthwise backward-data at an explicit SIMD level (overwrites `grad_input`).
pub fn backward_data_at(
    level: SimdLevel,
    s: &ConvShape,
    grad_output: &[f32],
    filter: &[f32],
    grad_input: &mut [f32],
) -> Result<()> {
    super::conv2d_backward_data_at(level, ConvAlgo::Depthwise, s, grad_output, filter, grad_input)
}

/// Depthwise backward-filter at an explicit SIMD level (overwrites
/// `grad_filter`); bit-identical for any thread count.
pub fn backward_filter_at(
    level: SimdLevel,
    s: &ConvShape,
    input: &[f32],
    grad_output: &[f32],
    grad_filter: &mut [f32],
) -> Result<()> {
    super::conv2d_backward_filter_at(level, ConvAlgo::Depthwise, s, input, grad_output, grad_filter)
}

/// Depthwise backward-data and backward-filter, at the best SIMD level:
/// `grad_input` and `grad_filter` overwritten, bit-identical to
/// [`backward_data_at`] and [`backward_filter_at`] called apart (and so,
/// like them, for any thread count). For a training step that needs both
/// gradients: at a stride above 1 they come from one sweep over
/// `grad_output`, which is then read from memory once, with the input rows
/// the filter gradient reads still in cache when the input gradient next
/// to them is written; at stride 1, where that measured slower, from the
/// two passes (see [`backward_at`]).
///
/// ```
/// use convnet_kernels::conv::{depthwise, ConvShape};
/// // One channel, 2x2 input, 1x1 filter of 3: dx = 3 * dy, dw = sum x * dy.
/// let s = ConvShape::new(1, 2, 2, 1, 1, 1, 1)?.with_groups(1)?;
/// let (x, dy, w) = ([1.0, 2.0, 3.0, 4.0], [1.0, 0.0, 0.0, 1.0], [3.0]);
/// let (mut dx, mut dw) = ([0.0; 4], [0.0; 1]);
/// depthwise::backward(&s, &x, &dy, &w, &mut dx, &mut dw)?;
/// assert_eq!((dx, dw), ([3.0, 0.0, 0.0, 3.0], [5.0]));
/// # Ok::<(), convnet_kernels::Error>(())
/// ```
pub fn backward(
    s: &ConvShape,
    input: &[f32],
    grad_output: &[f32],
    filter: &[f32],
    grad_input: &mut [f32],
    grad_filter: &mut [f32],
) -> Result<()> {
    backward_at(crate::simd::try_level()?, s, input, grad_output, filter, grad_input, grad_filter)
}

/// [`backward`] at an explicit SIMD level. `Err` for a shape that does not
/// validate or is not depthwise, or a buffer of the wrong length.
///
/// At a vertical stride above 1 both gradients come from one sweep
/// (the `combined` module); at stride 1 the two passes run apart, one after the
/// other, which measured faster there (`examples/depthwise_timing.rs`,
/// 2 threads, batch 8, three rounds: 112x112x32 0.80-0.92 ms apart
/// against 0.90-1.05 in one sweep, 28x28x256 0.39-0.41 against
/// 0.45-0.52, 14x14x512 equal; 112x112x64 at stride 2 1.44-1.73 apart
/// against 1.24-1.41). The results are the same bits either way.
pub fn backward_at(
    level: SimdLevel,
    s: &ConvShape,
    input: &[f32],
    grad_output: &[f32],
    filter: &[f32],
    grad_input: &mut [f32],
    grad_filter: &mut [f32],
) -> Result<()> {
    backward_checked(level, s, input, grad_output, filter, grad_input, grad_filter, s.stride_h > 1, false)
}

/// [`backward`] for a layer whose input is the output of a relu (a
/// `SeparableConv2D` after a relu'd layer, a depthwise layer after a fused
/// `Conv2D(activation="relu")`): `grad_input` comes out already masked where
/// `input <= 0`, the gradient at that relu's input, exactly as
/// [`relu_backward_inplace`](crate::activation::relu_backward_inplace)`(input,
/// grad_input)` after [`backward`] would leave it (same bits), but without
/// that second pass over the gradient: each element is masked as it is
/// stored. `grad_filter` is [`backward`]'s.
///
/// ```
/// use convnet_kernels::conv::{depthwise, ConvShape};
/// // One channel, 1x1 filter of 3, the input a relu output with a zero at pixel 1.
/// let s = ConvShape::new(1, 2, 2, 1, 1, 1, 1)?.with_groups(1)?;
/// let (x, dy, w) = ([1.0, 0.0, 3.0, 4.0], [1.0, 1.0, 0.0, 1.0], [3.0]);
/// let (mut dx, mut dw) = ([0.0; 4], [0.0; 1]);
/// depthwise::backward_through_relu(&s, &x, &dy, &w, &mut dx, &mut dw)?;
/// assert_eq!((dx, dw), ([3.0, 0.0, 0.0, 3.0], [5.0]));
/// # Ok::<(), convnet_kernels::Error>(())
/// ```
pub fn backward_through_relu(
    s: &ConvShape,
    input: &[f32],
    grad_output: &[f32],
    filter: &[f32],
    grad_input: &mut [f32],
    grad_filter: &mut [f32],
) -> Result<()> {
    backward_through_relu_at(crate::simd::try_level()?, s, input, grad_output, filter, grad_input, grad_filter)
}

/// [`backward_through_relu`] at an explicit SIMD level.
pub fn backward_through_relu_at(
    level: SimdLevel,
    s: &ConvShape,
    input: &[f32],
    grad_output: &[f32],
    filter: &[f32],
    grad_input: &mut [f32],
    grad_filter: &mut [f32],
) -> Result<()> {
    backward_checked(level, s, input, grad_output, filter, grad_input, grad_filter, s.stride_h > 1, true)
}

/// Both gradients in one sweep ([`combined`]) whatever the stride, for
/// the tests (shape and lengths as [`backward_at`] checks them).
#[cfg(test)]
pub(crate) fn combined_at(
    level: SimdLevel,
    s: &ConvShape,
    input: &[f32],
    grad_output: &[f32],
    filter: &[f32],
    grad_input: &mut [f32],
    grad_filter: &mut [f32],
) -> Result<()> {
    backward_checked(level, s, input, grad_output, filter, grad_input, grad_filter, true, false)
}

/// [`backward_at`]'s checks (a valid depthwise shape, the buffer lengths it
/// implies, the level's token), then one sweep or the two passes; with
/// `relu_input`, `grad_input` masked by `input` as it is stored.
#[allow(clippy::too_many_arguments)]
fn backward_checked(
    level: SimdLevel,
    s: &ConvShape,
    input: &[f32],
    grad_output: &[f32],
    filter: &[f32],
    grad_input: &mut [f32],
    grad_filter: &mut [f32],
    sweep: bool,
    relu_input: bool,
) -> Result<()> {
    let token = Token::new(level)?;
    s.validate()?;
    super::supports(ConvAlgo::Depthwise, s, super::ConvPass::BackwardData)?;
    check_len("input", input.len(), s.input_len(), s)?;
    check_len("grad_output", grad_output.len(), s.output_len(), s)?;
    check_len("filter", filter.len(), s.filter_len(), s)?;
    check_len("grad_input", grad_input.len(), s.input_len(), s)?;
    check_len("grad_filter", grad_filter.len(), s.filter_len(), s)?;
    let mask = relu_input.then_some(input);
    if sweep {
        backward_both(token, s, input, grad_output, filter, mask, grad_input, grad_filter);
    } else {
        backward_data_masked(token, s, grad_output, filter, mask, grad_input);
        backward_filter(token, s, input, grad_output, grad_filter);
    }
    Ok(())
}

/// Forward body (shape validated, lengths checked) on `token`'s instruction set.
pub(crate) fn forward(
    token: Token,
    s: &ConvShape,
    input: &[f32],
    filter: &[f32],
    bias: Option<&[f32]>,
    activation: Activation,
    output: &mut [f32],
) {
    let _ftz = FtzGuard::new();
    let (oh, ow) = (s.out_h(), s.out_w());
    let mut buf = scratch_isize(Slot::Table, oh * (2 * s.kh + 1) + ow * (2 * s.kw + 1) + 2 * ow);
    let (rbuf, rest) = buf.split_at_mut(oh * (2 * s.kh + 1));
    let (cbuf, runs) = rest.split_at_mut(ow * (2 * s.kw + 1));
    let rows = TapTable::build(rbuf, oh, s.kh, |o, k| forward_tap(o, k, s.stride_h, s.dilation_h, s.pad_top, s.h));
    let cols = TapTable::build(cbuf, ow, s.kw, |o, k| forward_tap(o, k, s.stride_w, s.dilation_w, s.pad_left, s.w));
    let nruns = column_runs(&cols, ow, 1, s.stride_w, runs);
    let g = gather::Gather {
        n: s.n,
        src: input,
        src_dims: (s.h, s.w, s.c_in),
        expand: s.c_out / s.c_in,
        dst: SendPtr(output.as_mut_ptr()),
        dst_dims: (oh, ow, s.c_out),
        reduce: 1,
        ce: s.c_out,
        kw: s.kw,
        filt: filter,
        bias,
        relu: activation == Activation::Relu,
        rows,
        cols,
        runs: &runs[..2 * nruns],
        steps: (1, s.stride_w),
        block: block_rows(s.n, oh, ow * s.c_out),
        pairs: None,
        mask: None,
        stream: stream_dst(output, s.c_out, 1, 4 * (s.input_len() + s.output_len())),
    };
    gather::run(token, &g);
}

/// Backward-data body (shape validated, lengths checked) on `token`'s instruction set.
pub(crate) fn backward_data(token: Token, s: &ConvShape, grad_output: &[f32], filter: &[f32], grad_input: &mut [f32]) {
    backward_data_masked(token, s, grad_output, filter, None, grad_input);
}

/// [`backward_data`], each stored element masked by `mask` (an input-shaped
/// relu output; see [`gather::Gather::mask`]) if given.
fn backward_data_masked(
    token: Token,
    s: &ConvShape,
    grad_output: &[f32],
    filter: &[f32],
    mask: Option<&[f32]>,
    grad_input: &mut [f32],
) {
    let _ftz = FtzGuard::new();
    let mut buf = scratch_isize(Slot::Table, data_tables_len(s));
    // A mask is read as the gradient is written.
    let moved = 4 * ((1 + usize::from(mask.is_some())) * s.input_len() + s.output_len());
    let g = data_gather(s, &mut buf, grad_output, filter, grad_input, moved, mask);
    gather::run(token, &g);
}

/// Table entries [`data_gather`] needs.
fn data_tables_len(s: &ConvShape) -> usize {
    s.h * (2 * s.kh + 1) + s.w * (2 * s.kw + 1) + 2 * s.w
}

/// The backward-data gather of `s`, its tables built in `buf`
/// ([`data_tables_len`] entries), for a pass that moves `moved` bytes in
/// all (see [`stream_dst`]).
fn data_gather<'a>(
    s: &ConvShape,
    buf: &'a mut [isize],
    grad_output: &'a [f32],
    filter: &'a [f32],
    grad_input: &mut [f32],
    moved: usize,
    mask: Option<&'a [f32]>,
) -> gather::Gather<'a> {
    let (oh, ow) = (s.out_h(), s.out_w());
    let (rbuf, rest) = buf.split_at_mut(s.h * (2 * s.kh + 1));
    let (cbuf, runs) = rest.split_at_mut(s.w * (2 * s.kw + 1));
    let rows = TapTable::build(rbuf, s.h, s.kh, |i, k| backward_tap(i, k, s.stride_h, s.dilation_h, s.pad_top, oh));
    let cols = TapTable::build(cbuf, s.w, s.kw, |i, k| backward_tap(i, k, s.stride_w, s.dilation_w, s.pad_left, ow));
    // Runs in column order only (`dstep = 1`): with stride 1 the interior
    // of a row is one run; with stride > 1 neighbouring input columns have
    // different taps, so every column is its own run and the row is written
    // in order. (One run per phase, `dstep = stride`, writes every other
    // pixel and measured slower: 112x112x64 stride 2, 3.5 against 2.4 ms of
    // CPU per call on the loaded machine.)
    let mut nruns = column_runs(&cols, s.w, 1, 1, runs);
    // Stride 2, 3 wide: the interior columns go as pair tiles, the runs
    // keep the border columns only.
    let pairs = if s.stride_w == 2 && s.kw == 3 && s.dilation_w == 1 { pair_range(&cols, s.w) } else { None };
    if let Some(pr) = pairs {
        let inside = |start: isize| (pr.q..pr.q + 2 * pr.len).contains(&(start as usize));
        let mut k = 0;
        for r in 0..nruns {
            let (start, n) = (runs[2 * r], runs[2 * r + 1]);
            // With stride 2 neighbouring columns read different taps, so a
            // run is one column, or columns reading nothing (never pairs):
            // wholly inside the pair range or wholly outside.
            if !inside(start) {
                runs[2 * k] = start;
                runs[2 * k + 1] = n;
                k += 1;
            }
        }
        nruns = k;
    }
    gather::Gather {
        n: s.n,
        src: grad_output,
        src_dims: (oh, ow, s.c_out),
        expand: 1,
        dst: SendPtr(grad_input.as_mut_ptr()),
        dst_dims: (s.h, s.w, s.c_in),
        reduce: s.c_out / s.c_in,
        ce: s.c_out,
        kw: s.kw,
        filt: filter,
        bias: None,
        relu: false,
        rows,
        cols,
        runs: &runs[..2 * nruns],
        steps: (1, 1),
        block: block_rows(s.n, s.h, s.w * s.c_in),
        pairs,
        mask,
        stream: stream_dst(grad_input, s.c_in, s.c_out / s.c_in, moved),
    }
}

/// Backward-filter body (shape validated, lengths checked) on `token`'s instruction set.
pub(crate) fn backward_filter(
    token: Token,
    s: &ConvShape,
    input: &[f32],
    grad_output: &[f32],
    grad_filter: &mut [f32],
) {
    let _ftz = FtzGuard::new();
    let mut buf = scratch_isize(Slot::Table, filter_tables_len(s));
    let job = filter_job(s, &mut buf, input, grad_output);
    filter::run(token, &job, grad_filter);
}

/// Table entries [`filter_job`] needs.
fn filter_tables_len(s: &ConvShape) -> usize {
    s.out_h() * (2 * s.kh + 1) + 3 * s.kw
}

/// The backward-filter job of `s`, its tables built in `buf`
/// ([`filter_tables_len`] entries).
fn filter_job<'a>(
    s: &ConvShape,
    buf: &'a mut [isize],
    input: &'a [f32],
    grad_output: &'a [f32],
) -> filter::FilterJob<'a> {
    let (oh, ow) = (s.out_h(), s.out_w());
    let (rbuf, cbuf) = buf.split_at_mut(oh * (2 * s.kh + 1));
    let rows = TapTable::build(rbuf, oh, s.kh, |o, k| forward_tap(o, k, s.stride_h, s.dilation_h, s.pad_top, s.h));
    for (kx, r) in cbuf.chunks_exact_mut(3).enumerate() {
        let tap = |ox| forward_tap(ox, kx, s.stride_w, s.dilation_w, s.pad_left, s.w);
        let lo = (0..ow).find(|&ox| tap(ox).is_some());
        match lo {
            Some(lo) => {
                let hi = (lo..ow).find(|&ox| tap(ox).is_none()).unwrap_or(ow);
                r.copy_from_slice(&[lo as isize, hi as isize, tap(lo).unwrap_or(0) as isize]);
            }
            None => r.copy_from_slice(&[0, 0, 0]),
        }
    }
    filter::FilterJob {
        x: input,
        gy: grad_output,
        in_dims: (s.n, s.h, s.w, s.c_in),
        out_hw: (oh, ow),
        ce: s.c_out,
        k: (s.kh, s.kw),
        rows,
        col_ranges: cbuf,
        stride_w: s.stride_w,
    }
}

/// Combined backward body (shape validated, lengths checked): backward-data
/// and backward-filter in one sweep over the output gradient (see
/// [`combined`]), the input gradient masked by `mask` if given.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward_both(
    token: Token,
    s: &ConvShape,
    input: &[f32],
    grad_output: &[f32],
    filter: &[f32],
    mask: Option<&[f32]>,
    grad_input: &mut [f32],
    grad_filter: &mut [f32],
) {
    let _ftz = FtzGuard::new();
    let mut buf = scratch_isize(Slot::Table, data_tables_len(s) + filter_tables_len(s));
    let (dbuf, fbuf) = buf.split_at_mut(data_tables_len(s));
    // Both gradients read the input and the output gradient and write the
    // input gradient (the mask, when there is one, is the input read again).
    let moved = 4 * ((2 + usize::from(mask.is_some())) * s.input_len() + s.output_len());
    let g = data_gather(s, dbuf, grad_output, filter, grad_input, moved, mask);
    let job = filter_job(s, fbuf, input, grad_output);
    combined::run(token, &g, &job, s.stride_h, grad_filter);
}

#[cfg(test)]
mod tests;
