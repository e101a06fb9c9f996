//! The `tessera` binary as a library: configuration, the CLI, and the wiring of the engine with
//! its store and front doors (the composition root). End-to-end tests start the server
//! in-process through [`serve::start`].
//!
//! May depend on every Tessera crate; it is the only one that knows which implementations exist.

#[macro_use]
pub mod output;
pub mod app;
pub mod cli;
pub mod config;
pub mod migrate;
pub mod serve;

use config::{Config, LogFormat};
use tracing_subscriber::EnvFilter;

/// Logging for `serve`: level and format from the configuration (`TESSERA_LOG` overrides the
/// level with a filter directive).
pub fn init_logging(config: &Config) {
    let filter = std::env::var("TESSERA_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(&config.log_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour_on_stderr())
        .with_writer(std::io::stderr);
    let _ = match config.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Logging for management commands: warnings only, so output stays readable.
pub fn init_cli_logging() {
    let filter = std::env::var("TESSERA_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour_on_stderr())
        .with_writer(std::io::stderr)
        .try_init();
}

/// Colour codes only for a person at a terminal: a log written to a file, a pipe or the
/// journal gets none, nor does anyone who set NO_COLOR (<https://no-color.org>).
fn colour_on_stderr() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}
