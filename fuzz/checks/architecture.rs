// The properties the `architecture` fuzz target checks, shared with the
// stable replay test (`crates/convnet/tests/fuzz_corpus.rs` includes this
// file), so the corpus is replayed through exactly the same calls.
//
// Any bytes, read as architecture JSON, must give `Ok` or `Err`, never a
// panic and never an allocation beyond the limits. On `Ok` the model is
// within the limits, its summary prints, its JSON and its whole-model file
// round-trip to the same model, and one inference pass on zeros runs and
// gives finite outputs of the model's output shape.

/// Small limits, so every accepted model is cheap to build and run.
fn fuzz_limits() -> convnet::limits::Limits {
    convnet::limits::Limits::default().max_layers(64).max_params(1 << 17).max_activations(1 << 16)
}

fn check_architecture(data: &[u8]) {
    let Ok(json) = std::str::from_utf8(data) else { return };
    let limits = fuzz_limits();
    let Ok(seq) = convnet::Sequential::from_json(json) else { return };
    let Ok(model) = seq.build_with(&limits) else { return };
    assert!(model.param_count() <= limits.max_params);
    assert!(model.layers().len() <= limits.max_layers);
    assert!(model.activations_per_example() <= limits.max_activations);
    let summary = model.summary();
    assert!(summary.contains("Total params"));
    // The JSON round trip builds the same model (same names, shapes, weights).
    let again = convnet::Model::from_json_with(&model.to_json(), &limits).expect("a model's own JSON builds");
    assert_eq!(again.summary(), summary);
    let bits = |m: &convnet::Model| -> Vec<u32> {
        m.weights().iter().flat_map(|(_, t)| t.data().iter().map(|x| x.to_bits())).collect()
    };
    assert_eq!(bits(&again), bits(&model));
    // The whole-model file round trip.
    let opts = convnet::weights::LoadOptions { limits, allow_non_finite: false };
    let bytes = model.to_bytes().expect("a built model serialises");
    let loaded = convnet::Model::load_bytes_with(&bytes, &opts).expect("a saved model loads");
    assert_eq!(loaded.summary(), summary);
    assert_eq!(bits(&loaded), bits(&model));
    // One inference pass on zeros.
    let mut dims = vec![1];
    dims.extend_from_slice(model.input_shape());
    let Ok(shape) = convnet_tensor::Shape::new(&dims) else { return };
    let x = convnet_tensor::Tensor::zeros(shape);
    let out = model.predict(&x, 1).expect("a built model runs on its own input shape");
    let outputs: usize = model.output_shape().iter().product();
    assert_eq!(out.len(), outputs);
    assert!(out.data().iter().all(|v| v.is_finite()), "non-finite output from zeros");
}
