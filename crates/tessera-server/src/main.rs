/// mimalloc rather than the system allocator: see BENCHMARKS.md (allocation
/// was a fifth of the user-space instructions of a request).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use tessera::{Clock, SystemClock};
use tessera_server::cli::Action;
use tessera_server::configuration::{Cli, Command, KeysCommand, SessionsCommand, Settings, UsersCommand};
use tessera_server::signing_keys::KeyFile;
use tessera_server::startup::Application;
use tessera_server::telemetry;

#[tokio::main]
async fn main() -> ExitCode {
    // Every command takes the serve options, so they are resolved once.
    let (args, job) = match Cli::parse().command {
        Command::Serve(args) => (args, Job::Serve),
        Command::Keys(KeysCommand::Rotate(args)) => (args, Job::RotateKeys),
        Command::Users(UsersCommand::Disable(a)) => {
            (a.target.options, Job::Operate(Action::Disable(a.id), a.target.admin_url))
        }
        Command::Users(UsersCommand::Enable(a)) => {
            (a.target.options, Job::Operate(Action::Enable(a.id), a.target.admin_url))
        }
        Command::Sessions(SessionsCommand::List(a)) => {
            (a.target.options, Job::Operate(Action::List { user: a.user, json: a.json }, a.target.admin_url))
        }
        Command::Sessions(SessionsCommand::End(a)) => {
            (a.target.options, Job::Operate(Action::End { user: a.user, session: a.session }, a.target.admin_url))
        }
    };
    // An operator command logs warnings only, unless asked on its command
    // line (a shared --config file's level is the nodes').
    let operator_log = args.log.clone().unwrap_or_else(|| "warn".into());
    let settings = match args.resolve() {
        Ok(settings) => settings,
        Err(message) => {
            eprintln!("tessera: {message}");
            return ExitCode::from(2);
        }
    };
    match job {
        Job::Serve => serve(settings).await,
        Job::RotateKeys => rotate_keys(&settings),
        Job::Operate(action, admin_url) => {
            telemetry::init(&operator_log, settings.log_format);
            tessera_server::cli::run(action, admin_url, &settings).await
        }
    }
}

/// What the command line asked for.
enum Job {
    Serve,
    RotateKeys,
    /// An operator command, on the stores or through `--admin-url`.
    Operate(Action, Option<String>),
}

/// `tessera serve`.
async fn serve(settings: Settings) -> ExitCode {
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
