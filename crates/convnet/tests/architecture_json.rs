//! Architecture JSON as a person writes it: fields Keras gives a default may
//! be left out and mean Keras's default; a field the layer does not have (a
//! typo) is an error naming it, never silently ignored.

use convnet::Sequential;

const CHAPTER: &str = include_str!("../../../models/mnist.json");

/// The chapter's model with only what Keras's `Conv2D(32, (3, 3),
/// activation="relu", input_shape=...)` and friends spell out.
const TERSE: &str = r#"{
  "layers": [
    {"class_name": "Conv2D", "config": {"name": "conv2d", "filters": 32, "kernel_size": [3, 3],
      "activation": "relu", "input_shape": [28, 28, 1]}},
    {"class_name": "MaxPooling2D", "config": {"name": "max_pooling2d"}},
    {"class_name": "Conv2D", "config": {"name": "conv2d_1", "filters": 64, "kernel_size": [3, 3],
      "activation": "relu"}},
    {"class_name": "MaxPooling2D", "config": {"name": "max_pooling2d_1"}},
    {"class_name": "Conv2D", "config": {"name": "conv2d_2", "filters": 64, "kernel_size": [3, 3],
      "activation": "relu"}},
    {"class_name": "Flatten", "config": {"name": "flatten"}},
    {"class_name": "Dense", "config": {"name": "dense", "units": 64, "activation": "relu"}},
    {"class_name": "Dense", "config": {"name": "dense_1", "units": 10, "activation": "softmax"}}
  ]
}"#;

#[test]
fn left_out_fields_take_keras_defaults() {
    let full = Sequential::from_json(CHAPTER).unwrap();
    let terse = Sequential::from_json(TERSE).unwrap();
    assert_eq!(terse, full, "the terse file must mean exactly the chapter's model");
    // And the models built from both are the same, weights included.
    let (a, b) = (full.build().unwrap(), terse.build().unwrap());
    assert_eq!(a.to_json(), b.to_json());
    assert_eq!(a.summary(), b.summary());
}

#[test]
fn a_misspelt_field_is_an_error_naming_it() {
    for (wrong, field) in [
        (
            TERSE.replace("\"activation\": \"relu\", \"input_shape\"", "\"activaton\": \"relu\", \"input_shape\""),
            "activaton",
        ),
        (TERSE.replace("\"units\": 64", "\"units\": 64, \"use_bais\": false"), "use_bais"),
        (TERSE.replace("{\n  \"layers\"", "{\n  \"seeed\": 1, \"layers\""), "seeed"),
    ] {
        assert_ne!(wrong, TERSE, "the replacement must apply");
        let err = Sequential::from_json(&wrong).unwrap_err().to_string();
        assert!(err.contains(field) && err.contains("unknown field"), "{err}");
    }
}
