//! Bad input to the convolution entry points is an `Err` whose message names
//! the shape, never a panic: mismatched slice lengths, zero dimensions, a
//! window larger than the padded input, dimensions whose sizes overflow, and
//! an explicit algorithm that cannot run the shape.

mod common;

use convnet_kernels::activation::Activation;
use convnet_kernels::conv::{self, ConvAlgo, ConvPass, ConvShape, Padding};
use convnet_kernels::Error;
use proptest::prelude::*;

/// Every algorithm, `Auto` included.
const EVERY_ALGO: [ConvAlgo; 7] = [
    ConvAlgo::Auto,
    ConvAlgo::Reference,
    ConvAlgo::Direct,
    ConvAlgo::Im2col,
    ConvAlgo::WinogradF2,
    ConvAlgo::WinogradF4,
    ConvAlgo::Depthwise,
];

/// Calls all three passes (and the bias gradient) of `algo` with buffers of
/// the given lengths; returns each result.
fn call_all(algo: ConvAlgo, s: &ConvShape, lens: [usize; 4]) -> Vec<Result<(), Error>> {
    let [x_len, w_len, y_len, b_len] = lens;
    let x = vec![0.5f32; x_len];
    let w = vec![0.25f32; w_len];
    let b = vec![0.0f32; b_len];
    let mut y = vec![0.0f32; y_len];
    let mut gx = vec![0.0f32; x_len];
    let mut gw = vec![0.0f32; w_len];
    let mut gb = vec![0.0f32; b_len];
    vec![
        conv::conv2d_forward(algo, s, &x, &w, Some(&b), Activation::Relu, &mut y),
        conv::conv2d_backward_data(algo, s, &y.clone(), &w, &mut gx),
        conv::conv2d_backward_filter(algo, s, &x, &y.clone(), &mut gw),
        conv::conv2d_backward_bias(s, &y.clone(), &mut gb),
    ]
}

/// Asserts `r` is an error of the expected kind whose message names `s`.
fn assert_names_shape(r: &Result<(), Error>, s: &ConvShape, ctx: &str) {
    let e = r.as_ref().expect_err(ctx);
    let msg = e.to_string();
    assert!(msg.contains(&s.to_string()), "{ctx}: message {msg:?} does not name {s}");
}

fn good() -> ConvShape {
    ConvShape::nhwc(2, 6, 7, 3).filter(3, 3, 4).padding(Padding::Same).build().unwrap()
}

#[test]
fn mismatched_lengths_are_errors_naming_the_shape() {
    let s = good();
    let lens = [s.input_len(), s.filter_len(), s.output_len(), s.c_out];
    for algo in EVERY_ALGO {
        for wrong in 0..4 {
            for delta in [-1isize, 1] {
                let mut l = lens;
                l[wrong] = (l[wrong] as isize + delta) as usize;
                for (pass, r) in call_all(algo, &s, l).iter().enumerate() {
                    // Pass 0 (forward) reads every argument, passes 1 and 2 (backward
                    // data / filter) all but the bias, pass 3 (bias gradient) only
                    // the output gradient and the bias.
                    let uses = matches!((pass, wrong), (0, _) | (1 | 2, 0..=2) | (3, 2..=3));
                    if uses {
                        assert_names_shape(r, &s, &format!("{algo} pass {pass}, argument {wrong} off by {delta}"));
                        assert!(matches!(r, Err(Error::LengthMismatch { .. })), "{r:?}");
                    }
                }
            }
        }
    }
}

#[test]
fn invalid_shapes_are_errors_naming_the_shape() {
    let base = good();
    let mut bad = Vec::new();
    for field in 0..11 {
        let mut s = base;
        match field {
            0 => s.n = 0,
            1 => s.h = 0,
            2 => s.w = 0,
            3 => s.c_in = 0,
            4 => s.c_out = 0,
            5 => s.kh = 0,
            6 => s.kw = 0,
            7 => s.stride_h = 0,
            8 => s.stride_w = 0,
            9 => s.dilation_h = 0,
            _ => s.dilation_w = 0,
        }
        bad.push(s);
    }
    // Window larger than the padded input (valid padding, and dilated).
    bad.push(ConvShape { kh: 9, pad_top: 0, pad_bottom: 0, ..base });
    bad.push(ConvShape { dilation_w: 5, pad_left: 0, pad_right: 0, ..base });
    // Sizes that overflow usize.
    bad.push(ConvShape { n: usize::MAX / 2, ..base });
    bad.push(ConvShape { c_in: usize::MAX / 3, c_out: usize::MAX / 3, ..base });
    bad.push(ConvShape { h: usize::MAX, pad_top: usize::MAX, ..base });
    bad.push(ConvShape { kw: usize::MAX, dilation_w: 3, ..base });
    for s in &bad {
        assert!(s.validate().is_err(), "{s} validated");
        for algo in EVERY_ALGO {
            for (pass, r) in call_all(algo, s, [4, 4, 4, 4]).iter().enumerate() {
                assert_names_shape(r, s, &format!("{algo} pass {pass}"));
                assert!(matches!(r, Err(Error::InvalidShape { .. })), "{r:?}");
            }
        }
    }
    assert!(ConvShape::new(1, 2, 2, 1, 1, 3, 3).is_err());
    assert!(ConvShape::nhwc(1, 2, 2, 1).filter(3, 3, 1).build().is_err());
    assert!(ConvShape::new(1, 5, 5, 1, 1, 3, 3).unwrap().with_dilation(3, 1).is_err());
    assert!(ConvShape::nhwc(1, 5, 5, 1).filter(3, 3, 1).dilation(3, 1).build().is_err());
}

#[test]
fn an_algorithm_that_cannot_run_the_shape_is_an_error() {
    // Winograd is specified for 3x3 stride-1 undilated windows only.
    let shapes = [
        ConvShape::nhwc(1, 9, 9, 2).filter(5, 5, 2).build().unwrap(),
        ConvShape::nhwc(1, 9, 9, 2).filter(3, 3, 2).stride(2, 2).build().unwrap(),
        ConvShape::nhwc(1, 9, 9, 2).filter(3, 3, 2).dilation(2, 2).build().unwrap(),
    ];
    for s in &shapes {
        for algo in [ConvAlgo::WinogradF2, ConvAlgo::WinogradF4] {
            let lens = [s.input_len(), s.filter_len(), s.output_len(), s.c_out];
            let results = call_all(algo, s, lens);
            for (pass, r) in results.iter().take(3).enumerate() {
                assert_names_shape(r, s, &format!("{algo} pass {pass}"));
                assert!(matches!(r, Err(Error::Unsupported { .. })), "{r:?}");
            }
            for pass in [ConvPass::Forward, ConvPass::BackwardData, ConvPass::BackwardFilter] {
                assert!(conv::supports(algo, s, pass).is_err());
            }
        }
    }
}

proptest! {
    #![proptest_config(common::proptest_config(64))]

    /// Arbitrary (often absurd) shapes with small buffers: every entry point
    /// returns, Ok only when the shape validates and the lengths fit.
    #[test]
    fn arbitrary_shapes_never_panic(
        dims in prop::collection::vec(prop_oneof![0usize..6, Just(usize::MAX), Just(usize::MAX / 2), 1usize..1 << 33], 15),
        lens in prop::array::uniform4(0usize..300),
        algo in prop::sample::select(EVERY_ALGO.to_vec()),
    ) {
        let s = ConvShape {
            n: dims[0], h: dims[1], w: dims[2], c_in: dims[3], c_out: dims[4], kh: dims[5], kw: dims[6],
            stride_h: dims[7], stride_w: dims[8], dilation_h: dims[9], dilation_w: dims[10],
            pad_top: dims[11], pad_bottom: dims[12], pad_left: dims[13], pad_right: dims[14], groups: 1,
        };
        let valid = s.validate().is_ok();
        for r in call_all(algo, &s, lens) {
            if !valid {
                prop_assert!(matches!(r, Err(Error::InvalidShape { .. })), "{:?}", r);
            } else if let Err(e) = r {
                prop_assert!(e.to_string().contains(&s.to_string()), "{}", e);
            }
        }
    }
}
