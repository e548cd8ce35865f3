//! `convnet bench conv`: times the kernels crate's convolution algorithms on
//! one shape, forward and (with `--backward`) backward-data and
//! backward-filter, and reports the median time and GFLOP/s of each
//! (`2 * n * out_h * out_w * c_out * kh * kw * c_in / groups` flops per pass).
//! `--groups G` times a grouped convolution; `--groups` equal to `CIN` is a
//! depthwise one, with channel multiplier `COUT / CIN`.

use super::{parse_algo, CliResult};
use clap::Args;
use convnet::limits::{Limits, ENV_MAX_BENCH_BYTES};
use convnet_kernels::activation::Activation;
use convnet_kernels::conv::{self, ConvAlgo, ConvPass, ConvShape, Padding};
use convnet_tensor::Rng;
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct ConvArgs {
    /// N,H,W,CIN,COUT, e.g. 64,13,13,32,64.
    #[arg(long, value_parser = parse_shape)]
    shape: [usize; 5],
    /// Square kernel size.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    kernel: u64,
    /// Stride (both axes).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    stride: u64,
    /// Channel groups (dividing CIN and COUT); CIN groups is depthwise with
    /// multiplier COUT / CIN.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    groups: u64,
    /// Padding: valid or same.
    #[arg(long, default_value = "valid", value_parser = ["valid", "same"])]
    padding: String,
    /// An algorithm, or `all` (every algorithm but the f64 reference).
    #[arg(long, default_value = "all", value_parser = parse_algo_or_all)]
    algo: String,
    /// Also time backward-data and backward-filter.
    #[arg(long)]
    backward: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Repetitions per measurement (the median is reported).
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    reps: u64,
}

fn parse_shape(s: &str) -> Result<[usize; 5], String> {
    let v: Vec<usize> =
        s.split(',').map(|p| p.trim().parse::<usize>().map_err(|e| format!("{p:?}: {e}"))).collect::<Result<_, _>>()?;
    match v[..] {
        [n, h, w, ci, co] if !v.contains(&0) => Ok([n, h, w, ci, co]),
        _ => Err(format!("expected five positive integers N,H,W,CIN,COUT, got {s:?}")),
    }
}

fn parse_algo_or_all(s: &str) -> Result<String, String> {
    if s == "all" {
        return Ok(s.to_string());
    }
    parse_algo(s).map(|_| s.to_string()).map_err(|e| format!("{e}, or all"))
}

/// Bytes of the buffers the bench allocates for `shape`: input, filter,
/// bias and output, plus their gradients with `backward`; `None` on overflow.
fn buffer_bytes(shape: &ConvShape, backward: bool) -> Option<u64> {
    let (x, f, y) = (shape.input_len() as u64, shape.filter_len() as u64, shape.output_len() as u64);
    let once = x.checked_add(f)?.checked_add(y)?.checked_add(shape.c_out as u64)?;
    let all = if backward { once.checked_mul(2)? } else { once };
    all.checked_mul(4)
}

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64()
}

pub fn run(a: ConvArgs, limits: &Limits) -> CliResult<()> {
    let [n, h, w, ci, co] = a.shape;
    let k = usize::try_from(a.kernel)?;
    let padding = if a.padding == "same" { Padding::Same } else { Padding::Valid };
    let shape =
        conv_shape(n, h, w, ci, co, k, usize::try_from(a.stride)?, padding)?.with_groups(usize::try_from(a.groups)?)?;
    // Every buffer size is known now: check them before allocating one.
    let bytes = buffer_bytes(&shape, a.backward).unwrap_or(u64::MAX);
    if bytes > limits.max_bench_bytes {
        return Err(format!(
            "--shape {n},{h},{w},{ci},{co} with a {k}x{k} kernel needs {bytes} bytes of buffers, more than the limit \
             of {} ({ENV_MAX_BENCH_BYTES}; docs/LIMITS.md)",
            limits.max_bench_bytes
        )
        .into());
    }
    let algos: Vec<ConvAlgo> = if a.algo == "all" {
        ConvAlgo::ALL.into_iter().filter(|&x| x != ConvAlgo::Reference).collect()
    } else {
        vec![parse_algo(&a.algo)?]
    };
    let passes: &[ConvPass] = if a.backward {
        &[ConvPass::Forward, ConvPass::BackwardData, ConvPass::BackwardFilter]
    } else {
        &[ConvPass::Forward]
    };
    let mut rng = Rng::new(1);
    let mut rand = |len: usize| (0..len).map(|_| rng.uniform(-1.0, 1.0)).collect::<Vec<f32>>();
    let (x, f, b, gy) = (rand(shape.input_len()), rand(shape.filter_len()), rand(co), rand(shape.output_len()));
    let (mut y, mut gx, mut gf) =
        (vec![0.0; shape.output_len()], vec![0.0; shape.input_len()], vec![0.0; shape.filter_len()]);
    let mut results = Vec::new();
    for &algo in &algos {
        for &pass in passes {
            if let Err(e) = conv::supports(algo, &shape, pass) {
                eprintln!("note: {e}; left out");
                continue;
            }
            let mut once = || -> convnet_kernels::Result<Duration> {
                let t = Instant::now();
                match pass {
                    ConvPass::Forward => {
                        conv::conv2d_forward(algo, &shape, &x, &f, Some(&b), Activation::Linear, &mut y)?
                    }
                    ConvPass::BackwardData => conv::conv2d_backward_data(algo, &shape, &gy, &f, &mut gx)?,
                    ConvPass::BackwardFilter => conv::conv2d_backward_filter(algo, &shape, &x, &gy, &mut gf)?,
                }
                Ok(t.elapsed())
            };
            once()?; // warm-up: scratch buffers, caches, thread pool
            let times = (0..a.reps).map(|_| once()).collect::<Result<Vec<_>, _>>()?;
            let m = median(times);
            results.push((algo, pass, m, shape.flops() as f64 / m / 1e9));
        }
    }
    if a.json {
        let json = serde_json::json!({
            "shape": {
                "n": n, "h": h, "w": w, "c_in": ci, "c_out": co, "kh": k, "kw": k,
                "stride": a.stride, "padding": a.padding, "groups": a.groups, "out_h": shape.out_h(), "out_w": shape.out_w(),
                "flops": shape.flops(),
            },
            "threads": rayon::current_num_threads(),
            "results": results.iter().map(|(algo, pass, m, g)| serde_json::json!({
                "algo": algo.name(), "pass": pass.name(), "median_s": m, "gflops": g,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        println!(
            "{shape} ({:.3} GFLOP per pass, {} threads)",
            shape.flops() as f64 / 1e9,
            rayon::current_num_threads()
        );
        println!("{:<12} {:<16} {:>12} {:>10}", "algo", "pass", "median ms", "GFLOP/s");
        for (algo, pass, m, g) in &results {
            println!("{:<12} {:<16} {:>12.3} {:>10.1}", algo.name(), pass.name(), m * 1e3, g);
        }
        if a.backward {
            for &algo in &algos {
                let mine: Vec<f64> = results.iter().filter(|r| r.0 == algo).map(|r| r.2).collect();
                if mine.len() == 3 {
                    let sum: f64 = mine.iter().sum();
                    println!("{:<12} {:<16} {:>12.3}   (sum of the three medians)", algo.name(), "fwd+bwd", sum * 1e3);
                }
            }
        }
    }
    Ok(())
}

/// The shape, built by fields (not `ConvShape::new`, which validates the
/// unpadded window first) so `same` with a kernel larger than the input works.
#[allow(clippy::too_many_arguments)]
fn conv_shape(
    n: usize,
    h: usize,
    w: usize,
    c_in: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    padding: Padding,
) -> convnet_kernels::Result<ConvShape> {
    let (pad_top, pad_bottom) = conv::pad_amounts(padding, h, k, stride, 1);
    let (pad_left, pad_right) = conv::pad_amounts(padding, w, k, stride, 1);
    let s = ConvShape {
        n,
        h,
        w,
        c_in,
        c_out,
        kh: k,
        kw: k,
        stride_h: stride,
        stride_w: stride,
        dilation_h: 1,
        dilation_w: 1,
        pad_top,
        pad_bottom,
        pad_left,
        pad_right,
        groups: 1,
    };
    s.validate()?;
    Ok(s)
}
