//! `tessera`: see `tessera --help`.

use clap::Parser;
use std::process::ExitCode;
use tessera_server::cli::{Cli, run};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    // Request handlers run the embedded store's reads inline (microseconds, but now and then a
    // wait for a page or a lock): twice as many workers as cores keep one such wait from
    // holding up other requests (measured: +10-15% RADIUS logins/s on 2 cores). The
    // TOKIO_WORKER_THREADS variable overrides this.
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        builder.worker_threads((cores * 2).max(4));
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
