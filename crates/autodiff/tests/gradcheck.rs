//! Gradient checks for every op: the analytic gradient of a random projection
//! `L = sum(r * y)` of the op's output `y`, with respect to every input and
//! parameter, against central differences `(L(x + h) - L(x - h)) / 2h`
//! evaluated in f64 from the f32 forward pass. Shapes are chosen by proptest.
//!
//! Where an op has kinks (relu, max pooling, Keras's clipping in binary
//! cross-entropy), an element whose left and right one-sided differences
//! disagree, or whose slope on one side changes between the full and the half
//! step, straddles a kink: it is retried with an eighth of the step, then
//! skipped. A case where more than one plus a quarter of the sampled elements
//! of a leaf are skipped (or none is left) is rejected and proptest draws
//! another: kinks are found from forward values alone, so rejecting never
//! hides a wrong analytic gradient.
//!
//! Tolerances, per op (`|analytic - numeric| <= atol + rtol * max(|a|, |n|)`):
//! step `h = 1e-2 * max(1, |x|)` for smooth element-wise ops and losses
//! (rtol 1e-2, atol 1e-3); the piecewise-linear ops (conv, dense, pooling,
//! relu) use a smaller step, `h = 1e-3`, so fewer samples straddle a kink,
//! with rtol 2e-2 and atol 3e-3, since f32 rounding of their sums (~1e-6)
//! divided by 2h is ~5e-4.

use convnet_autodiff::{Activation, Conv2dSpec, ConvAlgo, Padding, Params, PoolSpec, Tape, Var};
use convnet_kernels::conv::{supports, ConvPass, ConvShape};
use convnet_tensor::{Rng, Shape, Tensor};
use proptest::prelude::*;

type Build = dyn Fn(&mut Tape, &[Var], &[Var]) -> convnet_autodiff::Result<Var>;

#[derive(Clone, Copy, Debug)]
struct Tol {
    h: f64,
    rtol: f64,
    atol: f64,
    /// For ops with kinks: skip an element when its one-sided differences
    /// differ by more than `atol + rtol * max(|left|, |right|)`. Piecewise
    /// linear ops have no curvature, so away from a kink the two agree to
    /// rounding; smooth ops (`None`) are never skipped.
    kink: Option<(f64, f64)>,
}

const SMOOTH: Tol = Tol { h: 1e-2, rtol: 1e-2, atol: 1e-3, kink: None };
const LINEAR: Tol = Tol { h: 1e-3, rtol: 2e-2, atol: 3e-3, kink: Some((5e-3, 2e-2)) };

/// A differentiable leaf: recorded as a parameter or as a variable.
struct Leaf {
    value: Tensor,
    as_param: bool,
}

fn leaf(value: Tensor, as_param: bool) -> Leaf {
    Leaf { value, as_param }
}

fn rand(shape: Shape, lo: f32, hi: f32, rng: &mut Rng) -> Tensor {
    Tensor::uniform(shape, lo, hi, rng).unwrap()
}

/// Winograd F(4x4,3x3) rounds its outputs to about 1e-5 of their magnitude
/// (docs/ALGORITHMS.md), so with `h = 1e-3` the one-sided differences of a
/// purely linear conv differ by ~1e-2 from rounding alone and read as kinks;
/// a ten times larger step keeps that noise under the kink threshold.
fn tol_for(algo: ConvAlgo) -> Tol {
    if algo == ConvAlgo::WinogradF4 {
        Tol { h: 1e-2, ..LINEAR }
    } else {
        LINEAR
    }
}

/// `sum(r * y)` in f64, recording everything as plain inputs.
fn eval(leaves: &[Tensor], consts: &[Tensor], build: &Build, r: &Tensor) -> f64 {
    let mut tape = Tape::new();
    let vars: Vec<Var> = leaves.iter().map(|t| tape.input(t.view()).unwrap()).collect();
    let cvars: Vec<Var> = consts.iter().map(|t| tape.input(t.view()).unwrap()).collect();
    let y = build(&mut tape, &vars, &cvars).unwrap();
    let y = tape.value(y).unwrap();
    y.data().iter().zip(r.data()).map(|(&y, &r)| y as f64 * r as f64).sum()
}

/// Checks every leaf's analytic gradient against central differences on up
/// to `samples` elements per leaf.
///
/// A wrong gradient panics. A case whose samples mostly straddle a kink (a
/// relu pre-activation or a max-pool tie within the finite-difference step)
/// is *rejected*, not failed: the numeric side has nothing to say there, and
/// which samples sit on kinks depends only on the forward values, never on
/// the analytic gradient under test. Proptest draws a replacement case and
/// fails if rejections pile up (its global reject limit).
fn check(
    op: &str,
    leaves: Vec<Leaf>,
    consts: Vec<Tensor>,
    build: &Build,
    tol: Tol,
    seed: u64,
) -> Result<(), TestCaseError> {
    let mut rng = Rng::new(seed);
    // Analytic: L = mean(y * r) * len(y) through the tape.
    let mut tape = Tape::new();
    let mut params = Params::new();
    let mut vars = Vec::new();
    let mut ids = Vec::new();
    for (i, l) in leaves.iter().enumerate() {
        if l.as_param {
            let id = params.add(format!("p{i}"), l.value.clone()).unwrap();
            vars.push(tape.param(&params, id).unwrap());
            ids.push(Some(id));
        } else {
            vars.push(tape.variable(l.value.view()).unwrap());
            ids.push(None);
        }
    }
    let cvars: Vec<Var> = consts.iter().map(|t| tape.input(t.view()).unwrap()).collect();
    let y = build(&mut tape, &vars, &cvars).unwrap();
    let y_shape = tape.shape(y).unwrap();
    let r = rand(y_shape, -1.0, 1.0, &mut rng);
    let rv = tape.input(r.view()).unwrap();
    let prod = tape.mul(y, rv).unwrap();
    let loss = tape.mean(prod).unwrap();
    tape.backward(loss, &mut params).unwrap();
    let scale = y_shape.len() as f64;
    let analytic: Vec<Vec<f64>> = vars
        .iter()
        .zip(&ids)
        .map(|(&v, id)| {
            let g = match id {
                // A parameter the loss does not reach gets no gradient buffer: its gradient is zero.
                Some(id) if !params.has_grad(*id).unwrap() => vec![0.0; params.shape(*id).unwrap().len()],
                Some(id) => params.grad(*id).unwrap().data().to_vec(),
                None => tape.grad(v).unwrap().data().to_vec(),
            };
            g.iter().map(|&g| g as f64 * scale).collect()
        })
        .collect();

    let mut values: Vec<Tensor> = leaves.iter().map(|l| l.value.clone()).collect();
    for li in 0..values.len() {
        let n = values[li].len();
        let picks: Vec<usize> = if n <= 24 { (0..n).collect() } else { (0..24).map(|_| rng.below(n)).collect() };
        let (mut checked, mut skipped) = (0, 0);
        for &j in &picks {
            let x0 = values[li].data()[j];
            let f0 = eval(&values, &consts, build, &r);
            // On a kink, retry once with an eighth of the step.
            let mut found = None;
            for shrink in [1.0, 0.125] {
                let h = (shrink * tol.h * (x0.abs() as f64).max(1.0)) as f32;
                let mut at = |dx: f32| {
                    values[li].data_mut()[j] = x0 + dx;
                    let f = eval(&values, &consts, build, &r);
                    // The step actually taken in f32.
                    ((x0 + dx) - x0, f)
                };
                let ((hp, fp), (hm, fm)) = (at(h), at(-h));
                let ((hp2, fp2), (hm2, fm2)) = (at(h / 2.0), at(-h / 2.0));
                values[li].data_mut()[j] = x0;
                let (hp, hm, hp2, hm2) = (hp as f64, -hm as f64, hp2 as f64, -hm2 as f64);
                let (right, left) = ((fp - f0) / hp, (f0 - fm) / hm);
                let (right2, left2) = ((fp2 - f0) / hp2, (f0 - fm2) / hm2);
                // A kink shows as the two sides disagreeing, or as one side's
                // slope changing between the full and the half step (two kinks
                // on opposite sides can bend both sides alike and leave left
                // and right in agreement; each side then fails the second test).
                let differ =
                    |a: f64, b: f64| tol.kink.is_some_and(|(ka, kr)| (a - b).abs() > ka + kr * a.abs().max(b.abs()));
                let kink = differ(right, left) || differ(right, right2) || differ(left, left2);
                if !kink {
                    found = Some(((fp - fm) / (hp + hm), h));
                    break;
                }
            }
            let Some((numeric, h)) = found else {
                skipped += 1; // a kink lies within the step
                continue;
            };
            let a = analytic[li][j];
            checked += 1;
            let bound = tol.atol + tol.rtol * a.abs().max(numeric.abs());
            assert!(
                (a - numeric).abs() <= bound,
                "{op}: leaf {li} element {j}: analytic {a} vs numeric {numeric} (x = {x0}, h = {h})"
            );
        }
        if skipped * 4 > picks.len() + 4 || (checked == 0 && n > 0) {
            return Err(TestCaseError::reject(format!(
                "{op}: leaf {li}: {skipped} of {} samples straddle a kink",
                picks.len()
            )));
        }
    }
    Ok(())
}

fn padding(same: bool) -> Padding {
    if same {
        Padding::Same
    } else {
        Padding::Valid
    }
}

/// `cases` cases unless `PROPTEST_CASES` says otherwise; shrunk failures are
/// kept in this file's `.proptest-regressions` twin (`docs/TESTING.md`).
fn proptest_config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(cases);
    let persistence = proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions");
    ProptestConfig { cases, failure_persistence: Some(Box::new(persistence)), ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(proptest_config(32))]

    /// conv2d: every algorithm that runs the shape (all three passes), stride
    /// 1-2, `valid`/`same`, 1x1, 3x3 and 5x5 windows, fused relu, with and
    /// without bias; gradients of input, filter and bias.
    #[test]
    fn conv2d(n in 1usize..3, h in 3usize..8, w in 3usize..8, ci in 1usize..4, co in 1usize..4,
              k in prop::sample::select(vec![1usize, 3, 5]), stride in 1usize..3, same in any::<bool>(),
              relu in any::<bool>(), bias in any::<bool>(), algo_pick in 0usize..8, seed in any::<u64>()) {
        let k = if !same && k > h.min(w) { 1 } else { k };
        let shape = ConvShape {
            n, h, w, c_in: ci, c_out: co, kh: k, kw: k, stride_h: stride, stride_w: stride,
            dilation_h: 1, dilation_w: 1, pad_top: 0, pad_bottom: 0, pad_left: 0, pad_right: 0, groups: 1,
        }
        .with_padding(padding(same))
        .unwrap();
        let runnable: Vec<ConvAlgo> = ConvAlgo::ALL
            .into_iter()
            .filter(|&a| [ConvPass::Forward, ConvPass::BackwardData, ConvPass::BackwardFilter]
                .iter().all(|&p| supports(a, &shape, p).is_ok()))
            .chain([ConvAlgo::Auto])
            .collect();
        let algo = runnable[algo_pick % runnable.len()];
        let mut rng = Rng::new(seed);
        let spec = Conv2dSpec::new()
            .stride(stride, stride)
            .padding(padding(same))
            .algo(algo)
            .activation(if relu { Activation::Relu } else { Activation::Linear });
        let mut leaves = vec![
            leaf(rand(Shape::nhwc(n, h, w, ci), -1.0, 1.0, &mut rng), false),
            leaf(rand(Shape::new(&[k, k, ci, co]).unwrap(), -1.0, 1.0, &mut rng), true),
        ];
        if bias {
            leaves.push(leaf(rand(Shape::vector(co), -0.5, 0.5, &mut rng), true));
        }
        let build = move |t: &mut Tape, v: &[Var], _: &[Var]| t.conv2d(v[0], v[1], v.get(2).copied(), spec);
        check(&format!("conv2d {algo} {shape}"), leaves, vec![], &build, tol_for(algo), seed)?;
    }

    /// Grouped conv2d (1-3 groups of 1-3 input and 1-2 output channels) on
    /// every algorithm that runs it, and depthwise conv2d with Keras's
    /// `[kh, kw, c, multiplier]` filter followed by a 1x1 pointwise conv
    /// (a separable convolution); gradients of input, filters and bias.
    #[test]
    fn grouped_and_depthwise_conv2d(n in 1usize..3, h in 3usize..7, w in 3usize..7, g in 1usize..4,
              cig in 1usize..4, cog in 1usize..3, k in prop::sample::select(vec![1usize, 3]),
              stride in 1usize..3, same in any::<bool>(), bias in any::<bool>(), algo_pick in 0usize..8,
              seed in any::<u64>()) {
        let (ci, co) = (g * cig, g * cog);
        let shape = ConvShape::new(n, h, w, ci, co, 1, 1).unwrap().with_groups(g).unwrap();
        let shape = ConvShape { kh: k, kw: k, stride_h: stride, stride_w: stride, ..shape }.with_padding(padding(same)).unwrap();
        let runnable: Vec<ConvAlgo> = ConvAlgo::ALL
            .into_iter()
            .filter(|&a| [ConvPass::Forward, ConvPass::BackwardData, ConvPass::BackwardFilter]
                .iter().all(|&p| supports(a, &shape, p).is_ok()))
            .chain([ConvAlgo::Auto])
            .collect();
        let algo = runnable[algo_pick % runnable.len()];
        let mut rng = Rng::new(seed);
        let spec = Conv2dSpec::new().stride(stride, stride).padding(padding(same)).algo(algo).groups(g);
        let mut leaves = vec![
            leaf(rand(Shape::nhwc(n, h, w, ci), -1.0, 1.0, &mut rng), false),
            leaf(rand(Shape::new(&[k, k, cig, co]).unwrap(), -1.0, 1.0, &mut rng), true),
        ];
        if bias {
            leaves.push(leaf(rand(Shape::vector(co), -0.5, 0.5, &mut rng), true));
        }
        let build = move |t: &mut Tape, v: &[Var], _: &[Var]| t.conv2d(v[0], v[1], v.get(2).copied(), spec);
        check(&format!("grouped conv2d {algo} {shape}"), leaves, vec![], &build, tol_for(algo), seed)?;

        // Separable: depthwise (Keras layout, multiplier cog) then pointwise 1x1 to g outputs.
        let dw = Conv2dSpec::new().stride(stride, stride).padding(padding(same)).groups(ci);
        let leaves = vec![
            leaf(rand(Shape::nhwc(n, h, w, ci), -1.0, 1.0, &mut rng), false),
            leaf(rand(Shape::new(&[k, k, ci, cog]).unwrap(), -1.0, 1.0, &mut rng), true),
            leaf(rand(Shape::new(&[1, 1, ci * cog, g]).unwrap(), -1.0, 1.0, &mut rng), true),
            leaf(rand(Shape::vector(g), -0.5, 0.5, &mut rng), true),
        ];
        let build = move |t: &mut Tape, v: &[Var], _: &[Var]| {
            let d = t.conv2d(v[0], v[1], None, dw)?;
            // Linear on purpose: a relu here puts a kink within the step of
            // many depthwise taps at once (each tap feeds every output pixel of
            // its channel), so too many samples would be skipped; relu's own
            // gradient is checked by the conv2d and dense properties.
            t.conv2d(d, v[2], Some(v[3]), Conv2dSpec::new())
        };
        check(&format!("separable conv2d {shape}"), leaves, vec![], &build, LINEAR, seed)?;
    }

    /// Max and average pooling: windows 1-3, strides 1-3, `valid`/`same`;
    /// global average pooling in place of the 1x1 average.
    #[test]
    fn pooling(n in 1usize..3, h in 3usize..8, w in 3usize..8, c in 1usize..4, win in 1usize..4,
               stride in 1usize..4, same in any::<bool>(), max in any::<bool>(), seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let spec = PoolSpec::new(win, win).stride(stride, stride).padding(padding(same));
        let leaves = vec![leaf(rand(Shape::nhwc(n, h, w, c), -1.0, 1.0, &mut rng), false)];
        if max {
            let build = move |t: &mut Tape, v: &[Var], _: &[Var]| t.max_pool2d(v[0], spec);
            check("max_pool2d", leaves, vec![], &build, LINEAR, seed)?;
        } else if win == 1 {
            let build = |t: &mut Tape, v: &[Var], _: &[Var]| t.global_avg_pool2d(v[0]);
            check("global_avg_pool2d", leaves, vec![], &build, LINEAR, seed)?;
        } else {
            let build = move |t: &mut Tape, v: &[Var], _: &[Var]| t.avg_pool2d(v[0], spec);
            check("avg_pool2d", leaves, vec![], &build, LINEAR, seed)?;
        }
    }

    /// Pooling with PyTorch's options: dilation 1-2, `ceil_mode`,
    /// `count_include_pad`, padding up to half the window.
    #[test]
    fn pooling_with_options(n in 1usize..3, h in 3usize..8, w in 3usize..8, c in 1usize..4, win in 1usize..4,
               stride in 1usize..3, dil in 1usize..3, pad in 0usize..2, ceil in any::<bool>(),
               incl in any::<bool>(), max in any::<bool>(), seed in any::<u64>()) {
        let p = pad.min(win / 2);
        let opts = convnet_kernels::pool::PoolOptions::default().dilation(dil, dil).ceil_mode(ceil).count_include_pad(incl);
        let spec = PoolSpec::new(win, win)
            .stride(stride, stride)
            .padding(Padding::Explicit { top: p, bottom: p, left: p, right: p })
            .options(opts);
        let ok = convnet_kernels::pool::PoolShape::new(n, h, w, c, spec.window, spec.stride, spec.padding)
            .and_then(|s| s.with_options(opts))
            .is_ok();
        prop_assume!(ok);
        let mut rng = Rng::new(seed);
        let leaves = vec![leaf(rand(Shape::nhwc(n, h, w, c), -1.0, 1.0, &mut rng), false)];
        if max {
            let build = move |t: &mut Tape, v: &[Var], _: &[Var]| t.max_pool2d(v[0], spec);
            check("max_pool2d with options", leaves, vec![], &build, LINEAR, seed)?;
        } else {
            let build = move |t: &mut Tape, v: &[Var], _: &[Var]| t.avg_pool2d(v[0], spec);
            check("avg_pool2d with options", leaves, vec![], &build, LINEAR, seed)?;
        }
    }

    /// Dense with and without bias and fused relu, then flatten/reshape feeding it.
    #[test]
    fn dense(batch in 1usize..5, inputs in 1usize..7, outputs in 1usize..6, relu in any::<bool>(),
             bias in any::<bool>(), seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let act = if relu { Activation::Relu } else { Activation::Linear };
        let mut leaves = vec![
            leaf(rand(Shape::nhwc(batch, 1, inputs, 1), -1.0, 1.0, &mut rng), false),
            leaf(rand(Shape::matrix(inputs, outputs), -1.0, 1.0, &mut rng), true),
        ];
        if bias {
            leaves.push(leaf(rand(Shape::vector(outputs), -0.5, 0.5, &mut rng), true));
        }
        let build = move |t: &mut Tape, v: &[Var], _: &[Var]| {
            let x = t.flatten(v[0])?;
            let y = t.dense(x, v[1], v.get(2).copied(), act)?;
            let s = t.shape(y)?;
            t.reshape(y, Shape::new(&[s.len()])?)
        };
        check("dense", leaves, vec![], &build, LINEAR, seed)?;
    }

    /// Element-wise ops: relu, sigmoid, tanh, bias_add, add, mul, softmax, mean, dropout.
    #[test]
    fn elementwise(rows in 1usize..5, cols in 1usize..7, which in 0usize..9, as_param in any::<bool>(),
                   seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let s = Shape::matrix(rows, cols);
        let a = rand(s, -2.0, 2.0, &mut rng);
        let b = rand(s, -2.0, 2.0, &mut rng);
        let bias = rand(Shape::vector(cols), -1.0, 1.0, &mut rng);
        let (name, leaves, build): (&str, Vec<Leaf>, Box<Build>) = match which {
            0 => ("relu", vec![leaf(a, as_param)], Box::new(|t, v, _| t.relu(v[0]))),
            1 => ("sigmoid", vec![leaf(a, as_param)], Box::new(|t, v, _| t.sigmoid(v[0]))),
            2 => ("tanh", vec![leaf(a, as_param)], Box::new(|t, v, _| t.tanh(v[0]))),
            3 => ("bias_add", vec![leaf(a, as_param), leaf(bias, true)], Box::new(|t, v, _| t.bias_add(v[0], v[1]))),
            4 => ("add", vec![leaf(a, as_param), leaf(b, false)], Box::new(|t, v, _| t.add(v[0], v[1]))),
            5 => ("mul", vec![leaf(a, as_param), leaf(b, true)], Box::new(|t, v, _| t.mul(v[0], v[1]))),
            6 => ("softmax", vec![leaf(a, as_param)], Box::new(|t, v, _| t.softmax(v[0]))),
            7 => ("mean", vec![leaf(a, as_param)], Box::new(|t, v, _| t.mean(v[0]))),
            _ => ("dropout", vec![leaf(a, as_param)], Box::new(move |t, v, _| t.dropout(v[0], 0.4, seed))),
        };
        let tol = if name == "relu" { LINEAR } else { SMOOTH };
        check(name, leaves, vec![], &*build, tol, seed)?;
    }

    /// Fused-relu conv or dense feeding max pooling (the pooling applies the
    /// relu mask on the pooled gradient), alone or with a second consumer of
    /// the relu output, processed before or after the pooling.
    #[test]
    fn relu_then_max_pool(n in 1usize..3, h in 4usize..8, ci in 1usize..3, co in 1usize..4, dense in any::<bool>(),
                          second in 0usize..3, seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let leaves = vec![
            leaf(rand(Shape::nhwc(n, h, h, ci), -1.0, 1.0, &mut rng), false),
            leaf(rand(Shape::new(&[3, 3, ci, co]).unwrap(), -1.0, 1.0, &mut rng), true),
            leaf(rand(Shape::matrix(h * h * ci, 4 * co), -1.0, 1.0, &mut rng), true),
        ];
        let build = move |t: &mut Tape, v: &[Var], _: &[Var]| {
            let y = if dense {
                let f = t.flatten(v[0])?;
                let d = t.dense(f, v[2], None, Activation::Relu)?;
                t.reshape(d, Shape::nhwc(n, 2, 2, co))?
            } else {
                t.conv2d(v[0], v[1], None, Conv2dSpec::new().relu())?
            };
            let early = if second == 1 { Some(t.tanh(y)?) } else { None };
            let p = t.max_pool2d(y, PoolSpec::new(2, 2))?;
            let pm = t.mean(p)?;
            let other = match (second, early) {
                (1, Some(e)) => Some(e),
                (2, _) => Some(t.sigmoid(y)?),
                _ => None,
            };
            match other {
                Some(o) => {
                    let om = t.mean(o)?;
                    t.add(pm, om)
                }
                None => Ok(pm),
            }
        };
        check("relu then max_pool2d", leaves, vec![], &build, LINEAR, seed)?;
    }

    /// One channel's mean per example (filter visualisation's objective, a
    /// class score on `[n, classes]`), and the sum of all elements.
    #[test]
    fn channel_means_and_sum(n in 1usize..4, h in 1usize..4, w in 1usize..4, c in 1usize..5, flat in any::<bool>(),
                             seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let s = if flat { Shape::matrix(n, c) } else { Shape::nhwc(n, h, w, c) };
        let x = rand(s, -2.0, 2.0, &mut rng);
        let channels: Vec<u32> = (0..n).map(|_| rng.below(c) as u32).collect();
        let build = move |t: &mut Tape, v: &[Var], _: &[Var]| {
            let m = t.channel_means(v[0], &channels)?;
            let sq = t.mul(m, m)?; // not linear, so a wrong scale shows
            let total = t.sum(sq)?;
            let th = t.tanh(v[0])?;
            let all = t.sum(th)?;
            t.add(total, all)
        };
        check("channel_means, sum", vec![leaf(x, false)], vec![], &build, SMOOTH, seed)?;
    }

    /// A value used twice (`x * x + x`): gradients from several consumers accumulate.
    #[test]
    fn shared_use(rows in 1usize..4, cols in 1usize..5, as_param in any::<bool>(), seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let a = rand(Shape::matrix(rows, cols), -2.0, 2.0, &mut rng);
        let build = |t: &mut Tape, v: &[Var], _: &[Var]| {
            let sq = t.mul(v[0], v[0])?;
            let th = t.tanh(v[0])?;
            let s = t.add(sq, th)?;
            t.add(s, v[0])
        };
        check("x*x + tanh(x) + x", vec![leaf(a, as_param)], vec![], &build, SMOOTH, seed)?;
    }

    /// The losses: fused softmax cross-entropy (dense and sparse targets) and
    /// binary cross-entropy from probabilities and from logits.
    #[test]
    fn losses(rows in 1usize..5, classes in 2usize..6, which in 0usize..4, seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let s = Shape::matrix(rows, classes);
        let logits = rand(s, -3.0, 3.0, &mut rng);
        let labels: Vec<u32> = (0..rows).map(|_| rng.below(classes) as u32).collect();
        let mut dist = rand(s, 0.0, 1.0, &mut rng);
        for row in dist.data_mut().chunks_exact_mut(classes) {
            let sum: f32 = row.iter().sum();
            row.iter_mut().for_each(|x| *x /= sum);
        }
        let probs = rand(s, 0.05, 0.95, &mut rng);
        let bits = Tensor::from_slice(s, &(0..s.len()).map(|_| rng.below(2) as f32).collect::<Vec<_>>()).unwrap();
        match which {
            0 => check("softmax_cross_entropy", vec![leaf(logits, true)], vec![dist],
                       &|t, v, c| t.softmax_cross_entropy(v[0], c[0]), SMOOTH, seed)?,
            1 => check("sparse_softmax_cross_entropy", vec![leaf(logits, false)], vec![],
                       &move |t, v, _| t.sparse_softmax_cross_entropy(v[0], &labels), SMOOTH, seed)?,
            2 => check("binary_cross_entropy", vec![leaf(probs, false)], vec![bits],
                       &|t, v, c| t.binary_cross_entropy(v[0], c[0]), Tol { h: 1e-3, ..SMOOTH }, seed)?,
            _ => check("binary_cross_entropy_with_logits", vec![leaf(logits, true)], vec![bits],
                       &|t, v, c| t.binary_cross_entropy_with_logits(v[0], c[0]), SMOOTH, seed)?,
        }
    }
}

/// A whole small convnet (conv-relu, max-pool, conv same stride 2, flatten,
/// dense-relu, dense, softmax cross-entropy): every parameter's gradient.
#[test]
fn small_convnet_end_to_end() {
    let mut rng = Rng::new(11);
    let leaves = vec![
        leaf(rand(Shape::new(&[3, 3, 1, 3]).unwrap(), -0.6, 0.6, &mut rng), true),
        leaf(rand(Shape::vector(3), -0.1, 0.1, &mut rng), true),
        leaf(rand(Shape::new(&[3, 3, 3, 4]).unwrap(), -0.4, 0.4, &mut rng), true),
        leaf(rand(Shape::matrix(16, 5), -0.4, 0.4, &mut rng), true),
        leaf(rand(Shape::vector(5), -0.1, 0.1, &mut rng), true),
        leaf(rand(Shape::matrix(5, 3), -0.5, 0.5, &mut rng), true),
    ];
    let x = rand(Shape::nhwc(2, 10, 10, 1), 0.0, 1.0, &mut rng);
    let targets = Tensor::from_slice(Shape::matrix(2, 3), &[0.0, 1.0, 0.0, 0.0, 0.0, 1.0]).unwrap();
    let build = |t: &mut Tape, v: &[Var], c: &[Var]| {
        let h = t.conv2d(c[0], v[0], Some(v[1]), Conv2dSpec::new().relu())?; // 8x8x3
        let h = t.max_pool2d(h, PoolSpec::new(2, 2))?; // 4x4x3
        let h = t.conv2d(h, v[2], None, Conv2dSpec::new().stride(2, 2).padding(Padding::Same))?; // 2x2x4
        let h = t.flatten(h)?;
        let h = t.dense(h, v[3], Some(v[4]), Activation::Relu)?;
        let logits = t.dense(h, v[5], None, Activation::Linear)?;
        t.softmax_cross_entropy(logits, c[1])
    };
    // Smooth loss on top of kinks: curvature makes the one-sided differences
    // differ a little even away from kinks, so the kink test is looser.
    let tol = Tol { h: 1e-3, rtol: 2e-2, atol: 2e-3, kink: Some((1e-2, 5e-2)) };
    check("small convnet", leaves, vec![x, targets], &build, tol, 11).unwrap();
}

/// Shrunk failure of the `conv2d` property (Dec 1): Winograd F(4x4,3x3) on a
/// 4x5 `same` input; with `h = 1e-3` 8 of 24 input samples read as kinks
/// (the kernel agrees with the reference to 1e-5: F4 rounding, not a bug).
#[test]
fn conv2d_winograd_f4_same_4x5_regression() {
    let (n, h, w, ci, co, k, seed) = (1, 4, 5, 3, 3, 3, 8601510383117084087u64);
    let shape = ConvShape::new(n, h, w, ci, co, k, k).unwrap().with_padding(padding(true)).unwrap();
    let mut rng = Rng::new(seed);
    let spec = Conv2dSpec::new().padding(padding(true)).algo(ConvAlgo::WinogradF4);
    let leaves = vec![
        leaf(rand(Shape::nhwc(n, h, w, ci), -1.0, 1.0, &mut rng), false),
        leaf(rand(Shape::new(&[k, k, ci, co]).unwrap(), -1.0, 1.0, &mut rng), true),
    ];
    let build = move |t: &mut Tape, v: &[Var], _: &[Var]| t.conv2d(v[0], v[1], None, spec);
    check(&format!("conv2d winograd_f4 {shape}"), leaves, vec![], &build, tol_for(ConvAlgo::WinogradF4), seed).unwrap();
}
