//! The tape: nodes recorded in execution order, and the reverse walk.
//!
//! This file is the whole idea of reverse mode (micrograd's `engine.py` in
//! Rust): every op appends a [`Node`] holding its output value, the indices of
//! its inputs (inside [`Op`]) and whether it needs a gradient; `backward`
//! seeds the loss with 1 and walks the nodes in reverse recording order (a
//! valid reverse topological order, since inputs are always recorded before
//! their consumers), letting each node's rule in `backward.rs` add its
//! contribution to its inputs' gradients. The node types live in `node.rs`,
//! the op constructors in `ops.rs`, the rules in `backward.rs`.

use crate::backward::{self, Ctx};
use crate::buffers::Buffers;
use crate::node::{value_of, Aux, Node, Op, Storage};
use crate::params::{GradSink, Gradients, ParamId, Params};
use crate::profile::{self, Profile, ProfilePass};
use crate::{Error, Result};
use convnet_tensor::{Shape, TensorView};
use std::sync::atomic::{AtomicU64, Ordering};

static NEXT_EPOCH: AtomicU64 = AtomicU64::new(1);

/// A handle to a value recorded on a [`Tape`]; `Copy`. It is valid until the
/// tape's next [`Tape::reset`]; a stale handle is an [`Error::StaleVar`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Var {
    pub(crate) index: u32,
    pub(crate) epoch: u64,
}

/// A define-by-run recording of one forward pass, and its reverse walk.
///
/// Record ops with the methods in `ops.rs` ([`Tape::conv2d`],
/// [`Tape::dense`], ...), call [`Tape::backward`] on a scalar loss, read the
/// results, then [`Tape::reset`] before the next step: every buffer goes back
/// to the tape's pool, so a fixed model's steady-state training step makes no
/// heap allocation.
///
/// A tape made by [`Tape::inference`] records no backward rule, keeps no
/// masks or argmax indices, makes dropout the identity and refuses
/// `backward`: the mode for `evaluate` and `predict`.
#[derive(Debug)]
pub struct Tape {
    pub(crate) nodes: Vec<Node>,
    pub(crate) buffers: Buffers,
    epoch: u64,
    training: bool,
    spent: bool,
    work: BackwardWork,
    /// The profiler's timings; `None` (the default) when profiling is off.
    pub(crate) profile: Option<Box<Profile>>,
    /// The scope new nodes are recorded in (a layer index, for the profiler).
    pub(crate) scope: u32,
}

/// The gradient kernels the last [`Tape::backward`] ran: a cheap count, so a
/// test can show that frozen weights and data cost no gradient work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackwardWork {
    /// Weight gradients of conv and dense ops (backward-filter passes).
    pub weight_gradients: usize,
    /// Input gradients of conv and dense ops (backward-data passes).
    pub input_gradients: usize,
    /// Every gradient contribution computed, of any op.
    pub total: usize,
}

impl Default for Tape {
    fn default() -> Self {
        Self::new()
    }
}

impl Tape {
    /// An empty tape in training mode.
    pub fn new() -> Self {
        Tape {
            nodes: Vec::new(),
            buffers: Buffers::default(),
            epoch: NEXT_EPOCH.fetch_add(1, Ordering::Relaxed),
            training: true,
            spent: false,
            work: BackwardWork::default(),
            profile: None,
            scope: 0,
        }
    }

    /// An empty tape in inference mode (see [`Tape`]).
    pub fn inference() -> Self {
        Tape { training: false, ..Self::new() }
    }

    /// True in training mode.
    pub fn is_training(&self) -> bool {
        self.training
    }

    /// Switches mode; resets the tape (every [`Var`] becomes stale).
    pub fn set_training(&mut self, training: bool) {
        self.reset();
        self.training = training;
    }

    /// Releases every recorded value and gradient into the pool and starts a
    /// new recording; earlier [`Var`]s become stale.
    pub fn reset(&mut self) {
        for node in self.nodes.drain(..) {
            if let Storage::Own(b) = node.value {
                self.buffers.give(b);
            }
            if let Some(g) = node.grad {
                self.buffers.give(g);
            }
            match node.aux {
                Aux::None => {}
                Aux::F32(b) => self.buffers.give(b),
                Aux::U32(v) => self.buffers.give_u32(v),
            }
        }
        self.epoch = NEXT_EPOCH.fetch_add(1, Ordering::Relaxed);
        self.spent = false;
    }

    /// Number of nodes recorded since the last reset.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Bytes of buffers currently idle in the pool (diagnostics).
    pub fn pooled_bytes(&self) -> usize {
        self.buffers.bytes()
    }

    /// The node index of `v`, or [`Error::StaleVar`].
    pub(crate) fn index(&self, v: Var) -> Result<usize> {
        if v.epoch != self.epoch || v.index as usize >= self.nodes.len() {
            return Err(Error::StaleVar { index: v.index as usize });
        }
        Ok(v.index as usize)
    }

    /// Fails with [`Error::Spent`] once backward has run.
    pub(crate) fn recording(&self, op: &'static str) -> Result<()> {
        if self.spent {
            return Err(Error::Spent { op });
        }
        Ok(())
    }

    pub(crate) fn needs_grad(&self, inputs: &[usize]) -> bool {
        self.training && inputs.iter().any(|&i| self.nodes[i].requires_grad)
    }

    /// Appends a node and returns its handle.
    pub(crate) fn push(&mut self, op: Op, shape: Shape, value: Storage, requires_grad: bool, aux: Aux) -> Result<Var> {
        if self.nodes.len() >= u32::MAX as usize {
            return Err(Error::BadArgument { op: "record", detail: "more than u32::MAX nodes on one tape".into() });
        }
        let scope = self.scope;
        self.nodes.push(Node { op, shape, value, grad: None, grad_relu_masked: false, requires_grad, aux, scope });
        Ok(Var { index: (self.nodes.len() - 1) as u32, epoch: self.epoch })
    }

    pub(crate) fn val(&self, i: usize) -> &[f32] {
        value_of(&self.nodes, i)
    }

    /// The value of `v`.
    pub fn value(&self, v: Var) -> Result<TensorView<'_>> {
        let i = self.index(v)?;
        Ok(TensorView::new(self.nodes[i].shape, self.val(i))?)
    }

    /// The shape of `v`.
    pub fn shape(&self, v: Var) -> Result<Shape> {
        Ok(self.nodes[self.index(v)?].shape)
    }

    /// The value of a one-element tensor (a loss).
    pub fn scalar(&self, v: Var) -> Result<f32> {
        let i = self.index(v)?;
        if self.nodes[i].shape.len() != 1 {
            return Err(Error::NotScalar(self.nodes[i].shape));
        }
        Ok(self.val(i)[0])
    }

    /// True when `v` needs a gradient (it depends on a parameter or a
    /// [`Tape::variable`], and the tape is in training mode).
    pub fn requires_grad(&self, v: Var) -> Result<bool> {
        Ok(self.nodes[self.index(v)?].requires_grad)
    }

    /// The gradient of the loss with respect to a leaf made by
    /// [`Tape::variable`], after [`Tape::backward`]. Intermediate gradients
    /// are released during the walk and parameter gradients go to
    /// [`Params`]; asking for those, or for a tensor that needs no gradient,
    /// is an [`Error::NoGrad`].
    pub fn grad(&self, v: Var) -> Result<TensorView<'_>> {
        let i = self.index(v)?;
        let node = &self.nodes[i];
        if !node.requires_grad {
            return Err(Error::NoGrad(format!(
                "node #{i} (shape {}) does not require a gradient: it depends on no parameter or variable",
                node.shape
            )));
        }
        match (&node.op, &node.grad) {
            (Op::Variable, Some(g)) => Ok(TensorView::new(node.shape, g.as_slice())?),
            (Op::Variable, None) if self.spent => {
                Err(Error::NoGrad(format!("variable #{i} does not influence the loss (its gradient is zero)")))
            }
            (Op::Variable, None) => Err(Error::NoGrad(format!("variable #{i}: call backward first"))),
            (Op::Param(_), _) => Err(Error::NoGrad(format!("node #{i} is a parameter: read its gradient from Params"))),
            _ => Err(Error::NoGrad(format!(
                "node #{i} is an intermediate value: its gradient is released during backward"
            ))),
        }
    }

    /// Back-propagates from the scalar `loss`: adds `d loss / d p` into the
    /// gradient of every parameter `p` in `params` that the loss depends on,
    /// and keeps the gradients of [`Tape::variable`] leaves.
    ///
    /// Errors, all before any gradient is touched: [`Error::InferenceMode`],
    /// [`Error::BackwardTwice`], [`Error::NotScalar`], [`Error::UnknownParam`]
    /// / [`Error::Shape`] when `params` is not the set the tape's parameters
    /// came from, and [`Error::NonFiniteLoss`] when the loss is NaN or
    /// infinite (the signal a training loop stops on).
    ///
    /// Only gradients something needs are computed: never the input
    /// gradient of an op whose input is data (the first conv layer's `dX`).
    pub fn backward(&mut self, loss: Var, params: &mut Params) -> Result<()> {
        self.backward_to(loss, params)
    }

    /// [`Tape::backward`] into a [`Gradients`] set of the [`Params`] the
    /// tape's parameters were recorded from, instead of into the `Params`
    /// themselves (which stay untouched, so other tapes may read them
    /// meanwhile): each shard of a batch split by examples differentiates
    /// into its own set. The gradients a parameter receives are written (the
    /// first) or added (the others) after the set's last
    /// [`Gradients::clear`]; the errors are `backward`'s.
    pub fn backward_into(&mut self, loss: Var, grads: &mut Gradients) -> Result<()> {
        self.backward_to(loss, grads)
    }

    fn backward_to(&mut self, loss: Var, params: &mut dyn GradSink) -> Result<()> {
        if !self.training {
            return Err(Error::InferenceMode);
        }
        if self.spent {
            return Err(Error::BackwardTwice);
        }
        let li = self.index(loss)?;
        let value = self.scalar(loss)?;
        if !value.is_finite() {
            return Err(Error::NonFiniteLoss(value));
        }
        for node in &self.nodes[..=li] {
            if let Op::Param(id) = node.op {
                let shape = params.shape_of(id)?;
                if shape != node.shape {
                    return Err(crate::error::shape_err(
                        "backward",
                        format!(
                            "parameter {} was recorded with shape {} but now has shape {shape}",
                            id.index(),
                            node.shape
                        ),
                    ));
                }
            }
        }
        self.spent = true;
        self.work = BackwardWork::default();
        if !self.nodes[li].requires_grad {
            return Ok(());
        }
        let mut seed = self.buffers.take(1);
        seed.as_mut_slice()[0] = 1.0;
        self.nodes[li].grad = Some(seed);
        for i in (0..=li).rev() {
            let (before, rest) = self.nodes.split_at_mut(i);
            let node = &mut rest[0];
            if matches!(node.op, Op::Variable) {
                continue; // a leaf keeps its gradient for `grad`
            }
            let Some(g) = node.grad.take() else { continue };
            let aux = std::mem::replace(&mut node.aux, Aux::None);
            let mut ctx = Ctx {
                before,
                buffers: &mut self.buffers,
                params,
                work: &mut self.work,
                profile: &mut self.profile,
                scope: node.scope,
            };
            // Conv, dense and max pooling (which may run its conv's backward
            // fused) time their passes themselves; any other rule is one timed call.
            let whole =
                !matches!(node.op, Op::Conv2d { .. } | Op::Dense { .. } | Op::MaxPool { .. } | Op::ConvMaxPool { .. });
            let started = if whole { profile::start(ctx.profile) } else { None };
            let result = backward::run(&mut ctx, node, g, &aux);
            profile::stop(ctx.profile, started, node.scope, node.op.backward_pass(), node.op.name(), 0);
            match aux {
                Aux::None => {}
                Aux::F32(b) => self.buffers.give(b),
                Aux::U32(v) => self.buffers.give_u32(v),
            }
            result?;
        }
        Ok(())
    }

    /// What the last [`Tape::backward`] computed (zero before the first).
    pub fn backward_work(&self) -> BackwardWork {
        self.work
    }

    /// Turns the profiler on (keeping what it has measured so far) or off
    /// (dropping it). While on, every kernel call of a recorded op, forward
    /// and backward, is timed into [`Tape::profile`] under the current
    /// [`scope`](Tape::set_scope), pass and kernel; while off, no clock is read.
    ///
    /// ```
    /// use convnet_autodiff::{Activation, Params, ProfilePass, Tape};
    /// use convnet_tensor::{Shape, Tensor};
    /// let mut tape = Tape::new();
    /// tape.set_profiling(true);
    /// tape.set_scope(7);
    /// let x = tape.input(Tensor::zeros(Shape::matrix(2, 3)).view())?;
    /// let w = tape.input(Tensor::zeros(Shape::matrix(3, 4)).view())?;
    /// tape.dense(x, w, None, Activation::Relu)?;
    /// let e = tape.profile().unwrap().entries()[0];
    /// assert_eq!((e.scope, e.pass, e.kernel, e.calls, e.flops), (7, ProfilePass::Forward, "dense", 1, 48));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_profiling(&mut self, on: bool) {
        match (on, self.profile.is_some()) {
            (true, false) => self.profile = Some(Box::default()),
            (false, true) => self.profile = None,
            _ => {}
        }
    }

    /// The profiler's timings so far, or `None` when profiling is off.
    pub fn profile(&self) -> Option<&Profile> {
        self.profile.as_deref()
    }

    /// The profiler's timings, to clear or merge them (`None` when off).
    pub fn profile_mut(&mut self) -> Option<&mut Profile> {
        self.profile.as_deref_mut()
    }

    /// Records the next ops in `scope` (0 until set; not reset by
    /// [`Tape::reset`]): the profiler sums each op's forward and backward
    /// calls under the scope it was recorded in, so a model numbers its
    /// layers with it.
    pub fn set_scope(&mut self, scope: u32) {
        self.scope = scope;
    }

    /// The clock of one timed forward call (`None`, no clock read, when off).
    #[inline]
    pub(crate) fn clock(&self) -> Option<std::time::Instant> {
        profile::start(&self.profile)
    }

    /// Ends a forward call started by [`Tape::clock`].
    #[inline]
    pub(crate) fn lap(&mut self, started: Option<std::time::Instant>, kernel: &'static str, flops: u64) {
        profile::stop(&mut self.profile, started, self.scope, ProfilePass::Forward, kernel, flops);
    }

    /// A copy of `x` as a leaf that needs no gradient (a batch of data, targets).
    pub fn input(&mut self, x: TensorView<'_>) -> Result<Var> {
        self.recording("input")?;
        let mut b = self.buffers.take(x.shape().len());
        b.as_mut_slice().copy_from_slice(x.data());
        self.push(Op::Input, x.shape(), Storage::Own(b), false, Aux::None)
    }

    /// A copy of `x` as a leaf whose gradient [`Tape::grad`] returns after
    /// backward (in training mode).
    pub fn variable(&mut self, x: TensorView<'_>) -> Result<Var> {
        self.recording("variable")?;
        let mut b = self.buffers.take(x.shape().len());
        b.as_mut_slice().copy_from_slice(x.data());
        let training = self.training;
        self.push(Op::Variable, x.shape(), Storage::Own(b), training, Aux::None)
    }

    /// Parameter `id` of `params` as a constant leaf that needs no gradient
    /// (a frozen layer's weights, or the weights Grad-CAM differentiates
    /// through to the input), with no copy: the tape shares the value with
    /// `params` until [`Tape::reset`], and `backward` does no work for it.
    /// Writing the value through `params` meanwhile copies it first
    /// (copy-on-write), so the tape keeps the value it recorded.
    ///
    /// ```
    /// use convnet_autodiff::{Params, Tape};
    /// use convnet_tensor::{Shape, Tensor};
    /// let mut params = Params::new();
    /// let w = params.add("w", Tensor::full(Shape::vector(2), 3.0))?;
    /// let mut tape = Tape::new();
    /// let x = tape.variable(Tensor::ones(Shape::vector(2)).view())?;
    /// let c = tape.constant(&params, w)?;
    /// let loss = tape.mul(x, c)?;
    /// let loss = tape.sum(loss)?;
    /// params.value_mut(w)?.fill(0.0); // the tape still holds the 3s
    /// tape.backward(loss, &mut params)?;
    /// assert_eq!(tape.grad(x)?.data(), &[3.0, 3.0]);
    /// assert!(!params.has_grad(w)?); // no gradient work for a constant
    /// # Ok::<(), convnet_autodiff::Error>(())
    /// ```
    pub fn constant(&mut self, params: &Params, id: ParamId) -> Result<Var> {
        self.recording("constant")?;
        let value = params.shared_value(id)?;
        let shape = value.shape();
        self.push(Op::Input, shape, Storage::Shared(value), false, Aux::None)
    }

    /// [`Tape::param`] without the copy: the tape shares the value with
    /// `params` until [`Tape::reset`]. For a training loop that resets the
    /// tape before its optimizer update (as `fit` does): updating while the
    /// tape still shares the value copies it first (copy-on-write, an
    /// allocation per parameter), which is correct but costs what `param`'s
    /// copy saves.
    ///
    /// ```
    /// use convnet_autodiff::{Params, Tape};
    /// use convnet_tensor::{Shape, Tensor};
    /// let mut params = Params::new();
    /// let w = params.add("w", Tensor::full(Shape::vector(2), 3.0))?;
    /// let mut tape = Tape::new();
    /// let v = tape.param_shared(&params, w)?;
    /// let loss = tape.sum(v)?;
    /// tape.backward(loss, &mut params)?;
    /// tape.reset(); // release the shared value, then update in place
    /// params.update_with(|_, value, grad| {
    ///     value.iter_mut().zip(grad).for_each(|(v, g)| *v -= g);
    ///     Ok::<(), convnet_autodiff::Error>(())
    /// })?;
    /// assert_eq!(params.value(w)?.data(), &[2.0, 2.0]);
    /// # Ok::<(), convnet_autodiff::Error>(())
    /// ```
    pub fn param_shared(&mut self, params: &Params, id: ParamId) -> Result<Var> {
        self.recording("param_shared")?;
        let value = params.shared_value(id)?;
        let shape = value.shape();
        let training = self.training;
        self.push(Op::Param(id), shape, Storage::Shared(value), training, Aux::None)
    }

    /// Parameter `id` of `params` as a leaf: its value is copied onto the tape
    /// (so an optimizer may update `params` before this tape is reset), and
    /// `backward` adds its gradient into `params`.
    pub fn param(&mut self, params: &Params, id: ParamId) -> Result<Var> {
        self.recording("param")?;
        let v = params.value(id)?;
        let mut b = self.buffers.take(v.len());
        b.as_mut_slice().copy_from_slice(v.data());
        let training = self.training;
        self.push(Op::Param(id), v.shape(), Storage::Own(b), training, Aux::None)
    }
}
