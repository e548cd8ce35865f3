//! `convnet convert IN OUT`: a model or its weights from one file format to
//! another, among Keras `.keras`, Keras HDF5 weights (`.weights.h5`, legacy
//! `.h5`) and safetensors. IN is recognised by its content, OUT's format by
//! its extension (`convnet::keras::SaveFormat`).
//!
//! IN is a model file (`.keras`, a legacy Keras `.h5` model, a whole-model
//! safetensors file), or, with `--model FILE|NAME` naming the architecture,
//! a weights file of any kind (such as the ImageNet
//! `vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5` with `--model vgg16`).

use super::{models, CliResult};
use convnet::keras::SaveFormat;
use convnet::limits::Limits;
use convnet::weights::LoadOptions;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ConvertArgs {
    /// The file to read: a model file, or weights with --model.
    #[arg(value_name = "IN")]
    input: PathBuf,
    /// The file to write: `.keras`, `.weights.h5` (Keras 3 weights), `.h5` (legacy Keras weights) or
    /// `.safetensors` (a whole model); written atomically.
    #[arg(value_name = "OUT")]
    output: PathBuf,
    /// The architecture IN's weights belong to, when IN holds weights only: a built-in (mnist,
    /// small-data, vgg16), an architecture JSON or a model file.
    #[arg(long, value_name = "FILE|NAME")]
    model: Option<String>,
    /// Load weights even if some are NaN or infinite (refused by default).
    #[arg(long)]
    allow_non_finite: bool,
}

pub fn run(a: ConvertArgs, limits: Limits) -> CliResult<()> {
    let opts = LoadOptions { limits, allow_non_finite: a.allow_non_finite };
    // Refuse an OUT whose format is unknown before reading a large IN.
    let format = SaveFormat::for_path(&a.output)?;
    let model = match &a.model {
        None => convnet::keras::load_any_with(&a.input, &opts)?,
        Some(spec) => {
            let mut m = models::resolve(spec, &opts)?.build(None, convnet::DEFAULT_SEED, &opts)?;
            m.load_any_weights(&a.input, &opts)?;
            m
        }
    };
    model.save_as(&a.output)?;
    let what = match format {
        SaveFormat::Keras => "Keras archive",
        SaveFormat::KerasWeights => "Keras 3 weights",
        SaveFormat::LegacyH5Weights => "legacy Keras HDF5 weights",
        SaveFormat::Safetensors => "safetensors model",
    };
    println!(
        "{} -> {} ({what}; model {}, {} layers, {} parameters)",
        a.input.display(),
        a.output.display(),
        model.name(),
        model.layers().len(),
        model.param_count()
    );
    Ok(())
}
