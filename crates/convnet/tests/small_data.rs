//! The chapter's small-data convnet (`convnet::small_data_convnet`) against
//! the table Keras 3.15 prints for the same model
//! (`tests/fixtures/keras/small_data_summary.json`, written by
//! `tests/fixtures/keras/make_layer_fixtures.py`), and its training setup:
//! RMSprop(1e-4) with binary cross-entropy on a sigmoid unit.

use convnet::optimizers::RMSprop;
use convnet::{Loss, Metric};
use serde_json::Value;
use std::path::PathBuf;

#[test]
fn small_data_model_matches_kerass_summary() {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keras/small_data_summary.json");
    let keras: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    let model = convnet::small_data_convnet().build().unwrap();
    let want: Vec<(String, String, Vec<usize>, usize)> = keras["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let dims = l["output_shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
            let name = l["name"].as_str().unwrap().to_string();
            (name, l["class_name"].as_str().unwrap().to_string(), dims, l["params"].as_u64().unwrap() as usize)
        })
        .collect();
    let got: Vec<(String, String, Vec<usize>, usize)> = model
        .layers()
        .iter()
        .map(|l| (l.name.clone(), l.layer.class_name().to_string(), l.output.clone(), l.param_count))
        .collect();
    assert_eq!(got, want);
    assert_eq!(model.param_count(), 3_453_121);
    assert_eq!(model.param_count() as u64, keras["params"].as_u64().unwrap());
    let summary = model.summary();
    assert!(summary.contains("Total params: 3,453,121"), "{summary}");
    assert!(summary.contains("dense_1 (Dense)              (None, 1)                 513"), "{summary}");
    let mut model = model;
    model.compile(RMSprop::new(1e-4), Loss::BinaryCrossentropy, &[Metric::Accuracy]).unwrap();
}
