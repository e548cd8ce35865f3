//! Axis classes of the gather engine: the output coordinates of one axis
//! grouped by the taps they see (see the `direct` module docs).

/// The taps of one axis, grouped into classes of output coordinates that
/// see the same taps at the same relative source offsets.
pub(super) struct Axis<'a> {
    /// Source coordinate that offsets are relative to, per output coordinate.
    pub(super) base: &'a [isize],
    /// Output coordinates grouped by class.
    pub(super) members: &'a [isize],
    /// `members[start[c] .. start[c+1]]` are class `c`'s coordinates.
    pub(super) start: &'a [isize],
    /// Tap count per class.
    pub(super) ntaps: &'a [isize],
    /// Per class, `k` slots: the tap index.
    pub(super) tap_k: &'a [isize],
    /// Per class, `k` slots: source offset relative to `base`.
    pub(super) tap_rel: &'a [isize],
    /// Window size along this axis.
    pub(super) k: usize,
    /// Number of classes.
    pub(super) classes: usize,
}

/// isize slots [`build_axis`] needs for `out` coordinates and window `k`.
pub(super) fn axis_len(out: usize, k: usize) -> usize {
    out * (5 + 2 * k) + 1
}

/// Groups the `out` output coordinates of one axis into classes; `tap(o, k)`
/// is the source coordinate of output `o` and tap `k`, if it is inside.
pub(super) fn build_axis(
    buf: &mut [isize],
    out: usize,
    k: usize,
    tap: impl Fn(usize, usize) -> Option<isize>,
) -> Axis<'_> {
    let (class_of, rest) = buf.split_at_mut(out);
    let (base, rest) = rest.split_at_mut(out);
    let (members, rest) = rest.split_at_mut(out);
    let (start, rest) = rest.split_at_mut(out + 1);
    let (ntaps, rest) = rest.split_at_mut(out);
    let (tap_k, tap_rel) = rest.split_at_mut(out * k);
    let tap_rel = &mut tap_rel[..out * k];
    let mut classes = 0usize;
    for o in 0..out {
        // This coordinate's taps, written into the next free class slot.
        let (mut m, mut b) = (0usize, 0isize);
        for kk in 0..k {
            if let Some(i) = tap(o, kk) {
                if m == 0 {
                    b = i;
                }
                tap_k[classes * k + m] = kk as isize;
                tap_rel[classes * k + m] = i - b;
                m += 1;
            }
        }
        base[o] = b;
        let same = |c: usize| {
            ntaps[c] == m as isize
                && tap_k[c * k..c * k + m] == tap_k[classes * k..classes * k + m]
                && tap_rel[c * k..c * k + m] == tap_rel[classes * k..classes * k + m]
        };
        class_of[o] = match (0..classes).find(|&c| same(c)) {
            Some(c) => c as isize,
            None => {
                ntaps[classes] = m as isize;
                classes += 1;
                (classes - 1) as isize
            }
        };
    }
    // Group the coordinates by class, in increasing order within a class
    // (one walk per class: there are few classes, at most `out`).
    start[0] = 0;
    let mut pos = 0usize;
    for c in 0..classes {
        for (o, &class) in class_of.iter().enumerate() {
            if class == c as isize {
                members[pos] = o as isize;
                pos += 1;
            }
        }
        start[c + 1] = pos as isize;
    }
    Axis { base, members, start, ntaps, tap_k, tap_rel, k, classes }
}
