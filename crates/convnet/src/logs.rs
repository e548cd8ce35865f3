//! What training reports: the metrics of one batch ([`BatchLogs`]), of one
//! epoch ([`EpochLogs`]) and of the whole run ([`History`]).
//!
//! A leaf: `callbacks` reads these and `train` writes them, and neither
//! needs the other to do so.

/// Metrics of one epoch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EpochLogs {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training loss over the epoch (weighted by batch size).
    pub loss: f64,
    /// Mean training accuracy, if compiled with [`Metric::Accuracy`](crate::Metric::Accuracy).
    pub accuracy: Option<f64>,
    /// Validation loss, when there is validation data.
    pub val_loss: Option<f64>,
    /// Validation accuracy, when there is validation data and the metric.
    pub val_accuracy: Option<f64>,
    /// Wall time of the epoch (training and validation).
    pub seconds: f64,
}

/// Running metrics after one batch, given to [`Callback::on_batch_end`](crate::Callback::on_batch_end).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchLogs {
    /// 1-based epoch.
    pub epoch: usize,
    /// 1-based batch within the epoch.
    pub batch: usize,
    /// Loss of this batch.
    pub batch_loss: f64,
    /// Running mean loss of the epoch so far.
    pub loss: f64,
    /// Running mean accuracy of the epoch so far.
    pub accuracy: Option<f64>,
}

/// What `fit` returns: the metrics of every epoch run (Keras's `History`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    /// One entry per epoch, in order.
    pub epochs: Vec<EpochLogs>,
    /// Where the steps' time went, when fit ran with
    /// [`FitOptions::profile`](crate::FitOptions::profile).
    pub profile: Option<crate::profile::ProfileReport>,
}

impl History {
    /// Training loss per epoch.
    pub fn loss(&self) -> Vec<f64> {
        self.epochs.iter().map(|e| e.loss).collect()
    }
    /// Training accuracy per epoch (empty without the metric).
    pub fn accuracy(&self) -> Vec<f64> {
        self.epochs.iter().filter_map(|e| e.accuracy).collect()
    }
    /// Validation loss per epoch (empty without validation data).
    pub fn val_loss(&self) -> Vec<f64> {
        self.epochs.iter().filter_map(|e| e.val_loss).collect()
    }
    /// Validation accuracy per epoch.
    pub fn val_accuracy(&self) -> Vec<f64> {
        self.epochs.iter().filter_map(|e| e.val_accuracy).collect()
    }
}
