//! The operator commands: `tessera users disable|enable ID`, `tessera
//! sessions list|end --user ID`. Each action is [`Operator`]'s, the one the
//! operator API (`/admin/…`) runs, reached one of two ways:
//!
//! - On the stores themselves, opened from the same options as `serve`
//!   ([`OperatorStores`]): with `--redis`, every node follows the
//!   invalidations and revocations this publishes, so they honour the
//!   change at once. Without Redis, sessions live in the data directory's
//!   SQLite file, which a running node caches in memory behind the
//!   directory's lock: then this refuses, naming `--admin-url`, rather than
//!   report an ending that node would not see; with no node running it
//!   works on the file (holding the lock meanwhile).
//! - Through a running node's operator API (`--admin-url` and the admin
//!   token), which acts on that node's own session layer.
//!
//! Exit codes: 0 done, 1 not done (unknown user or session, a store or the
//! node unreachable, a node holding the data directory), 2 usage.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tessera::SystemClock;

use crate::configuration::Settings;
use crate::operator::{Operator, OperatorError};
use crate::routes::admin::ADMIN_TOKEN_HEADER;
use crate::routes::responses::AdminSessionResponse;
use crate::startup::{OperatorOpenError, OperatorStores};
use crate::store_mark::SessionStoreKind;

/// What the operator asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `tessera users disable ID`
    Disable(i64),
    /// `tessera users enable ID`
    Enable(i64),
    /// `tessera sessions list --user ID [--json]`
    List {
        /// The user.
        user: i64,
        /// JSON instead of a table.
        json: bool,
    },
    /// `tessera sessions end --user ID [--session SID]`
    End {
        /// The user.
        user: i64,
        /// Only this session.
        session: Option<String>,
    },
}

/// What was done, to be printed.
#[derive(Debug)]
enum Done {
    Disabled { user: i64, ended: u64 },
    Enabled { user: i64 },
    Listed { user: i64, sessions: Vec<AdminSessionResponse>, json: bool },
    Ended { user: i64, ended: u64 },
    EndedOne { user: i64, session: String },
}

/// Why not, and the exit code that says so.
#[derive(Debug)]
struct Refusal {
    code: u8,
    message: String,
}

impl Refusal {
    fn failed(message: impl Into<String>) -> Self {
        Self { code: 1, message: message.into() }
    }

    fn usage(message: impl Into<String>) -> Self {
        Self { code: 2, message: message.into() }
    }
}

impl From<OperatorError> for Refusal {
    fn from(e: OperatorError) -> Self {
        Self::failed(e.to_string())
    }
}

/// Runs `action` on the stores `settings` name, or through the node at
/// `admin_url`; prints the outcome (stdout) or why not (stderr).
pub async fn run(action: Action, admin_url: Option<String>, settings: &Settings) -> ExitCode {
    let outcome = match admin_url {
        Some(url) => remote(&action, &url, settings.admin_token.as_deref()).await,
        None => local(&action, settings).await,
    };
    match outcome {
        Ok(done) => {
            print!("{}", render(&done));
            ExitCode::SUCCESS
        }
        Err(refusal) => {
            eprintln!("tessera: {}", refusal.message);
            ExitCode::from(refusal.code)
        }
    }
}

/// On the stores and database themselves.
async fn local(action: &Action, settings: &Settings) -> Result<Done, Refusal> {
    let stores = OperatorStores::open(settings, Arc::new(SystemClock)).await.map_err(|e| match e {
        OperatorOpenError::HeldByNode(dir) => Refusal::failed(format!(
            "a running tessera node keeps its sessions in {} (no --redis) and caches them in memory: a change \
             made from this process would not reach it, so nothing was done. Act through that node instead: \
             --admin-url http://HOST:PORT with its admin token (--admin-token or TESSERA_ADMIN_TOKEN); or stop \
             the node first",
            dir.join("tessera.db").display()
        )),
        OperatorOpenError::NoSessionsHere(dir) => Refusal::failed(format!(
            "no tessera node keeps its sessions in {}: nothing was done. Name the node's stores as the node \
             does (its --data-dir; or --redis URL if it keeps sessions in Redis), or act through a node with \
             --admin-url",
            dir.display()
        )),
        OperatorOpenError::OtherStore { dir, recorded: SessionStoreKind::Redis } => Refusal::failed(format!(
            "the node serving from {} keeps its sessions in Redis, and this command was given no --redis: it \
             would act on the directory's SQLite file, which holds none of them, so nothing was done. Pass the \
             node's --redis URL (or TESSERA_REDIS, or its --config), or act through a node with --admin-url",
            dir.display()
        )),
        OperatorOpenError::OtherStore { dir, recorded: SessionStoreKind::Embedded } => Refusal::failed(format!(
            "the node serving from {} keeps its sessions in that directory's SQLite file, not in Redis: nothing \
             was done. Leave out --redis to act on that file (with the node stopped), or act through the node \
             with --admin-url",
            dir.display()
        )),
        OperatorOpenError::Failed(e) => Refusal::failed(e.to_string()),
    })?;
    act(&stores.operator, action).await
}

async fn act(operator: &Operator, action: &Action) -> Result<Done, Refusal> {
    Ok(match action.clone() {
        Action::Disable(user) => Done::Disabled { user, ended: operator.disable(user).await? },
        Action::Enable(user) => {
            operator.enable(user).await?;
            Done::Enabled { user }
        }
        Action::List { user, json } => {
            let sessions = operator.sessions(user).await?.into_iter().map(AdminSessionResponse::from).collect();
            Done::Listed { user, sessions, json }
        }
        Action::End { user, session: None } => Done::Ended { user, ended: operator.end_sessions(user).await? },
        Action::End { user, session: Some(session) } => {
            operator.end_session(user, &session).await?;
            Done::EndedOne { user, session }
        }
    })
}

/// Through a node's operator API.
async fn remote(action: &Action, url: &str, token: Option<&str>) -> Result<Done, Refusal> {
    let token = token.ok_or_else(|| {
        Refusal::usage("--admin-url needs the node's admin token: --admin-token or TESSERA_ADMIN_TOKEN")
    })?;
    let mut endpoint = reqwest::Url::parse(url).map_err(|e| Refusal::usage(format!("--admin-url {url:?}: {e}")))?;
    if endpoint.cannot_be_a_base() || !matches!(endpoint.scheme(), "http" | "https") {
        return Err(Refusal::usage(format!("--admin-url {url:?}: not an http(s) URL")));
    }
    let (method, user, tail): (_, i64, Vec<&str>) = match action {
        Action::Disable(user) => (reqwest::Method::POST, *user, vec!["disable"]),
        Action::Enable(user) => (reqwest::Method::POST, *user, vec!["enable"]),
        Action::List { user, .. } => (reqwest::Method::GET, *user, vec!["sessions"]),
        Action::End { user, session: None } => (reqwest::Method::DELETE, *user, vec!["sessions"]),
        Action::End { user, session: Some(sid) } => (reqwest::Method::DELETE, *user, vec!["sessions", sid.as_str()]),
    };
    let id = user.to_string();
    endpoint
        .path_segments_mut()
        .map_err(|()| Refusal::usage(format!("--admin-url {url:?}: not an http(s) URL")))?
        .pop_if_empty()
        .extend(["admin", "users", &id])
        .extend(tail);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| Refusal::failed(format!("HTTP client: {e}")))?;
    let response = http
        .request(method, endpoint)
        .header(ADMIN_TOKEN_HEADER, token)
        .send()
        .await
        .map_err(|e| Refusal::failed(format!("cannot reach the node at {url}: {e}")))?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status.is_success() && body["status"] == "success" {
        let data = body["data"].clone();
        return Ok(match action.clone() {
            Action::Disable(user) => Done::Disabled { user, ended: data["revoked"].as_u64().unwrap_or(0) },
            Action::Enable(user) => Done::Enabled { user },
            Action::List { user, json } => {
                let sessions = serde_json::from_value(data).map_err(|e| {
                    Refusal::failed(format!("the node at {url} answered a listing this cannot read: {e}"))
                })?;
                Done::Listed { user, sessions, json }
            }
            Action::End { user, session: None } => Done::Ended { user, ended: data["revoked"].as_u64().unwrap_or(0) },
            Action::End { user, session: Some(session) } => Done::EndedOne { user, session },
        });
    }
    let code = body["data"]["errCode"].as_u64();
    Err(Refusal::failed(match code {
        Some(20001) => OperatorError::NoSuchUser(user).to_string(),
        Some(20008) => match action {
            Action::End { session: Some(session), .. } => {
                OperatorError::NoSuchSession { user, session: session.clone() }.to_string()
            }
            _ => format!("the node at {url} answered {status} (errCode 20008)"),
        },
        Some(10008) => format!("the node at {url} refused the admin token"),
        Some(10007) => format!("the node at {url} has no operator API (is it started with --admin-token?)"),
        Some(code) => {
            let reason = body["data"]["errMsg"].as_str().unwrap_or("");
            format!("the node at {url} answered {status}: {reason} (errCode {code})")
        }
        None if status == reqwest::StatusCode::NOT_FOUND => {
            format!("the node at {url} has no operator API (is it started with --admin-token?)")
        }
        None => format!("the node at {url} answered {status}, not a tessera envelope"),
    }))
}

fn render(done: &Done) -> String {
    match done {
        Done::Disabled { user, ended } => {
            format!("user {user} disabled: logins refused, {ended} session(s) ended on every node\n")
        }
        Done::Enabled { user } => format!("user {user} enabled: it may log in again\n"),
        Done::Ended { user, ended } => format!("{ended} session(s) of user {user} ended on every node\n"),
        Done::EndedOne { user, session } => format!("session {session} of user {user} ended on every node\n"),
        Done::Listed { sessions, json: true, .. } => {
            format!("{}\n", serde_json::to_string_pretty(sessions).expect("sessions serialize"))
        }
        Done::Listed { user, sessions, json: false } if sessions.is_empty() => {
            format!("user {user} has no live sessions\n")
        }
        Done::Listed { sessions, json: false, .. } => table(sessions),
    }
}

/// The listing for people: one line per session, times in UTC.
fn table(sessions: &[AdminSessionResponse]) -> String {
    let rows: Vec<[String; 5]> = sessions
        .iter()
        .map(|s| {
            [
                s.id.clone(),
                utc(s.created_at),
                utc(s.last_seen),
                s.ip.map(|ip| ip.to_string()).unwrap_or_else(|| "-".into()),
                s.user_agent.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let header = ["SESSION", "CREATED (UTC)", "LAST SEEN (UTC)", "IP", "USER AGENT"].map(String::from);
    let mut widths = [0; 5];
    for row in std::iter::once(&header).chain(&rows) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row.iter().zip(widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM:SS` (UTC).
fn utc(ms: i64) -> String {
    crate::events::utc_format(ms, time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_calendar_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(utc(1_795_000_000_123), "2026-11-18 11:06:40");
    }

    #[test]
    fn the_table_lines_up_and_holds_no_token() {
        let sessions = vec![AdminSessionResponse {
            created_at: 0,
            id: "abc".into(),
            ip: Some("127.0.0.1".parse().unwrap()),
            last_seen: 1000,
            user_agent: None,
        }];
        let text = table(&sessions);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("SESSION  CREATED (UTC)"), "{text}");
        assert!(lines[1].starts_with("abc      1970-01-01 00:00:00  1970-01-01 00:00:01  127.0.0.1  -"), "{text}");
    }
}
