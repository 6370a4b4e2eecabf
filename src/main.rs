//! Entry point: parse flags into a `Config`, set up logging, run the chosen mode.

use std::{process::ExitCode, time::Duration};

use aareguru_mcp::{
    config::{Cli, Mode},
    logging, stdio,
};
use clap::Parser;

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("aareguru-mcp: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let config = Cli::parse().into_config()?;
    logging::init(&config.log_level, config.log_format)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        match config.mode {
            Mode::Stdio => stdio::run(&config).await,
        }
    });
    // A read on a blocking stdin cannot be cancelled; do not wait for it on the way out.
    runtime.shutdown_timeout(Duration::from_millis(200));
    result.map(|()| ExitCode::SUCCESS)
}
