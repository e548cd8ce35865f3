//! What `compile` fixes before training: the loss ([`Loss`]), the metrics
//! ([`Metric`]) and the optimizer, checked against the model's last layer.
//!
//! The check decides once whether the last layer's activation is folded into
//! the loss (a softmax with categorical cross-entropy, a sigmoid with binary
//! cross-entropy: the fused logits forms) and whether the model's raw
//! outputs are logits; training and evaluation read those answers here.

use crate::built::BuiltLayer;
use crate::data::TargetForm;
use crate::layers::Activation;
use crate::{Error, Result};
use convnet_optim::Optimizer;

/// Loss functions (Keras names). A softmax (or, for binary, sigmoid) last
/// layer is fused into the loss; a linear last layer is taken as logits
/// (Keras's `from_logits=True`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    /// `categorical_crossentropy`: one-hot targets `[n, classes]`.
    CategoricalCrossentropy,
    /// `sparse_categorical_crossentropy`: class-index targets `[n]`.
    SparseCategoricalCrossentropy,
    /// `binary_crossentropy`: targets in `[0, 1]`, same shape as the output.
    BinaryCrossentropy,
}

impl Loss {
    /// Keras's name.
    pub fn name(self) -> &'static str {
        match self {
            Loss::CategoricalCrossentropy => "categorical_crossentropy",
            Loss::SparseCategoricalCrossentropy => "sparse_categorical_crossentropy",
            Loss::BinaryCrossentropy => "binary_crossentropy",
        }
    }
}

/// Metrics reported besides the loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Fraction of examples whose arg-max matches the target's (binary: of
    /// outputs on the right side of 0.5), Keras's `"accuracy"`.
    Accuracy,
}

/// A model's training configuration, made by `Model::compile`.
pub(crate) struct Compiled {
    /// Behind a `Mutex` only so that a [`Model`](crate::Model) is `Sync`:
    /// the shards of a training step record the model's forward pass from
    /// several threads (`shards.rs`) and never touch the optimizer; `fit`
    /// updates through [`Compiled::optimizer_mut`], which takes no lock.
    optimizer: std::sync::Mutex<Box<dyn Optimizer + Send>>,
    /// The optimizer's Keras name (read without the lock).
    pub(crate) optimizer_name: &'static str,
    pub(crate) loss: Loss,
    pub(crate) accuracy: bool,
    /// Whether the last layer's activation is folded into the loss.
    pub(crate) fused: bool,
    /// Whether the outputs the loss sees are logits: the activation is fused,
    /// or the last layer is linear (Keras's `from_logits=True`).
    pub(crate) logits: bool,
    /// Width of the model's (flat) output.
    pub(crate) outputs: usize,
}

impl Compiled {
    /// Checks that `loss` fits the model's `last` layer and records the choice.
    pub(crate) fn new(
        optimizer: Box<dyn Optimizer + Send>,
        loss: Loss,
        metrics: &[Metric],
        last: &BuiltLayer,
    ) -> Result<Compiled> {
        if last.output.len() != 1 {
            return Err(Error::invalid(
                "loss",
                format!("{} needs a flat output (units,), the model outputs {:?}", loss.name(), last.output),
            ));
        }
        let act = last.layer.activation();
        let fused = match (loss, act) {
            (Loss::CategoricalCrossentropy | Loss::SparseCategoricalCrossentropy, Activation::Softmax) => true,
            (Loss::CategoricalCrossentropy | Loss::SparseCategoricalCrossentropy, Activation::Linear) => false,
            (Loss::CategoricalCrossentropy | Loss::SparseCategoricalCrossentropy, other) => {
                return Err(Error::invalid(
                    "loss",
                    format!(
                        "{} needs a softmax (or linear, read as logits) last layer, {} ends in {}",
                        loss.name(),
                        last.name,
                        other.name()
                    ),
                ))
            }
            (Loss::BinaryCrossentropy, Activation::Sigmoid) => true,
            (Loss::BinaryCrossentropy, _) => false,
        };
        Ok(Compiled {
            optimizer_name: optimizer.name(),
            optimizer: std::sync::Mutex::new(optimizer),
            loss,
            accuracy: metrics.contains(&Metric::Accuracy),
            fused,
            logits: fused || act == Activation::Linear,
            outputs: last.output[0],
        })
    }

    /// The optimizer, to update with (no lock: `&mut self` is exclusive).
    pub(crate) fn optimizer_mut(&mut self) -> &mut (dyn Optimizer + Send) {
        // A poisoned lock only means a panic elsewhere while it was held; the
        // optimizer is never locked, so there is nothing half-written.
        &mut **self.optimizer.get_mut().unwrap_or_else(|e| e.into_inner())
    }

    /// The form the targets take for this loss.
    pub(crate) fn target_form(&self) -> TargetForm {
        let k = self.outputs;
        match self.loss {
            Loss::CategoricalCrossentropy => TargetForm::OneHot(k),
            Loss::SparseCategoricalCrossentropy => TargetForm::Index(k),
            Loss::BinaryCrossentropy => TargetForm::Values(k),
        }
    }
}
