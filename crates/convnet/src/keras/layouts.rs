//! The two HDF5 weight layouts Keras writes, read into a built model.
//!
//! **Keras 3** (`model.weights.h5` in a `.keras` archive, `save_weights("x.weights.h5")`):
//! `/layers/<key>/vars/<i>`, where `<key>` is the layer's class in snake case
//! numbered per class within its model (`conv2d`, `conv2d_1`, ..., so
//! `conv2d_10` sorts before `conv2d_2`: the number is parsed, never the
//! string order), the real layer name in the `vars` group's `name`
//! attribute, and a nested model's layers under
//! `/layers/<model key>/layers/...`. Keras matches layers by that structure;
//! so does this reader, class by class: the model's k-th `Conv2D` takes the
//! file's `conv2d_k`. When one class is spread over several nested models
//! (whose relative order the file does not record), layers are matched by
//! their real names instead, or the load is refused.
//!
//! **Keras 2** (legacy `save_weights("x.h5")`, the downloadable ImageNet
//! files, and `model.save("x.h5")` under `/model_weights`): the root's
//! `layer_names` attribute (possibly split into `layer_names0`, `layer_names1`,
//! ...) lists one group per layer, each with a `weight_names` attribute
//! naming its datasets by paths relative to the group
//! (`block1_conv1_W_1:0` directly in the group in the ImageNet files,
//! `dense/kernel:0` below it elsewhere). A layer without weights has an
//! empty (float64) `weight_names`. Keras loads these by order, layer by
//! layer; a nested model's group lists all its layers' weights, so here the
//! file's tensors, in order, meet the model's parameters, in order.
//!
//! Every tensor's dtype and shape is checked against the model before its
//! data is read, all tensors are read before any is assigned, so a bad file
//! is an error naming the tensor and leaves the model unchanged.

use super::hdf5::{self, Attrs};
use crate::model::Model;
use hdf5_pure::{File, Group};
use std::collections::BTreeMap;

/// One weighted layer of the model: name, class key (`conv2d`) and its
/// parameters' names and shapes, in order.
struct Want {
    name: String,
    key: &'static str,
    params: Vec<(String, Vec<usize>)>,
}

fn wanted(model: &Model) -> Result<Vec<Want>, String> {
    let mut out = Vec::new();
    for l in model.layers() {
        if l.params.is_empty() {
            continue;
        }
        let mut params = Vec::with_capacity(l.params.len());
        for &id in &l.params {
            let name = model.params().name(id).map_err(|e| e.to_string())?.to_string();
            let dims = model.params().value(id).map_err(|e| e.to_string())?.shape().dims().to_vec();
            params.push((name, dims));
        }
        out.push(Want { name: l.name.clone(), key: l.layer.auto_name_prefix(), params });
    }
    Ok(out)
}

/// Reads the weights in the HDF5 file `bytes` (either layout) into `model`;
/// on error the model is unchanged.
pub(crate) fn load(model: &mut Model, bytes: Vec<u8>) -> Result<(), String> {
    load_from(model, &hdf5::open(bytes)?)
}

/// [`load`] from an opened file.
pub(crate) fn load_from(model: &mut Model, file: &File) -> Result<(), String> {
    let root = file.root();
    let root_attrs = hdf5::attrs(&root, "the file's root group")?;
    let staged = if hdf5::split_string_list(&root_attrs, "layer_names")?.is_some() {
        legacy(&root, &root_attrs, &wanted(model)?)?
    } else if has_group(file, "model_weights") {
        let g = file.group("model_weights").map_err(|e| format!("/model_weights: {e}"))?;
        let attrs = hdf5::attrs(&g, "/model_weights")?;
        legacy(&g, &attrs, &wanted(model)?)?
    } else if has_group(file, "layers") {
        keras3(file, &wanted(model)?)?
    } else {
        return Err(
            "no Keras weights in this HDF5 file (no layer_names attribute, no /model_weights, no /layers)".into()
        );
    };
    model.set_weights(&staged).map_err(|e| e.to_string())
}

fn has_group(file: &File, name: &str) -> bool {
    file.root().groups().map(|g| g.iter().any(|n| n == name)).unwrap_or(false)
}

/// A weighted layer found in a Keras 3 file.
struct Found {
    /// `layers/functional/layers/conv2d_1/vars`.
    path: String,
    /// The model it sits in (`""` for the top level, `functional` ...).
    container: String,
    /// Its number within its class in that model (`conv2d_1` -> 1).
    index: u64,
    /// The real layer name (the `vars` group's `name` attribute).
    name: Option<String>,
    /// How many tensors (`vars/0`, `vars/1`, ...).
    tensors: usize,
}

/// Layers nested deeper than this are refused (a hostile file could nest without end).
const MAX_DEPTH: usize = 8;
/// Layers in one file at most (a VGG16 has 23; the largest Keras applications a few hundred).
const MAX_LAYERS: usize = 100_000;

fn keras3(file: &File, want: &[Want]) -> Result<Vec<Vec<f32>>, String> {
    let mut found: BTreeMap<String, Vec<Found>> = BTreeMap::new();
    let mut total = 0usize;
    walk(file, "", "", 0, &mut found, &mut total)?;
    // Classes the file has weights for but the model has no layer of.
    for (key, list) in &found {
        if !want.iter().any(|w| w.key == key) {
            let f = &list[0];
            return Err(format!(
                "the file has weights for layer {} ({}), a {key} layer the model does not have",
                f.name.as_deref().unwrap_or("?"),
                f.path
            ));
        }
    }
    let mut staged = Vec::new();
    let mut by_key: BTreeMap<&str, Vec<&Want>> = BTreeMap::new();
    for w in want {
        by_key.entry(w.key).or_default().push(w);
    }
    let mut matched: BTreeMap<&str, &Found> = BTreeMap::new();
    for (key, ours) in &by_key {
        let mut theirs: Vec<&Found> = found.get(*key).map(|v| v.iter().collect()).unwrap_or_default();
        if theirs.len() != ours.len() {
            return Err(format!("the model has {} {key} layers with weights, the file {}", ours.len(), theirs.len()));
        }
        let one_model = theirs.iter().all(|f| f.container == theirs[0].container);
        if one_model {
            theirs.sort_by_key(|f| f.index);
            for (w, f) in ours.iter().zip(theirs) {
                matched.insert(w.name.as_str(), f);
            }
        } else {
            for w in ours {
                let f = theirs.iter().find(|f| f.name.as_deref() == Some(w.name.as_str())).ok_or_else(|| {
                    format!(
                        "the file's {key} layers sit in several nested models, whose order it does not record, and \
                         none of them is named {} as the model's layer is; load the .keras file, which holds the \
                         architecture",
                        w.name
                    )
                })?;
                matched.insert(w.name.as_str(), f);
            }
        }
    }
    for w in want {
        let f = matched[w.name.as_str()];
        if f.tensors != w.params.len() {
            return Err(format!(
                "{} ({}) holds {} tensors, the model's layer {} has {}",
                f.path,
                f.name.as_deref().unwrap_or("?"),
                f.tensors,
                w.name,
                w.params.len()
            ));
        }
        for (i, (pname, dims)) in w.params.iter().enumerate() {
            let path = format!("{}/{i}", f.path);
            let ds = file.dataset(&path).map_err(|e| format!("{path}: {e}"))?;
            staged.push(hdf5::read_f32(&ds, dims, &format!("{path} (for {pname})"))?);
        }
    }
    Ok(staged)
}

/// Collects the weighted layers under `<prefix>layers/`, by class key.
fn walk(
    file: &File,
    prefix: &str,
    container: &str,
    depth: usize,
    found: &mut BTreeMap<String, Vec<Found>>,
    total: &mut usize,
) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("{prefix}: models nested more than {MAX_DEPTH} deep"));
    }
    let layers_path = format!("{prefix}layers");
    let group = file.group(&layers_path).map_err(|e| format!("{layers_path}: {e}"))?;
    let keys = group.groups().map_err(|e| format!("{layers_path}: {e}"))?;
    for key in keys {
        *total += 1;
        if *total > MAX_LAYERS {
            return Err(format!("more than {MAX_LAYERS} layers in the file"));
        }
        let at = format!("{layers_path}/{key}");
        let g = file.group(&at).map_err(|e| format!("{at}: {e}"))?;
        let children = g.groups().map_err(|e| format!("{at}: {e}"))?;
        if children.iter().any(|c| c == "layers") {
            walk(file, &format!("{at}/"), &at, depth + 1, found, total)?;
        }
        if !children.iter().any(|c| c == "vars") {
            continue;
        }
        let vars_path = format!("{at}/vars");
        let vars = file.group(&vars_path).map_err(|e| format!("{vars_path}: {e}"))?;
        let mut names = vars.datasets().map_err(|e| format!("{vars_path}: {e}"))?;
        if names.is_empty() {
            continue;
        }
        let mut numbers: Vec<usize> = names.iter().filter_map(|n| n.parse().ok()).collect();
        numbers.sort_unstable();
        if numbers.len() != names.len() || numbers.iter().enumerate().any(|(i, &n)| i != n) {
            names.sort();
            names.truncate(4);
            return Err(format!("{vars_path}: tensors must be named 0, 1, ...; found {}", names.join(", ")));
        }
        let attrs = hdf5::attrs(&vars, &vars_path)?;
        let (class, index) = split_key(&key);
        found.entry(class.to_string()).or_default().push(Found {
            path: vars_path,
            container: container.to_string(),
            index,
            name: hdf5::string(&attrs, "name")?,
            tensors: numbers.len(),
        });
    }
    Ok(())
}

/// `conv2d_10` -> (`conv2d`, 10); `conv2d` -> (`conv2d`, 0).
fn split_key(key: &str) -> (&str, u64) {
    if let Some((class, n)) = key.rsplit_once('_') {
        if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(n) = n.parse() {
                return (class, n);
            }
        }
    }
    (key, 0)
}

fn legacy(root: &Group, attrs: &Attrs, want: &[Want]) -> Result<Vec<Vec<f32>>, String> {
    let layer_names = hdf5::split_string_list(attrs, "layer_names")?.ok_or("no layer_names attribute")?;
    if layer_names.len() > MAX_LAYERS {
        return Err(format!("layer_names lists {} layers, more than {MAX_LAYERS}", layer_names.len()));
    }
    // (layer group, weight name) in the file's order.
    let mut tensors: Vec<(String, String)> = Vec::new();
    let mut weighted_layers = Vec::new();
    for lname in &layer_names {
        let g = root.group(lname).map_err(|e| format!("layer_names lists {lname}, but its group: {e}"))?;
        let a = hdf5::attrs(&g, lname)?;
        let names = hdf5::split_string_list(&a, "weight_names")?.unwrap_or_default();
        if !names.is_empty() {
            weighted_layers.push(lname.clone());
        }
        tensors.extend(names.into_iter().map(|w| (lname.clone(), w)));
    }
    let ours: Vec<(&str, &(String, Vec<usize>))> =
        want.iter().flat_map(|w| w.params.iter().map(move |p| (w.name.as_str(), p))).collect();
    if tensors.len() != ours.len() {
        let mut shown: Vec<&str> = weighted_layers.iter().take(6).map(String::as_str).collect();
        if weighted_layers.len() > 6 {
            shown.push("...");
        }
        return Err(format!(
            "the file holds {} weight tensors in {} layers ({}), the model has {} in {} layers",
            tensors.len(),
            weighted_layers.len(),
            shown.join(", "),
            ours.len(),
            want.len()
        ));
    }
    let mut staged = Vec::with_capacity(ours.len());
    for ((lname, wname), (_, (pname, dims))) in tensors.iter().zip(&ours) {
        let g = root.group(lname).map_err(|e| format!("{lname}: {e}"))?;
        let what = format!("{lname}/{wname} (for {pname})");
        let ds = g.dataset(wname).map_err(|e| format!("{what}: no such dataset: {e}"))?;
        staged.push(hdf5::read_f32(&ds, dims, &what)?);
    }
    Ok(staged)
}

#[cfg(test)]
mod tests {
    use super::split_key;

    #[test]
    fn keys_split_by_number_not_string_order() {
        assert_eq!(split_key("conv2d"), ("conv2d", 0));
        assert_eq!(split_key("conv2d_10"), ("conv2d", 10));
        assert_eq!(split_key("max_pooling2d_2"), ("max_pooling2d", 2));
        assert_eq!(split_key("input_layer"), ("input_layer", 0));
        let mut keys = ["conv2d_10", "conv2d_2", "conv2d"];
        keys.sort_by_key(|k| split_key(k).1);
        assert_eq!(keys, ["conv2d", "conv2d_2", "conv2d_10"]);
    }
}
