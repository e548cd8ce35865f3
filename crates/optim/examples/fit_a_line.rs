//! Optimizers over plain slices: fit a line `y = a x + b` by least squares
//! with SGD (plain, momentum, Nesterov), RMSprop and Adam, computing the
//! gradients by hand, and compare how far each gets in the same steps.
//!
//! Run: `cargo run -p convnet-optim --example fit_a_line`

use convnet_optim::{Adam, LearningRate, Optimizer, RMSprop, Sgd};

/// Points on `y = 0.7 x - 0.2` for x in [-1, 1].
fn data() -> Vec<(f32, f32)> {
    (0..21).map(|i| -1.0 + 0.1 * i as f32).map(|x| (x, 0.7 * x - 0.2)).collect()
}

/// Mean squared error of `(a, b)` and its gradient.
fn loss_and_grad(a: f32, b: f32, points: &[(f32, f32)]) -> (f32, [f32; 2]) {
    let n = points.len() as f32;
    let (mut loss, mut da, mut db) = (0.0, 0.0, 0.0);
    for &(x, y) in points {
        let r = a * x + b - y;
        loss += r * r / n;
        da += 2.0 * r * x / n;
        db += 2.0 * r / n;
    }
    (loss, [da, db])
}

fn fit(name: &str, opt: &mut dyn Optimizer, steps: usize) -> Result<f32, convnet_optim::Error> {
    let points = data();
    let mut params = [0.0f32, 0.0]; // a, b, as one buffer: parameter 0
    let mut loss = 0.0;
    for _ in 0..steps {
        let (l, grad) = loss_and_grad(params[0], params[1], &points);
        loss = l;
        opt.begin_step()?;
        opt.update(0, &mut params, &grad)?;
    }
    println!("{name:<22} a = {:7.4}  b = {:7.4}  loss {loss:.2e}", params[0], params[1]);
    Ok(loss)
}

fn main() -> Result<(), convnet_optim::Error> {
    let steps = 40;
    println!("{steps} steps towards a = 0.7, b = -0.2:");
    let plain = fit("SGD 0.1", &mut Sgd::new(0.1), steps)?;
    let momentum = fit("SGD 0.1 momentum 0.9", &mut Sgd::new(0.1).with_momentum(0.9), steps)?;
    fit("SGD 0.1 Nesterov", &mut Sgd::new(0.1).with_momentum(0.9).with_nesterov(true), steps)?;
    fit("RMSprop 0.01", &mut RMSprop::new(0.01), steps)?;
    fit("Adam 0.05", &mut Adam::new(0.05), steps)?;
    let decay = LearningRate::ExponentialDecay { initial: 0.3, decay_steps: 50, decay_rate: 0.5, staircase: false };
    fit("SGD, exponential decay", &mut Sgd::new(decay), steps)?;
    let (start, _) = loss_and_grad(0.0, 0.0, &data());
    println!("(loss at a = b = 0: {start:.2e})");
    assert!(plain < start && momentum < start);
    Ok(())
}
