//! Keras architecture JSON (`config.json` of a `.keras` archive, the
//! `model_config` attribute of a legacy `.h5` model) to a [`Sequential`].
//!
//! Accepted graphs: a `Sequential` model, a `Functional` model that is a
//! single chain (each layer called once, on the previous layer's output, as
//! `keras.applications.VGG16` is), and either of those holding such a model
//! as one of its layers (the book's `model.add(conv_base)`), which is inlined:
//! its layers become the outer model's, under their own names. Both the
//! Keras 3 form of a layer's inputs (`inbound_nodes: [{"args": [keras
//! tensor], ...}]`) and Keras 2's (`[[["name", 0, 0, {}]]]`) are read.
//!
//! Accepted layers: `InputLayer`, `Conv2D` (with `groups`), `DepthwiseConv2D`,
//! `SeparableConv2D`, `MaxPooling2D`, `Rescaling`, `RandomFlip`, `RandomRotation`,
//! `RandomZoom`, `RandomTranslation`, `RandomShear`,
//! `AveragePooling2D`, `GlobalAveragePooling2D`, `GlobalMaxPooling2D`, `Flatten`, `Dense`, `Dropout`, float32 only,
//! `channels_last` only. Anything else is an error naming the layer.

use crate::augment::{
    Factor, FillMode, FlipMode, Interpolation, RandomFlip, RandomRotation, RandomShear, RandomTranslation, RandomZoom,
    Rescaling,
};
use crate::layers::{
    Activation, Conv2D, Dense, DepthwiseConv2D, Dropout, Flatten, GlobalPool2D, InputShape, Layer, Padding, Pool2D,
    SeparableConv2D, Size2,
};
use crate::model::Sequential;
use serde_json::Value;

/// Nested models deeper than this are refused (Keras files nest one or two).
const MAX_NESTING: usize = 8;

/// The layer classes convnet reads, for messages.
const SUPPORTED: &str =
    "InputLayer, Conv2D, DepthwiseConv2D, SeparableConv2D, MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D, \
     GlobalMaxPooling2D, Flatten, Dense, Dropout, \
     Rescaling, RandomFlip, RandomRotation, RandomZoom, RandomTranslation, RandomShear, and Sequential or single-chain \
     Functional models of them";

/// The model in `json` (`{"class_name": ..., "config": {...}}`) as a [`Sequential`].
pub(crate) fn sequential_from_json(json: &str) -> Result<Sequential, String> {
    let v: Value = serde_json::from_str(json).map_err(|e| format!("the model config is not valid JSON: {e}"))?;
    sequential_from_value(&v)
}

/// [`sequential_from_json`] on parsed JSON.
pub(crate) fn sequential_from_value(v: &Value) -> Result<Sequential, String> {
    let class = str_field(v, "class_name", "the model config")?;
    let config = v.get("config").ok_or("the model config has no \"config\"")?;
    let name = config.get("name").and_then(Value::as_str).unwrap_or("model").to_string();
    let mut flat = Flat { layers: Vec::new(), input: None, frozen: Vec::new() };
    model(class, config, &name, &mut flat, 0, false)?;
    let Flat { mut layers, input, frozen } = flat;
    let input = input.ok_or_else(|| format!("model {name}: no input shape (no InputLayer or batch_input_shape)"))?;
    let Some(first) = layers.first_mut() else { return Err(format!("model {name} has no layers")) };
    set_input_shape(first, input);
    let mut seq = Sequential::new().named(name);
    seq.layers = layers;
    seq.frozen = frozen;
    Ok(seq)
}

/// The layers so far, inlined, and the model's input shape (without the batch axis).
struct Flat {
    layers: Vec<Layer>,
    input: Option<Vec<usize>>,
    /// Layers with `"trainable": false`, or inside a model with it (Keras
    /// freezes a model's layers with the model).
    frozen: Vec<String>,
}

impl Flat {
    /// The input shape of a (nested) model's `InputLayer`: the first one
    /// is the model's; a later one must be what the layers so far produce,
    /// which `Sequential::build` checks when it is set on the next layer.
    fn input_layer(&mut self, shape: Vec<usize>, name: &str) -> Result<(), String> {
        match &self.input {
            None if self.layers.is_empty() => self.input = Some(shape),
            None => return Err(format!("layer {name}: an InputLayer after other layers")),
            Some(_) if self.layers.is_empty() => {}
            Some(_) => {} // a nested model's input; checked against the running shape at build
        }
        Ok(())
    }
}

/// `"trainable": false` in a layer's or model's config (absent means true).
fn frozen_here(config: &Value) -> bool {
    config.get("trainable").and_then(Value::as_bool) == Some(false)
}

fn model(class: &str, config: &Value, name: &str, flat: &mut Flat, depth: usize, frozen: bool) -> Result<(), String> {
    let frozen = frozen || frozen_here(config);
    if depth > MAX_NESTING {
        return Err(format!("model {name}: models nested more than {MAX_NESTING} deep"));
    }
    let layers = config
        .get("layers")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("model {name}: its config has no \"layers\" list"))?;
    match class {
        "Sequential" => {
            if flat.layers.is_empty() && flat.input.is_none() {
                // Keras 2 and 3 both record the shape the model was built on.
                if let Some(shape) = config.get("build_input_shape").filter(|v| !v.is_null()) {
                    flat.input = Some(batch_shape(shape, name)?);
                }
            }
            for l in layers {
                entry(l, flat, depth, frozen)?;
            }
        }
        "Functional" | "Model" => {
            check_chain(config, layers, name)?;
            for l in layers {
                entry(l, flat, depth, frozen)?;
            }
        }
        other => return Err(format!("model {name}: class {other} is not a model convnet reads ({SUPPORTED})")),
    }
    Ok(())
}

/// One entry of a model's `layers` list: a layer, an `InputLayer`, or a nested model.
fn entry(l: &Value, flat: &mut Flat, depth: usize, frozen: bool) -> Result<(), String> {
    let class = str_field(l, "class_name", "a layer entry")?;
    let config = l.get("config").ok_or_else(|| format!("a {class} layer has no config"))?;
    let name = config.get("name").and_then(Value::as_str).or_else(|| l.get("name").and_then(Value::as_str));
    let name = name.ok_or_else(|| format!("a {class} layer has no name"))?.to_string();
    match class {
        "InputLayer" => {
            check_dtype(config, &name)?;
            let shape = config
                .get("batch_shape")
                .or_else(|| config.get("batch_input_shape"))
                .ok_or_else(|| format!("layer {name}: InputLayer without batch_shape"))?;
            flat.input_layer(batch_shape(shape, &name)?, &name)
        }
        "Sequential" | "Functional" | "Model" => model(class, config, &name, flat, depth + 1, frozen),
        _ => {
            let mut layer = layer(class, config, &name)?;
            if flat.input.is_none() && flat.layers.is_empty() {
                if let Some(shape) = config.get("batch_input_shape").or_else(|| config.get("batch_shape")) {
                    flat.input = Some(batch_shape(shape, &name)?);
                }
            }
            if frozen || frozen_here(config) {
                flat.frozen.push(name.clone());
            }
            layer.set_name(name);
            flat.layers.push(layer);
            Ok(())
        }
    }
}

/// One layer's config as a convnet layer.
fn layer(class: &str, c: &Value, name: &str) -> Result<Layer, String> {
    check_dtype(c, name)?;
    let bad = |what: &str| format!("layer {name} ({class}): {what}");
    let channels_last = || match c.get("data_format") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) if s == "channels_last" => Ok(()),
        Some(other) => Err(bad(&format!("data_format {other} is not supported (channels_last only)"))),
    };
    let no_dilation = || match size2(c.get("dilation_rate"), name, "dilation_rate")? {
        None | Some(Size2(1, 1)) => Ok(()),
        Some(_) => Err(bad("dilated convolution is not supported")),
    };
    let kernel = || size2(c.get("kernel_size"), name, "kernel_size")?.ok_or_else(|| bad("no kernel_size"));
    let multiplier = || match c.get("depth_multiplier") {
        None | Some(Value::Null) => Ok(1),
        Some(_) => count(c, "depth_multiplier", name),
    };
    let use_bias = || c.get("use_bias").and_then(Value::as_bool).unwrap_or(true);
    Ok(match class {
        "Conv2D" | "Convolution2D" => {
            channels_last()?;
            no_dilation()?;
            let mut conv = Conv2D::new(count(c, "filters", name)?, kernel()?);
            conv.strides = size2(c.get("strides"), name, "strides")?.unwrap_or(Size2(1, 1));
            conv.padding = padding(c, name)?;
            conv.activation = activation(c, name)?;
            conv.use_bias = use_bias();
            if c.get("groups").is_some_and(|g| !g.is_null()) {
                conv.groups = count(c, "groups", name)?;
            }
            Layer::Conv2D(conv)
        }
        "DepthwiseConv2D" => {
            channels_last()?;
            no_dilation()?;
            let mut d = DepthwiseConv2D::new(kernel()?);
            d.strides = size2(c.get("strides"), name, "strides")?.unwrap_or(Size2(1, 1));
            d.padding = padding(c, name)?;
            d.depth_multiplier = multiplier()?;
            d.activation = activation(c, name)?;
            d.use_bias = use_bias();
            Layer::DepthwiseConv2D(d)
        }
        "SeparableConv2D" | "SeparableConvolution2D" => {
            channels_last()?;
            no_dilation()?;
            let mut d = SeparableConv2D::new(count(c, "filters", name)?, kernel()?);
            d.strides = size2(c.get("strides"), name, "strides")?.unwrap_or(Size2(1, 1));
            d.padding = padding(c, name)?;
            d.depth_multiplier = multiplier()?;
            d.activation = activation(c, name)?;
            d.use_bias = use_bias();
            Layer::SeparableConv2D(d)
        }
        "MaxPooling2D" | "MaxPool2D" | "AveragePooling2D" | "AvgPool2D" => {
            channels_last()?;
            let pool = Pool2D {
                name: None,
                pool_size: size2(c.get("pool_size"), name, "pool_size")?.unwrap_or(Size2(2, 2)),
                strides: size2(c.get("strides"), name, "strides")?,
                padding: padding(c, name)?,
                input_shape: None,
            };
            if class.starts_with("Max") {
                Layer::MaxPooling2D(pool)
            } else {
                Layer::AveragePooling2D(pool)
            }
        }
        "GlobalAveragePooling2D" | "GlobalAvgPool2D" | "GlobalMaxPooling2D" | "GlobalMaxPool2D" => {
            channels_last()?;
            let keepdims = c.get("keepdims").and_then(Value::as_bool).unwrap_or(false);
            let pool = GlobalPool2D { name: None, keepdims, input_shape: None };
            if class.starts_with("GlobalMax") {
                Layer::GlobalMaxPooling2D(pool)
            } else {
                Layer::GlobalAveragePooling2D(pool)
            }
        }
        "Flatten" => {
            channels_last()?;
            Layer::Flatten(Flatten::new())
        }
        "Dense" => {
            let mut d = Dense::new(count(c, "units", name)?);
            d.activation = activation(c, name)?;
            d.use_bias = c.get("use_bias").and_then(Value::as_bool).unwrap_or(true);
            Layer::Dense(d)
        }
        "Rescaling" => {
            let scale = c.get("scale").and_then(Value::as_f64).ok_or_else(|| bad("scale must be a number"))?;
            let offset = match c.get("offset") {
                None | Some(Value::Null) => 0.0,
                Some(v) => v.as_f64().ok_or_else(|| bad("offset must be a number"))?,
            };
            Layer::Rescaling(Rescaling::new(scale as f32, offset as f32).name(name))
        }
        "RandomFlip" => {
            let mode = match c.get("mode").and_then(Value::as_str).unwrap_or("horizontal_and_vertical") {
                "horizontal" => FlipMode::Horizontal,
                "vertical" => FlipMode::Vertical,
                "horizontal_and_vertical" => FlipMode::HorizontalAndVertical,
                other => {
                    return Err(bad(&format!("mode {other:?} is not horizontal, vertical or horizontal_and_vertical")))
                }
            };
            let mut l = RandomFlip::new(mode);
            l.seed = seed(c);
            Layer::RandomFlip(l)
        }
        "RandomRotation" => {
            let mut l = RandomRotation::new(factor(c, "factor", name)?.ok_or_else(|| bad("no factor"))?);
            (l.fill_mode, l.interpolation, l.fill_value, l.seed) = warp_options(c, name)?;
            Layer::RandomRotation(l)
        }
        "RandomZoom" => {
            let mut l = RandomZoom::new(factor(c, "height_factor", name)?.ok_or_else(|| bad("no height_factor"))?);
            l.width_factor = factor(c, "width_factor", name)?;
            (l.fill_mode, l.interpolation, l.fill_value, l.seed) = warp_options(c, name)?;
            Layer::RandomZoom(l)
        }
        "RandomTranslation" => {
            let h = factor(c, "height_factor", name)?.ok_or_else(|| bad("no height_factor"))?;
            let w = factor(c, "width_factor", name)?.ok_or_else(|| bad("no width_factor"))?;
            let mut l = RandomTranslation::new(h, w);
            (l.fill_mode, l.interpolation, l.fill_value, l.seed) = warp_options(c, name)?;
            Layer::RandomTranslation(l)
        }
        "RandomShear" => {
            let x = factor(c, "x_factor", name)?.unwrap_or(Factor(0.0, 0.0));
            let y = factor(c, "y_factor", name)?.unwrap_or(Factor(0.0, 0.0));
            let mut l = RandomShear::new(x, y);
            (l.fill_mode, l.interpolation, l.fill_value, l.seed) = warp_options(c, name)?;
            Layer::RandomShear(l)
        }
        "Dropout" => {
            let rate = c.get("rate").and_then(Value::as_f64).ok_or_else(|| bad("no rate"))?;
            if !(0.0..1.0).contains(&rate) {
                return Err(bad(&format!("rate {rate} is not in [0, 1)")));
            }
            Layer::Dropout(Dropout::new(rate as f32))
        }
        other => {
            return Err(format!("layer {name}: {other} layers are not supported by convnet (it reads {SUPPORTED})"))
        }
    })
}

/// A Functional model's layers must form one chain: the first an
/// `InputLayer`, each next one called once on the previous one's only output,
/// the model's input the first layer and its output the last.
fn check_chain(config: &Value, layers: &[Value], model: &str) -> Result<(), String> {
    let names: Vec<&str> = layers
        .iter()
        .map(|l| {
            l.get("name")
                .and_then(Value::as_str)
                .or_else(|| l.get("config").and_then(|c| c.get("name")).and_then(Value::as_str))
                .ok_or_else(|| format!("model {model}: a layer without a name"))
        })
        .collect::<Result<_, _>>()?;
    let Some(first) = layers.first() else { return Err(format!("model {model} has no layers")) };
    if first.get("class_name").and_then(Value::as_str) != Some("InputLayer") {
        return Err(format!("model {model}: a Functional model's first layer must be its InputLayer"));
    }
    for (i, l) in layers.iter().enumerate().skip(1) {
        let sources = inbound(l, names[i], model)?;
        match sources.as_slice() {
            [(src, 0, 0)] if *src == names[i - 1] => {}
            [(src, node, tensor)] => {
                return Err(format!(
                    "model {model} is not a single chain: layer {} takes {src}[{node}][{tensor}], not the output \
                     of the layer before it ({}); branching graphs are not supported",
                    names[i],
                    names[i - 1]
                ))
            }
            [] => return Err(format!("model {model}: layer {} has no input", names[i])),
            many => {
                let from: Vec<&str> = many.iter().take(4).map(|(s, _, _)| s.as_str()).collect();
                return Err(format!(
                    "model {model} is not a single chain: layer {} takes {} inputs ({}); branching graphs are not \
                     supported",
                    names[i],
                    many.len(),
                    from.join(", ")
                ));
            }
        }
    }
    for (key, want) in [("input_layers", names[0]), ("output_layers", names[names.len() - 1])] {
        let ends = endpoints(config.get(key)).ok_or_else(|| format!("model {model}: no readable {key}"))?;
        if ends != [want] {
            return Err(format!(
                "model {model} is not a single chain: its {key} are {ends:?}, expected [{want:?}]; only one input \
                 and one output are supported"
            ));
        }
    }
    Ok(())
}

/// The `(layer, node, tensor)` triples a Functional layer is called on.
fn inbound(l: &Value, name: &str, model: &str) -> Result<Vec<(String, u64, u64)>, String> {
    let nodes = l
        .get("inbound_nodes")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("model {model}: layer {name} has no inbound_nodes (not a Functional model config?)"))?;
    if nodes.len() > 1 {
        return Err(format!(
            "model {model} is not a single chain: layer {name} is called {} times (shared layers are not supported)",
            nodes.len()
        ));
    }
    let mut out = Vec::new();
    for node in nodes {
        collect_history(node, &mut out, 0);
    }
    Ok(out)
}

/// Every tensor reference in a node: Keras 3's `{"keras_history": [name, node,
/// tensor]}` anywhere in its args and kwargs, or Keras 2's `[name, node, tensor, {...}]` lists.
fn collect_history(v: &Value, out: &mut Vec<(String, u64, u64)>, depth: usize) {
    if depth > 16 {
        return;
    }
    match v {
        Value::Object(map) => {
            if let Some(h) = map.get("keras_history") {
                if let Some(t) = triple(h) {
                    out.push(t);
                    return;
                }
            }
            map.values().for_each(|x| collect_history(x, out, depth + 1));
        }
        Value::Array(items) => match triple(v) {
            Some(t) => out.push(t),
            None => items.iter().for_each(|x| collect_history(x, out, depth + 1)),
        },
        _ => {}
    }
}

fn triple(v: &Value) -> Option<(String, u64, u64)> {
    let a = v.as_array()?;
    if a.len() < 3 {
        return None;
    }
    Some((a[0].as_str()?.to_string(), a[1].as_u64()?, a[2].as_u64()?))
}

/// `input_layers` / `output_layers`: `["name", 0, 0]` (Keras 3, one tensor)
/// or `[["name", 0, 0], ...]`; the layer names.
fn endpoints(v: Option<&Value>) -> Option<Vec<String>> {
    let v = v?;
    if let Some((name, _, _)) = triple(v) {
        return Some(vec![name]);
    }
    v.as_array()?.iter().map(|t| triple(t).map(|(n, _, _)| n)).collect()
}

/// Float32 or nothing: Keras 3's `{"class_name": "DTypePolicy", "config": {"name": ...}}` or a plain string.
fn check_dtype(c: &Value, name: &str) -> Result<(), String> {
    let dtype = match c.get("dtype") {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::String(s)) => s.as_str(),
        Some(v) => v.get("config").and_then(|c| c.get("name")).and_then(Value::as_str).unwrap_or("unknown"),
    };
    if dtype == "float32" {
        Ok(())
    } else {
        Err(format!("layer {name}: dtype {dtype} is not supported (float32 only)"))
    }
}

fn activation(c: &Value, name: &str) -> Result<Activation, String> {
    let a = match c.get("activation") {
        None | Some(Value::Null) => return Ok(Activation::Linear),
        Some(Value::String(s)) => s.as_str(),
        Some(v) => v.get("config").and_then(|c| c.get("name")).and_then(Value::as_str).unwrap_or("unknown"),
    };
    a.parse()
        .map_err(|_| format!("layer {name}: activation {a:?} is not supported (linear, relu, sigmoid, tanh, softmax)"))
}

/// Keras's `factor`: `f` (meaning `[-|f|, |f|]`) or `[lower, upper]`; `None` when absent or null.
fn factor(c: &Value, key: &str, name: &str) -> Result<Option<Factor>, String> {
    let bad = || format!("layer {name}: {key} must be a finite number or a pair of them");
    let num = |v: &Value| v.as_f64().filter(|x| x.is_finite()).map(|x| x as f32).ok_or_else(bad);
    match c.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) if a.len() == 2 => Ok(Some(Factor::from((num(&a[0])?, num(&a[1])?)))),
        Some(v @ Value::Number(_)) => Ok(Some(Factor::from(num(v)?))),
        Some(_) => Err(bad()),
    }
}

fn seed(c: &Value) -> Option<u64> {
    c.get("seed").and_then(Value::as_u64)
}

/// `fill_mode`, `interpolation`, `fill_value`, `seed` of the random warp layers.
fn warp_options(c: &Value, name: &str) -> Result<(FillMode, Interpolation, f32, Option<u64>), String> {
    let fill = match c.get("fill_mode").and_then(Value::as_str).unwrap_or("reflect") {
        "reflect" => FillMode::Reflect,
        "wrap" => FillMode::Wrap,
        "constant" => FillMode::Constant,
        "nearest" => FillMode::Nearest,
        other => return Err(format!("layer {name}: fill_mode {other:?} is not supported")),
    };
    let interpolation = match c.get("interpolation").and_then(Value::as_str).unwrap_or("bilinear") {
        "bilinear" => Interpolation::Bilinear,
        "nearest" => Interpolation::Nearest,
        other => return Err(format!("layer {name}: interpolation {other:?} is not supported (bilinear, nearest)")),
    };
    let value = c.get("fill_value").and_then(Value::as_f64).filter(|v| v.is_finite()).unwrap_or(0.0) as f32;
    Ok((fill, interpolation, value, seed(c)))
}

fn padding(c: &Value, name: &str) -> Result<Padding, String> {
    match c.get("padding").and_then(Value::as_str) {
        None | Some("valid") => Ok(Padding::Valid),
        Some("same") => Ok(Padding::Same),
        Some(other) => Err(format!("layer {name}: padding {other:?} is not supported (valid or same)")),
    }
}

/// `3` or `[3, 3]`; `None` when absent or null.
fn size2(v: Option<&Value>, name: &str, what: &str) -> Result<Option<Size2>, String> {
    let bad = || format!("layer {name}: {what} must be a positive integer or a pair of them");
    let one = |x: &Value| x.as_u64().filter(|&n| n >= 1).and_then(|n| usize::try_from(n).ok()).ok_or_else(bad);
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) if a.len() == 2 => Ok(Some(Size2(one(&a[0])?, one(&a[1])?))),
        Some(x @ Value::Number(_)) => {
            let k = one(x)?;
            Ok(Some(Size2(k, k)))
        }
        Some(_) => Err(bad()),
    }
}

fn count(c: &Value, key: &str, name: &str) -> Result<usize, String> {
    c.get(key)
        .and_then(Value::as_u64)
        .filter(|&n| n >= 1)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| format!("layer {name}: {key} must be a positive integer"))
}

/// `[null, h, w, c]` without the batch axis.
fn batch_shape(v: &Value, name: &str) -> Result<Vec<usize>, String> {
    let bad = || format!("layer {name}: the input shape {v} must be [null, positive integers...]");
    let a = v.as_array().ok_or_else(bad)?;
    if a.len() < 2 || a.len() > 4 {
        return Err(bad());
    }
    a[1..]
        .iter()
        .map(|d| d.as_u64().filter(|&n| n >= 1).and_then(|n| usize::try_from(n).ok()).ok_or_else(bad))
        .collect()
}

fn str_field<'a>(v: &'a Value, key: &str, what: &str) -> Result<&'a str, String> {
    v.get(key).and_then(Value::as_str).ok_or_else(|| format!("{what} has no {key:?}"))
}

fn set_input_shape(layer: &mut Layer, shape: Vec<usize>) {
    *layer.input_shape_slot() = Some(InputShape(shape));
}
