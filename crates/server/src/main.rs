//! `tessera`: see `tessera --help`.

use std::process::ExitCode;
use tessera_server::cli::run;

/// mimalloc instead of glibc's malloc: a login allocates and frees many small blocks on the
/// request threads and the SQLite writer thread (rows, statements' parameters, packets), where
/// glibc's arenas spent about a quarter of the request threads' time (RADIUS one-round logins at
/// c=16: 28,000 → 33,600 requests/s, medians of 3).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = tessera_server::cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    // Request handlers run the embedded store's reads inline (microseconds, but now and then a
    // wait for a page or a lock): twice as many workers as cores keep one such wait from
    // holding up other requests (measured on 2 cores, RADIUS one-round logins: +10-15 % at
    // c=16 with glibc's malloc, within noise at c=16 and +2-18 % at c=64 with mimalloc). The
    // TOKIO_WORKER_THREADS variable overrides this.
    let workers = match std::env::var("TOKIO_WORKER_THREADS") {
        Err(_) => {
            let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
            (cores * 2).max(4)
        }
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if (1..=1024).contains(&n) => n,
            _ => {
                eprintln!("error: TOKIO_WORKER_THREADS must be a number from 1 to 1024, not {v:?}");
                return ExitCode::FAILURE;
            }
        },
    };
    builder.worker_threads(workers);
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
