//! One full training step of the chapter's model (Conv2D 32 3x3 relu,
//! MaxPool 2, Conv2D 64 3x3 relu, MaxPool 2, Conv2D 64 3x3 relu, Flatten,
//! Dense 64 relu, Dense 10, softmax cross-entropy; 28x28x1 input; batch 64):
//! forward, backward and RMSprop update through the autodiff tape, against
//! the same kernel calls (same shapes, same order, same `Auto` algorithms)
//! made directly on preallocated buffers, plus the same RMSprop update.
//!
//! `tape - kernels_only` is the framework's own cost: recording nodes,
//! copying parameters onto the tape, pooled buffers, gradient routing and
//! bookkeeping. The target is under 5% of the step.
//!
//! On a shared, loaded machine two criterion groups measured minutes apart
//! can differ by more than that overhead, so after criterion the bench also
//! runs a paired measurement: tape step and kernels-only step alternately,
//! 300 pairs, and prints the medians and the median of the per-pair ratio,
//! which slow drifts in background load cancel out of. It also times the
//! kernels-only step with the relu masks of the two pooled conv layers
//! applied in the textbook place (full-size, after the pooling scatter)
//! instead of on the pooled gradient, as the tape does.
//!
//! ```text
//! cargo bench -p convnet-benches --bench train_step
//! cargo bench -p convnet-benches --bench train_step -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! Sample size 40, warm-up 2 s and measurement 8 s are the defaults of the
//! group config at the bottom; the command-line flags override them.

use convnet_autodiff::{Activation, Conv2dSpec, ParamId, Params, PoolSpec, Tape};
use convnet_kernels::activation::relu_backward_inplace;
use convnet_kernels::conv::{self, ConvAlgo, ConvShape, Padding};
use convnet_kernels::dense::{self, DenseShape};
use convnet_kernels::loss::sparse_softmax_cross_entropy;
use convnet_kernels::pool::{self, PoolShape};
use convnet_optim::{Optimizer, RMSprop};
use convnet_tensor::{Rng, Shape, Tensor};
use criterion::{black_box, criterion_group, Criterion};
use std::time::Duration;

const BATCH: usize = 64;

/// The chapter's parameters, Keras names and initialisers.
fn model(rng: &mut Rng) -> (Params, Vec<ParamId>) {
    let mut p = Params::new();
    let mut glorot = |name: &str, dims: &[usize], p: &mut Params| {
        p.add(name, Tensor::glorot_uniform(Shape::new(dims).unwrap(), rng).unwrap()).unwrap()
    };
    let mut ids = Vec::new();
    for (name, dims) in [
        ("conv2d", &[3, 3, 1, 32][..]),
        ("conv2d_1", &[3, 3, 32, 64]),
        ("conv2d_2", &[3, 3, 64, 64]),
        ("dense", &[576, 64]),
        ("dense_1", &[64, 10]),
    ] {
        ids.push(glorot(&format!("{name}/kernel"), dims, &mut p));
        let units = *dims.last().unwrap();
        ids.push(p.add(format!("{name}/bias"), Tensor::zeros(Shape::vector(units))).unwrap());
    }
    (p, ids)
}

fn tape_step(tape: &mut Tape, params: &mut Params, ids: &[ParamId], opt: &mut RMSprop, x: &Tensor, y: &[u32]) -> f32 {
    tape.reset();
    params.zero_grad();
    let p = &*params;
    let xv = tape.input(x.view()).unwrap();
    let w = |t: &mut Tape, i: usize| t.param(p, ids[i]).unwrap();
    let relu = Conv2dSpec::new().relu();
    let (k, b) = (w(tape, 0), w(tape, 1));
    let h = tape.conv2d(xv, k, Some(b), relu).unwrap();
    let h = tape.max_pool2d(h, PoolSpec::new(2, 2)).unwrap();
    let (k, b) = (w(tape, 2), w(tape, 3));
    let h = tape.conv2d(h, k, Some(b), relu).unwrap();
    let h = tape.max_pool2d(h, PoolSpec::new(2, 2)).unwrap();
    let (k, b) = (w(tape, 4), w(tape, 5));
    let h = tape.conv2d(h, k, Some(b), relu).unwrap();
    let h = tape.flatten(h).unwrap();
    let (k, b) = (w(tape, 6), w(tape, 7));
    let h = tape.dense(h, k, Some(b), Activation::Relu).unwrap();
    let (k, b) = (w(tape, 8), w(tape, 9));
    let logits = tape.dense(h, k, Some(b), Activation::Linear).unwrap();
    let loss = tape.sparse_softmax_cross_entropy(logits, y).unwrap();
    let value = tape.scalar(loss).unwrap();
    tape.backward(loss, params).unwrap();
    opt.begin_step().unwrap();
    params.update_with(|i, w, g| opt.update(i, w, g)).unwrap();
    value
}

/// Buffers and shapes for the kernels-only step.
struct Raw {
    c1: ConvShape,
    p1: PoolShape,
    c2: ConvShape,
    p2: PoolShape,
    c3: ConvShape,
    d1: DenseShape,
    d2: DenseShape,
    w: Vec<Vec<f32>>,
    g: Vec<Vec<f32>>,
    act: [Vec<f32>; 7],  // y1, a1, y2, a2, y3, h, logits
    grad: [Vec<f32>; 7], // same shapes
    argmax: [Vec<u32>; 2],
}

impl Raw {
    fn new(params: &Params) -> Raw {
        let c1 = ConvShape::nhwc(BATCH, 28, 28, 1).filter(3, 3, 32).build().unwrap();
        let p1 = PoolShape::new(BATCH, 26, 26, 32, (2, 2), (2, 2), Padding::Valid).unwrap();
        let c2 = ConvShape::nhwc(BATCH, 13, 13, 32).filter(3, 3, 64).build().unwrap();
        let p2 = PoolShape::new(BATCH, 11, 11, 64, (2, 2), (2, 2), Padding::Valid).unwrap();
        let c3 = ConvShape::nhwc(BATCH, 5, 5, 64).filter(3, 3, 64).build().unwrap();
        let d1 = DenseShape { batch: BATCH, inputs: 576, outputs: 64 };
        let d2 = DenseShape { batch: BATCH, inputs: 64, outputs: 10 };
        let lens = [
            c1.output_len(),
            p1.output_len(),
            c2.output_len(),
            p2.output_len(),
            c3.output_len(),
            BATCH * 64,
            BATCH * 10,
        ];
        let w: Vec<Vec<f32>> = params.iter().map(|(_, _, v, _)| v.data().to_vec()).collect();
        let g = w.iter().map(|w| vec![0.0; w.len()]).collect();
        Raw {
            c1,
            p1,
            c2,
            p2,
            c3,
            d1,
            d2,
            w,
            g,
            act: lens.map(|n| vec![0.0; n]),
            grad: lens.map(|n| vec![0.0; n]),
            argmax: [vec![0; p1.output_len()], vec![0; p2.output_len()]],
        }
    }

    /// The tape step's kernel calls, made directly. With `pooled_masks`, the
    /// relu masks of the two conv layers that feed max pooling are applied to
    /// the pooled gradients before the scatter, as the tape does; without, to
    /// the full-size gradients after it (the textbook order).
    fn step_with(&mut self, opt: &mut RMSprop, x: &Tensor, y: &[u32], pooled_masks: bool) -> f32 {
        let (a, relu, lin) = (ConvAlgo::Auto, Activation::Relu, Activation::Linear);
        let (w, g, act, grad) = (&self.w, &mut self.g, &mut self.act, &mut self.grad);
        let [y1, a1, y2, a2, y3, h, logits] = act;
        let [gy1, ga1, gy2, ga2, gy3, gh, glogits] = grad;
        let [am1, am2] = &mut self.argmax;
        // Forward.
        conv::conv2d_forward(a, &self.c1, x.data(), &w[0], Some(&w[1]), relu, y1).unwrap();
        pool::max_pool2d_forward(&self.p1, y1, a1, am1).unwrap();
        conv::conv2d_forward(a, &self.c2, a1, &w[2], Some(&w[3]), relu, y2).unwrap();
        pool::max_pool2d_forward(&self.p2, y2, a2, am2).unwrap();
        conv::conv2d_forward(a, &self.c3, a2, &w[4], Some(&w[5]), relu, y3).unwrap();
        dense::dense_forward(&self.d1, y3, &w[6], Some(&w[7]), relu, h).unwrap();
        dense::dense_forward(&self.d2, h, &w[8], Some(&w[9]), lin, logits).unwrap();
        let loss = sparse_softmax_cross_entropy(10, logits, y, glogits).unwrap();
        // Backward.
        let (g8, g9) = g.split_at_mut(9);
        dense::dense_backward_weights(&self.d2, h, glogits, &mut g8[8], Some(&mut g9[0])).unwrap();
        dense::dense_backward_data(&self.d2, glogits, &w[8], gh).unwrap();
        relu_backward_inplace(h, gh).unwrap();
        let (g6, g7) = g.split_at_mut(7);
        dense::dense_backward_weights(&self.d1, y3, gh, &mut g6[6], Some(&mut g7[0])).unwrap();
        dense::dense_backward_data(&self.d1, gh, &w[6], gy3).unwrap();
        relu_backward_inplace(y3, gy3).unwrap();
        conv::conv2d_backward_bias(&self.c3, gy3, &mut g[5]).unwrap();
        conv::conv2d_backward_filter(a, &self.c3, a2, gy3, &mut g[4]).unwrap();
        conv::conv2d_backward_data(a, &self.c3, gy3, &w[4], ga2).unwrap();
        if pooled_masks {
            mask(ga2, a2);
            pool::max_pool2d_backward(&self.p2, ga2, am2, gy2).unwrap();
        } else {
            pool::max_pool2d_backward(&self.p2, ga2, am2, gy2).unwrap();
            relu_backward_inplace(y2, gy2).unwrap();
        }
        conv::conv2d_backward_bias(&self.c2, gy2, &mut g[3]).unwrap();
        conv::conv2d_backward_filter(a, &self.c2, a1, gy2, &mut g[2]).unwrap();
        conv::conv2d_backward_data(a, &self.c2, gy2, &w[2], ga1).unwrap();
        if pooled_masks {
            mask(ga1, a1);
            pool::max_pool2d_backward(&self.p1, ga1, am1, gy1).unwrap();
        } else {
            pool::max_pool2d_backward(&self.p1, ga1, am1, gy1).unwrap();
            relu_backward_inplace(y1, gy1).unwrap();
        }
        conv::conv2d_backward_bias(&self.c1, gy1, &mut g[1]).unwrap();
        conv::conv2d_backward_filter(a, &self.c1, x.data(), gy1, &mut g[0]).unwrap();
        // Update.
        opt.begin_step().unwrap();
        for (i, (w, g)) in self.w.iter_mut().zip(&self.g).enumerate() {
            opt.update(i, w, g).unwrap();
        }
        loss
    }

    /// The same computation as the tape step.
    fn step(&mut self, opt: &mut RMSprop, x: &Tensor, y: &[u32]) -> f32 {
        self.step_with(opt, x, y, true)
    }
}

/// `g = 0` where the pooled relu output is not positive.
fn mask(g: &mut [f32], pooled: &[f32]) {
    for (g, &p) in g.iter_mut().zip(pooled) {
        if p <= 0.0 {
            *g = 0.0;
        }
    }
}

fn bench(c: &mut Criterion) {
    let mut rng = Rng::new(7);
    let (mut params, ids) = model(&mut rng);
    let x = Tensor::uniform(Shape::nhwc(BATCH, 28, 28, 1), 0.0, 1.0, &mut rng).unwrap();
    let y: Vec<u32> = (0..BATCH).map(|_| rng.below(10) as u32).collect();
    let mut raw = Raw::new(&params);
    let mut tape = Tape::new();
    let (mut opt_tape, mut opt_raw) = (RMSprop::default(), RMSprop::default());

    // Both paths compute the same first loss.
    let l_tape = tape_step(&mut tape, &mut params, &ids, &mut opt_tape, &x, &y);
    let l_raw = raw.step(&mut opt_raw, &x, &y);
    assert!((l_tape - l_raw).abs() <= 1e-5 * l_tape.abs(), "tape {l_tape} vs kernels {l_raw}");

    let mut group = c.benchmark_group("train_step_b64");
    // Interleave the two so background load hits both alike.
    group.bench_function("tape", |b| {
        b.iter(|| black_box(tape_step(&mut tape, &mut params, &ids, &mut opt_tape, &x, &y)))
    });
    group.bench_function("kernels_only", |b| b.iter(|| black_box(raw.step(&mut opt_raw, &x, &y))));
    group.bench_function("tape_again", |b| {
        b.iter(|| black_box(tape_step(&mut tape, &mut params, &ids, &mut opt_tape, &x, &y)))
    });
    group.bench_function("kernels_only_again", |b| b.iter(|| black_box(raw.step(&mut opt_raw, &x, &y))));
    group.finish();
}

/// Alternating tape / kernels-only steps; prints medians and the median ratio.
fn paired() {
    let mut rng = Rng::new(7);
    let (mut params, ids) = model(&mut rng);
    let x = Tensor::uniform(Shape::nhwc(BATCH, 28, 28, 1), 0.0, 1.0, &mut rng).unwrap();
    let y: Vec<u32> = (0..BATCH).map(|_| rng.below(10) as u32).collect();
    let mut raw = Raw::new(&params);
    let mut tape = Tape::new();
    let (mut opt_tape, mut opt_raw) = (RMSprop::default(), RMSprop::default());
    let mut naive = Raw::new(&params);
    let mut opt_naive = RMSprop::default();
    let (mut t_tape, mut t_raw, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    let (mut t_naive, mut gain) = (Vec::new(), Vec::new());
    for i in 0..320 {
        let t = std::time::Instant::now();
        black_box(tape_step(&mut tape, &mut params, &ids, &mut opt_tape, &x, &y));
        let a = t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        black_box(raw.step(&mut opt_raw, &x, &y));
        let b = t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        black_box(naive.step_with(&mut opt_naive, &x, &y, false));
        let c = t.elapsed().as_secs_f64();
        if i >= 20 {
            t_tape.push(a);
            t_raw.push(b);
            ratio.push(a / b);
            t_naive.push(c);
            gain.push(b / c);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (mt, mr, mq) = (median(&mut t_tape), median(&mut t_raw), median(&mut ratio));
    let (mn, mg) = (median(&mut t_naive), median(&mut gain));
    println!(
        "paired (300 alternating steps): tape median {:.2} ms (min {:.2}), kernels only median {:.2} ms (min {:.2}); \
         median per-pair ratio {mq:.4} => framework overhead {:+.1}%",
        mt * 1e3,
        t_tape[0] * 1e3,
        mr * 1e3,
        t_raw[0] * 1e3,
        (mq - 1.0) * 100.0
    );
    println!(
        "paired: kernels only with full-size relu masks after the pooling scatter median {:.2} ms; \
         masking the pooled gradient instead: median per-pair ratio {mg:.4} ({:+.1}%)",
        mn * 1e3,
        (mg - 1.0) * 100.0
    );
}

criterion_group! {
    name = benches;
    // Defaults only: criterion applies the command line after this config,
    // so `-- --warm-up-time 1 --measurement-time 3 --sample-size 20` win.
    config = Criterion::default()
        .sample_size(40)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(8));
    targets = bench
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    paired();
}
