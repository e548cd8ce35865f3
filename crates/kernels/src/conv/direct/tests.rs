//! `direct` against the f64 reference at every SIMD level, thread-count
//! independence, and the axis classes.

use super::axis::{axis_len, build_axis};
use super::*;
use crate::conv::bias::backward_bias;
use crate::conv::{reference, Padding};

fn shapes() -> Vec<ConvShape> {
    let b = |n, h, w, ci, co, k| ConvShape::new(n, h, w, ci, co, k, k).unwrap();
    vec![
        // The chapter's layers at a small batch.
        b(2, 28, 28, 1, 32, 3),
        // One channel, 3x3, 17-32 filters: the weights-stationary kernel,
        // with a partial second vector; `same` adds the border classes.
        b(2, 9, 8, 1, 20, 3).with_padding(Padding::Same).unwrap(),
        b(2, 13, 13, 32, 64, 3),
        b(3, 5, 5, 64, 64, 3),
        // Odd channel counts, windows, strides, dilation, padding.
        b(2, 6, 7, 3, 1, 3),
        b(1, 7, 6, 5, 3, 3).with_padding(Padding::Same).unwrap(),
        b(2, 7, 6, 3, 17, 5),
        b(1, 8, 9, 6, 33, 3).with_stride(2, 2).unwrap().with_padding(Padding::Same).unwrap(),
        b(1, 9, 8, 2, 20, 3).with_stride(2, 3).unwrap(),
        b(2, 9, 9, 3, 3, 3).with_dilation(2, 2).unwrap().with_padding(Padding::Same).unwrap(),
        b(2, 6, 6, 5, 70, 1),
        b(1, 4, 5, 2, 3, 2).with_padding(Padding::Explicit { top: 3, bottom: 0, left: 1, right: 4 }).unwrap(),
        b(1, 11, 10, 7, 48, 5).with_stride(3, 2).unwrap().with_padding(Padding::Same).unwrap(),
        // Pointwise (1x1, stride 1): the fast path. Several row tasks and a
        // row tail; for the filter two chunks of two cache blocks each, and
        // input channels that leave a tail of single rows.
        b(3, 40, 40, 20, 48, 1),
        b(2, 9, 11, 33, 16, 1).with_padding(Padding::Same).unwrap(),
        b(1, 7, 5, 16, 128, 1),
        b(2, 5, 7, 24, 64, 1).with_dilation(2, 2).unwrap(),
        // 1x1 but not pointwise: strided, padded.
        b(2, 5, 5, 8, 32, 1).with_stride(2, 2).unwrap(),
        b(1, 4, 4, 8, 32, 1).with_padding(Padding::Explicit { top: 1, bottom: 0, left: 0, right: 2 }).unwrap(),
    ]
}

fn data(len: usize, seed: u32) -> Vec<f32> {
    (0..len).map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 500.0 - 1.0).collect()
}

fn close(what: &str, s: &ConvShape, a: &[f32], b: &[f32], terms: usize) {
    let tol = 2e-6 * terms as f32 + 1e-5;
    for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol, "{what} {s} element {i}: {x} vs {y}");
    }
}

#[test]
fn every_pass_matches_reference_at_every_level() {
    for level in SimdLevel::available() {
        let token = Token::new(level).unwrap();
        for s in shapes() {
            let x = data(s.input_len(), 1);
            let w = data(s.filter_len(), 2);
            let b = data(s.c_out, 3);
            let dy = data(s.output_len(), 4);
            let what = level.name();
            for relu in [false, true] {
                let mut want = vec![0.0; s.output_len()];
                reference::forward(&s, &x, &w, Some(&b), &mut want);
                if relu {
                    want.iter_mut().for_each(|v| *v = v.max(0.0));
                }
                let act = if relu { Activation::Relu } else { Activation::Linear };
                let mut got = vec![f32::NAN; s.output_len()];
                forward(token, &s, &x, &w, Some(&b), act, &mut got);
                close(what, &s, &got, &want, s.kh * s.kw * s.c_in);
            }
            let mut want = vec![0.0; s.output_len()];
            reference::forward(&s, &x, &w, None, &mut want);
            let mut got = vec![f32::NAN; s.output_len()];
            forward(token, &s, &x, &w, None, Activation::Linear, &mut got);
            close(what, &s, &got, &want, s.kh * s.kw * s.c_in);

            let mut want = vec![0.0; s.input_len()];
            reference::backward_data(&s, &dy, &w, &mut want);
            let mut got = vec![f32::NAN; s.input_len()];
            backward_data(token, &s, &dy, &w, &mut got);
            close(what, &s, &got, &want, s.kh * s.kw * s.c_out);

            let mut want = vec![0.0; s.filter_len()];
            reference::backward_filter(&s, &x, &dy, &mut want);
            let mut got = vec![f32::NAN; s.filter_len()];
            backward_filter(token, &s, &x, &dy, &mut got);
            close(what, &s, &got, &want, s.n * s.out_h() * s.out_w());
        }
    }
}

#[test]
fn bias_gradient_matches_reference() {
    for s in [shapes()[0].with_batch(7).unwrap(), shapes()[5]] {
        let dy = data(s.output_len(), 5);
        let mut want = vec![0.0; s.c_out];
        reference::backward_bias(&s, &dy, &mut want);
        let mut got = vec![f32::NAN; s.c_out];
        backward_bias(&s, &dy, &mut got);
        close("bias", &s, &got, &want, s.n * s.out_h() * s.out_w());
    }
}

#[test]
fn results_are_bit_identical_for_1_2_3_threads() {
    let s = ConvShape::new(9, 12, 12, 5, 24, 3, 3).unwrap().with_padding(Padding::Same).unwrap();
    let x = data(s.input_len(), 6);
    let w = data(s.filter_len(), 7);
    let dy = data(s.output_len(), 8);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let lvl = Token::new(SimdLevel::detect()).unwrap();
            let mut y = vec![f32::NAN; s.output_len()];
            forward(lvl, &s, &x, &w, None, Activation::Linear, &mut y);
            let mut dx = vec![f32::NAN; s.input_len()];
            backward_data(lvl, &s, &dy, &w, &mut dx);
            let mut dw = vec![f32::NAN; s.filter_len()];
            backward_filter(lvl, &s, &x, &dy, &mut dw);
            let mut db = vec![f32::NAN; s.c_out];
            backward_bias(&s, &dy, &mut db);
            let mut dw2 = vec![f32::NAN; s.filter_len()];
            crate::conv::im2col::backward_filter(lvl, &s, &x, &dy, &mut dw2);
            (y, dx, dw, db, dw2)
        })
    };
    let one = run(1);
    assert_eq!(one, run(2));
    assert_eq!(one, run(3));
}

#[test]
fn pointwise_path_gives_the_general_engines_bits() {
    // Forward and backward-data: the same FMAs in the same order, so the
    // same bits; the filter reduction blocks its pixels differently, so it
    // is held to the reference above instead.
    for level in SimdLevel::available() {
        let token = Token::new(level).unwrap();
        for s in shapes().into_iter().filter(|s| s.kh == 1 && s.stride_h == 1 && s.pad_top + s.pad_left == 0) {
            let x = data(s.input_len(), 11);
            let w = data(s.filter_len(), 12);
            let b = data(s.c_out, 13);
            let dy = data(s.output_len(), 14);
            let run = |general: bool| {
                pointwise::GENERAL_ONLY.with(|g| g.set(general));
                let mut y = vec![f32::NAN; s.output_len()];
                forward(token, &s, &x, &w, Some(&b), Activation::Relu, &mut y);
                let mut dx = vec![f32::NAN; s.input_len()];
                backward_data(token, &s, &dy, &w, &mut dx);
                pointwise::GENERAL_ONLY.with(|g| g.set(false));
                (y, dx)
            };
            assert_eq!(run(false), run(true), "{} {s}", level.name());
        }
    }
}

#[test]
fn pointwise_filter_is_bit_identical_for_1_2_3_threads() {
    // Two chunks of two cache blocks, several channel groups.
    let s = ConvShape::new(3, 40, 40, 40, 32, 1, 1).unwrap();
    let x = data(s.input_len(), 15);
    let dy = data(s.output_len(), 16);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let lvl = Token::new(SimdLevel::detect()).unwrap();
            assert!(pointwise::filter_applies(lvl, &s));
            let mut dw = vec![f32::NAN; s.filter_len()];
            backward_filter(lvl, &s, &x, &dy, &mut dw);
            dw
        })
    };
    let one = run(1);
    assert_eq!(one, run(2));
    assert_eq!(one, run(3));
}

#[test]
fn axis_classes_group_interior_and_border() {
    let mut buf = vec![0isize; axis_len(5, 3)];
    // 5 outputs, window 3, `same` padding 1 on a size-5 axis.
    let ax = build_axis(&mut buf, 5, 3, |o, k| {
        let i = o as isize + k as isize - 1;
        (0..5).contains(&i).then_some(i)
    });
    assert_eq!(ax.classes, 3); // left border, interior, right border
    assert_eq!(&ax.members[..5], &[0, 1, 2, 3, 4]);
    assert_eq!(&ax.start[..4], &[0, 1, 4, 5]);
    assert_eq!(&ax.ntaps[..3], &[2, 3, 2]);
}
