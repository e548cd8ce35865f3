//! `convnet eval`: a saved model's loss and accuracy on test data.
//!
//! The data is read as `train` reads it (see `train.rs`): MNIST-format data
//! gives its test set; the book's layout its `test/` folder (else
//! `validation/`); one folder of class folders is evaluated whole. Image
//! folders are read at the model's input size and channels, with the class
//! names the model's file records (so label `k` means what it meant in
//! training), and scaled as the model's training data was
//! (`convnet.pixel_scale`, see `predict.rs`).

use super::train::{data_kind, DataKind, MNIST_PIXEL_SCALE};
use super::{load_mnist, predict, set_threads, CliResult, DataArg};
use convnet::limits::{Limits, INFERENCE_BATCH_BYTES};
use convnet::optimizers::RMSprop;
use convnet::weights::LoadOptions;
use convnet::{Activation, Examples, Loss, Metric, TargetForm, CLASS_NAMES_KEY};
use convnet_datasets::folder::{self, ColorMode, FolderOptions};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// A model file: written by `train --save`, or a Keras `.keras` / legacy `.h5` model.
    #[arg(long, value_name = "FILE", required_unless_present = "weights")]
    model: Option<String>,
    /// Weights: alone, a file as --model takes (a weights-only safetensors file is the chapter's
    /// MNIST model); with --model, weights loaded into that model (safetensors, Keras .weights.h5 or
    /// legacy .h5).
    #[arg(long, value_name = "FILE")]
    weights: Option<PathBuf>,
    #[command(flatten)]
    data: DataArg,
    /// Worker threads (default: one per core; capped at two per core).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    threads: Option<u64>,
    /// Load weights even if some are NaN or infinite (refused by default).
    #[arg(long)]
    allow_non_finite: bool,
}

/// Examples whose inputs are multiplied by a factor as they are gathered.
struct Scaled<'a>(&'a dyn Examples, f32);

impl Examples for Scaled<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn input_shape(&self) -> Vec<usize> {
        self.0.input_shape()
    }
    fn has_targets(&self) -> bool {
        self.0.has_targets()
    }
    fn gather(&self, indices: &[usize], x: &mut [f32], y: Option<(&mut [f32], TargetForm)>) -> convnet::Result<()> {
        self.0.gather(indices, x, y)?;
        for v in x.iter_mut() {
            *v *= self.1;
        }
        Ok(())
    }
}

pub fn run(a: EvalArgs, limits: Limits) -> CliResult<()> {
    set_threads(a.threads)?;
    let opts = LoadOptions { limits, allow_non_finite: a.allow_non_finite };
    // The model first: a bad file is reported without reading the data.
    let mut model = predict::model_of(a.model.as_deref(), a.weights.as_deref(), &opts)?;
    let last = model.layers()[model.layers().len() - 1].layer.activation();
    let loss = if last == Activation::Sigmoid { Loss::BinaryCrossentropy } else { Loss::CategoricalCrossentropy };
    model.compile(RMSprop::default(), loss, &[Metric::Accuracy])?;
    let model_scale = f64::from(predict::pixel_scale(&model)?);
    let kind = a.data.data.as_deref().map_or(DataKind::Mnist, data_kind);
    let (data, data_scale): (Box<dyn Examples>, f64) = if kind == DataKind::Mnist {
        (Box::new(load_mnist(&a.data)?.test), MNIST_PIXEL_SCALE)
    } else {
        let dir = a.data.data.clone().expect("image folders come from --data");
        let (h, w, mode) = match model.input_shape() {
            &[h, w, 1] => (h, w, ColorMode::Grayscale),
            &[h, w, 3] => (h, w, ColorMode::Rgb),
            &[h, w, 4] => (h, w, ColorMode::Rgba),
            other => return Err(format!("the model takes {other:?}, not images with 1, 3 or 4 channels").into()),
        };
        let class_names = match model.metadata(CLASS_NAMES_KEY) {
            Some(_) => Some(predict::class_names(&model, model.output_shape().iter().product())?),
            None => None,
        };
        let fo = FolderOptions {
            image_size: (h, w),
            color_mode: mode,
            class_names,
            shuffle: false,
            ..FolderOptions::default()
        };
        let set = if kind == DataKind::Book {
            let sub = ["test", "validation"].into_iter().map(|s| dir.join(s)).find(|d| d.is_dir());
            let sub = sub.ok_or_else(|| format!("{}: no test/ or validation/ folder to evaluate on", dir.display()))?;
            folder::load(sub, &fo)?
        } else {
            folder::load(&dir, &fo)?
        };
        (Box::new(set), 1.0)
    };
    if data.is_empty() {
        return Err("the test set is empty: nothing to evaluate".into());
    }
    let factor = (model_scale / data_scale) as f32;
    let scaled = Scaled(data.as_ref(), factor);
    let examples: &dyn Examples = if factor == 1.0 { data.as_ref() } else { &scaled };
    let batch = model.inference_batch(64, INFERENCE_BATCH_BYTES);
    let (loss, acc) = model.evaluate_examples(examples, batch)?;
    println!("test loss: {loss:.4}");
    println!("test accuracy: {acc:.4}");
    Ok(())
}
