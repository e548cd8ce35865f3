//! Command-line definitions (clap) and dispatch.

mod bench;
mod predict;

use clap::{Args, Parser, Subcommand};
use convnet::applications::vgg16::Vgg16;
use convnet::limits::{Limits, INFERENCE_BATCH_BYTES, MAX_THREADS_PER_CORE};
use convnet::weights::LoadOptions;
use convnet::{mnist_convnet, FitOptions, Loss, Metric, Model, OnBatchEnd, Verbose};
use convnet_datasets::Mnist;
use convnet_kernels::conv::ConvAlgo;
use convnet_optim::RMSprop;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub type CliResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// An error in how the command was invoked (exit code 2, as clap's own):
/// options that contradict each other, a malformed `CONVNET_MAX_*` variable.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Train, evaluate and run the Keras chapter-5 convnet on MNIST, on
/// hand-optimised CPU kernels.
#[derive(Parser, Debug)]
#[command(name = "convnet", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print a model's summary table (Keras format): the chapter's model by default.
    Summary(SummaryArgs),
    /// Train the chapter's model on MNIST (5 epochs, batch 64, RMSprop) and print the test accuracy.
    Train(TrainArgs),
    /// Evaluate saved weights on the MNIST test set.
    Eval(EvalArgs),
    /// Classify digit images (PNG or PGM, grey; resized to 28x28). MNIST digits are
    /// white on black: pass --invert for black-on-white drawings.
    Predict(PredictArgs),
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
}

#[derive(Args, Debug)]
struct SummaryArgs {
    /// A built-in model (`mnist`, the chapter's; `vgg16`, VGG16's convolutional base at 150x150x3 as
    /// the chapter uses it), or a model file: Keras `.keras` or legacy `.h5`, or a whole-model
    /// safetensors file written by `train --save`.
    #[arg(long, value_name = "FILE|NAME", default_value = "mnist")]
    model: String,
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// Time the kernels crate's convolution algorithms on one shape.
    Conv(bench::ConvArgs),
}

#[derive(Args, Debug)]
struct DataArg {
    /// Directory with the four MNIST files (raw or .gz) or mnist.npz; default: $CONVNET_DATA, then
    /// data/mnist (verified against MNIST's digests).
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct TrainArgs {
    #[command(flatten)]
    data: DataArg,
    /// Passes over the training set.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    epochs: u64,
    /// Examples per gradient step.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    batch_size: u64,
    /// Seed of the initial weights and the shuffles: the same seed gives bit-identical runs.
    #[arg(long, default_value_t = convnet::DEFAULT_SEED)]
    seed: u64,
    /// Worker threads (default: one per core; capped at two per core).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    threads: Option<u64>,
    /// Convolution algorithm: auto, direct, im2col, winograd (F(4x4,3x3)), winograd_f2, reference.
    /// The forward pass runs exactly this algorithm; the backward passes use it where it can run
    /// both of them, else auto.
    #[arg(long, default_value = "auto", value_parser = parse_algo)]
    algo: ConvAlgo,
    /// Train on the first N training examples and test on the first N test examples.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    limit: Option<u64>,
    /// Save the trained model (architecture and weights, safetensors) to FILE.
    #[arg(long, value_name = "FILE")]
    save: Option<PathBuf>,
    /// Write per-epoch loss, accuracy and seconds and the test loss/accuracy as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    metrics_json: Option<PathBuf>,
    /// No summary and no progress bar; only the test result.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args, Debug)]
struct EvalArgs {
    /// A file written by `train --save` (or by save_weights), or a Keras `.keras` / legacy `.h5` model.
    #[arg(long, value_name = "FILE")]
    weights: PathBuf,
    #[command(flatten)]
    data: DataArg,
    /// Worker threads (default: one per core; capped at two per core).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    threads: Option<u64>,
    /// Load weights even if some are NaN or infinite (refused by default).
    #[arg(long)]
    allow_non_finite: bool,
}

#[derive(Args, Debug)]
struct PredictArgs {
    /// A file written by `train --save` (or by save_weights), or a Keras `.keras` / legacy `.h5` model.
    #[arg(long, value_name = "FILE")]
    weights: PathBuf,
    /// Invert the grey levels first (for dark digits on a light background).
    #[arg(long)]
    invert: bool,
    /// Load weights even if some are NaN or infinite (refused by default).
    #[arg(long)]
    allow_non_finite: bool,
    /// Images to classify.
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<PathBuf>,
}

pub(crate) fn parse_algo(s: &str) -> Result<ConvAlgo, String> {
    s.parse::<ConvAlgo>().map_err(|_| {
        format!(
            "unknown algorithm {s:?} (expected auto, direct, im2col, winograd, winograd_f2, winograd_f4, reference)"
        )
    })
}

/// Builds the global rayon pool with `--threads` workers (default: one per
/// core, or `RAYON_NUM_THREADS`), the main thread being one of them
/// (`use_current_thread`): the training loop then drives the kernels from
/// inside the pool, so a parallel kernel call is pushed onto the main
/// thread's own deque instead of being injected from outside and waited for
/// on a latch (measured 5-6% of a training step on the chapter's model, see
/// docs/BENCHMARKS.md). A request above [`MAX_THREADS_PER_CORE`] threads per
/// core is capped, with a note: results do not depend on the thread count,
/// and oversubscribed pools only lose time (1024 threads on 2 cores ran a
/// training step 260x slower).
fn set_threads(threads: Option<u64>) -> CliResult<()> {
    let mut builder = rayon::ThreadPoolBuilder::new().use_current_thread();
    let from_env =
        || std::env::var("RAYON_NUM_THREADS").ok().and_then(|v| v.trim().parse::<u64>().ok()).filter(|&n| n > 0);
    let (requested, source) = match threads {
        Some(n) => (Some(n), "--threads"),
        None => (from_env(), "RAYON_NUM_THREADS"),
    };
    if let Some(n) = requested {
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        let (use_n, capped) = convnet::limits::cap_threads(usize::try_from(n).unwrap_or(usize::MAX), cores);
        if capped {
            eprintln!(
                "note: {source} {n} capped to {use_n} threads ({MAX_THREADS_PER_CORE} per core on {cores} cores): \
                 more threads than that only slow the kernels down"
            );
        }
        builder = builder.num_threads(use_n);
    }
    builder.build_global().map_err(|e| match threads {
        Some(n) => format!("--threads {n}: {e}"),
        None => format!("thread pool: {e}"),
    })?;
    Ok(())
}

fn load_mnist(data: &DataArg) -> CliResult<Mnist> {
    Ok(match &data.data {
        Some(dir) => Mnist::load(dir)?,
        None => Mnist::load_default()?,
    })
}

/// A Keras model file: a `.keras` archive (zip) or a legacy `.h5` model (HDF5).
fn is_keras_file(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"\x89HDF\r\n\x1a\n")
}

/// A model file's model: the architecture stored in it (a whole-model
/// safetensors file, a Keras `.keras` archive or legacy `.h5` model), or the
/// chapter's model for a safetensors weights-only file. The file is read once, bounded.
fn load_model(path: &Path, opts: &LoadOptions) -> CliResult<Model> {
    let named = |e: convnet::Error| match e {
        convnet::Error::WeightsFile { reason, .. } => {
            convnet::Error::WeightsFile { path: path.display().to_string(), reason }
        }
        other => other,
    };
    let bytes = convnet::files::read_regular_file(path, opts.limits.max_file_bytes)?;
    if is_keras_file(&bytes) {
        let limits =
            convnet::keras::Limits { max_file_bytes: opts.limits.max_file_bytes, max_params: opts.limits.max_params };
        return Ok(convnet::keras::model_from_bytes(bytes, &limits).map_err(named)?);
    }
    Ok(match convnet::weights::architecture_of(&bytes).map_err(named)? {
        Some(_) => Model::load_bytes_with(&bytes, opts).map_err(named)?,
        None => {
            let mut m = mnist_convnet().build()?;
            m.load_weights_bytes_with(&bytes, opts).map_err(named)?;
            m
        }
    })
}

pub fn run(cli: Cli, started: Instant) -> CliResult<()> {
    convnet_kernels::simd::try_level()?;
    let limits = Limits::from_env().map_err(|e| UsageError(e.to_string()))?;
    match cli.command {
        Command::Summary(a) => {
            let model = match a.model.as_str() {
                "mnist" => mnist_convnet().build()?,
                "vgg16" => Vgg16::new().include_top(false).input_shape((150, 150, 3)).build()?,
                file => load_model(Path::new(file), &LoadOptions { limits, allow_non_finite: true })?,
            };
            print!("{}", model.summary());
            Ok(())
        }
        Command::Train(a) => train(a, started),
        Command::Eval(a) => {
            set_threads(a.threads)?;
            let opts = LoadOptions { limits, allow_non_finite: a.allow_non_finite };
            // The weights first: a bad file is reported without reading the data.
            let mut model = load_model(&a.weights, &opts)?;
            let mnist = load_mnist(&a.data)?;
            model.compile(RMSprop::default(), Loss::CategoricalCrossentropy, &[Metric::Accuracy])?;
            let batch = model.inference_batch(64, INFERENCE_BATCH_BYTES);
            let (loss, acc) = model.evaluate_examples(&mnist.test, batch)?;
            println!("test loss: {loss:.4}");
            println!("test accuracy: {acc:.4}");
            Ok(())
        }
        Command::Predict(a) => {
            set_threads(None)?;
            let opts = LoadOptions { limits, allow_non_finite: a.allow_non_finite };
            predict::run(&a.weights, &a.images, a.invert, &opts)
        }
        Command::Bench { what: BenchCommand::Conv(a) } => {
            set_threads(None)?;
            bench::run(a, &limits)
        }
    }
}

fn train(a: TrainArgs, started: Instant) -> CliResult<()> {
    // Everything that would make the run's result unsavable is checked
    // before training: the output paths, then the data.
    if let (Some(s), Some(m)) = (&a.save, &a.metrics_json) {
        if s == m {
            return Err(UsageError(format!("--save and --metrics-json both name {}", s.display())).into());
        }
    }
    for (flag, path) in [("--save", &a.save), ("--metrics-json", &a.metrics_json)] {
        if let Some(p) = path {
            convnet::files::check_writable(p).map_err(|e| format!("{flag}: {e}"))?;
        }
    }
    set_threads(a.threads)?;
    let mnist = load_mnist(&a.data)?;
    let (train, test) = match a.limit {
        Some(n) => (mnist.train.take(n as usize), mnist.test.take(n as usize)),
        None => (mnist.train, mnist.test),
    };
    let source = a.data.data.as_ref().map_or("the default MNIST copy".to_string(), |d| d.display().to_string());
    if train.is_empty() {
        return Err(format!("{source}: the training set is empty").into());
    }
    if test.is_empty() {
        return Err(format!("{source}: the test set is empty: nothing to evaluate the trained model on").into());
    }
    let mut model = mnist_convnet().seed(a.seed).build()?;
    model.set_conv_algo(a.algo);
    if !a.quiet {
        print!("{}", model.summary());
    }
    model.compile(RMSprop::default(), Loss::CategoricalCrossentropy, &[Metric::Accuracy])?;
    let startup = started.elapsed().as_secs_f64();
    let mut first_batch: Option<f64> = None;
    let options = FitOptions {
        epochs: a.epochs as usize,
        batch_size: a.batch_size as usize,
        shuffle: true,
        seed: a.seed,
        verbose: if a.quiet { Verbose::Silent } else { Verbose::Auto },
        callbacks: vec![Box::new(OnBatchEnd(|_: &convnet::BatchLogs| {
            first_batch.get_or_insert_with(|| started.elapsed().as_secs_f64());
            convnet::Control::Continue
        }))],
        ..FitOptions::default()
    };
    let fit_started = Instant::now();
    let history = model.fit_examples(&train, options)?;
    let fit_seconds = fit_started.elapsed().as_secs_f64();
    // Save the trained model before anything else can fail.
    if let Some(path) = &a.save {
        model.save(path)?;
    }
    let eval_started = Instant::now();
    let (test_loss, test_acc) = model.evaluate_examples(&test, 64)?;
    let eval_seconds = eval_started.elapsed().as_secs_f64();
    println!("test loss: {test_loss:.4}");
    println!("test accuracy: {test_acc:.4}");
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
        let json = serde_json::json!({
            "epochs": epochs,
            "test_loss": test_loss,
            "test_accuracy": test_acc,
            "train_examples": train.len(),
            "test_examples": test.len(),
            "batch_size": a.batch_size,
            "seed": a.seed,
            "threads": rayon::current_num_threads(),
            "algo": a.algo.name(),
            "startup_seconds": startup,
            "first_batch_end_seconds": first_batch,
            "fit_seconds": fit_seconds,
            "evaluate_seconds": eval_seconds,
            "evaluate_images_per_second": test.len() as f64 / eval_seconds,
            "weights_fnv1a64": format!("{:016x}", weights_hash(&model)),
        });
        let mut text = serde_json::to_string_pretty(&json)?;
        text.push('\n');
        convnet::weights::write_atomic(path, text.as_bytes())?;
    }
    Ok(())
}

/// FNV-1a over every weight's bits: equal for bit-identical weights.
fn weights_hash(model: &Model) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (_, t) in model.weights() {
        for x in t.data() {
            for b in x.to_bits().to_le_bytes() {
                h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
        }
    }
    h
}
