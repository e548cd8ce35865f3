//! Property tests: IDX round trips, and the batch iterator's coverage and determinism.

mod common;

use common::gzip;
use convnet_datasets::idx::{encode_images, encode_labels, IdxImages, IdxLabels};
use convnet_datasets::{BatchIter, Dataset};
use proptest::prelude::*;

/// `n` images of `side x side` with pixels `seed`-derived, labels `i % 10`.
fn dataset(n: usize, side: usize, seed: u8) -> Dataset {
    let pixels = (0..n * side * side).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
    Dataset::from_vecs(side, side, pixels, (0..n).map(|i| (i % 10) as u8).collect()).unwrap()
}

/// Every index visited in `epoch`, in order, and the batch sizes.
fn visit(it: &mut BatchIter<'_>, epoch: u64) -> (Vec<usize>, Vec<usize>) {
    it.epoch(epoch);
    let (mut order, mut sizes) = (Vec::new(), Vec::new());
    while let Some(b) = it.next_batch() {
        order.extend_from_slice(b.indices);
        sizes.push(b.len());
    }
    (order, sizes)
}

/// `cases` cases unless `PROPTEST_CASES` says otherwise; shrunk failures are
/// kept in this file's `.proptest-regressions` twin (`docs/TESTING.md`).
fn proptest_config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(cases);
    let persistence = proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions");
    ProptestConfig { cases, failure_persistence: Some(Box::new(persistence)), ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(proptest_config(48))]

    #[test]
    fn idx_round_trips_raw_and_gz(
        (count, rows, cols, pixels) in (0usize..6, 0usize..7, 0usize..7).prop_flat_map(|(n, r, c)| {
            (Just(n), Just(r), Just(c), proptest::collection::vec(any::<u8>(), n * r * c))
        }),
        labels in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let file = encode_images(count, rows, cols, &pixels).unwrap();
        for bytes in [file.clone(), gzip(&file)] {
            let images = IdxImages::from_bytes("p", bytes).unwrap();
            prop_assert_eq!((images.len(), images.rows(), images.cols()), (count, rows, cols));
            prop_assert_eq!(images.pixels(), &pixels[..]);
            for i in 0..count {
                prop_assert_eq!(images.image(i).unwrap(), &pixels[i * rows * cols..(i + 1) * rows * cols]);
            }
        }
        let file = encode_labels(&labels).unwrap();
        for bytes in [file.clone(), gzip(&file)] {
            let parsed = IdxLabels::from_bytes("q", bytes).unwrap();
            prop_assert_eq!(parsed.labels(), &labels[..]);
        }
        // Any strict prefix of a file is an error, never a panic.
        for cut in [0, file.len() / 2, file.len().saturating_sub(1)] {
            if cut < file.len() {
                prop_assert!(IdxLabels::from_bytes("r", file[..cut].to_vec()).is_err());
            }
        }
    }

    #[test]
    fn every_example_once_per_epoch(n in 0usize..300, batch in 1usize..80, seed in any::<u64>(), shuffle in any::<bool>()) {
        let ds = dataset(n, 2, seed as u8);
        let mut it = BatchIter::new(&ds, batch, shuffle.then_some(seed)).unwrap();
        prop_assert_eq!(it.batches_per_epoch(), n.div_ceil(batch));
        for epoch in 0..3 {
            it.epoch(epoch);
            let mut seen = vec![0u32; n];
            let mut batches = 0;
            while let Some(b) = it.next_batch() {
                batches += 1;
                let expect = batch.min(n - (batches - 1) * batch);
                prop_assert_eq!(b.len(), expect);
                prop_assert_eq!(b.images.shape().dims().to_vec(), vec![expect, 2, 2, 1]);
                prop_assert_eq!(b.labels_onehot.shape().dims().to_vec(), vec![expect, 10]);
                for (k, &i) in b.indices.iter().enumerate() {
                    seen[i] += 1;
                    prop_assert_eq!(b.labels[k], ds.labels()[i]);
                    prop_assert_eq!(b.labels_sparse[k], ds.labels()[i] as u32);
                    let img: Vec<f32> = ds.image(i).unwrap().iter().map(|&p| p as f32 / 255.0).collect();
                    prop_assert_eq!(&b.images.data()[k * 4..(k + 1) * 4], &img[..]);
                    let row = &b.labels_onehot.data()[k * 10..(k + 1) * 10];
                    let hot: Vec<f32> = (0..10).map(|c| f32::from(u8::from(c == ds.labels()[i] as usize))).collect();
                    prop_assert_eq!(row, &hot[..]);
                }
            }
            prop_assert_eq!(batches, n.div_ceil(batch));
            prop_assert!(seen.iter().all(|&s| s == 1));
            if !shuffle {
                prop_assert_eq!(it.order(), &(0..n).collect::<Vec<_>>()[..]);
            }
        }
    }

    #[test]
    fn same_seed_same_shuffle_different_seeds_differ(n in 20usize..200, batch in 1usize..64, seed in any::<u64>(), other in any::<u64>()) {
        prop_assume!(seed != other);
        let ds = dataset(n, 1, 0);
        let mut a = BatchIter::new(&ds, batch, Some(seed)).unwrap();
        let mut b = BatchIter::new(&ds, 7, Some(seed)).unwrap();
        let mut c = BatchIter::new(&ds, batch, Some(other)).unwrap();
        for epoch in [0, 1, 5] {
            let (order_a, _) = visit(&mut a, epoch);
            // The order depends on (seed, epoch) only: not on the batch size or history.
            prop_assert_eq!(&order_a, &visit(&mut b, epoch).0);
            prop_assert_eq!(&order_a, &visit(&mut a, epoch).0);
            // n >= 20: two seeds give the same permutation with probability 1/20!.
            prop_assert_ne!(&order_a, &visit(&mut c, epoch).0);
            prop_assert_ne!(&order_a, &visit(&mut a, epoch + 1).0);
        }
    }
}
