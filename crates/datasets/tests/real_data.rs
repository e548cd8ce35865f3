//! The real MNIST files in `data/mnist`: counts, class frequencies, and the
//! same data through every path (gzip, raw memory-mapped, stored and deflated npz).
//!
//! The repository ships `data/mnist`, so these tests never skip: without the
//! files every test here fails, naming what is missing and how to restore it.

mod common;

use common::{gunzip, mnist_dir, npy_bytes, temp_dir, zip_bytes};
use convnet_datasets::idx::IdxImages;
use convnet_datasets::{BatchIter, Mnist, FILES};
use std::sync::OnceLock;

const TRAIN_COUNTS: [usize; 10] = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949];
const TEST_COUNTS: [usize; 10] = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009];

/// Panics, naming the files and the fix, unless all four `.gz` files are in `data/mnist`.
fn require_data() {
    let missing: Vec<String> = FILES
        .iter()
        .map(|name| mnist_dir().join(format!("{name}.gz")))
        .filter(|p| !p.is_file())
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "the repository's MNIST copy is missing ({}); these tests need it and do not skip: \
         restore it with `git checkout -- data/mnist` (or copy ../shared/data/mnist/*.gz there)",
        missing.join(", ")
    );
}

/// MNIST loaded once per test binary (from the `.gz` files).
fn mnist() -> &'static Mnist {
    static MNIST: OnceLock<Mnist> = OnceLock::new();
    MNIST.get_or_init(|| {
        require_data();
        Mnist::load(mnist_dir()).expect("data/mnist loads")
    })
}

#[test]
fn the_repository_ships_its_mnist_copy() {
    require_data();
}

#[test]
fn counts_shapes_and_class_frequencies() {
    let m = mnist();
    assert_eq!((m.train.len(), m.test.len()), (60_000, 10_000));
    assert_eq!((m.train.rows(), m.train.cols(), m.test.rows(), m.test.cols()), (28, 28, 28, 28));
    assert_eq!(m.train.class_counts(), TRAIN_COUNTS);
    assert_eq!(m.test.class_counts(), TEST_COUNTS);
    // Well-known first labels: the training set starts 5 0 4 1 9, the test set 7 2 1 0 4.
    assert_eq!(m.train.labels()[..5], [5, 0, 4, 1, 9]);
    assert_eq!(m.test.labels()[..5], [7, 2, 1, 0, 4]);
    // The mean pixel of the training set is 0.1307 after scaling (the figure
    // every MNIST normalisation uses).
    let mean = m.train.pixels().iter().map(|&p| p as f64).sum::<f64>() / m.train.pixels().len() as f64;
    assert!((mean / 255.0 - 0.1307).abs() < 1e-3, "mean {}", mean / 255.0);
}

#[test]
fn f32_conversions_match_keras_preprocessing() {
    let test = &mnist().test;
    let x = test.images_f32();
    assert_eq!(x.shape().dims(), &[10_000, 28, 28, 1]);
    for (f, &b) in x.data().iter().zip(test.pixels()) {
        assert_eq!(*f, b as f32 / 255.0);
    }
    let y = test.labels_onehot();
    assert_eq!(y.shape().dims(), &[10_000, 10]);
    let argmax = y.argmax_last().unwrap();
    assert!(argmax.iter().zip(test.labels()).all(|(&a, &l)| a == l as usize));
    assert_eq!(y.sum(), 10_000.0);
    assert_eq!(test.labels_sparse()[..3], [7, 2, 1]);
}

#[test]
fn default_copy_is_verified_and_equal() {
    // The checkout's data/mnist, or the copy CONVNET_DATA names if the
    // environment sets it: either way verified against MNIST's digests, so
    // equal to the checkout's copy (a CONVNET_DATA that is not MNIST fails).
    let d = Mnist::load_default().unwrap();
    assert_eq!(d.train.pixels(), mnist().train.pixels());
    assert_eq!(d.test.labels(), mnist().test.labels());
}

#[test]
fn raw_files_are_mapped_and_equal_to_gz() {
    require_data();
    let dir = temp_dir("raw");
    for name in FILES {
        let gz = std::fs::read(mnist_dir().join(format!("{name}.gz"))).unwrap();
        std::fs::write(dir.join(name), gunzip(&gz)).unwrap();
    }
    let images = IdxImages::open(dir.join(FILES[2])).unwrap();
    assert!(images.is_mapped());
    assert!(!IdxImages::open(mnist_dir().join("t10k-images-idx3-ubyte.gz")).unwrap().is_mapped());
    let raw = Mnist::load(&dir).unwrap();
    assert_eq!(raw.train.pixels(), mnist().train.pixels());
    assert_eq!(raw.train.labels(), mnist().train.labels());
    assert_eq!(raw.test.pixels(), mnist().test.pixels());
    assert_eq!(raw.test.labels(), mnist().test.labels());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn npz_written_from_real_data_loads_equal() {
    let m = mnist();
    let arrays = |train_n: usize| {
        let train = m.train.take(train_n);
        vec![
            ("x_train.npy", npy_bytes("|u1", false, &format!("({train_n}, 28, 28)"), train.pixels())),
            ("y_train.npy", npy_bytes("|u1", false, &format!("({train_n},)"), train.labels())),
            ("x_test.npy", npy_bytes("|u1", false, "(10000, 28, 28)", m.test.pixels())),
            ("y_test.npy", npy_bytes("|u1", false, "(10000,)", m.test.labels())),
        ]
    };
    // The whole dataset, stored (as np.savez writes it).
    let dir = temp_dir("npz-real");
    std::fs::write(dir.join("mnist.npz"), zip_bytes(&arrays(60_000), false)).unwrap();
    let npz = Mnist::load(&dir).unwrap();
    assert_eq!(npz.train.pixels(), m.train.pixels());
    assert_eq!(npz.train.labels(), m.train.labels());
    assert_eq!(npz.test.pixels(), m.test.pixels());
    assert_eq!(npz.test.labels(), m.test.labels());
    // Deflated (np.savez_compressed), on part of the training set to stay fast.
    let path = dir.join("small.npz");
    std::fs::write(&path, zip_bytes(&arrays(2_000), true)).unwrap();
    let npz = Mnist::load(&path).unwrap();
    assert_eq!(npz.train.pixels(), m.train.take(2_000).pixels());
    assert_eq!(npz.test.pixels(), m.test.pixels());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn one_epoch_of_batches_over_the_test_set() {
    let test = &mnist().test;
    let mut it = BatchIter::new(test, 64, Some(7)).unwrap();
    assert_eq!(it.batches_per_epoch(), 157);
    let mut seen = vec![0u8; test.len()];
    let mut sizes = Vec::new();
    let mut counts = [0usize; 10];
    while let Some(batch) = it.next_batch() {
        sizes.push(batch.len());
        for (k, &i) in batch.indices.iter().enumerate() {
            seen[i] += 1;
            counts[batch.labels[k] as usize] += 1;
            let img = &batch.images.data()[k * 784..(k + 1) * 784];
            assert_eq!(img[300], test.image(i).unwrap()[300] as f32 / 255.0);
        }
    }
    assert!(seen.iter().all(|&s| s == 1));
    assert_eq!(sizes.len(), 157);
    assert_eq!(*sizes.last().unwrap(), 10_000 - 156 * 64);
    assert_eq!(counts, TEST_COUNTS);
}

#[test]
fn subsets_and_validation_split_share_storage() {
    let train = &mnist().train;
    let limited = train.take(1_000);
    assert_eq!(limited.len(), 1_000);
    assert_eq!(limited.pixels().as_ptr(), train.pixels().as_ptr());
    let (fit, val) = train.split_validation(0.2).unwrap();
    assert_eq!((fit.len(), val.len()), (48_000, 12_000));
    assert_eq!(val.image(0).unwrap(), train.image(48_000).unwrap());
    assert_eq!(val.pixels().as_ptr(), train.image(48_000).unwrap().as_ptr());
    let counts: Vec<usize> = fit.class_counts().iter().zip(val.class_counts()).map(|(a, b)| a + b).collect();
    assert_eq!(counts, TRAIN_COUNTS);
}
