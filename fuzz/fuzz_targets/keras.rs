//! Fuzzes the Keras readers: `.keras` archives and legacy `.h5` models
//! (zip, config JSON, HDF5 through hdf5-pure), and Keras weights files into
//! a fixed model. Properties: `fuzz/checks/keras.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

include!("../checks/keras.rs");

fuzz_target!(|data: &[u8]| {
    check_keras(data);
});
