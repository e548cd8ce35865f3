//! Command-line definitions (clap) and dispatch.

mod bench;
mod convert;
mod distributed;
mod eval;
mod finetune;
mod models;
mod predict;
mod profile;
mod step;
mod train;
mod visualize;

use clap::{Args, Parser, Subcommand};
use convnet::limits::{Limits, MAX_THREADS_PER_CORE};
use convnet::weights::LoadOptions;
use convnet::{mnist_convnet, Model};
use convnet_datasets::Mnist;
use convnet_kernels::conv::ConvAlgo;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub type CliResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// `error: message: cause: ...` (each cause once), as `main` prints an error.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = format!("error: {e}");
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(&format!(": {text}"));
        }
        source = s.source();
    }
    msg
}

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
    /// Train a model (the chapter's MNIST convnet by default: 5 epochs, batch 64, RMSprop) on
    /// MNIST-format data or an image folder, and print the test accuracy.
    Train(Box<train::TrainArgs>),
    /// Evaluate a saved model on the MNIST test set.
    Eval(eval::EvalArgs),
    /// Classify image files (PNG, JPEG, BMP, GIF, PNM; any size and colour) with a saved model:
    /// the top classes with their probabilities.
    Predict(predict::PredictArgs),
    /// Convert a model or its weights between Keras `.keras`, Keras HDF5 weights (`.weights.h5`,
    /// legacy `.h5`) and safetensors.
    Convert(convert::ConvertArgs),
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
    /// Pictures of what a model computes: activation grids, filter patterns, Grad-CAM heatmaps.
    Visualize {
        #[command(subcommand)]
        what: visualize::VisualizeCommand,
    },
}

#[derive(Args, Debug)]
struct SummaryArgs {
    /// A built-in model (`mnist`, the chapter's; `small-data`, its 150x150x3 cats-vs-dogs convnet;
    /// `vgg16`, VGG16's convolutional base at 150x150x3 as the chapter uses it), or a model file:
    /// an architecture JSON, Keras `.keras` or legacy `.h5`, or a whole-model safetensors file
    /// written by `train --save`.
    #[arg(long, value_name = "FILE|NAME", default_value = "mnist")]
    model: String,
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// Time the kernels crate's convolution algorithms on one shape.
    Conv(bench::ConvArgs),
    /// Time one training step (or, with --inference, one forward pass) of a model on random inputs.
    Step(step::StepArgs),
}

#[derive(Args, Debug)]
pub(crate) struct DataArg {
    /// MNIST-format data: a directory with the four MNIST files (raw or .gz), or mnist.npz; default:
    /// $CONVNET_DATA, then data/mnist (verified against MNIST's digests). `train` also takes an
    /// image folder: one folder of class folders, or train/ (+ validation/, test/) holding them.
    #[arg(long, value_name = "DIR")]
    pub(crate) data: Option<PathBuf>,
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
pub(crate) fn set_threads(threads: Option<u64>) -> CliResult<()> {
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

pub(crate) fn load_mnist(data: &DataArg) -> CliResult<Mnist> {
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
pub(crate) fn load_model(path: &Path, opts: &LoadOptions) -> CliResult<Model> {
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
            let opts = LoadOptions { limits, allow_non_finite: true };
            let model = models::resolve(&a.model, &opts)?.build(None, convnet::DEFAULT_SEED, &opts)?;
            print!("{}", model.summary());
            Ok(())
        }
        Command::Train(a) => train::run(*a, started, limits),
        Command::Eval(a) => eval::run(a, limits),
        Command::Convert(a) => convert::run(a, limits),
        Command::Predict(a) => {
            set_threads(None)?;
            predict::run(a, limits)
        }
        Command::Visualize { what } => {
            set_threads(None)?;
            visualize::run(what, limits)
        }
        Command::Bench { what: BenchCommand::Conv(a) } => {
            set_threads(None)?;
            bench::run(a, &limits)
        }
        Command::Bench { what: BenchCommand::Step(a) } => {
            set_threads(None)?;
            step::run(a, limits)
        }
    }
}

/// FNV-1a over every weight's bits: equal for bit-identical weights.
pub(crate) fn weights_hash(model: &Model) -> u64 {
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
