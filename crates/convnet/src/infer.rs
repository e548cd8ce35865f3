//! The tape-free inference engine: [`run`] calls the kernels directly on two
//! ping-pong activation buffers (plus a max-pool index buffer), reused across
//! batches and calls. No node is recorded, no parameter is copied, no
//! gradient buffer exists; the kernels and their arguments are the ones the
//! tape's forward pass uses, with ReLU fused into the conv and dense
//! epilogues. `evaluate` and `predict` (in `evaluate.rs`, beside this file)
//! and the validation pass of `fit` run on it.
//!
//! It needs only the built layers and their parameters, not `Model`, so the
//! model can own its [`Scratch`] without the two files importing each other.

use crate::built::BuiltLayer;
use crate::layers::{conv_shape, depthwise_shape, pool_shape, separable_shapes, Activation, Layer};
use crate::Result;
use convnet_autodiff::Params;
use convnet_kernels::activation::Activation as KernelActivation;
use convnet_kernels::conv::{self, ConvAlgo};
use convnet_kernels::dense::{dense_forward, DenseShape};
use convnet_kernels::{loss, pool};

/// Reusable buffers of the inference pass.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    cur: Vec<f32>,
    next: Vec<f32>,
    argmax: Vec<u32>,
    grad: Vec<f32>,
    /// A separable layer's depthwise output.
    mid: Vec<f32>,
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
    let last = layers.len() - 1;
    let mut len = x.len();
    let mut from_x = true; // the current activations are still `x` itself
    for (i, l) in layers.iter().enumerate() {
        let mut act = l.layer.activation();
        if i == last && logits {
            act = Activation::Linear;
        }
        let out_len = n * l.output.iter().product::<usize>();
        let input: &[f32] = if from_x { x } else { &s.cur[..len] };
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
                s.next.resize(out_len, 0.0);
                let (k, b) = (weight(0)?.expect("conv kernel"), weight(1)?);
                let algo = c.algo.unwrap_or(if c.groups > 1 { ConvAlgo::Auto } else { algo });
                conv::conv2d_forward(algo, &shape, input, k, b, fused, &mut s.next[..out_len])?;
            }
            Layer::DepthwiseConv2D(d) => {
                let shape = depthwise_shape(d, n, l.input[0], l.input[1], l.input[2])?;
                s.next.resize(out_len, 0.0);
                let (k, b) = (weight(0)?.expect("depthwise kernel"), weight(1)?);
                let algo = d.algo.unwrap_or(ConvAlgo::Auto);
                conv::conv2d_forward(algo, &shape, input, k, b, fused, &mut s.next[..out_len])?;
            }
            Layer::SeparableConv2D(c) => {
                let (ds, ps) = separable_shapes(c, n, l.input[0], l.input[1], l.input[2])?;
                s.mid.resize(ds.output_len(), 0.0);
                s.next.resize(out_len, 0.0);
                let (dk, pk, b) =
                    (weight(0)?.expect("depthwise kernel"), weight(1)?.expect("pointwise kernel"), weight(2)?);
                conv::conv2d_forward(ConvAlgo::Auto, &ds, input, dk, None, KernelActivation::Linear, &mut s.mid)?;
                conv::conv2d_forward(algo, &ps, &s.mid, pk, b, fused, &mut s.next[..out_len])?;
            }
            Layer::Dense(_) => {
                let shape = DenseShape { batch: n, inputs: l.input[0], outputs: l.output[0] };
                s.next.resize(out_len, 0.0);
                let (k, b) = (weight(0)?.expect("dense kernel"), weight(1)?);
                dense_forward(&shape, input, k, b, fused, &mut s.next[..out_len])?;
            }
            Layer::MaxPooling2D(p) | Layer::AveragePooling2D(p) => {
                let shape = pool_shape(p, n, l.input[0], l.input[1], l.input[2])?;
                s.next.resize(out_len, 0.0);
                if matches!(l.layer, Layer::MaxPooling2D(_)) {
                    s.argmax.resize(out_len, 0);
                    pool::max_pool2d_forward(&shape, input, &mut s.next[..out_len], &mut s.argmax[..out_len])?;
                } else {
                    pool::avg_pool2d_forward(&shape, input, &mut s.next[..out_len])?;
                }
            }
            Layer::GlobalAveragePooling2D(_) => {
                let [h, w, ch] = [l.input[0], l.input[1], l.input[2]];
                s.next.resize(out_len, 0.0);
                pool::global_avg_pool_forward(n, h * w, ch, input, &mut s.next[..out_len])?;
            }
            Layer::GlobalMaxPooling2D(_) => {
                // A max pool whose window is the whole map, as in training.
                let [h, w, ch] = [l.input[0], l.input[1], l.input[2]];
                let shape = pool::PoolShape::new(n, h, w, ch, (h, w), (h, w), conv::Padding::Valid)?;
                s.next.resize(out_len, 0.0);
                s.argmax.resize(out_len, 0);
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
                s.next.resize(out_len, 0.0);
                for (o, &v) in s.next[..out_len].iter_mut().zip(input) {
                    *o = v * r.scale + r.offset;
                }
            }
        }
        if wrote {
            std::mem::swap(&mut s.cur, &mut s.next);
            from_x = false;
        }
        len = out_len;
        if act == Activation::Linear || (act == Activation::Relu && wrote) {
            continue; // nothing to do, or ReLU already fused into the kernel
        }
        if from_x {
            // An activation directly on the input: work on a copy.
            s.cur.clear();
            s.cur.extend_from_slice(x);
            from_x = false;
        }
        let out = &mut s.cur[..len];
        match act {
            Activation::Linear => {}
            Activation::Relu => out.iter_mut().for_each(|v| *v = v.max(0.0)),
            Activation::Sigmoid => out.iter_mut().for_each(|v| *v = loss::sigmoid(*v)),
            Activation::Tanh => out.iter_mut().for_each(|v| *v = v.tanh()),
            Activation::Softmax => {
                s.next.resize(len, 0.0);
                loss::softmax(*l.output.last().unwrap_or(&1), out, &mut s.next[..len])?;
                std::mem::swap(&mut s.cur, &mut s.next);
            }
        }
    }
    if from_x {
        s.cur.clear();
        s.cur.extend_from_slice(x);
    }
    Ok(&s.cur[..len])
}

impl Scratch {
    /// Mean softmax cross-entropy of `logits` against one-hot `targets`
    /// (the kernel the training tape uses).
    pub(crate) fn cross_entropy(&mut self, classes: usize, logits: &[f32], targets: &[f32]) -> Result<f32> {
        self.grad.resize(logits.len(), 0.0);
        Ok(loss::softmax_cross_entropy(classes, logits, targets, &mut self.grad[..logits.len()])?)
    }

    /// Mean sparse softmax cross-entropy of `logits` against class indices.
    pub(crate) fn sparse_cross_entropy(&mut self, classes: usize, logits: &[f32], labels: &[u32]) -> Result<f32> {
        self.grad.resize(logits.len(), 0.0);
        Ok(loss::sparse_softmax_cross_entropy(classes, logits, labels, &mut self.grad[..logits.len()])?)
    }
}
