//! Where `fit`, `evaluate` and `predict` read examples from.
//!
//! [`Examples`] gathers the examples at given indices into a batch buffer:
//! images (NHWC f32) and targets in the form the loss needs. It is
//! implemented for in-memory tensors ([`XY`], Keras's `fit(x, y)`) and for a
//! `convnet_datasets::Dataset`, which keeps MNIST as bytes (47 MB instead of
//! 188 MB of f32) and converts each batch as it is gathered, exactly as
//! Keras's `x / 255`.

use crate::{Error, Result};
use convnet_datasets::folder::ImageDataset;
use convnet_datasets::Dataset;
use convnet_tensor::{Tensor, TensorView};

/// The form of the targets a loss consumes, per example.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetForm {
    /// A one-hot (or probability) row of this many classes (categorical cross-entropy).
    OneHot(usize),
    /// One class index, stored as an f32 (sparse categorical cross-entropy).
    Index(usize),
    /// A row of this many values in `[0, 1]` (binary cross-entropy).
    Values(usize),
}

impl TargetForm {
    /// Floats per example.
    pub fn width(self) -> usize {
        match self {
            TargetForm::OneHot(k) | TargetForm::Values(k) => k,
            TargetForm::Index(_) => 1,
        }
    }
}

/// A source of training or test examples.
pub trait Examples: Sync {
    /// Number of examples.
    fn len(&self) -> usize;

    /// True when there are no examples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Shape of one input without the batch axis (`[28, 28, 1]`).
    fn input_shape(&self) -> Vec<usize>;

    /// Whether targets are available (`predict` needs none).
    fn has_targets(&self) -> bool;

    /// Copies the inputs of the examples at `indices` into `x`
    /// (`indices.len() * input_len` floats) and, if asked, their targets in
    /// `form` into `y` (`indices.len() * form.width()` floats).
    fn gather(&self, indices: &[usize], x: &mut [f32], y: Option<(&mut [f32], TargetForm)>) -> Result<()>;
}

/// In-memory inputs and optional targets (Keras's `x`, `y` arrays).
///
/// `x` is `[n, ...input_shape]`; `y` is `[n, classes]` (one-hot or
/// probabilities) or `[n]` / `[n, 1]` class indices (converted to one-hot
/// when the loss wants one-hot).
#[derive(Clone, Copy, Debug)]
pub struct XY<'a> {
    x: TensorView<'a>,
    y: Option<TensorView<'a>>,
}

impl<'a> XY<'a> {
    /// Inputs and targets; their first axes must agree.
    pub fn new(x: &'a Tensor, y: &'a Tensor) -> Result<Self> {
        if x.shape().batch() != y.shape().batch() {
            return Err(Error::Data(format!(
                "x has {} examples but y has {} (shapes {} and {})",
                x.shape().batch(),
                y.shape().batch(),
                x.shape(),
                y.shape()
            )));
        }
        if y.shape().rank() > 2 {
            return Err(Error::Data(format!("y must be [n, classes] or [n], got {}", y.shape())));
        }
        Ok(XY { x: x.view(), y: Some(y.view()) })
    }

    /// Inputs only (for `predict`).
    pub fn inputs(x: &'a Tensor) -> Self {
        XY { x: x.view(), y: None }
    }

    /// Inputs only, from a view.
    pub fn input_view(x: TensorView<'a>) -> Self {
        XY { x, y: None }
    }
}

fn class_index(v: f32, classes: usize) -> Result<usize> {
    if v >= 0.0 && v.fract() == 0.0 && (v as usize) < classes {
        Ok(v as usize)
    } else {
        Err(Error::Data(format!("label {v} is not a class index in 0..{classes}")))
    }
}

impl Examples for XY<'_> {
    fn len(&self) -> usize {
        self.x.shape().batch()
    }

    fn input_shape(&self) -> Vec<usize> {
        self.x.shape().dims()[1..].to_vec()
    }

    fn has_targets(&self) -> bool {
        self.y.is_some()
    }

    fn gather(&self, indices: &[usize], x: &mut [f32], y: Option<(&mut [f32], TargetForm)>) -> Result<()> {
        let item = self.x.shape().item_len();
        let data = self.x.data();
        for (dst, &i) in x.chunks_exact_mut(item).zip(indices) {
            dst.copy_from_slice(&data[i * item..(i + 1) * item]);
        }
        let Some((out, form)) = y else { return Ok(()) };
        let ys = self.y.ok_or_else(|| Error::Data("no targets given".into()))?;
        let width = ys.shape().item_len();
        let ydata = ys.data();
        let w = form.width();
        for (dst, &i) in out.chunks_exact_mut(w).zip(indices) {
            let src = &ydata[i * width..(i + 1) * width];
            match form {
                TargetForm::OneHot(k) | TargetForm::Values(k) if width == k => dst.copy_from_slice(src),
                TargetForm::OneHot(k) if width == 1 => {
                    dst.fill(0.0);
                    dst[class_index(src[0], k)?] = 1.0;
                }
                TargetForm::Index(k) if width == 1 => dst[0] = class_index(src[0], k)? as f32,
                _ => {
                    return Err(Error::Data(format!(
                        "targets have {width} values per example; the loss needs {}",
                        match form {
                            TargetForm::OneHot(k) => format!("{k} (one-hot) or 1 (class index)"),
                            TargetForm::Index(_) => "1 (a class index)".to_string(),
                            TargetForm::Values(k) => format!("{k}"),
                        }
                    )))
                }
            }
        }
        Ok(())
    }
}

impl Examples for Dataset {
    fn len(&self) -> usize {
        Dataset::len(self)
    }

    fn input_shape(&self) -> Vec<usize> {
        vec![self.rows(), self.cols(), 1]
    }

    fn has_targets(&self) -> bool {
        true
    }

    fn gather(&self, indices: &[usize], x: &mut [f32], y: Option<(&mut [f32], TargetForm)>) -> Result<()> {
        let item = self.pixels_per_image();
        let pixels = self.pixels();
        for (dst, &i) in x.chunks_exact_mut(item).zip(indices) {
            for (o, &b) in dst.iter_mut().zip(&pixels[i * item..(i + 1) * item]) {
                *o = f32::from(b) / 255.0;
            }
        }
        let Some((out, form)) = y else { return Ok(()) };
        let labels = self.labels();
        for (dst, &i) in out.chunks_exact_mut(form.width()).zip(indices) {
            let l = labels[i] as usize;
            match form {
                TargetForm::OneHot(k) | TargetForm::Values(k) if l < k => {
                    dst.fill(0.0);
                    dst[l] = 1.0;
                }
                TargetForm::Index(k) if l < k => dst[0] = l as f32,
                _ => return Err(Error::Data(format!("label {l} does not fit a model with {} outputs", form.width()))),
            }
        }
        Ok(())
    }
}

/// An image folder (`convnet_datasets::folder`): images as Keras's
/// `image_dataset_from_directory` gives them, f32 in 0-255 (a `Rescaling`
/// layer scales them), converted from the held bytes batch by batch; targets
/// from the class labels in the form the loss needs (one sigmoid output: the
/// label itself, 0 or 1, as Keras's `label_mode="binary"`).
impl Examples for ImageDataset {
    fn len(&self) -> usize {
        ImageDataset::len(self)
    }

    fn input_shape(&self) -> Vec<usize> {
        ImageDataset::input_shape(self).to_vec()
    }

    fn has_targets(&self) -> bool {
        self.labels().is_some()
    }

    fn gather(&self, indices: &[usize], x: &mut [f32], y: Option<(&mut [f32], TargetForm)>) -> Result<()> {
        self.gather_images(indices, None, x)?;
        let Some((out, form)) = y else { return Ok(()) };
        let labels = self.labels().ok_or_else(|| Error::Data("the image folder was read without labels".into()))?;
        for (dst, &i) in out.chunks_exact_mut(form.width()).zip(indices) {
            let l = labels[i] as usize;
            match form {
                TargetForm::Values(1) if l < 2 => dst[0] = l as f32,
                TargetForm::OneHot(k) | TargetForm::Values(k) if l < k => {
                    dst.fill(0.0);
                    dst[l] = 1.0;
                }
                TargetForm::Index(k) if l < k => dst[0] = l as f32,
                _ => {
                    return Err(Error::Data(format!(
                        "{}: class {l} ({}) does not fit a model with {} outputs",
                        self.file_paths()[i].display(),
                        self.class_names().get(l).map_or("?", String::as_str),
                        form.width()
                    )))
                }
            }
        }
        Ok(())
    }
}
