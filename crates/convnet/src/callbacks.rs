//! Callbacks run by [`Model::fit`](crate::Model::fit): early stopping, model
//! checkpoints, and user closures per batch or per epoch.

use crate::logs::{BatchLogs, EpochLogs};
use crate::model::Model;
use crate::Result;
use std::path::PathBuf;

/// Whether training goes on after a callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Keep training.
    Continue,
    /// Stop after this batch / epoch.
    Stop,
}

/// Hooks into the training loop. Every method has a default that does nothing.
pub trait Callback {
    /// After every training batch.
    fn on_batch_end(&mut self, _logs: &BatchLogs) -> Result<Control> {
        Ok(Control::Continue)
    }
    /// After every epoch (validation included), with the model.
    fn on_epoch_end(&mut self, _logs: &EpochLogs, _model: &Model) -> Result<Control> {
        Ok(Control::Continue)
    }
    /// Once when training ends (normally or stopped), with the model mutable.
    fn on_train_end(&mut self, _model: &mut Model) -> Result<()> {
        Ok(())
    }
}

/// The quantity a callback watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Monitor {
    /// Validation loss (lower is better); falls back to the training loss
    /// when there is no validation data.
    ValLoss,
    /// Validation accuracy (higher is better).
    ValAccuracy,
    /// Training loss.
    Loss,
    /// Training accuracy.
    Accuracy,
}

impl Monitor {
    /// The value and whether higher is better, from an epoch's logs.
    fn read(self, logs: &EpochLogs) -> Option<(f64, bool)> {
        match self {
            Monitor::ValLoss => Some((logs.val_loss.unwrap_or(logs.loss), false)),
            Monitor::ValAccuracy => logs.val_accuracy.map(|a| (a, true)),
            Monitor::Loss => Some((logs.loss, false)),
            Monitor::Accuracy => logs.accuracy.map(|a| (a, true)),
        }
    }
}

/// Stops training when the monitored quantity has not improved by
/// `min_delta` for `patience` epochs (Keras `EarlyStopping`), optionally
/// restoring the best weights at the end.
#[derive(Clone, Debug)]
pub struct EarlyStopping {
    /// What to watch (default validation loss).
    pub monitor: Monitor,
    /// Smallest change that counts as an improvement (default 0).
    pub min_delta: f64,
    /// Epochs without improvement before stopping (default 0).
    pub patience: usize,
    /// Put back the weights of the best epoch when training ends.
    pub restore_best_weights: bool,
    best: Option<f64>,
    wait: usize,
    best_weights: Option<Vec<Vec<f32>>>,
    /// The epoch at which training was stopped, if it was.
    pub stopped_epoch: Option<usize>,
}

impl EarlyStopping {
    /// Watches `monitor` with the given patience.
    pub fn new(monitor: Monitor, patience: usize) -> Self {
        EarlyStopping {
            monitor,
            min_delta: 0.0,
            patience,
            restore_best_weights: false,
            best: None,
            wait: 0,
            best_weights: None,
            stopped_epoch: None,
        }
    }
    /// Sets `min_delta`.
    pub fn min_delta(mut self, d: f64) -> Self {
        self.min_delta = d.abs();
        self
    }
    /// Restores the best weights when training ends.
    pub fn restore_best_weights(mut self, on: bool) -> Self {
        self.restore_best_weights = on;
        self
    }
}

fn snapshot(model: &Model) -> Vec<Vec<f32>> {
    model.weights().iter().map(|(_, t)| t.data().to_vec()).collect()
}

impl Callback for EarlyStopping {
    fn on_epoch_end(&mut self, logs: &EpochLogs, model: &Model) -> Result<Control> {
        let Some((v, higher)) = self.monitor.read(logs) else { return Ok(Control::Continue) };
        let improved = match self.best {
            None => true,
            Some(b) if higher => v - self.min_delta > b,
            Some(b) => v + self.min_delta < b,
        };
        if improved {
            self.best = Some(v);
            self.wait = 0;
            if self.restore_best_weights {
                self.best_weights = Some(snapshot(model));
            }
            return Ok(Control::Continue);
        }
        self.wait += 1;
        if self.wait > self.patience {
            self.stopped_epoch = Some(logs.epoch);
            return Ok(Control::Stop);
        }
        Ok(Control::Continue)
    }

    fn on_train_end(&mut self, model: &mut Model) -> Result<()> {
        if let Some(best) = self.best_weights.take() {
            model.set_weights(&best)?;
        }
        Ok(())
    }
}

/// Saves the model after every epoch, or only when the monitored quantity
/// improves (Keras `ModelCheckpoint`). The path may contain `{epoch}`.
#[derive(Clone, Debug)]
pub struct ModelCheckpoint {
    /// Where to save; `{epoch}` is replaced by the 1-based epoch.
    pub path: PathBuf,
    /// What decides "best".
    pub monitor: Monitor,
    /// Save only when the monitored quantity improves.
    pub save_best_only: bool,
    /// Save the weights only (else the whole model: architecture and weights).
    pub save_weights_only: bool,
    best: Option<f64>,
}

impl ModelCheckpoint {
    /// Saves the whole model to `path` after every epoch.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        ModelCheckpoint {
            path: path.into(),
            monitor: Monitor::ValLoss,
            save_best_only: false,
            save_weights_only: false,
            best: None,
        }
    }
    /// Only save when `monitor` improves.
    pub fn save_best_only(mut self, monitor: Monitor) -> Self {
        self.monitor = monitor;
        self.save_best_only = true;
        self
    }
    /// Save weights only.
    pub fn save_weights_only(mut self, on: bool) -> Self {
        self.save_weights_only = on;
        self
    }
}

impl Callback for ModelCheckpoint {
    fn on_epoch_end(&mut self, logs: &EpochLogs, model: &Model) -> Result<Control> {
        if self.save_best_only {
            let Some((v, higher)) = self.monitor.read(logs) else { return Ok(Control::Continue) };
            let better = self.best.is_none_or(|b| if higher { v > b } else { v < b });
            if !better {
                return Ok(Control::Continue);
            }
            self.best = Some(v);
        }
        let path = PathBuf::from(self.path.to_string_lossy().replace("{epoch}", &logs.epoch.to_string()));
        if self.save_weights_only {
            model.save_weights(&path)?;
        } else {
            model.save(&path)?;
        }
        Ok(Control::Continue)
    }
}

/// Stops training at the first batch whose loss is NaN or infinite (Keras
/// `TerminateOnNaN`), recording where.
///
/// `fit` already stops with an error at a non-finite loss, gradient or
/// weight while [`FitOptions::check_finite`](crate::FitOptions::check_finite)
/// is on (the default), keeping the last good weights; this callback is for
/// training with that check off, as in Keras: it ends `fit` normally
/// (`Ok`, with the partial epoch in the history) after the batch whose loss
/// went bad (a batch `fit` skipped: no update is made from a non-finite
/// loss).
///
/// ```
/// use convnet::callbacks::{Callback, Control, TerminateOnNaN};
/// use convnet::BatchLogs;
/// let mut t = TerminateOnNaN::default();
/// let logs = |loss: f64| BatchLogs { epoch: 2, batch: 7, batch_loss: loss, loss, accuracy: None };
/// assert_eq!(t.on_batch_end(&logs(0.5))?, Control::Continue);
/// assert_eq!(t.on_batch_end(&logs(f64::NAN))?, Control::Stop);
/// assert_eq!(t.stopped_at, Some((2, 7)));
/// # Ok::<(), convnet::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TerminateOnNaN {
    /// `(epoch, batch)` (1-based) of the batch that stopped training, if any.
    pub stopped_at: Option<(usize, usize)>,
}

impl Callback for TerminateOnNaN {
    fn on_batch_end(&mut self, logs: &BatchLogs) -> Result<Control> {
        if logs.batch_loss.is_finite() && logs.loss.is_finite() {
            return Ok(Control::Continue);
        }
        self.stopped_at = Some((logs.epoch, logs.batch));
        Ok(Control::Stop)
    }
}

/// A closure called after every batch; returning [`Control::Stop`] stops training.
pub struct OnBatchEnd<F: FnMut(&BatchLogs) -> Control>(pub F);

impl<F: FnMut(&BatchLogs) -> Control> Callback for OnBatchEnd<F> {
    fn on_batch_end(&mut self, logs: &BatchLogs) -> Result<Control> {
        Ok((self.0)(logs))
    }
}

/// A closure called after every epoch; returning [`Control::Stop`] stops training.
pub struct OnEpochEnd<F: FnMut(&EpochLogs, &Model) -> Control>(pub F);

impl<F: FnMut(&EpochLogs, &Model) -> Control> Callback for OnEpochEnd<F> {
    fn on_epoch_end(&mut self, logs: &EpochLogs, model: &Model) -> Result<Control> {
        Ok((self.0)(logs, model))
    }
}
