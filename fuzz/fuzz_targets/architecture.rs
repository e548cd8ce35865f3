//! Fuzzes the architecture JSON of whole-model files: parse, plan against
//! the limits, build, summary, JSON and file round trips, one inference
//! pass. Properties: `fuzz/checks/architecture.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

include!("../checks/architecture.rs");

fuzz_target!(|data: &[u8]| check_architecture(data));
