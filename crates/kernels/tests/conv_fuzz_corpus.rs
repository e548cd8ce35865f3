//! Replays the `conv_shape` fuzz target's seeds and regressions
//! (`fuzz/corpus/conv_shape/`, `fuzz/regressions/conv_shape/`) on stable Rust:
//! each file is decoded exactly as `fuzz/fuzz_targets/conv_shape.rs` decodes
//! it; an invalid shape must be an `Err` from every entry point, a valid one
//! must agree with the reference for every algorithm that supports it, under
//! every SIMD level (the checks of `conv_agree`).

mod common;

use common::{check_every_algo_and_level, Oracle, Problem, Worst};
use convnet_kernels::activation::Activation;
use convnet_kernels::conv::{self, ConvAlgo, ConvShape, Padding};
use convnet_kernels::Error;
use std::path::Path;

/// The fuzz target's decoder (keep in step with `conv_shape.rs`).
fn decode(data: &[u8]) -> (Result<ConvShape, Error>, u64) {
    let mut bytes = data.iter().copied().chain(std::iter::repeat(0));
    let mut upto = |max: u16| (u16::from(bytes.next().unwrap()) % (max + 1)) as usize;
    let mut s = ConvShape {
        n: upto(3),
        h: upto(12),
        w: upto(12),
        c_in: upto(9),
        c_out: upto(9),
        kh: upto(6),
        kw: upto(6),
        stride_h: upto(3),
        stride_w: upto(3),
        dilation_h: upto(2),
        dilation_w: upto(2),
        pad_top: 0,
        pad_bottom: 0,
        pad_left: 0,
        pad_right: 0,
        groups: 1,
    };
    let shape = match upto(3) {
        0 => Ok(s),
        1 => s.with_padding(Padding::Same),
        _ => {
            (s.pad_top, s.pad_bottom, s.pad_left, s.pad_right) = (upto(4), upto(4), upto(4), upto(4));
            Ok(s)
        }
    };
    let seed = upto(255) as u64 | (upto(255) as u64) << 8;
    (shape, seed)
}

#[test]
fn fuzz_corpus_and_regressions_replay() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut files = Vec::new();
    for dir in ["corpus/conv_shape", "regressions/conv_shape"] {
        if let Ok(entries) = std::fs::read_dir(root.join(dir)) {
            files.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_file()));
        }
    }
    files.sort();
    assert!(!files.is_empty(), "no conv_shape seeds under {}", root.display());
    for path in &files {
        let data = std::fs::read(path).unwrap();
        let (shape, seed) = decode(&data);
        let s = match shape {
            Ok(s) if s.validate().is_ok() => s,
            Ok(s) => {
                let v = vec![0.0f32; 64];
                let mut o = vec![0.0f32; 64];
                for algo in ConvAlgo::ALL.into_iter().chain([ConvAlgo::Auto]) {
                    let r = conv::conv2d_forward(algo, &s, &v, &v, None, Activation::Relu, &mut o);
                    assert!(matches!(r, Err(Error::InvalidShape { .. })), "{}: {r:?}", path.display());
                }
                continue;
            }
            Err(e) => {
                assert!(matches!(e, Error::InvalidShape { .. }), "{}: {e}", path.display());
                continue;
            }
        };
        let p = Problem::new(s, seed);
        check_every_algo_and_level(&p, &Oracle::new(&p), &path.display().to_string(), &mut Worst::default());
    }
}
