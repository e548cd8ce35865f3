//! Finite checks over a whole buffer, fast enough to run every training step.

/// Whether every element of `data` is finite, in one branch-free pass the
/// compiler vectorises: `v * 0` is 0 for a finite `v` and NaN for an
/// infinity or a NaN, and a NaN stays in the lane sums. A scalar loop that
/// stops at the first bad element runs at about a cycle per element; on the
/// chapter's model the step's gradient and weight checks were 2-3% of the
/// step that way (`--profile`'s finite_checks).
///
/// ```
/// use convnet_tensor::all_finite;
/// assert!(all_finite(&[1.0, f32::MAX, -0.0]));
/// assert!(!all_finite(&[1.0, f32::NAN]));
/// ```
pub fn all_finite(data: &[f32]) -> bool {
    const L: usize = 16;
    let mut acc = [0f32; L];
    let mut chunks = data.chunks_exact(L);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += v * 0.0;
        }
    }
    let tail = chunks.remainder().iter().fold(0f32, |a, &v| a + v * 0.0);
    acc.iter().fold(tail, |a, &v| a + v) == 0.0
}

/// The first element of `data` that is NaN or infinite, if any: the
/// vectorised [`all_finite`] pass first, the scalar search only when it fails.
///
/// ```
/// use convnet_tensor::first_non_finite;
/// assert_eq!(first_non_finite(&[1.0, 2.0]), None);
/// assert_eq!(first_non_finite(&[1.0, f32::INFINITY, f32::NAN]), Some(f32::INFINITY));
/// ```
pub fn first_non_finite(data: &[f32]) -> Option<f32> {
    if all_finite(data) {
        None
    } else {
        data.iter().copied().find(|v| !v.is_finite())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `all_finite` finds a NaN or an infinity at every position of the
    /// 16-lane chunks and the tail, and passes finite extremes (the largest
    /// float, subnormals, negative zero).
    #[test]
    fn all_finite_finds_every_bad_element() {
        for n in [0usize, 1, 15, 16, 17, 40] {
            let good: Vec<f32> = (0..n).map(|i| [f32::MAX, -f32::MAX, 1e-42, -0.0, 3.5][i % 5]).collect();
            assert!(all_finite(&good), "n = {n}");
            assert_eq!(first_non_finite(&good), None, "n = {n}");
            for i in 0..n {
                for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                    let mut d = good.clone();
                    d[i] = bad;
                    assert!(!all_finite(&d), "n = {n}, {bad} at {i}");
                    let found = first_non_finite(&d).unwrap();
                    assert!(found.is_nan() && bad.is_nan() || found == bad, "n = {n}, {bad} at {i}: {found}");
                }
            }
        }
    }
}
