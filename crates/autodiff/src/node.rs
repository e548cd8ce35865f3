//! The nodes a [`Tape`](crate::Tape) records: what produced each value
//! ([`Op`], with the indices of its inputs), where the value lives
//! ([`Storage`]), what the forward pass saved for the backward rule ([`Aux`]).
//!
//! These types sit below both halves of reverse mode: `tape.rs` (and the op
//! constructors in `ops.rs`) append nodes, `backward.rs` reads them, so the
//! tape depends on the backward rules and never the other way round.

use crate::params::ParamId;
use crate::profile::ProfilePass;
use convnet_kernels::activation::Activation;
use convnet_kernels::conv::{ConvAlgo, ConvShape};
use convnet_kernels::dense::DenseShape;
use convnet_kernels::pool::PoolShape;
use convnet_tensor::{AlignedBuf, Shape, Tensor};
use std::sync::Arc;

/// What produced a node, with the indices of its inputs.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Op {
    Input,
    Variable,
    Param(ParamId),
    Conv2d {
        x: u32,
        w: u32,
        b: Option<u32>,
        shape: ConvShape,
        algo: ConvAlgo,
        act: Activation,
    },
    MaxPool {
        x: u32,
        shape: PoolShape,
    },
    /// `Conv2d` then a 2x2 `MaxPool` in one node (the first layer in
    /// training): the value is the pooled map, the `u32` aux the argmax;
    /// `x` needs no gradient.
    ConvMaxPool {
        x: u32,
        w: u32,
        b: Option<u32>,
        shape: ConvShape,
        act: Activation,
    },
    AvgPool {
        x: u32,
        shape: PoolShape,
    },
    GlobalAvgPool {
        x: u32,
        n: usize,
        hw: usize,
        c: usize,
    },
    Relu {
        x: u32,
    },
    Sigmoid {
        x: u32,
    },
    Tanh {
        x: u32,
    },
    BiasAdd {
        x: u32,
        b: u32,
    },
    Dense {
        x: u32,
        w: u32,
        b: Option<u32>,
        shape: DenseShape,
        act: Activation,
    },
    Reshape {
        x: u32,
    },
    Dropout {
        x: u32,
    },
    Softmax {
        x: u32,
    },
    SoftmaxCe {
        logits: u32,
    },
    SparseSoftmaxCe {
        logits: u32,
    },
    Bce {
        probs: u32,
        targets: u32,
    },
    BceLogits {
        logits: u32,
        targets: u32,
    },
    Add {
        a: u32,
        b: u32,
    },
    Mul {
        a: u32,
        b: u32,
    },
    Mean {
        x: u32,
    },
    /// Per example `i`, the mean of channel `channels[i]` (the `u32` aux) over
    /// every other axis of that example; `m` elements per channel.
    ChannelMeans {
        x: u32,
        m: usize,
        c: usize,
    },
    Sum {
        x: u32,
    },
}

impl Op {
    /// The op's name in a profile.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Op::Input => "input",
            Op::Variable => "variable",
            Op::Param(_) => "param",
            Op::Conv2d { .. } => "conv2d",
            Op::MaxPool { .. } => "max_pool2d",
            Op::ConvMaxPool { .. } => "conv2d_max_pool2d",
            Op::AvgPool { .. } => "avg_pool2d",
            Op::GlobalAvgPool { .. } => "global_avg_pool2d",
            Op::Relu { .. } => "relu",
            Op::Sigmoid { .. } => "sigmoid",
            Op::Tanh { .. } => "tanh",
            Op::BiasAdd { .. } => "bias_add",
            Op::Dense { .. } => "dense",
            Op::Reshape { .. } => "reshape",
            Op::Dropout { .. } => "dropout",
            Op::Softmax { .. } => "softmax",
            Op::SoftmaxCe { .. } => "softmax_cross_entropy",
            Op::SparseSoftmaxCe { .. } => "sparse_softmax_cross_entropy",
            Op::Bce { .. } => "binary_cross_entropy",
            Op::BceLogits { .. } => "binary_cross_entropy_with_logits",
            Op::Add { .. } => "add",
            Op::Mul { .. } => "mul",
            Op::Mean { .. } => "mean",
            Op::ChannelMeans { .. } => "channel_means",
            Op::Sum { .. } => "sum",
        }
    }

    /// The profile pass of the op's whole backward rule (conv and dense
    /// split theirs into data, filter, bias and activation).
    pub(crate) fn backward_pass(&self) -> ProfilePass {
        match self {
            Op::Relu { .. } | Op::Sigmoid { .. } | Op::Tanh { .. } | Op::Softmax { .. } => {
                ProfilePass::BackwardActivation
            }
            Op::BiasAdd { .. } => ProfilePass::BackwardBias,
            _ => ProfilePass::BackwardData,
        }
    }
}

/// Where a node's value lives.
#[derive(Debug)]
pub(crate) enum Storage {
    /// Its own pooled buffer.
    Own(AlignedBuf),
    /// The same elements as an earlier node (reshape, inference dropout): no copy.
    Alias(u32),
    /// A parameter's value, shared with its [`Params`](crate::Params) (a
    /// constant leaf): no copy.
    Shared(Arc<Tensor>),
}

/// Saved by the forward pass for the backward rule.
#[derive(Debug)]
pub(crate) enum Aux {
    None,
    F32(AlignedBuf),
    U32(Vec<u32>),
}

#[derive(Debug)]
pub(crate) struct Node {
    pub op: Op,
    pub shape: Shape,
    pub value: Storage,
    pub grad: Option<AlignedBuf>,
    /// True when `grad` is already zero wherever this node's fused relu
    /// output is zero (set by max pooling, which masks the small pooled
    /// gradient instead), so the node's own rule may skip the full-size mask.
    pub grad_relu_masked: bool,
    pub requires_grad: bool,
    pub aux: Aux,
    /// The tape's scope when the node was recorded (for the profiler).
    pub scope: u32,
}

/// The value of node `i`, following aliases (which always point backwards).
pub(crate) fn value_of(nodes: &[Node], mut i: usize) -> &[f32] {
    loop {
        match &nodes[i].value {
            Storage::Own(b) => return b.as_slice(),
            Storage::Shared(t) => return t.data(),
            Storage::Alias(j) => i = *j as usize,
        }
    }
}
