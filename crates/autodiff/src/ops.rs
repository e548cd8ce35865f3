//! The forward half of every op: check shapes (an [`Error::Shape`] names the
//! op and the shapes), run the kernel into a pooled buffer, record the node.

use crate::backward::CONV_MAX_POOL_KERNEL;
use crate::error::{kernel_err, shape_err};
use crate::node::{Aux, Op, Storage};
use crate::spec::{Conv2dSpec, PoolSpec};
use crate::tape::{Tape, Var};
use crate::{Error, Result};
use convnet_kernels::activation::{self, Activation};
use convnet_kernels::conv::{self, ConvAlgo, ConvPass, ConvShape};
use convnet_kernels::dense::{self, DenseShape};
use convnet_kernels::loss::{self, sigmoid};
use convnet_kernels::pool::{self, PoolShape};
use convnet_tensor::{Rng, Shape};

fn rank4(op: &'static str, what: &str, s: Shape) -> Result<(usize, usize, usize, usize)> {
    s.as_nhwc().map_err(|_| shape_err(op, format!("{what} must be NHWC (rank 4), got shape {s}")))
}

fn check_activation(op: &'static str, a: Activation) -> Result<()> {
    match a {
        Activation::Linear | Activation::Relu => Ok(()),
        #[allow(unreachable_patterns)]
        other => Err(Error::BadArgument { op, detail: format!("fused activation {other:?} has no backward rule") }),
    }
}

impl Tape {
    fn idx(&self, op: &'static str, v: Var) -> Result<usize> {
        self.recording(op)?;
        self.index(v)
    }

    fn same_shape(&self, op: &'static str, a: usize, b: usize) -> Result<Shape> {
        let (sa, sb) = (self.nodes[a].shape, self.nodes[b].shape);
        if sa != sb {
            return Err(shape_err(op, format!("shapes {sa} and {sb} differ")));
        }
        Ok(sa)
    }

    fn no_grad_target(&self, op: &'static str, t: usize) -> Result<()> {
        if self.nodes[t].requires_grad {
            return Err(Error::BadArgument {
                op,
                detail: "targets must not require a gradient (record them with `input`)".into(),
            });
        }
        Ok(())
    }

    /// 2-D convolution of NHWC `x` with HWIO filter `w` (`[kh, kw, c_in,
    /// c_out]`) plus optional bias `b` (`[c_out]`), with `spec`'s stride,
    /// padding, dilation, algorithms and fused activation.
    ///
    /// When the tape trains and the result needs a gradient, the backward
    /// algorithm is checked here, so an explicit algorithm that cannot run the
    /// backward passes fails at once rather than in `backward`.
    pub fn conv2d(&mut self, x: Var, w: Var, b: Option<Var>, spec: Conv2dSpec) -> Result<Var> {
        const OP: &str = "conv2d";
        let (xi, wi) = (self.idx(OP, x)?, self.idx(OP, w)?);
        let bi = b.map(|b| self.idx(OP, b)).transpose()?;
        check_activation(OP, spec.activation)?;
        let (xs, ws) = (self.nodes[xi].shape, self.nodes[wi].shape);
        let (n, h, wd, c) = rank4(OP, "input", xs)?;
        let groups = spec.groups;
        if groups == 0 || !c.is_multiple_of(groups) {
            return Err(Error::BadArgument {
                op: OP,
                detail: format!("groups {groups} must be at least 1 and divide the {c} input channels"),
            });
        }
        // Grouped HWIO `[kh, kw, c / groups, c_out]`, or for a depthwise
        // convolution Keras's `depthwise_kernel` `[kh, kw, c, multiplier]`
        // (the same floats: output channel `ci * multiplier + m`).
        let (kh, kw, co) = match ws.as_nhwc() {
            Ok((kh, kw, fi, fo)) if fi == c / groups => (kh, kw, fo),
            Ok((kh, kw, fi, m)) if groups == c && fi == c => {
                (kh, kw, c.checked_mul(m).ok_or_else(|| shape_err(OP, format!("filter {ws} overflows")))?)
            }
            _ => {
                let depthwise = if groups == c { format!(" (or [kh, kw, {c}, multiplier])") } else { String::new() };
                return Err(shape_err(
                    OP,
                    format!(
                        "filter {ws} must be HWIO [kh, kw, {}, c_out]{depthwise} for input {xs} with {groups} groups",
                        c / groups
                    ),
                ));
            }
        };
        if let Some(bi) = bi {
            let bs = self.nodes[bi].shape;
            if bs.rank() != 1 || bs.len() != co {
                return Err(shape_err(OP, format!("bias {bs} must be ({co},) for filter {ws}")));
            }
        }
        let shape = ConvShape {
            n,
            h,
            w: wd,
            c_in: c,
            c_out: co,
            kh,
            kw,
            stride_h: spec.stride.0,
            stride_w: spec.stride.1,
            dilation_h: spec.dilation.0,
            dilation_w: spec.dilation.1,
            pad_top: 0,
            pad_bottom: 0,
            pad_left: 0,
            pad_right: 0,
            groups,
        }
        .with_padding(spec.padding)
        .map_err(kernel_err(OP))?;
        let requires = match bi {
            Some(bi) => self.needs_grad(&[xi, wi, bi]),
            None => self.needs_grad(&[xi, wi]),
        };
        if requires {
            if self.nodes[wi].requires_grad {
                conv::supports(spec.backward_algo, &shape, ConvPass::BackwardFilter).map_err(kernel_err(OP))?;
            }
            if self.nodes[xi].requires_grad {
                conv::supports(spec.backward_algo, &shape, ConvPass::BackwardData).map_err(kernel_err(OP))?;
            }
        }
        let out_shape = Shape::nhwc(n, shape.out_h(), shape.out_w(), co);
        let mut out = self.buffers.take(out_shape.len());
        let t = self.clock();
        conv::conv2d_forward(
            spec.algo,
            &shape,
            self.val(xi),
            self.val(wi),
            bi.map(|b| self.val(b)),
            spec.activation,
            out.as_mut_slice(),
        )
        .map_err(kernel_err(OP))?;
        let ran = if spec.algo == ConvAlgo::Auto { conv::select(&shape, ConvPass::Forward) } else { spec.algo };
        self.lap(t, ran.name(), shape.flops() as u64);
        let op = Op::Conv2d {
            x: xi as u32,
            w: wi as u32,
            b: bi.map(|b| b as u32),
            shape,
            algo: spec.backward_algo,
            act: spec.activation,
        };
        self.push(op, out_shape, Storage::Own(out), requires, Aux::None)
    }

    fn pool_shape(&self, op: &'static str, xi: usize, spec: PoolSpec) -> Result<PoolShape> {
        let (n, h, w, c) = rank4(op, "input", self.nodes[xi].shape)?;
        PoolShape::new(n, h, w, c, spec.window, spec.stride, spec.padding)
            .and_then(|s| s.with_options(spec.options))
            .map_err(kernel_err(op))
    }

    /// Max pooling of NHWC `x`. The gradient of each window goes to its
    /// first maximum in row-major window order (ties: the first wins).
    pub fn max_pool2d(&mut self, x: Var, spec: PoolSpec) -> Result<Var> {
        const OP: &str = "max_pool2d";
        let xi = self.idx(OP, x)?;
        let shape = self.pool_shape(OP, xi, spec)?;
        let out_shape = Shape::nhwc(shape.n, shape.out_h(), shape.out_w(), shape.c);
        let mut out = self.buffers.take(out_shape.len());
        let mut argmax = self.buffers.take_u32(out_shape.len());
        let t = self.clock();
        pool::max_pool2d_forward(&shape, self.val(xi), out.as_mut_slice(), &mut argmax).map_err(kernel_err(OP))?;
        self.lap(t, OP, 0);
        let requires = self.needs_grad(&[xi]);
        let aux = if requires {
            Aux::U32(argmax)
        } else {
            self.buffers.give_u32(argmax);
            Aux::None
        };
        self.push(Op::MaxPool { x: xi as u32, shape }, out_shape, Storage::Own(out), requires, aux)
    }

    /// `conv2d(x, w, b, spec)` then `max_pool2d(.., pool)` recorded as one
    /// node, when the pair qualifies: a 2x2 `valid` pool of stride 2 after a
    /// dense, unpadded conv (relu or linear) whose input needs no gradient
    /// (the first layer: its input is the data), whose forward algorithm is
    /// (or `Auto` resolves to) `direct` and whose backward algorithm is
    /// `Auto`, with a filter that needs a gradient whenever anything does.
    /// The conv's output map is then never stored: the fused kernel
    /// (`conv::fused::conv2d_max_pool_argmax`) writes the pooled map and the
    /// pool's argmax, bit-identical to the two ops (the same `direct`
    /// arithmetic, the same first-maximum rule), and the backward rule is
    /// the fused pooled backward-filter the pool's rule runs for such a conv.
    /// Both are timed under the current scope (`conv_max_pool` forward,
    /// `max_pooled` backward-filter).
    ///
    /// `Ok(None)`, with nothing recorded, when the pair does not qualify
    /// (malformed shapes included): record the two ops instead, which
    /// report any error. Errors here: an unknown or stale variable, a tape
    /// that is not recording, a kernel failure.
    pub fn conv2d_max_pool2d(
        &mut self,
        x: Var,
        w: Var,
        b: Option<Var>,
        spec: Conv2dSpec,
        pool: PoolSpec,
    ) -> Result<Option<Var>> {
        const OP: &str = "conv2d_max_pool2d";
        let (xi, wi) = (self.idx(OP, x)?, self.idx(OP, w)?);
        let bi = b.map(|b| self.idx(OP, b)).transpose()?;
        let Some(shape) = self.pooled_conv_shape(xi, wi, bi, spec, pool) else { return Ok(None) };
        let requires = match bi {
            Some(bi) => self.needs_grad(&[xi, wi, bi]),
            None => self.needs_grad(&[xi, wi]),
        };
        if self.nodes[xi].requires_grad || (requires && !self.nodes[wi].requires_grad) {
            return Ok(None);
        }
        let (ph, pw) = (shape.out_h() / 2, shape.out_w() / 2);
        let out_shape = Shape::nhwc(shape.n, ph, pw, shape.c_out);
        let mut out = self.buffers.take(out_shape.len());
        let mut argmax = self.buffers.take_u32(out_shape.len());
        let t = self.clock();
        conv::fused::conv2d_max_pool_argmax(
            &shape,
            self.val(xi),
            self.val(wi),
            bi.map(|b| self.val(b)),
            spec.activation,
            out.as_mut_slice(),
            &mut argmax,
            conv::fused::Threading::Pool,
        )
        .map_err(kernel_err(OP))?;
        self.lap(t, CONV_MAX_POOL_KERNEL, shape.flops() as u64);
        let aux = if requires {
            Aux::U32(argmax)
        } else {
            self.buffers.give_u32(argmax);
            Aux::None
        };
        let op = Op::ConvMaxPool { x: xi as u32, w: wi as u32, b: bi.map(|b| b as u32), shape, act: spec.activation };
        self.push(op, out_shape, Storage::Own(out), requires, aux).map(Some)
    }

    /// The conv shape of [`Tape::conv2d_max_pool2d`] when its arguments
    /// qualify for the fused node (see there), else `None`.
    fn pooled_conv_shape(
        &self,
        xi: usize,
        wi: usize,
        bi: Option<usize>,
        spec: Conv2dSpec,
        pool: PoolSpec,
    ) -> Option<ConvShape> {
        let plain = spec.groups == 1
            && spec.padding == conv::Padding::Valid
            && spec.backward_algo == ConvAlgo::Auto
            && matches!(spec.activation, Activation::Relu | Activation::Linear)
            && pool == PoolSpec::new(2, 2);
        let (n, h, wd, c) = self.nodes[xi].shape.as_nhwc().ok()?;
        let (kh, kw, fi, co) = self.nodes[wi].shape.as_nhwc().ok()?;
        let bias_ok = bi.is_none_or(|bi| self.nodes[bi].shape.rank() == 1 && self.nodes[bi].shape.len() == co);
        if !plain || fi != c || !bias_ok {
            return None;
        }
        let shape = ConvShape::new(n, h, wd, c, co, kh, kw)
            .and_then(|s| s.with_stride(spec.stride.0, spec.stride.1))
            .and_then(|s| s.with_dilation(spec.dilation.0, spec.dilation.1))
            .ok()?;
        let algo = if spec.algo == ConvAlgo::Auto { conv::select(&shape, ConvPass::Forward) } else { spec.algo };
        let pool_shape =
            PoolShape::new(n, shape.out_h(), shape.out_w(), co, (2, 2), (2, 2), conv::Padding::Valid).ok()?;
        let runs = algo == ConvAlgo::Direct
            && conv::fused::max_pool_argmax_supports(&shape, spec.activation).is_ok()
            && conv::fused::max_pooled_supports(&shape, &pool_shape).is_ok();
        runs.then_some(shape)
    }

    /// Average pooling of NHWC `x`; padded positions are not counted (Keras).
    pub fn avg_pool2d(&mut self, x: Var, spec: PoolSpec) -> Result<Var> {
        const OP: &str = "avg_pool2d";
        let xi = self.idx(OP, x)?;
        let shape = self.pool_shape(OP, xi, spec)?;
        let out_shape = Shape::nhwc(shape.n, shape.out_h(), shape.out_w(), shape.c);
        let mut out = self.buffers.take(out_shape.len());
        let t = self.clock();
        pool::avg_pool2d_forward(&shape, self.val(xi), out.as_mut_slice()).map_err(kernel_err(OP))?;
        self.lap(t, OP, 0);
        let requires = self.needs_grad(&[xi]);
        self.push(Op::AvgPool { x: xi as u32, shape }, out_shape, Storage::Own(out), requires, Aux::None)
    }

    /// Global average pooling: NHWC `[n, h, w, c] -> [n, c]`, the mean over
    /// every position of each channel (Keras `GlobalAveragePooling2D`).
    pub fn global_avg_pool2d(&mut self, x: Var) -> Result<Var> {
        const OP: &str = "global_avg_pool2d";
        let xi = self.idx(OP, x)?;
        let (n, h, w, c) = rank4(OP, "input", self.nodes[xi].shape)?;
        let out_shape = Shape::matrix(n, c);
        let mut out = self.buffers.take(out_shape.len());
        let t = self.clock();
        pool::global_avg_pool_forward(n, h * w, c, self.val(xi), out.as_mut_slice()).map_err(kernel_err(OP))?;
        self.lap(t, OP, 0);
        let requires = self.needs_grad(&[xi]);
        let op = Op::GlobalAvgPool { x: xi as u32, n, hw: h * w, c };
        self.push(op, out_shape, Storage::Own(out), requires, Aux::None)
    }

    fn unary(&mut self, op_name: &'static str, x: Var, op: fn(u32) -> Op, f: impl Fn(f32) -> f32) -> Result<Var> {
        let xi = self.idx(op_name, x)?;
        let shape = self.nodes[xi].shape;
        let mut out = self.buffers.take(shape.len());
        let t = self.clock();
        for (o, &x) in out.as_mut_slice().iter_mut().zip(self.val(xi)) {
            *o = f(x);
        }
        self.lap(t, op_name, 0);
        let requires = self.needs_grad(&[xi]);
        self.push(op(xi as u32), shape, Storage::Own(out), requires, Aux::None)
    }

    /// `max(x, 0)`, element-wise (prefer the fused relu of [`Tape::conv2d`]
    /// and [`Tape::dense`]). The gradient at 0 is 0.
    pub fn relu(&mut self, x: Var) -> Result<Var> {
        self.unary("relu", x, |x| Op::Relu { x }, |x| x.max(0.0))
    }

    /// `1 / (1 + exp(-x))`, element-wise.
    pub fn sigmoid(&mut self, x: Var) -> Result<Var> {
        self.unary("sigmoid", x, |x| Op::Sigmoid { x }, sigmoid)
    }

    /// `tanh(x)`, element-wise.
    pub fn tanh(&mut self, x: Var) -> Result<Var> {
        self.unary("tanh", x, |x| Op::Tanh { x }, f32::tanh)
    }

    /// `x + b`, with `b` (`[c]`) broadcast over every row of the last axis of `x`.
    pub fn bias_add(&mut self, x: Var, b: Var) -> Result<Var> {
        const OP: &str = "bias_add";
        let (xi, bi) = (self.idx(OP, x)?, self.idx(OP, b)?);
        let (xs, bs) = (self.nodes[xi].shape, self.nodes[bi].shape);
        if bs.rank() != 1 || bs.len() != xs.last() {
            return Err(shape_err(OP, format!("bias {bs} must be ({},) for input {xs}", xs.last())));
        }
        let mut out = self.buffers.take(xs.len());
        let t = self.clock();
        out.as_mut_slice().copy_from_slice(self.val(xi));
        activation::bias_add(out.as_mut_slice(), self.val(bi)).map_err(kernel_err(OP))?;
        self.lap(t, OP, 0);
        let requires = self.needs_grad(&[xi, bi]);
        self.push(Op::BiasAdd { x: xi as u32, b: bi as u32 }, xs, Storage::Own(out), requires, Aux::None)
    }

    /// Fully connected: `activation(x w + b)` for `x` `[batch, in]`, `w`
    /// `[in, out]` (Keras layout), `b` `[out]`.
    pub fn dense(&mut self, x: Var, w: Var, b: Option<Var>, activation: Activation) -> Result<Var> {
        const OP: &str = "dense";
        let (xi, wi) = (self.idx(OP, x)?, self.idx(OP, w)?);
        let bi = b.map(|b| self.idx(OP, b)).transpose()?;
        check_activation(OP, activation)?;
        let (xs, ws) = (self.nodes[xi].shape, self.nodes[wi].shape);
        if xs.rank() != 2 {
            return Err(shape_err(OP, format!("input must be [batch, features] (flatten it first), got {xs}")));
        }
        if ws.rank() != 2 || ws.dims()[0] != xs.dims()[1] {
            return Err(shape_err(OP, format!("weights {ws} must be [{}, units] for input {xs}", xs.dims()[1])));
        }
        let shape = DenseShape { batch: xs.dims()[0], inputs: xs.dims()[1], outputs: ws.dims()[1] };
        if let Some(bi) = bi {
            let bs = self.nodes[bi].shape;
            if bs.rank() != 1 || bs.len() != shape.outputs {
                return Err(shape_err(OP, format!("bias {bs} must be ({},) for weights {ws}", shape.outputs)));
            }
        }
        let out_shape = Shape::matrix(shape.batch, shape.outputs);
        let mut out = self.buffers.take(out_shape.len());
        let t = self.clock();
        dense::dense_forward(
            &shape,
            self.val(xi),
            self.val(wi),
            bi.map(|b| self.val(b)),
            activation,
            out.as_mut_slice(),
        )
        .map_err(kernel_err(OP))?;
        self.lap(t, OP, 2 * (shape.batch * shape.inputs * shape.outputs) as u64);
        let requires = match bi {
            Some(bi) => self.needs_grad(&[xi, wi, bi]),
            None => self.needs_grad(&[xi, wi]),
        };
        let op = Op::Dense { x: xi as u32, w: wi as u32, b: bi.map(|b| b as u32), shape, act: activation };
        self.push(op, out_shape, Storage::Own(out), requires, Aux::None)
    }

    /// The same elements under another shape with as many elements; no copy.
    pub fn reshape(&mut self, x: Var, shape: Shape) -> Result<Var> {
        const OP: &str = "reshape";
        let xi = self.idx(OP, x)?;
        let xs = self.nodes[xi].shape;
        if xs.len() != shape.len() {
            return Err(shape_err(OP, format!("cannot reshape {xs} ({} elements) to {shape}", xs.len())));
        }
        let requires = self.needs_grad(&[xi]);
        self.push(Op::Reshape { x: xi as u32 }, shape, Storage::Alias(xi as u32), requires, Aux::None)
    }

    /// `[n, ...] -> [n, product of the rest]`, in (h, w, c) order for NHWC
    /// (Keras `Flatten`); no copy.
    pub fn flatten(&mut self, x: Var) -> Result<Var> {
        let xi = self.idx("flatten", x)?;
        let xs = self.nodes[xi].shape;
        self.reshape(x, Shape::matrix(xs.batch(), xs.item_len()))
    }

    /// Inverted dropout: in training mode each element is zeroed with
    /// probability `rate` and the survivors scaled by `1 / (1 - rate)`, with
    /// the mask drawn from [`Rng::new`]`(seed)` (same seed, same mask); in
    /// inference mode (or with `rate == 0`) the identity, with no copy.
    pub fn dropout(&mut self, x: Var, rate: f32, seed: u64) -> Result<Var> {
        const OP: &str = "dropout";
        let xi = self.idx(OP, x)?;
        if !(0.0..1.0).contains(&rate) {
            return Err(Error::BadArgument { op: OP, detail: format!("rate must be in [0, 1), got {rate}") });
        }
        let shape = self.nodes[xi].shape;
        let requires = self.needs_grad(&[xi]);
        if !self.is_training() || rate == 0.0 {
            return self.push(Op::Reshape { x: xi as u32 }, shape, Storage::Alias(xi as u32), requires, Aux::None);
        }
        let t = self.clock();
        let scale = 1.0 / (1.0 - rate);
        let mut rng = Rng::new(seed);
        let mut mask = self.buffers.take(shape.len());
        for m in mask.as_mut_slice() {
            *m = if rng.next_f64() < rate as f64 { 0.0 } else { scale };
        }
        let mut out = self.buffers.take(shape.len());
        for ((o, &x), &m) in out.as_mut_slice().iter_mut().zip(self.val(xi)).zip(mask.as_slice()) {
            *o = x * m;
        }
        self.lap(t, OP, 0);
        let aux = if requires {
            Aux::F32(mask)
        } else {
            self.buffers.give(mask);
            Aux::None
        };
        self.push(Op::Dropout { x: xi as u32 }, shape, Storage::Own(out), requires, aux)
    }

    /// Softmax over the last axis.
    pub fn softmax(&mut self, x: Var) -> Result<Var> {
        const OP: &str = "softmax";
        let xi = self.idx(OP, x)?;
        let shape = self.nodes[xi].shape;
        let mut out = self.buffers.take(shape.len());
        let t = self.clock();
        loss::softmax(shape.last(), self.val(xi), out.as_mut_slice()).map_err(kernel_err(OP))?;
        self.lap(t, OP, 0);
        let requires = self.needs_grad(&[xi]);
        self.push(Op::Softmax { x: xi as u32 }, shape, Storage::Own(out), requires, Aux::None)
    }

    fn scalar_node(&mut self, op: Op, value: f32, requires: bool, aux: Aux) -> Result<Var> {
        let mut out = self.buffers.take(1);
        out.as_mut_slice()[0] = value;
        self.push(op, Shape::vector(1), Storage::Own(out), requires, aux)
    }

    /// Softmax over the last axis of `logits` followed by categorical
    /// cross-entropy against `targets` (same shape, one-hot or any
    /// distribution per row), averaged over rows, fused and computed with
    /// log-sum-exp (Keras `CategoricalCrossentropy(from_logits=True)`; with a
    /// softmax output layer, Keras computes the same loss). A scalar.
    pub fn softmax_cross_entropy(&mut self, logits: Var, targets: Var) -> Result<Var> {
        const OP: &str = "softmax_cross_entropy";
        let (li, ti) = (self.idx(OP, logits)?, self.idx(OP, targets)?);
        let shape = self.same_shape(OP, li, ti)?;
        self.no_grad_target(OP, ti)?;
        let mut dlogits = self.buffers.take(shape.len());
        let t = self.clock();
        let value = loss::softmax_cross_entropy(shape.last(), self.val(li), self.val(ti), dlogits.as_mut_slice())
            .map_err(kernel_err(OP))?;
        self.lap(t, OP, 0);
        self.finish_loss(Op::SoftmaxCe { logits: li as u32 }, li, value, dlogits)
    }

    fn finish_loss(&mut self, op: Op, li: usize, value: f32, dlogits: convnet_tensor::AlignedBuf) -> Result<Var> {
        let requires = self.needs_grad(&[li]);
        let aux = if requires {
            Aux::F32(dlogits)
        } else {
            self.buffers.give(dlogits);
            Aux::None
        };
        self.scalar_node(op, value, requires, aux)
    }

    /// Like [`Tape::softmax_cross_entropy`] with integer class labels, one per
    /// row of `logits` (Keras `SparseCategoricalCrossentropy(from_logits=True)`).
    pub fn sparse_softmax_cross_entropy(&mut self, logits: Var, labels: &[u32]) -> Result<Var> {
        const OP: &str = "sparse_softmax_cross_entropy";
        let li = self.idx(OP, logits)?;
        let shape = self.nodes[li].shape;
        let rows = shape.len() / shape.last().max(1);
        if labels.len() != rows {
            return Err(shape_err(OP, format!("{} labels for logits {shape} ({rows} rows)", labels.len())));
        }
        let mut dlogits = self.buffers.take(shape.len());
        let t = self.clock();
        let value = loss::sparse_softmax_cross_entropy(shape.last(), self.val(li), labels, dlogits.as_mut_slice())
            .map_err(kernel_err(OP))?;
        self.lap(t, OP, 0);
        self.finish_loss(Op::SparseSoftmaxCe { logits: li as u32 }, li, value, dlogits)
    }

    /// Binary cross-entropy from **probabilities** `probs` (for example a
    /// sigmoid output) against `targets` in `[0, 1]`, averaged over all
    /// elements, with Keras's clipping of `probs` to `[1e-7, 1 - 1e-7]`
    /// ([`BCE_EPSILON`](crate::BCE_EPSILON); the clipped region has zero gradient). For logits use
    /// [`Tape::binary_cross_entropy_with_logits`], which is more accurate.
    pub fn binary_cross_entropy(&mut self, probs: Var, targets: Var) -> Result<Var> {
        const OP: &str = "binary_cross_entropy";
        let (pi, ti) = (self.idx(OP, probs)?, self.idx(OP, targets)?);
        self.same_shape(OP, pi, ti)?;
        self.no_grad_target(OP, ti)?;
        let t = self.clock();
        let value = loss::binary_cross_entropy(self.val(pi), self.val(ti)).map_err(kernel_err(OP))?;
        self.lap(t, OP, 0);
        let requires = self.needs_grad(&[pi]);
        self.scalar_node(Op::Bce { probs: pi as u32, targets: ti as u32 }, value, requires, Aux::None)
    }

    /// Binary cross-entropy from **logits** (Keras `from_logits=True`),
    /// averaged over all elements: `max(x, 0) - x t + ln(1 + exp(-|x|))`.
    pub fn binary_cross_entropy_with_logits(&mut self, logits: Var, targets: Var) -> Result<Var> {
        const OP: &str = "binary_cross_entropy_with_logits";
        let (li, ti) = (self.idx(OP, logits)?, self.idx(OP, targets)?);
        self.same_shape(OP, li, ti)?;
        self.no_grad_target(OP, ti)?;
        let t = self.clock();
        let value = loss::binary_cross_entropy_with_logits(self.val(li), self.val(ti)).map_err(kernel_err(OP))?;
        self.lap(t, OP, 0);
        let requires = self.needs_grad(&[li]);
        self.scalar_node(Op::BceLogits { logits: li as u32, targets: ti as u32 }, value, requires, Aux::None)
    }

    fn binary(&mut self, op_name: &'static str, a: Var, b: Var, op: Op, f: impl Fn(f32, f32) -> f32) -> Result<Var> {
        let (ai, bi) = (self.idx(op_name, a)?, self.idx(op_name, b)?);
        let shape = self.same_shape(op_name, ai, bi)?;
        let mut out = self.buffers.take(shape.len());
        let t = self.clock();
        for ((o, &a), &b) in out.as_mut_slice().iter_mut().zip(self.val(ai)).zip(self.val(bi)) {
            *o = f(a, b);
        }
        self.lap(t, op_name, 0);
        let requires = self.needs_grad(&[ai, bi]);
        let op = match op {
            Op::Add { .. } => Op::Add { a: ai as u32, b: bi as u32 },
            _ => Op::Mul { a: ai as u32, b: bi as u32 },
        };
        self.push(op, shape, Storage::Own(out), requires, Aux::None)
    }

    /// `a + b`, element-wise (same shapes).
    pub fn add(&mut self, a: Var, b: Var) -> Result<Var> {
        self.binary("add", a, b, Op::Add { a: 0, b: 0 }, |a, b| a + b)
    }

    /// `a * b`, element-wise (same shapes).
    pub fn mul(&mut self, a: Var, b: Var) -> Result<Var> {
        self.binary("mul", a, b, Op::Mul { a: 0, b: 0 }, |a, b| a * b)
    }

    /// The mean of all elements (accumulated in f64), a scalar.
    pub fn mean(&mut self, x: Var) -> Result<Var> {
        const OP: &str = "mean";
        let xi = self.idx(OP, x)?;
        let v = self.val(xi);
        if v.is_empty() {
            return Err(shape_err(OP, format!("mean of an empty tensor {}", self.nodes[xi].shape)));
        }
        let value = (v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64) as f32;
        let requires = self.needs_grad(&[xi]);
        self.scalar_node(Op::Mean { x: xi as u32 }, value, requires, Aux::None)
    }

    /// Per example, the mean of one channel: for `x` of shape `[n, ..., c]`
    /// (NHWC activations, or `[n, c]` scores) and `channels` of length `n`,
    /// the `[n]` vector whose element `i` is the mean of `x[i, ..., channels[i]]`
    /// over every other axis (accumulated in f64). With `[n, classes]`
    /// scores it picks one class score per example; on a conv layer's output
    /// it is the "mean activation of one filter" that filter visualisation
    /// maximises, one filter per example.
    ///
    /// ```
    /// use convnet_autodiff::{Params, Tape};
    /// use convnet_tensor::{Shape, Tensor};
    /// let x = Tensor::from_slice(Shape::nhwc(2, 1, 2, 2), &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])?;
    /// let mut tape = Tape::new();
    /// let v = tape.variable(x.view())?;
    /// let m = tape.channel_means(v, &[1, 0])?; // [mean(2, 4), mean(5, 7)]
    /// assert_eq!(tape.value(m)?.data(), &[3.0, 6.0]);
    /// let s = tape.sum(m)?;
    /// tape.backward(s, &mut Params::new())?;
    /// assert_eq!(tape.grad(v)?.data(), &[0.0, 0.5, 0.0, 0.5, 0.5, 0.0, 0.5, 0.0]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn channel_means(&mut self, x: Var, channels: &[u32]) -> Result<Var> {
        const OP: &str = "channel_means";
        let xi = self.idx(OP, x)?;
        let shape = self.nodes[xi].shape;
        if shape.rank() < 2 {
            return Err(shape_err(OP, format!("input must be [batch, ..., channels], got {shape}")));
        }
        let (n, c) = (shape.batch(), shape.last());
        if channels.len() != n {
            return Err(shape_err(OP, format!("{} channels for input {shape} ({n} examples)", channels.len())));
        }
        if let Some(&k) = channels.iter().find(|&&k| k as usize >= c) {
            return Err(Error::BadArgument { op: OP, detail: format!("channel {k} out of range for input {shape}") });
        }
        let m = shape.item_len() / c;
        let mut out = self.buffers.take(n);
        for ((o, item), &k) in out.as_mut_slice().iter_mut().zip(self.val(xi).chunks_exact(m * c)).zip(channels) {
            let sum: f64 = item.chunks_exact(c).map(|px| px[k as usize] as f64).sum();
            *o = (sum / m as f64) as f32;
        }
        let requires = self.needs_grad(&[xi]);
        let aux = if requires {
            let mut v = self.buffers.take_u32(n);
            v.copy_from_slice(channels);
            Aux::U32(v)
        } else {
            Aux::None
        };
        self.push(Op::ChannelMeans { x: xi as u32, m, c }, Shape::vector(n), Storage::Own(out), requires, aux)
    }

    /// The sum of all elements (accumulated in f64), a scalar: the sum of
    /// per-example objectives, whose gradient is each example's own.
    pub fn sum(&mut self, x: Var) -> Result<Var> {
        const OP: &str = "sum";
        let xi = self.idx(OP, x)?;
        let value = self.val(xi).iter().map(|&x| x as f64).sum::<f64>() as f32;
        let requires = self.needs_grad(&[xi]);
        self.scalar_node(Op::Sum { x: xi as u32 }, value, requires, Aux::None)
    }
}
