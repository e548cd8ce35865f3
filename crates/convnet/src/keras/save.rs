//! Keras files out: a model's architecture as Keras 3 `config.json`, its
//! weights in the Keras 3 HDF5 layout (`model.weights.h5`, `.weights.h5`)
//! and in the legacy Keras 2 layout (`.h5` weights), and the `.keras` zip.
//!
//! What Keras 3.15 writes, and so what is written here:
//!
//! - `config.json`: `{"module": "keras", "class_name": "Sequential", "config":
//!   {"name", "trainable", "dtype", "layers": [InputLayer, ...]}, "build_config"}`,
//!   each layer `{"module": "keras.layers", "class_name", "config": {...},
//!   "registered_name": null}` with the keys Keras's `get_config` gives it.
//!   A convnet model is always a flat `Sequential` (nested Keras models were
//!   inlined when read), so that is the one form written.
//! - `model.weights.h5`: `/vars` (attribute `name` = the model's name) and
//!   `/layers/<key>/vars/<i>` for every layer, where `<key>` is the class in
//!   snake case numbered per class (`conv2d`, `conv2d_1`, ...), `vars` has
//!   the real layer name in its `name` attribute (variable-length UTF-8, as
//!   h5py writes it) and `<i>` are the layer's weights as contiguous float32
//!   datasets, kernel before bias. Layers without weights get an empty `vars`.
//! - legacy `.h5` weights: root attributes `layer_names`, `backend`,
//!   `keras_version`, one group per layer with `weight_names`
//!   (`conv2d/kernel:0`, ...) and those datasets below it, as Keras 2's
//!   `save_weights("x.h5")` lays them out; Keras 3 loads them by layer order.
//! - the `.keras` zip: `metadata.json`, `config.json`, `model.weights.h5`,
//!   all stored uncompressed, as Keras stores them.
//!
//! HDF5 is written with `hdf5-pure`'s `FileBuilder` (superblock, groups,
//! contiguous datasets, string attributes); `tests/keras_out.rs` reads the
//! files back here and, when the anchors' Python is present, in h5py and Keras.

use crate::built::BuiltLayer;
use crate::layers::{Activation, Initializer, Layer, Padding, Pool2D, Size2};
use crate::model::Model;
use hdf5_pure::{AttrValue, FileBuilder};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::Write;

/// The Keras version whose file format is written (what `metadata.json` says).
pub const KERAS_VERSION: &str = "3.15.1";

/// A layer's weights as `(key, Keras name, tensors)`, `key` numbered per class.
struct Entry<'m> {
    key: String,
    name: &'m str,
    tensors: Vec<(&'m str, Vec<usize>, &'m [f32])>,
}

fn entries(model: &Model) -> Result<Vec<Entry<'_>>, String> {
    let mut used: HashMap<&'static str, usize> = HashMap::new();
    let mut out = Vec::with_capacity(model.layers().len());
    for l in model.layers() {
        let prefix = l.layer.auto_name_prefix();
        let n = used.entry(prefix).or_insert(0);
        let key = if *n == 0 { prefix.to_string() } else { format!("{prefix}_{n}") };
        *n += 1;
        let mut tensors = Vec::with_capacity(l.params.len());
        for &id in &l.params {
            let name = model.params().name(id).map_err(|e| e.to_string())?;
            let value = model.params().value(id).map_err(|e| e.to_string())?;
            tensors.push((name, value.shape().dims().to_vec(), value.data()));
        }
        out.push(Entry { key, name: &l.name, tensors });
    }
    Ok(out)
}

fn dims_u64(d: &[usize]) -> Vec<u64> {
    d.iter().map(|&x| x as u64).collect()
}

fn finish(b: FileBuilder) -> Result<Vec<u8>, String> {
    b.finish().map_err(|e| format!("cannot encode the HDF5 file: {e}"))
}

/// The model's weights in the Keras 3 layout (`model.weights.h5`).
pub(crate) fn weights_h5(model: &Model) -> Result<Vec<u8>, String> {
    let mut b = FileBuilder::new();
    let mut vars = b.create_group("vars");
    vars.set_attr("name", AttrValue::VarLenString(model.name().to_string()));
    b.add_group(vars.finish());
    let mut layers = b.create_group("layers");
    for e in entries(model)? {
        let mut layer = layers.create_group(&e.key);
        let mut vars = layer.create_group("vars");
        vars.set_attr("name", AttrValue::VarLenString(e.name.to_string()));
        for (i, (_, dims, data)) in e.tensors.iter().enumerate() {
            vars.create_dataset(&i.to_string()).with_f32_data(data).with_shape(&dims_u64(dims));
        }
        layer.add_group(vars.finish());
        layers.add_group(layer.finish());
    }
    b.add_group(layers.finish());
    finish(b)
}

/// The model's weights in the legacy Keras 2 layout (`save_weights("x.h5")`).
pub(crate) fn legacy_weights_h5(model: &Model) -> Result<Vec<u8>, String> {
    let mut b = FileBuilder::new();
    let entries = entries(model)?;
    b.set_attr("layer_names", AttrValue::AsciiStringArray(entries.iter().map(|e| e.name.to_string()).collect()));
    b.set_attr("backend", AttrValue::AsciiString("tensorflow".into()));
    b.set_attr("keras_version", AttrValue::AsciiString(KERAS_VERSION.into()));
    for e in &entries {
        let mut g = b.create_group(e.name);
        if e.tensors.is_empty() {
            // What h5py writes for an empty list, and what Keras reads back as one.
            g.set_attr("weight_names", AttrValue::F64Array(Vec::new()));
        } else {
            // `conv2d/kernel` is stored as `conv2d/kernel:0`: a group named
            // after the layer holding one dataset per weight.
            let names: Vec<String> = e.tensors.iter().map(|(n, _, _)| format!("{n}:0")).collect();
            g.set_attr("weight_names", AttrValue::AsciiStringArray(names));
            let mut inner = g.create_group(e.name);
            for (n, dims, data) in &e.tensors {
                let leaf = n.rsplit('/').next().unwrap_or(n);
                inner.create_dataset(&format!("{leaf}:0")).with_f32_data(data).with_shape(&dims_u64(dims));
            }
            g.add_group(inner.finish());
        }
        b.add_group(g.finish());
    }
    finish(b)
}

/// The model's architecture as Keras 3 `config.json` text.
pub(crate) fn config_json(model: &Model) -> Result<String, String> {
    let input = model.input_shape();
    let batch_shape: Vec<Value> = std::iter::once(Value::Null).chain(input.iter().map(|&d| json!(d))).collect();
    let mut layers = vec![json!({
        "module": "keras.layers",
        "class_name": "InputLayer",
        "config": {"batch_shape": batch_shape, "dtype": "float32", "sparse": false, "ragged": false,
                   "name": "input_layer", "optional": false},
        "registered_name": null,
    })];
    for l in model.layers() {
        layers.push(layer(l, model.is_trainable(&l.name))?);
    }
    let config = json!({
        "module": "keras",
        "class_name": "Sequential",
        "config": {"name": model.name(), "trainable": true, "dtype": dtype_policy(), "layers": layers},
        "registered_name": null,
        "build_config": {"input_shape": batch_shape},
        "compile_config": null,
    });
    serde_json::to_string(&config).map_err(|e| e.to_string())
}

/// `metadata.json`: the Keras version whose format this is, and the time.
pub(crate) fn metadata_json() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    json!({"keras_version": KERAS_VERSION, "date_saved": keras_date(secs),
           "saved_by": format!("convnet {}", env!("CARGO_PKG_VERSION"))})
    .to_string()
}

/// `2026-12-01@01:56:20` (UTC) from Unix seconds, as Keras formats `date_saved`.
fn keras_date(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Days to civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}@{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// The `.keras` zip of `config`, `metadata` and `weights`, members stored
/// uncompressed in the order Keras writes them.
pub(crate) fn archive(config: &str, metadata: &str, weights: &[u8]) -> Result<Vec<u8>, String> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(weights.len() as u64 >= u32::MAX as u64);
    for (name, bytes) in
        [("metadata.json", metadata.as_bytes()), ("config.json", config.as_bytes()), ("model.weights.h5", weights)]
    {
        zip.start_file(name, opts).map_err(|e| format!("{name}: {e}"))?;
        zip.write_all(bytes).map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(zip.finish().map_err(|e| e.to_string())?.into_inner())
}

fn dtype_policy() -> Value {
    json!({"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}, "registered_name": null})
}

fn pair(s: Size2) -> Value {
    json!([s.0, s.1])
}

fn padding(p: Padding) -> &'static str {
    match p {
        Padding::Valid => "valid",
        Padding::Same => "same",
    }
}

fn initializer(i: Initializer) -> Value {
    let (class, config) = match i {
        Initializer::GlorotUniform => ("GlorotUniform", json!({"seed": null})),
        Initializer::HeNormal => ("HeNormal", json!({"seed": null})),
        Initializer::Zeros => ("Zeros", json!({})),
    };
    json!({"module": "keras.initializers", "class_name": class, "config": config, "registered_name": null})
}

fn act(a: Activation) -> &'static str {
    a.name()
}

fn pool(p: &Pool2D) -> Value {
    json!({"pool_size": pair(p.pool_size), "padding": padding(p.padding),
           "strides": pair(p.strides.unwrap_or(p.pool_size)), "data_format": "channels_last"})
}

/// One layer's `{"module", "class_name", "config", "registered_name", "build_config"}`.
fn layer(l: &BuiltLayer, trainable: bool) -> Result<Value, String> {
    let mut config = match &l.layer {
        Layer::Conv2D(c) => json!({
            "filters": c.filters, "kernel_size": pair(c.kernel_size), "strides": pair(c.strides),
            "padding": padding(c.padding), "data_format": "channels_last", "dilation_rate": [1, 1],
            "groups": c.groups, "activation": act(c.activation), "use_bias": c.use_bias,
            "kernel_initializer": initializer(c.kernel_initializer),
            "bias_initializer": initializer(c.bias_initializer),
            "kernel_regularizer": null, "bias_regularizer": null, "activity_regularizer": null,
            "kernel_constraint": null, "bias_constraint": null}),
        Layer::DepthwiseConv2D(c) => json!({
            "depth_multiplier": c.depth_multiplier, "kernel_size": pair(c.kernel_size),
            "strides": pair(c.strides), "padding": padding(c.padding), "data_format": "channels_last",
            "dilation_rate": [1, 1], "activation": act(c.activation), "use_bias": c.use_bias,
            "depthwise_initializer": initializer(c.depthwise_initializer),
            "bias_initializer": initializer(c.bias_initializer),
            "depthwise_regularizer": null, "bias_regularizer": null, "activity_regularizer": null,
            "depthwise_constraint": null, "bias_constraint": null}),
        Layer::SeparableConv2D(c) => json!({
            "depth_multiplier": c.depth_multiplier, "filters": c.filters, "kernel_size": pair(c.kernel_size),
            "strides": pair(c.strides), "padding": padding(c.padding), "data_format": "channels_last",
            "dilation_rate": [1, 1], "activation": act(c.activation), "use_bias": c.use_bias,
            "depthwise_initializer": initializer(c.depthwise_initializer),
            "pointwise_initializer": initializer(c.pointwise_initializer),
            "bias_initializer": initializer(c.bias_initializer),
            "depthwise_regularizer": null, "pointwise_regularizer": null, "bias_regularizer": null,
            "activity_regularizer": null, "depthwise_constraint": null, "pointwise_constraint": null,
            "bias_constraint": null}),
        Layer::MaxPooling2D(p) | Layer::AveragePooling2D(p) => pool(p),
        Layer::GlobalAveragePooling2D(g) | Layer::GlobalMaxPooling2D(g) => {
            json!({"data_format": "channels_last", "keepdims": g.keepdims})
        }
        Layer::Flatten(_) => json!({"data_format": "channels_last"}),
        Layer::Dense(d) => json!({
            "units": d.units, "activation": act(d.activation), "use_bias": d.use_bias,
            "kernel_initializer": initializer(d.kernel_initializer),
            "bias_initializer": initializer(d.bias_initializer),
            "kernel_regularizer": null, "bias_regularizer": null, "kernel_constraint": null,
            "bias_constraint": null}),
        Layer::Dropout(d) => json!({"rate": f64::from(d.rate), "seed": null, "noise_shape": null}),
        Layer::Rescaling(r) => json!({"scale": f64::from(r.scale), "offset": f64::from(r.offset)}),
        Layer::RandomFlip(f) => json!({"data_format": "channels_last", "seed": f.seed, "mode": match f.mode {
            crate::FlipMode::Horizontal => "horizontal",
            crate::FlipMode::Vertical => "vertical",
            crate::FlipMode::HorizontalAndVertical => "horizontal_and_vertical",
        }}),
        Layer::RandomRotation(r) => {
            let mut c = warp(r.fill_mode, r.interpolation, r.fill_value, r.seed);
            c["factor"] = factor(r.factor);
            c
        }
        Layer::RandomZoom(z) => {
            let mut c = warp(z.fill_mode, z.interpolation, z.fill_value, z.seed);
            c["height_factor"] = factor(z.height_factor);
            c["width_factor"] = z.width_factor.map(factor).unwrap_or(Value::Null);
            c
        }
        Layer::RandomTranslation(t) => {
            let mut c = warp(t.fill_mode, t.interpolation, t.fill_value, t.seed);
            c["height_factor"] = factor(t.height_factor);
            c["width_factor"] = factor(t.width_factor);
            c
        }
        Layer::RandomShear(r) => {
            let mut c = warp(r.fill_mode, r.interpolation, r.fill_value, r.seed);
            // Keras refuses a negative end in a pair, so a symmetric range goes as its one number.
            let shear = |f: crate::Factor| if f.0 == -f.1 { json!(f64::from(f.1)) } else { factor(f) };
            c["x_factor"] = shear(r.x_factor);
            c["y_factor"] = shear(r.y_factor);
            c
        }
    };
    let map = config.as_object_mut().ok_or("a layer config is not an object")?;
    map.insert("name".into(), json!(l.name));
    map.insert("trainable".into(), json!(trainable));
    map.insert("dtype".into(), dtype_policy());
    let batch_input: Vec<Value> = std::iter::once(Value::Null).chain(l.input.iter().map(|&d| json!(d))).collect();
    Ok(json!({
        "module": "keras.layers",
        "class_name": l.layer.class_name(),
        "config": config,
        "registered_name": null,
        "build_config": {"input_shape": batch_input},
    }))
}

fn factor(f: crate::Factor) -> Value {
    json!([f64::from(f.0), f64::from(f.1)])
}

fn warp(fill: crate::FillMode, interpolation: crate::Interpolation, fill_value: f32, seed: Option<u64>) -> Value {
    let fill = match fill {
        crate::FillMode::Reflect => "reflect",
        crate::FillMode::Wrap => "wrap",
        crate::FillMode::Constant => "constant",
        crate::FillMode::Nearest => "nearest",
    };
    let interpolation = match interpolation {
        crate::Interpolation::Bilinear => "bilinear",
        crate::Interpolation::Nearest => "nearest",
    };
    json!({"data_format": "channels_last", "fill_mode": fill, "interpolation": interpolation,
           "fill_value": f64::from(fill_value), "seed": seed})
}

#[cfg(test)]
mod tests {
    use super::keras_date;

    #[test]
    fn dates_are_keras_formatted_utc() {
        assert_eq!(keras_date(0), "1970-01-01@00:00:00");
        // 2024-02-29 12:34:56 UTC, a leap day.
        assert_eq!(keras_date(1_709_210_096), "2024-02-29@12:34:56");
    }
}
