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
    telemetry::init(&settings.log);
    let app = match Application::build(&settings, Arc::new(SystemClock)).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("tessera: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Scripts and tests read this line to find the port.
    println!("tessera listening on http://{}", app.local_addr());
    match app.run_until(shutdown_signal()).await {
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
    let config = settings.tokens.clone().unwrap_or_default();
    let file = KeyFile::new(config.keys_file(&settings.data_dir));
    let retired_for = config.settings.revocation_lifetime();
    match file.rotate(config.algorithm, SystemClock.now(), retired_for) {
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

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested");
}
