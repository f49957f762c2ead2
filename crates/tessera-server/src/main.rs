use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use tessera::SystemClock;
use tessera_server::configuration::{Cli, Command};
use tessera_server::startup::Application;
use tessera_server::telemetry;

#[tokio::main]
async fn main() -> ExitCode {
    let Command::Serve(args) = Cli::parse().command;
    let settings = match args.resolve() {
        Ok(settings) => settings,
        Err(message) => {
            eprintln!("tessera: {message}");
            return ExitCode::from(2);
        }
    };
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
