//! Loading MNIST and iterating over it.
//!
//! ```text
//! cargo bench -p convnet-benches --bench datasets
//! ```
//!
//! - `load_train_images/{raw_mmap,gz}`: `IdxImages::open` on the 47 MB raw
//!   training images (a mapping plus header checks) and on the 9.9 MB `.gz`
//!   (decompression into one buffer); compare the latter with
//!   `gzip -dc data/mnist/train-images-idx3-ubyte.gz > /dev/null`.
//! - `load_all/{raw_dir,gz_dir,npz_stored,npz_deflated}`: `Mnist::load` of the
//!   four files or of a `mnist.npz`.
//! - `epoch/batch64_shuffled`: one epoch of 60,000 shuffled examples in batches
//!   of 64, gathered into f32 image and one-hot buffers.
//!
//! Setup writes a raw copy and two npz files into a temp dir (removed at the end).
//!
//! Sample size 20 and measurement 8 s are the defaults of the config at the
//! bottom; `-- --warm-up-time 1 --measurement-time 3 --sample-size 10`
//! overrides them. `load_all` (about 0.1-0.5 s a call) samples flat, one
//! batch of iterations per sample, so 20 samples fit the measurement time.

use convnet_datasets::idx::{encode_images, encode_labels, IdxImages, IdxLabels};
use convnet_datasets::{BatchIter, Mnist, FILES};
use criterion::{black_box, criterion_group, criterion_main, Criterion, SamplingMode};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn mnist_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/mnist")
}

/// Writes the raw IDX files and `stored.npz` / `deflated.npz` into a temp dir.
fn setup() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("convnet-bench-datasets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (i, name) in FILES.iter().enumerate() {
        let gz = mnist_dir().join(format!("{name}.gz"));
        let raw = if i % 2 == 0 {
            let images = IdxImages::open(&gz).unwrap();
            encode_images(images.len(), images.rows(), images.cols(), images.pixels()).unwrap()
        } else {
            encode_labels(IdxLabels::open(&gz).unwrap().labels()).unwrap()
        };
        std::fs::write(dir.join(name), raw).unwrap();
    }
    let mnist = Mnist::load(&dir).unwrap();
    mnist.write_npz(dir.join("stored.npz"), false).unwrap();
    mnist.write_npz(dir.join("deflated.npz"), true).unwrap();
    dir
}

fn bench(c: &mut Criterion) {
    let dir = setup();
    let raw = dir.join(FILES[0]);
    let gz = mnist_dir().join(format!("{}.gz", FILES[0]));

    let mut g = c.benchmark_group("load_train_images");
    g.bench_function("raw_mmap", |b| b.iter(|| black_box(IdxImages::open(&raw).unwrap()).len()));
    g.bench_function("gz", |b| b.iter(|| black_box(IdxImages::open(&gz).unwrap()).len()));
    g.finish();

    let mut g = c.benchmark_group("load_all");
    g.sampling_mode(SamplingMode::Flat);
    g.bench_function("raw_dir", |b| b.iter(|| black_box(Mnist::load(&dir).unwrap()).train.len()));
    g.bench_function("gz_dir", |b| b.iter(|| black_box(Mnist::load(mnist_dir()).unwrap()).train.len()));
    g.bench_function("npz_stored", |b| b.iter(|| black_box(Mnist::load(dir.join("stored.npz")).unwrap()).train.len()));
    g.bench_function("npz_deflated", |b| {
        b.iter(|| black_box(Mnist::load(dir.join("deflated.npz")).unwrap()).train.len())
    });
    g.finish();

    let mnist = Mnist::load(&dir).unwrap();
    let mut it = BatchIter::new(&mnist.train, 64, Some(1)).unwrap();
    let mut epoch = 0;
    let mut g = c.benchmark_group("epoch");
    g.bench_function("batch64_shuffled", |b| {
        b.iter(|| {
            epoch += 1;
            it.epoch(epoch);
            let mut sum = 0.0f32;
            while let Some(batch) = it.next_batch() {
                sum += batch.images.data()[0] + batch.labels_onehot.data()[0];
            }
            black_box(sum)
        })
    });
    g.finish();
    std::fs::remove_dir_all(&dir).unwrap();
}

criterion_group! {
    name = benches;
    // Defaults only: criterion applies the command line after this config.
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(8));
    targets = bench
}
criterion_main!(benches);
