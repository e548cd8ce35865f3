use super::*;
use crate::arch::cache;
use crate::conv::{reference, Padding};

fn data(len: usize, seed: u32) -> Vec<f32> {
    (0..len).map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 500.0 - 1.0).collect()
}

fn close(what: &str, s: &ConvShape, a: &[f32], b: &[f32], terms: usize) {
    let tol = 2e-6 * terms as f32 + 1e-5;
    for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol, "{what} {s} element {i}: {x} vs {y}");
    }
}

fn dw(n: usize, h: usize, w: usize, c: usize, mult: usize, k: usize) -> ConvShape {
    ConvShape::new(n, h, w, c, c * mult, k, k).unwrap().with_groups(c).unwrap()
}

/// Channel counts below, at and above one vector of every level (tails),
/// multipliers 1-3, strides 1 and 2, dilation, every padding kind.
fn shapes() -> Vec<ConvShape> {
    vec![
        dw(2, 7, 6, 32, 1, 3).with_padding(Padding::Same).unwrap(),
        dw(1, 9, 8, 19, 1, 3).with_stride(2, 2).unwrap().with_padding(Padding::Same).unwrap(),
        dw(2, 6, 7, 5, 3, 3),
        dw(1, 10, 8, 17, 2, 3).with_dilation(2, 1).unwrap().with_padding(Padding::Same).unwrap(),
        dw(2, 5, 6, 70, 1, 2).with_padding(Padding::Explicit { top: 1, bottom: 0, left: 0, right: 1 }).unwrap(),
        dw(1, 10, 9, 16, 1, 3).with_stride(2, 3).unwrap().with_padding(Padding::Valid).unwrap(),
        dw(3, 4, 4, 1, 4, 1),
        dw(1, 7, 7, 6, 1, 5).with_padding(Padding::Same).unwrap(),
        dw(1, 3, 3, 8, 1, 3).with_padding(Padding::Explicit { top: 2, bottom: 2, left: 2, right: 2 }).unwrap(),
        // Rows long enough for the sliding tiles (8 and 4 pixels, then
        // single ones) at stride 1 and 2, with vector and lane tails.
        dw(2, 5, 37, 48, 1, 3).with_padding(Padding::Same).unwrap(),
        // Rows long enough for several column blocks of the 8-lane
        // backward-filter walk (64 channels: 32 columns a block).
        dw(1, 4, 70, 64, 1, 3).with_padding(Padding::Same).unwrap(),
        dw(1, 4, 30, 19, 1, 3).with_stride(2, 2).unwrap().with_padding(Padding::Same).unwrap(),
        dw(1, 3, 26, 7, 2, 3).with_padding(Padding::Same).unwrap(),
        dw(1, 6, 41, 35, 1, 3).with_padding(Padding::Valid).unwrap(),
        dw(1, 5, 40, 33, 1, 3).with_stride(1, 2).unwrap().with_padding(Padding::Valid).unwrap(),
        dw(1, 4, 30, 16, 1, 3).with_dilation(1, 2).unwrap().with_padding(Padding::Same).unwrap(),
        dw(1, 3, 29, 64, 1, 3).with_stride(2, 2).unwrap().with_padding(Padding::Same).unwrap(),
        // Backward-filter at stride 2 in 4-vector blocks, then a 1-vector one.
        dw(2, 5, 22, 80, 1, 3).with_stride(2, 2).unwrap().with_padding(Padding::Same).unwrap(),
        // Backward-data pair tiles at stride 2: pairs starting on an even
        // (pad 0) and an odd (pad 1, PyTorch's `padding=1`) column, 2 x 2
        // AVX-512 tiles with vector and lane tails, 4- and 2-pair tiles and
        // single pairs, a multiplier, odd and even widths, `valid`.
        dw(2, 6, 36, 72, 1, 3).with_stride(2, 2).unwrap().with_padding(Padding::Same).unwrap(),
        dw(1, 5, 23, 37, 1, 3)
            .with_stride(2, 2)
            .unwrap()
            .with_padding(Padding::Explicit { top: 1, bottom: 1, left: 1, right: 1 })
            .unwrap(),
        dw(1, 4, 20, 9, 2, 3)
            .with_stride(2, 2)
            .unwrap()
            .with_padding(Padding::Explicit { top: 1, bottom: 0, left: 1, right: 0 })
            .unwrap(),
        dw(1, 5, 27, 40, 1, 3).with_stride(2, 2).unwrap().with_padding(Padding::Valid).unwrap(),
        dw(1, 3, 7, 3, 1, 3).with_stride(2, 2).unwrap().with_padding(Padding::Same).unwrap(),
    ]
}

#[test]
fn every_pass_matches_reference_at_every_level() {
    for level in SimdLevel::available() {
        for s in shapes() {
            let what = level.name();
            let (x, w, b, dy) =
                (data(s.input_len(), 1), data(s.filter_len(), 2), data(s.c_out, 3), data(s.output_len(), 4));
            let terms = s.kh * s.kw;
            for (bias, act) in [(None, Activation::Linear), (Some(&b[..]), Activation::Relu)] {
                let mut want = vec![0.0; s.output_len()];
                reference::forward(&s, &x, &w, bias, &mut want);
                act.apply_inplace(&mut want).unwrap();
                let mut got = vec![f32::NAN; s.output_len()];
                forward_at(level, &s, &x, &w, bias, act, &mut got).unwrap();
                close(what, &s, &got, &want, terms);
            }
            let mut want = vec![0.0; s.input_len()];
            reference::backward_data(&s, &dy, &w, &mut want);
            let mut got = vec![f32::NAN; s.input_len()];
            backward_data_at(level, &s, &dy, &w, &mut got).unwrap();
            close(what, &s, &got, &want, terms * (s.c_out / s.c_in));

            let mut want = vec![0.0; s.filter_len()];
            reference::backward_filter(&s, &x, &dy, &mut want);
            let mut got = vec![f32::NAN; s.filter_len()];
            backward_filter_at(level, &s, &x, &dy, &mut got).unwrap();
            close(what, &s, &got, &want, s.n * s.out_h() * s.out_w());

            // The combined pass: bit-identical to the two passes apart
            // (which were just checked against the reference).
            let mut dx = vec![f32::NAN; s.input_len()];
            backward_data_at(level, &s, &dy, &w, &mut dx).unwrap();
            let (mut cdx, mut cdw) = (vec![f32::NAN; s.input_len()], vec![f32::NAN; s.filter_len()]);
            combined_at(level, &s, &x, &dy, &w, &mut cdx, &mut cdw).unwrap();
            assert_eq!(cdx, dx, "{what} {s}: combined grad_input");
            assert_eq!(cdw, got, "{what} {s}: combined grad_filter");
            // The public entry point (one sweep or the two passes, by stride).
            let (mut bdx, mut bdw) = (vec![f32::NAN; s.input_len()], vec![f32::NAN; s.filter_len()]);
            backward_at(level, &s, &x, &dy, &w, &mut bdx, &mut bdw).unwrap();
            assert_eq!((bdx, bdw), (dx, got), "{what} {s}: backward");
        }
    }
}

/// `backward_through_relu`: the same bits as `backward` followed by the
/// relu backward pass over the input gradient, on every level and shape
/// (both the two-pass and the one-sweep path, with multipliers), the input
/// a relu output with zeros at about half of its elements.
#[test]
fn backward_through_relu_is_backward_then_the_relu_mask() {
    for level in SimdLevel::available() {
        for s in shapes() {
            let what = level.name();
            let x: Vec<f32> = data(s.input_len(), 11).iter().map(|v| v.max(0.0)).collect();
            assert!(x.contains(&0.0) && x.iter().any(|&v| v > 0.0));
            let (w, dy) = (data(s.filter_len(), 12), data(s.output_len(), 13));
            let (mut dx, mut dw) = (vec![f32::NAN; s.input_len()], vec![f32::NAN; s.filter_len()]);
            backward_at(level, &s, &x, &dy, &w, &mut dx, &mut dw).unwrap();
            crate::activation::relu_backward_inplace_at(SimdLevel::Portable, &x, &mut dx).unwrap();
            let (mut mdx, mut mdw) = (vec![f32::NAN; s.input_len()], vec![f32::NAN; s.filter_len()]);
            backward_through_relu_at(level, &s, &x, &dy, &w, &mut mdx, &mut mdw).unwrap();
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&mdx), bits(&dx), "{what} {s}: masked grad_input");
            assert_eq!(bits(&mdw), bits(&dw), "{what} {s}: grad_filter");
            // The one sweep at any stride, masked.
            let (mut cdx, mut cdw) = (vec![f32::NAN; s.input_len()], vec![f32::NAN; s.filter_len()]);
            backward_checked(level, &s, &x, &dy, &w, &mut cdx, &mut cdw, true, true).unwrap();
            assert_eq!(bits(&cdx), bits(&dx), "{what} {s}: masked sweep grad_input");
            assert_eq!(bits(&cdw), bits(&dw), "{what} {s}: masked sweep grad_filter");
        }
    }
}

#[test]
fn results_are_bit_identical_for_1_2_3_threads() {
    let s = dw(5, 13, 11, 24, 2, 3).with_padding(Padding::Same).unwrap();
    let (x, w, dy) = (data(s.input_len(), 6), data(s.filter_len(), 7), data(s.output_len(), 8));
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let level = SimdLevel::detect();
            let mut y = vec![f32::NAN; s.output_len()];
            forward_at(level, &s, &x, &w, None, Activation::Linear, &mut y).unwrap();
            let mut dx = vec![f32::NAN; s.input_len()];
            backward_data_at(level, &s, &dy, &w, &mut dx).unwrap();
            let mut dw = vec![f32::NAN; s.filter_len()];
            backward_filter_at(level, &s, &x, &dy, &mut dw).unwrap();
            let (mut cdx, mut cdw) = (vec![f32::NAN; s.input_len()], vec![f32::NAN; s.filter_len()]);
            combined_at(level, &s, &x, &dy, &w, &mut cdx, &mut cdw).unwrap();
            assert_eq!((&cdx, &cdw), (&dx, &dw), "combined = apart, {threads} threads");
            (y, dx, dw)
        })
    };
    let one = run(1);
    assert_eq!(one, run(2));
    assert_eq!(one, run(3));
}

#[test]
fn refuses_non_depthwise_shapes_and_bad_lengths() {
    let dense = ConvShape::new(1, 5, 5, 4, 4, 3, 3).unwrap();
    let grouped = dense.with_groups(2).unwrap();
    for s in [dense, grouped] {
        let mut y = vec![0.0; s.output_len()];
        let err = forward_at(
            SimdLevel::Portable,
            &s,
            &vec![0.0; s.input_len()],
            &vec![0.0; s.filter_len()],
            None,
            Activation::Linear,
            &mut y,
        )
        .unwrap_err();
        assert!(err.to_string().contains("not depthwise"), "{err}");
    }
    let grouped = dense.with_groups(2).unwrap();
    let (mut gx, mut gw) = (vec![0.0; grouped.input_len()], vec![0.0; grouped.filter_len()]);
    let err = backward_at(
        SimdLevel::Portable,
        &grouped,
        &vec![0.0; grouped.input_len()],
        &vec![0.0; grouped.output_len()],
        &vec![0.0; grouped.filter_len()],
        &mut gx,
        &mut gw,
    )
    .unwrap_err();
    assert!(err.to_string().contains("not depthwise"), "{err}");
    let s = dw(1, 5, 5, 4, 1, 3);
    let (x, dy, w) = (vec![0.0; s.input_len()], vec![0.0; s.output_len()], vec![0.0; s.filter_len()]);
    let (mut gx, mut gw) = (vec![0.0; s.input_len()], vec![0.0; s.filter_len()]);
    assert!(backward_at(SimdLevel::Portable, &s, &x, &dy[1..], &w, &mut gx, &mut gw).is_err());
    assert!(backward_at(SimdLevel::Portable, &s, &x, &dy, &w, &mut gx, &mut gw[1..]).is_err());
    assert!(backward_at(SimdLevel::Portable, &s, &x[1..], &dy, &w, &mut gx, &mut gw).is_err());
    let mut y = vec![0.0; s.output_len()];
    assert!(forward_at(
        SimdLevel::Portable,
        &s,
        &[0.0; 3],
        &vec![0.0; s.filter_len()],
        None,
        Activation::Linear,
        &mut y
    )
    .is_err());
}

#[test]
fn tap_tables_list_inside_taps_only() {
    let mut buf = vec![0isize; 5 * 7];
    // 5 outputs, 3 taps, stride 1, pad 1, size 5 (`same`).
    let t = TapTable::build(&mut buf, 5, 3, |o, k| forward_tap(o, k, 1, 1, 1, 5));
    assert_eq!(t.taps(0), &[1, 0, 2, 1]);
    assert_eq!(t.taps(2), &[0, 1, 1, 2, 2, 3]);
    assert_eq!(t.taps(4), &[0, 3, 1, 4]);
    // Backward, stride 2, pad 0, 2 outputs: input 2 is read by output 1 tap 0 and output 0 tap 2.
    let mut buf = vec![0isize; 5 * 7];
    let t = TapTable::build(&mut buf, 5, 3, |i, k| backward_tap(i, k, 2, 1, 0, 2));
    assert_eq!(t.taps(2), &[0, 1, 2, 0]);
    assert_eq!(t.taps(1), &[1, 0]);
}

#[test]
fn pair_range_covers_the_stride_2_interior() {
    let range = |w: usize, pad: usize, ow: usize| {
        let mut buf = vec![0isize; w * 7];
        let t = TapTable::build(&mut buf, w, 3, |i, k| backward_tap(i, k, 2, 1, pad, ow));
        pair_range(&t, w)
    };
    // Keras `same` on 112 columns (pad 0 left): columns 0 and 1 lack tap 2.
    assert_eq!(range(112, 0, 56), Some(gather::Pairs { q: 2, g: 1, len: 55 }));
    // PyTorch `padding=1`: column 0 reads tap 1 alone, the last column too.
    assert_eq!(range(112, 1, 56), Some(gather::Pairs { q: 1, g: 1, len: 55 }));
    // `valid` (55 outputs): the last pair would read output 55.
    assert_eq!(range(112, 0, 55), Some(gather::Pairs { q: 2, g: 1, len: 54 }));
    // Too short for two pairs.
    assert_eq!(range(4, 0, 2), None);
}

#[test]
fn row_blocks_stay_in_one_image_and_bound_the_task_count() {
    // (n, rows, floats per row): a big layer, a small one, batch-1 inference.
    for (n, rows, row) in [(8, 112, 112 * 32), (8, 14, 14 * 512), (1, 7, 7 * 64), (3, 1, 5)] {
        let b = block_rows(n, rows, row);
        assert!((1..=rows).contains(&b), "{n} {rows} {row}: {b}");
        let tasks = n * rows.div_ceil(b);
        assert!(tasks <= MAX_TASKS + n, "{n} {rows} {row}: {tasks} tasks");
        if n * rows * row * 4 >= MAX_TASKS * MIN_TASK_BYTES {
            assert!(tasks >= MAX_TASKS / 2, "a big call keeps enough tasks: {tasks}");
        }
    }
    // A batch-1 14x14x64 map is one task.
    assert_eq!(block_rows(1, 14, 14 * 64), 14);
}

#[test]
fn combined_pass_splits_rows_across_chunks_and_images() {
    // Big enough for several backward-filter chunks, whose boundaries fall
    // inside images: stride 1 (7 chunks over 3 x 40 rows), stride 2 with
    // a multiplier, and PyTorch-style padding.
    let shapes = [
        dw(3, 40, 40, 48, 1, 3).with_padding(Padding::Same).unwrap(),
        dw(3, 60, 61, 16, 2, 3).with_stride(2, 2).unwrap().with_padding(Padding::Same).unwrap(),
        dw(3, 57, 50, 64, 1, 3)
            .with_stride(2, 2)
            .unwrap()
            .with_padding(Padding::Explicit { top: 1, bottom: 1, left: 1, right: 1 })
            .unwrap(),
    ];
    for s in shapes {
        let (x, w, dy) = (data(s.input_len(), 9), data(s.filter_len(), 10), data(s.output_len(), 11));
        let (mut want_dx, mut want_dw) = (vec![0.0; s.input_len()], vec![0.0; s.filter_len()]);
        reference::backward_data(&s, &dy, &w, &mut want_dx);
        reference::backward_filter(&s, &x, &dy, &mut want_dw);
        for level in SimdLevel::available() {
            for threads in [1, 2] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                let (dx, dw, cdx, cdw) = pool.install(|| {
                    let (mut dx, mut dw) = (vec![f32::NAN; s.input_len()], vec![f32::NAN; s.filter_len()]);
                    backward_data_at(level, &s, &dy, &w, &mut dx).unwrap();
                    backward_filter_at(level, &s, &x, &dy, &mut dw).unwrap();
                    let (mut cdx, mut cdw) = (vec![f32::NAN; s.input_len()], vec![f32::NAN; s.filter_len()]);
                    combined_at(level, &s, &x, &dy, &w, &mut cdx, &mut cdw).unwrap();
                    (dx, dw, cdx, cdw)
                });
                let what = format!("{} {threads} threads", level.name());
                close(&what, &s, &cdx, &want_dx, s.kh * s.kw * (s.c_out / s.c_in));
                close(&what, &s, &cdw, &want_dw, s.n * s.out_h() * s.out_w());
                assert_eq!((cdx, cdw), (dx, dw), "{what} {s}: combined = apart");
            }
        }
    }
}

/// `len` floats from a 64-byte boundary of `buf` (as tensors are aligned).
fn aligned(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    buf.clear();
    buf.resize(len + 16, f32::NAN);
    let off = buf.as_ptr().align_offset(64);
    &mut buf[off..off + len]
}

#[test]
fn streamed_destinations_are_bit_identical_at_every_level() {
    // Whole vectors per pixel (16, 32, 48, 64 lanes): every store can
    // stream. Sliding tiles at stride 1 and 2, the stride-2 pair tiles,
    // borders, bias and relu, and a multiplier (whose backward-data goes
    // through a scratch row and never streams).
    let shapes = [
        dw(2, 7, 37, 48, 1, 3).with_padding(Padding::Same).unwrap(),
        dw(1, 6, 36, 64, 1, 3).with_stride(2, 2).unwrap().with_padding(Padding::Same).unwrap(),
        dw(1, 5, 23, 32, 1, 3)
            .with_stride(2, 2)
            .unwrap()
            .with_padding(Padding::Explicit { top: 1, bottom: 1, left: 1, right: 1 })
            .unwrap(),
        dw(2, 5, 9, 16, 1, 5).with_padding(Padding::Valid).unwrap(),
        dw(1, 6, 20, 8, 2, 3).with_padding(Padding::Same).unwrap(),
    ];
    let (mut yb, mut dxb, mut cdxb) = (Vec::new(), Vec::new(), Vec::new());
    for level in SimdLevel::available() {
        for s in shapes {
            let (x, w, b, dy) =
                (data(s.input_len(), 12), data(s.filter_len(), 13), data(s.c_out, 14), data(s.output_len(), 15));
            let run = |stream_min: usize, yb: &mut Vec<f32>, dxb: &mut Vec<f32>, cdxb: &mut Vec<f32>| {
                cache::with_stream_min(stream_min, || {
                    let y = aligned(yb, s.output_len());
                    assert_eq!(stream_dst(y, s.c_out, 1, 1), stream_min == 0 && s.c_out % 16 == 0);
                    forward_at(level, &s, &x, &w, Some(&b), Activation::Relu, y).unwrap();
                    let y = y.to_vec();
                    let dx = aligned(dxb, s.input_len());
                    backward_data_at(level, &s, &dy, &w, dx).unwrap();
                    let dx = dx.to_vec();
                    let cdx = aligned(cdxb, s.input_len());
                    let mut cdw = vec![f32::NAN; s.filter_len()];
                    combined_at(level, &s, &x, &dy, &w, cdx, &mut cdw).unwrap();
                    (y, dx, cdx.to_vec(), cdw)
                })
            };
            let cached = run(usize::MAX, &mut yb, &mut dxb, &mut cdxb);
            let streamed = run(0, &mut yb, &mut dxb, &mut cdxb);
            assert!(cached.0.iter().chain(&cached.1).all(|v| v.is_finite()), "{} {s}", level.name());
            assert_eq!(cached, streamed, "{} {s}: streamed stores", level.name());
        }
    }
}
