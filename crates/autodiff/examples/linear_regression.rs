//! Reverse mode at its smallest: fit `y = 2 x1 - 3 x2 + 1` with one dense
//! layer, recording each step on a tape, back-propagating a mean squared
//! error, and updating with SGD from `convnet-optim`.
//!
//! Run: `cargo run -p convnet-autodiff --example linear_regression`

use convnet_autodiff::{Activation, Params, Tape};
use convnet_optim::{Optimizer, Sgd};
use convnet_tensor::{Rng, Shape, Tensor};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut rng = Rng::new(0);
    let n = 64;
    let x = Tensor::uniform(Shape::matrix(n, 2), -1.0, 1.0, &mut rng)?;
    let y: Vec<f32> = x.data().chunks_exact(2).map(|r| 2.0 * r[0] - 3.0 * r[1] + 1.0).collect();
    let y = Tensor::from_slice(Shape::matrix(n, 1), &y)?;

    let mut params = Params::new();
    let w = params.add("dense/kernel", Tensor::zeros(Shape::matrix(2, 1)))?;
    let b = params.add("dense/bias", Tensor::zeros(Shape::vector(1)))?;
    let mut opt = Sgd::new(0.1);
    let mut tape = Tape::new();
    for step in 0..=200 {
        tape.reset(); // buffers of the previous step go back to the tape
        params.zero_grad();
        let xv = tape.input(x.view())?;
        let (wv, bv) = (tape.param(&params, w)?, tape.param(&params, b)?);
        let pred = tape.dense(xv, wv, Some(bv), Activation::Linear)?;
        // Mean squared error: mean((pred - y)^2), from add, mul and mean.
        let neg_y =
            tape.input(Tensor::from_slice(y.shape(), &y.data().iter().map(|v| -v).collect::<Vec<_>>())?.view())?;
        let diff = tape.add(pred, neg_y)?;
        let sq = tape.mul(diff, diff)?;
        let loss = tape.mean(sq)?;
        if step % 50 == 0 {
            println!("step {step:3}: loss {:.6}", tape.scalar(loss)?);
        }
        tape.backward(loss, &mut params)?;
        opt.begin_step()?;
        params.update_with(|i, value, grad| opt.update(i, value, grad))?;
    }
    let (wt, bt) = (params.value(w)?.data(), params.value(b)?.data());
    println!("learned w = [{:.4}, {:.4}], b = {:.4} (true: [2, -3], 1)", wt[0], wt[1], bt[0]);
    assert!((wt[0] - 2.0).abs() < 1e-2 && (wt[1] + 3.0).abs() < 1e-2 && (bt[0] - 1.0).abs() < 1e-2);
    Ok(())
}
