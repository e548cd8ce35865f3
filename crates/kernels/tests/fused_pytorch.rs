//! The fused inference convolution (`conv::fused`) against the numbers real
//! PyTorch produced (float64 `conv2d` + `relu` + `max_pool2d(2)`), for the
//! cases in `tests/fixtures/fused_conv_pool.json` (regenerate with
//! `~/.cache/convnet-anchors-venv/bin/python crates/kernels/tests/fixtures/gen_fused_conv_pool.py`),
//! under every SIMD level this CPU runs and both threadings.

use convnet_kernels::activation::Activation;
use convnet_kernels::conv::fused::{FusedConv, FusedPool, Threading};
use convnet_kernels::conv::ConvShape;
use convnet_kernels::simd::SimdLevel;
use serde_json::Value;

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().expect("an array").iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn int(v: &Value, key: &str) -> usize {
    v[key].as_u64().unwrap_or_else(|| panic!("{key}")) as usize
}

#[test]
fn fused_conv_relu_pool_matches_pytorch() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fused_conv_pool.json");
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("committed")).expect("JSON");
    let cases = fixture["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 6);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let k = int(case, "k");
        let shape =
            ConvShape::new(int(case, "n"), int(case, "h"), int(case, "w"), int(case, "c_in"), int(case, "c_out"), k, k)
                .and_then(|s| s.with_stride(int(case, "stride"), int(case, "stride")))
                .and_then(|s| s.with_dilation(int(case, "dilation"), int(case, "dilation")))
                .unwrap();
        let act = if case["relu"].as_bool().unwrap() { Activation::Relu } else { Activation::Linear };
        let pool = if case["pool"].as_bool().unwrap() { FusedPool::Max2x2 } else { FusedPool::None };
        let (x, w, want) = (floats(&case["x"]), floats(&case["filter"]), floats(&case["y"]));
        let bias = (!case["bias"].is_null()).then(|| floats(&case["bias"]));
        let out_shape: Vec<usize> =
            case["out_shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
        // Tolerance: f32 accumulation of k*k*c_in terms below 1 in magnitude.
        let tol = 1e-6 * (k * k * shape.c_in) as f32 + 1e-6;
        for level in SimdLevel::available() {
            let conv = FusedConv::new_at(level, &shape, act, pool).unwrap();
            assert_eq!(vec![shape.n, conv.out_h(), conv.out_w(), shape.c_out], out_shape, "{name}");
            for threading in [Threading::Pool, Threading::CallingThread] {
                let mut y = vec![f32::NAN; conv.output_len(shape.n).unwrap()];
                conv.run(&x, shape.n, &w, bias.as_deref(), &mut y, threading).unwrap();
                for (i, (a, b)) in y.iter().zip(&want).enumerate() {
                    assert!(
                        (a - b).abs() <= tol,
                        "{name} {level:?} {threading:?} output {i}: convnet {a}, PyTorch {b}"
                    );
                }
            }
        }
    }
}
