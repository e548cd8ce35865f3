//! A batch split by examples: [`Tape::backward_into`] a [`Gradients`] set per
//! shard, then [`Params::set_grads_to_sum`], gives the whole batch's gradient
//! (to float rounding), leaves the `Params` untouched meanwhile, and reports
//! misuse as errors.

use convnet_autodiff::{Activation, Conv2dSpec, Error, Gradients, ParamId, Params, PoolSpec, Tape};
use convnet_tensor::{Rng, Shape, Tensor};

struct Net {
    params: Params,
    ids: Vec<ParamId>,
}

fn net() -> Net {
    let mut rng = Rng::new(11);
    let mut params = Params::new();
    let ids = vec![
        params.add("conv/kernel", Tensor::uniform(Shape::new(&[3, 3, 2, 4]).unwrap(), -0.5, 0.5, &mut rng).unwrap()),
        params.add("conv/bias", Tensor::uniform(Shape::vector(4), -0.1, 0.1, &mut rng).unwrap()),
        params.add("dense/kernel", Tensor::uniform(Shape::matrix(36, 5), -0.3, 0.3, &mut rng).unwrap()),
        params.add("dense/bias", Tensor::uniform(Shape::vector(5), -0.1, 0.1, &mut rng).unwrap()),
        params.add("unused", Tensor::ones(Shape::vector(3))),
    ]
    .into_iter()
    .map(|r: Result<ParamId, Error>| r.unwrap())
    .collect();
    Net { params, ids }
}

/// Records conv-relu, 2x2 max-pool, dense and the mean cross-entropy of
/// `x` (`[n, 8, 8, 2]`) against `labels`; returns the loss.
fn record(tape: &mut Tape, net: &Net, x: &[f32], labels: &[u32]) -> convnet_autodiff::Var {
    let n = labels.len();
    let p = &net.params;
    let xv = tape.input(Tensor::from_slice(Shape::nhwc(n, 8, 8, 2), x).unwrap().view()).unwrap();
    let w = tape.param_shared(p, net.ids[0]).unwrap();
    let b = tape.param_shared(p, net.ids[1]).unwrap();
    let h = tape.conv2d(xv, w, Some(b), Conv2dSpec::new().relu()).unwrap(); // [n, 6, 6, 4]
    let h = tape.max_pool2d(h, PoolSpec::new(2, 2)).unwrap(); // [n, 3, 3, 4]
    let h = tape.flatten(h).unwrap();
    let wd = tape.param_shared(p, net.ids[2]).unwrap();
    let bd = tape.param_shared(p, net.ids[3]).unwrap();
    let logits = tape.dense(h, wd, Some(bd), Activation::Linear).unwrap();
    tape.sparse_softmax_cross_entropy(logits, labels).unwrap()
}

fn batch(n: usize) -> (Vec<f32>, Vec<u32>) {
    let mut rng = Rng::new(5);
    let x = Tensor::uniform(Shape::nhwc(n, 8, 8, 2), -1.0, 1.0, &mut rng).unwrap().data().to_vec();
    (x, (0..n as u32).map(|i| (i * 3) % 5).collect())
}

#[test]
fn shard_gradients_summed_equal_the_whole_batch_gradient() {
    let (x, labels) = batch(7);
    let item = 8 * 8 * 2;
    // The whole batch on one tape.
    let mut whole = net();
    for &id in &whole.ids {
        whole.params.ensure_grad(id).unwrap();
    }
    let mut tape = Tape::new();
    let loss = record(&mut tape, &whole, &x, &labels);
    let whole_loss = tape.scalar(loss).unwrap();
    tape.backward(loss, &mut whole.params).unwrap();
    tape.reset();
    // Three shards of 2, 2 and 3 examples, each weighted by its share.
    let mut sharded = net();
    for &id in &sharded.ids {
        sharded.params.ensure_grad(id).unwrap();
    }
    let cuts = [0, 2, 4, 7];
    let mut grads: Vec<Gradients> = (0..3).map(|_| sharded.params.gradients()).collect();
    let before: Vec<Vec<f32>> = sharded.params.iter().map(|(_, _, v, _)| v.data().to_vec()).collect();
    let mut loss_sum = 0.0f64;
    for step in 0..2 {
        loss_sum = 0.0;
        for (k, g) in grads.iter_mut().enumerate() {
            let (lo, hi) = (cuts[k], cuts[k + 1]);
            g.clear();
            let mut tape = Tape::new();
            let loss = record(&mut tape, &sharded, &x[lo * item..hi * item], &labels[lo..hi]);
            loss_sum += f64::from(tape.scalar(loss).unwrap()) * (hi - lo) as f64;
            tape.backward_into(loss, g).unwrap();
        }
        // The Params were only read: no gradient written there yet, values unchanged.
        if step == 0 {
            assert!(sharded.params.iter().all(|(_, _, _, g)| g.unwrap().data().iter().all(|&v| v == 0.0)));
        }
        let after: Vec<Vec<f32>> = sharded.params.iter().map(|(_, _, v, _)| v.data().to_vec()).collect();
        assert_eq!(before, after);
        let scales: Vec<f32> = (0..3).map(|k| (cuts[k + 1] - cuts[k]) as f32 / 7.0).collect();
        sharded.params.set_grads_to_sum(&grads, &scales).unwrap();
    }
    assert!(((loss_sum / 7.0) as f32 - whole_loss).abs() <= 1e-6 * whole_loss.abs().max(1.0));
    for (a, b) in whole.params.iter().zip(sharded.params.iter()) {
        let (ga, gb) = (a.3.unwrap().data(), b.3.unwrap().data());
        let scale = ga.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-3);
        for (i, (&u, &v)) in ga.iter().zip(gb).enumerate() {
            assert!((u - v).abs() <= 1e-5 * scale, "{} [{i}]: whole batch {u}, shards {v}", a.1);
        }
    }
    // The parameter no shard reached: a zero gradient (it has a buffer), and
    // no shard holds anything for it.
    assert_eq!(sharded.params.grad(sharded.ids[4]).unwrap().data(), &[0.0; 3]);
    assert!(grads.iter().all(|g| g.grad(sharded.ids[4]).unwrap().is_none()));
    // Two equal halves weighted 0.5 each: the same as the hand-made sum.
    let g0 = grads[0].grad(sharded.ids[3]).unwrap().unwrap().data().to_vec();
    let g1 = grads[1].grad(sharded.ids[3]).unwrap().unwrap().data().to_vec();
    sharded.params.set_grads_to_sum(&grads[..2], &[0.5, 0.5]).unwrap();
    let want: Vec<f32> = g0.iter().zip(&g1).map(|(a, b)| a * 0.5 + b * 0.5).collect();
    assert_eq!(sharded.params.grad(sharded.ids[3]).unwrap().data(), &want[..]);
}

#[test]
fn clear_forgets_and_errors_are_reported() {
    let mut n = net();
    let (x, labels) = batch(2);
    let mut g = n.params.gradients();
    assert!(g.grad(n.ids[0]).unwrap().is_none(), "nothing written yet");
    let mut tape = Tape::new();
    let loss = record(&mut tape, &n, &x, &labels);
    tape.backward_into(loss, &mut g).unwrap();
    assert!(g.grad(n.ids[0]).unwrap().is_some());
    assert!(!n.params.has_grad(n.ids[0]).unwrap(), "backward_into leaves the Params alone");
    g.clear();
    assert!(g.grad(n.ids[0]).unwrap().is_none(), "cleared: holds nothing");
    // A parameter without a gradient buffer (frozen) stays without one.
    n.params.set_grads_to_sum(std::slice::from_ref(&g), &[1.0]).unwrap();
    assert!(!n.params.has_grad(n.ids[0]).unwrap());
    // Misuse: scales of another length; a set of another Params, both ways.
    n.params.ensure_grad(n.ids[0]).unwrap();
    let err = n.params.set_grads_to_sum(std::slice::from_ref(&g), &[1.0, 1.0]).unwrap_err();
    assert!(err.to_string().contains("1 gradient sets but 2 scales"), "{err}");
    let other = net();
    let foreign = other.params.gradients();
    assert!(matches!(n.params.set_grads_to_sum(&[foreign], &[1.0]), Err(Error::UnknownParam { .. })));
    let mut foreign = other.params.gradients();
    let mut tape = Tape::new();
    let loss = record(&mut tape, &n, &x, &labels);
    assert!(matches!(tape.backward_into(loss, &mut foreign), Err(Error::UnknownParam { .. })));
    assert!(matches!(foreign.grad(n.ids[0]), Err(Error::UnknownParam { .. })));
}
