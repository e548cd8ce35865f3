//! The first layer's fused backward (`conv (relu) -> 2x2 max pool` with a
//! data input: filter and bias gradients straight from the pooled gradient)
//! against the unfused rules (the same graph with an explicit backward
//! algorithm, which the tape never fuses), and the cases that must not fuse.

use convnet_autodiff::{Activation, Conv2dSpec, ConvAlgo, Params, PoolSpec, ProfilePass, Tape};
use convnet_tensor::{Rng, Shape, Tensor};
use proptest::prelude::*;

struct Grads {
    w: Vec<f32>,
    b: Vec<f32>,
    /// The kernel of the first conv's backward_filter row (scope 0), if any.
    kernel: Option<&'static str>,
    /// Did the pool scatter?
    scattered: bool,
}

/// `sum(r * maxpool(conv(x, w) + b))`, `x` data; `second` adds another
/// consumer of the conv output (recorded between the conv and the pool).
fn run(x: &Tensor, w: &Tensor, b: &Tensor, r: &Tensor, act: Activation, algo: ConvAlgo, second: bool) -> Grads {
    let mut params = Params::new();
    let (wi, bi) = (params.add("w", w.clone()).unwrap(), params.add("b", b.clone()).unwrap());
    let mut tape = Tape::new();
    tape.set_profiling(true);
    let xv = tape.input(x.view()).unwrap();
    let (wv, bv) = (tape.param(&params, wi).unwrap(), tape.param(&params, bi).unwrap());
    let y = tape.conv2d(xv, wv, Some(bv), Conv2dSpec::new().activation(act).backward_algo(algo)).unwrap();
    let extra = second.then(|| tape.tanh(y).unwrap());
    tape.set_scope(1);
    let p = tape.max_pool2d(y, PoolSpec::new(2, 2)).unwrap();
    let rv = tape.input(r.view()).unwrap();
    let prod = tape.mul(p, rv).unwrap();
    let mut loss = tape.sum(prod).unwrap();
    if let Some(e) = extra {
        let m = tape.mean(e).unwrap();
        loss = tape.add(loss, m).unwrap();
    }
    tape.backward(loss, &mut params).unwrap();
    let entries = tape.profile().unwrap().entries();
    let kernel = entries.iter().find(|e| e.scope == 0 && e.pass == ProfilePass::BackwardFilter).map(|e| e.kernel);
    let scattered = entries.iter().any(|e| e.pass == ProfilePass::BackwardData && e.kernel == "max_pool2d");
    let w = params.grad(wi).unwrap().data().to_vec();
    let b = params.grad(bi).unwrap().data().to_vec();
    Grads { w, b, kernel, scattered }
}

fn close(what: &str, got: &[f32], want: &[f32]) {
    let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= 1e-5 * scale, "{what}[{i}]: fused {g} vs unfused {w}");
    }
}

fn case(n: usize, h: usize, w: usize, ci: usize, co: usize, k: usize, seed: u64) -> [Tensor; 4] {
    let mut rng = Rng::new(seed);
    let x = Tensor::uniform(Shape::nhwc(n, h, w, ci), 0.0, 1.0, &mut rng).unwrap();
    let f = Tensor::uniform(Shape::new(&[k, k, ci, co]).unwrap(), -0.5, 0.5, &mut rng).unwrap();
    let b = Tensor::uniform(Shape::vector(co), -0.2, 0.2, &mut rng).unwrap();
    let (oh, ow) = (h - k + 1, w - k + 1); // the conv's output; the pool halves it
    let r = Tensor::uniform(Shape::nhwc(n, oh / 2, ow / 2, co), -1.0, 1.0, &mut rng).unwrap();
    [x, f, b, r]
}

#[test]
fn the_chapter_first_layer_runs_fused_and_matches_the_unfused_rules() {
    let [x, w, b, r] = case(8, 28, 28, 1, 32, 3, 1);
    let fused = run(&x, &w, &b, &r, Activation::Relu, ConvAlgo::Auto, false);
    let plain = run(&x, &w, &b, &r, Activation::Relu, ConvAlgo::Direct, false);
    assert_eq!(fused.kernel, Some("max_pooled"));
    assert!(!fused.scattered, "the fused pass replaces the pool's scatter");
    assert_eq!(plain.kernel, Some("direct"), "an explicit backward algorithm is honoured");
    assert!(plain.scattered);
    close("dw", &fused.w, &plain.w);
    close("db", &fused.b, &plain.b);
}

#[test]
fn a_second_consumer_of_the_conv_output_keeps_the_unfused_rules() {
    let [x, w, b, r] = case(2, 10, 9, 2, 5, 3, 2);
    let g = run(&x, &w, &b, &r, Activation::Relu, ConvAlgo::Auto, true);
    assert_ne!(g.kernel, Some("max_pooled"));
    assert!(g.scattered);
    let plain = run(&x, &w, &b, &r, Activation::Relu, ConvAlgo::Direct, true);
    close("dw", &g.w, &plain.w);
    close("db", &g.b, &plain.b);
}

proptest! {
    // 24 cases by default; `PROPTEST_CASES=2000` runs a longer search.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(24),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_first_layers_match_the_unfused_rules(
        n in 1usize..3, k in 1usize..4, eh in 1usize..8, ew in 1usize..8, ci in 1usize..4, co in 1usize..20,
        relu in any::<bool>(), seed in any::<u64>(),
    ) {
        let [x, w, b, r] = case(n, k + eh, k + ew, ci, co, k, seed);
        let act = if relu { Activation::Relu } else { Activation::Linear };
        let fused = run(&x, &w, &b, &r, act, ConvAlgo::Auto, false);
        let plain = run(&x, &w, &b, &r, act, ConvAlgo::Direct, false);
        prop_assert_eq!(fused.kernel, Some("max_pooled"));
        close("dw", &fused.w, &plain.w);
        close("db", &fused.b, &plain.b);
    }
}
