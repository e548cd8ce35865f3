//! The pieces `fit` and `evaluate` share: reused batch buffers, running
//! sums of loss and correct predictions, the data check, and what counts as
//! a correct prediction.

use crate::compile::Compiled;
use crate::data::{Examples, TargetForm};
use crate::{Error, Result};
use convnet_tensor::Shape;

/// Sums of a pass over examples: loss and correct predictions, weighted by count.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Running {
    pub(crate) loss: f64,
    pub(crate) correct: f64,
    pub(crate) seen: usize,
}

impl Running {
    pub(crate) fn loss(&self) -> f64 {
        self.loss / self.seen.max(1) as f64
    }
    pub(crate) fn accuracy(&self) -> f64 {
        self.correct / self.seen.max(1) as f64
    }
}

/// Reused batch buffers: inputs, targets, sparse labels.
pub(crate) struct BatchBuf {
    pub(crate) x: Vec<f32>,
    pub(crate) y: Vec<f32>,
    pub(crate) labels: Vec<u32>,
    /// Outputs of an inference batch (evaluate).
    pub(crate) out: Vec<f32>,
    item_shape: Vec<usize>,
    pub(crate) item_len: usize,
}

impl BatchBuf {
    /// Buffers for batches of up to `batch` examples of shape `item_shape`.
    pub(crate) fn new(item_shape: &[usize], batch: usize, form: Option<TargetForm>) -> Self {
        let item_shape = item_shape.to_vec();
        let item_len = item_shape.iter().product();
        BatchBuf {
            x: vec![0.0; batch * item_len],
            y: vec![0.0; form.map_or(0, |f| batch * f.width())],
            labels: Vec::with_capacity(batch),
            out: Vec::new(),
            item_shape,
            item_len,
        }
    }

    /// Whether these buffers are what [`BatchBuf::new`] makes for the same
    /// arguments (so a kept buffer can be reused).
    pub(crate) fn fits(&self, item_shape: &[usize], batch: usize, form: Option<TargetForm>) -> bool {
        self.item_shape == item_shape
            && self.x.len() == batch * self.item_len
            && self.y.len() == form.map_or(0, |f| batch * f.width())
    }

    /// The shape of a batch of `b` examples.
    pub(crate) fn shape(&self, b: usize) -> Result<Shape> {
        let mut d = Vec::with_capacity(4);
        d.push(b);
        d.extend_from_slice(&self.item_shape);
        Ok(Shape::new(&d)?)
    }

    /// Gathers examples `idx` of `data` (and their targets in `form`).
    pub(crate) fn fill(&mut self, data: &dyn Examples, idx: &[usize], form: Option<TargetForm>) -> Result<()> {
        let b = idx.len();
        match form {
            Some(f) => {
                let w = f.width();
                data.gather(idx, &mut self.x[..b * self.item_len], Some((&mut self.y[..b * w], f)))?;
                if let TargetForm::Index(_) = f {
                    self.labels.clear();
                    self.labels.extend(self.y[..b].iter().map(|&v| v as u32));
                }
            }
            None => data.gather(idx, &mut self.x[..b * self.item_len], None)?,
        }
        Ok(())
    }
}

/// Checks that `data` holds examples of `input_shape` and is not empty.
pub(crate) fn check_data(input_shape: &[usize], data: &dyn Examples, what: &str) -> Result<()> {
    if data.input_shape() != input_shape {
        return Err(Error::Data(format!(
            "{what}: examples have shape {:?} but the model takes {:?}",
            data.input_shape(),
            input_shape
        )));
    }
    if data.is_empty() {
        return Err(Error::Data(format!("{what}: no examples")));
    }
    Ok(())
}

/// Index of the largest value (the first on ties).
fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

/// Number of correct predictions in a batch (`out` holds logits or outputs).
pub(crate) fn correct(c: &Compiled, out: &[f32], buf: &BatchBuf, b: usize, form: TargetForm) -> f64 {
    correct_of(c.outputs, c.logits, out, &buf.y, &buf.labels, b, form)
}

/// [`correct`] against the targets `y` (one-hot or values) or `labels`
/// (sparse) of the `b` examples whose outputs are `out` (a shard of a
/// batch, say), given the two facts of [`Compiled`] it reads: the output
/// width `k` and whether the outputs are logits.
pub(crate) fn correct_of(
    k: usize,
    logits: bool,
    out: &[f32],
    y: &[f32],
    labels: &[u32],
    b: usize,
    form: TargetForm,
) -> f64 {
    match form {
        TargetForm::OneHot(_) => {
            out.chunks_exact(k).zip(y.chunks_exact(k)).take(b).filter(|(o, t)| argmax(o) == argmax(t)).count() as f64
        }
        TargetForm::Index(_) => {
            out.chunks_exact(k).zip(&labels[..b]).filter(|(o, &l)| argmax(o) == l as usize).count() as f64
        }
        TargetForm::Values(_) => {
            // Outputs are logits when fused or linear: threshold 0; probabilities: 0.5.
            let thr = if logits { 0.0 } else { 0.5 };
            let hits = out[..b * k].iter().zip(&y[..b * k]).filter(|(&o, &t)| (o > thr) == (t > 0.5)).count();
            hits as f64 / k as f64
        }
    }
}
