//! `convnet`: train, evaluate and run the chapter's MNIST convnet, and
//! benchmark the convolution kernels. See `convnet --help`.
//!
//! Exit codes: 0 success, 2 usage error (from clap, or options that
//! contradict each other, or a malformed `CONVNET_MAX_*` variable), 1 any
//! other error, with the message on stderr.

mod cli;

use clap::Parser;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set by the panic hook when `println!` found standard output closed (the
/// reader of `convnet ... | head` went away): not a bug, so the process ends
/// quietly with status 0, as `ripgrep` and the coreutils-like tools do.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Whether a panic message is std's report of a write to a closed stdout.
fn is_closed_stdout(msg: &str) -> bool {
    msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe")
}

fn main() -> ExitCode {
    let started = std::time::Instant::now();
    // A panic is a bug; report it in one line, without a backtrace, and exit 1.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        if is_closed_stdout(&msg) {
            STDOUT_CLOSED.store(true, Ordering::SeqCst);
            return;
        }
        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        eprintln!("error: internal error (a bug in convnet){at}: {msg}");
    }));
    let args = cli::Cli::parse();
    match std::panic::catch_unwind(move || cli::run(args, started)) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) if e.downcast_ref::<cli::UsageError>().is_some() => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Ok(Err(e)) => {
            eprintln!("{}", cli::error_chain(&*e));
            ExitCode::from(1)
        }
        Err(_) if STDOUT_CLOSED.load(Ordering::SeqCst) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(1),
    }
}
