//! `convnet train`: any model the library can save, on MNIST-format data or
//! an image folder.
//!
//! Everything that can be wrong is checked before the first step: the output
//! paths (`--save`, `--metrics-json`, `--plot`), the model (`--model`), the
//! flags against the model and the data, the data itself (read and decoded
//! in full), the loss against the last layer and the classes against its
//! units.
//!
//! **Data.** `--data DIR` is read as MNIST-format data when it is a file
//! (`mnist.npz`), holds one of MNIST's file names, or has no subfolders;
//! as the book's layout when it has a `train/` subfolder (`validation/` and
//! `test/` beside it are used when present); else as one folder of class
//! folders, split with `--validation-split F` by `--seed` exactly as Keras
//! splits it.
//!
//! **Input scaling.** MNIST-format data reaches the model as `pixel / 255`
//! (as today); image folders as Keras's `image_dataset_from_directory` gives
//! them, 0-255. `--rescale F` puts a `Rescaling(F)` layer in front of the
//! model, so the scaling is part of the saved model and `eval`/`predict`
//! apply it without being told. The saved model also records the class
//! names and the pixel scale of its data (docs/MODEL_FILES.md).

use super::distributed::Session;
use super::models::{self, ModelSpec};
use super::{set_threads, CliResult, DataArg, UsageError};
use clap::Args;
use convnet::limits::Limits;
use convnet::optimizers::{Adam, RMSprop, Sgd};
use convnet::weights::LoadOptions;
use convnet::{
    Activation, Examples, FitOptions, Loss, Metric, Model, OnBatchEnd, Rescaling, Sequential, Verbose, CLASS_NAMES_KEY,
    PIXEL_SCALE_KEY,
};
use convnet_datasets::folder::{self, ColorMode, FolderOptions, ImageDataset};
use convnet_datasets::Dataset;
use convnet_kernels::conv::ConvAlgo;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The pixel scale MNIST-format data is fed with (`x / 255`), as the
/// metadata records it.
pub const MNIST_PIXEL_SCALE: f64 = 1.0 / 255.0;

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// The model: a built-in (mnist, small-data, vgg16), an architecture JSON file, or a model file
    /// (safetensors from --save, Keras .keras/.h5) whose training continues.
    #[arg(long, value_name = "FILE|NAME", default_value = "mnist")]
    model: String,
    #[command(flatten)]
    data: DataArg,
    /// Passes over the training set.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    epochs: u64,
    /// Examples per gradient step.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    batch_size: u64,
    /// Seed of the initial weights, the shuffles and the validation split: the same seed gives
    /// bit-identical runs.
    #[arg(long, default_value_t = convnet::DEFAULT_SEED)]
    seed: u64,
    /// Worker threads (default: one per core; capped at two per core).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    threads: Option<u64>,
    /// Convolution algorithm: auto, direct, im2col, winograd (F(4x4,3x3)), winograd_f2, reference.
    /// The forward pass runs exactly this algorithm; the backward passes use it where it can run
    /// both of them, else auto.
    #[arg(long, default_value = "auto", value_parser = super::parse_algo)]
    algo: ConvAlgo,
    /// Train on the first N training examples and test on the first N test examples.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    limit: Option<u64>,
    /// Save the trained model (architecture, weights, class names; safetensors) to FILE.
    #[arg(long, value_name = "FILE")]
    save: Option<PathBuf>,
    /// Write per-epoch loss, accuracy and seconds and the test loss/accuracy as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    metrics_json: Option<PathBuf>,
    /// Draw the training curves (accuracy and loss, training and validation, per epoch) as a PNG.
    #[arg(long, value_name = "FILE.png")]
    plot: Option<PathBuf>,
    /// No summary and no progress bar; only the test result.
    #[arg(long)]
    quiet: bool,
    /// Split each batch into this many shards of examples, one per worker (default 2; 1: one tape,
    /// every kernel call split over the threads); results do not depend on the thread count.
    #[arg(long, default_value_t = convnet::DEFAULT_SHARDS as u64, value_parser = clap::value_parser!(u64).range(1..=1024))]
    shards: u64,
    #[command(flatten)]
    profile: super::profile::ProfileArgs,
    /// The loss (default from the last layer: one sigmoid unit binary_crossentropy, else
    /// categorical_crossentropy).
    #[arg(long, value_parser = ["binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy"])]
    loss: Option<String>,
    /// The optimizer (Keras's defaults; --learning-rate sets its rate).
    #[arg(long, default_value = "rmsprop", value_parser = ["rmsprop", "adam", "sgd"])]
    optimizer: String,
    /// Learning rate (default: the optimizer's Keras default, 0.001 for rmsprop and adam, 0.01 for sgd).
    #[arg(long, value_name = "F", value_parser = parse_positive)]
    learning_rate: Option<f64>,
    /// Fraction of the examples held out for validation: of an image folder, split by --seed as
    /// Keras's image_dataset_from_directory splits it; of MNIST-format data, the last ones, as
    /// Keras's fit(validation_split=F).
    #[arg(long, value_name = "F", value_parser = parse_fraction)]
    validation_split: Option<f64>,
    /// Image folders: resize every image to H,W (default: the model's input size).
    #[arg(long, value_name = "H,W", value_parser = parse_size)]
    image_size: Option<[usize; 2]>,
    /// Image folders: grayscale, rgb or rgba (default: from the model's input channels, 1, 3 or 4).
    #[arg(long, value_parser = ["grayscale", "rgb", "rgba"])]
    color_mode: Option<String>,
    /// Multiply the 0-255 pixels by F inside the model (a leading Rescaling layer, saved with it):
    /// the book's rescale=1./255 is --rescale 1/255.
    #[arg(long, value_name = "F", value_parser = parse_scale)]
    rescale: Option<f64>,
    /// Image folders: keep the decoded images in a cache file in DIR, so the next run with the
    /// same folder and settings decodes nothing.
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Start from these weights (safetensors, Keras .weights.h5, legacy .h5, .keras): for the whole
    /// model, or for its convolutional base (the layers before its first Flatten or global pooling,
    /// such as the VGG16 notop file below the book's classifier); the other layers keep their
    /// initial weights.
    #[arg(long, value_name = "FILE")]
    weights: Option<PathBuf>,
    /// Freeze every layer before LAYER (the book's fine-tuning: block5_conv1); frozen layers cost
    /// a forward pass only and keep their weights bit for bit.
    #[arg(long, value_name = "LAYER")]
    trainable_from: Option<String>,
    #[command(flatten)]
    dist: super::distributed::DistributedArgs,
}

fn parse_positive(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("expected a positive number, got {s:?}")),
    }
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v > 0.0 && v < 1.0 => Ok(v),
        _ => Err(format!("expected a fraction strictly between 0 and 1, got {s:?}")),
    }
}

/// `0.5`, `1/255`, `1e-3`: a finite, nonzero number or a quotient of two.
pub fn parse_scale(s: &str) -> Result<f64, String> {
    let num = |t: &str| t.trim().parse::<f64>().ok().filter(|v| v.is_finite());
    let v = match s.split_once('/') {
        Some((a, b)) => num(a).zip(num(b)).filter(|&(_, b)| b != 0.0).map(|(a, b)| a / b),
        None => num(s),
    };
    match v {
        Some(v) if v.is_finite() && v != 0.0 => Ok(v),
        _ => Err(format!("expected a nonzero number such as 0.5 or 1/255, got {s:?}")),
    }
}

/// `H,W` with both positive.
pub fn parse_size(s: &str) -> Result<[usize; 2], String> {
    let v: Vec<usize> = s.split(',').filter_map(|p| p.trim().parse::<usize>().ok()).collect();
    match v[..] {
        [h, w] if h > 0 && w > 0 && s.split(',').count() == 2 => Ok([h, w]),
        _ => Err(format!("expected two positive integers H,W, got {s:?}")),
    }
}

fn color_mode_of(channels: usize) -> Option<ColorMode> {
    match channels {
        1 => Some(ColorMode::Grayscale),
        3 => Some(ColorMode::Rgb),
        4 => Some(ColorMode::Rgba),
        _ => None,
    }
}

/// The shape of `--data`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataKind {
    /// MNIST-format files or `mnist.npz`.
    Mnist,
    /// `train/` (+ `validation/`, `test/`), each holding class folders.
    Book,
    /// One folder of class folders.
    Folder,
}

/// How `--data DIR` is read (see the module doc).
pub fn data_kind(dir: &Path) -> DataKind {
    let Ok(entries) = std::fs::read_dir(dir) else { return DataKind::Mnist };
    let mut has_subdir = false;
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        let base = name.strip_suffix(".gz").unwrap_or(&name);
        if convnet_datasets::FILES.contains(&base) || name == convnet_datasets::NPZ_NAME {
            return DataKind::Mnist;
        }
        has_subdir |= e.path().is_dir();
    }
    if dir.join("train").is_dir() {
        DataKind::Book
    } else if has_subdir {
        DataKind::Folder
    } else {
        DataKind::Mnist
    }
}

/// The data of a run, whichever form it came in (one per run: the size
/// difference of the variants does not matter).
#[allow(clippy::large_enum_variant)]
enum TrainData {
    Mnist { train: Dataset, validation_split: f64, test: Dataset },
    Images { train: ImageDataset, validation: Option<ImageDataset>, test: Option<ImageDataset> },
}

impl TrainData {
    fn train(&self) -> &dyn Examples {
        match self {
            TrainData::Mnist { train, .. } => train,
            TrainData::Images { train, .. } => train,
        }
    }
    fn validation(&self) -> Option<&dyn Examples> {
        match self {
            TrainData::Mnist { .. } => None,
            TrainData::Images { validation, .. } => validation.as_ref().map(|v| v as &dyn Examples),
        }
    }
    fn test(&self) -> Option<&dyn Examples> {
        match self {
            TrainData::Mnist { test, .. } => Some(test),
            TrainData::Images { test, .. } => test.as_ref().map(|v| v as &dyn Examples),
        }
    }
    fn class_names(&self) -> Vec<String> {
        match self {
            TrainData::Mnist { .. } => (0..10).map(|d| d.to_string()).collect(),
            TrainData::Images { train, .. } => train.class_names().to_vec(),
        }
    }
}

/// The checked plan of a run: model definition or file, data options.
fn load_data(a: &TrainArgs, kind: DataKind, image_size: (usize, usize), mode: ColorMode) -> CliResult<TrainData> {
    let limit = a.limit.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    let cut_mnist = |d: Dataset| match limit {
        Some(n) => d.take(n),
        None => d,
    };
    let cut = |d: ImageDataset| match limit {
        Some(n) => d.take(n),
        None => d,
    };
    if kind == DataKind::Mnist {
        let mnist = super::load_mnist(&a.data)?;
        return Ok(TrainData::Mnist {
            train: cut_mnist(mnist.train),
            validation_split: a.validation_split.unwrap_or(0.0),
            test: cut_mnist(mnist.test),
        });
    }
    let dir = a.data.data.as_ref().expect("image folders come from --data");
    let opts = FolderOptions {
        image_size,
        color_mode: mode,
        seed: Some(a.seed),
        validation_split: a.validation_split,
        cache_dir: a.cache_dir.clone(),
        ..FolderOptions::default()
    };
    Ok(match kind {
        DataKind::Book => {
            let s = folder::load_train_validation_test(dir, &opts)?;
            TrainData::Images { train: cut(s.train), validation: s.validation.map(cut), test: s.test.map(cut) }
        }
        _ if a.validation_split.is_some() => {
            let (train, val) = folder::load_both(dir, &opts)?;
            TrainData::Images { train: cut(train), validation: Some(cut(val)), test: None }
        }
        _ => TrainData::Images { train: cut(folder::load(dir, &opts)?), validation: None, test: None },
    })
}

/// The loss for `--loss`, or the last layer's natural one.
fn choose_loss(flag: Option<&str>, model: &Model) -> CliResult<Loss> {
    Ok(match flag {
        Some("binary_crossentropy") => Loss::BinaryCrossentropy,
        Some("categorical_crossentropy") => Loss::CategoricalCrossentropy,
        Some("sparse_categorical_crossentropy") => Loss::SparseCategoricalCrossentropy,
        Some(other) => return Err(UsageError(format!("unknown loss {other:?}")).into()),
        None => {
            let last = &model.layers()[model.layers().len() - 1];
            match (last.layer.activation(), model.output_shape()) {
                (Activation::Sigmoid, _) => Loss::BinaryCrossentropy,
                (Activation::Softmax | Activation::Linear, _) => Loss::CategoricalCrossentropy,
                (other, _) => {
                    return Err(format!(
                        "the model's last layer ({}) ends in {}: no default loss; pass --loss",
                        last.name,
                        other.name()
                    )
                    .into())
                }
            }
        }
    })
}

fn compile(model: &mut Model, a: &TrainArgs, loss: Loss) -> CliResult<()> {
    let lr = a.learning_rate.map(|v| v as f32);
    let metrics = &[Metric::Accuracy];
    match a.optimizer.as_str() {
        "rmsprop" => model.compile(lr.map_or_else(RMSprop::default, RMSprop::new), loss, metrics)?,
        "adam" => model.compile(lr.map_or_else(Adam::default, Adam::new), loss, metrics)?,
        "sgd" => model.compile(lr.map_or_else(Sgd::default, Sgd::new), loss, metrics)?,
        other => return Err(UsageError(format!("unknown optimizer {other:?}")).into()),
    }
    Ok(())
}

pub fn run(mut a: TrainArgs, started: Instant, limits: Limits) -> CliResult<()> {
    let Some(mut session) = Session::start(&a.dist)? else { return train(a, started, limits, None) };
    if session.rank() != 0 {
        // Rank 0 reports and writes; the others train silently.
        (a.save, a.metrics_json, a.plot, a.quiet) = (None, None, None, true);
        a.profile = Default::default();
    }
    let result = train(a, started, limits, Some(&mut session));
    session.finish(result)
}

fn train(a: TrainArgs, started: Instant, limits: Limits, mut session: Option<&mut Session>) -> CliResult<()> {
    // Output paths first: a run whose result cannot be saved does not start.
    let outputs = [
        ("--save", &a.save),
        ("--metrics-json", &a.metrics_json),
        ("--plot", &a.plot),
        ("--profile-json", &a.profile.profile_json),
    ];
    for (i, (f1, p1)) in outputs.iter().enumerate() {
        for (f2, p2) in &outputs[i + 1..] {
            if let (Some(p1), Some(p2)) = (p1, p2) {
                if p1 == p2 {
                    return Err(UsageError(format!("{f1} and {f2} both name {}", p1.display())).into());
                }
            }
        }
    }
    for (flag, path) in outputs {
        if let Some(p) = path {
            convnet::files::check_writable(p).map_err(|e| format!("{flag}: {e}"))?;
        }
    }
    let load_opts = LoadOptions { limits, allow_non_finite: false };
    let spec = models::resolve(&a.model, &load_opts)?;
    let kind = match &a.data.data {
        Some(dir) => data_kind(dir),
        None => DataKind::Mnist,
    };
    // The model's input shape, from the flags, the data and the model.
    let declared = spec.input_shape();
    let trained = matches!(spec, ModelSpec::Trained { .. });
    if kind == DataKind::Mnist {
        for (flag, given) in [
            ("--image-size", a.image_size.is_some()),
            ("--color-mode", a.color_mode.is_some()),
            ("--rescale", a.rescale.is_some()),
            ("--cache-dir", a.cache_dir.is_some()),
        ] {
            if given {
                return Err(UsageError(format!(
                    "{flag} applies to image folders; MNIST-format data is 28x28 grey, scaled to [0, 1] as it is read"
                ))
                .into());
            }
        }
    }
    if trained && a.rescale.is_some() {
        return Err(UsageError(format!(
            "--rescale builds a Rescaling layer into a new model; {} is already trained with its own input scaling",
            a.model
        ))
        .into());
    }
    if kind == DataKind::Book && a.validation_split.is_some() {
        return Err(UsageError(
            "--validation-split splits one folder of class folders; this --data has train/ (and validation/ is \
             the validation set)"
                .into(),
        )
        .into());
    }
    let (input, image_size, mode) = if kind == DataKind::Mnist {
        (Some([28, 28, 1]), (28, 28), ColorMode::Grayscale)
    } else {
        let (dh, dw, dc) = match declared.as_deref() {
            Some(&[h, w, c]) => (Some(h), Some(w), Some(c)),
            Some(other) => {
                return Err(
                    format!("the model takes inputs of shape {other:?}, not images (height, width, channels)").into()
                )
            }
            None => (None, None, None),
        };
        let mode = match (&a.color_mode, dc) {
            (Some(m), _) => m.parse::<ColorMode>()?,
            (None, Some(c)) => color_mode_of(c).ok_or_else(|| {
                format!("the model takes {c} channels; images have 1 (grayscale), 3 (rgb) or 4 (rgba)")
            })?,
            (None, None) => ColorMode::Rgb,
        };
        let size = match (a.image_size, dh.zip(dw)) {
            (Some([h, w]), _) => (h, w),
            (None, Some(hw)) => hw,
            (None, None) => (256, 256),
        };
        (Some([size.0, size.1, mode.channels()]), size, mode)
    };
    // The model: a definition gets the --rescale layer and the input shape.
    let spec = match (spec, a.rescale) {
        (ModelSpec::Definition { seq, vgg16: false, origin }, Some(f)) => {
            let mut layers = vec![Rescaling::new(f as f32, 0.0).into()];
            layers.extend(seq.layers);
            ModelSpec::Definition { seq: Sequential { layers, ..seq }, vgg16: false, origin }
        }
        (ModelSpec::Definition { vgg16: true, .. }, Some(_)) => {
            return Err(UsageError("--rescale does not apply to vgg16 (it expects caffe-style inputs)".into()).into())
        }
        (s, _) => s,
    };
    let mut model = spec.build(input, a.seed, &load_opts)?;
    model.set_conv_algo(a.algo);
    if let Some(path) = &a.weights {
        super::finetune::load_weights(&mut model, path, &load_opts)?;
    }
    if let Some(name) = &a.trainable_from {
        super::finetune::trainable_from(&mut model, name)?;
    }
    let loss = choose_loss(a.loss.as_deref(), &model)?;
    compile(&mut model, &a, loss)?;
    set_threads(a.threads)?;
    let data = load_data(&a, kind, image_size, mode)?;
    let source = a.data.data.as_ref().map_or("the default MNIST copy".to_string(), |d| d.display().to_string());
    if data.train().is_empty() {
        return Err(format!("{source}: the training set is empty").into());
    }
    if let TrainData::Mnist { test, .. } = &data {
        if test.is_empty() {
            return Err(format!("{source}: the test set is empty: nothing to evaluate the trained model on").into());
        }
    }
    // The classes must fit the last layer.
    let classes = data.class_names();
    let units = model.output_shape().iter().product::<usize>();
    let fits = if loss == Loss::BinaryCrossentropy && units == 1 { classes.len() == 2 } else { classes.len() <= units };
    if !fits {
        return Err(format!(
            "{source}: {} classes ({}) but the model's last layer has {units} unit{} ({}; {} classes need {})",
            classes.len(),
            shorten(&classes),
            if units == 1 { "" } else { "s" },
            loss.name(),
            classes.len(),
            if classes.len() == 2 {
                "1 sigmoid unit or 2 softmax units".to_string()
            } else {
                format!("{} units", classes.len())
            }
        )
        .into());
    }
    if kind != DataKind::Mnist && a.rescale.is_none() && !starts_with_rescaling(&model) && !a.quiet {
        eprintln!(
            "note: the images reach the model as 0-255 (no --rescale, and the model has no Rescaling layer); the \
             book scales them with --rescale 1/255"
        );
    }
    model.set_metadata(CLASS_NAMES_KEY, serde_json::to_string(&classes)?)?;
    let pixel_scale = if kind == DataKind::Mnist { MNIST_PIXEL_SCALE } else { 1.0 };
    model.set_metadata(PIXEL_SCALE_KEY, format!("{pixel_scale}"))?;
    if !a.quiet {
        print!("{}", model.summary());
    }
    if let Some(s) = session.as_deref_mut() {
        s.ready()?;
    }
    let startup = started.elapsed().as_secs_f64();
    let mut first_batch: Option<f64> = None;
    let options = FitOptions {
        epochs: a.epochs as usize,
        batch_size: a.batch_size as usize,
        shuffle: true,
        seed: a.seed,
        validation_split: match &data {
            TrainData::Mnist { validation_split, .. } => *validation_split,
            TrainData::Images { .. } => 0.0,
        },
        validation_data: data.validation(),
        verbose: if a.quiet { Verbose::Silent } else { Verbose::Auto },
        callbacks: vec![Box::new(OnBatchEnd(|_: &convnet::BatchLogs| {
            first_batch.get_or_insert_with(|| started.elapsed().as_secs_f64());
            convnet::Control::Continue
        }))],
        distributed: session.as_deref_mut().and_then(Session::group),
        profile: a.profile.enabled(),
        shards: a.shards as usize,
        ..FitOptions::default()
    };
    let fit_started = Instant::now();
    let history = model.fit_examples(data.train(), options)?;
    let fit_seconds = fit_started.elapsed().as_secs_f64();
    let mut distributed = None;
    if let Some(s) = session {
        s.check_same_weights(&model)?;
        if s.rank() != 0 {
            return Ok(());
        }
        let (median, wait, steps, bytes) = s.sum_stats();
        if !a.quiet {
            let waited = match wait {
                Some(w) => format!(" (after {:.3} ms waiting for the slowest rank)", w * 1e3),
                None => String::new(),
            };
            println!(
                "distributed: {} ranks, identical weights; gradient sum of {bytes} bytes per step: median {:.3} ms{waited} \
                 over {steps} steps",
                s.size(),
                median * 1e3,
            );
        }
        distributed = Some(serde_json::json!({
            "world_size": s.size(), "sum_median_seconds": median, "sum_wait_median_seconds": wait,
            "sum_steps": steps, "sum_bytes_per_step": bytes,
        }));
    }
    // Save the trained model before anything else can fail.
    if let Some(path) = &a.save {
        model.save(path)?;
    }
    if let Some(path) = &a.plot {
        history.plot(path).map_err(|e| format!("--plot: {e}"))?;
    }
    let eval_started = Instant::now();
    let test = match data.test() {
        Some(t) if !t.is_empty() => {
            let (l, acc) = model.evaluate_examples(t, 64)?;
            println!("test loss: {l:.4}");
            println!("test accuracy: {acc:.4}");
            Some((l, acc, t.len()))
        }
        _ => {
            if let Some(last) = history.epochs.last().filter(|e| e.val_loss.is_some()) {
                println!("validation loss: {:.4}", last.val_loss.unwrap_or(f64::NAN));
                println!("validation accuracy: {:.4}", last.val_accuracy.unwrap_or(f64::NAN));
            }
            None
        }
    };
    let eval_seconds = eval_started.elapsed().as_secs_f64();
    if let Some(path) = &a.metrics_json {
        let epochs: Vec<serde_json::Value> = history
            .epochs
            .iter()
            .map(|e| {
                let mut v = serde_json::json!({
                    "epoch": e.epoch, "loss": e.loss, "accuracy": e.accuracy, "seconds": e.seconds,
                });
                if let Some(vl) = e.val_loss {
                    v["val_loss"] = vl.into();
                    v["val_accuracy"] = e.val_accuracy.into();
                }
                v
            })
            .collect();
        let mut json = serde_json::json!({
            "epochs": epochs,
            "train_examples": data.train().len(),
            "batch_size": a.batch_size,
            "seed": a.seed,
            "threads": rayon::current_num_threads(),
            "simd": convnet_kernels::simd::try_level()?.name(),
            "algo": a.algo.name(),
            "loss_function": loss.name(),
            "optimizer": a.optimizer,
            "class_names": classes,
            "startup_seconds": startup,
            "first_batch_end_seconds": first_batch,
            "fit_seconds": fit_seconds,
            "weights_fnv1a64": format!("{:016x}", super::weights_hash(&model)),
        });
        if let Some(d) = distributed {
            json["distributed"] = d;
        }
        if let Some((l, acc, n)) = test {
            json["test_loss"] = l.into();
            json["test_accuracy"] = acc.into();
            json["test_examples"] = n.into();
            json["evaluate_seconds"] = eval_seconds.into();
            json["evaluate_images_per_second"] = (n as f64 / eval_seconds).into();
        }
        let mut text = serde_json::to_string_pretty(&json)?;
        text.push('\n');
        convnet::weights::write_atomic(path, text.as_bytes())?;
    }
    a.profile.emit(history.profile.as_ref(), true)?;
    Ok(())
}

fn starts_with_rescaling(model: &Model) -> bool {
    matches!(model.layers().first().map(|l| &l.layer), Some(convnet::Layer::Rescaling(_)))
}

/// `a, b, c, d, e, ...` (at most five names).
fn shorten(names: &[String]) -> String {
    let mut s = names.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > 5 {
        s.push_str(", ...");
    }
    s
}
