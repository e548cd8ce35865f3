//! The affine warp: every SIMD level against the scalar oracle bit for bit,
//! exact cases (identity, quarter turns, integer shifts, flips), thread-count
//! invariance, argument errors, and numbers Keras 3 / TensorFlow produced
//! (`fixtures/keras_affine.json`, from `fixtures/gen_keras_affine.py`).

use convnet_kernels::image::{
    affine_warp_at, affine_warp_checked_reference, Affine, FillMode, Interpolation, WarpOptions, WarpShape,
};
use convnet_kernels::simd::SimdLevel;

const MODES: [FillMode; 4] = [FillMode::Reflect, FillMode::Wrap, FillMode::Constant, FillMode::Nearest];
const INTERPOLATIONS: [Interpolation; 2] = [Interpolation::Bilinear, Interpolation::Nearest];

/// A small deterministic generator (SplitMix64).
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next() >> 40) as f32 / (1u64 << 24) as f32)
    }
}

fn warp(level: SimdLevel, x: &[f32], shape: WarpShape, t: &[Affine], o: WarpOptions) -> Vec<f32> {
    let mut out = vec![f32::NAN; x.len()];
    affine_warp_at(level, x, shape, t, o, &mut out).unwrap();
    out
}

fn reference(x: &[f32], shape: WarpShape, t: &[Affine], o: WarpOptions) -> Vec<f32> {
    let mut out = vec![f32::NAN; x.len()];
    affine_warp_checked_reference(x, shape, t, o, &mut out).unwrap();
    out
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|f| f.to_bits()).collect()
}

fn image(shape: WarpShape, g: &mut Gen) -> Vec<f32> {
    (0..shape.n * shape.h * shape.w * shape.c).map(|_| g.uniform(-5.0, 5.0)).collect()
}

fn random_affine(g: &mut Gen, h: usize, w: usize) -> Affine {
    let t = Affine::keras(
        g.uniform(0.0, 1.0),
        g.uniform(0.0, 1.0),
        g.uniform(-180.0, 180.0),
        g.uniform(-3.0, 3.0) * w as f32,
        g.uniform(-3.0, 3.0) * h as f32,
        g.uniform(0.3, 3.0),
        g.uniform(-30.0, 30.0),
        g.uniform(-30.0, 30.0),
        h,
        w,
    );
    if g.next().is_multiple_of(4) {
        t.then(Affine::flip_horizontal(w))
    } else {
        t
    }
}

#[test]
fn every_level_equals_the_oracle_bit_for_bit() {
    let mut g = Gen(7);
    let mut cases = 0;
    for &(h, w) in &[(1, 1), (1, 9), (3, 1), (2, 7), (5, 8), (8, 9), (6, 17), (9, 33)] {
        for c in 1..=5 {
            let shape = WarpShape { n: 2, h, w, c };
            let x = image(shape, &mut g);
            for mode in MODES {
                for interpolation in INTERPOLATIONS {
                    let mut transforms = vec![random_affine(&mut g, h, w), random_affine(&mut g, h, w)];
                    if g.next().is_multiple_of(5) {
                        // Far outside: the SIMD lanes hand these to the scalar mapping.
                        transforms[1].a2 = 3.0e7;
                        transforms[1].b2 = -1.0e9;
                    }
                    let o = WarpOptions { interpolation, fill_mode: mode, fill_value: g.uniform(-1.0, 1.0) };
                    let want = bits(&reference(&x, shape, &transforms, o));
                    for level in SimdLevel::available() {
                        let got = bits(&warp(level, &x, shape, &transforms, o));
                        assert_eq!(got, want, "{level:?} {shape} {mode:?} {interpolation:?} {transforms:?}");
                    }
                    cases += 1;
                }
            }
        }
    }
    assert_eq!(cases, 8 * 5 * 8);
}

#[test]
fn identity_quarter_turns_shifts_and_flips_are_exact() {
    let mut g = Gen(11);
    let (h, w, c) = (6, 6, 3);
    let shape = WarpShape { n: 1, h, w, c };
    let x = image(shape, &mut g);
    let at = |y: usize, xx: usize, ch: usize| x[(y * w + xx) * c + ch];
    let last = (w - 1) as f32;
    // out[y][x] = in[src(y, x)] for each exact map.
    type Src = fn(usize, usize, usize) -> (usize, usize);
    let exact: [(&str, Affine, Src); 5] = [
        ("identity", Affine::IDENTITY, |y, x, _| (y, x)),
        ("rot90", Affine { a0: 0.0, a1: 1.0, a2: 0.0, b0: -1.0, b1: 0.0, b2: last }, |y, x, n| (n - 1 - x, y)),
        ("rot180", Affine { a0: -1.0, a1: 0.0, a2: last, b0: 0.0, b1: -1.0, b2: last }, |y, x, n| {
            (n - 1 - y, n - 1 - x)
        }),
        ("rot270", Affine { a0: 0.0, a1: -1.0, a2: last, b0: 1.0, b1: 0.0, b2: 0.0 }, |y, x, n| (x, n - 1 - y)),
        ("flip_lr", Affine::flip_horizontal(w), |y, x, n| (y, n - 1 - x)),
    ];
    for (name, t, src) in exact {
        for mode in MODES {
            for interpolation in INTERPOLATIONS {
                let o = WarpOptions { interpolation, fill_mode: mode, fill_value: 99.0 };
                for level in SimdLevel::available() {
                    let out = warp(level, &x, shape, &[t], o);
                    for y in 0..h {
                        for xx in 0..w {
                            let (sy, sx) = src(y, xx, w);
                            for ch in 0..c {
                                assert_eq!(out[(y * w + xx) * c + ch], at(sy, sx, ch), "{name} {mode:?} {level:?}");
                            }
                        }
                    }
                }
            }
        }
    }
    // Flip top-bottom twice is the identity; flips compose to a half turn.
    let flip_ud = Affine::flip_vertical(h);
    assert_eq!(flip_ud.then(flip_ud), Affine::IDENTITY);
    assert_eq!(Affine::flip_horizontal(w).then(flip_ud), exact[2].1);
    // Integer shifts: shifted pixels exact; what comes in from outside is the
    // fill value (constant) or the edge (nearest).
    for (dx, dy) in [(2i32, 0i32), (0, -3), (-1, 4), (5, 5)] {
        let t = Affine { a2: dx as f32, b2: dy as f32, ..Affine::IDENTITY };
        for mode in [FillMode::Constant, FillMode::Nearest] {
            let o = WarpOptions { fill_mode: mode, fill_value: 99.0, ..WarpOptions::default() };
            for level in SimdLevel::available() {
                let out = warp(level, &x, shape, &[t], o);
                for y in 0..h as i32 {
                    for xx in 0..w as i32 {
                        let (sy, sx) = (y + dy, xx + dx);
                        for ch in 0..c {
                            let inside = (0..h as i32).contains(&sy) && (0..w as i32).contains(&sx);
                            let want = match (inside, mode) {
                                (true, _) => at(sy as usize, sx as usize, ch),
                                (false, FillMode::Constant) => 99.0,
                                _ => at(sy.clamp(0, h as i32 - 1) as usize, sx.clamp(0, w as i32 - 1) as usize, ch),
                            };
                            assert_eq!(out[((y * w as i32 + xx) * c as i32) as usize + ch], want);
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn any_thread_count_gives_the_same_bits() {
    let mut g = Gen(3);
    let shape = WarpShape { n: 5, h: 37, w: 41, c: 3 };
    let x = image(shape, &mut g);
    let t: Vec<Affine> = (0..5).map(|_| random_affine(&mut g, 37, 41)).collect();
    let o = WarpOptions::default();
    let level = SimdLevel::detect();
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| bits(&warp(level, &x, shape, &t, o)))
    };
    let one = run(1);
    assert_eq!(run(2), one);
    assert_eq!(run(3), one);
    assert_eq!(one, bits(&reference(&x, shape, &t, o)));
}

#[test]
fn bad_arguments_are_errors() {
    let shape = WarpShape { n: 2, h: 3, w: 4, c: 1 };
    let x = vec![0.0; 24];
    let mut out = vec![0.0; 24];
    let o = WarpOptions::default();
    let l = SimdLevel::Portable;
    let id = Affine::IDENTITY;
    assert!(affine_warp_at(l, &x[..23], shape, &[id], o, &mut out).is_err());
    assert!(affine_warp_at(l, &x, shape, &[id], o, &mut out[..20]).is_err());
    assert!(affine_warp_at(l, &x, shape, &[id, id, id], o, &mut out).is_err());
    assert!(affine_warp_at(l, &x, shape, &[], o, &mut out).is_err());
    assert!(affine_warp_at(l, &x, shape, &[Affine { a0: f32::NAN, ..id }], o, &mut out).is_err());
    assert!(affine_warp_at(l, &x, WarpShape { c: 0, ..shape }, &[id], o, &mut []).is_err());
    assert!(affine_warp_at(l, &x, WarpShape { n: usize::MAX, ..shape }, &[id], o, &mut out).is_err());
    assert!(Affine::from_keras([1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.001, 0.0]).is_err());
    assert_eq!(Affine::from_keras(Affine::flip_vertical(5).to_keras()).unwrap(), Affine::flip_vertical(5));
}

#[test]
fn keras_affine_transform_numbers() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/keras_affine.json");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let fill_value = v["fill_value"].as_f64().unwrap() as f32;
    let floats = |a: &serde_json::Value| -> Vec<f32> {
        a.as_array().unwrap().iter().map(|s| s.as_str().unwrap().parse::<f32>().unwrap()).collect()
    };
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 80);
    let mut worst = 0f32;
    for case in cases {
        let d: Vec<usize> = case["shape"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect();
        let shape = WarpShape { n: d[0], h: d[1], w: d[2], c: d[3] };
        let x: Vec<f32> = (0..shape.n * shape.h * shape.w * shape.c)
            .map(|i| ((((i * 37) % 101) as f64) / 7.0 - 3.0) as f32)
            .collect();
        let m = floats(&case["matrix"]);
        let t = Affine::from_keras(m.try_into().unwrap()).unwrap();
        let o = WarpOptions {
            interpolation: match case["interpolation"].as_str().unwrap() {
                "bilinear" => Interpolation::Bilinear,
                _ => Interpolation::Nearest,
            },
            fill_mode: case["fill_mode"].as_str().unwrap().parse().unwrap(),
            fill_value,
        };
        let want = floats(&case["output"]);
        let got = reference(&x, shape, &[t], o);
        for level in SimdLevel::available() {
            assert_eq!(bits(&warp(level, &x, shape, &[t], o)), bits(&got));
        }
        let diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        worst = worst.max(diff);
        assert!(diff <= KERAS_TOLERANCE, "{} {:?}: max diff {diff}", case["transform"], o);
    }
    eprintln!("largest difference from Keras: {worst}");
}

/// TensorFlow's kernel and ours do the same f32 operations in the same order.
const KERAS_TOLERANCE: f32 = 0.0;
