//! The tape-free inference engine: [`run`] executes an inference *plan*
//! built once per layer list, batch size, algorithm and `logits` flag and
//! cached in the [`Scratch`] that also holds the activation buffers (two
//! ping-pong buffers, a max-pool index buffer, a separable layer's middle),
//! sized when the plan is built and reused across batches and calls. No node
//! is recorded, no parameter is copied, no gradient buffer exists.
//!
//! The plan resolves each convolution's algorithm once (the layer's own
//! `algo`, else the model's, `Auto` through
//! [`conv::select`](convnet_kernels::conv::select) for this batch size). A
//! `Conv2D` whose algorithm resolves to `direct`, with a ReLU or linear
//! activation and no padding, runs on the fused kernel
//! ([`convnet_kernels::conv::fused`]): bias and activation in the epilogue
//! and, when a `MaxPooling2D((2, 2))` follows, the pool too, so the conv's
//! output map is never written. That kernel is `direct`'s micro-kernel in
//! `direct`'s reduction order, so the fused result is bit-identical to
//! `direct` followed by the max pool, i.e. to the tape's forward pass. Every
//! other layer (and a convolution that resolves to Winograd, im2col or the
//! depthwise kernel, or has a sigmoid/tanh/softmax activation) runs on the
//! same kernel calls the tape makes, with ReLU fused into conv and dense
//! epilogues; `Flatten`, `Dropout` and the random augmentation layers are the
//! identity here.
//!
//! A dense `Conv2D` that resolves to Winograd (ReLU or linear) runs on
//! [`winograd::pooled`](convnet_kernels::conv::winograd::pooled), blocked
//! for inference (smaller blocks than training's, at least two): bias and
//! ReLU in the output transform, and the `MaxPooling2D((2, 2))` that follows
//! too when there is one. Bit-identical to the Winograd forward (followed
//! by the max pool), i.e. to the tape's forward pass.
//!
//! A `MaxPooling2D((2, 2))` that did not fold into its conv (the conv ran on
//! im2col, say) runs on the inference pool
//! ([`max_pool_2x2`](convnet_kernels::conv::fused::max_pool_2x2)): the same
//! values as the training kernel, without its argmax.
//!
//! Threads: with a batch of one ([`SINGLE_THREAD_MAX_BATCH`]) those
//! convolutions run on the register-blocked kernel
//! ([`convnet_kernels::conv::blocked`]: the same `direct` order, tiles of
//! several pixels by two channel vectors, on the calling thread), so a
//! batch-1 `predict` of the chapter's model never leaves the caller's
//! thread; its dense layers are one-row GEMMs, which run as matrix-vector
//! products (same bits as the blocked GEMM).
//!
//! A [`Scratch::lane`] (one worker of a batch-parallel `evaluate` /
//! `predict`, see `evaluate.rs`) runs every batch size that way: the fused
//! convolutions on the blocked kernel and the 2x2 pool on the calling
//! thread, the same bits as the pool-threaded plan (and as the tape).
//!
//! `evaluate` and `predict` (in `evaluate.rs`) and the validation pass of
//! `fit` run on it. It needs only the built layers and their parameters, not
//! `Model`, so the model can own its [`Scratch`] without the two files
//! importing each other.

use crate::built::BuiltLayer;
use crate::layers::{conv_shape, depthwise_shape, pool_shape, separable_shapes, Activation, Layer};
use crate::Result;
use convnet_autodiff::Params;
use convnet_kernels::activation::Activation as KernelActivation;
use convnet_kernels::conv::blocked::BlockedConv;
use convnet_kernels::conv::fused::{self, FusedConv, FusedPool, Threading};
use convnet_kernels::conv::{self, winograd, ConvAlgo, ConvPass};
use convnet_kernels::dense::{dense_forward, DenseShape};
use convnet_kernels::{loss, pool};

/// Batches up to this size run the fused convolutions on the calling
/// thread: the chapter model's whole batch-1 pass is ~5.6 MFLOP, ~0.1 ms on
/// one core, where a rayon hand-off per layer costs more than the second
/// core saves.
pub(crate) const SINGLE_THREAD_MAX_BATCH: usize = 1;

/// Reusable buffers of the inference pass, and the cached plan.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    cur: Vec<f32>,
    next: Vec<f32>,
    argmax: Vec<u32>,
    grad: Vec<f32>,
    /// A separable layer's depthwise output.
    mid: Vec<f32>,
    plan: Option<Plan>,
    /// Run every step on the calling thread (a lane of a batch-parallel
    /// pass, see [`Scratch::lane`]): the fused convolutions on the
    /// register-blocked kernel and the inference pool without a rayon
    /// hand-off; Winograd and dense layers keep their own fixed splits
    /// (nested in the lane's task, so they rarely leave its thread).
    calling_thread: bool,
}

/// What a plan was built for: the layer list (by address and length), the
/// batch size, the model's algorithm and whether the last activation is left out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PlanKey {
    layers: usize,
    count: usize,
    n: usize,
    algo: ConvAlgo,
    logits: bool,
    calling_thread: bool,
}

/// One step of a plan.
#[derive(Debug)]
enum Step {
    /// `Conv2D` layer `conv` on the fused kernel; with `pooled`, the
    /// `MaxPooling2D` after it as well.
    Fused { conv: usize, fused: Box<FusedConv>, pooled: bool, threading: Threading },
    /// `Conv2D` layer `conv` on Winograd `algo` blocked for inference
    /// ([`winograd::pooled`]); with `pool`, the `MaxPooling2D((2, 2))` after
    /// it as well, fused into the output transform.
    Winograd { conv: usize, algo: ConvAlgo, shape: conv::ConvShape, act: KernelActivation, pool: FusedPool },
    /// The same on the register-blocked kernel, on the calling thread
    /// (batches up to [`SINGLE_THREAD_MAX_BATCH`]).
    Blocked { conv: usize, blocked: Box<BlockedConv>, pooled: bool },
    /// `MaxPooling2D((2, 2))` layer `index` whose conv did not fuse it: the
    /// inference pool (no argmax).
    Pool { index: usize, threading: Threading },
    /// Layer `index` on the general path; `algo` is the resolved
    /// convolution algorithm (ignored by other layers).
    Layer { index: usize, algo: ConvAlgo },
}

/// An inference plan: the steps, and the buffer sizes they need.
#[derive(Debug)]
struct Plan {
    key: PlanKey,
    steps: Vec<Step>,
}

/// Whether `l` is a `MaxPooling2D` with a 2x2 window, stride 2, `valid`
/// padding (what the fused epilogue pools).
fn is_max_pool_2x2(l: &BuiltLayer, n: usize) -> bool {
    let Layer::MaxPooling2D(p) = &l.layer else { return false };
    let Ok(s) = pool_shape(p, n, l.input[0], l.input[1], l.input[2]) else { return false };
    (s.ph, s.pw, s.stride_h, s.stride_w) == (2, 2, 2, 2)
        && s.pad_top + s.pad_bottom + s.pad_left + s.pad_right == 0
        && s.options.is_default()
}

impl Plan {
    /// Resolves every layer of `layers` for a batch of `n`.
    fn new(layers: &[BuiltLayer], key: PlanKey) -> Result<Plan> {
        let (n, last) = (key.n, layers.len() - 1);
        let threading =
            if n <= SINGLE_THREAD_MAX_BATCH || key.calling_thread { Threading::CallingThread } else { Threading::Pool };
        let mut steps = Vec::with_capacity(layers.len());
        let mut i = 0;
        while i < layers.len() {
            let l = &layers[i];
            let Layer::Conv2D(c) = &l.layer else {
                steps.push(if is_max_pool_2x2(l, n) {
                    Step::Pool { index: i, threading }
                } else {
                    Step::Layer { index: i, algo: key.algo }
                });
                i += 1;
                continue;
            };
            let shape = conv_shape(c, n, l.input[0], l.input[1], l.input[2])?;
            let wanted = c.algo.unwrap_or(if c.groups > 1 { ConvAlgo::Auto } else { key.algo });
            let algo = if wanted == ConvAlgo::Auto { conv::select(&shape, ConvPass::Forward) } else { wanted };
            let act = match (i == last && key.logits, l.layer.activation()) {
                (true, _) | (false, Activation::Linear) => Some(KernelActivation::Linear),
                (false, Activation::Relu) => Some(KernelActivation::Relu),
                _ => None,
            };
            let fusable = |pool| act.is_some_and(|a| FusedConv::supports(&shape, a, pool).is_ok());
            if algo == ConvAlgo::Direct && fusable(FusedPool::None) {
                let act = act.unwrap_or_default();
                let pooled = i < last && is_max_pool_2x2(&layers[i + 1], n) && fusable(FusedPool::Max2x2);
                let pool = if pooled { FusedPool::Max2x2 } else { FusedPool::None };
                steps.push(if threading == Threading::CallingThread {
                    Step::Blocked { conv: i, blocked: Box::new(BlockedConv::new(&shape, act, pool)?), pooled }
                } else {
                    Step::Fused { conv: i, fused: Box::new(FusedConv::new(&shape, act, pool)?), pooled, threading }
                });
                i += if pooled { 2 } else { 1 };
            } else if let Some(act) = act.filter(|_| winograd::pooled::supports(algo, &shape, FusedPool::None).is_ok())
            {
                let pooled = i < last
                    && is_max_pool_2x2(&layers[i + 1], n)
                    && winograd::pooled::supports(algo, &shape, FusedPool::Max2x2).is_ok();
                let pool = if pooled { FusedPool::Max2x2 } else { FusedPool::None };
                steps.push(Step::Winograd { conv: i, algo, shape, act, pool });
                i += if pooled { 2 } else { 1 };
            } else {
                steps.push(Step::Layer { index: i, algo });
                i += 1;
            }
        }
        Ok(Plan { key, steps })
    }
}

/// Makes `v` at least `len` long. Never shrinks: `Vec::resize` to a larger
/// length writes every new element even when the capacity is there, so
/// resizing the ping-pong buffers to each layer's size cleared a batch's
/// worth of activations per layer (10% of evaluate in a profile).
fn grow<T: Copy + Default>(v: &mut Vec<T>, len: usize) {
    if v.len() < len {
        v.resize(len, T::default());
    }
}

/// Where the current activations are: the caller's input, or `Scratch::cur`.
struct Cursor {
    from_x: bool,
    len: usize,
}

/// Runs `layers` (with their weights in `params`, convolutions by `algo`
/// unless a layer pins its own) on `n` inputs `x` (NHWC, `n * input_len`
/// floats) and returns the outputs (`n * outputs` floats, in `s`). With
/// `logits`, the last layer's activation is left out.
pub(crate) fn run<'s>(
    layers: &[BuiltLayer],
    params: &Params,
    algo: ConvAlgo,
    s: &'s mut Scratch,
    x: &[f32],
    n: usize,
    logits: bool,
) -> Result<&'s [f32]> {
    let calling_thread = s.calling_thread;
    let key = PlanKey { layers: layers.as_ptr() as usize, count: layers.len(), n, algo, logits, calling_thread };
    let plan = match s.plan.take() {
        Some(p) if p.key == key => p,
        _ => {
            let p = Plan::new(layers, key)?;
            s.reserve(layers, n);
            p
        }
    };
    let result = execute(&plan, layers, params, s, x);
    s.plan = Some(plan);
    let len = result?;
    if len.0 {
        s.cur.clear();
        s.cur.extend_from_slice(x);
    }
    Ok(&s.cur[..len.1])
}

/// Runs `plan`; returns (whether the output is still `x` itself, its length).
fn execute(plan: &Plan, layers: &[BuiltLayer], params: &Params, s: &mut Scratch, x: &[f32]) -> Result<(bool, usize)> {
    let (n, last) = (plan.key.n, layers.len() - 1);
    let mut at = Cursor { from_x: true, len: x.len() };
    for step in &plan.steps {
        match step {
            Step::Fused { conv, pooled, .. } | Step::Blocked { conv, pooled, .. } => {
                let l = &layers[*conv];
                let out = if *pooled { &layers[conv + 1].output } else { &l.output };
                let out_len = n * out.iter().product::<usize>();
                let weight = |k: usize| -> Result<Option<&[f32]>> {
                    Ok(match l.params.get(k) {
                        Some(&id) => Some(params.value(id)?.data()),
                        None => None,
                    })
                };
                let (k, b) = (weight(0)?.expect("conv kernel"), weight(1)?);
                grow(&mut s.next, out_len);
                let input: &[f32] = if at.from_x { x } else { &s.cur[..at.len] };
                if let Step::Fused { fused, threading, .. } = step {
                    fused.run(input, n, k, b, &mut s.next[..out_len], *threading)?;
                } else if let Step::Blocked { blocked, .. } = step {
                    blocked.run(input, n, k, b, &mut s.next[..out_len])?;
                }
                std::mem::swap(&mut s.cur, &mut s.next);
                at = Cursor { from_x: false, len: out_len };
            }
            Step::Winograd { conv, algo, shape, act, pool } => {
                let l = &layers[*conv];
                let out_len = winograd::pooled::output_len(shape, *pool);
                let k = params.value(*l.params.first().expect("conv kernel"))?.data();
                let b = l.params.get(1).map(|&id| params.value(id)).transpose()?;
                grow(&mut s.next, out_len);
                let input: &[f32] = if at.from_x { x } else { &s.cur[..at.len] };
                let out = &mut s.next[..out_len];
                let b = b.map(|t| t.data());
                winograd::pooled::conv2d_winograd_pooled(*algo, shape, input, k, b, *act, *pool, out)?;
                std::mem::swap(&mut s.cur, &mut s.next);
                at = Cursor { from_x: false, len: out_len };
            }
            Step::Pool { index, threading } => {
                let l = &layers[*index];
                let out_len = n * l.output.iter().product::<usize>();
                grow(&mut s.next, out_len);
                let input: &[f32] = if at.from_x { x } else { &s.cur[..at.len] };
                let [h, w, c] = [l.input[0], l.input[1], l.input[2]];
                fused::max_pool_2x2(n, h, w, c, input, &mut s.next[..out_len], *threading)?;
                std::mem::swap(&mut s.cur, &mut s.next);
                at = Cursor { from_x: false, len: out_len };
            }
            Step::Layer { index, algo } => {
                let logits = *index == last && plan.key.logits;
                layer(&layers[*index], params, *algo, s, x, n, logits, &mut at)?;
            }
        }
    }
    Ok((at.from_x, at.len))
}

/// One layer on the general path: the kernels the tape's forward pass
/// calls, ReLU fused into conv and dense epilogues, other activations after.
#[allow(clippy::too_many_arguments)] // the pass's state, spelled out
fn layer(
    l: &BuiltLayer,
    params: &Params,
    algo: ConvAlgo,
    s: &mut Scratch,
    x: &[f32],
    n: usize,
    logits: bool,
    at: &mut Cursor,
) -> Result<()> {
    let mut act = l.layer.activation();
    if logits {
        act = Activation::Linear;
    }
    let out_len = n * l.output.iter().product::<usize>();
    let input: &[f32] = if at.from_x { x } else { &s.cur[..at.len] };
    let weight = |k: usize| -> Result<Option<&[f32]>> {
        Ok(match l.params.get(k) {
            Some(&id) => Some(params.value(id)?.data()),
            None => None,
        })
    };
    let fused = if act == Activation::Relu { KernelActivation::Relu } else { KernelActivation::Linear };
    let mut wrote = true;
    match &l.layer {
        Layer::Conv2D(c) => {
            let [h, w, ch] = [l.input[0], l.input[1], l.input[2]];
            let shape = conv_shape(c, n, h, w, ch)?;
            grow(&mut s.next, out_len);
            let (k, b) = (weight(0)?.expect("conv kernel"), weight(1)?);
            conv::conv2d_forward(algo, &shape, input, k, b, fused, &mut s.next[..out_len])?;
        }
        Layer::DepthwiseConv2D(d) => {
            let shape = depthwise_shape(d, n, l.input[0], l.input[1], l.input[2])?;
            grow(&mut s.next, out_len);
            let (k, b) = (weight(0)?.expect("depthwise kernel"), weight(1)?);
            let algo = d.algo.unwrap_or(ConvAlgo::Auto);
            conv::conv2d_forward(algo, &shape, input, k, b, fused, &mut s.next[..out_len])?;
        }
        Layer::SeparableConv2D(c) => {
            let (ds, ps) = separable_shapes(c, n, l.input[0], l.input[1], l.input[2])?;
            grow(&mut s.mid, ds.output_len());
            grow(&mut s.next, out_len);
            let (dk, pk, b) =
                (weight(0)?.expect("depthwise kernel"), weight(1)?.expect("pointwise kernel"), weight(2)?);
            let mid = &mut s.mid[..ds.output_len()];
            conv::conv2d_forward(ConvAlgo::Auto, &ds, input, dk, None, KernelActivation::Linear, mid)?;
            conv::conv2d_forward(algo, &ps, mid, pk, b, fused, &mut s.next[..out_len])?;
        }
        Layer::Dense(_) => {
            let shape = DenseShape { batch: n, inputs: l.input[0], outputs: l.output[0] };
            grow(&mut s.next, out_len);
            let (k, b) = (weight(0)?.expect("dense kernel"), weight(1)?);
            dense_forward(&shape, input, k, b, fused, &mut s.next[..out_len])?;
        }
        Layer::MaxPooling2D(p) | Layer::AveragePooling2D(p) => {
            let shape = pool_shape(p, n, l.input[0], l.input[1], l.input[2])?;
            grow(&mut s.next, out_len);
            if matches!(l.layer, Layer::MaxPooling2D(_)) {
                grow(&mut s.argmax, out_len);
                pool::max_pool2d_forward(&shape, input, &mut s.next[..out_len], &mut s.argmax[..out_len])?;
            } else {
                pool::avg_pool2d_forward(&shape, input, &mut s.next[..out_len])?;
            }
        }
        Layer::GlobalAveragePooling2D(_) => {
            let [h, w, ch] = [l.input[0], l.input[1], l.input[2]];
            grow(&mut s.next, out_len);
            pool::global_avg_pool_forward(n, h * w, ch, input, &mut s.next[..out_len])?;
        }
        Layer::GlobalMaxPooling2D(_) => {
            // A max pool whose window is the whole map, as in training.
            let [h, w, ch] = [l.input[0], l.input[1], l.input[2]];
            let shape = pool::PoolShape::new(n, h, w, ch, (h, w), (h, w), conv::Padding::Valid)?;
            grow(&mut s.next, out_len);
            grow(&mut s.argmax, out_len);
            pool::max_pool2d_forward(&shape, input, &mut s.next[..out_len], &mut s.argmax[..out_len])?;
        }
        // Flatten keeps NHWC order (h, w, c), exactly Keras's; dropout is the identity here.
        Layer::Flatten(_) | Layer::Dropout(_) => wrote = false,
        // Augmentation is training only.
        Layer::RandomFlip(_)
        | Layer::RandomRotation(_)
        | Layer::RandomZoom(_)
        | Layer::RandomTranslation(_)
        | Layer::RandomShear(_) => wrote = false,
        Layer::Rescaling(r) => {
            grow(&mut s.next, out_len);
            for (o, &v) in s.next[..out_len].iter_mut().zip(input) {
                *o = v * r.scale + r.offset;
            }
        }
    }
    if wrote {
        std::mem::swap(&mut s.cur, &mut s.next);
        at.from_x = false;
    }
    at.len = out_len;
    let len = out_len;
    if act == Activation::Linear || (act == Activation::Relu && wrote) {
        return Ok(()); // nothing to do, or ReLU already fused into the kernel
    }
    if at.from_x {
        // An activation directly on the input: work on a copy.
        s.cur.clear();
        s.cur.extend_from_slice(x);
        at.from_x = false;
    }
    let out = &mut s.cur[..len];
    match act {
        Activation::Linear => {}
        Activation::Relu => out.iter_mut().for_each(|v| *v = v.max(0.0)),
        Activation::Sigmoid => out.iter_mut().for_each(|v| *v = loss::sigmoid(*v)),
        Activation::Tanh => out.iter_mut().for_each(|v| *v = v.tanh()),
        Activation::Softmax => {
            grow(&mut s.next, len);
            loss::softmax(*l.output.last().unwrap_or(&1), out, &mut s.next[..len])?;
            std::mem::swap(&mut s.cur, &mut s.next);
        }
    }
    Ok(())
}

impl Scratch {
    /// Buffers for one lane of a batch-parallel pass: every plan it caches
    /// runs its steps on the calling thread (see the module docs).
    pub(crate) fn lane() -> Scratch {
        Scratch { calling_thread: true, ..Scratch::default() }
    }

    /// Grows the ping-pong buffers to what a batch of `n` through `layers`
    /// needs, so that running the plan neither allocates nor clears.
    fn reserve(&mut self, layers: &[BuiltLayer], n: usize) {
        let largest = layers.iter().map(|l| l.output.iter().product::<usize>()).max().unwrap_or(0);
        let first = layers.first().map_or(0, |l| l.input.iter().product::<usize>());
        let want = n.saturating_mul(largest.max(first));
        grow(&mut self.cur, want);
        grow(&mut self.next, want);
    }

    /// Mean softmax cross-entropy of `logits` against one-hot `targets`
    /// (the kernel the training tape uses).
    pub(crate) fn cross_entropy(&mut self, classes: usize, logits: &[f32], targets: &[f32]) -> Result<f32> {
        grow(&mut self.grad, logits.len());
        Ok(loss::softmax_cross_entropy(classes, logits, targets, &mut self.grad[..logits.len()])?)
    }

    /// Mean sparse softmax cross-entropy of `logits` against class indices.
    pub(crate) fn sparse_cross_entropy(&mut self, classes: usize, logits: &[f32], labels: &[u32]) -> Result<f32> {
        grow(&mut self.grad, logits.len());
        Ok(loss::sparse_softmax_cross_entropy(classes, logits, labels, &mut self.grad[..logits.len()])?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::Activation::{Relu, Sigmoid, Softmax};
    use crate::{Conv2D, Dense, Flatten, MaxPooling2D, Model, Padding, Sequential};
    use convnet_autodiff::Tape;
    use convnet_tensor::{Rng, Shape, Tensor};

    /// The plan's steps as `(first layer, fused?, pooled?, algo)`, for a
    /// pool-threaded scratch or (`lane`) a calling-thread one.
    fn steps_in(model: &Model, n: usize, lane: bool) -> Vec<(usize, bool, bool, ConvAlgo)> {
        let key =
            PlanKey { layers: 0, count: model.layers.len(), n, algo: model.algo, logits: false, calling_thread: lane };
        Plan::new(&model.layers, key)
            .unwrap()
            .steps
            .iter()
            .map(|s| match s {
                Step::Fused { conv, pooled, threading, .. } => {
                    assert_eq!(*threading, Threading::Pool);
                    assert!(n > SINGLE_THREAD_MAX_BATCH && !lane);
                    (*conv, true, *pooled, ConvAlgo::Direct)
                }
                Step::Blocked { conv, pooled, .. } => {
                    assert!(n <= SINGLE_THREAD_MAX_BATCH || lane);
                    (*conv, true, *pooled, ConvAlgo::Direct)
                }
                Step::Winograd { conv, algo, pool, .. } => (*conv, false, *pool == FusedPool::Max2x2, *algo),
                Step::Pool { index, threading } => {
                    assert_eq!(*threading == Threading::CallingThread, n <= SINGLE_THREAD_MAX_BATCH || lane);
                    (*index, false, true, ConvAlgo::Auto)
                }
                Step::Layer { index, algo } => (*index, false, false, *algo),
            })
            .collect()
    }

    fn steps(model: &Model, n: usize) -> Vec<(usize, bool, bool, ConvAlgo)> {
        steps_in(model, n, false)
    }

    fn taped(model: &Model, x: &Tensor, logits: bool) -> Vec<u32> {
        let mut tape = Tape::inference();
        let v = tape.input(x.view()).unwrap();
        let y = model.forward(&mut tape, v, logits, 0).unwrap();
        tape.value(y).unwrap().data().iter().map(|v| v.to_bits()).collect()
    }

    fn input(model: &Model, n: usize) -> Tensor {
        let mut dims = vec![n];
        dims.extend_from_slice(model.input_shape());
        Tensor::uniform(Shape::new(&dims).unwrap(), 0.0, 1.0, &mut Rng::new(n as u64)).unwrap()
    }

    #[test]
    fn the_chapter_model_fuses_its_pooled_convolutions() {
        let model = crate::mnist_convnet().build().unwrap();
        let (f, d) = (true, false);
        // Batch 1: every conv on the fused kernel, on the calling thread.
        assert_eq!(
            steps(&model, 1),
            [
                (0, f, true, ConvAlgo::Direct),
                (2, f, true, ConvAlgo::Direct),
                (4, f, false, ConvAlgo::Direct),
                (5, d, false, ConvAlgo::Auto),
                (6, d, false, ConvAlgo::Auto),
                (7, d, false, ConvAlgo::Auto)
            ]
        );
        // Batch 64: the 32- and 64-channel layers resolve to Winograd F4;
        // the first of them takes its pool into the output transform.
        let big = steps(&model, 64);
        assert_eq!(big[0], (0, f, true, ConvAlgo::Direct));
        assert_eq!(big[1], (2, d, true, ConvAlgo::WinogradF4), "Winograd with the pool fused");
        assert_eq!(big[2], (4, d, false, ConvAlgo::WinogradF4));
        assert_eq!(big.len(), 6);
        // A lane of a batch-parallel pass: the same algorithms, the direct
        // conv on the blocked kernel (asserted in `steps_in`).
        assert_eq!(steps_in(&model, 64, true), big);
    }

    #[test]
    fn what_cannot_fuse_falls_back_to_the_general_path() {
        let model = Sequential::new()
            .add(Conv2D::new(4, 3).activation(Sigmoid).input_shape((9, 9, 2)))
            .add(MaxPooling2D::new(2))
            .add(Conv2D::new(4, 3).padding(Padding::Same).activation(Relu))
            .add(MaxPooling2D::new(2).strides(1))
            .add(Conv2D::new(3, 1).use_bias(false))
            .add(MaxPooling2D::new(2))
            .add(Flatten::new())
            .add(Dense::new(2).activation(Softmax))
            .build()
            .unwrap();
        let s = steps(&model, 1);
        assert!(!s[0].1 && !s[2].1, "sigmoid and `same` stay unfused: {s:?}");
        assert_eq!(s[4], (4, true, true, ConvAlgo::Direct), "the linear 1x1 conv and its 2x2 pool fuse: {s:?}");
        assert_eq!(s[1], (1, false, true, ConvAlgo::Auto), "the pool after the sigmoid conv: the inference pool");
        assert_eq!(s[3], (3, false, false, ConvAlgo::Auto), "a stride-1 pool: the general path");
        assert_eq!(s.len(), 7);
    }

    /// Every model, at batch 1 (calling thread), 2 and 64 (pool), and in a
    /// lane of a batch-parallel pass (every step on the calling thread), with
    /// and without logits: the plan equals the tape's forward pass bit for bit
    /// (the fused kernel is `direct` + max pool exactly, and every other
    /// layer calls the kernels the tape calls).
    #[test]
    fn plans_equal_the_tape_bit_for_bit() {
        let models = [
            crate::mnist_convnet().build().unwrap(),
            Sequential::new()
                .add(Conv2D::new(5, 3).input_shape((11, 10, 3)))
                .add(MaxPooling2D::new(2))
                .add(Conv2D::new(9, 2).strides(2).activation(Relu).use_bias(false))
                .add(MaxPooling2D::new(2))
                .add(Flatten::new())
                .add(Dense::new(3).activation(Sigmoid))
                .build()
                .unwrap(),
            Sequential::new()
                .add(Conv2D::new(4, 3).activation(Relu).input_shape((7, 7, 1)))
                .add(Conv2D::new(3, 3).activation(Relu))
                .build()
                .unwrap(),
        ];
        for model in &models {
            for (n, lane) in [1, 2, 64].into_iter().flat_map(|n| [(n, false), (n, true)]) {
                let x = input(model, n);
                for logits in [false, true] {
                    let mut s = if lane { Scratch::lane() } else { Scratch::default() };
                    let got: Vec<u32> =
                        model.infer(&mut s, x.data(), n, logits).unwrap().iter().map(|v| v.to_bits()).collect();
                    assert_eq!(got, taped(model, &x, logits), "{} n={n} lane={lane} logits={logits}", model.summary());
                    // The cached plan gives the same again.
                    let again: Vec<u32> =
                        model.infer(&mut s, x.data(), n, logits).unwrap().iter().map(|v| v.to_bits()).collect();
                    assert_eq!(got, again);
                }
            }
        }
    }

    /// The plan holds no weights: after the weights change, the next call
    /// uses the new ones.
    #[test]
    fn a_cached_plan_sees_new_weights() {
        let mut model = crate::mnist_convnet().build().unwrap();
        let x = input(&model, 1);
        let mut s = Scratch::default();
        let before = model.infer(&mut s, x.data(), 1, true).unwrap().to_vec();
        let id = model.layers[0].params[0];
        let w: Vec<f32> = model.params.value(id).unwrap().data().iter().map(|v| v * 2.0).collect();
        model.params.set_value(id, &w).unwrap();
        let after = model.infer(&mut s, x.data(), 1, true).unwrap().to_vec();
        assert_ne!(before, after);
        let fresh = model.infer(&mut Scratch::default(), x.data(), 1, true).unwrap().to_vec();
        assert_eq!(after, fresh);
    }
}
