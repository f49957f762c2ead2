//! Logging. Requests are logged by method, route template, status, latency,
//! session digest prefix and request id ([`crate::access_log`]); never with
//! headers, bodies or query strings, where credentials could be.
//!
//! Two formats on stderr: `text` for people (colours only when stderr is a
//! terminal and `NO_COLOR` is unset, so a redirected log is plain text) and
//! `json`, one object per line for log collectors.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, the
    /// event's fields flattened beside them (`message` among them), and
    /// `span` with the request span's fields (`request_id`, …) when the
    /// event happened inside a request.
    Json,
}

/// Installs the global subscriber (stderr, `filter` in tracing's syntax).
pub fn init(filter: &str, format: LogFormat) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(colours_wanted()).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init(),
    };
}

/// Colour codes only for a person at a terminal: not in a file, a pipe or
/// a journal, and never when `NO_COLOR` is set to anything non-empty
/// (<https://no-color.org>).
fn colours_wanted() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::stderr().is_terminal()
}
