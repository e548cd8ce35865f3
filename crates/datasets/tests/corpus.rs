//! Replays every fuzzing seed (`fuzz/corpus/{idx,npz}`) and every kept crash
//! input (`fuzz/regressions/{idx,npz}`) through the parsers, so CI covers them
//! on stable Rust. Each input must give `Ok` or `Err`, never a panic; the seeds
//! whose outcome is known are checked too.

mod common;

use common::fuzz_dir;
use convnet_datasets::idx::{IdxImages, IdxLabels};
use convnet_datasets::{npy, BatchIter, Dataset, Error, Mnist};
use std::path::PathBuf;

fn files(sub: &str) -> Vec<(String, Vec<u8>)> {
    let dir: PathBuf = fuzz_dir().join(sub);
    let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
    let mut out: Vec<_> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| !n.to_string_lossy().starts_with('.')))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    out.sort();
    out
}

/// What the `idx` fuzz target does, minus libFuzzer.
fn replay_idx(data: &[u8]) -> (bool, bool) {
    let images = IdxImages::from_bytes("replay", data.to_vec());
    if let Ok(images) = &images {
        assert_eq!(images.pixels().len(), images.len() * images.rows() * images.cols());
    }
    let labels = IdxLabels::from_bytes("replay", data.to_vec());
    if let Ok(labels) = &labels {
        assert_eq!(labels.labels().len(), labels.len());
        let count = labels.len().min(4096);
        if let Ok(ds) = Dataset::from_vecs(1, 1, labels.labels()[..count].to_vec(), labels.labels()[..count].to_vec()) {
            let mut it = BatchIter::new(&ds, 7, Some(1)).unwrap();
            let mut seen = 0;
            while let Some(b) = it.next_batch() {
                seen += b.len();
            }
            assert_eq!(seen, count);
        }
    }
    (images.is_ok(), labels.is_ok())
}

/// What the `npz` fuzz target does.
fn replay_npz(data: &[u8]) -> (bool, bool) {
    let array = npy::parse("replay.npy", data);
    if let Ok((shape, elements)) = &array {
        assert_eq!(shape.iter().product::<usize>(), elements.len());
    }
    let mnist = Mnist::from_npz_bytes("replay.npz", data);
    if let Ok(m) = &mnist {
        assert_eq!(m.train.pixels().len(), m.train.len() * 784);
    }
    (array.is_ok(), mnist.is_ok())
}

#[test]
fn idx_corpus_and_regressions() {
    let seeds = files("corpus/idx");
    assert!(seeds.len() >= 10, "fuzz/corpus/idx has {} seeds", seeds.len());
    for (name, data) in seeds.iter().chain(&files("regressions/idx")) {
        let outcome = replay_idx(data);
        let expected = match name.as_str() {
            "images_3x4x4" | "images_1x28x28" | "images_empty" | "images_2x3x3.gz" => Some((true, false)),
            "labels_5" | "labels_empty" | "labels_7.gz" | "mnist_t10k_labels.gz" => Some((false, true)),
            "images_truncated" | "header_truncated" | "images_float_type" | "images_huge_dims.gz" => {
                Some((false, false))
            }
            _ => None,
        };
        if let Some(expected) = expected {
            assert_eq!(outcome, expected, "{name}");
        }
    }
    let labels = IdxLabels::from_bytes(
        "t10k",
        files("corpus/idx").into_iter().find(|f| f.0 == "mnist_t10k_labels.gz").unwrap().1,
    )
    .unwrap();
    assert_eq!(labels.len(), 10_000);
}

#[test]
fn npz_corpus_and_regressions() {
    let seeds = files("corpus/npz");
    assert!(seeds.len() >= 5, "fuzz/corpus/npz has {} seeds", seeds.len());
    for (name, data) in seeds.iter().chain(&files("regressions/npz")) {
        let outcome = replay_npz(data);
        let expected = match name.as_str() {
            "mnist_2_1_stored.npz" | "mnist_2_1_deflated.npz" | "mnist_0_0_stored.npz" => Some((false, true)),
            "array_v1.npy" | "array_v2.npy" => Some((true, false)),
            "array_f4.npy" | "missing_y_test.npz" => Some((false, false)),
            _ => None,
        };
        if let Some(expected) = expected {
            assert_eq!(outcome, expected, "{name}");
        }
    }
    let missing = seeds.iter().find(|f| f.0 == "missing_y_test.npz").unwrap();
    assert!(matches!(Mnist::from_npz_bytes("m", &missing.1), Err(Error::NpzMissingKey { key: "y_test", .. })));
}
