//! A fork-join over task indices in which a calling thread from outside
//! the rayon pool takes part.
//!
//! `(0..n).into_par_iter()` called from a thread that is not a rayon
//! worker (a user's `main`) hands the whole loop to the pool and puts the
//! caller to sleep until it is done: two thread hand-offs, each a futex
//! wake-up that costs 10-20 µs on this machine, against 0.1 ms for a
//! whole depthwise layer of 14x14x512. [`par_tasks`] has the caller run
//! tasks itself, next to `current_num_threads() - 1` helpers on the pool,
//! as an OpenMP master thread does, and wait for the helpers by spinning
//! a moment before it blocks. Called from inside the pool, it is the plain
//! parallel iterator. Which thread runs which task changes from call to
//! call; the kernels that use it make every task's result independent of
//! that (disjoint outputs, per-task partials added in a fixed order).

use super::SendPtr;
use rayon::prelude::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long the caller spins for helpers still in their last task before
/// it blocks in rayon's wait: longer than a futex round trip, short next
/// to any call with enough tasks to be worth splitting.
const SPIN: Duration = Duration::from_micros(50);

/// Runs `f(t)` once for every `t < tasks`, on the current rayon pool and,
/// when called from outside it, on the calling thread too.
///
/// From inside the pool (the training step's shards) it allocates
/// nothing; from outside, rayon boxes each spawned helper job: one small
/// heap allocation per helper per call, against the 10-20 µs futex round
/// trip it saves.
pub(crate) fn par_tasks(tasks: usize, f: impl Fn(usize) + Sync) {
    let threads = rayon::current_num_threads();
    if tasks <= 1 || threads <= 1 && rayon::current_thread_index().is_none() {
        // One task, or a one-thread pool seen from outside: the caller
        // does it all, with no hand-off.
        (0..tasks).for_each(f);
        return;
    }
    if rayon::current_thread_index().is_some() {
        (0..tasks).into_par_iter().for_each(&f);
        return;
    }
    let next = AtomicUsize::new(0);
    let helpers = (threads - 1).min(tasks - 1);
    let running = AtomicUsize::new(helpers);
    let work = || loop {
        let t = next.fetch_add(1, Ordering::Relaxed);
        if t >= tasks {
            break;
        }
        f(t);
    };
    rayon::in_place_scope(|s| {
        for _ in 0..helpers {
            s.spawn(|_| {
                work();
                running.fetch_sub(1, Ordering::Release);
            });
        }
        work();
        let start = Instant::now();
        while running.load(Ordering::Acquire) > 0 && start.elapsed() < SPIN {
            std::hint::spin_loop();
        }
    });
}

/// [`par_tasks`] over the `len`-float chunks of `data` (the last may be
/// shorter): `f(j, chunk j)`, without allocating.
pub(crate) fn par_chunks_mut(data: &mut [f32], len: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    let (total, len) = (data.len(), len.max(1));
    let base = SendPtr(data.as_mut_ptr());
    par_tasks(total.div_ceil(len), |j| {
        let start = j * len;
        let end = (start + len).min(total);
        // SAFETY: `start .. end` lies inside `data`, which this call borrows
        // mutably throughout, and task j alone gets that range: the
        // ranges of different tasks are disjoint.
        let chunk = unsafe { std::slice::from_raw_parts_mut(base.get().add(start), end - start) };
        f(j, chunk);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn every_task_runs_once_from_inside_and_outside_the_pool() {
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            for tasks in [0, 1, 2, 5, 64] {
                let seen: Vec<AtomicU32> = (0..tasks).map(|_| AtomicU32::new(0)).collect();
                let count = |t: usize| {
                    seen[t].fetch_add(1, Ordering::Relaxed);
                };
                // From outside the pool (the test thread), the pool being current.
                pool.in_place_scope(|_| par_tasks(tasks, count));
                // From a worker.
                pool.install(|| par_tasks(tasks, count));
                assert!(seen.iter().all(|s| s.load(Ordering::Relaxed) == 2), "{threads} threads, {tasks} tasks");
            }
            let mut data = vec![0.0f32; 10];
            pool.in_place_scope(|_| par_chunks_mut(&mut data, 3, |j, c| c.iter_mut().for_each(|v| *v += j as f32)));
            pool.install(|| par_chunks_mut(&mut data, 3, |j, c| c.iter_mut().for_each(|v| *v += j as f32)));
            assert_eq!(data, [0.0, 0.0, 0.0, 2.0, 2.0, 2.0, 4.0, 4.0, 4.0, 6.0]);
        }
    }
}
