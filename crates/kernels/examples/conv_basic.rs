//! The kernels as a user calls them: one convolution layer's forward pass
//! (with bias and a fused ReLU) by each algorithm, checked against a plain
//! loop, then 2x2 max pooling and a dense layer on the result.
//!
//! Run: `cargo run --release -p convnet-kernels --example conv_basic`

use convnet_kernels::activation::Activation;
use convnet_kernels::conv::{self, ConvAlgo, ConvShape, Padding};
use convnet_kernels::dense::{dense_forward, DenseShape};
use convnet_kernels::pool::{max_pool2d_forward, PoolShape};

fn main() -> Result<(), convnet_kernels::Error> {
    // A batch of 2 images, 10x10, 3 channels -> 8 channels, 3x3 filters, `same` padding.
    let (n, h, w, c_in, c_out) = (2, 10, 10, 3, 8);
    let shape = ConvShape::new(n, h, w, c_in, c_out, 3, 3)?.with_padding(Padding::Same)?;
    let input: Vec<f32> = (0..shape.input_len()).map(|i| ((i * 7) % 13) as f32 / 13.0 - 0.5).collect();
    let filter: Vec<f32> = (0..shape.filter_len()).map(|i| ((i * 5) % 11) as f32 / 11.0 - 0.5).collect(); // HWIO
    let bias: Vec<f32> = (0..c_out).map(|o| 0.1 * o as f32 - 0.3).collect();
    let want = plain_conv(&shape, &input, &filter, &bias);

    let mut output = vec![0.0f32; shape.output_len()]; // NHWC [2, 10, 10, 8]
    for algo in [ConvAlgo::Auto, ConvAlgo::Direct, ConvAlgo::Im2col, ConvAlgo::WinogradF2, ConvAlgo::WinogradF4] {
        if let Err(why) = conv::supports(algo, &shape, conv::ConvPass::Forward) {
            println!("{algo:?}: cannot run this shape ({why})");
            continue;
        }
        conv::conv2d_forward(algo, &shape, &input, &filter, Some(&bias), Activation::Relu, &mut output)?;
        let err = output.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        println!("{algo:?}: max |difference| from a plain loop {err:.2e}");
        assert!(err < 1e-4, "{algo:?} disagrees with the plain loop");
    }

    // 2x2 max pooling, stride 2: [2, 10, 10, 8] -> [2, 5, 5, 8] (plus the arg-max of each window).
    let pool = PoolShape::new(n, h, w, c_out, (2, 2), (2, 2), Padding::Valid)?;
    let len = n * pool.out_h() * pool.out_w() * c_out;
    let (mut pooled, mut argmax) = (vec![0.0f32; len], vec![0u32; len]);
    max_pool2d_forward(&pool, &output, &mut pooled, &mut argmax)?;

    // Flatten (h, w, c order, as Keras) and a dense layer to 4 units.
    let dense = DenseShape { batch: n, inputs: len / n, outputs: 4 };
    let weights = vec![0.01f32; dense.inputs * dense.outputs]; // [in, out]
    let mut scores = vec![0.0f32; n * 4];
    dense_forward(&dense, &pooled, &weights, None, Activation::Linear, &mut scores)?;
    println!("pooled to {}x{}x{c_out}, dense scores {scores:?}", pool.out_h(), pool.out_w());

    // A wrong slice length is an error naming the argument, not a panic.
    let err = conv::conv2d_forward(ConvAlgo::Auto, &shape, &input[1..], &filter, None, Activation::Linear, &mut output);
    println!("input one float short: {}", err.unwrap_err());
    Ok(())
}

/// The convolution by its definition: for every output pixel and channel,
/// the sum over the 3x3 window and the input channels, plus bias, then ReLU.
fn plain_conv(s: &ConvShape, input: &[f32], filter: &[f32], bias: &[f32]) -> Vec<f32> {
    let (oh, ow) = (s.out_h(), s.out_w());
    let mut out = vec![0.0f32; s.output_len()];
    for b in 0..s.n {
        for oy in 0..oh {
            for ox in 0..ow {
                for o in 0..s.c_out {
                    let mut acc = bias[o] as f64;
                    for ky in 0..s.kh {
                        for kx in 0..s.kw {
                            let iy = (oy * s.stride_h + ky) as isize - s.pad_top as isize;
                            let ix = (ox * s.stride_w + kx) as isize - s.pad_left as isize;
                            if iy < 0 || ix < 0 || iy >= s.h as isize || ix >= s.w as isize {
                                continue;
                            }
                            for i in 0..s.c_in {
                                let x = input[((b * s.h + iy as usize) * s.w + ix as usize) * s.c_in + i];
                                let f = filter[((ky * s.kw + kx) * s.c_in + i) * s.c_out + o];
                                acc += x as f64 * f as f64;
                            }
                        }
                    }
                    out[((b * oh + oy) * ow + ox) * s.c_out + o] = acc.max(0.0) as f32;
                }
            }
        }
    }
    out
}
