//! Softmax and cross-entropy, fused and numerically stable.

use crate::error::check_len;
use crate::Result;

/// Row-wise softmax of `logits [rows, classes]` into `probs` (overwrites).
pub fn softmax(classes: usize, logits: &[f32], probs: &mut [f32]) -> Result<()> {
    check_len("probs", probs.len(), logits.len(), &"softmax")?;
    if classes == 0 || logits.len() % classes != 0 {
        return Err(crate::Error::InvalidShape {
            shape: format!("softmax over {classes} classes"),
            reason: format!("{} logits is not a whole number of rows", logits.len()),
        });
    }
    for (row, out) in logits.chunks_exact(classes).zip(probs.chunks_exact_mut(classes)) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0f32;
        for (o, &x) in out.iter_mut().zip(row) {
            *o = (x - max).exp();
            sum += *o;
        }
        let inv = 1.0 / sum;
        out.iter_mut().for_each(|o| *o *= inv);
    }
    Ok(())
}

/// Softmax followed by categorical cross-entropy against `targets` (one-hot or
/// any distribution per row), in one pass. Returns the mean loss over rows and
/// writes `grad_logits = (softmax(logits) - targets) / rows`, the gradient of
/// that mean. The loss uses log-sum-exp, so large logits do not overflow.
///
/// ```
/// use convnet_kernels::loss::softmax_cross_entropy;
/// let mut g = [0.0; 2];
/// let loss = softmax_cross_entropy(2, &[0.0, 0.0], &[1.0, 0.0], &mut g)?;
/// assert!((loss - std::f32::consts::LN_2).abs() < 1e-6);
/// assert_eq!(g, [-0.5, 0.5]);
/// # Ok::<(), convnet_kernels::Error>(())
/// ```
pub fn softmax_cross_entropy(classes: usize, logits: &[f32], targets: &[f32], grad_logits: &mut [f32]) -> Result<f32> {
    check_len("targets", targets.len(), logits.len(), &"softmax_cross_entropy")?;
    softmax(classes, logits, grad_logits)?;
    let rows = logits.len() / classes;
    let inv_rows = 1.0 / rows as f32;
    let mut total = 0.0f64;
    for ((row, t), g) in
        logits.chunks_exact(classes).zip(targets.chunks_exact(classes)).zip(grad_logits.chunks_exact_mut(classes))
    {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let lse = max as f64 + row.iter().map(|&x| ((x - max) as f64).exp()).sum::<f64>().ln();
        for ((g, &t), &x) in g.iter_mut().zip(t).zip(row) {
            if t != 0.0 {
                total += t as f64 * (lse - x as f64);
            }
            *g = (*g - t) * inv_rows;
        }
    }
    Ok((total / rows as f64) as f32)
}

/// Like [`softmax_cross_entropy`] with integer class labels (`labels[i] < classes`).
pub fn sparse_softmax_cross_entropy(
    classes: usize,
    logits: &[f32],
    labels: &[u32],
    grad_logits: &mut [f32],
) -> Result<f32> {
    softmax(classes, logits, grad_logits)?;
    let rows = logits.len() / classes;
    check_len("labels", labels.len(), rows, &"sparse_softmax_cross_entropy")?;
    if let Some(&bad) = labels.iter().find(|&&l| l as usize >= classes) {
        return Err(crate::Error::InvalidShape {
            shape: format!("{rows} rows x {classes} classes"),
            reason: format!("label {bad} out of range"),
        });
    }
    let inv_rows = 1.0 / rows as f32;
    let mut total = 0.0f64;
    for ((row, &l), g) in logits.chunks_exact(classes).zip(labels).zip(grad_logits.chunks_exact_mut(classes)) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let lse = max as f64 + row.iter().map(|&x| ((x - max) as f64).exp()).sum::<f64>().ln();
        total += lse - row[l as usize] as f64;
        g[l as usize] -= 1.0;
        g.iter_mut().for_each(|g| *g *= inv_rows);
    }
    Ok((total / rows as f64) as f32)
}
