//! Entry point: parse flags into a `Config`, set up logging, run the chosen mode.

use std::{io::Write, process::ExitCode, time::Duration};

use aareguru_mcp::{
    cli::Cli,
    config::Mode,
    gateway, logging,
    signals::{Stop, cancel_on_signal},
    stdio,
};
use clap::Parser;
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            // Not eprintln!: it panics when stderr is gone.
            let _ = writeln!(std::io::stderr(), "aareguru-mcp: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    if cli.healthcheck {
        let addr = aareguru_mcp::healthcheck::target(&cli.gateway.host, cli.gateway.port)?;
        return Ok(
            match aareguru_mcp::healthcheck::probe(addr, Duration::from_secs(3)) {
                Ok(_) => ExitCode::SUCCESS,
                Err(why) => {
                    let _ = writeln!(std::io::stderr(), "aareguru-mcp: not ready: {why}");
                    ExitCode::FAILURE
                }
            },
        );
    }
    if let Some(out) = cli.extra_output()? {
        // Completions and the manual page are the output asked for; no protocol runs.
        #[allow(clippy::disallowed_methods)]
        std::io::stdout().write_all(&out)?;
        return Ok(ExitCode::SUCCESS);
    }
    let config = cli.into_config()?;
    let exporter = if config.otel {
        aareguru_mcp::telemetry::spans::turn_on();
        let exporter = aareguru_mcp::telemetry::Exporter::from_env()?;
        aareguru_mcp::telemetry::earlier::keep_tracer(exporter.tracer());
        Some(exporter)
    } else {
        None
    };
    logging::init(
        &config.log_level,
        config.log_format,
        exporter.as_ref().map(|e| e.tracer()),
    )?;
    let runtime = match &config.mode {
        // One client, mostly waiting on I/O: a single thread keeps each child small when the
        // gateway runs hundreds of them.
        Mode::Stdio | Mode::Connect(_) => tokio::runtime::Builder::new_current_thread(),
        Mode::Sse(gw) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            if let Some(n) = gw.worker_threads {
                b.worker_threads(n);
            }
            b
        }
    }
    .enable_all()
    .build()?;
    let result = runtime.block_on(async {
        match &config.mode {
            Mode::Stdio => stdio::run(&config).await,
            Mode::Connect(bridge) => {
                let shutdown = CancellationToken::new();
                tokio::spawn(cancel_on_signal(shutdown.clone()));
                aareguru_mcp::bridge::run((**bridge).clone(), shutdown).await
            }
            Mode::Sse(gw) => {
                let listener = gateway::bind(gw.bind)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", gw.bind))?;
                gateway::run((**gw).clone(), listener, Stop::on_signals()).await
            }
        }
    });
    // A read on a blocking stdin cannot be cancelled; do not wait for it on the way out.
    runtime.shutdown_timeout(Duration::from_millis(200));
    if let Some(e) = exporter {
        e.shutdown();
    }
    result.map(|()| ExitCode::SUCCESS)
}
