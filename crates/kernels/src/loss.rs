//! Softmax and cross-entropy, fused and numerically stable.
//!
//! Each row is handled in one sweep: the row maximum, `exp(x - max)` (so no
//! exponent overflows), their sum, the probabilities, and the log-sum-exp
//! `lse = max + ln(sum)` for the loss, reused from the same exponentials
//! (accumulated in f64), so every logit is exponentiated once.
//!
//! Not vectorised on purpose: the chapter's rows hold 10 classes, where the
//! cost is the 10 calls to `exp` and a SIMD `exp` would change the results in
//! the last bit for no measurable gain (the loss is under 0.1% of a training
//! step).

use crate::error::check_len;
use crate::Result;

/// Row-wise softmax of `logits [rows, classes]` into `probs` (overwrites).
pub fn softmax(classes: usize, logits: &[f32], probs: &mut [f32]) -> Result<()> {
    check_rows(classes, logits, probs)?;
    for (row, out) in logits.chunks_exact(classes).zip(probs.chunks_exact_mut(classes)) {
        softmax_row(row, out);
    }
    Ok(())
}

/// Softmax of one row into `out`; returns the row's log-sum-exp in f64.
#[inline]
fn softmax_row(row: &[f32], out: &mut [f32]) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    let mut sum64 = 0.0f64;
    for (o, &x) in out.iter_mut().zip(row) {
        *o = (x - max).exp();
        sum += *o;
        sum64 += *o as f64;
    }
    let inv = 1.0 / sum;
    out.iter_mut().for_each(|o| *o *= inv);
    max as f64 + sum64.ln()
}

/// Checks `out` matches `logits` and `logits` is whole rows of `classes`.
fn check_rows(classes: usize, logits: &[f32], out: &[f32]) -> Result<()> {
    check_len("probs", out.len(), logits.len(), &"softmax")?;
    if logits.len().checked_rem(classes) != Some(0) {
        return Err(crate::Error::InvalidShape {
            shape: format!("softmax over {classes} classes"),
            reason: format!("{} logits is not a whole number of rows", logits.len()),
        });
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
    check_rows(classes, logits, grad_logits)?;
    let rows = logits.len() / classes;
    let inv_rows = 1.0 / rows as f32;
    let mut total = 0.0f64;
    for ((row, t), g) in
        logits.chunks_exact(classes).zip(targets.chunks_exact(classes)).zip(grad_logits.chunks_exact_mut(classes))
    {
        let lse = softmax_row(row, g);
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
    check_rows(classes, logits, grad_logits)?;
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
        let lse = softmax_row(row, g);
        total += lse - row[l as usize] as f64;
        g[l as usize] -= 1.0;
        g.iter_mut().for_each(|g| *g *= inv_rows);
    }
    Ok((total / rows as f64) as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fused loss against an f64 evaluation of the definition, with huge
    /// logits that would overflow a naive `exp`.
    #[test]
    fn fused_loss_matches_f64_definition_and_is_stable() {
        let logits = [1000.0f32, 999.0, 990.0, -5.0, 0.0, 5.0, 0.1, 0.2, 0.3];
        let labels = [0u32, 2, 1];
        let mut targets = [0.0f32; 9];
        for (r, &l) in labels.iter().enumerate() {
            targets[r * 3 + l as usize] = 1.0;
        }
        let mut want = 0.0f64;
        let mut want_grad = [0.0f64; 9];
        for r in 0..3 {
            let row: Vec<f64> = logits[r * 3..][..3].iter().map(|&x| x as f64).collect();
            let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = row.iter().map(|x| (x - m).exp()).sum();
            want += m + z.ln() - row[labels[r] as usize];
            for c in 0..3 {
                want_grad[r * 3 + c] = ((row[c] - m).exp() / z - targets[r * 3 + c] as f64) / 3.0;
            }
        }
        want /= 3.0;
        let (mut g1, mut g2) = ([f32::NAN; 9], [f32::NAN; 9]);
        let dense = softmax_cross_entropy(3, &logits, &targets, &mut g1).unwrap();
        let sparse = sparse_softmax_cross_entropy(3, &logits, &labels, &mut g2).unwrap();
        assert!(((dense as f64) - want).abs() < 1e-5 * want.abs().max(1.0), "{dense} vs {want}");
        assert!(((sparse as f64) - want).abs() < 1e-5 * want.abs().max(1.0), "{sparse} vs {want}");
        for i in 0..9 {
            assert!((g1[i] as f64 - want_grad[i]).abs() < 1e-6, "{i}: {} vs {}", g1[i], want_grad[i]);
            assert!((g2[i] as f64 - want_grad[i]).abs() < 1e-6, "{i}: {} vs {}", g2[i], want_grad[i]);
        }
    }

    #[test]
    fn bad_shapes_are_errors() {
        let mut g = [0.0; 4];
        assert!(softmax(0, &[1.0; 4], &mut g).is_err());
        assert!(softmax(3, &[1.0; 4], &mut g).is_err());
        assert!(softmax_cross_entropy(2, &[1.0; 4], &[1.0; 2], &mut g).is_err());
        assert!(sparse_softmax_cross_entropy(2, &[1.0; 4], &[0, 2], &mut g).is_err());
        assert!(sparse_softmax_cross_entropy(2, &[1.0; 4], &[0], &mut g).is_err());
    }
}
