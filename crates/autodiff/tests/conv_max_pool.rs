//! `Tape::conv2d_max_pool2d`: the first layer's conv and 2x2 max pool as one
//! node against the same two ops recorded apart (whose backward already runs
//! the fused pooled backward-filter): the same pooled values and the same
//! filter and bias gradients, bit for bit; one node and one forward row in
//! the profile; and every case that must not fuse records nothing.

use convnet_autodiff::{Activation, Conv2dSpec, ConvAlgo, Padding, Params, PoolSpec, ProfilePass, Tape};
use convnet_tensor::{Rng, Shape, Tensor};
use proptest::prelude::*;

struct Run {
    y: Vec<f32>,
    dw: Vec<f32>,
    db: Vec<f32>,
    /// Forward profile rows: (scope, kernel).
    forward: Vec<(u32, &'static str)>,
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// `sum(r * maxpool(conv(x, w) + b))` with `x` data, fused or as two ops.
fn run(x: &Tensor, w: &Tensor, b: &Tensor, r: &Tensor, act: Activation, fused: bool) -> Run {
    let mut params = Params::new();
    let (wi, bi) = (params.add("w", w.clone()).unwrap(), params.add("b", b.clone()).unwrap());
    let mut tape = Tape::new();
    tape.set_profiling(true);
    let xv = tape.input(x.view()).unwrap();
    let (wv, bv) = (tape.param(&params, wi).unwrap(), tape.param(&params, bi).unwrap());
    let spec = Conv2dSpec::new().activation(act);
    let p = if fused {
        tape.conv2d_max_pool2d(xv, wv, Some(bv), spec, PoolSpec::new(2, 2)).unwrap().expect("the pair qualifies")
    } else {
        let y = tape.conv2d(xv, wv, Some(bv), spec).unwrap();
        tape.set_scope(1);
        tape.max_pool2d(y, PoolSpec::new(2, 2)).unwrap()
    };
    let y = tape.value(p).unwrap().data().to_vec();
    let rv = tape.input(r.view()).unwrap();
    let prod = tape.mul(p, rv).unwrap();
    let loss = tape.sum(prod).unwrap();
    tape.backward(loss, &mut params).unwrap();
    let entries = tape.profile().unwrap().entries();
    let timed =
        |e: &&convnet_autodiff::ProfileEntry| e.pass == ProfilePass::Forward && !["mul", "sum"].contains(&e.kernel);
    let forward = entries.iter().filter(timed).map(|e| (e.scope, e.kernel)).collect();
    let (dw, db) = (params.grad(wi).unwrap().data().to_vec(), params.grad(bi).unwrap().data().to_vec());
    Run { y, dw, db, forward }
}

fn case(n: usize, h: usize, w: usize, ci: usize, co: usize, k: usize, seed: u64) -> [Tensor; 4] {
    let mut rng = Rng::new(seed);
    let x = Tensor::uniform(Shape::nhwc(n, h, w, ci), 0.0, 1.0, &mut rng).unwrap();
    let f = Tensor::uniform(Shape::new(&[k, k, ci, co]).unwrap(), -0.5, 0.5, &mut rng).unwrap();
    let b = Tensor::uniform(Shape::vector(co), -0.2, 0.2, &mut rng).unwrap();
    let (oh, ow) = (h - k + 1, w - k + 1);
    let r = Tensor::uniform(Shape::nhwc(n, oh / 2, ow / 2, co), -1.0, 1.0, &mut rng).unwrap();
    [x, f, b, r]
}

fn same(a: &Run, b: &Run) {
    assert_eq!(bits(&a.y), bits(&b.y), "pooled values");
    assert_eq!(bits(&a.dw), bits(&b.dw), "filter gradient");
    assert_eq!(bits(&a.db), bits(&b.db), "bias gradient");
}

#[test]
fn the_chapter_first_layer_is_one_node_bit_identical_to_the_two_ops() {
    let [x, w, b, r] = case(8, 28, 28, 1, 32, 3, 1);
    let fused = run(&x, &w, &b, &r, Activation::Relu, true);
    let apart = run(&x, &w, &b, &r, Activation::Relu, false);
    same(&fused, &apart);
    assert_eq!(fused.forward, [(0, "conv_max_pool")]);
    assert_eq!(apart.forward, [(0, "direct"), (1, "max_pool2d")]);
}

#[test]
fn pairs_that_must_not_fuse_record_nothing() {
    let [x, w, b, _] = case(2, 10, 10, 1, 4, 3, 2);
    let mut params = Params::new();
    let (wi, bi) = (params.add("w", w.clone()).unwrap(), params.add("b", b.clone()).unwrap());
    let mut tape = Tape::new();
    let xv = tape.input(x.view()).unwrap();
    let xvar = tape.variable(x.view()).unwrap();
    let (wv, bv) = (tape.param(&params, wi).unwrap(), tape.param(&params, bi).unwrap());
    let relu = Conv2dSpec::new().relu();
    let pool = PoolSpec::new(2, 2);
    let none = |tape: &mut Tape, x, spec, pool| {
        let before = tape.len();
        let got = tape.conv2d_max_pool2d(x, wv, Some(bv), spec, pool).unwrap();
        assert!(got.is_none() && tape.len() == before, "{spec:?} {pool:?}");
    };
    none(&mut tape, xvar, relu, pool); // the input needs a gradient
    none(&mut tape, xv, relu.algo(ConvAlgo::Im2col), pool); // another forward algorithm
    none(&mut tape, xv, relu.backward_algo(ConvAlgo::Direct), pool); // an explicit backward
    none(&mut tape, xv, relu.padding(Padding::Same), pool);
    none(&mut tape, xv, relu.stride(1, 1), PoolSpec::new(3, 3));
    none(&mut tape, xv, relu, PoolSpec::new(2, 2).stride(1, 1));
    none(&mut tape, xv, relu, PoolSpec::new(2, 2).padding(Padding::Same));
    // A frozen filter with a trainable bias: the fused backward makes both.
    let wc = tape.constant(&params, wi).unwrap();
    let before = tape.len();
    assert!(tape.conv2d_max_pool2d(xv, wc, Some(bv), relu, pool).unwrap().is_none() && tape.len() == before);
    // Malformed shapes: nothing recorded; the two ops report the error.
    let w5 = tape.input(Tensor::zeros(Shape::new(&[3, 3, 2, 4]).unwrap()).view()).unwrap();
    let before = tape.len();
    assert!(tape.conv2d_max_pool2d(xv, w5, None, relu, pool).unwrap().is_none() && tape.len() == before);
    assert!(tape.conv2d(xv, w5, None, relu).is_err());
    // An explicit `direct` forward (with `Auto` backward passes) fuses.
    let direct = relu.algo(ConvAlgo::Direct).backward_algo(ConvAlgo::Auto);
    assert!(tape.conv2d_max_pool2d(xv, wv, Some(bv), direct, pool).unwrap().is_some());
}

#[test]
fn without_gradients_it_still_fuses_and_matches() {
    let [x, w, b, _] = case(3, 12, 11, 2, 9, 3, 3);
    let mut params = Params::new();
    let (wi, bi) = (params.add("w", w).unwrap(), params.add("b", b).unwrap());
    let mut values = Vec::new();
    for fused in [true, false] {
        let mut tape = Tape::new();
        tape.set_training(false);
        let xv = tape.input(x.view()).unwrap();
        let (wv, bv) = (tape.param(&params, wi).unwrap(), tape.param(&params, bi).unwrap());
        let spec = Conv2dSpec::new().relu();
        let p = if fused {
            tape.conv2d_max_pool2d(xv, wv, Some(bv), spec, PoolSpec::new(2, 2)).unwrap().unwrap()
        } else {
            let y = tape.conv2d(xv, wv, Some(bv), spec).unwrap();
            tape.max_pool2d(y, PoolSpec::new(2, 2)).unwrap()
        };
        values.push(bits(tape.value(p).unwrap().data()));
    }
    assert_eq!(values[0], values[1]);
}

proptest! {
    // 24 cases by default; `PROPTEST_CASES=2000` runs a longer search.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(24),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_first_layers_match_the_two_ops_bit_for_bit(
        n in 1usize..3, k in 1usize..4, eh in 1usize..8, ew in 1usize..8, ci in 1usize..4, co in 1usize..40,
        relu in any::<bool>(), seed in any::<u64>(),
    ) {
        let [x, w, b, r] = case(n, k + eh, k + ew, ci, co, k, seed);
        let act = if relu { Activation::Relu } else { Activation::Linear };
        let fused = run(&x, &w, &b, &r, act, true);
        let apart = run(&x, &w, &b, &r, act, false);
        same(&fused, &apart);
    }
}
