//! Golden values from PyTorch, the max-pooling tie convention, inference
//! mode, and every documented error.

use convnet_autodiff::{Activation, Conv2dSpec, Error, Padding, Params, PoolSpec, Tape};
use convnet_tensor::{Shape, Tensor};

fn vals(n: usize, a: usize, m: usize, off: f64, div: f64) -> Vec<f32> {
    (0..n).map(|i| (((i * a) % m) as f64 - off) as f32 / div as f32).collect()
}

fn assert_close(what: &str, got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!((g as f64 - w).abs() <= tol * (1.0 + w.abs()), "{what}[{i}]: got {g}, PyTorch says {w}");
    }
}

/// Conv2d (stride 2, `same`, fused relu, bias) forward and gradients, and the
/// softmax cross-entropy, against PyTorch 2.15 (float64). The script, run
/// with `~/.cache/convnet-anchors-venv/bin/python`:
///
/// ```python
/// import torch
/// def vals(n, a, m, off, div):
///     return [((i * a) % m - off) / div for i in range(n)]
/// x = torch.tensor(vals(50, 7, 11, 5, 4.0), dtype=torch.float64).reshape(1, 5, 5, 2).requires_grad_()
/// w = torch.tensor(vals(54, 5, 13, 6, 8.0), dtype=torch.float64).reshape(3, 3, 2, 3).requires_grad_()
/// b = torch.tensor([0.1, -0.2, 0.05], dtype=torch.float64, requires_grad=True)
/// y = torch.nn.functional.conv2d(x.permute(0, 3, 1, 2), w.permute(3, 2, 0, 1), b, stride=2, padding=1)
/// y = torch.relu(y).permute(0, 2, 3, 1)  # NHWC [1, 3, 3, 3]
/// r = torch.tensor(vals(27, 3, 7, 3, 2.0), dtype=torch.float64).reshape(1, 3, 3, 3)
/// (r * y).sum().backward()
/// print("y =", [round(v, 10) for v in y.flatten().tolist()])
/// print("dx =", [round(v, 10) for v in x.grad.flatten().tolist()])
/// print("dw =", [round(v, 10) for v in w.grad.flatten().tolist()])
/// print("db =", [round(v, 10) for v in b.grad.flatten().tolist()])
/// logits = torch.tensor([[1.0, 2.0, 0.5, -1.0], [0.3, -0.7, 2.2, 0.0], [5.0, 5.0, -3.0, 1.0]],
///                       dtype=torch.float64, requires_grad=True)
/// ce = torch.nn.functional.cross_entropy(logits, torch.tensor([1, 2, 0]))
/// ce.backward()
/// print("ce =", round(ce.item(), 10))
/// print("dlogits =", [round(v, 10) for v in logits.grad.flatten().tolist()])
/// ```
///
/// Its output is pasted below. (PyTorch pads 1 on each side, which is what
/// Keras `same` gives for a 5-wide input, 3-wide window and stride 2.)
#[test]
fn golden_conv2d_and_cross_entropy_match_pytorch() {
    const Y: [f64; 27] = [
        1.225, 0.0, 1.33125, 0.0, 0.0, 1.39375, 0.1625, 0.0, 1.7375, 0.0, 0.0, 0.0, 0.0, 2.55, 0.0, 1.1625, 0.0, 0.0,
        0.0, 0.925, 0.58125, 2.75625, 0.0, 0.0, 0.0, 0.0, 1.7375,
    ];
    const DX: [f64; 50] = [
        -0.5625, -0.5625, -0.9375, -1.1875, 0.75, 0.5, 0.625, -0.3125, -0.1875, -0.0625, 1.875, -0.5625, -0.875, -1.0,
        -0.5625, 0.9375, 0.3125, -0.5, -0.25, -0.125, 0.0, 0.0, -0.125, 0.0, 0.125, 0.25, 0.375, -0.3125, 0.0, 0.0,
        -0.6875, -0.8125, 1.625, 1.25, 0.4375, 0.1875, -0.5625, -1.875, 0.625, 0.375, -0.625, -0.75, -2.0, 1.5625,
        0.5625, 0.1875, -0.5625, -1.1875, 0.75, 0.5,
    ];
    const DW: [f64; 54] = [
        0.375, 0.25, -1.25, 1.875, -0.25, -0.25, -0.75, 1.625, 0.25, 0.75, -0.625, -0.625, -1.875, -0.125, -0.125,
        -0.375, 1.75, -0.625, -0.625, -0.625, 1.0, 0.375, 0.25, -2.5, 3.25, -0.25, -2.375, -1.125, 1.625, 1.75, 1.5,
        -0.625, -1.375, -3.75, -0.125, 1.75, -0.375, -0.125, -0.5, 0.5, -0.625, 0.5, 0.375, 0.25, -1.625, 1.375, -0.25,
        -2.125, -0.75, 0.625, 1.5, 0.75, 0.125, -1.75,
    ];
    const DB: [f64; 3] = [-2.5, -0.5, 0.0];
    const CE: f64 = 0.4905828046;
    const DLOGITS: [f64; 12] = [
        0.0747359393,
        -0.1301799875,
        0.0453296386,
        0.0101144095,
        0.03790208,
        0.013943396,
        -0.0799240274,
        0.0280785515,
        -0.1682065647,
        0.1651267686,
        5.53939e-05,
        0.0030244023,
    ];

    for algo in [convnet_autodiff::ConvAlgo::Auto, convnet_autodiff::ConvAlgo::Reference] {
        let mut tape = Tape::new();
        let mut params = Params::new();
        let x = Tensor::from_slice(Shape::nhwc(1, 5, 5, 2), &vals(50, 7, 11, 5.0, 4.0)).unwrap();
        let w = params
            .add("w", Tensor::from_slice(Shape::new(&[3, 3, 2, 3]).unwrap(), &vals(54, 5, 13, 6.0, 8.0)).unwrap())
            .unwrap();
        let b = params.add("b", Tensor::from_slice(Shape::vector(3), &[0.1, -0.2, 0.05]).unwrap()).unwrap();
        let r = Tensor::from_slice(Shape::nhwc(1, 3, 3, 3), &vals(27, 3, 7, 3.0, 2.0)).unwrap();
        let xv = tape.variable(x.view()).unwrap();
        let (wv, bv) = (tape.param(&params, w).unwrap(), tape.param(&params, b).unwrap());
        let spec = Conv2dSpec::new().stride(2, 2).padding(Padding::Same).relu().algo(algo);
        let y = tape.conv2d(xv, wv, Some(bv), spec).unwrap();
        assert_close("y", tape.value(y).unwrap().data(), &Y, 1e-5);
        let rv = tape.input(r.view()).unwrap();
        let p = tape.mul(y, rv).unwrap();
        let m = tape.mean(p).unwrap(); // sum / 27
        tape.backward(m, &mut params).unwrap();
        let scale = |g: &[f32]| g.iter().map(|&g| g * 27.0).collect::<Vec<f32>>();
        assert_close("dx", &scale(tape.grad(xv).unwrap().data()), &DX, 1e-5);
        assert_close("dw", &scale(params.grad(w).unwrap().data()), &DW, 1e-5);
        assert_close("db", &scale(params.grad(b).unwrap().data()), &DB, 1e-5);
    }

    let logits = [1.0, 2.0, 0.5, -1.0, 0.3, -0.7, 2.2, 0.0, 5.0, 5.0, -3.0, 1.0];
    let mut tape = Tape::new();
    let l = tape.variable(Tensor::from_slice(Shape::matrix(3, 4), &logits).unwrap().view()).unwrap();
    let loss = tape.sparse_softmax_cross_entropy(l, &[1, 2, 0]).unwrap();
    assert_close("ce", &[tape.scalar(loss).unwrap()], &[CE], 1e-6);
    tape.backward(loss, &mut Params::new()).unwrap();
    assert_close("dlogits", tape.grad(l).unwrap().data(), &DLOGITS, 1e-6);

    // The dense-target form gives the same with one-hot rows.
    let mut onehot = vec![0.0f32; 12];
    for (row, &c) in [1usize, 2, 0].iter().enumerate() {
        onehot[row * 4 + c] = 1.0;
    }
    let mut tape = Tape::new();
    let l = tape.variable(Tensor::from_slice(Shape::matrix(3, 4), &logits).unwrap().view()).unwrap();
    let t = tape.input(Tensor::from_slice(Shape::matrix(3, 4), &onehot).unwrap().view()).unwrap();
    let loss = tape.softmax_cross_entropy(l, t).unwrap();
    assert_close("ce (one-hot)", &[tape.scalar(loss).unwrap()], &[CE], 1e-6);
    tape.backward(loss, &mut Params::new()).unwrap();
    assert_close("dlogits (one-hot)", tape.grad(l).unwrap().data(), &DLOGITS, 1e-6);
}

/// Exact ties in a max-pooling window: the whole gradient goes to the first
/// maximum in row-major window order, none to the others.
#[test]
fn max_pool_ties_go_to_the_first_maximum() {
    // One 4x4 channel, 2x2 windows:
    //   window (0,0): all equal 1.0           -> winner (0,0)
    //   window (0,1): max 3.0 at (0,3),(1,2)  -> winner (0,3) (row 0 before row 1)
    //   window (1,0): max 2.0 at (3,0),(3,1)  -> winner (3,0)
    //   window (1,1): single max at (3,3)
    #[rustfmt::skip]
    let x = [
        1.0, 1.0, 0.0, 3.0,
        1.0, 1.0, 3.0, 0.0,
        0.0, 0.0, 1.0, 1.0,
        2.0, 2.0, 1.0, 5.0,
    ];
    let mut tape = Tape::new();
    let xv = tape.variable(Tensor::from_slice(Shape::nhwc(1, 4, 4, 1), &x).unwrap().view()).unwrap();
    let y = tape.max_pool2d(xv, PoolSpec::new(2, 2)).unwrap();
    assert_eq!(tape.value(y).unwrap().data(), &[1.0, 3.0, 2.0, 5.0]);
    let g = tape.input(Tensor::from_slice(Shape::nhwc(1, 2, 2, 1), &[10.0, 20.0, 30.0, 40.0]).unwrap().view()).unwrap();
    let p = tape.mul(y, g).unwrap();
    let loss = tape.mean(p).unwrap();
    tape.backward(loss, &mut Params::new()).unwrap();
    let grad: Vec<f32> = tape.grad(xv).unwrap().data().iter().map(|g| g * 4.0).collect();
    #[rustfmt::skip]
    let want = [
        10.0, 0.0, 0.0, 20.0,
        0.0, 0.0, 0.0, 0.0,
        0.0, 0.0, 0.0, 0.0,
        30.0, 0.0, 0.0, 40.0,
    ];
    assert_eq!(grad, want);
}

fn tiny() -> (Tape, Params, convnet_autodiff::ParamId) {
    let mut params = Params::new();
    let w = params.add("w", Tensor::full(Shape::matrix(3, 2), 0.5)).unwrap();
    (Tape::new(), params, w)
}

#[test]
fn shape_mismatches_name_the_op_and_shapes() {
    let (mut tape, params, w) = tiny();
    let x = tape.input(Tensor::zeros(Shape::matrix(4, 5)).view()).unwrap();
    let wv = tape.param(&params, w).unwrap();
    let e = tape.dense(x, wv, None, Activation::Linear).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::Shape { op: "dense", .. }), "{e:?}");
    assert!(msg.contains("(3, 2)") && msg.contains("(4, 5)"), "{msg}");

    let img = tape.input(Tensor::zeros(Shape::nhwc(1, 4, 4, 2)).view()).unwrap();
    let filt = tape.input(Tensor::zeros(Shape::new(&[3, 3, 3, 4]).unwrap()).view()).unwrap();
    let e = tape.conv2d(img, filt, None, Conv2dSpec::new()).unwrap_err();
    assert!(matches!(e, Error::Shape { op: "conv2d", .. }), "{e:?}");
    let e = tape.conv2d(x, filt, None, Conv2dSpec::new()).unwrap_err();
    assert!(e.to_string().contains("NHWC"), "{e}");
    let e = tape.add(x, img).unwrap_err();
    assert!(matches!(e, Error::Shape { op: "add", .. }), "{e:?}");
    let e = tape.reshape(x, Shape::matrix(3, 3)).unwrap_err();
    assert!(matches!(e, Error::Shape { op: "reshape", .. }), "{e:?}");
    let e = tape.sparse_softmax_cross_entropy(x, &[0, 1]).unwrap_err();
    assert!(matches!(e, Error::Shape { .. }), "{e:?}");
    let e = tape.sparse_softmax_cross_entropy(x, &[0, 1, 2, 9]).unwrap_err();
    assert!(matches!(e, Error::Kernel { .. }), "{e:?}");
    let e = tape.max_pool2d(img, PoolSpec::new(5, 5)).unwrap_err();
    assert!(matches!(e, Error::Kernel { op: "max_pool2d", .. }), "{e:?}");
    let e = tape.dropout(x, 1.0, 0).unwrap_err();
    assert!(matches!(e, Error::BadArgument { op: "dropout", .. }), "{e:?}");
    let e = tape.channel_means(img, &[2]).unwrap_err();
    assert!(matches!(e, Error::BadArgument { op: "channel_means", .. }) && e.to_string().contains("channel 2"), "{e}");
    let e = tape.channel_means(img, &[0, 1]).unwrap_err();
    assert!(matches!(e, Error::Shape { op: "channel_means", .. }), "{e:?}");
}

#[test]
fn backward_twice_and_stale_handles_are_errors() {
    let (mut tape, mut params, w) = tiny();
    let x = tape.input(Tensor::ones(Shape::matrix(1, 3)).view()).unwrap();
    let wv = tape.param(&params, w).unwrap();
    let y = tape.dense(x, wv, None, Activation::Linear).unwrap();
    let loss = tape.mean(y).unwrap();
    tape.backward(loss, &mut params).unwrap();
    let g1 = params.grad(w).unwrap().clone();
    assert_eq!(tape.backward(loss, &mut params).unwrap_err(), Error::BackwardTwice);
    assert_eq!(params.grad(w).unwrap(), &g1, "a refused backward must not touch gradients");
    assert!(matches!(tape.relu(y).unwrap_err(), Error::Spent { op: "relu" }));
    // Values stay readable until reset; afterwards handles are stale.
    assert_eq!(tape.scalar(loss).unwrap(), 1.5);
    tape.reset();
    assert!(matches!(tape.value(y).unwrap_err(), Error::StaleVar { .. }));
    // A handle from another tape.
    let mut other = Tape::new();
    let z = other.input(Tensor::ones(Shape::vector(1)).view()).unwrap();
    tape.input(Tensor::ones(Shape::vector(1)).view()).unwrap();
    assert!(matches!(tape.relu(z).unwrap_err(), Error::StaleVar { .. }));
    // Parameters of another set.
    let other_params = Params::new();
    let mut p2 = Params::new();
    let foreign = p2.add("v", Tensor::ones(Shape::vector(1))).unwrap();
    assert!(matches!(tape.param(&other_params, foreign).unwrap_err(), Error::UnknownParam { .. }));
}

#[test]
fn gradients_that_do_not_exist_are_errors() {
    let (mut tape, mut params, w) = tiny();
    let x = tape.input(Tensor::ones(Shape::matrix(1, 3)).view()).unwrap();
    let wv = tape.param(&params, w).unwrap();
    let y = tape.dense(x, wv, None, Activation::Linear).unwrap();
    let loss = tape.mean(y).unwrap();
    tape.backward(loss, &mut params).unwrap();
    assert!(matches!(tape.grad(x).unwrap_err(), Error::NoGrad(_)), "an input needs no gradient");
    assert!(matches!(tape.grad(wv).unwrap_err(), Error::NoGrad(_)), "parameter gradients live in Params");
    assert!(matches!(tape.grad(y).unwrap_err(), Error::NoGrad(_)), "intermediates are released");
    assert_eq!(params.grad(w).unwrap().data(), &[0.5, 0.5, 0.5, 0.5, 0.5, 0.5]);

    // Targets that require a gradient are refused.
    tape.reset();
    let l = tape.variable(Tensor::ones(Shape::matrix(1, 2)).view()).unwrap();
    let t = tape.variable(Tensor::ones(Shape::matrix(1, 2)).view()).unwrap();
    assert!(matches!(tape.softmax_cross_entropy(l, t).unwrap_err(), Error::BadArgument { .. }));
    // Backward from a non-scalar.
    assert!(matches!(tape.backward(l, &mut params).unwrap_err(), Error::NotScalar(_)));
}

#[test]
fn non_finite_loss_is_refused_and_gradients_stay_untouched() {
    let (mut tape, mut params, w) = tiny();
    params.zero_grad();
    let x = tape.input(Tensor::from_slice(Shape::matrix(1, 3), &[f32::NAN, 0.0, 0.0]).unwrap().view()).unwrap();
    let wv = tape.param(&params, w).unwrap();
    let y = tape.dense(x, wv, None, Activation::Linear).unwrap();
    let loss = tape.mean(y).unwrap();
    let e = tape.backward(loss, &mut params).unwrap_err();
    assert!(matches!(e, Error::NonFiniteLoss(v) if v.is_nan()), "{e:?}");
    // Untouched: not even a gradient buffer was made.
    assert!(!params.has_grad(w).unwrap());

    tape.reset();
    let x = tape.input(Tensor::from_slice(Shape::matrix(1, 3), &[f32::INFINITY, 0.0, 0.0]).unwrap().view()).unwrap();
    let wv = tape.param(&params, w).unwrap();
    let y = tape.dense(x, wv, None, Activation::Linear).unwrap();
    let loss = tape.mean(y).unwrap();
    assert!(matches!(tape.backward(loss, &mut params).unwrap_err(), Error::NonFiniteLoss(v) if v.is_infinite()));
}

#[test]
fn inference_mode_records_no_gradients_and_dropout_is_identity() {
    let (_, mut params, w) = tiny();
    let mut tape = Tape::inference();
    let x = tape.input(Tensor::ones(Shape::matrix(2, 3)).view()).unwrap();
    let wv = tape.param(&params, w).unwrap();
    let y = tape.dense(x, wv, None, Activation::Relu).unwrap();
    let d = tape.dropout(y, 0.5, 7).unwrap();
    assert_eq!(tape.value(d).unwrap().data(), tape.value(y).unwrap().data());
    assert!(!tape.requires_grad(d).unwrap());
    let loss = tape.mean(d).unwrap();
    assert_eq!(tape.backward(loss, &mut params).unwrap_err(), Error::InferenceMode);

    // In training mode dropout zeroes about `rate` of the elements, scales the
    // rest by 1 / (1 - rate), and the same seed gives the same mask.
    let mut tape = Tape::new();
    let big = tape.input(Tensor::ones(Shape::matrix(100, 100)).view()).unwrap();
    let a = tape.dropout(big, 0.25, 42).unwrap();
    let b = tape.dropout(big, 0.25, 42).unwrap();
    let av = tape.value(a).unwrap().data().to_vec();
    assert_eq!(av, tape.value(b).unwrap().data());
    let zeros = av.iter().filter(|&&v| v == 0.0).count();
    assert!((2200..2800).contains(&zeros), "{zeros} zeros of 10000 at rate 0.25");
    assert!(av.iter().all(|&v| v == 0.0 || (v - 4.0 / 3.0).abs() < 1e-6));
}

#[test]
fn gradients_accumulate_until_zero_grad() {
    let (mut tape, mut params, w) = tiny();
    for _ in 0..2 {
        tape.reset();
        let x = tape.input(Tensor::ones(Shape::matrix(1, 3)).view()).unwrap();
        let wv = tape.param(&params, w).unwrap();
        let y = tape.dense(x, wv, None, Activation::Linear).unwrap();
        let loss = tape.mean(y).unwrap();
        tape.backward(loss, &mut params).unwrap();
    }
    assert_eq!(params.grad(w).unwrap().data(), &[1.0; 6]);
    params.zero_grad();
    assert_eq!(params.grad(w).unwrap().data(), &[0.0; 6]);
}

mod robustness {
    use super::*;
    use proptest::prelude::*;

    fn dims(max: usize) -> impl Strategy<Value = Vec<usize>> {
        prop::collection::vec(0usize..max, 1..5)
    }

    /// `cases` cases unless `PROPTEST_CASES` says otherwise; shrunk failures are
    /// kept in this file's `.proptest-regressions` twin (`docs/TESTING.md`).
    fn proptest_config(cases: u32) -> ProptestConfig {
        let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(cases);
        let persistence = proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions");
        ProptestConfig { cases, failure_persistence: Some(Box::new(persistence)), ..ProptestConfig::default() }
    }

    proptest! {
        #![proptest_config(proptest_config(64))]

        /// Arbitrary shapes (zero sizes included) into every op, then backward:
        /// each call returns `Ok` or `Err`, never panics.
        #[test]
        fn arbitrary_shapes_never_panic(a in dims(5), b in dims(5), c in dims(4), k in 0usize..4,
                                        s in 0usize..3, same in any::<bool>(), labels in prop::collection::vec(0u32..6, 0..6)) {
            let pad = if same { Padding::Same } else { Padding::Valid };
            for op in 0..17 {
                let mut tape = Tape::new();
                let mut params = Params::new();
                let x = tape.variable(Tensor::full(Shape::new(&a).unwrap(), 0.5).view()).unwrap();
                let w = params.add("w", Tensor::full(Shape::new(&b).unwrap(), -0.25)).unwrap();
                let wv = tape.param(&params, w).unwrap();
                let cv = tape.input(Tensor::full(Shape::new(&c).unwrap(), 0.1).view()).unwrap();
                let out = match op {
                    0 => tape.conv2d(x, wv, Some(cv), Conv2dSpec::new().stride(s, s).padding(pad).relu()),
                    1 => tape.conv2d(x, wv, None, Conv2dSpec::new()),
                    2 => tape.max_pool2d(x, PoolSpec::new(k, k).stride(s, s).padding(pad)),
                    3 => tape.avg_pool2d(x, PoolSpec::new(k, k).padding(pad)),
                    4 => tape.dense(x, wv, Some(cv), Activation::Relu),
                    5 => tape.bias_add(x, wv),
                    6 => tape.add(x, wv),
                    7 => tape.mul(x, cv),
                    8 => tape.flatten(x),
                    9 => tape.softmax(x),
                    10 => tape.dropout(x, 0.5, 1),
                    11 => tape.softmax_cross_entropy(x, cv),
                    12 => tape.sparse_softmax_cross_entropy(x, &labels),
                    13 => tape.binary_cross_entropy(x, cv),
                    14 => tape.binary_cross_entropy_with_logits(x, cv),
                    15 => tape.global_avg_pool2d(x),
                    _ => tape.mean(x),
                };
                if let Ok(out) = out {
                    if let Ok(m) = tape.mean(out) {
                        let _ = tape.backward(m, &mut params);
                        let _ = tape.grad(x);
                    }
                }
            }
        }
    }
}

/// The same model, data and seed give bit-identical parameters after a few
/// training steps, run twice (the tape adds no nondeterminism; dropout masks
/// come from the seed).
#[test]
fn training_is_deterministic() {
    let run = || {
        let mut rng = convnet_tensor::Rng::new(5);
        let mut params = Params::new();
        let k = params.add("k", Tensor::glorot_uniform(Shape::new(&[3, 3, 2, 4]).unwrap(), &mut rng).unwrap()).unwrap();
        let d = params.add("d", Tensor::glorot_uniform(Shape::matrix(3 * 3 * 4, 3), &mut rng).unwrap()).unwrap();
        let x = Tensor::uniform(Shape::nhwc(4, 8, 8, 2), -1.0, 1.0, &mut rng).unwrap();
        let mut tape = Tape::new();
        for step in 0..4u64 {
            tape.reset();
            params.zero_grad();
            let xv = tape.input(x.view()).unwrap();
            let kv = tape.param(&params, k).unwrap();
            let h = tape.conv2d(xv, kv, None, Conv2dSpec::new().relu()).unwrap();
            let h = tape.max_pool2d(h, PoolSpec::new(2, 2)).unwrap();
            let h = tape.flatten(h).unwrap();
            let h = tape.dropout(h, 0.3, step).unwrap();
            let dv = tape.param(&params, d).unwrap();
            let logits = tape.dense(h, dv, None, Activation::Linear).unwrap();
            let loss = tape.sparse_softmax_cross_entropy(logits, &[0, 1, 2, 1]).unwrap();
            tape.backward(loss, &mut params).unwrap();
            params
                .update_with(|_, w, g| {
                    w.iter_mut().zip(g).for_each(|(w, g)| *w -= 0.1 * g);
                    Ok::<(), Error>(())
                })
                .unwrap();
        }
        params.iter().flat_map(|(_, _, v, _)| v.data().to_vec()).map(f32::to_bits).collect::<Vec<u32>>()
    };
    assert_eq!(run(), run());
}
