//! The chapter's small-data finding on data we have: a small convnet trained
//! on 500 MNIST digits written out as a JPEG image folder overfits; data
//! augmentation (rotation, zoom, translation; no flips for digits) plus
//! dropout reduces the overfitting. `docs/SMALL_DATA.md` records a run.
//!
//! ```text
//! cargo run --release -p convnet --example small_data_mnist -- --out docs/small_data
//! ```
//!
//! Steps: (1) the first `--train` (500) MNIST training images and the first
//! `--val` (1,000) test images are written as grey JPEGs (quality 90) into
//! `--dir` (default `target/mnist-jpeg`): `train/0..9/` and `validation/0..9/`,
//! the book's layout; (2) that folder is read back through the image-folder
//! loader (JPEG decoding, as a user's photos would be); (3) the same small
//! convnet is trained `--epochs` (30) epochs without and with augmentation
//! and dropout, for each of `--seeds` (3) seeds; (4) the first seed's curves
//! are written to `--out` as `no_augmentation.png` and `with_augmentation.png`
//! and every run's numbers are printed as a Markdown table and as JSON
//! (`--json FILE`).

use convnet::optimizers::RMSprop;
use convnet::Activation::{Relu, Softmax};
use convnet::{
    Conv2D, Dense, Dropout, FitOptions, Flatten, History, Loss, MaxPooling2D, Metric, RandomRotation,
    RandomTranslation, RandomZoom, Rescaling, Sequential, Verbose,
};
use convnet_datasets::folder::{self, ColorMode, FolderOptions};
use convnet_datasets::Mnist;
use std::path::{Path, PathBuf};

struct Args {
    dir: PathBuf,
    out: Option<PathBuf>,
    json: Option<PathBuf>,
    train: usize,
    val: usize,
    epochs: usize,
    seeds: u64,
}

/// The flags, for the usage message.
const FLAGS: &str = "flags: --dir D --out D --json F --train N --val N --epochs N --seeds N";

fn parse() -> Result<Args, String> {
    let mut a = Args {
        dir: PathBuf::from("target/mnist-jpeg"),
        out: None,
        json: None,
        train: 500,
        val: 1000,
        epochs: 30,
        seeds: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let num = |s: String| s.parse::<usize>().map_err(|e| format!("{flag} {s:?}: {e}"));
        match flag.as_str() {
            "--dir" => a.dir = value()?.into(),
            "--out" => a.out = Some(value()?.into()),
            "--json" => a.json = Some(value()?.into()),
            "--train" => a.train = num(value()?)?,
            "--val" => a.val = num(value()?)?,
            "--epochs" => a.epochs = num(value()?)?,
            "--seeds" => a.seeds = num(value()?)? as u64,
            other => return Err(format!("unknown argument {other:?} ({FLAGS})")),
        }
    }
    Ok(a)
}

/// Writes `n` images of `set` from `first` on as `dir/<label>/<index>.jpg`.
fn export(set: &convnet_datasets::Dataset, n: usize, dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    if n > set.len() {
        return Err(format!("asked for {n} images, the set has {}", set.len()).into());
    }
    for d in 0..10 {
        std::fs::create_dir_all(dir.join(d.to_string()))?;
    }
    for i in 0..n {
        let pixels = set.image(i).ok_or("image out of range")?;
        let path = dir.join(set.labels()[i].to_string()).join(format!("{i:05}.jpg"));
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path)?);
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut file, 90).encode(
            pixels,
            28,
            28,
            image::ExtendedColorType::L8,
        )?;
    }
    Ok(())
}

/// The small convnet; with `augment`, random rotation, zoom and translation
/// in front and dropout before the classifier.
fn model(augment: bool, seed: u64) -> Sequential {
    let mut m = Sequential::new().seed(seed).add(Rescaling::new(1.0 / 255.0, 0.0).input_shape((28, 28, 1)));
    if augment {
        m = m
            .add(RandomRotation::new(0.1)) // up to 36 degrees either way
            .add(RandomZoom::new(0.1))
            .add(RandomTranslation::new(0.1, 0.1));
    }
    m = m
        .add(Conv2D::new(32, (3, 3)).activation(Relu))
        .add(MaxPooling2D::new((2, 2)))
        .add(Conv2D::new(64, (3, 3)).activation(Relu))
        .add(MaxPooling2D::new((2, 2)))
        .add(Flatten::new());
    if augment {
        m = m.add(Dropout::new(0.5));
    }
    m.add(Dense::new(64).activation(Relu)).add(Dense::new(10).activation(Softmax))
}

struct Run {
    augment: bool,
    seed: u64,
    history: History,
    seconds: f64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse()?;
    let mnist = Mnist::load_default()?;
    if args.dir.exists() {
        std::fs::remove_dir_all(&args.dir)?;
    }
    export(&mnist.train, args.train, &args.dir.join("train"))?;
    export(&mnist.test, args.val, &args.dir.join("validation"))?;
    let opts =
        FolderOptions { image_size: (28, 28), color_mode: ColorMode::Grayscale, seed: Some(1), ..Default::default() };
    let data = folder::load_train_validation_test(&args.dir, &opts)?;
    let validation = data.validation.ok_or("no validation folder")?;
    println!(
        "{}: {} training and {} validation JPEGs, {} classes",
        args.dir.display(),
        data.train.len(),
        validation.len(),
        data.train.num_classes()
    );

    let mut runs = Vec::new();
    for seed in 1..=args.seeds {
        for augment in [false, true] {
            let mut m = model(augment, seed).build()?;
            m.compile(RMSprop::default(), Loss::CategoricalCrossentropy, &[Metric::Accuracy])?;
            let start = std::time::Instant::now();
            let history = m.fit_examples(
                &data.train,
                FitOptions {
                    epochs: args.epochs,
                    batch_size: 32,
                    seed,
                    validation_data: Some(&validation),
                    verbose: Verbose::Silent,
                    ..Default::default()
                },
            )?;
            let seconds = start.elapsed().as_secs_f64();
            let last = history.epochs.last().ok_or("no epoch ran")?;
            println!(
                "seed {seed} {:<17} {seconds:6.1} s  final: train acc {:.4} val acc {:.4} train loss {:.4} val loss {:.4}",
                if augment { "with augmentation" } else { "no augmentation" },
                last.accuracy.unwrap_or(f64::NAN),
                last.val_accuracy.unwrap_or(f64::NAN),
                last.loss,
                last.val_loss.unwrap_or(f64::NAN),
            );
            runs.push(Run { augment, seed, history, seconds });
        }
    }

    if let Some(out) = &args.out {
        std::fs::create_dir_all(out)?;
        for r in runs.iter().filter(|r| r.seed == 1) {
            let name = if r.augment { "with_augmentation.png" } else { "no_augmentation.png" };
            r.history.plot(out.join(name))?;
            println!("wrote {}", out.join(name).display());
        }
    }

    // The table: per run, the last epoch's numbers, the best validation
    // accuracy, and the overfitting gaps (train minus validation accuracy,
    // validation minus train loss) averaged over the last 5 epochs.
    println!("\n| run | seed | train acc | val acc | best val acc | acc gap (last 5) | loss gap (last 5) | min val loss (epoch) | val loss at end | s |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut json = Vec::new();
    for r in &runs {
        let h = &r.history;
        let (acc, val_acc, loss, val_loss) = (h.accuracy(), h.val_accuracy(), h.loss(), h.val_loss());
        let k = 5.min(acc.len());
        let tail = |v: &[f64]| v[v.len() - k..].iter().sum::<f64>() / k as f64;
        let acc_gap = tail(&acc) - tail(&val_acc);
        let loss_gap = tail(&val_loss) - tail(&loss);
        let best = val_acc.iter().copied().fold(f64::MIN, f64::max);
        let (min_epoch, min_val_loss) =
            val_loss.iter().enumerate().fold((0, f64::MAX), |b, (i, &v)| if v < b.1 { (i + 1, v) } else { b });
        let label = if r.augment { "augmentation + dropout" } else { "plain" };
        println!(
            "| {label} | {} | {:.4} | {:.4} | {best:.4} | {acc_gap:+.4} | {loss_gap:+.4} | {min_val_loss:.4} ({min_epoch}) | {:.4} | {:.0} |",
            r.seed,
            acc[acc.len() - 1],
            val_acc[val_acc.len() - 1],
            val_loss[val_loss.len() - 1],
            r.seconds
        );
        json.push(serde_json::json!({
            "augment": r.augment, "seed": r.seed, "seconds": r.seconds,
            "accuracy": acc, "val_accuracy": val_acc, "loss": loss, "val_loss": val_loss,
        }));
    }
    if let Some(path) = &args.json {
        convnet::files::write_atomic(path, serde_json::to_string_pretty(&json)?.as_bytes())?;
    }
    Ok(())
}
