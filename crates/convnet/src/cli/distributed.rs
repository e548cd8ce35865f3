//! `convnet train --distributed`: the run under `mpirun`, one process per
//! rank (the `mpi` feature; without it the flag is an error that says how to
//! build with it).
//!
//! Every rank parses the same command line, builds the same model and reads
//! the same data; a rank that fails before training (say its `--data` is
//! unreadable) reports that to every rank ([`agree`]), so all of them stop
//! with the same error instead of waiting for it. Rank 0 alone checks and
//! writes the outputs (`--save`, `--metrics-json`, `--plot`), prints the
//! summary and progress and evaluates the test set; after training every
//! rank's weights are compared by digest.

use super::CliResult;
use clap::Args;
#[cfg(feature = "mpi")]
use convnet::distributed::{agree, mpi::MpiGroup, Collective};
use convnet::Model;

/// The flags of a distributed run.
#[derive(Args, Debug, Clone)]
pub struct DistributedArgs {
    /// Train data-parallel over the processes mpirun started (`mpirun -np N convnet train
    /// --distributed ...`): every rank computes its share of each --batch-size (the global batch)
    /// and the gradients are summed in rank order, so all ranks keep identical weights. Needs a
    /// build with `--features mpi`.
    #[arg(long)]
    pub distributed: bool,
    /// With --distributed: end every rank with an error when a collective operation has not
    /// completed after SECS seconds (a rank died or hangs). It must exceed the slowest rank's
    /// data loading and one training step.
    #[arg(long, value_name = "SECS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub distributed_timeout: u64,
}

/// How `--distributed` without the feature is refused.
#[cfg(not(feature = "mpi"))]
const NOT_BUILT: &str = "--distributed needs convnet built with the `mpi` feature: `cargo build --release -p \
                             convnet --features mpi` (with an MPI library and libclang installed, e.g. `apt-get \
                             install openmpi-bin libopenmpi-dev libclang-dev`; see docs/DISTRIBUTED.md), then \
                             `mpirun -np N target/release/convnet train --distributed ...`";

/// The MPI side of a run: the group, and whether this rank reached training.
pub struct Session {
    #[cfg(feature = "mpi")]
    group: MpiGroup,
    ready: bool,
}

impl Session {
    /// `None` without `--distributed`; MPI initialised with it.
    pub fn start(a: &DistributedArgs) -> CliResult<Option<Session>> {
        if !a.distributed {
            return Ok(None);
        }
        #[cfg(feature = "mpi")]
        {
            let group = MpiGroup::init(std::time::Duration::from_secs(a.distributed_timeout))?;
            Ok(Some(Session { group, ready: false }))
        }
        #[cfg(not(feature = "mpi"))]
        {
            Err(super::UsageError(NOT_BUILT.into()).into())
        }
    }

    /// This rank (0 for the one that reports).
    pub fn rank(&self) -> usize {
        #[cfg(feature = "mpi")]
        {
            self.group.rank()
        }
        #[cfg(not(feature = "mpi"))]
        {
            0
        }
    }

    /// The number of ranks.
    pub fn size(&self) -> usize {
        #[cfg(feature = "mpi")]
        {
            self.group.size()
        }
        #[cfg(not(feature = "mpi"))]
        {
            1
        }
    }

    /// Before training: every rank says it is ready; `Err` on every rank
    /// when any rank failed to get here.
    pub fn ready(&mut self) -> CliResult<()> {
        self.ready = true;
        #[cfg(feature = "mpi")]
        {
            self.group.set_phase("the start of training");
            agree(&mut self.group, "preparing the run", Ok(()))?;
        }
        Ok(())
    }

    /// After this rank's run ended with `result`. A failure before
    /// [`Session::ready`] is told to the ranks waiting there, so they stop
    /// too. On an error every rank prints it **before** finalising MPI (a
    /// fence across the ranks) and exits: were it printed after, the first
    /// rank to exit non-zero would get the others killed by `mpirun` before
    /// they printed theirs.
    pub fn finish(self, result: CliResult<()>) -> CliResult<()> {
        let Err(e) = result else { return Ok(()) };
        #[cfg(feature = "mpi")]
        {
            let mut this = self;
            let e: Box<dyn std::error::Error + Send + Sync> = if this.ready {
                e
            } else {
                let usage = e.downcast_ref::<super::UsageError>().is_some();
                match agree::<()>(&mut this.group, "preparing the run", Err(e.to_string())) {
                    Err(agreed) if usage => super::UsageError(agreed.to_string()).into(),
                    Err(agreed) => agreed.into(),
                    Ok(()) => e,
                }
            };
            let code = if e.downcast_ref::<super::UsageError>().is_some() { 2 } else { 1 };
            eprintln!("{}", super::error_chain(&*e));
            drop(this); // MPI_Finalize
            std::process::exit(code)
        }
        #[cfg(not(feature = "mpi"))]
        {
            let _ = (self.ready, self);
            Err(e)
        }
    }

    /// The collective `fit` trains over.
    #[cfg(feature = "mpi")]
    pub fn group(&mut self) -> Option<&mut dyn Collective> {
        self.group.set_phase("training");
        Some(&mut self.group)
    }

    /// The collective `fit` trains over (none without the feature).
    #[cfg(not(feature = "mpi"))]
    pub fn group(&mut self) -> Option<&mut dyn convnet::distributed::Collective> {
        None
    }

    /// After training: `Err` on every rank when the ranks' weights differ
    /// (they are summed in rank order, so they never should).
    pub fn check_same_weights(&mut self, model: &Model) -> CliResult<u64> {
        let hash = super::weights_hash(model);
        #[cfg(feature = "mpi")]
        {
            self.group.set_phase("the end of training");
            let all = self.group.all_gather(&hash.to_le_bytes())?;
            let differ: Vec<String> = all
                .chunks_exact(8)
                .enumerate()
                .filter(|(_, c)| *c != hash.to_le_bytes())
                .map(|(r, _)| r.to_string())
                .collect();
            if !differ.is_empty() {
                return Err(format!(
                    "distributed: after training rank {}'s weights differ from rank {}'s (a bug: please report it)",
                    differ.join(", "),
                    self.rank()
                )
                .into());
            }
        }
        Ok(hash)
    }

    /// The gradient sums: median seconds, median seconds waiting for the
    /// slowest rank first (measured with three ranks or more), count, and
    /// bytes per step.
    pub fn sum_stats(&self) -> (f64, Option<f64>, usize, usize) {
        #[cfg(feature = "mpi")]
        {
            let s = self.group.stats();
            (s.median(), s.median_wait(), s.seconds.len(), s.bytes)
        }
        #[cfg(not(feature = "mpi"))]
        {
            (0.0, None, 0, 0)
        }
    }
}
