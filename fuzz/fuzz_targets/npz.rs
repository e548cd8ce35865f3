//! Fuzzes the `.npy` header parser and the Keras `mnist.npz` reader (zip
//! container, stored or deflated entries, npy headers, shapes, labels).
#![no_main]

use convnet_datasets::{npy, Mnist};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((shape, elements)) = npy::parse("fuzz.npy", data) {
        assert_eq!(shape.iter().product::<usize>(), elements.len());
        // What parses must re-encode and parse back to the same array.
        if let Ok(again) = npy::encode(&shape, &elements) {
            assert_eq!(npy::parse("again.npy", &again).expect("re-encoded array parses"), (shape, elements));
        }
    }
    if let Ok(mnist) = Mnist::from_npz_bytes("fuzz.npz", data) {
        for ds in [&mnist.train, &mnist.test] {
            assert_eq!(ds.pixels().len(), ds.len() * 28 * 28);
            assert_eq!(ds.class_counts().iter().sum::<usize>(), ds.len());
        }
    }
});
