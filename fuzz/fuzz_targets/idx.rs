//! Fuzzes the IDX parsers (raw and gzip, images and labels) and pairing them
//! into a dataset: any input must give `Ok` or `Err`, never a panic, and never
//! an allocation beyond what the input can hold.
#![no_main]

use convnet_datasets::idx::{IdxImages, IdxLabels};
use convnet_datasets::{BatchIter, Dataset};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let images = IdxImages::from_bytes("fuzz-images", data.to_vec());
    if let Ok(images) = &images {
        assert_eq!(images.pixels().len(), images.len() * images.rows() * images.cols());
        if let Some(last) = images.len().checked_sub(1) {
            assert_eq!(images.image(last).map(<[u8]>::len), Some(images.rows() * images.cols()));
        }
        assert!(images.image(images.len()).is_none());
    }
    let labels = IdxLabels::from_bytes("fuzz-labels", data.to_vec());
    if let Ok(labels) = &labels {
        assert_eq!(labels.labels().len(), labels.len());
        // Pair the labels with as many 1x1 images and iterate one epoch.
        let count = labels.len().min(4096);
        let pixels = labels.labels()[..count].to_vec();
        if let Ok(ds) = Dataset::from_vecs(1, 1, pixels, labels.labels()[..count].to_vec()) {
            let mut it = BatchIter::new(&ds, 7, Some(count as u64)).expect("batch size 7 is valid");
            let mut seen = 0;
            while let Some(batch) = it.next_batch() {
                seen += batch.len();
            }
            assert_eq!(seen, count);
        }
    }
    if let (Ok(images), Ok(labels)) = (&images, &labels) {
        let _ = Dataset::new(images, labels);
    }
});
