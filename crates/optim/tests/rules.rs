//! Every optimizer against its published update rule, three steps by hand;
//! every optimizer minimises a quadratic; state save/restore resumes a run
//! bit-for-bit; bad input is an error.
//!
//! The expected values come from this independent f64 implementation of the
//! Keras 3 rules (Python 3, no libraries), run once; its output is pasted
//! into `EXPECTED` below:
//!
//! ```python
//! import math
//! w0 = [1.0, -2.0, 0.5]
//! G = [[0.1, -0.2, 0.3], [0.4, 0.0, -0.5], [-0.3, 0.25, 0.1]]   # gradients of steps 1-3
//! def sgd(lr, mom=0.0, nest=False, wd=0.0):      # keras/src/optimizers/sgd.py
//!     w = list(w0); m = [0.0] * 3
//!     for g in G:
//!         for i in range(3):
//!             w[i] -= lr * wd * w[i]                 # decoupled weight decay (base optimizer)
//!             if mom == 0: w[i] -= lr * g[i]
//!             else:
//!                 m[i] = mom * m[i] - lr * g[i]
//!                 w[i] += (mom * m[i] - lr * g[i]) if nest else m[i]
//!     return w
//! def rms(lr, rho=0.9, mom=0.0, eps=1e-7, centered=False, sched=None):   # rmsprop.py
//!     w = list(w0); v = [0.0] * 3; a = [0.0] * 3; m = [0.0] * 3
//!     for t, g in enumerate(G):
//!         l = lr if sched is None else sched(t)
//!         for i in range(3):
//!             v[i] = rho * v[i] + (1 - rho) * g[i] ** 2
//!             if centered:
//!                 a[i] = rho * a[i] + (1 - rho) * g[i]; d = v[i] - a[i] ** 2 + eps
//!             else: d = v[i] + eps
//!             inc = l * g[i] / math.sqrt(d)
//!             if mom > 0: m[i] = mom * m[i] + inc; w[i] -= m[i]
//!             else: w[i] -= inc
//!     return w
//! def adam(lr, b1=0.9, b2=0.999, eps=1e-7, ams=False, wd=0.0):          # adam.py, adamw.py
//!     w = list(w0); m = [0.0] * 3; v = [0.0] * 3; vh = [0.0] * 3
//!     for t, g in enumerate(G, 1):
//!         alpha = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
//!         for i in range(3):
//!             w[i] -= lr * wd * w[i]
//!             m[i] += (g[i] - m[i]) * (1 - b1); v[i] += (g[i] ** 2 - v[i]) * (1 - b2)
//!             vv = v[i]
//!             if ams: vh[i] = max(vh[i], v[i]); vv = vh[i]
//!             w[i] -= m[i] * alpha / (math.sqrt(vv) + eps)
//!     return w
//! ```

use convnet_optim::{Adam, AdamW, Error, LearningRate, Optimizer, OptimizerState, RMSprop, Sgd};

const W0: [f32; 3] = [1.0, -2.0, 0.5];
const G: [[f32; 3]; 3] = [[0.1, -0.2, 0.3], [0.4, 0.0, -0.5], [-0.3, 0.25, 0.1]];

fn three_steps(opt: &mut dyn Optimizer) -> [f32; 3] {
    let mut w = W0;
    for g in &G {
        opt.step(&mut [(&mut w[..], &g[..])]).unwrap();
    }
    w
}

fn assert_rule(name: &str, opt: &mut dyn Optimizer, want: [f64; 3]) {
    let got = three_steps(opt);
    for i in 0..3 {
        let tol = 2e-6 * (1.0 + want[i].abs());
        assert!((got[i] as f64 - want[i]).abs() <= tol, "{name}[{i}]: got {}, rule gives {}", got[i], want[i]);
    }
    assert_eq!(opt.iterations(), 3, "{name}");
}

#[test]
fn three_steps_match_the_published_rules() {
    assert_rule("sgd", &mut Sgd::new(0.1), [0.98, -2.005, 0.51]);
    assert_rule("sgd momentum", &mut Sgd::new(0.1).with_momentum(0.9), [0.9269, -1.9707999999999999, 0.5037]);
    assert_rule(
        "sgd nesterov",
        &mut Sgd::new(0.1).with_momentum(0.9).with_nesterov(true),
        [0.91421, -1.97872, 0.5133300000000001],
    );
    assert_rule(
        "sgd momentum + weight decay",
        &mut Sgd::new(0.1).with_momentum(0.9).with_weight_decay(0.01),
        [0.9239719889999999, -1.964863978, 0.5022384695000001],
    );
    assert_rule("rmsprop", &mut RMSprop::new(0.01), [0.9568903720444789, -1.9940404526504103, 0.49016089826274]);
    assert_rule(
        "rmsprop momentum",
        &mut RMSprop::new(0.01).with_momentum(0.5),
        [0.9177899054902031, -1.9703236666571196, 0.48018516956306395],
    );
    assert_rule(
        "rmsprop centered",
        &mut RMSprop::new(0.01).with_centered(true),
        [0.9528096590129225, -1.9924353142099605, 0.488662024164629],
    );
    assert_rule(
        "rmsprop centered momentum",
        &mut RMSprop::new(0.01).with_centered(true).with_momentum(0.5),
        [0.9112014363366342, -1.9674356614249489, 0.4775145393163189],
    );
    let decay = LearningRate::ExponentialDecay { initial: 0.01, decay_steps: 2, decay_rate: 0.5, staircase: false };
    assert_rule(
        "rmsprop exponential decay",
        &mut RMSprop::new(decay),
        [0.9562620907408383, -1.9812090356630112, 0.48496094918314175],
    );
    assert_rule("adam", &mut Adam::new(0.01), [0.979389547026211, -1.9850562297342218, 0.4940917830950309]);
    assert_rule(
        "adam amsgrad",
        &mut Adam::new(0.01).with_amsgrad(true),
        [0.979389547026211, -1.9850595807574885, 0.4940917830950309],
    );
    assert_rule("adamw", &mut AdamW::new(0.01), [0.9792707055327331, -1.9848173073245068, 0.49403246804672135]);
}

#[test]
fn keras_defaults() {
    let r = RMSprop::default();
    assert_eq!((r.current_learning_rate(), r.rho, r.momentum, r.epsilon, r.centered), (0.001, 0.9, 0.0, 1e-7, false));
    let a = Adam::default();
    assert_eq!((a.current_learning_rate(), a.beta_1, a.beta_2, a.epsilon), (0.001, 0.9, 0.999, 1e-7));
    assert_eq!(AdamW::default().weight_decay, 0.004);
    assert_eq!(Sgd::default().current_learning_rate(), 0.01);
}

/// `f(w) = 0.5 * sum(a_i (w_i - c_i)^2)` with curvatures from 0.5 to 4, over
/// 37 elements (the 8-lane body and the scalar tail).
fn minimise(opt: &mut dyn Optimizer, steps: usize) -> (f64, f64) {
    let n = 37;
    let a: Vec<f32> = (0..n).map(|i| 0.5 + 3.5 * i as f32 / (n - 1) as f32).collect();
    let c: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin() * 2.0).collect();
    let f = |w: &[f32]| -> f64 {
        w.iter().zip(&a).zip(&c).map(|((&w, &a), &c)| 0.5 * a as f64 * ((w - c) as f64).powi(2)).sum()
    };
    let mut w = vec![0.0f32; n];
    let start = f(&w);
    let mut g = vec![0.0f32; n];
    for _ in 0..steps {
        for i in 0..n {
            g[i] = a[i] * (w[i] - c[i]);
        }
        opt.step(&mut [(&mut w[..], &g[..])]).unwrap();
    }
    (start, f(&w))
}

#[test]
fn every_optimizer_minimises_a_quadratic() {
    let cases: Vec<(&str, Box<dyn Optimizer>, usize)> = vec![
        ("sgd", Box::new(Sgd::new(0.2)), 300),
        ("sgd momentum", Box::new(Sgd::new(0.05).with_momentum(0.9)), 300),
        ("sgd nesterov", Box::new(Sgd::new(0.05).with_momentum(0.9).with_nesterov(true)), 300),
        (
            "rmsprop",
            Box::new(RMSprop::new(LearningRate::ExponentialDecay {
                initial: 0.05,
                decay_steps: 100,
                decay_rate: 0.3,
                staircase: false,
            })),
            600,
        ),
        ("rmsprop centered momentum", Box::new(RMSprop::new(0.01).with_centered(true).with_momentum(0.5)), 600),
        (
            "adam",
            Box::new(Adam::new(LearningRate::CosineDecay {
                initial: 0.1,
                decay_steps: 800,
                alpha: 0.0,
                warmup_target: None,
                warmup_steps: 0,
            })),
            800,
        ),
        ("adamw", Box::new(AdamW::new(0.05).with_weight_decay(0.0)), 800),
    ];
    for (name, mut opt, steps) in cases {
        let (start, end) = minimise(&mut *opt, steps);
        assert!(end < start * 1e-3, "{name}: f went from {start} to {end}");
    }
}

fn run(opt: &mut dyn Optimizer, w: &mut [Vec<f32>], steps: std::ops::Range<usize>) {
    for s in steps {
        let grads: Vec<Vec<f32>> = w
            .iter()
            .enumerate()
            .map(|(p, w)| w.iter().enumerate().map(|(i, &x)| x * 0.3 + ((s * 7 + i + p) as f32 * 0.61).sin()).collect())
            .collect();
        opt.begin_step().unwrap();
        for (i, (w, g)) in w.iter_mut().zip(&grads).enumerate() {
            opt.update(i, w, g).unwrap();
        }
    }
}

/// Stop after 5 steps, save, restore into a fresh optimizer, run 5 more: the
/// weights equal those of 10 uninterrupted steps bit for bit (both encodings).
#[test]
fn resumed_runs_continue_identically() {
    let makers: Vec<fn() -> Box<dyn Optimizer>> = vec![
        || Box::new(Sgd::new(0.05).with_momentum(0.9).with_nesterov(true)),
        || Box::new(RMSprop::new(0.01).with_momentum(0.3).with_centered(true)),
        || Box::new(Adam::new(0.01).with_amsgrad(true)),
        || Box::new(AdamW::new(LearningRate::StepDecay { initial: 0.01, step_size: 3, gamma: 0.5 })),
    ];
    for make in makers {
        let w0 = vec![vec![0.5f32; 19], vec![-1.0f32; 8]];
        let mut straight = make();
        let mut w_straight = w0.clone();
        run(&mut *straight, &mut w_straight, 0..10);

        let mut first = make();
        let mut w = w0.clone();
        run(&mut *first, &mut w, 0..5);
        let state = first.state();
        for restored in [
            OptimizerState::from_json(&state.to_json().unwrap()).unwrap(),
            OptimizerState::from_bytes(&state.to_bytes()).unwrap(),
        ] {
            assert_eq!(restored, state);
            let mut second = make();
            second.load_state(&restored).unwrap();
            assert_eq!(second.iterations(), 5);
            let mut w2 = w.clone();
            run(&mut *second, &mut w2, 5..10);
            assert_eq!(w2, w_straight, "{} resumed differently", second.name());
        }
    }
}

#[test]
fn bad_input_is_an_error() {
    let mut opt = RMSprop::default();
    let (mut w, g) = (vec![0.0f32; 4], vec![0.0f32; 3]);
    assert_eq!(opt.update(0, &mut w, &g[..3]).unwrap_err(), Error::NotBegun);
    opt.begin_step().unwrap();
    assert!(matches!(opt.update(0, &mut w, &g).unwrap_err(), Error::LengthMismatch { index: 0, .. }));
    opt.update(0, &mut w, &[0.1; 4]).unwrap();
    // The same index with another length later.
    assert!(matches!(opt.update(0, &mut w[..2], &[0.1; 2]).unwrap_err(), Error::LengthMismatch { .. }));

    assert!(matches!(RMSprop::default().with_rho(1.5).begin_step().unwrap_err(), Error::BadHyperParameter(_)));
    assert!(matches!(Sgd::new(0.1).with_momentum(-0.1).begin_step().unwrap_err(), Error::BadHyperParameter(_)));
    assert!(matches!(Adam::new(f32::NAN).begin_step().unwrap_err(), Error::BadHyperParameter(_)));
    let bad_schedule = LearningRate::PiecewiseConstant { boundaries: vec![10], values: vec![0.1] };
    assert!(matches!(Sgd::new(bad_schedule).begin_step().unwrap_err(), Error::BadHyperParameter(_)));

    // State of one optimizer into another, or of another configuration.
    let state = opt.state();
    assert!(matches!(Adam::default().load_state(&state).unwrap_err(), Error::BadState(_)));
    assert!(matches!(RMSprop::default().with_momentum(0.5).load_state(&state).unwrap_err(), Error::BadState(_)));
    let bytes = state.to_bytes();
    assert!(matches!(OptimizerState::from_bytes(&bytes[..bytes.len() - 1]).unwrap_err(), Error::BadState(_)));
    assert!(matches!(OptimizerState::from_bytes(b"nonsense").unwrap_err(), Error::BadState(_)));
    let mut huge = bytes.clone();
    huge[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(OptimizerState::from_bytes(&huge).unwrap_err(), Error::BadState(_)));
    assert!(matches!(OptimizerState::from_json("{").unwrap_err(), Error::BadState(_)));
}

/// The 8-lane body and the scalar tail compute the same rule bit for bit.
#[test]
fn vector_body_and_scalar_tail_agree() {
    let makers: Vec<fn() -> Box<dyn Optimizer>> = vec![
        || Box::new(Sgd::new(0.05).with_momentum(0.9).with_nesterov(true)),
        || Box::new(RMSprop::new(0.01).with_momentum(0.3).with_centered(true)),
        || Box::new(Adam::new(0.01).with_amsgrad(true)),
    ];
    for make in makers {
        let mut opt = make();
        let mut w = vec![0.75f32; 13]; // 8 in the body, 5 in the tail
        for s in 0..4 {
            let g = [0.3 - s as f32 * 0.2; 13];
            opt.step(&mut [(&mut w[..], &g[..])]).unwrap();
        }
        assert!(w.iter().all(|&x| x.to_bits() == w[0].to_bits()), "{}: {w:?}", opt.name());
    }
}

#[test]
fn schedules_follow_keras_formulas() {
    let exp = LearningRate::ExponentialDecay { initial: 0.1, decay_steps: 10, decay_rate: 0.96, staircase: false };
    assert!((exp.at(25) as f64 - 0.1 * 0.96f64.powf(2.5)).abs() < 1e-8);
    let step = LearningRate::StepDecay { initial: 1.0, step_size: 30, gamma: 0.1 };
    assert_eq!((step.at(29), step.at(30)), (1.0, 0.1));
    assert!((step.at(61) - 0.01).abs() < 1e-8);
    let pw = LearningRate::PiecewiseConstant { boundaries: vec![100, 200], values: vec![1.0, 0.5, 0.1] };
    assert_eq!((pw.at(100), pw.at(101), pw.at(201)), (1.0, 0.5, 0.1));
    let cos = LearningRate::CosineDecay {
        initial: 0.0,
        decay_steps: 100,
        alpha: 0.1,
        warmup_target: Some(1.0),
        warmup_steps: 10,
    };
    assert!((cos.at(5) - 0.5).abs() < 1e-7); // halfway through warmup
    assert!((cos.at(10) - 1.0).abs() < 1e-7);
    assert!((cos.at(60) - 0.55).abs() < 1e-6); // (1 - 0.1) * 0.5 + 0.1
    assert!((cos.at(1000) - 0.1).abs() < 1e-7);
    // The optimizer evaluates the schedule at its step count before the update.
    let mut opt = Sgd::new(step);
    let mut w = [0.0f32];
    for _ in 0..30 {
        opt.step(&mut [(&mut w[..], &[1.0][..])]).unwrap();
    }
    assert_eq!(opt.current_learning_rate(), 1.0, "step 30 used the rate of step index 29");
    opt.begin_step().unwrap();
    assert_eq!(opt.current_learning_rate(), 0.1, "step 31 uses the rate of step index 30");
}

/// The same three steps run by Keras 3.15.1 itself (TensorFlow backend,
/// float32), with this script and `~/.cache/convnet-anchors-venv/bin/python`:
///
/// ```python
/// import numpy as np, keras
/// G = [[0.1, -0.2, 0.3], [0.4, 0.0, -0.5], [-0.3, 0.25, 0.1]]
/// def run(opt):
///     v = keras.Variable(np.array([1.0, -2.0, 0.5], dtype="float32"))
///     for g in G:
///         opt.apply_gradients([(np.array(g, dtype="float32"), v)])
///     return [float(x) for x in v.numpy()]
/// print("rmsprop", run(keras.optimizers.RMSprop(learning_rate=0.01)))
/// print("rmsprop_centered_momentum", run(keras.optimizers.RMSprop(learning_rate=0.01, centered=True, momentum=0.5)))
/// print("sgd_nesterov", run(keras.optimizers.SGD(learning_rate=0.1, momentum=0.9, nesterov=True)))
/// print("adam", run(keras.optimizers.Adam(learning_rate=0.01)))
/// print("adamw", run(keras.optimizers.AdamW(learning_rate=0.01)))
/// ```
///
/// Output (pasted):
///
/// ```text
/// rmsprop [0.9568904042243958, -1.9940403699874878, 0.49016091227531433]
/// rmsprop_centered_momentum [0.9112014770507812, -1.9674357175827026, 0.4775145351886749]
/// sgd_nesterov [0.9142100214958191, -1.9787200689315796, 0.5133299827575684]
/// adam [0.9793897271156311, -1.9850564002990723, 0.49409180879592896]
/// adamw [0.9792709350585938, -1.9848175048828125, 0.49403247237205505]
/// ```
#[test]
fn three_steps_match_keras_itself() {
    let cases: Vec<(&str, Box<dyn Optimizer>, [f64; 3])> = vec![
        ("rmsprop", Box::new(RMSprop::new(0.01)), [0.9568904042243958, -1.9940403699874878, 0.49016091227531433]),
        (
            "rmsprop centered momentum",
            Box::new(RMSprop::new(0.01).with_centered(true).with_momentum(0.5)),
            [0.9112014770507812, -1.9674357175827026, 0.4775145351886749],
        ),
        (
            "sgd nesterov",
            Box::new(Sgd::new(0.1).with_momentum(0.9).with_nesterov(true)),
            [0.9142100214958191, -1.9787200689315796, 0.5133299827575684],
        ),
        ("adam", Box::new(Adam::new(0.01)), [0.9793897271156311, -1.9850564002990723, 0.49409180879592896]),
        ("adamw", Box::new(AdamW::new(0.01)), [0.9792709350585938, -1.9848175048828125, 0.49403247237205505]),
    ];
    for (name, mut opt, keras) in cases {
        let got = three_steps(&mut *opt);
        for i in 0..3 {
            // float32 on both sides, different operation order: a few ulps.
            assert!((got[i] as f64 - keras[i]).abs() <= 1e-6, "{name}[{i}]: got {}, Keras {}", got[i], keras[i]);
        }
    }
}
