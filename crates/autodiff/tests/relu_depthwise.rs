//! A depthwise conv whose input is a fused relu's output masks the input
//! gradient as it writes it (`depthwise::backward_through_relu`) and the relu
//! backward pass at the producer is skipped: the gradients must be the same
//! bits as the unfused graph (the relu as its own op), with and without a
//! second consumer of the relu output, at strides 1 and 2 and with a channel
//! multiplier.

use convnet_autodiff::{Activation, Conv2dSpec, Padding, Params, ProfilePass, Tape};
use convnet_tensor::{Rng, Shape, Tensor};

struct Run {
    grads: Vec<Vec<u32>>,
    /// Relu backward passes the profile recorded.
    relu_passes: usize,
}

/// `sum(r * depthwise(relu(conv(x, w1) + b1), w2))` (+ `mean(tanh(relu
/// output))` with `second`), the relu fused into the conv or its own op.
#[allow(clippy::too_many_arguments)]
fn run(x: &Tensor, w1: &Tensor, b1: &Tensor, w2: &Tensor, r: &Tensor, stride: usize, fused: bool, second: bool) -> Run {
    let mut params = Params::new();
    let ids = [
        params.add("w1", w1.clone()).unwrap(),
        params.add("b1", b1.clone()).unwrap(),
        params.add("w2", w2.clone()).unwrap(),
    ];
    let mut tape = Tape::new();
    tape.set_profiling(true);
    let xv = tape.input(x.view()).unwrap();
    let [w1v, b1v, w2v] = ids.map(|id| tape.param(&params, id).unwrap());
    let c = w1.shape().dims()[3];
    let conv = Conv2dSpec::new().padding(Padding::Same);
    let y = if fused {
        tape.conv2d(xv, w1v, Some(b1v), conv.activation(Activation::Relu)).unwrap()
    } else {
        let z = tape.conv2d(xv, w1v, Some(b1v), conv).unwrap();
        tape.relu(z).unwrap()
    };
    let extra = second.then(|| tape.tanh(y).unwrap());
    let dw = Conv2dSpec::new().stride(stride, stride).padding(Padding::Same).groups(c);
    let d = tape.conv2d(y, w2v, None, dw).unwrap();
    let rv = tape.input(r.view()).unwrap();
    let prod = tape.mul(d, rv).unwrap();
    let mut loss = tape.sum(prod).unwrap();
    if let Some(e) = extra {
        let m = tape.mean(e).unwrap();
        loss = tape.add(loss, m).unwrap();
    }
    tape.backward(loss, &mut params).unwrap();
    let relu_passes = tape
        .profile()
        .unwrap()
        .entries()
        .iter()
        .filter(|e| e.pass == ProfilePass::BackwardActivation && e.kernel == "relu")
        .map(|e| e.calls)
        .sum::<u64>() as usize;
    let grads = ids.map(|id| params.grad(id).unwrap().data().iter().map(|v| v.to_bits()).collect()).to_vec();
    Run { grads, relu_passes }
}

#[test]
fn depthwise_after_a_fused_relu_masks_in_place_with_the_same_bits() {
    // (batch, size, input channels, conv channels, multiplier, stride)
    for (i, &(n, h, ci, c, m, stride)) in
        [(2, 9, 3, 16, 1, 1), (1, 12, 2, 24, 2, 2), (2, 7, 1, 8, 3, 1), (1, 10, 4, 32, 1, 2)].iter().enumerate()
    {
        let mut rng = Rng::new(40 + i as u64);
        let x = Tensor::uniform(Shape::nhwc(n, h, h, ci), -1.0, 1.0, &mut rng).unwrap();
        let w1 = Tensor::uniform(Shape::new(&[3, 3, ci, c]).unwrap(), -0.5, 0.5, &mut rng).unwrap();
        let b1 = Tensor::uniform(Shape::vector(c), -0.2, 0.2, &mut rng).unwrap();
        let w2 = Tensor::uniform(Shape::new(&[3, 3, c, m]).unwrap(), -0.5, 0.5, &mut rng).unwrap();
        let o = h.div_ceil(stride);
        let r = Tensor::uniform(Shape::nhwc(n, o, o, c * m), -1.0, 1.0, &mut rng).unwrap();
        for second in [false, true] {
            let fused = run(&x, &w1, &b1, &w2, &r, stride, true, second);
            let plain = run(&x, &w1, &b1, &w2, &r, stride, false, second);
            let what = format!("case {i}, second consumer {second}");
            assert_eq!(fused.grads, plain.grads, "{what}: gradients");
            // Unfused, the relu op's own backward runs; fused and the
            // depthwise the only consumer, none runs (the depthwise masked);
            // with a second consumer the sum is masked at the conv.
            assert_eq!(plain.relu_passes, 1, "{what}: the relu op's pass");
            assert_eq!(fused.relu_passes, usize::from(second), "{what}: relu passes when fused");
        }
    }
}
