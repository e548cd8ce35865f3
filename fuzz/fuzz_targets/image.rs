//! Fuzzes `predict`'s image path (`convnet::images::decode_grey`): header
//! checks against the limits, PNG palette and PNM trailing-data checks,
//! decode, alpha compositing, grey conversion, resize. Properties:
//! `fuzz/checks/image.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

include!("../checks/image.rs");

fuzz_target!(|data: &[u8]| check_image(data));
