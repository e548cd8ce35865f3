//! Pooling: the SIMD/threaded kernels against the scalar `pool::reference`
//! loops, bit for bit, under every SIMD level this CPU has, on random shapes
//! (any window, stride, valid/same/explicit padding) and on inputs full of
//! ties (small integers), so the first-maximum tie rule is exercised. Each
//! fast call names its level (`*_at`), never the process-global one.

mod common;

use common::{bits, proptest_config};
use convnet_kernels::conv::Padding;
use convnet_kernels::pool::{self, reference, PoolOptions, PoolShape};
use convnet_kernels::simd::SimdLevel;
use convnet_tensor::Rng;
use proptest::prelude::*;

fn shape() -> impl Strategy<Value = PoolShape> {
    (1usize..=3, 1usize..=12, 1usize..=12, 1usize..=37, 1usize..=4, 1usize..=4, 1usize..=3, 1usize..=3, 0u8..3)
        .prop_filter_map("shape must validate", |(n, h, w, c, ph, pw, sh, sw, pad)| {
            let padding = match pad {
                0 => Padding::Valid,
                1 => Padding::Same,
                _ => Padding::Explicit { top: ph / 2, bottom: (ph - 1) / 2, left: (pw - 1) / 2, right: pw / 2 },
            };
            PoolShape::new(n, h, w, c, (ph, pw), (sh, sw), padding).ok()
        })
}

/// Shapes with PyTorch's options: dilation 1-3, `ceil_mode`,
/// `count_include_pad`, explicit padding up to half the window.
fn shape_with_options() -> impl Strategy<Value = PoolShape> {
    (
        (1usize..=2, 1usize..=12, 1usize..=12, 1usize..=19),
        (1usize..=3, 1usize..=3, 1usize..=3, 1usize..=3, 1usize..=3, 1usize..=3),
        (any::<bool>(), any::<bool>(), 0usize..=1, 0usize..=1),
    )
        .prop_filter_map(
            "shape must validate",
            |((n, h, w, c), (ph, pw, sh, sw, dh, dw), (ceil, incl, pt, pl))| {
                let padding = Padding::Explicit {
                    top: pt.min(ph / 2),
                    bottom: pt.min(ph / 2),
                    left: pl.min(pw / 2),
                    right: pl.min(pw / 2),
                };
                let o = PoolOptions::default().dilation(dh, dw).ceil_mode(ceil).count_include_pad(incl);
                PoolShape::new(n, h, w, c, (ph, pw), (sh, sw), padding).ok()?.with_options(o).ok()
            },
        )
}

/// Either uniform floats or small integers (many ties).
fn data(len: usize, seed: u64, ties: bool) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..len).map(|_| if ties { rng.below(3) as f32 } else { rng.uniform(-2.0, 2.0) }).collect()
}

/// Runs every pooling kernel fast and reference on `s` under every level.
fn check(s: &PoolShape, seed: u64, ties: bool) {
    let x = data(s.input_len(), seed, ties);
    let gy = data(s.output_len(), seed ^ 0x55, false);
    let (n, hw, c) = (s.n, s.h * s.w, s.c);
    let gg = data(n * c, seed ^ 0xaa, false);

    let mut want_y = vec![f32::NAN; s.output_len()];
    let mut want_am = vec![u32::MAX; s.output_len()];
    reference::max_pool2d_forward(s, &x, &mut want_y, &mut want_am).unwrap();
    let mut want_gx = vec![f32::NAN; s.input_len()];
    reference::max_pool2d_backward(s, &gy, &want_am, &mut want_gx).unwrap();
    let mut want_avg = vec![f32::NAN; s.output_len()];
    reference::avg_pool2d_forward(s, &x, &mut want_avg).unwrap();
    let mut want_avg_gx = vec![f32::NAN; s.input_len()];
    reference::avg_pool2d_backward(s, &gy, &mut want_avg_gx).unwrap();
    let mut want_g = vec![f32::NAN; n * c];
    reference::global_avg_pool_forward(n, hw, c, &x, &mut want_g).unwrap();
    let mut want_g_gx = vec![f32::NAN; s.input_len()];
    reference::global_avg_pool_backward(n, hw, c, &gg, &mut want_g_gx).unwrap();

    for level in SimdLevel::available() {
        let mut y = vec![f32::NAN; s.output_len()];
        let mut am = vec![u32::MAX; s.output_len()];
        pool::max_pool2d_forward_at(level, s, &x, &mut y, &mut am).unwrap();
        assert_eq!(bits(&y), bits(&want_y), "max forward {s} {level:?}");
        assert_eq!(am, want_am, "argmax {s} {level:?}");
        let mut gx = vec![f32::NAN; s.input_len()];
        pool::max_pool2d_backward_at(level, s, &gy, &am, &mut gx).unwrap();
        assert_eq!(bits(&gx), bits(&want_gx), "max backward {s} {level:?}");
        let mut avg = vec![f32::NAN; s.output_len()];
        pool::avg_pool2d_forward_at(level, s, &x, &mut avg).unwrap();
        assert_eq!(bits(&avg), bits(&want_avg), "avg forward {s} {level:?}");
        let mut agx = vec![f32::NAN; s.input_len()];
        pool::avg_pool2d_backward_at(level, s, &gy, &mut agx).unwrap();
        assert_eq!(bits(&agx), bits(&want_avg_gx), "avg backward {s} {level:?}");
        let mut g = vec![f32::NAN; n * c];
        pool::global_avg_pool_forward_at(level, n, hw, c, &x, &mut g).unwrap();
        assert_eq!(bits(&g), bits(&want_g), "global forward {s} {level:?}");
        let mut ggx = vec![f32::NAN; s.input_len()];
        pool::global_avg_pool_backward_at(level, n, hw, c, &gg, &mut ggx).unwrap();
        assert_eq!(bits(&ggx), bits(&want_g_gx), "global backward {s} {level:?}");
    }
}

/// The argmax really is the first maximum of its window in row-major order,
/// checked independently of both implementations.
fn check_argmax_definition(s: &PoolShape, seed: u64) {
    let x = data(s.input_len(), seed, true);
    let mut y = vec![f32::NAN; s.output_len()];
    let mut am = vec![u32::MAX; s.output_len()];
    pool::max_pool2d_forward(s, &x, &mut y, &mut am).unwrap();
    let (oh, ow, item) = (s.out_h(), s.out_w(), s.h * s.w * s.c);
    for n in 0..s.n {
        for oy in 0..oh {
            for ox in 0..ow {
                for ch in 0..s.c {
                    let mut first: Option<(f32, usize)> = None;
                    for ky in 0..s.ph {
                        for kx in 0..s.pw {
                            let (iy, ix) = ((oy * s.stride_h + ky) as isize, (ox * s.stride_w + kx) as isize);
                            let (iy, ix) = (iy - s.pad_top as isize, ix - s.pad_left as isize);
                            if iy < 0 || ix < 0 || iy >= s.h as isize || ix >= s.w as isize {
                                continue;
                            }
                            let i = (iy as usize * s.w + ix as usize) * s.c + ch;
                            let v = x[n * item + i];
                            if first.is_none_or(|(b, _)| v > b) {
                                first = Some((v, i));
                            }
                        }
                    }
                    let o = ((n * oh + oy) * ow + ox) * s.c + ch;
                    let (b, i) = first.expect("every window holds an input element");
                    assert_eq!((y[o], am[o] as usize), (b, i), "{s} at n{n} y{oy} x{ox} c{ch}");
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(proptest_config(48))]

    #[test]
    fn fast_pooling_equals_reference_bit_for_bit(s in shape(), seed in any::<u64>(), ties in any::<bool>()) {
        check(&s, seed, ties);
    }

    #[test]
    fn argmax_is_the_first_maximum_in_row_major_order(s in shape(), seed in any::<u64>()) {
        check_argmax_definition(&s, seed);
    }

    #[test]
    fn pooling_with_options_equals_reference_bit_for_bit(s in shape_with_options(), seed in any::<u64>(), ties in any::<bool>()) {
        check(&s, seed, ties);
    }

    /// Options that change nothing (`ceil_mode` where the size divides
    /// evenly, `count_include_pad` without padding) run the option kernels
    /// and must give exactly what the default kernels give.
    #[test]
    fn neutral_options_change_nothing(n in 1usize..=2, k in 1usize..=3, outs in 1usize..=5, c in 1usize..=9, seed in any::<u64>()) {
        let h = k + (outs - 1) * k;
        let plain = PoolShape::new(n, h, h, c, (k, k), (k, k), Padding::Valid).unwrap();
        let opts = plain.with_options(PoolOptions::default().ceil_mode(true).count_include_pad(true)).unwrap();
        prop_assert_eq!((opts.out_h(), opts.out_w()), (plain.out_h(), plain.out_w()));
        let x = data(plain.input_len(), seed, false);
        let run = |s: &PoolShape| {
            let (mut y, mut am, mut a) = (vec![f32::NAN; s.output_len()], vec![0u32; s.output_len()], vec![f32::NAN; s.output_len()]);
            pool::max_pool2d_forward(s, &x, &mut y, &mut am).unwrap();
            pool::avg_pool2d_forward(s, &x, &mut a).unwrap();
            let mut gx = vec![f32::NAN; s.input_len()];
            pool::avg_pool2d_backward(s, &a, &mut gx).unwrap();
            (bits(&y), am, bits(&a), bits(&gx))
        };
        prop_assert_eq!(run(&plain), run(&opts));
    }
}

#[test]
fn options_validate_and_size_as_pytorch_does() {
    let pad1 = Padding::Explicit { top: 1, bottom: 1, left: 1, right: 1 };
    // nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True) on 8x8: ceil((8+2-3)/2)+1 = 5
    // (floor mode: 4); the 5th window starts at row 7, inside the input.
    let s = PoolShape::new(1, 8, 8, 1, (3, 3), (2, 2), pad1).unwrap();
    assert_eq!(s.out_h(), 4);
    let c = s.with_options(PoolOptions::default().ceil_mode(true)).unwrap();
    assert_eq!((c.out_h(), c.out_w()), (5, 5));
    // On 5x5 with kernel 2, stride 2, padding 1: ceil((5+2-2)/2)+1 = 4, and 3*2 = 6 >= 5+1,
    // so the 4th window (all padding) is dropped: 3.
    let s5 = PoolShape::new(1, 5, 5, 1, (2, 2), (2, 2), pad1).unwrap();
    assert_eq!(s5.with_options(PoolOptions::default().ceil_mode(true)).unwrap().out_h(), 3);
    // On 7x7, stride 2, kernel 2, no padding: floor 3, ceil 4 (the last window half outside).
    let s = PoolShape::new(1, 7, 7, 1, (2, 2), (2, 2), Padding::Valid).unwrap();
    assert_eq!(s.with_options(PoolOptions::default().ceil_mode(true)).unwrap().out_h(), 4);
    // Dilation 2 of a 2-window spans 3: (7-3)/2+1 = 3.
    assert_eq!(s.with_options(PoolOptions::default().dilation(2, 2)).unwrap().out_h(), 3);
    assert!(s.with_options(PoolOptions::default().dilation(0, 1)).is_err());
    assert!(s.with_options(PoolOptions::default().dilation(9, 9)).is_err()); // window larger than the input
    assert!(s.to_string().contains("pool"));
    let shown = s.with_options(PoolOptions::default().ceil_mode(true)).unwrap().to_string();
    assert!(shown.contains("ceil_mode"), "{shown}");
}

/// The benchmarked shapes (the chapter's two pooling layers, cut to batch 3).
#[test]
fn chapter_layers_agree() {
    for (h, c) in [(26, 32), (11, 64)] {
        let s = PoolShape::new(3, h, h, c, (2, 2), (2, 2), Padding::Valid).unwrap();
        check(&s, 1, false);
        check(&s, 2, true);
    }
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let s = PoolShape::new(1, 4, 4, 2, (2, 2), (2, 2), Padding::Valid).unwrap();
    let x = vec![0.0; s.input_len()];
    let mut y = vec![0.0; s.output_len()];
    let mut am = vec![0u32; s.output_len()];
    assert!(pool::max_pool2d_forward(&s, &x[1..], &mut y, &mut am).is_err());
    assert!(pool::max_pool2d_forward(&s, &x, &mut y[1..], &mut am).is_err());
    assert!(pool::max_pool2d_forward(&s, &x, &mut y, &mut am[1..]).is_err());
    let mut gx = vec![0.0; s.input_len()];
    am[0] = s.input_len() as u32; // outside the image
    let err = pool::max_pool2d_backward(&s, &y, &am, &mut gx).unwrap_err().to_string();
    assert!(err.contains("pool 1x4x4x2"), "{err}");
    // Inside the image but not in its window, or the wrong channel: errors too,
    // from the fast kernel and the reference alike.
    for bad in [(2 * 4 + 2) * 2, 1u32] {
        let mut am = vec![0u32; s.output_len()];
        pool::max_pool2d_forward(&s, &x, &mut y, &mut am).unwrap();
        am[0] = bad;
        assert!(pool::max_pool2d_backward(&s, &y, &am, &mut gx).is_err(), "argmax {bad}");
        assert!(reference::max_pool2d_backward(&s, &y, &am, &mut gx).is_err(), "argmax {bad}");
    }
    assert!(pool::avg_pool2d_forward(&s, &x, &mut y[1..]).is_err());
    assert!(pool::avg_pool2d_backward(&s, &y, &mut gx[1..]).is_err());
    let mut bad = s;
    bad.c = 0;
    assert!(pool::avg_pool2d_forward(&bad, &x, &mut y).is_err());
    bad = s;
    bad.n = usize::MAX;
    assert!(pool::max_pool2d_forward(&bad, &x, &mut y, &mut am).is_err());
    assert!(PoolShape::new(1, 1, 1, 1, (2, 2), (1, 1), Padding::Valid).is_err());
    // A level this CPU cannot run is an error from every explicit-level entry point.
    for level in [SimdLevel::Portable, SimdLevel::Avx2, SimdLevel::Avx512].into_iter().filter(|l| !l.is_available()) {
        let simd_err = |r: convnet_kernels::Result<()>| matches!(r, Err(convnet_kernels::Error::Simd(_)));
        assert!(simd_err(pool::max_pool2d_forward_at(level, &s, &x, &mut y, &mut am)), "{level:?}");
        assert!(simd_err(pool::max_pool2d_backward_at(level, &s, &y, &am, &mut gx)), "{level:?}");
        assert!(simd_err(pool::avg_pool2d_forward_at(level, &s, &x, &mut y)), "{level:?}");
        assert!(simd_err(pool::avg_pool2d_backward_at(level, &s, &y, &mut gx)), "{level:?}");
        assert!(simd_err(pool::global_avg_pool_forward_at(level, 1, 16, 2, &x, &mut y[..2])), "{level:?}");
        assert!(simd_err(pool::global_avg_pool_backward_at(level, 1, 16, 2, &y[..2], &mut gx)), "{level:?}");
        println!("{} is not available here: its entry points return Error::Simd", level.name());
    }
}
