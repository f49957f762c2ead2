use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use tessera::{Clock, SystemClock};
use tessera_server::configuration::{Cli, Command, KeysCommand, Settings};
use tessera_server::signing_keys::KeyFile;
use tessera_server::startup::Application;
use tessera_server::telemetry;

#[tokio::main]
async fn main() -> ExitCode {
    // Both commands take the serve options, so they are resolved once.
    let (args, rotate) = match Cli::parse().command {
        Command::Serve(args) => (args, false),
        Command::Keys(KeysCommand::Rotate(args)) => (args, true),
    };
    let settings = match args.resolve() {
        Ok(settings) => settings,
        Err(message) => {
            eprintln!("tessera: {message}");
            return ExitCode::from(2);
        }
    };
    if rotate {
        return rotate_keys(&settings);
    }
    telemetry::init(&settings.log, settings.log_format);
    let app = match Application::build(&settings, Arc::new(SystemClock)).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("tessera: {e}");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = match shutdown_signal() {
        Ok(shutdown) => shutdown,
        Err(e) => {
            eprintln!("tessera: cannot listen for signals: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Scripts and tests read this line to find the port.
    if let Some(addr) = app.metrics_addr() {
        println!("tessera metrics on http://{addr}/metrics");
    }
    println!("tessera listening on http://{}", app.local_addr());
    match app.run_until(shutdown).await {
        Ok(()) => {
            tracing::info!("shut down cleanly");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tessera: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `tessera keys rotate`: the same settings as `serve` name the key file.
fn rotate_keys(settings: &Settings) -> ExitCode {
    // The same key file as `serve` with these options would use, whatever
    // --tokens says: an operator rotating a shared file names it, not a mode.
    let config = settings.tokens.clone().unwrap_or_default();
    let file = KeyFile::new(settings.keys_file.clone());
    let retired_for = config.settings.revocation_lifetime();
    match file.rotate(settings.key_algorithm, SystemClock.now(), retired_for) {
        Ok(set) => {
            let current = set.current().map(|k| k.kid.as_str()).unwrap_or("?");
            println!("rotated {}: signing key is now {current}", file.path().display());
            println!(
                "the previous key verifies for another {}s; servers pick the change up within a second",
                retired_for.as_secs()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tessera: {e}");
            ExitCode::FAILURE
        }
    }
}

/// SIGINT (Ctrl-C) or SIGTERM, listened for from the moment this is made:
/// a handler registered only when the future is first polled would leave
/// a window after "listening" in which SIGTERM kills the process.
#[cfg(unix)]
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {},
            _ = terminate.recv() => {},
        }
        tracing::info!("shutdown requested");
    })
}

#[cfg(not(unix))]
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown requested");
    })
}
