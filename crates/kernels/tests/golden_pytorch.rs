//! Grouped and depthwise convolution (every pass) and pooling with
//! PyTorch's options (dilation, `ceil_mode`, `count_include_pad`) against
//! the numbers real PyTorch produced, in float64, for the cases in
//! `tests/fixtures/grouped_depthwise_pool.json` (regenerate with
//! `~/.cache/convnet-anchors-venv/bin/python crates/kernels/tests/fixtures/gen_grouped_depthwise_pool.py`),
//! every algorithm under every SIMD level (`*_at` entry points).

mod common;

use convnet_kernels::activation::Activation;
use convnet_kernels::conv::{self, ConvAlgo, ConvPass, ConvShape, Padding};
use convnet_kernels::pool::{self, PoolOptions, PoolShape};
use convnet_kernels::simd::SimdLevel;
use serde_json::Value;

fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/grouped_depthwise_pool.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture is committed")).expect("valid JSON")
}

fn floats(v: &Value, key: &str) -> Vec<f32> {
    v[key].as_array().unwrap_or_else(|| panic!("{key}")).iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn int(v: &Value, key: &str) -> usize {
    v[key].as_u64().unwrap_or_else(|| panic!("{key}")) as usize
}

/// `|got - want| <= 2e-5 + 1e-5 * |want|`: every case sums at most a few
/// dozen terms of magnitude below 1 in f32.
fn close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= 2e-5 + 1e-5 * w.abs(), "{what}[{i}]: {g} vs PyTorch {w}");
    }
}

#[test]
fn grouped_and_depthwise_convolutions_match_pytorch() {
    let f = fixture();
    for case in f["conv"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let (k, s, p, d) = (int(case, "k"), int(case, "stride"), int(case, "pad"), int(case, "dilation"));
        let shape = ConvShape::nhwc(int(case, "n"), int(case, "h"), int(case, "w"), int(case, "c_in"))
            .filter(k, k, int(case, "c_out"))
            .stride(s, s)
            .dilation(d, d)
            .padding(Padding::Explicit { top: p, bottom: p, left: p, right: p })
            .groups(int(case, "groups"))
            .build()
            .unwrap();
        assert_eq!((shape.out_h(), shape.out_w()), (int(case, "out_h"), int(case, "out_w")), "{name}");
        let (x, w, b, gy) = (floats(case, "x"), floats(case, "filter"), floats(case, "b"), floats(case, "gy"));
        let (y, gx, gw, gb) = (floats(case, "y"), floats(case, "gx"), floats(case, "gw"), floats(case, "gb"));
        for level in SimdLevel::available() {
            for algo in ConvAlgo::ALL.into_iter().chain([ConvAlgo::Auto]) {
                if !common::runs(algo, &shape, ConvPass::Forward) {
                    continue;
                }
                let what = format!("{name} {algo} {}", level.name());
                let mut got = common::poisoned(y.len());
                conv::conv2d_forward_at(level, algo, &shape, &x, &w, Some(&b), Activation::Linear, &mut got).unwrap();
                close(&format!("{what} forward"), &got, &y);
                let mut got = common::poisoned(gx.len());
                conv::conv2d_backward_data_at(level, algo, &shape, &gy, &w, &mut got).unwrap();
                close(&format!("{what} backward_data"), &got, &gx);
                let mut got = common::poisoned(gw.len());
                conv::conv2d_backward_filter_at(level, algo, &shape, &x, &gy, &mut got).unwrap();
                close(&format!("{what} backward_filter"), &got, &gw);
            }
        }
        let mut got = common::poisoned(gb.len());
        conv::conv2d_backward_bias(&shape, &gy, &mut got).unwrap();
        close(&format!("{name} bias"), &got, &gb);
    }
}

#[test]
fn pooling_options_match_pytorch() {
    let f = fixture();
    for case in f["pool"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let (k, s, p, d) = (int(case, "k"), int(case, "stride"), int(case, "pad"), int(case, "dilation"));
        let options = PoolOptions::default()
            .dilation(d, d)
            .ceil_mode(case["ceil_mode"].as_bool().unwrap())
            .count_include_pad(case["count_include_pad"].as_bool().unwrap());
        let padding = Padding::Explicit { top: p, bottom: p, left: p, right: p };
        let shape =
            PoolShape::new(int(case, "n"), int(case, "h"), int(case, "w"), int(case, "c"), (k, k), (s, s), padding)
                .unwrap()
                .with_options(options)
                .unwrap();
        assert_eq!((shape.out_h(), shape.out_w()), (int(case, "out_h"), int(case, "out_w")), "{name}");
        let (x, gy, y, gx) = (floats(case, "x"), floats(case, "gy"), floats(case, "y"), floats(case, "gx"));
        let max = case["kind"] == "max";
        // Every SIMD level of the fast kernels, then the scalar reference (`None`).
        let levels = SimdLevel::available().into_iter().map(Some).chain([None]);
        for level in levels {
            let what = format!("{name} {}", level.map_or("reference", SimdLevel::name));
            let mut got_y = common::poisoned(y.len());
            let mut got_gx = common::poisoned(gx.len());
            match (max, level) {
                (true, Some(l)) => {
                    let mut am = vec![u32::MAX; y.len()];
                    pool::max_pool2d_forward_at(l, &shape, &x, &mut got_y, &mut am).unwrap();
                    pool::max_pool2d_backward_at(l, &shape, &gy, &am, &mut got_gx).unwrap();
                }
                (true, None) => {
                    let mut am = vec![u32::MAX; y.len()];
                    pool::reference::max_pool2d_forward(&shape, &x, &mut got_y, &mut am).unwrap();
                    pool::reference::max_pool2d_backward(&shape, &gy, &am, &mut got_gx).unwrap();
                }
                (false, Some(l)) => {
                    pool::avg_pool2d_forward_at(l, &shape, &x, &mut got_y).unwrap();
                    pool::avg_pool2d_backward_at(l, &shape, &gy, &mut got_gx).unwrap();
                }
                (false, None) => {
                    pool::reference::avg_pool2d_forward(&shape, &x, &mut got_y).unwrap();
                    pool::reference::avg_pool2d_backward(&shape, &gy, &mut got_gx).unwrap();
                }
            }
            close(&format!("{what} forward"), &got_y, &y);
            close(&format!("{what} backward"), &got_gx, &gx);
        }
    }
}
