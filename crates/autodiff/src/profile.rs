//! The tape's profiler: the time every kernel call of a recorded op takes,
//! summed per scope (a layer, as the caller numbers them with
//! [`Tape::set_scope`](crate::Tape::set_scope)), pass and algorithm.
//!
//! Off by default. When off, the tape's only cost is one branch on an
//! `Option` per kernel call (no clock is read); when on
//! ([`Tape::set_profiling`](crate::Tape::set_profiling)), each call reads the
//! monotonic clock twice and adds to one [`ProfileEntry`]. The entries are
//! kept in first-seen order, so after the first step a profiled step makes no
//! allocation either.
//!
//! What is timed is the kernel call and the loop around it that belongs to
//! the op (a relu mask, a bias gradient's column sums), not the tape's own
//! bookkeeping: the caller measures the whole step and calls the difference
//! the framework's overhead.

use std::time::{Duration, Instant};

/// The kind of work a timed call did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProfilePass {
    /// The op's forward computation (a conv or dense forward includes its
    /// fused bias and activation).
    Forward,
    /// The gradient with respect to the op's input (conv and dense
    /// backward-data, pooling's scatter, the loss's gradient).
    BackwardData,
    /// The gradient with respect to a weight (conv backward-filter, dense
    /// weight gradient).
    BackwardFilter,
    /// The gradient with respect to a bias (column sums).
    BackwardBias,
    /// An activation's backward rule (the relu mask of a fused relu, or a
    /// standalone activation).
    BackwardActivation,
}

impl ProfilePass {
    /// `forward`, `backward_data`, `backward_filter`, `backward_bias` or
    /// `backward_activation` (the names of the profile's JSON).
    pub fn name(self) -> &'static str {
        match self {
            ProfilePass::Forward => "forward",
            ProfilePass::BackwardData => "backward_data",
            ProfilePass::BackwardFilter => "backward_filter",
            ProfilePass::BackwardBias => "backward_bias",
            ProfilePass::BackwardActivation => "backward_activation",
        }
    }
}

/// One row of a [`Profile`]: every timed call of one scope, pass and kernel.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProfileEntry {
    /// The scope the op was recorded in ([`Tape::set_scope`](crate::Tape::set_scope)).
    pub scope: u32,
    /// What the calls computed.
    pub pass: ProfilePass,
    /// The kernel that ran: a conv algorithm as `Auto` resolved it
    /// (`direct`, `winograd_f4`, ...) or the op's name (`max_pool2d`, `dense`, ...).
    pub kernel: &'static str,
    /// Number of calls.
    pub calls: u64,
    /// Their total time.
    pub total: Duration,
    /// Their floating-point operations (direct-convolution count for a conv,
    /// whatever algorithm ran; 0 where not counted).
    pub flops: u64,
}

/// The accumulated timings of a profiled tape (see the module doc).
#[derive(Clone, Debug, Default)]
pub struct Profile {
    entries: Vec<ProfileEntry>,
}

impl Profile {
    /// The entries, in the order first seen.
    pub fn entries(&self) -> &[ProfileEntry] {
        &self.entries
    }

    /// The total time of every entry.
    pub fn total(&self) -> Duration {
        self.entries.iter().map(|e| e.total).sum()
    }

    /// Forgets every timing (keeps the entries' storage).
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Adds every entry of `other` into this profile.
    pub fn merge(&mut self, other: &Profile) {
        for e in &other.entries {
            match self.entries.iter_mut().find(|m| m.scope == e.scope && m.pass == e.pass && m.kernel == e.kernel) {
                Some(m) => {
                    m.calls += e.calls;
                    m.total += e.total;
                    m.flops = m.flops.saturating_add(e.flops);
                }
                None => self.entries.push(*e),
            }
        }
    }

    /// Adds one call.
    pub fn record(&mut self, scope: u32, pass: ProfilePass, kernel: &'static str, flops: u64, took: Duration) {
        let found = self.entries.iter_mut().find(|e| e.scope == scope && e.pass == pass && e.kernel == kernel);
        match found {
            Some(e) => {
                e.calls += 1;
                e.total += took;
                e.flops = e.flops.saturating_add(flops);
            }
            None => self.entries.push(ProfileEntry { scope, pass, kernel, calls: 1, total: took, flops }),
        }
    }
}

/// The clock of one timed call: `None` (and no clock read) when profiling is off.
#[inline]
pub(crate) fn start(profile: &Option<Box<Profile>>) -> Option<Instant> {
    profile.as_ref().map(|_| Instant::now())
}

/// Ends a call started by [`start`].
#[inline]
pub(crate) fn stop(
    profile: &mut Option<Box<Profile>>,
    started: Option<Instant>,
    scope: u32,
    pass: ProfilePass,
    kernel: &'static str,
    flops: u64,
) {
    if let (Some(p), Some(t)) = (profile.as_mut(), started) {
        p.record(scope, pass, kernel, flops, t.elapsed());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_accumulate_per_scope_pass_and_kernel() {
        let mut p = Profile::default();
        let ms = Duration::from_millis;
        p.record(0, ProfilePass::Forward, "direct", 10, ms(1));
        p.record(0, ProfilePass::Forward, "direct", 10, ms(2));
        p.record(0, ProfilePass::BackwardFilter, "direct", 10, ms(4));
        p.record(1, ProfilePass::Forward, "direct", 5, ms(8));
        assert_eq!(p.entries().len(), 3);
        assert_eq!(p.entries()[0].calls, 2);
        assert_eq!(p.entries()[0].total, ms(3));
        assert_eq!(p.entries()[0].flops, 20);
        assert_eq!(p.total(), ms(15));
        let mut q = Profile::default();
        q.merge(&p);
        q.merge(&p);
        assert_eq!(q.entries().len(), 3);
        assert_eq!(q.entries()[0].calls, 4);
        assert_eq!(q.total(), ms(30));
        p.clear();
        assert!(p.entries().is_empty());
        assert!(start(&None).is_none());
    }
}
