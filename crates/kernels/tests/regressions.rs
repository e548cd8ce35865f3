//! Shrunk failures found by the property suite and the fuzz target, kept as
//! named tests: each runs every algorithm that supports the shape, every pass,
//! under every SIMD level, against the f64 reference (as `conv_agree` does).

mod common;

use common::{check_every_algo_and_level, Oracle, Problem, Worst};
use convnet_kernels::conv::ConvShape;

fn check_all(s: ConvShape) {
    s.validate().unwrap();
    let p = Problem::new(s, 0);
    check_every_algo_and_level(&p, &Oracle::new(&p), "seed 0", &mut Worst::default());
}

/// conv_agree, 2026-11-25 (direct, work in progress): a 1x1 input under a
/// dilated 5x5 window with `same` padding (pad 4 on every side, one output
/// pixel whose only real tap is the window's centre) overflowed a subtraction.
#[test]
fn one_pixel_input_dilated_5x5_same() {
    check_all(ConvShape {
        n: 1,
        h: 1,
        w: 1,
        c_in: 1,
        c_out: 1,
        kh: 5,
        kw: 5,
        stride_h: 1,
        stride_w: 1,
        dilation_h: 2,
        dilation_w: 2,
        pad_top: 4,
        pad_bottom: 4,
        pad_left: 4,
        pad_right: 4,
        groups: 1,
    });
}
