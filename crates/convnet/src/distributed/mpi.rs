//! [`MpiGroup`]: the [`Collective`] of the processes `mpirun` started (the
//! `mpi` feature; Open MPI or MPICH through the `mpi` crate).
//!
//! **The rank-order sum**, with two ranks, is one `MPI_Allgather` of the
//! whole buffers, each rank adding the two copies in rank order: one
//! synchronisation per step, and the same bytes a reduce-scatter plus
//! all-gather would move. With more ranks it is a reduce-scatter then an
//! all-gather, both on
//! MPI's own collectives, with the additions done here: the buffer is cut
//! into one contiguous chunk per rank; `MPI_Alltoallv` sends every rank's
//! copy of chunk `c` to rank `c`, which adds the copies in rank order
//! (`((x0 + x1) + x2) + ...`, bit for bit the same sum whatever the world's
//! layout); `MPI_Allgatherv` then gives every rank every summed chunk. Each
//! rank sends and receives `2 (W-1)/W` buffers per step, what a ring
//! allreduce moves, with no dependence on MPI's choice of reduction order
//! (which `MPI_Allreduce` leaves to the implementation).
//!
//! **Faults.** MPI's default error handler ends the job on a communication
//! error, and `mpirun` ends every rank when one exits with an error or dies.
//! Beyond that, a watchdog thread bounds every collective: when one has not
//! completed after the group's timeout (a rank hangs, or a remote node
//! vanished without its TCP connection closing), the rank prints which
//! collective of which step it was waiting on and exits with status 75;
//! `mpirun` then ends the others.

use super::Collective;
use crate::{Error, Result};
use mpi::datatype::{Partition, PartitionMut};
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::CommunicatorCollectives;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The exit status of a rank whose watchdog fired (EX_TEMPFAIL).
pub const WATCHDOG_EXIT: i32 = 75;

/// Time spent in the gradient sums, per step.
///
/// With three ranks or more, each sum first waits at a barrier for the
/// slowest rank to finish its share of the step (`wait_seconds`: load
/// imbalance, not communication), then moves and adds the buffers
/// (`seconds`: the cost of the sum itself, what a faster network shrinks).
/// With two ranks the sum is one all-gather and the barrier is left out
/// (it would be a second synchronisation per step): `seconds` then includes
/// the wait and `wait_seconds` stays empty.
#[derive(Clone, Debug, Default)]
pub struct SumStats {
    /// Seconds of every [`Collective::sum_in_rank_order`] call after the
    /// barrier: reduce-scatter, additions, all-gather.
    pub seconds: Vec<f64>,
    /// Seconds every call waited at the barrier before it (three ranks or more).
    pub wait_seconds: Vec<f64>,
    /// Bytes of the buffer summed by the last call (per rank, before the sum).
    pub bytes: usize,
}

impl SumStats {
    /// The median of [`Self::seconds`] (0 when there were none).
    pub fn median(&self) -> f64 {
        median(&self.seconds)
    }

    /// The median of [`Self::wait_seconds`], `None` when not measured.
    pub fn median_wait(&self) -> Option<f64> {
        (!self.wait_seconds.is_empty()).then(|| median(&self.wait_seconds))
    }
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        0.0
    } else {
        s[s.len() / 2]
    }
}

/// The processes of `MPI_COMM_WORLD` as a [`Collective`]. Create one per
/// process ([`MpiGroup::init`]); MPI is finalised when it is dropped.
pub struct MpiGroup {
    world: SimpleCommunicator,
    rank: usize,
    size: usize,
    watchdog: Watchdog,
    stats: SumStats,
    /// Received copies of this rank's chunk (reused).
    scratch: Vec<f32>,
    // Declared last: MPI is finalised after everything above is dropped.
    _universe: mpi::environment::Universe,
}

impl MpiGroup {
    /// Initialises MPI (once per process) with a watchdog that ends the
    /// process when a collective has not completed after `timeout`. Run
    /// under `mpirun`; without it, Open MPI starts a group of one.
    pub fn init(timeout: Duration) -> Result<MpiGroup> {
        let (universe, _) = mpi::initialize_with_threading(mpi::Threading::Funneled)
            .ok_or_else(|| Error::Distributed("MPI is already initialised in this process".into()))?;
        let world = universe.world();
        let rank = usize::try_from(world.rank()).map_err(|_| Error::Distributed("negative MPI rank".into()))?;
        let size = usize::try_from(world.size()).map_err(|_| Error::Distributed("negative MPI size".into()))?;
        let watchdog = Watchdog::start(rank, size, timeout);
        Ok(MpiGroup {
            world,
            rank,
            size,
            watchdog,
            stats: SumStats::default(),
            scratch: Vec::new(),
            _universe: universe,
        })
    }

    /// Time spent in the gradient sums so far.
    pub fn stats(&self) -> &SumStats {
        &self.stats
    }

    /// Names the step the watchdog reports if a collective hangs.
    pub fn set_phase(&self, phase: &str) {
        self.watchdog.set_phase(phase);
    }

    /// Ends every rank of the job at once (`MPI_Abort`), after a fault this
    /// rank cannot report through a collective.
    pub fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }

    /// This rank's chunk bounds for a buffer of `len`: `[c*len/W, (c+1)*len/W)`.
    fn chunk(&self, c: usize, len: usize) -> (usize, usize) {
        let at = |k: usize| ((k as u128 * len as u128) / self.size as u128) as usize;
        (at(c), at(c + 1))
    }
}

/// MPI counts and displacements are `i32`.
fn count(n: usize, what: &str) -> Result<i32> {
    i32::try_from(n).map_err(|_| Error::Distributed(format!("{what}: {n} elements exceed MPI's 32-bit counts")))
}

impl Collective for MpiGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn sum_in_rank_order(&mut self, buf: &mut [f32]) -> Result<()> {
        let w = self.size;
        let len = buf.len();
        self.stats.bytes = std::mem::size_of_val(buf);
        if w == 1 {
            self.stats.seconds.push(0.0);
            return Ok(());
        }
        if w == 2 {
            let started = Instant::now();
            count(len.saturating_mul(2), "the gradient all-gather")?;
            self.scratch.resize(2 * len, 0.0);
            {
                let _guard = self.watchdog.arm("the gradient sum (all-gather)");
                self.world.all_gather_into(&buf[..], &mut self.scratch[..]);
            }
            let (first, second) = self.scratch.split_at(len);
            for ((b, x0), x1) in buf.iter_mut().zip(first).zip(second) {
                *b = x0 + x1;
            }
            self.stats.seconds.push(started.elapsed().as_secs_f64());
            return Ok(());
        }
        let waited = Instant::now();
        {
            let _guard = self.watchdog.arm("the barrier before a gradient sum");
            self.world.barrier();
        }
        self.stats.wait_seconds.push(waited.elapsed().as_secs_f64());
        let started = Instant::now();
        count(len, "the gradient buffer")?;
        let (lo, hi) = self.chunk(self.rank, len);
        let mine = hi - lo;
        // Phase 1 (reduce-scatter): every rank's chunk c goes to rank c.
        let send_counts: Vec<i32> = (0..w).map(|c| self.chunk(c, len)).map(|(a, b)| (b - a) as i32).collect();
        let send_displs: Vec<i32> = (0..w).map(|c| self.chunk(c, len).0 as i32).collect();
        let recv_len =
            mine.checked_mul(w).ok_or_else(|| Error::Distributed("the receive buffer size overflows".into()))?;
        let recv_counts = vec![count(mine, "a chunk")?; w];
        let recv_displs: Vec<i32> = (0..w).map(|r| (r * mine) as i32).collect();
        self.scratch.resize(recv_len, 0.0);
        {
            let _guard = self.watchdog.arm("the gradient sum (reduce-scatter)");
            let send = Partition::new(&buf[..], &send_counts[..], &send_displs[..]);
            let mut recv = PartitionMut::new(&mut self.scratch[..], &recv_counts[..], &recv_displs[..]);
            self.world.all_to_all_varcount_into(&send, &mut recv);
        }
        // The additions, in rank order.
        let (first, rest) = self.scratch.split_at(mine);
        let sum: Vec<f32> = (0..mine).map(|i| rest.chunks_exact(mine).fold(first[i], |s, r| s + r[i])).collect();
        // Phase 2 (all-gather): every summed chunk to every rank.
        {
            let _guard = self.watchdog.arm("the gradient sum (all-gather)");
            let mut recv = PartitionMut::new(buf, &send_counts[..], &send_displs[..]);
            self.world.all_gather_varcount_into(&sum[..], &mut recv);
        }
        self.stats.seconds.push(started.elapsed().as_secs_f64());
        Ok(())
    }

    fn all_gather(&mut self, local: &[u8]) -> Result<Vec<u8>> {
        count(local.len().saturating_mul(self.size), "an all-gather")?;
        let mut out = vec![0u8; local.len() * self.size];
        let _guard = self.watchdog.arm("an all-gather (start-up check, status or validation)");
        self.world.all_gather_into(local, &mut out[..]);
        Ok(out)
    }
}

/// Ends the process when a collective takes longer than the timeout.
struct Watchdog {
    state: Arc<WatchState>,
}

struct WatchState {
    /// Milliseconds since `origin` when the pending collective started, plus
    /// one (0: none pending).
    armed_at: AtomicU64,
    what: Mutex<&'static str>,
    phase: Mutex<String>,
    origin: Instant,
}

struct Armed<'a>(&'a WatchState);

impl Drop for Armed<'_> {
    fn drop(&mut self) {
        self.0.armed_at.store(0, Ordering::SeqCst);
    }
}

impl Watchdog {
    fn start(rank: usize, size: usize, timeout: Duration) -> Watchdog {
        let state = Arc::new(WatchState {
            armed_at: AtomicU64::new(0),
            what: Mutex::new(""),
            phase: Mutex::new("start-up".into()),
            origin: Instant::now(),
        });
        let s = state.clone();
        let poll = (timeout / 20).clamp(Duration::from_millis(10), Duration::from_millis(500));
        std::thread::Builder::new()
            .name("convnet-mpi-watchdog".into())
            .spawn(move || loop {
                std::thread::sleep(poll);
                let armed = s.armed_at.load(Ordering::SeqCst);
                if armed == 0 {
                    continue;
                }
                let now = s.origin.elapsed().as_millis() as u64 + 1;
                if now.saturating_sub(armed) >= timeout.as_millis() as u64 {
                    let what = *s.what.lock().unwrap_or_else(|e| e.into_inner());
                    let phase = s.phase.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    eprintln!(
                        "convnet: error: distributed: rank {rank} of {size}: {what} at {phase} did not complete in \
                         {:.0} s: another rank died, hangs or cannot be reached; ending this rank (mpirun ends the \
                         others)",
                        timeout.as_secs_f64()
                    );
                    std::process::exit(WATCHDOG_EXIT);
                }
            })
            .expect("spawning the watchdog thread");
        Watchdog { state }
    }

    fn arm(&self, what: &'static str) -> Armed<'_> {
        *self.state.what.lock().unwrap_or_else(|e| e.into_inner()) = what;
        self.state.armed_at.store(self.state.origin.elapsed().as_millis() as u64 + 1, Ordering::SeqCst);
        Armed(&self.state)
    }

    fn set_phase(&self, phase: &str) {
        *self.state.phase.lock().unwrap_or_else(|e| e.into_inner()) = phase.to_string();
    }
}
