//! The last-level cache size, and the size above which a pass writes its
//! destination around the caches.
//!
//! A memory-bound pass over buffers bigger than the L3 gains twice from
//! non-temporal stores ([`super::Vf32::stream`]): no read for ownership
//! of each destination line (a third less traffic for a read-one,
//! write-one stream), and the destination does not evict the source from
//! the L3, so a source read again soon (a layer's input, read by its
//! forward and again by its backward-filter) is still there. Below that
//! size the destination is best left in the cache for whoever reads it
//! next. The crossover used here is glibc's for `memcpy`: three quarters
//! of the L3 (see `docs/ALGORITHMS.md`, "Non-temporal stores", for the
//! measurements on this project's machine).

use std::sync::OnceLock;

/// Used when the L3 size cannot be read: this project's machine, an AMD
/// EPYC with a 32 MiB L3.
const FALLBACK_L3_BYTES: usize = 32 << 20;

/// The L3 cache in bytes, from CPUID (leaf 4 on Intel, 0x8000_001D on
/// AMD, the same descriptor layout), or `None` where the CPU does not say.
#[cfg(target_arch = "x86_64")]
fn l3_bytes() -> Option<usize> {
    use core::arch::x86_64::{__cpuid, __cpuid_count};
    // CPUID is part of the x86-64 baseline.
    let max_basic = __cpuid(0).eax;
    let max_ext = __cpuid(0x8000_0000).eax;
    let leaves = [(4u32, max_basic >= 4), (0x8000_001D, max_ext >= 0x8000_001D)];
    for (leaf, present) in leaves {
        if !present {
            continue;
        }
        for sub in 0..16 {
            let r = __cpuid_count(leaf, sub);
            // EAX[4:0]: cache type, 0 = no more caches; EAX[7:5]: level.
            if r.eax & 0x1f == 0 {
                break;
            }
            if (r.eax >> 5) & 0x7 == 3 {
                let ways = ((r.ebx >> 22) & 0x3ff) as usize + 1;
                let partitions = ((r.ebx >> 12) & 0x3ff) as usize + 1;
                let line = (r.ebx & 0xfff) as usize + 1;
                let sets = r.ecx as usize + 1;
                return Some(ways * partitions * line * sets);
            }
        }
    }
    None
}

#[cfg(not(target_arch = "x86_64"))]
fn l3_bytes() -> Option<usize> {
    None
}

/// The L3 cache size in bytes (read once; [`FALLBACK_L3_BYTES`] when the
/// CPU does not report one).
pub(crate) fn l3_cache_bytes() -> usize {
    static L3: OnceLock<usize> = OnceLock::new();
    *L3.get_or_init(|| l3_bytes().filter(|&b| b > 0).unwrap_or(FALLBACK_L3_BYTES))
}

#[cfg(test)]
thread_local! {
    /// Tests lower the threshold on their own thread to run the streaming
    /// paths on small shapes (the decision is taken on the calling thread).
    static TEST_STREAM_MIN: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// A pass that moves at least this many bytes (everything it reads and
/// writes, each once) writes its destination with non-temporal stores:
/// three quarters of the L3.
pub(crate) fn stream_min_bytes() -> usize {
    #[cfg(test)]
    if let Some(b) = TEST_STREAM_MIN.with(|c| c.get()) {
        return b;
    }
    l3_cache_bytes() / 4 * 3
}

/// Runs `f` with [`stream_min_bytes`] at `bytes` on this thread (tests only).
#[cfg(test)]
pub(crate) fn with_stream_min<R>(bytes: usize, f: impl FnOnce() -> R) -> R {
    let old = TEST_STREAM_MIN.with(|c| c.replace(Some(bytes)));
    let r = f();
    TEST_STREAM_MIN.with(|c| c.set(old));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_l3_is_plausible_and_the_threshold_below_it() {
        let l3 = l3_cache_bytes();
        assert!((1 << 20..=1 << 30).contains(&l3), "L3 of {l3} bytes");
        assert!(stream_min_bytes() < l3 && stream_min_bytes() >= l3 / 2);
        assert_eq!(with_stream_min(5, stream_min_bytes), 5);
        assert_eq!(stream_min_bytes(), l3 / 4 * 3);
    }
}
