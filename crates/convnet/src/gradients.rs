//! Looking inside a model: every layer's output for a batch
//! ([`Model::activations`], tape-free), and the gradient of a scalar
//! [`Objective`] (a class score, one channel's mean activation, the
//! cross-entropy) with respect to the model's input or any layer's output
//! ([`Model::gradient`]).
//!
//! A gradient with respect to layer `j`'s output runs layers `0..=j` on the
//! tape-free engine, records that output on a [`Tape`] as a
//! [`variable`](Tape::variable) leaf and runs only the layers after it on the
//! tape; with respect to the input, the input itself is the leaf. Either way
//! the weights go on the tape as constants shared with the model (no copy:
//! [`Tape::constant`]), so `backward` computes the
//! leaf's gradient and no weight gradient at all (no `backward_filter`, no
//! `dW` GEMM), dropout and the random layers are the identity (as at
//! inference), and the training path is untouched. The objective is a sum
//! over the batch of one value per example, so example `i`'s gradient is the
//! gradient of its own value: filter visualisation runs one filter per
//! example, all in one forward and backward pass.

use crate::layers::Activation;
use crate::model::Model;
use crate::{Error, Result};
use convnet_autodiff::{Params, Tape, Var};
use convnet_tensor::{Shape, Tensor};

/// The scalar a [`Model::gradient`] differentiates: one value per example,
/// summed over the batch (so each example's gradient is its own value's).
#[derive(Clone, Debug, PartialEq)]
pub enum Objective {
    /// The score of class `classes[i]` for example `i`: the last layer's
    /// output *before* its activation (the logit before a softmax, as
    /// Grad-CAM (Selvaraju et al. 2017, arXiv:1610.02391) defines `y^c`).
    /// One class for the whole batch, or one per example.
    ClassScore(Vec<usize>),
    /// The mean, over every position, of channel `channels[i]` of `layer`'s
    /// output (after its activation) for example `i`: "how strongly this
    /// filter responds". One channel for the whole batch, or one per example.
    ChannelMean {
        /// The layer's name (`conv2d_2`, `block3_conv1`).
        layer: String,
        /// The channel(s).
        channels: Vec<usize>,
    },
    /// The mean categorical cross-entropy of a softmax model's output against
    /// class labels (one per example): the training loss. Its value is
    /// reported once (the batch mean), not per example.
    CrossEntropy(Vec<usize>),
}

/// What a [`Model::gradient`] is taken with respect to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wrt {
    /// The model's input batch.
    Input,
    /// The output of the named layer (after its activation).
    Layer(String),
}

/// What [`Model::gradient`] returns.
#[derive(Clone, Debug)]
pub struct Gradient {
    /// The objective's value per example (one value for
    /// [`Objective::CrossEntropy`], the batch mean).
    pub values: Vec<f32>,
    /// The gradient, shaped like the input batch ([`Wrt::Input`]) or like the
    /// layer's output for the batch ([`Wrt::Layer`]).
    pub grad: Tensor,
}

impl Model {
    /// Checks that `x` is a non-empty batch of the model's input shape and
    /// returns the batch size.
    fn batch_of(&self, x: &Tensor, what: &str) -> Result<usize> {
        let dims = x.shape().dims().to_vec();
        if dims.len() != self.input_shape().len() + 1 || dims[1..] != *self.input_shape() || dims[0] == 0 {
            return Err(Error::Data(format!(
                "{what}: input has shape {} but the model takes (n, {}) with n >= 1",
                x.shape(),
                self.input_shape().iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
            )));
        }
        Ok(dims[0])
    }

    /// Every layer's output for the batch `x` (or only the layers named in
    /// `names`, in model order), each `[n, ...]` after the layer's
    /// activation, computed on the tape-free inference engine (dropout and
    /// the random layers are the identity). Keras's
    /// `Model(inputs, [layer.output for layer in layers]).predict(x)`.
    ///
    /// ```
    /// use convnet_tensor::{Shape, Tensor};
    /// let model = convnet::mnist_convnet().build()?;
    /// let x = Tensor::full(Shape::nhwc(2, 28, 28, 1), 0.5);
    /// let all = model.activations(&x, &[])?;
    /// assert_eq!(all.len(), 8);
    /// assert_eq!(all[0].0, "conv2d");
    /// assert_eq!(all[0].1.shape().dims(), &[2, 26, 26, 32]);
    /// let some = model.activations(&x, &["conv2d_2", "max_pooling2d"])?;
    /// assert_eq!((some[0].0.as_str(), some[1].0.as_str()), ("max_pooling2d", "conv2d_2"));
    /// # Ok::<(), convnet::Error>(())
    /// ```
    pub fn activations(&self, x: &Tensor, names: &[&str]) -> Result<Vec<(String, Tensor)>> {
        let n = self.batch_of(x, "activations")?;
        let mut wanted = vec![names.is_empty(); self.layers.len()];
        for name in names {
            wanted[self.layer_index(name)?] = true;
        }
        let end = wanted.iter().rposition(|&w| w).map_or(0, |i| i + 1);
        let mut out = Vec::new();
        let mut cur = x.clone();
        let mut scratch = self.scratch();
        for (i, &want) in wanted.iter().enumerate().take(end) {
            cur = self.run_layers(&mut scratch, i..i + 1, &cur, n)?;
            if want {
                out.push((self.layers[i].name.clone(), cur.clone()));
            }
        }
        Ok(out)
    }

    /// Runs `layers` tape-free on `x`, the batch of `n` inputs of the first of them.
    pub(crate) fn run_layers(
        &self,
        scratch: &mut crate::infer::Scratch,
        layers: std::ops::Range<usize>,
        x: &Tensor,
        n: usize,
    ) -> Result<Tensor> {
        if layers.is_empty() {
            return Ok(x.clone());
        }
        let last = &self.layers[layers.end - 1];
        let y = crate::infer::run(&self.layers[layers], &self.params, self.algo, scratch, x.data(), n, false)?;
        let mut dims = vec![n];
        dims.extend_from_slice(&last.output);
        Ok(Tensor::from_slice(Shape::new(&dims)?, y)?)
    }

    /// The gradient of `objective` (summed over the batch) with respect to
    /// `wrt`, for the input batch `x`, with the objective's value per
    /// example. Weights get no gradient and are not changed; dropout and the
    /// random layers are the identity.
    ///
    /// Errors (all before any work): a batch of the wrong shape, an unknown
    /// layer name, a class or channel out of range, per-example lists whose
    /// length is neither 1 nor the batch size, a `wrt` layer that does not
    /// come before the objective (the objective's own layer, for
    /// [`Objective::ChannelMean`], is allowed), cross-entropy on a model
    /// without a softmax output.
    ///
    /// ```
    /// use convnet::gradients::{Objective, Wrt};
    /// use convnet_tensor::{Shape, Tensor};
    /// let model = convnet::mnist_convnet().build()?;
    /// let x = Tensor::full(Shape::nhwc(1, 28, 28, 1), 0.5);
    /// // Where in the image would more ink raise the score of "7"?
    /// let g = model.gradient(&x, &Objective::ClassScore(vec![7]), &Wrt::Input)?;
    /// assert_eq!(g.grad.shape().dims(), &[1, 28, 28, 1]);
    /// // The same score with respect to the last conv layer's output (Grad-CAM's gradient).
    /// let g = model.gradient(&x, &Objective::ClassScore(vec![7]), &Wrt::Layer("conv2d_2".into()))?;
    /// assert_eq!(g.grad.shape().dims(), &[1, 3, 3, 64]);
    /// # Ok::<(), convnet::Error>(())
    /// ```
    pub fn gradient(&self, x: &Tensor, objective: &Objective, wrt: &Wrt) -> Result<Gradient> {
        self.gradient_on(&mut Tape::new(), x, objective, wrt)
    }

    /// [`Model::gradient`] on a caller's tape (reset first), so a loop of
    /// gradient steps reuses its buffers.
    pub(crate) fn gradient_on(
        &self,
        tape: &mut Tape,
        x: &Tensor,
        objective: &Objective,
        wrt: &Wrt,
    ) -> Result<Gradient> {
        let n = self.batch_of(x, "gradient")?;
        let (end, _) = self.check_objective(objective, n)?;
        // Where the tape starts: the input, or the output of layer `j`.
        let start = match wrt {
            Wrt::Input => 0,
            Wrt::Layer(name) => {
                let j = self.layer_index(name)?;
                let allowed = match objective {
                    Objective::ChannelMean { .. } => j <= end,
                    _ => j < end,
                };
                if !allowed {
                    return Err(Error::invalid(
                        "wrt",
                        format!("layer {name} does not come before the objective's layer {}", self.layers[end].name),
                    ));
                }
                j + 1
            }
        };
        let leaf = if start == 0 { x.clone() } else { self.run_layers(&mut self.scratch(), 0..start, x, n)? };
        self.gradient_from(tape, start, &leaf, objective)
    }

    /// The objective's last layer and its per-example indices (one per
    /// example of a batch of `n`), after checking them.
    fn check_objective(&self, objective: &Objective, n: usize) -> Result<(usize, Vec<u32>)> {
        let last = self.layers.len() - 1;
        let (end, picks, bound, what) = match objective {
            Objective::ClassScore(c) | Objective::CrossEntropy(c) => (last, c, self.output_shape(), "class"),
            Objective::ChannelMean { layer, channels } => {
                let m = self.layer_index(layer)?;
                (m, channels, self.layers[m].output.as_slice(), "channel")
            }
        };
        let count = *bound.last().unwrap_or(&0);
        if matches!(objective, Objective::ClassScore(_) | Objective::CrossEntropy(_)) && bound.len() != 1 {
            return Err(Error::invalid(
                "objective",
                format!("class scores need a model whose output is (classes,), this one's is {bound:?}"),
            ));
        }
        if picks.len() != 1 && picks.len() != n {
            return Err(Error::invalid(
                "objective",
                format!("{} {what} indices for a batch of {n}: give one, or one per example", picks.len()),
            ));
        }
        if let Some(&k) = picks.iter().find(|&&k| k >= count) {
            let of = match objective {
                Objective::ChannelMean { layer, .. } => format!("layer {layer}, which has {count} channels"),
                _ => format!("the model, which has {count} classes"),
            };
            return Err(Error::invalid(what, format!("{what} {k} is out of range for {of} (0..{count})")));
        }
        if matches!(objective, Objective::CrossEntropy(_))
            && self.layers[last].layer.activation() != Activation::Softmax
        {
            return Err(Error::invalid("objective", "cross-entropy needs a model whose last layer is a softmax"));
        }
        Ok((end, (0..n).map(|i| picks[if picks.len() == 1 { 0 } else { i }] as u32).collect()))
    }

    /// The gradient of `objective` with respect to `leaf`, the batch that
    /// enters layer `start` (the input when `start` is 0; layer `start - 1`'s
    /// output otherwise): layers `start..` up to the objective's are
    /// recorded on `tape` (reset first).
    pub(crate) fn gradient_from(
        &self,
        tape: &mut Tape,
        start: usize,
        leaf: &Tensor,
        objective: &Objective,
    ) -> Result<Gradient> {
        let n = leaf.shape().batch();
        let (end, picks) = self.check_objective(objective, n)?;
        if start > end + 1 {
            return Err(Error::invalid("wrt", "the value differentiated by comes after the objective's layer"));
        }
        tape.set_training(true);
        let leaf_var = tape.variable(leaf.view())?;
        let logits = !matches!(objective, Objective::ChannelMean { .. });
        let out = self.forward_layers(tape, leaf_var, start..end + 1, logits, 0, true)?;
        let (objective_var, values): (Var, Option<Vec<f32>>) = match objective {
            Objective::CrossEntropy(_) => (tape.sparse_softmax_cross_entropy(out, &picks)?, None),
            _ => {
                let per_example = tape.channel_means(out, &picks)?;
                let values = tape.value(per_example)?.data().to_vec();
                (tape.sum(per_example)?, Some(values))
            }
        };
        let values = match values {
            Some(v) => v,
            None => vec![tape.scalar(objective_var)?],
        };
        if !tape.requires_grad(objective_var)? {
            // Every op passes "needs a gradient" on from the leaf, so this
            // would be a bug; say so rather than return zeros silently.
            return Err(Error::invalid("objective", "does not depend on the value it is differentiated by"));
        }
        tape.backward(objective_var, &mut Params::new())?;
        let grad = match tape.grad(leaf_var) {
            Ok(g) => g.to_tensor(),
            // The leaf influenced nothing (a relu that is zero everywhere, say): its gradient is zero.
            Err(convnet_autodiff::Error::NoGrad(_)) => Tensor::zeros(leaf.shape()),
            Err(e) => return Err(e.into()),
        };
        Ok(Gradient { values, grad })
    }
}

#[cfg(test)]
mod tests {
    use super::{Objective, Wrt};
    use crate::layers::Activation::{Relu, Sigmoid, Softmax, Tanh};
    use crate::{
        AveragePooling2D, Conv2D, Dense, DepthwiseConv2D, Dropout, Flatten, FlipMode, GlobalAveragePooling2D,
        GlobalMaxPooling2D, MaxPooling2D, Model, Padding, RandomFlip, Rescaling, SeparableConv2D, Sequential,
    };
    use convnet_tensor::{Rng, Shape, Tensor};

    /// Every layer type the library has, small: random flip (identity here),
    /// rescaling, conv (same, stride 2, tanh), grouped conv (relu), max
    /// pooling, depthwise (relu), separable (tanh), average pooling, flatten,
    /// dropout (identity here), dense (relu, sigmoid) and a softmax classifier.
    fn every_layer() -> Model {
        let mut model = Sequential::new()
            .add(RandomFlip::new(FlipMode::Horizontal).input_shape((12, 12, 2)))
            .add(Rescaling::new(2.0, -0.5))
            .add(Conv2D::new(4, 3).activation(Tanh).padding(Padding::Same).strides(2))
            .add(Conv2D::new(4, 3).groups(2).activation(Relu).padding(Padding::Same))
            .add(MaxPooling2D::new(2).strides(1))
            .add(DepthwiseConv2D::new(3).depth_multiplier(2).activation(Relu))
            .add(SeparableConv2D::new(3, 3).activation(Tanh).padding(Padding::Same))
            .add(AveragePooling2D::new(2).padding(Padding::Same))
            .add(Flatten::new())
            .add(Dropout::new(0.5))
            .add(Dense::new(6).activation(Relu))
            .add(Dense::new(5).activation(Sigmoid))
            .add(Dense::new(3).activation(Softmax))
            .seed(3)
            .build()
            .unwrap();
        // Non-zero biases, so relu kinks do not all sit at the same place.
        let mut rng = Rng::new(8);
        let values: Vec<Vec<f32>> = model
            .weights()
            .iter()
            .map(|(name, t)| {
                let lo = if name.ends_with("bias") { -0.2 } else { -0.6 };
                Tensor::uniform(t.shape(), lo, -lo, &mut rng).unwrap().data().to_vec()
            })
            .collect();
        model.set_weights(&values).unwrap();
        model
    }

    /// The objective's summed value, tape-free: layers `start..` of the
    /// model on `leaf` (the input of layer `start`).
    fn objective(model: &Model, start: usize, leaf: &Tensor, objective: &Objective) -> f64 {
        let n = leaf.shape().batch();
        let (end, picks, logits) = match objective {
            Objective::ClassScore(c) | Objective::CrossEntropy(c) => (model.layers.len() - 1, c.clone(), true),
            Objective::ChannelMean { layer, channels } => (model.layer_index(layer).unwrap(), channels.clone(), false),
        };
        let mut s = crate::infer::Scratch::default();
        let y = if start > end {
            leaf.data().to_vec()
        } else {
            crate::infer::run(&model.layers[start..=end], &model.params, model.algo, &mut s, leaf.data(), n, logits)
                .unwrap()
                .to_vec()
        };
        let c = model.layers[end].output.last().copied().unwrap();
        let per = y.len() / n;
        let pick = |i: usize| picks[if picks.len() == 1 { 0 } else { i }];
        match objective {
            Objective::CrossEntropy(_) => {
                let mut loss = 0.0;
                for (i, row) in y.chunks(per).enumerate() {
                    let max = row.iter().fold(f32::MIN, |a, &b| a.max(b)) as f64;
                    let lse = row.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln() + max;
                    loss += lse - row[pick(i)] as f64;
                }
                loss / n as f64
            }
            _ => y
                .chunks(per)
                .enumerate()
                .map(|(i, item)| {
                    let k = pick(i);
                    item.chunks(c).map(|px| px[k] as f64).sum::<f64>() / (per / c) as f64
                })
                .sum(),
        }
    }

    /// Central differences of `objective` against `Model::gradient`, on up
    /// to 16 sampled elements of the leaf; samples whose one-sided
    /// differences disagree straddle a relu or max-pool kink and are skipped
    /// (at most a quarter of them).
    fn check(model: &Model, x: &Tensor, obj: &Objective, wrt: &Wrt, seed: u64) {
        let g = model.gradient(x, obj, wrt).unwrap();
        let (start, mut leaf) = match wrt {
            Wrt::Input => (0, x.clone()),
            Wrt::Layer(name) => {
                let j = model.layer_index(name).unwrap();
                (j + 1, model.run_layers(&mut model.scratch(), 0..j + 1, x, x.shape().batch()).unwrap())
            }
        };
        assert_eq!(g.grad.shape(), leaf.shape(), "{obj:?} {wrt:?}");
        let want_sum = objective(model, start, &leaf, obj);
        let got_sum: f64 = g.values.iter().map(|&v| v as f64).sum();
        assert!((want_sum - got_sum).abs() < 1e-4 * (1.0 + want_sum.abs()), "{obj:?}: {got_sum} vs {want_sum}");
        let mut rng = Rng::new(seed);
        let (mut skipped, mut checked) = (0, 0);
        let samples = 16.min(leaf.len());
        for _ in 0..samples {
            let j = rng.below(leaf.len());
            let x0 = leaf.data()[j];
            let h = 2e-3f32 * x0.abs().max(1.0);
            let f0 = objective(model, start, &leaf, obj);
            leaf.data_mut()[j] = x0 + h;
            let fp = objective(model, start, &leaf, obj);
            leaf.data_mut()[j] = x0 - h;
            let fm = objective(model, start, &leaf, obj);
            leaf.data_mut()[j] = x0;
            let (right, left) = ((fp - f0) / h as f64, (f0 - fm) / h as f64);
            if (right - left).abs() > 2e-2 + 0.1 * right.abs().max(left.abs()) {
                skipped += 1;
                continue;
            }
            let numeric = (fp - fm) / (2.0 * h as f64);
            let analytic = g.grad.data()[j] as f64;
            assert!(
                (analytic - numeric).abs() <= 5e-3 + 3e-2 * analytic.abs().max(numeric.abs()),
                "{obj:?} w.r.t. {wrt:?}: element {j}: analytic {analytic} vs numeric {numeric}"
            );
            checked += 1;
        }
        assert!(skipped * 4 <= samples, "{obj:?} w.r.t. {wrt:?}: {skipped} of {samples} samples on kinks");
        assert!(checked > 0);
    }

    #[test]
    fn input_and_layer_gradients_match_central_differences_for_every_layer_type() {
        let model = every_layer();
        let mut rng = Rng::new(1);
        let x = Tensor::uniform(Shape::nhwc(2, 12, 12, 2), 0.0, 1.0, &mut rng).unwrap();
        let class = Objective::ClassScore(vec![2, 0]);
        check(&model, &x, &class, &Wrt::Input, 1);
        check(&model, &x, &Objective::CrossEntropy(vec![1, 2]), &Wrt::Input, 2);
        // With respect to every layer's output before the last.
        for (i, l) in model.layers.iter().enumerate().take(model.layers.len() - 1) {
            check(&model, &x, &class, &Wrt::Layer(l.name.clone()), 10 + i as u64);
        }
        // One channel's mean of each image-shaped layer, per example, w.r.t. the input.
        for l in model.layers.iter().filter(|l| l.output.len() == 3) {
            let c = l.output[2];
            let obj = Objective::ChannelMean { layer: l.name.clone(), channels: vec![0, c - 1] };
            check(&model, &x, &obj, &Wrt::Input, 40);
            // ... and w.r.t. the layer's own output: 1 / positions on that channel.
            let g = model.gradient(&x, &obj, &Wrt::Layer(l.name.clone())).unwrap();
            let positions = (l.output[0] * l.output[1]) as f32;
            for (i, item) in g.grad.data().chunks(l.output.iter().product()).enumerate() {
                let k = if i == 0 { 0 } else { c - 1 };
                for (p, &v) in item.iter().enumerate() {
                    assert_eq!(v, if p % c == k { 1.0 / positions } else { 0.0 });
                }
            }
        }
    }

    /// The global pooling layers (both forms of each) and a classifier on them.
    #[test]
    fn global_pooling_gradients_match_central_differences() {
        let model = Sequential::new()
            .add(Conv2D::new(4, 3).activation(Tanh).input_shape((7, 7, 2)))
            .add(GlobalMaxPooling2D::new().keepdims(true))
            .add(Conv2D::new(3, 1).activation(Tanh))
            .add(Flatten::new())
            .add(Dense::new(3).activation(Softmax))
            .seed(5)
            .build()
            .unwrap();
        let other = Sequential::new()
            .add(Conv2D::new(4, 3).activation(Relu).input_shape((7, 7, 2)))
            .add(GlobalAveragePooling2D::new())
            .add(Dense::new(3).activation(Softmax))
            .seed(6)
            .build()
            .unwrap();
        let mut rng = Rng::new(9);
        let x = Tensor::uniform(Shape::nhwc(2, 7, 7, 2), -1.0, 1.0, &mut rng).unwrap();
        for m in [&model, &other] {
            for (i, l) in m.layers.iter().enumerate().take(m.layers.len() - 1) {
                check(m, &x, &Objective::ClassScore(vec![1, 2]), &Wrt::Layer(l.name.clone()), 60 + i as u64);
            }
            check(m, &x, &Objective::ClassScore(vec![0]), &Wrt::Input, 70);
        }
    }

    /// The chapter's model, as trained code uses it: gradients w.r.t. the
    /// input through relu convs and max pooling, per-example independence.
    #[test]
    fn mnist_model_gradients_are_per_example() {
        let model = crate::mnist_convnet().build().unwrap();
        let mut rng = Rng::new(4);
        let x = Tensor::uniform(Shape::nhwc(3, 28, 28, 1), 0.0, 1.0, &mut rng).unwrap();
        let obj = Objective::ChannelMean { layer: "conv2d_1".into(), channels: vec![3, 7, 9] };
        check(&model, &x, &obj, &Wrt::Input, 5);
        let batch = model.gradient(&x, &obj, &Wrt::Input).unwrap();
        // Example 1 alone, with its own channel: the same gradient.
        let one = Tensor::from_slice(Shape::nhwc(1, 28, 28, 1), &x.data()[784..2 * 784]).unwrap();
        let alone = model
            .gradient(&one, &Objective::ChannelMean { layer: "conv2d_1".into(), channels: vec![7] }, &Wrt::Input)
            .unwrap();
        assert_eq!(alone.values[0], batch.values[1]);
        for (a, b) in alone.grad.data().iter().zip(&batch.grad.data()[784..2 * 784]) {
            assert!((a - b).abs() <= 1e-6 * (1.0 + a.abs()), "{a} vs {b}");
        }
    }

    /// `activations` equals the outputs of the same model truncated after
    /// each layer (built from the definition's prefix, given the prefix of
    /// the weights), bit for bit.
    #[test]
    fn activations_equal_truncated_models() {
        let model = every_layer();
        let mut rng = Rng::new(2);
        let x = Tensor::uniform(Shape::nhwc(3, 12, 12, 2), 0.0, 1.0, &mut rng).unwrap();
        let all = model.activations(&x, &[]).unwrap();
        assert_eq!(all.len(), model.layers.len());
        let definition = model.to_sequential();
        let weights: Vec<Vec<f32>> = model.weights().iter().map(|(_, t)| t.data().to_vec()).collect();
        let mut used = 0;
        for (i, (name, act)) in all.iter().enumerate() {
            assert_eq!(name, &model.layers[i].name);
            used += model.layers[i].params.len();
            let mut truncated =
                Sequential { layers: definition.layers[..=i].to_vec(), ..definition.clone() }.build().unwrap();
            truncated.set_weights(&weights[..used]).unwrap();
            let want = truncated.predict(&x, 2).unwrap();
            let bits = |t: &Tensor| t.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(act), bits(&want), "layer {name}");
            let mut dims = vec![3];
            dims.extend_from_slice(&model.layers[i].output);
            assert_eq!(act.shape().dims(), dims.as_slice());
        }
        // The named ones only, in model order.
        let some = model.activations(&x, &["dense_1", "conv2d"]).unwrap();
        assert_eq!(some.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["conv2d", "dense_1"]);
    }

    #[test]
    fn bad_requests_are_clear_errors() {
        let model = crate::mnist_convnet().build().unwrap();
        let x = Tensor::full(Shape::nhwc(2, 28, 28, 1), 0.5);
        let err = |o: &Objective, w: &Wrt| model.gradient(&x, o, w).unwrap_err().to_string();
        let e = err(&Objective::ChannelMean { layer: "conv7".into(), channels: vec![0] }, &Wrt::Input);
        assert!(e.contains("no layer \"conv7\"") && e.contains("conv2d_2"), "{e}");
        let e = err(&Objective::ClassScore(vec![10]), &Wrt::Input);
        assert!(e.contains("class 10 is out of range") && e.contains("10 classes"), "{e}");
        let e = err(&Objective::ChannelMean { layer: "conv2d".into(), channels: vec![32] }, &Wrt::Input);
        assert!(e.contains("channel 32") && e.contains("32 channels"), "{e}");
        let e = err(&Objective::ClassScore(vec![1, 2, 3]), &Wrt::Input);
        assert!(e.contains("3 class indices for a batch of 2"), "{e}");
        let e = err(&Objective::ClassScore(vec![1]), &Wrt::Layer("dense_1".into()));
        assert!(e.contains("does not come before"), "{e}");
        let e =
            err(&Objective::ChannelMean { layer: "conv2d".into(), channels: vec![0] }, &Wrt::Layer("conv2d_1".into()));
        assert!(e.contains("does not come before"), "{e}");
        let e =
            model.gradient(&Tensor::full(Shape::nhwc(1, 27, 28, 1), 0.5), &Objective::ClassScore(vec![1]), &Wrt::Input);
        assert!(e.unwrap_err().to_string().contains("(n, 28, 28, 1)"));
        let e = model.activations(&x, &["nope"]).unwrap_err().to_string();
        assert!(e.contains("no layer \"nope\""), "{e}");
        let linear = Sequential::new().add(Dense::new(3).input_shape(4)).build().unwrap();
        let e =
            linear.gradient(&Tensor::full(Shape::matrix(1, 4), 1.0), &Objective::CrossEntropy(vec![0]), &Wrt::Input);
        assert!(e.unwrap_err().to_string().contains("softmax"));
    }
}
