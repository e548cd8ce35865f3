//! Prints the SIMD level the kernels will use (honouring `CONVNET_SIMD`) and
//! every level this CPU can run; exits 1 if `CONVNET_SIMD` names a level this
//! CPU lacks. CI uses it to decide which forced paths to test.
//!
//! `CONVNET_SIMD=avx2 cargo run -p convnet-kernels --example simd_probe`

use convnet_kernels::simd::{self, SimdLevel};

fn main() {
    let available: Vec<&str> = SimdLevel::available().iter().map(|l| l.name()).collect();
    match simd::try_level() {
        Ok(level) => println!("using {} (available: {})", level.name(), available.join(", ")),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
