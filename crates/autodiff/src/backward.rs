//! The backward rule of every op: given `g = d loss / d output`, add
//! `d loss / d input` into each input that needs a gradient.
//!
//! Gradients are written, not accumulated, when an input receives its first
//! contribution (the common single-consumer case: no zero fill, no extra
//! buffer); later contributions go through a scratch buffer and an add. When
//! the input gradient has the output's length and the rule is element-wise
//! (relu, reshape, dropout, bias add), the buffer `g` itself is handed to the
//! input: no copy.

use crate::buffers::Buffers;
use crate::error::kernel_err;
use crate::node::{value_of, Aux, Node, Op, Storage};
use crate::params::GradSink;
use crate::profile::{self, Profile, ProfilePass};
use crate::Result;
use convnet_kernels::activation::{relu_backward_inplace, Activation};
use convnet_kernels::conv::{ConvAlgo, ConvPass, Padding};
use convnet_kernels::loss::{sigmoid, BCE_EPSILON};
use convnet_kernels::{conv, dense, pool};
use convnet_tensor::AlignedBuf;

/// What a backward rule may touch: the nodes recorded before it (its
/// inputs), the buffer pool and the parameter gradients.
pub(crate) struct Ctx<'a> {
    pub before: &'a mut [Node],
    pub buffers: &'a mut Buffers,
    pub params: &'a mut dyn GradSink,
    pub work: &'a mut crate::tape::BackwardWork,
    /// The profiler (`None` when off) and the scope of the node being run.
    pub profile: &'a mut Option<Box<Profile>>,
    pub scope: u32,
}

fn add_into(acc: &mut [f32], x: &[f32]) {
    for (a, &x) in acc.iter_mut().zip(x) {
        *a += x;
    }
}

impl Ctx<'_> {
    /// Starts a timed call (no clock read when profiling is off).
    fn clock(&self) -> Option<std::time::Instant> {
        profile::start(self.profile)
    }

    /// Ends a call started by [`Ctx::clock`].
    fn lap(&mut self, started: Option<std::time::Instant>, pass: ProfilePass, kernel: &'static str, flops: usize) {
        profile::stop(self.profile, started, self.scope, pass, kernel, flops as u64);
    }

    /// Ends a call started by [`Ctx::clock`], timed under `scope` (a fused
    /// rule that does another node's work files it under that node's layer).
    fn lap_in(
        &mut self,
        scope: u32,
        started: Option<std::time::Instant>,
        pass: ProfilePass,
        kernel: &'static str,
        flops: usize,
    ) {
        profile::stop(self.profile, started, scope, pass, kernel, flops as u64);
    }

    /// Counts the weight and input gradients a conv or dense op is about to compute.
    fn count(&mut self, w: u32, x: u32) {
        self.work.weight_gradients += usize::from(self.before[w as usize].requires_grad);
        self.work.input_gradients += usize::from(self.before[x as usize].requires_grad);
    }

    /// Adds `d loss / d (node t)` into its gradient, where `f(nodes, dst)`
    /// overwrites `dst` with that contribution. Does nothing when `t` needs
    /// no gradient.
    fn emit(&mut self, t: u32, f: impl FnOnce(&[Node], &mut [f32]) -> Result<()>) -> Result<()> {
        let t = t as usize;
        if !self.before[t].requires_grad {
            return Ok(());
        }
        self.work.total += 1;
        let len = self.before[t].shape.len();
        if let Op::Param(id) = self.before[t].op {
            let (grad, fresh) = self.params.slot(id)?;
            if *fresh {
                *fresh = false;
                return f(self.before, grad.data_mut());
            }
            let mut s = self.buffers.take(len);
            let r = f(self.before, s.as_mut_slice());
            if r.is_ok() {
                add_into(grad.data_mut(), s.as_slice());
            }
            self.buffers.give(s);
            return r;
        }
        match self.before[t].grad.take() {
            None => {
                let mut b = self.buffers.take(len);
                let r = f(self.before, b.as_mut_slice());
                self.before[t].grad = Some(b);
                r
            }
            Some(mut acc) => {
                self.before[t].grad_relu_masked = false;
                let mut s = self.buffers.take(len);
                let r = f(self.before, s.as_mut_slice());
                if r.is_ok() {
                    add_into(acc.as_mut_slice(), s.as_slice());
                }
                self.buffers.give(s);
                self.before[t].grad = Some(acc);
                r
            }
        }
    }

    /// Hands `g` (already the gradient of node `t`, same length) to node `t`:
    /// moved when `t` has no gradient yet, added otherwise.
    fn pass(&mut self, t: u32, g: AlignedBuf) -> Result<()> {
        let ti = t as usize;
        let node = &mut self.before[ti];
        if !node.requires_grad {
            self.buffers.give(g);
            return Ok(());
        }
        if matches!(node.op, Op::Param(_)) {
            let r = self.emit(t, |_, d| {
                d.copy_from_slice(g.as_slice());
                Ok(())
            });
            self.buffers.give(g);
            return r;
        }
        match &mut node.grad {
            None => node.grad = Some(g),
            Some(acc) => {
                node.grad_relu_masked = false;
                add_into(acc.as_mut_slice(), g.as_slice());
                self.buffers.give(g);
            }
        }
        Ok(())
    }
}

/// Whether a consumer of `input` may apply its relu mask while writing its
/// gradient (and then mark it `grad_relu_masked`): `input` is a conv or
/// dense op with a fused relu, needs a gradient, and has none yet, so this
/// contribution is the first; a later one clears the mark (see `emit`).
fn masks_for_fused_relu(input: &Node) -> bool {
    matches!(input.op, Op::Conv2d { act: Activation::Relu, .. } | Op::Dense { act: Activation::Relu, .. })
        && input.requires_grad
        && input.grad.is_none()
}

/// Column sums of `g` viewed as `[rows, cols]` (bias gradients).
fn column_sums(g: &[f32], dst: &mut [f32]) {
    dst.fill(0.0);
    for row in g.chunks_exact(dst.len()) {
        add_into(dst, row);
    }
}

/// The profile's kernel name of [`pooled_conv_backward`].
pub(crate) const MAX_POOLED_KERNEL: &str = "max_pooled";

/// The profile's kernel name of the fused `conv + 2x2 max pool` training
/// forward ([`Tape::conv2d_max_pool2d`](crate::Tape::conv2d_max_pool2d)).
pub(crate) const CONV_MAX_POOL_KERNEL: &str = "conv_max_pool";

/// The backward of `conv (relu) -> 2x2 max pool` in one pass, run from the
/// pool's rule when the conv is the first layer (its input is data, so only
/// the filter and bias gradients are wanted): the filter and bias gradients
/// straight from the pooled gradient `g` and the pool's `argmax`, with no
/// map of the conv's output size (`conv::fused::conv2d_backward_filter_max_pooled`).
/// Returns `false`, having done nothing, when the chain does not qualify:
/// the pool's input is not a conv recorded just before it, the conv's
/// result already has another gradient, its input needs a gradient, its
/// filter needs none, an explicit backward algorithm was asked for, or the
/// kernel does not run the shapes. The conv node then gets no gradient, so
/// the walk skips it; its work is counted and timed under its own scope.
fn pooled_conv_backward(
    ctx: &mut Ctx<'_>,
    x: u32,
    pool_shape: &pool::PoolShape,
    g: &[f32],
    argmax: &[u32],
    y: &[f32],
) -> Result<bool> {
    let ci = x as usize;
    if ci + 1 != ctx.before.len() {
        return Ok(false); // something was recorded in between: it may read the conv
    }
    let conv_node = &ctx.before[ci];
    let Op::Conv2d { x: input, w, b, shape, algo, act } = conv_node.op else { return Ok(false) };
    let qualifies = conv_node.requires_grad
        && conv_node.grad.is_none()
        && algo == ConvAlgo::Auto
        && matches!(act, Activation::Relu | Activation::Linear)
        && !ctx.before[input as usize].requires_grad
        && ctx.before[w as usize].requires_grad
        && conv::fused::max_pooled_supports(&shape, pool_shape).is_ok();
    if !qualifies {
        return Ok(false);
    }
    let scope = conv_node.scope;
    max_pooled_filter_grads(ctx, scope, (input, w, b), &shape, act, pool_shape, g, argmax, y)?;
    Ok(true)
}

/// The filter and bias gradients of the conv `shape` (inputs `(x, w, b)`,
/// activation `act`; `x` needs no gradient) from the gradient `g` of the
/// 2x2 max pool `pool_shape` after it, its `argmax` and its output `y`, in
/// one pass (`conv::fused::conv2d_backward_filter_max_pooled`), timed under
/// `scope` as the conv's backward-filter.
#[allow(clippy::too_many_arguments)] // the conv's nodes and shape, the pool's shape and saved values
fn max_pooled_filter_grads(
    ctx: &mut Ctx<'_>,
    scope: u32,
    (input, w, b): (u32, u32, Option<u32>),
    shape: &conv::ConvShape,
    act: Activation,
    pool_shape: &pool::PoolShape,
    g: &[f32],
    argmax: &[u32],
    y: &[f32],
) -> Result<()> {
    let t = ctx.clock();
    ctx.count(w, input);
    let pooled = conv::fused::PooledGradient { grad: g, argmax, relu_output: (act == Activation::Relu).then_some(y) };
    let bias = b.filter(|&b| ctx.before[b as usize].requires_grad);
    let mut db = bias.map(|_| ctx.buffers.take(shape.c_out));
    let dbs = db.as_mut().map(|d| d.as_mut_slice());
    ctx.emit(w, |n, d| {
        conv::fused::conv2d_backward_filter_max_pooled(shape, pool_shape, value_of(n, input as usize), pooled, d, dbs)
            .map_err(kernel_err("conv2d backward"))
    })?;
    if let (Some(b), Some(db)) = (bias, db) {
        let r = ctx.emit(b, |_, d| {
            d.copy_from_slice(db.as_slice());
            Ok(())
        });
        ctx.buffers.give(db);
        r?;
    }
    ctx.lap_in(scope, t, ProfilePass::BackwardFilter, MAX_POOLED_KERNEL, shape.flops());
    Ok(())
}

/// Runs the backward rule of `node`, whose output gradient is `g`.
pub(crate) fn run(ctx: &mut Ctx<'_>, node: &Node, mut g: AlignedBuf, aux: &Aux) -> Result<()> {
    // Ops that read their own output own their buffer (only reshape and
    // inference-mode dropout alias, and they do not read it).
    let y: &[f32] = match &node.value {
        Storage::Own(b) => b.as_slice(),
        Storage::Shared(t) => t.data(),
        Storage::Alias(_) => &[],
    };
    match node.op {
        Op::Input | Op::Variable | Op::Param(_) => ctx.buffers.give(g),
        Op::Conv2d { x, w, b, shape, algo, act } => {
            if act == Activation::Relu && !node.grad_relu_masked {
                let t = ctx.clock();
                relu_backward_inplace(y, g.as_mut_slice()).map_err(kernel_err("conv2d backward"))?;
                ctx.lap(t, ProfilePass::BackwardActivation, "relu", 0);
            }
            let gs = g.as_slice();
            if let Some(b) = b {
                let t = ctx.clock();
                let needed = ctx.before[b as usize].requires_grad;
                ctx.emit(b, |_, d| conv::conv2d_backward_bias(&shape, gs, d).map_err(kernel_err("conv2d backward")))?;
                if needed {
                    ctx.lap(t, ProfilePass::BackwardBias, "bias", 0);
                }
            }
            ctx.count(w, x);
            let resolved = |pass| if algo == ConvAlgo::Auto { conv::select(&shape, pass) } else { algo };
            let ran = |pass| resolved(pass).name();
            if resolved(ConvPass::BackwardData) == ConvAlgo::Depthwise
                && resolved(ConvPass::BackwardFilter) == ConvAlgo::Depthwise
                && ctx.before[w as usize].requires_grad
                && ctx.before[x as usize].requires_grad
            {
                // Both gradients of a depthwise layer in one call, which
                // sweeps the output gradient once where that is faster
                // (`depthwise::backward`); the filter gradient goes through
                // a pooled buffer into the usual accumulation. Filed under
                // backward_data in the profile, with both passes' FLOPs.
                //
                // When the input is the output of a fused relu and this is
                // its first gradient, the input gradient is masked as it is
                // written (`backward_through_relu`, same bits), and the relu
                // backward pass at the input's own node is skipped: one pass
                // fewer over a tensor of the input's size.
                let t = ctx.clock();
                let mask_here = masks_for_fused_relu(&ctx.before[x as usize]);
                let mut gw = ctx.buffers.take(ctx.before[w as usize].shape.len());
                let r = ctx
                    .emit(x, |n, d| {
                        let run =
                            if mask_here { conv::depthwise::backward_through_relu } else { conv::depthwise::backward };
                        run(&shape, value_of(n, x as usize), gs, value_of(n, w as usize), d, gw.as_mut_slice())
                            .map_err(kernel_err("conv2d backward"))
                    })
                    .and_then(|()| {
                        ctx.emit(w, |_, d| {
                            d.copy_from_slice(gw.as_slice());
                            Ok(())
                        })
                    });
                ctx.buffers.give(gw);
                r?;
                if mask_here {
                    ctx.before[x as usize].grad_relu_masked = true;
                }
                ctx.lap(t, ProfilePass::BackwardData, "depthwise_both", 2 * shape.flops());
                ctx.buffers.give(g);
                return Ok(());
            }
            let t = ctx.clock();
            let needed = ctx.before[w as usize].requires_grad;
            ctx.emit(w, |n, d| {
                conv::conv2d_backward_filter(algo, &shape, value_of(n, x as usize), gs, d)
                    .map_err(kernel_err("conv2d backward"))
            })?;
            if needed {
                ctx.lap(t, ProfilePass::BackwardFilter, ran(ConvPass::BackwardFilter), shape.flops());
            }
            let t = ctx.clock();
            let needed = ctx.before[x as usize].requires_grad;
            ctx.emit(x, |n, d| {
                conv::conv2d_backward_data(algo, &shape, gs, value_of(n, w as usize), d)
                    .map_err(kernel_err("conv2d backward"))
            })?;
            if needed {
                ctx.lap(t, ProfilePass::BackwardData, ran(ConvPass::BackwardData), shape.flops());
            }
            ctx.buffers.give(g);
        }
        Op::MaxPool { x, shape } => {
            let Aux::U32(argmax) = aux else { unreachable!("max_pool2d records its argmax") };
            if pooled_conv_backward(ctx, x, &shape, g.as_slice(), argmax, y)? {
                ctx.buffers.give(g);
                return Ok(());
            }
            let t = ctx.clock();
            // When the input comes from a fused relu and this is its first
            // gradient, apply the relu mask here, on the pooled gradient (a
            // quarter of the size for 2x2 windows): the gradient reaches only
            // argmax positions, where the relu output equals this pooled
            // output, so `pooled > 0` is exactly the mask there.
            let mask_here = masks_for_fused_relu(&ctx.before[x as usize]);
            if mask_here {
                for (g, &y) in g.as_mut_slice().iter_mut().zip(y) {
                    if y <= 0.0 {
                        *g = 0.0;
                    }
                }
            }
            let gs = g.as_slice();
            let needed = ctx.before[x as usize].requires_grad;
            ctx.emit(x, |_, d| {
                pool::max_pool2d_backward(&shape, gs, argmax, d).map_err(kernel_err("max_pool2d backward"))
            })?;
            if mask_here {
                ctx.before[x as usize].grad_relu_masked = true;
            }
            if needed {
                ctx.lap(t, ProfilePass::BackwardData, "max_pool2d", 0);
            }
            ctx.buffers.give(g);
        }
        Op::ConvMaxPool { x, w, b, shape, act } => {
            let Aux::U32(argmax) = aux else { unreachable!("conv2d_max_pool2d records its argmax") };
            let pool_shape = pool::PoolShape::new(
                shape.n,
                shape.out_h(),
                shape.out_w(),
                shape.c_out,
                (2, 2),
                (2, 2),
                Padding::Valid,
            )
            .map_err(kernel_err("conv2d_max_pool2d backward"))?;
            max_pooled_filter_grads(ctx, ctx.scope, (x, w, b), &shape, act, &pool_shape, g.as_slice(), argmax, y)?;
            ctx.buffers.give(g);
        }
        Op::AvgPool { x, shape } => {
            let gs = g.as_slice();
            ctx.emit(x, |_, d| pool::avg_pool2d_backward(&shape, gs, d).map_err(kernel_err("avg_pool2d backward")))?;
            ctx.buffers.give(g);
        }
        Op::GlobalAvgPool { x, n, hw, c } => {
            let gs = g.as_slice();
            ctx.emit(x, |_, d| {
                pool::global_avg_pool_backward(n, hw, c, gs, d).map_err(kernel_err("global_avg_pool2d backward"))
            })?;
            ctx.buffers.give(g);
        }
        Op::Relu { x } => {
            relu_backward_inplace(y, g.as_mut_slice()).map_err(kernel_err("relu backward"))?;
            ctx.pass(x, g)?;
        }
        Op::Sigmoid { x } => {
            for (g, &y) in g.as_mut_slice().iter_mut().zip(y) {
                *g *= y * (1.0 - y);
            }
            ctx.pass(x, g)?;
        }
        Op::Tanh { x } => {
            for (g, &y) in g.as_mut_slice().iter_mut().zip(y) {
                *g *= 1.0 - y * y;
            }
            ctx.pass(x, g)?;
        }
        Op::BiasAdd { x, b } => {
            let gs = g.as_slice();
            ctx.emit(b, |_, d| {
                column_sums(gs, d);
                Ok(())
            })?;
            ctx.pass(x, g)?;
        }
        Op::Dense { x, w, b, shape, act } => {
            if act == Activation::Relu && !node.grad_relu_masked {
                let t = ctx.clock();
                relu_backward_inplace(y, g.as_mut_slice()).map_err(kernel_err("dense backward"))?;
                ctx.lap(t, ProfilePass::BackwardActivation, "relu", 0);
            }
            let gs = g.as_slice();
            if let Some(b) = b {
                let t = ctx.clock();
                let needed = ctx.before[b as usize].requires_grad;
                ctx.emit(b, |_, d| {
                    column_sums(gs, d);
                    Ok(())
                })?;
                if needed {
                    ctx.lap(t, ProfilePass::BackwardBias, "bias", 0);
                }
            }
            ctx.count(w, x);
            let flops = 2 * shape.batch * shape.inputs * shape.outputs;
            let t = ctx.clock();
            let needed = ctx.before[w as usize].requires_grad;
            ctx.emit(w, |n, d| {
                dense::dense_backward_weights(&shape, value_of(n, x as usize), gs, d, None)
                    .map_err(kernel_err("dense backward"))
            })?;
            if needed {
                ctx.lap(t, ProfilePass::BackwardFilter, "dense", flops);
            }
            let t = ctx.clock();
            let needed = ctx.before[x as usize].requires_grad;
            ctx.emit(x, |n, d| {
                dense::dense_backward_data(&shape, gs, value_of(n, w as usize), d).map_err(kernel_err("dense backward"))
            })?;
            if needed {
                ctx.lap(t, ProfilePass::BackwardData, "dense", flops);
            }
            ctx.buffers.give(g);
        }
        Op::Reshape { x } => ctx.pass(x, g)?,
        Op::Dropout { x } => {
            let Aux::F32(mask) = aux else { unreachable!("dropout records its mask") };
            for (g, &m) in g.as_mut_slice().iter_mut().zip(mask.as_slice()) {
                *g *= m;
            }
            ctx.pass(x, g)?;
        }
        Op::Softmax { x } => {
            let classes = node.shape.last();
            for (gr, yr) in g.as_mut_slice().chunks_exact_mut(classes).zip(y.chunks_exact(classes)) {
                let dot: f32 = gr.iter().zip(yr).map(|(g, y)| g * y).sum();
                for (g, &y) in gr.iter_mut().zip(yr) {
                    *g = y * (*g - dot);
                }
            }
            ctx.pass(x, g)?;
        }
        Op::SoftmaxCe { logits } | Op::SparseSoftmaxCe { logits } => {
            let Aux::F32(dlogits) = aux else { unreachable!("the fused loss records its gradient") };
            let scale = g.as_slice()[0];
            ctx.emit(logits, |_, d| {
                for (d, &s) in d.iter_mut().zip(dlogits.as_slice()) {
                    *d = scale * s;
                }
                Ok(())
            })?;
            ctx.buffers.give(g);
        }
        Op::Bce { probs, targets } => {
            let scale = g.as_slice()[0];
            ctx.emit(probs, |n, d| {
                let (p, t) = (value_of(n, probs as usize), value_of(n, targets as usize));
                let inv = scale / p.len() as f32;
                for ((d, &p), &t) in d.iter_mut().zip(p).zip(t) {
                    // Keras clips p to [eps, 1 - eps]; the clip has zero gradient outside.
                    *d = if p > BCE_EPSILON && p < 1.0 - BCE_EPSILON {
                        inv * ((1.0 - t) / (1.0 - p) - t / p)
                    } else {
                        0.0
                    };
                }
                Ok(())
            })?;
            ctx.buffers.give(g);
        }
        Op::BceLogits { logits, targets } => {
            let scale = g.as_slice()[0];
            ctx.emit(logits, |n, d| {
                let (x, t) = (value_of(n, logits as usize), value_of(n, targets as usize));
                let inv = scale / x.len() as f32;
                for ((d, &x), &t) in d.iter_mut().zip(x).zip(t) {
                    *d = inv * (sigmoid(x) - t);
                }
                Ok(())
            })?;
            ctx.buffers.give(g);
        }
        Op::Add { a, b } => {
            let gs = g.as_slice();
            ctx.emit(a, |_, d| {
                d.copy_from_slice(gs);
                Ok(())
            })?;
            ctx.pass(b, g)?;
        }
        Op::Mul { a, b } => {
            let gs = g.as_slice();
            ctx.emit(a, |n, d| {
                for ((d, &g), &bv) in d.iter_mut().zip(gs).zip(value_of(n, b as usize)) {
                    *d = g * bv;
                }
                Ok(())
            })?;
            ctx.emit(b, |n, d| {
                for ((d, &g), &av) in d.iter_mut().zip(gs).zip(value_of(n, a as usize)) {
                    *d = g * av;
                }
                Ok(())
            })?;
            ctx.buffers.give(g);
        }
        Op::ChannelMeans { x, m, c } => {
            let Aux::U32(channels) = aux else { unreachable!("channel_means records its channels") };
            let gs = g.as_slice();
            ctx.emit(x, |_, d| {
                d.fill(0.0);
                let inv = 1.0 / m as f32;
                for ((item, &k), &gi) in d.chunks_exact_mut(m * c).zip(channels).zip(gs) {
                    for px in item.chunks_exact_mut(c) {
                        px[k as usize] = gi * inv;
                    }
                }
                Ok(())
            })?;
            ctx.buffers.give(g);
        }
        Op::Sum { x } => {
            let gv = g.as_slice()[0];
            ctx.emit(x, |_, d| {
                d.fill(gv);
                Ok(())
            })?;
            ctx.buffers.give(g);
        }
        Op::Mean { x } => {
            let gv = g.as_slice()[0];
            ctx.emit(x, |_, d| {
                d.fill(gv / d.len() as f32);
                Ok(())
            })?;
            ctx.buffers.give(g);
        }
    }
    Ok(())
}
