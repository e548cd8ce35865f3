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

use rayon::prelude::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long the caller spins for helpers still in their last task before
/// it blocks in rayon's wait: longer than a futex round trip, short next
/// to any call with enough tasks to be worth splitting.
const SPIN: Duration = Duration::from_micros(50);

/// Runs `f(t)` once for every `t < tasks`, on the current rayon pool and,
/// when called from outside it, on the calling thread too.
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
/// shorter): `f(j, chunk j)`. Each chunk sits behind its own uncontended
/// lock, which is what lets a task borrow it mutably without `unsafe`.
pub(crate) fn par_chunks_mut(data: &mut [f32], len: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    let chunks: Vec<std::sync::Mutex<&mut [f32]>> = data.chunks_mut(len.max(1)).map(std::sync::Mutex::new).collect();
    par_tasks(chunks.len(), |j| {
        // A task's chunk is locked by that task only: never contended, and
        // not poisoned unless this very task panicked before.
        let mut chunk = chunks[j].lock().unwrap_or_else(|e| e.into_inner());
        f(j, &mut chunk);
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
