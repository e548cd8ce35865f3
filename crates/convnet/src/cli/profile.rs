//! `--profile` and `--profile-json FILE`, shared by `train` and `bench step`:
//! the flags, the output path check before the run, and the output after it.

use super::CliResult;
use clap::Args;
use convnet::profile::ProfileReport;
use std::path::PathBuf;

#[derive(Args, Debug, Default)]
pub struct ProfileArgs {
    /// After the run, print where the training steps' time went: per layer and pass (forward,
    /// backward-data, backward-filter, bias, activation), the optimizer update, data loading and
    /// the framework's overhead, with calls, total and mean time, share, kernel and GFLOP/s.
    #[arg(long)]
    pub profile: bool,
    /// Write that profile as JSON to FILE (profiles even without --profile).
    #[arg(long, value_name = "FILE")]
    pub profile_json: Option<PathBuf>,
}

impl ProfileArgs {
    /// True when the run must be profiled.
    pub fn enabled(&self) -> bool {
        self.profile || self.profile_json.is_some()
    }

    /// Checks the JSON path before the run (a run whose profile cannot be written does not start).
    pub fn check(&self) -> CliResult<()> {
        if let Some(p) = &self.profile_json {
            convnet::files::check_writable(p).map_err(|e| format!("--profile-json: {e}"))?;
        }
        Ok(())
    }

    /// Prints the table (with `--profile`) and writes the JSON (with `--profile-json`), atomically.
    /// `table` false leaves the table out (the caller printed the profile another way, as
    /// `bench step --json` does inside its JSON line).
    pub fn emit(&self, report: Option<&ProfileReport>, table: bool) -> CliResult<()> {
        let Some(report) = report.filter(|_| self.enabled()) else { return Ok(()) };
        if self.profile && table {
            print!("{report}");
        }
        if let Some(path) = &self.profile_json {
            let mut text = serde_json::to_string_pretty(&report.to_json())?;
            text.push('\n');
            convnet::weights::write_atomic(path, text.as_bytes()).map_err(|e| format!("--profile-json: {e}"))?;
        }
        Ok(())
    }
}
