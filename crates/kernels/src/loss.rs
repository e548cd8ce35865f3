//! Softmax and cross-entropy, fused and numerically stable; the logistic
//! function and binary cross-entropy (from probabilities or from logits),
//! the one copy the tape and the tape-free inference pass both call.
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

/// Keras's `epsilon()` (1e-7): [`binary_cross_entropy`] clips probabilities
/// to `[BCE_EPSILON, 1 - BCE_EPSILON]`.
pub const BCE_EPSILON: f32 = 1e-7;

/// The logistic function `1 / (1 + e^-x)`, stable for large `|x|` (never
/// computes `e^x` for a positive `x`).
///
/// ```
/// use convnet_kernels::loss::sigmoid;
/// assert_eq!(sigmoid(0.0), 0.5);
/// assert_eq!(sigmoid(-1000.0), 0.0);
/// assert_eq!(sigmoid(1000.0), 1.0);
/// ```
#[inline]
pub fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Checks that `targets` matches `values` and that there is something to average.
fn check_binary(op: &'static str, values: &[f32], targets: &[f32]) -> Result<()> {
    check_len("targets", targets.len(), values.len(), &op)?;
    if values.is_empty() {
        return Err(crate::Error::InvalidShape { shape: op.to_string(), reason: "no elements to average".into() });
    }
    Ok(())
}

/// Mean binary cross-entropy of probabilities `probs` (a sigmoid output)
/// against `targets` in `[0, 1]`, element-wise over equal-length slices,
/// accumulated in f64: `-(t ln p + (1 - t) ln(1 - p))` with `p` clipped to
/// `[BCE_EPSILON, 1 - BCE_EPSILON]` as Keras clips it.
///
/// ```
/// use convnet_kernels::loss::binary_cross_entropy;
/// let loss = binary_cross_entropy(&[0.5, 0.5], &[1.0, 0.0])?;
/// assert!((loss - std::f32::consts::LN_2).abs() < 1e-6);
/// # Ok::<(), convnet_kernels::Error>(())
/// ```
pub fn binary_cross_entropy(probs: &[f32], targets: &[f32]) -> Result<f32> {
    check_binary("binary_cross_entropy", probs, targets)?;
    let mut total = 0.0f64;
    for (&p, &t) in probs.iter().zip(targets) {
        let p = p.clamp(BCE_EPSILON, 1.0 - BCE_EPSILON) as f64;
        total -= t as f64 * p.ln() + (1.0 - t as f64) * (1.0 - p).ln();
    }
    Ok((total / probs.len() as f64) as f32)
}

/// Mean binary cross-entropy from logits (Keras's `from_logits=True`), in the
/// stable form `max(x, 0) - x t + ln(1 + e^-|x|)`, accumulated in f64.
///
/// ```
/// use convnet_kernels::loss::binary_cross_entropy_with_logits;
/// let loss = binary_cross_entropy_with_logits(&[0.0, 0.0], &[1.0, 0.0])?;
/// assert!((loss - std::f32::consts::LN_2).abs() < 1e-6);
/// # Ok::<(), convnet_kernels::Error>(())
/// ```
pub fn binary_cross_entropy_with_logits(logits: &[f32], targets: &[f32]) -> Result<f32> {
    check_binary("binary_cross_entropy_with_logits", logits, targets)?;
    let total: f64 = logits
        .iter()
        .zip(targets)
        .map(|(&x, &t)| {
            let (x, t) = (x as f64, t as f64);
            x.max(0.0) - x * t + (-x.abs()).exp().ln_1p()
        })
        .sum();
    Ok((total / logits.len() as f64) as f32)
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
        assert!(binary_cross_entropy(&[0.5; 2], &[1.0]).is_err());
        assert!(binary_cross_entropy_with_logits(&[], &[]).is_err());
    }

    /// Both binary forms agree with an f64 evaluation of the definition, and
    /// the logits form stays finite where `sigmoid` saturates.
    #[test]
    fn binary_cross_entropy_matches_f64_definition() {
        let logits = [-30.0f32, -2.0, -0.1, 0.0, 0.7, 3.0, 30.0];
        let targets = [0.0f32, 1.0, 0.3, 1.0, 0.0, 1.0, 1.0];
        let (mut from_logits, mut from_probs) = (0.0f64, 0.0f64);
        for (&x, &t) in logits.iter().zip(&targets) {
            let (x, t) = (x as f64, t as f64);
            let p = 1.0 / (1.0 + (-x).exp());
            from_logits -= t * p.ln() + (1.0 - t) * (1.0 - p).ln();
            let pc = sigmoid(x as f32).clamp(BCE_EPSILON, 1.0 - BCE_EPSILON) as f64;
            from_probs -= t * pc.ln() + (1.0 - t) * (1.0 - pc).ln();
        }
        let n = logits.len() as f64;
        let got = binary_cross_entropy_with_logits(&logits, &targets).unwrap() as f64;
        assert!((got - from_logits / n).abs() < 1e-6 * (from_logits / n), "{got} vs {}", from_logits / n);
        let probs: Vec<f32> = logits.iter().map(|&x| sigmoid(x)).collect();
        let got = binary_cross_entropy(&probs, &targets).unwrap() as f64;
        assert!((got - from_probs / n).abs() < 1e-6 * (from_probs / n), "{got} vs {}", from_probs / n);
    }
}
