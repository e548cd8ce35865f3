//! The architecture check that runs before a model is built: layer names,
//! every shape, the parameter count and the activation memory, all with
//! checked arithmetic and compared with the [`Limits`] layer by layer (the
//! first layer that crosses a limit is named), before one weight is
//! allocated. [`Sequential::build_with`](crate::Sequential::build_with) and
//! [`Model::load`](crate::Model::load) both start here, so a model file that
//! asks for a billion filters is an error naming the layer, not an abort in
//! the allocator.
//!
//! It is linear in the number of layers: names are checked for duplicates
//! with a hash set.

use crate::layers::{fmt_dims, InputShape, Layer, ParamSpec};
use crate::limits::{Limits, ENV_MAX_ACTIVATIONS, ENV_MAX_LAYERS, ENV_MAX_PARAMS};
use crate::{Error, Result};
use std::collections::{HashMap, HashSet};

/// One layer, checked: its resolved name, shapes (without the batch axis)
/// and parameter shapes.
#[derive(Debug)]
pub(crate) struct LayerPlan {
    pub(crate) name: String,
    pub(crate) layer: Layer,
    pub(crate) input: Vec<usize>,
    pub(crate) output: Vec<usize>,
    pub(crate) params: Vec<ParamSpec>,
    pub(crate) param_count: usize,
}

/// A whole model, checked against the limits; nothing allocated but this.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) name: String,
    pub(crate) seed: u64,
    pub(crate) layers: Vec<LayerPlan>,
}

/// The number of values of a shape, or `None` on overflow.
pub(crate) fn elements(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

/// Checks a model definition (a `Sequential`'s name, layers and seed)
/// against `limits` and resolves every name and shape.
pub(crate) fn plan(name: String, layers: Vec<Layer>, seed: u64, limits: &Limits) -> Result<Plan> {
    if layers.is_empty() {
        return Err(Error::invalid("model", "a Sequential model needs at least one layer"));
    }
    if layers.len() > limits.max_layers {
        return Err(Error::invalid(
            "model",
            format!(
                "{} layers, more than the limit of {} (raise Limits::max_layers or {ENV_MAX_LAYERS}; docs/LIMITS.md)",
                layers.len(),
                limits.max_layers
            ),
        ));
    }
    let mut counters: HashMap<&'static str, usize> = HashMap::new();
    let mut seen: HashSet<String> = HashSet::with_capacity(layers.len());
    let mut planned = Vec::with_capacity(layers.len());
    let mut current: Option<Vec<usize>> = None;
    let mut param_count = 0usize;
    let mut activations = 0usize;
    for (i, mut layer) in layers.into_iter().enumerate() {
        let lname = match layer.user_name() {
            Some(n) => n.to_string(),
            None => {
                let prefix = layer.auto_name_prefix();
                let k = counters.entry(prefix).or_insert(0);
                let n = if *k == 0 { prefix.to_string() } else { format!("{prefix}_{k}") };
                *k += 1;
                n
            }
        };
        if lname.is_empty() || lname.contains('/') {
            return Err(Error::build(&lname, "a layer name must be non-empty and contain no '/'"));
        }
        if !seen.insert(lname.clone()) {
            return Err(Error::build(&lname, "two layers have this name"));
        }
        layer.set_name(lname.clone());
        let input = match (i, layer.declared_input_shape(), current.take()) {
            (0, Some(InputShape(d)), _) => d.clone(),
            (0, None, _) => {
                return Err(Error::build(
                    &lname,
                    "the first layer needs an input_shape, e.g. .input_shape((28, 28, 1))",
                ))
            }
            (_, Some(InputShape(d)), Some(cur)) if *d != cur => {
                return Err(Error::build(
                    &lname,
                    format!("declared input_shape {} but receives {}", fmt_dims(d), fmt_dims(&cur)),
                ))
            }
            (_, _, Some(cur)) => cur,
            (_, _, None) => unreachable!("every planned layer sets an output shape"),
        };
        if input.is_empty() || input.len() > 3 {
            return Err(Error::build(&lname, format!("input shape {} must have 1 to 3 dimensions", fmt_dims(&input))));
        }
        if i == 0 {
            activations = elements(&input)
                .ok_or_else(|| Error::build(&lname, format!("input shape {} overflows", fmt_dims(&input))))?;
        }
        let output = layer.output_shape(&lname, &input)?;
        let out_len = elements(&output)
            .ok_or_else(|| Error::build(&lname, format!("output shape {} overflows", fmt_dims(&output))))?;
        activations = activations
            .checked_add(out_len)
            .ok_or_else(|| Error::build(&lname, "the model's activation count overflows"))?;
        if activations > limits.max_activations {
            return Err(Error::build(
                &lname,
                format!(
                    "its output {} brings the model to {activations} activation values per example, more than the \
                     limit of {} (raise Limits::max_activations or {ENV_MAX_ACTIVATIONS}; docs/LIMITS.md)",
                    fmt_dims(&output),
                    limits.max_activations
                ),
            ));
        }
        let params = layer.params(&input);
        let mut count = 0usize;
        for spec in &params {
            let n = elements(&spec.dims).ok_or_else(|| {
                Error::build(&lname, format!("{} of shape {} overflows", spec.kind, fmt_dims(&spec.dims)))
            })?;
            count = count.checked_add(n).ok_or_else(|| Error::build(&lname, "parameter count overflows"))?;
        }
        param_count = param_count
            .checked_add(count)
            .ok_or_else(|| Error::build(&lname, "the model's parameter count overflows"))?;
        if param_count > limits.max_params {
            return Err(Error::build(
                &lname,
                format!(
                    "{count} parameters bring the model to {param_count}, more than the limit of {} \
                     (raise Limits::max_params or {ENV_MAX_PARAMS}; docs/LIMITS.md)",
                    limits.max_params
                ),
            ));
        }
        planned.push(LayerPlan { name: lname, layer, input, output: output.clone(), params, param_count: count });
        current = Some(output);
    }
    Ok(Plan { name, seed, layers: planned })
}
