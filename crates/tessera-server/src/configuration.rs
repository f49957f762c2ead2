//! Command line, environment and TOML file, merged into [`Settings`].
//!
//! Precedence: a flag beats its `TESSERA_*` variable, which beats the key in
//! the `--config` file, which beats the built-in default.
//!
//! Each option is declared once, as a field of one section ([`ListenerArgs`],
//! [`StorageArgs`], [`SessionArgs`], [`OtpArgs`], [`ThrottleArgs`],
//! [`TokenArgs`], [`AdminArgs`], [`EventArgs`]): clap's attributes name its flag and variable, serde's its
//! TOML key, and a `DEFAULT_*` constant beside it is its default, shown by
//! `--help` (`shown_default = …`) and applied by [`ServeArgs::resolve`]. The
//! sections are flattened for clap and for serde alike, so flags and TOML
//! keys stay flat. Fields stay `Option`s until the file is merged under the
//! command line; only then are the defaults applied, in one function that
//! takes every section apart field by field, so an option without a use does
//! not compile.

// The fields' doc comments are clap's `--help` text, written for a
// terminal: `<data-dir>` and bare addresses read right there, not as HTML
// tags or links to rustdoc.
#![allow(rustdoc::invalid_html_tags, rustdoc::bare_urls)]

use std::fmt::Display;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};
use tessera::csrf::InvalidOrigin;
use tessera::policy::PolicyError;
use tessera::signed::SigningAlgorithm;
use tessera::store::redis::InvalidRedisUrl;
use tessera::{AllowedOrigin, CarrierMode, ExpiryPolicy, TokenSettings};

/// The tessera command line.
#[derive(Debug, Parser)]
#[command(
    name = "tessera",
    version,
    about = "Tessera: sessions for web backends, and the phone-OTP user service built on them"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the user service.
    Serve(ServeArgs),
    /// Manage the access-token signing keys (token mode).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Disable and enable accounts (operator; give it the nodes' options).
    #[command(subcommand)]
    Users(UsersCommand),
    /// List and end a user's sessions (operator; give it the nodes'
    /// options).
    #[command(subcommand)]
    Sessions(SessionsCommand),
}

/// `tessera users …`
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Refuse the account's logins (403, errCode 20010) and end all its
    /// sessions and token families on every node.
    Disable(UserArgs),
    /// Let the account log in again.
    Enable(UserArgs),
}

/// `tessera sessions …`
#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// The user's live sessions: the opaque ids of `GET /user/sessions`,
    /// never a token.
    List(ListSessionsArgs),
    /// End all the user's sessions on every node (or one, with --session).
    End(EndSessionsArgs),
}

/// `tessera users disable|enable ID`
#[derive(Debug, Args)]
pub struct UserArgs {
    /// The user's id.
    #[arg(value_name = "ID")]
    pub id: i64,
    /// Where the nodes are.
    #[command(flatten)]
    pub target: OperatorArgs,
}

/// `tessera sessions list --user ID`
#[derive(Debug, Args)]
pub struct ListSessionsArgs {
    /// The user's id.
    #[arg(long, value_name = "ID")]
    pub user: i64,
    /// Print a JSON array (the `data` of `GET /admin/users/{id}/sessions`)
    /// instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Where the nodes are.
    #[command(flatten)]
    pub target: OperatorArgs,
}

/// `tessera sessions end --user ID [--session SID]`
#[derive(Debug, Args)]
pub struct EndSessionsArgs {
    /// The user's id.
    #[arg(long, value_name = "ID")]
    pub user: i64,
    /// Only this session (an id `tessera sessions list` shows).
    // Ids are base64url: one in 64 begins with `-`, which clap would
    // otherwise take for a flag and refuse. (A flag taken for the id here
    // ends no session: it names none.)
    #[arg(long, value_name = "SID", allow_hyphen_values = true)]
    pub session: Option<String>,
    /// Where the nodes are.
    #[command(flatten)]
    pub target: OperatorArgs,
}

/// How an operator command reaches what the nodes use: the same options,
/// variables and `--config` as `serve` (the stores, the database, Redis),
/// or a running node's operator API.
#[derive(Debug, Args)]
pub struct OperatorArgs {
    /// Act through this node's operator API (`/admin/…`, with
    /// --admin-token / TESSERA_ADMIN_TOKEN) instead of on the stores: the
    /// way to reach a node that keeps its sessions in its own SQLite file
    /// (no --redis), which no other process can change under it.
    #[arg(long, env = "TESSERA_ADMIN_URL", value_name = "URL", help_heading = "Operator")]
    pub admin_url: Option<String>,
    /// The nodes' options.
    #[command(flatten)]
    pub options: ServeArgs,
}

/// `tessera keys …`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make the published next key the signing key and publish a new next
    /// key. Running servers pick the change up within a second; tokens
    /// signed by the previous key stay valid until they expire.
    Rotate(ServeArgs),
}

/// What logins hand out (see the README's "Signed tokens").
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TokensArg {
    /// Opaque session tokens, sessions in the store (the default).
    Opaque,
    /// Signed access tokens (JWT) with rotating refresh tokens.
    Signed,
}

/// The access-token signing algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlgorithmArg {
    /// Ed25519.
    Eddsa,
    /// ECDSA P-256.
    Es256,
    /// HMAC-SHA256 (keys are not published; other services must introspect).
    Hs256,
}

/// Where tokens travel (see the README's "Carriers").
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CarrierArg {
    /// Cookie only.
    Cookie,
    /// `Authorization: Bearer` / `X-Auth-Token` only.
    Header,
    /// Header if present, else cookie.
    Auto,
}

impl AlgorithmArg {
    /// The library's name for it.
    pub fn algorithm(self) -> SigningAlgorithm {
        match self {
            Self::Eddsa => SigningAlgorithm::EdDSA,
            Self::Es256 => SigningAlgorithm::ES256,
            Self::Hs256 => SigningAlgorithm::HS256,
        }
    }
}

/// How log lines are written (see the README's "Operating Tessera").
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormatArg {
    /// Lines for people; colours only when stderr is a terminal.
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormatArg {
    /// The telemetry module's name for it.
    pub fn format(self) -> crate::telemetry::LogFormat {
        match self {
            Self::Text => crate::telemetry::LogFormat::Text,
            Self::Json => crate::telemetry::LogFormat::Json,
        }
    }
}

/// How OTP codes are delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OtpSenderArg {
    /// Print to stdout (development only).
    Console,
    /// POST to `--otp-webhook`.
    Webhook,
}

/// Why the options do not make a server. Each message names the flag (its
/// variable and TOML key are named after it).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The `--config` file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The `--config` file is not TOML.
    #[error("{}: {source}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Why, with the position.
        source: Box<toml::de::Error>,
    },
    /// A key of the `--config` file is unknown or its value of the wrong type.
    #[error("{}: {key}: {reason}", path.display())]
    BadKey {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
    /// An option's value does not parse; the value is repeated.
    #[error("{flag} {value:?}: {reason}")]
    Unparsable {
        /// The flag, e.g. `--otp-webhook`.
        flag: &'static str,
        /// The value given.
        value: String,
        /// Why it does not parse.
        reason: String,
    },
    /// `--redis` does not parse (the URL, which may hold a password, is
    /// not repeated).
    #[error("--redis: {0}")]
    Redis(#[source] InvalidRedisUrl),
    /// An `--allowed-origin` is not an origin.
    #[error("--allowed-origin: {0}")]
    Origin(#[source] InvalidOrigin),
    /// `--idle-timeout` and `--absolute-timeout` do not make a policy.
    #[error("session timeouts (--idle-timeout, --absolute-timeout): {0}")]
    SessionTimeouts(#[source] PolicyError),
    /// An option breaks a rule, e.g. `--max-connections` `must be at least 1`.
    #[error("{flag} {rule}")]
    Rule {
        /// The flag (with a value, if the rule is about one).
        flag: &'static str,
        /// The rule, as the rest of the sentence.
        rule: &'static str,
    },
}

/// `tessera serve` options; also the shape of the TOML file (flat,
/// kebab-case keys: the sections are flattened on both sides).
#[derive(Debug, Clone, Default, Args, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServeArgs {
    /// A TOML file with any of the keys below (e.g. `bind = "0.0.0.0:8080"`).
    #[arg(long, env = "TESSERA_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Log filter in tracing's syntax.
    #[arg(long, env = "TESSERA_LOG", value_name = "FILTER", shown_default = DEFAULT_LOG)]
    pub log: Option<String>,

    /// Log format: text (colours only at a terminal) or json (one object per
    /// line).
    #[arg(long, env = "TESSERA_LOG_FORMAT", value_enum, shown_default = enum_name(DEFAULT_LOG_FORMAT))]
    pub log_format: Option<LogFormatArg>,

    /// Listener and HTTP limits.
    #[command(flatten)]
    #[serde(flatten)]
    pub listener: ListenerArgs,

    /// Data directory, databases, Redis and the server secret.
    #[command(flatten)]
    #[serde(flatten)]
    pub storage: StorageArgs,

    /// Carrier, cookies, CSRF origins and session lifetimes.
    #[command(flatten)]
    #[serde(flatten)]
    pub sessions: SessionArgs,

    /// OTP delivery.
    #[command(flatten)]
    #[serde(flatten)]
    pub otp: OtpArgs,

    /// Login and OTP throttles.
    #[command(flatten)]
    #[serde(flatten)]
    pub throttles: ThrottleArgs,

    /// Signed tokens and introspection.
    #[command(flatten)]
    #[serde(flatten)]
    pub tokens: TokenArgs,

    /// The operator API.
    #[command(flatten)]
    #[serde(flatten)]
    pub admin: AdminArgs,

    /// Browser front-ends.
    #[command(flatten)]
    #[serde(flatten)]
    pub pages: PagesArgs,

    /// Session events.
    #[command(flatten)]
    #[serde(flatten)]
    pub events: EventArgs,
}

/// The default of `--log`.
pub const DEFAULT_LOG: &str = "info";
/// The default of `--log-format`.
pub const DEFAULT_LOG_FORMAT: LogFormatArg = LogFormatArg::Text;

/// The default of `--bind`.
pub const DEFAULT_BIND: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8080));
/// The default of `--header-read-timeout-ms`.
pub const DEFAULT_HEADER_READ_TIMEOUT_MS: u64 = 10_000;
/// The default of `--keep-alive-timeout-ms`.
pub const DEFAULT_KEEP_ALIVE_TIMEOUT_MS: u64 = 60_000;
/// The default of `--max-connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// The default of `--shutdown-delay-ms`: none (stop accepting at once).
pub const DEFAULT_SHUTDOWN_DELAY_MS: u64 = 0;
/// The longest `--shutdown-delay-ms`.
pub const MAX_SHUTDOWN_DELAY_MS: u64 = 300_000;
/// The default of `--metrics-bind`: `/metrics` on the main listener.
pub const DEFAULT_METRICS_BIND: &str = "main";

/// Listener and HTTP limits.
#[derive(Debug, Clone, Default, Args, Deserialize, Serialize)]
#[command(next_help_heading = "Listener")]
#[serde(default, rename_all = "kebab-case")]
pub struct ListenerArgs {
    /// Address to listen on.
    #[arg(long, env = "TESSERA_BIND", value_name = "ADDR", shown_default = DEFAULT_BIND)]
    pub bind: Option<SocketAddr>,

    /// A reverse proxy whose X-Forwarded-For is believed. Repeatable; the
    /// variable takes a comma-separated list. Without one, the client
    /// address is the socket peer.
    #[arg(long = "trusted-proxy", env = "TESSERA_TRUSTED_PROXIES", value_delimiter = ',', value_name = "IP")]
    #[serde(rename = "trusted-proxies")]
    pub trusted_proxies: Vec<IpAddr>,

    /// A client must send a request's line and headers within this many
    /// milliseconds.
    #[arg(long, env = "TESSERA_HEADER_READ_TIMEOUT_MS", value_name = "MS", shown_default = DEFAULT_HEADER_READ_TIMEOUT_MS)]
    pub header_read_timeout_ms: Option<u64>,

    /// A kept-alive connection that moves no bytes for this many
    /// milliseconds is closed.
    #[arg(long, env = "TESSERA_KEEP_ALIVE_TIMEOUT_MS", value_name = "MS", shown_default = DEFAULT_KEEP_ALIVE_TIMEOUT_MS)]
    pub keep_alive_timeout_ms: Option<u64>,

    /// Open client connections at most; lowered to fit the process's
    /// open-file limit. At the cap new connections wait in the listen
    /// backlog.
    #[arg(long, env = "TESSERA_MAX_CONNECTIONS", value_name = "N", shown_default = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: Option<usize>,

    /// On SIGTERM/SIGINT, answer /readyz with 503 and keep accepting for
    /// this many milliseconds before the listener closes and in-flight
    /// requests are drained, so load balancers stop sending first. Set it to
    /// the load balancer's probe interval times its failure threshold; at
    /// most 300000.
    #[arg(long, env = "TESSERA_SHUTDOWN_DELAY_MS", value_name = "MS", shown_default = DEFAULT_SHUTDOWN_DELAY_MS)]
    pub shutdown_delay_ms: Option<u64>,

    /// Where Prometheus scrapes `/metrics`: `main` (the main listener,
    /// beside the API), an address of its own such as 127.0.0.1:9100 (then
    /// not on the main listener, so it need not be public), or `off`.
    #[arg(long, env = "TESSERA_METRICS_BIND", value_name = "main|off|ADDR", shown_default = DEFAULT_METRICS_BIND)]
    pub metrics_bind: Option<String>,
}

/// Where `/metrics` is served (`--metrics-bind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsExposure {
    /// On the main listener.
    Main,
    /// On a listener of its own at this address, and not on the main one.
    Bind(SocketAddr),
    /// Nowhere.
    Off,
}

impl MetricsExposure {
    fn parse(text: &str) -> Result<Self, ConfigError> {
        match text {
            "main" => Ok(Self::Main),
            "off" => Ok(Self::Off),
            addr => addr.parse().map(Self::Bind).map_err(|e: std::net::AddrParseError| ConfigError::Unparsable {
                flag: "--metrics-bind",
                value: addr.to_owned(),
                reason: format!("main, off or an address such as 127.0.0.1:9100 ({e})"),
            }),
        }
    }
}

/// The default of `--data-dir`.
pub const DEFAULT_DATA_DIR: &str = "./data";
/// The default of `--redis-timeout-ms`.
pub const DEFAULT_REDIS_TIMEOUT_MS: u64 = 250;
/// The default of `--cache-lease-ms`.
pub const DEFAULT_CACHE_LEASE_MS: u64 = 250;
/// The default of `--near-cache`.
pub const DEFAULT_NEAR_CACHE: bool = true;

/// Data directory, databases, Redis and the server secret.
#[derive(Debug, Clone, Default, Args, Deserialize, Serialize)]
#[command(next_help_heading = "Storage")]
#[serde(default, rename_all = "kebab-case")]
pub struct StorageArgs {
    /// Directory for the SQLite database (users, sessions, OTP challenges)
    /// and the generated server secret.
    #[arg(long, env = "TESSERA_DATA_DIR", value_name = "DIR", shown_default = DEFAULT_DATA_DIR)]
    pub data_dir: Option<PathBuf>,

    /// The user database: postgres://user@host/db or mysql://user@host/db
    /// (also mariadb://; shared by every node) or sqlite:///path [default:
    /// the SQLite file in --data-dir].
    #[arg(long, env = "TESSERA_DATABASE", value_name = "URL")]
    pub database: Option<String>,

    /// A file holding the server secret (32 bytes raw, or 64 hex digits, or
    /// base64), so that several nodes agree. The secret may instead be given
    /// in the TESSERA_SECRET variable. Without either, <data-dir>/secret is
    /// generated.
    #[arg(long, env = "TESSERA_SECRET_FILE", value_name = "FILE")]
    pub secret_file: Option<PathBuf>,

    /// Redis for sessions, OTP challenges and rate limits, shared by every
    /// node: redis://host:port[/db], rediss://…,
    /// redis+sentinel://host:port[,host:port…]/master-name[/db] or
    /// redis+cluster://host:port[,host:port…]. Without it, everything
    /// lives in the SQLite file of --data-dir.
    #[arg(long, env = "TESSERA_REDIS", value_name = "URL")]
    pub redis: Option<String>,

    /// Deadline for each Redis command in milliseconds; past it the request
    /// gets 503.
    #[arg(long, env = "TESSERA_REDIS_TIMEOUT_MS", value_name = "MS", shown_default = DEFAULT_REDIS_TIMEOUT_MS)]
    pub redis_timeout_ms: Option<u64>,

    /// How long a node may answer from memory (near cache, revocation
    /// list) after it last proved its Redis subscription alive, in
    /// milliseconds; capped at --redis-timeout-ms. This is the worst case
    /// for a node cut off from Redis to stop honouring an ended session.
    #[arg(long, env = "TESSERA_CACHE_LEASE_MS", value_name = "MS", shown_default = DEFAULT_CACHE_LEASE_MS)]
    pub cache_lease_ms: Option<u64>,

    /// Keep recently used sessions in memory, invalidated through Redis
    /// pub/sub.
    #[arg(long, env = "TESSERA_NEAR_CACHE", value_name = "BOOL", shown_default = DEFAULT_NEAR_CACHE)]
    pub near_cache: Option<bool>,
}

/// The default of `--carrier`.
pub const DEFAULT_CARRIER: CarrierArg = CarrierArg::Auto;
/// The default of `--dev`.
pub const DEFAULT_DEV: bool = false;
/// The default of `--max-sessions-per-user`.
pub const DEFAULT_MAX_SESSIONS_PER_USER: usize = 10;

/// Carrier, cookies, CSRF origins and session lifetimes. The timeouts'
/// defaults are the library's ([`ExpiryPolicy::default`]).
#[derive(Debug, Clone, Default, Args, Deserialize, Serialize)]
#[command(next_help_heading = "Sessions")]
#[serde(default, rename_all = "kebab-case")]
pub struct SessionArgs {
    /// Token carrier: cookie, header or auto.
    #[arg(long, env = "TESSERA_CARRIER", value_enum, shown_default = enum_name(DEFAULT_CARRIER))]
    pub carrier: Option<CarrierArg>,

    /// Plain-HTTP development mode: cookies without Secure and without the
    /// __Host- prefix. Never in production.
    #[arg(long, env = "TESSERA_DEV", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub dev: Option<bool>,

    /// An origin trusted for CSRF and CORS, e.g. https://shop.example.
    /// Repeatable; the variable takes a comma-separated list.
    #[arg(long = "allowed-origin", env = "TESSERA_ALLOWED_ORIGINS", value_delimiter = ',', value_name = "ORIGIN")]
    #[serde(rename = "allowed-origins")]
    pub allowed_origins: Vec<String>,

    /// Session idle timeout in seconds.
    #[arg(long, env = "TESSERA_IDLE_TIMEOUT", value_name = "SECS", shown_default = ExpiryPolicy::default().idle().as_secs())]
    pub idle_timeout: Option<u64>,

    /// Session absolute timeout in seconds.
    #[arg(long, env = "TESSERA_ABSOLUTE_TIMEOUT", value_name = "SECS", shown_default = ExpiryPolicy::default().absolute().as_secs())]
    pub absolute_timeout: Option<u64>,

    /// The most sessions one user may hold; a login beyond it ends the
    /// user's oldest session. 0 means no cap.
    #[arg(long, env = "TESSERA_MAX_SESSIONS_PER_USER", value_name = "N", shown_default = DEFAULT_MAX_SESSIONS_PER_USER)]
    pub max_sessions_per_user: Option<usize>,
}

/// The default of `--otp-sender`.
pub const DEFAULT_OTP_SENDER: OtpSenderArg = OtpSenderArg::Console;

/// OTP delivery.
#[derive(Debug, Clone, Default, Args, Deserialize, Serialize)]
#[command(next_help_heading = "OTP")]
#[serde(default, rename_all = "kebab-case")]
pub struct OtpArgs {
    /// OTP delivery: console (development) or webhook.
    #[arg(long, env = "TESSERA_OTP_SENDER", value_enum, shown_default = enum_name(DEFAULT_OTP_SENDER))]
    pub otp_sender: Option<OtpSenderArg>,

    /// URL the webhook sender POSTs {"telephone","code","expires_in"} to.
    #[arg(long, env = "TESSERA_OTP_WEBHOOK", value_name = "URL")]
    pub otp_webhook: Option<String>,
}

/// The default of `--login-limit-per-phone`.
pub const DEFAULT_LOGIN_LIMIT_PER_PHONE: u32 = 10;
/// The default of `--login-ceiling-per-phone`.
pub const DEFAULT_LOGIN_CEILING_PER_PHONE: u32 = 100;
/// The default of `--login-limit-per-ip`.
pub const DEFAULT_LOGIN_LIMIT_PER_IP: u32 = 100;
/// The default of `--otp-limit-per-ip`.
pub const DEFAULT_OTP_LIMIT_PER_IP: u32 = 20;

/// Login and OTP throttles.
#[derive(Debug, Clone, Default, Args, Deserialize, Serialize)]
#[command(next_help_heading = "Throttles")]
#[serde(default, rename_all = "kebab-case")]
pub struct ThrottleArgs {
    /// Failed logins allowed per phone number from one client address per
    /// 15 minutes; successful logins do not count.
    #[arg(long, env = "TESSERA_LOGIN_LIMIT_PER_PHONE", value_name = "N", shown_default = DEFAULT_LOGIN_LIMIT_PER_PHONE)]
    pub login_limit_per_phone: Option<u32>,

    /// Failed logins allowed per phone number from all addresses together
    /// per 15 minutes (the ceiling against guessing from many addresses).
    #[arg(long, env = "TESSERA_LOGIN_CEILING_PER_PHONE", value_name = "N", shown_default = DEFAULT_LOGIN_CEILING_PER_PHONE)]
    pub login_ceiling_per_phone: Option<u32>,

    /// Failed logins allowed per client address per 15 minutes; raise it
    /// when many users share one address (NAT).
    #[arg(long, env = "TESSERA_LOGIN_LIMIT_PER_IP", value_name = "N", shown_default = DEFAULT_LOGIN_LIMIT_PER_IP)]
    pub login_limit_per_ip: Option<u32>,

    /// OTP sends allowed per client address per hour.
    #[arg(long, env = "TESSERA_OTP_LIMIT_PER_IP", value_name = "N", shown_default = DEFAULT_OTP_LIMIT_PER_IP)]
    pub otp_limit_per_ip: Option<u32>,
}

/// The default of `--tokens`.
pub const DEFAULT_TOKENS: TokensArg = TokensArg::Opaque;
/// The default of `--token-algorithm`.
pub const DEFAULT_TOKEN_ALGORITHM: AlgorithmArg = AlgorithmArg::Eddsa;
/// The default of `--keys-file`, in the data directory.
pub const DEFAULT_KEYS_FILE_NAME: &str = "signing-keys.json";
/// The default of `--key-rotation-interval`: 30 days.
pub const DEFAULT_KEY_ROTATION_INTERVAL: u64 = 30 * 24 * 3600;
/// The shortest admin token accepted.
pub const MIN_ADMIN_TOKEN_CHARS: usize = 32;

/// The operator API (`/admin/…`): off unless a token is configured.
#[derive(Debug, Clone, Default, Args, Deserialize, Serialize)]
#[command(next_help_heading = "Operator API")]
#[serde(default, rename_all = "kebab-case")]
pub struct AdminArgs {
    /// The token an operator presents in `X-Admin-Token` to disable and
    /// enable accounts and to list and end a user's sessions (`/admin/…`);
    /// at least 32 characters (e.g. `openssl rand -hex 32`). Without it the
    /// operator API is off.
    #[arg(long, env = "TESSERA_ADMIN_TOKEN", value_name = "TOKEN")]
    pub admin_token: Option<String>,
}

/// Pages served beside the API, and what pages written for the course expect.
#[derive(Debug, Clone, Default, Args, Deserialize, Serialize)]
#[command(next_help_heading = "Browser front-ends")]
#[serde(default, rename_all = "kebab-case")]
pub struct PagesArgs {
    /// A directory of pages (HTML, scripts, styles) served on the API's own
    /// origin, so their requests are same-origin; API paths win over file
    /// names. Without it only the API is served.
    #[arg(long, env = "TESSERA_STATIC_DIR", value_name = "DIR")]
    pub static_dir: Option<PathBuf>,

    /// Answer the user API's business failures (`/user/…`: validation,
    /// wrong password, not logged in, CSRF…) with HTTP 200 and the same
    /// envelope, as the course's controllers did, for pages that read
    /// `data.status` only; 413, 429, 500 and 503 keep their status.
    #[arg(long = "fail-as-200", env = "TESSERA_FAIL_AS_200", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL", shown_default = DEFAULT_FAIL_AS_200)]
    #[serde(rename = "fail-as-200")]
    pub fail_as_200: Option<bool>,
}

/// The default of `--fail-as-200`: real statuses.
pub const DEFAULT_FAIL_AS_200: bool = false;

/// The default of `--events-stream`: off (the stream costs Redis memory
/// whether or not anyone reads it).
pub const DEFAULT_EVENTS_STREAM: bool = false;
/// The default of `--events-stream-max-len`.
pub const DEFAULT_EVENTS_STREAM_MAX_LEN: u64 = 10_000;

/// Session events (see the README's "Operating Tessera"): off unless a
/// webhook or the stream is configured.
#[derive(Debug, Clone, Default, Args, Deserialize, Serialize)]
#[command(next_help_heading = "Events")]
#[serde(default, rename_all = "kebab-case")]
pub struct EventArgs {
    /// POST every session event (session.created, session.ended,
    /// refresh.reused, login.failed) as JSON to this http(s) URL, retried
    /// with backoff; a request never waits for it.
    #[arg(long, env = "TESSERA_EVENTS_WEBHOOK", value_name = "URL")]
    pub events_webhook: Option<String>,

    /// Also append every session event to the Redis stream tessera:events
    /// (needs --redis).
    #[arg(
        long,
        env = "TESSERA_EVENTS_STREAM",
        num_args = 0..=1,
        default_missing_value = "true",
        value_name = "BOOL",
        shown_default = DEFAULT_EVENTS_STREAM
    )]
    pub events_stream: Option<bool>,

    /// The stream is trimmed to about this many events (XADD MAXLEN ~).
    #[arg(long, env = "TESSERA_EVENTS_STREAM_MAX_LEN", value_name = "N", shown_default = DEFAULT_EVENTS_STREAM_MAX_LEN)]
    pub events_stream_max_len: Option<u64>,

    /// This node's name in events [default: the host name].
    #[arg(long, env = "TESSERA_NODE_NAME", value_name = "NAME")]
    pub node_name: Option<String>,
}

/// The default of `--introspection-rate-limit`: per client per minute.
pub const DEFAULT_INTROSPECTION_RATE_LIMIT: u32 = 6000;
/// The shortest introspection secret accepted.
pub const MIN_INTROSPECTION_SECRET_CHARS: usize = 16;

/// Signed tokens and introspection. The defaults of the access-token
/// lifetime, refresh grace, issuer and audience are the library's
/// ([`TokenSettings::default`]).
#[derive(Debug, Clone, Default, Args, Deserialize, Serialize)]
#[command(next_help_heading = "Tokens")]
#[serde(default, rename_all = "kebab-case")]
pub struct TokenArgs {
    /// What logins hand out: opaque session tokens, or signed access
    /// tokens with rotating refresh tokens.
    #[arg(
        id = "tokens",
        long = "tokens",
        env = "TESSERA_TOKENS",
        value_enum,
        value_name = "TOKENS",
        shown_default = enum_name(DEFAULT_TOKENS)
    )]
    #[serde(rename = "tokens")]
    pub mode: Option<TokensArg>,

    /// Access-token signing algorithm.
    #[arg(long, env = "TESSERA_TOKEN_ALGORITHM", value_enum, shown_default = enum_name(DEFAULT_TOKEN_ALGORITHM))]
    pub token_algorithm: Option<AlgorithmArg>,

    /// Access-token lifetime in seconds.
    #[arg(long, env = "TESSERA_ACCESS_TTL", value_name = "SECS", shown_default = TokenSettings::default().access_ttl.as_secs())]
    pub access_ttl: Option<u64>,

    /// Two refreshes with one token within this many seconds get the same
    /// new pair instead of a theft verdict.
    #[arg(long, env = "TESSERA_REFRESH_GRACE", value_name = "SECS", shown_default = TokenSettings::default().refresh_grace.as_secs())]
    pub refresh_grace: Option<u64>,

    /// The signing-key file, shared by every node (a shared volume or a
    /// mounted secret).
    #[arg(long, env = "TESSERA_KEYS_FILE", value_name = "FILE", shown_default = format!("<data-dir>/{DEFAULT_KEYS_FILE_NAME}"))]
    pub keys_file: Option<PathBuf>,

    /// Rotate the signing key automatically after this many seconds; 0
    /// turns automatic rotation off.
    #[arg(
        long,
        env = "TESSERA_KEY_ROTATION_INTERVAL",
        value_name = "SECS",
        shown_default = format!("{DEFAULT_KEY_ROTATION_INTERVAL}, {} days", DEFAULT_KEY_ROTATION_INTERVAL / (24 * 3600))
    )]
    pub key_rotation_interval: Option<u64>,

    /// The `iss` of access tokens.
    #[arg(long, env = "TESSERA_ISSUER", value_name = "ISS", shown_default = TokenSettings::default().issuer)]
    pub issuer: Option<String>,

    /// The `aud` of access tokens.
    #[arg(long, env = "TESSERA_AUDIENCE", value_name = "AUD", shown_default = TokenSettings::default().audience)]
    pub audience: Option<String>,

    /// A secret any service may present (HTTP Basic password with any
    /// client id, or `client_secret`) to call POST /oauth/introspect. At
    /// least 16 characters. Without it and without --introspection-client
    /// the endpoint is off.
    #[arg(long, env = "TESSERA_INTROSPECTION_SECRET", value_name = "SECRET", hide_env_values = true)]
    pub introspection_secret: Option<String>,

    /// A named client of POST /oauth/introspect, `ID:SECRET` (the secret
    /// at least 16 characters, without a comma). Repeatable; the variable
    /// takes a comma-separated list.
    #[arg(
        long = "introspection-client",
        env = "TESSERA_INTROSPECTION_CLIENTS",
        value_delimiter = ',',
        value_name = "ID:SECRET",
        hide_env_values = true
    )]
    #[serde(rename = "introspection-clients")]
    pub introspection_clients: Vec<String>,

    /// Introspection requests each client may make per minute (all holders
    /// of --introspection-secret count as one client); beyond, 429.
    #[arg(long, env = "TESSERA_INTROSPECTION_RATE_LIMIT", value_name = "N", shown_default = DEFAULT_INTROSPECTION_RATE_LIMIT)]
    pub introspection_rate_limit: Option<u32>,
}

/// Appends `[default: …]` to an argument's help, used as the clap
/// attribute `shown_default = DEFAULT_…`: `--help` shows the constant the
/// resolution applies. (Clap's own `default_value` would fill the field, so
/// a flag left out would hide the file's value.)
trait ShownDefault {
    fn shown_default(self, default: impl Display) -> Self;
}

impl ShownDefault for clap::Arg {
    fn shown_default(self, default: impl Display) -> Self {
        // The derive sets the doc comment's help before any attribute.
        let help = self.get_help().map(ToString::to_string).unwrap_or_default();
        self.help(format!("{help} [default: {default}]"))
    }
}

/// The name `--help` and the command line use for an enum value.
fn enum_name(value: impl ValueEnum) -> String {
    value.to_possible_value().map(|v| v.get_name().to_owned()).unwrap_or_default()
}

/// A named client of `POST /oauth/introspect` (`--introspection-client
/// ID:SECRET`). Its `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct IntrospectionClient {
    /// The client id (the HTTP Basic user name, or `client_id`).
    pub id: String,
    /// Its secret.
    pub secret: String,
}

impl std::fmt::Debug for IntrospectionClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntrospectionClient").field("id", &self.id).finish_non_exhaustive()
    }
}

impl IntrospectionClient {
    /// `ID:SECRET`, split at the first colon (a Basic user name cannot
    /// hold one); the value is not repeated in errors, it holds a secret.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let flag = "--introspection-client";
        let (id, secret) = text.split_once(':').ok_or(ConfigError::Rule { flag, rule: "must be ID:SECRET" })?;
        if id.trim().is_empty() || id.trim() != id {
            return Err(ConfigError::Rule { flag, rule: "needs a client id without surrounding spaces (ID:SECRET)" });
        }
        if secret.chars().count() < MIN_INTROSPECTION_SECRET_CHARS {
            return Err(ConfigError::Rule { flag, rule: "secrets must be at least 16 characters" });
        }
        Ok(Self { id: id.to_owned(), secret: secret.to_owned() })
    }
}

/// Where OTP codes go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OtpDelivery {
    /// Printed to stdout.
    Console,
    /// POSTed to this URL.
    Webhook(reqwest::Url),
}

/// Where the server secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// `<data-dir>/secret`, generated on first start.
    DataDir,
    /// A file given by configuration.
    File(PathBuf),
    /// The value of `TESSERA_SECRET`.
    Value(String),
}

/// Redis settings.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// Where Redis is.
    pub target: tessera::store::redis::RedisTarget,
    /// Per-command deadline.
    pub timeout: Duration,
    /// Whether to keep the near cache.
    pub near_cache: bool,
    /// How long memory is trusted after the subscription last proved alive.
    pub cache_lease: Duration,
}

/// The resolved configuration of one server.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Listen address.
    pub bind: SocketAddr,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Token carrier.
    pub carrier: CarrierMode,
    /// Insecure development cookies.
    pub dev: bool,
    /// OTP delivery.
    pub otp: OtpDelivery,
    /// Trusted origins.
    pub allowed_origins: Vec<AllowedOrigin>,
    /// Trusted reverse proxies.
    pub trusted_proxies: Vec<IpAddr>,
    /// Session timeouts.
    pub expiry: ExpiryPolicy,
    /// Log filter.
    pub log: String,
    /// Log format.
    pub log_format: crate::telemetry::LogFormat,
    /// How long `/readyz` answers 503 before the listener closes on shutdown.
    pub shutdown_delay: Duration,
    /// Where `/metrics` is served.
    pub metrics: MetricsExposure,
    /// Redis, if configured.
    pub redis: Option<RedisSettings>,
    /// The server secret's source.
    pub secret: SecretSource,
    /// The user database URL; `None`: the SQLite file in the data directory.
    pub database: Option<String>,
    /// Throttles.
    pub throttles: Throttles,
    /// Per-user session cap; `None`: none.
    pub max_sessions_per_user: Option<usize>,
    /// Token mode, if logins hand out signed tokens.
    pub tokens: Option<TokenConfig>,
    /// The signing-key file (token mode, and `tessera keys rotate`).
    pub keys_file: PathBuf,
    /// The algorithm `--token-algorithm` named, if it did.
    pub key_algorithm: Option<SigningAlgorithm>,
    /// Connection bounds of the HTTP front.
    pub http: crate::http_front::HttpLimits,
    /// The secret any client of `POST /oauth/introspect` may present;
    /// without it and without named clients the endpoint is off.
    pub introspection_secret: Option<String>,
    /// The named clients of `POST /oauth/introspect`.
    pub introspection_clients: Vec<IntrospectionClient>,
    /// Introspection requests per client per minute.
    pub introspection_rate_limit: u32,
    /// The operator API's token; `None`: the API is off.
    pub admin_token: Option<String>,
    /// Pages served beside the API.
    pub static_dir: Option<PathBuf>,
    /// Business failures of the user API answer 200.
    pub fail_as_200: bool,
    /// Where session events go.
    pub events: crate::events::EventsConfig,
}

/// Token-mode settings.
#[derive(Debug, Clone)]
pub struct TokenConfig {
    /// Issue and verification rules.
    pub settings: TokenSettings,
    /// The algorithm new keys get.
    pub algorithm: SigningAlgorithm,
    /// Automatic rotation interval; `None`: off.
    pub rotation_interval: Option<Duration>,
}

impl Default for TokenConfig {
    /// Ed25519, 10-minute access tokens, keys in the data directory,
    /// rotated every 30 days.
    fn default() -> Self {
        Self {
            settings: TokenSettings::default(),
            algorithm: DEFAULT_TOKEN_ALGORITHM.algorithm(),
            rotation_interval: Some(Duration::from_secs(DEFAULT_KEY_ROTATION_INTERVAL)),
        }
    }
}

/// How many attempts the service allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttles {
    /// Failed logins per phone and client address per 15 minutes.
    pub login_per_phone: u32,
    /// Failed logins per phone from every address per 15 minutes.
    pub login_ceiling_per_phone: u32,
    /// Failed logins per client address per 15 minutes.
    pub login_per_ip: u32,
    /// OTP sends per client address per hour.
    pub otp_per_ip: u32,
}

impl Default for Throttles {
    fn default() -> Self {
        Self {
            login_per_phone: DEFAULT_LOGIN_LIMIT_PER_PHONE,
            login_ceiling_per_phone: DEFAULT_LOGIN_CEILING_PER_PHONE,
            login_per_ip: DEFAULT_LOGIN_LIMIT_PER_IP,
            otp_per_ip: DEFAULT_OTP_LIMIT_PER_IP,
        }
    }
}

impl Settings {
    /// Defaults for a server on `data_dir` (tests start from here): what
    /// `tessera serve --data-dir <data_dir>` resolves to, without reading
    /// `TESSERA_SECRET`.
    pub fn for_data_dir(data_dir: PathBuf) -> Self {
        let args = ServeArgs {
            storage: StorageArgs { data_dir: Some(data_dir), ..StorageArgs::default() },
            ..ServeArgs::default()
        };
        args.settings(None).expect("the defaults make a server")
    }
}

impl ServeArgs {
    /// Merges the `--config` file under these arguments and checks the result.
    pub fn resolve(self) -> Result<Settings, ConfigError> {
        let file = match &self.config {
            Some(path) => Self::from_file(path)?,
            None => ServeArgs::default(),
        };
        self.merged_over(file).into_settings()
    }

    /// The options of a TOML file.
    fn from_file(path: &std::path::Path) -> Result<ServeArgs, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Unreadable { path: path.into(), source })?;
        let table: toml::Table =
            text.parse().map_err(|source| ConfigError::Malformed { path: path.into(), source: Box::new(source) })?;
        table.clone().try_into::<ServeArgs>().map_err(|whole| {
            // Through the flattened sections an error loses its position and
            // the key it is about: find the key by trying each alone.
            let (key, error) = table
                .into_iter()
                .find_map(|(key, value)| {
                    let alone = toml::Table::from_iter([(key.clone(), value)]);
                    alone.try_into::<ServeArgs>().err().map(|error| (key, error))
                })
                .unwrap_or_else(|| (String::from("(the file)"), whole));
            ConfigError::BadKey { path: path.into(), key, reason: error.message().to_owned() }
        })
    }

    /// These options over `file`'s: every option given here (a value, or a
    /// non-empty list) wins. Written once for all options: a new one needs
    /// no line here. The sections are flattened, so both sides serialize to
    /// one flat map of TOML keys.
    fn merged_over(self, file: ServeArgs) -> ServeArgs {
        let config = self.config.clone();
        let mut merged = serde_json::to_value(&file).expect("options serialize");
        let given = serde_json::to_value(&self).expect("options serialize");
        if let (serde_json::Value::Object(base), serde_json::Value::Object(over)) = (&mut merged, given) {
            for (key, value) in over {
                let absent = value.is_null() || value.as_array().is_some_and(Vec::is_empty);
                if !absent {
                    base.insert(key, value);
                }
            }
        }
        let mut args: ServeArgs = serde_json::from_value(merged).expect("a merge of valid options is valid");
        args.config = config;
        args
    }

    /// The settings, with the server secret from `TESSERA_SECRET` if set.
    fn into_settings(self) -> Result<Settings, ConfigError> {
        self.settings(std::env::var("TESSERA_SECRET").ok().filter(|s| !s.is_empty()))
    }

    /// The defaults applied and every option checked. Each section is taken
    /// apart field by field: an option declared and not used here does not
    /// compile.
    fn settings(self, secret_value: Option<String>) -> Result<Settings, ConfigError> {
        let ServeArgs {
            config: _,
            log,
            log_format,
            listener,
            storage,
            sessions,
            otp,
            throttles,
            tokens,
            admin,
            pages,
            events,
        } = self;
        let PagesArgs { static_dir, fail_as_200 } = pages;
        if let Some(dir) = static_dir.as_ref().filter(|dir| !dir.is_dir()) {
            let value = dir.display().to_string();
            return Err(ConfigError::Unparsable { flag: "--static-dir", value, reason: "not a directory".into() });
        }
        let AdminArgs { admin_token } = admin;
        if admin_token.as_ref().is_some_and(|t| t.chars().count() < MIN_ADMIN_TOKEN_CHARS) {
            return Err(ConfigError::Rule { flag: "--admin-token", rule: "must be at least 32 characters" });
        }
        let ListenerArgs {
            bind,
            trusted_proxies,
            header_read_timeout_ms,
            keep_alive_timeout_ms,
            max_connections,
            shutdown_delay_ms,
            metrics_bind,
        } = listener;
        let metrics = MetricsExposure::parse(metrics_bind.as_deref().unwrap_or(DEFAULT_METRICS_BIND))?;
        let shutdown_delay_ms = shutdown_delay_ms.unwrap_or(DEFAULT_SHUTDOWN_DELAY_MS);
        if shutdown_delay_ms > MAX_SHUTDOWN_DELAY_MS {
            return Err(ConfigError::Rule { flag: "--shutdown-delay-ms", rule: "must be at most 300000 (5 minutes)" });
        }
        let StorageArgs { data_dir, database, secret_file, redis, redis_timeout_ms, cache_lease_ms, near_cache } =
            storage;
        let SessionArgs { carrier, dev, allowed_origins, idle_timeout, absolute_timeout, max_sessions_per_user } =
            sessions;
        let OtpArgs { otp_sender, otp_webhook } = otp;

        let otp = match (otp_sender.unwrap_or(DEFAULT_OTP_SENDER), otp_webhook) {
            (OtpSenderArg::Console, _) => OtpDelivery::Console,
            (OtpSenderArg::Webhook, None) => {
                return Err(ConfigError::Rule { flag: "--otp-sender webhook", rule: "needs --otp-webhook URL" })
            }
            (OtpSenderArg::Webhook, Some(url)) => {
                let parsed = reqwest::Url::parse(&url).map_err(|e| ConfigError::Unparsable {
                    flag: "--otp-webhook",
                    value: url.clone(),
                    reason: e.to_string(),
                })?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(ConfigError::Rule { flag: "--otp-webhook", rule: "must be an http(s) URL" });
                }
                OtpDelivery::Webhook(parsed)
            }
        };
        let events = events_config(events, redis.is_some())?;
        let allowed_origins = allowed_origins
            .iter()
            .map(|o| AllowedOrigin::parse(o).map_err(ConfigError::Origin))
            .collect::<Result<Vec<_>, _>>()?;
        let default_expiry = ExpiryPolicy::default();
        let idle = idle_timeout.map(Duration::from_secs).unwrap_or(default_expiry.idle());
        let absolute = absolute_timeout.map(Duration::from_secs).unwrap_or(default_expiry.absolute());
        let expiry = ExpiryPolicy::new(idle, absolute).map_err(ConfigError::SessionTimeouts)?;
        let redis = match redis {
            None => None,
            Some(url) => {
                let timeout = Duration::from_millis(redis_timeout_ms.unwrap_or(DEFAULT_REDIS_TIMEOUT_MS).max(1));
                Some(RedisSettings {
                    target: tessera::store::redis::RedisTarget::parse(&url).map_err(ConfigError::Redis)?,
                    timeout,
                    near_cache: near_cache.unwrap_or(DEFAULT_NEAR_CACHE),
                    // A lease longer than a command's deadline would let
                    // memory answer for longer than Redis itself could.
                    cache_lease: Duration::from_millis(cache_lease_ms.unwrap_or(DEFAULT_CACHE_LEASE_MS).max(10))
                        .min(timeout),
                })
            }
        };
        let http = http_limits(header_read_timeout_ms, keep_alive_timeout_ms, max_connections)?;
        let secret = match (secret_value, secret_file) {
            (Some(value), _) => SecretSource::Value(value),
            (None, Some(path)) => SecretSource::File(path),
            (None, None) => SecretSource::DataDir,
        };
        if let Some(url) = &database {
            crate::users::Engine::of(url).ok_or_else(|| ConfigError::Unparsable {
                flag: "--database",
                value: url.clone(),
                reason: "must be postgres://…, mysql://… (or mariadb://…) or sqlite:…".into(),
            })?;
        }
        let ThrottleArgs { login_limit_per_phone, login_ceiling_per_phone, login_limit_per_ip, otp_limit_per_ip } =
            throttles;
        let throttles = Throttles {
            login_per_phone: login_limit_per_phone.unwrap_or(DEFAULT_LOGIN_LIMIT_PER_PHONE).max(1),
            login_ceiling_per_phone: login_ceiling_per_phone.unwrap_or(DEFAULT_LOGIN_CEILING_PER_PHONE).max(1),
            login_per_ip: login_limit_per_ip.unwrap_or(DEFAULT_LOGIN_LIMIT_PER_IP).max(1),
            otp_per_ip: otp_limit_per_ip.unwrap_or(DEFAULT_OTP_LIMIT_PER_IP).max(1),
        };
        let data_dir = data_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let keys_file = tokens.keys_file.clone().unwrap_or_else(|| data_dir.join(DEFAULT_KEYS_FILE_NAME));
        let key_algorithm = tokens.token_algorithm.map(AlgorithmArg::algorithm);
        let introspection_secret = tokens.introspection_secret.clone();
        let introspection_clients = introspection_clients(&tokens.introspection_clients)?;
        let introspection_rate_limit = tokens.introspection_rate_limit.unwrap_or(DEFAULT_INTROSPECTION_RATE_LIMIT);
        if introspection_rate_limit == 0 {
            return Err(ConfigError::Rule { flag: "--introspection-rate-limit", rule: "must be at least 1" });
        }
        let tokens = match tokens.mode.unwrap_or(DEFAULT_TOKENS) {
            TokensArg::Opaque => None,
            TokensArg::Signed => Some(token_config(tokens, &expiry)?),
        };
        if introspection_secret.as_ref().is_some_and(|s| s.chars().count() < MIN_INTROSPECTION_SECRET_CHARS) {
            return Err(ConfigError::Rule { flag: "--introspection-secret", rule: "must be at least 16 characters" });
        }
        Ok(Settings {
            static_dir,
            fail_as_200: fail_as_200.unwrap_or(DEFAULT_FAIL_AS_200),
            events,
            admin_token,
            tokens,
            introspection_secret,
            introspection_clients,
            introspection_rate_limit,
            max_sessions_per_user: match max_sessions_per_user.unwrap_or(DEFAULT_MAX_SESSIONS_PER_USER) {
                0 => None,
                n => Some(n),
            },
            throttles,
            database,
            redis,
            secret,
            bind: bind.unwrap_or(DEFAULT_BIND),
            data_dir,
            keys_file,
            key_algorithm,
            http,
            carrier: match carrier.unwrap_or(DEFAULT_CARRIER) {
                CarrierArg::Cookie => CarrierMode::Cookie,
                CarrierArg::Header => CarrierMode::Header,
                CarrierArg::Auto => CarrierMode::Auto,
            },
            dev: dev.unwrap_or(DEFAULT_DEV),
            otp,
            allowed_origins,
            trusted_proxies,
            expiry,
            log: log.unwrap_or_else(|| DEFAULT_LOG.into()),
            log_format: log_format.unwrap_or(DEFAULT_LOG_FORMAT).format(),
            shutdown_delay: Duration::from_millis(shutdown_delay_ms),
            metrics,
        })
    }
}

/// Where session events go, from their section; the stream needs Redis.
fn events_config(args: EventArgs, redis: bool) -> Result<crate::events::EventsConfig, ConfigError> {
    let EventArgs { events_webhook, events_stream, events_stream_max_len, node_name } = args;
    let webhook = match events_webhook {
        None => None,
        Some(url) => {
            let parsed = reqwest::Url::parse(&url).map_err(|e| ConfigError::Unparsable {
                flag: "--events-webhook",
                value: url.clone(),
                reason: e.to_string(),
            })?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(ConfigError::Rule { flag: "--events-webhook", rule: "must be an http(s) URL" });
            }
            Some(parsed)
        }
    };
    let stream = events_stream.unwrap_or(DEFAULT_EVENTS_STREAM);
    if stream && !redis {
        return Err(ConfigError::Rule { flag: "--events-stream", rule: "needs --redis URL" });
    }
    let max_len = events_stream_max_len.unwrap_or(DEFAULT_EVENTS_STREAM_MAX_LEN);
    if max_len == 0 {
        return Err(ConfigError::Rule { flag: "--events-stream-max-len", rule: "must be at least 1" });
    }
    let node = match node_name {
        Some(name) if name.trim().is_empty() => {
            return Err(ConfigError::Rule { flag: "--node-name", rule: "must not be empty" })
        }
        Some(name) => name.trim().to_owned(),
        None => crate::events::default_node_name(),
    };
    Ok(crate::events::EventsConfig { webhook, stream_max_len: stream.then_some(max_len), node })
}

/// Token mode's settings from its section (the key file, algorithm name and
/// introspection secret are resolved by the caller, for every mode).
fn token_config(args: TokenArgs, expiry: &ExpiryPolicy) -> Result<TokenConfig, ConfigError> {
    let TokenArgs {
        mode: _,
        token_algorithm,
        access_ttl,
        refresh_grace,
        keys_file: _,
        key_rotation_interval,
        issuer,
        audience,
        introspection_secret: _,
        introspection_clients: _,
        introspection_rate_limit: _,
    } = args;
    let defaults = TokenSettings::default();
    let access_ttl = access_ttl.map(Duration::from_secs).unwrap_or(defaults.access_ttl);
    if access_ttl.is_zero() || access_ttl > Duration::from_secs(24 * 3600) {
        return Err(ConfigError::Rule { flag: "--access-ttl", rule: "must be between 1 second and a day" });
    }
    // A family's idle deadline moves only when it refreshes, which a client
    // does about once per access-token lifetime.
    if access_ttl >= expiry.idle() {
        return Err(ConfigError::Rule {
            flag: "--access-ttl",
            rule: "must be shorter than --idle-timeout (refreshes keep a family alive)",
        });
    }
    let refresh_grace = refresh_grace.map(Duration::from_secs).unwrap_or(defaults.refresh_grace);
    // Within the window a reused token is forgiven: keep it short.
    if refresh_grace > Duration::from_secs(60) {
        return Err(ConfigError::Rule { flag: "--refresh-grace", rule: "must be at most 60 seconds" });
    }
    let rotation = key_rotation_interval.unwrap_or(DEFAULT_KEY_ROTATION_INTERVAL);
    // Verifiers may cache the JWKS for a minute; a rotation sooner than a
    // few minutes after the last could sign with a key they have not seen.
    if rotation != 0 && rotation < 300 {
        return Err(ConfigError::Rule {
            flag: "--key-rotation-interval",
            rule: "must be 0 (off) or at least 300 seconds",
        });
    }
    let nonempty = |v: Option<String>, flag: &'static str, default: String| match v {
        Some(v) if v.trim().is_empty() => Err(ConfigError::Rule { flag, rule: "must not be empty" }),
        Some(v) => Ok(v),
        None => Ok(default),
    };
    Ok(TokenConfig {
        settings: TokenSettings {
            issuer: nonempty(issuer, "--issuer", defaults.issuer.clone())?,
            audience: nonempty(audience, "--audience", defaults.audience.clone())?,
            access_ttl,
            refresh_grace,
            ..defaults
        },
        algorithm: token_algorithm.unwrap_or(DEFAULT_TOKEN_ALGORITHM).algorithm(),
        rotation_interval: match rotation {
            0 => None,
            secs => Some(Duration::from_secs(secs)),
        },
    })
}

/// The named introspection clients, each id once.
fn introspection_clients(specs: &[String]) -> Result<Vec<IntrospectionClient>, ConfigError> {
    let mut clients: Vec<IntrospectionClient> = Vec::with_capacity(specs.len());
    for spec in specs {
        let client = IntrospectionClient::parse(spec)?;
        if clients.iter().any(|c| c.id == client.id) {
            return Err(ConfigError::Unparsable {
                flag: "--introspection-client",
                value: client.id,
                reason: "this client id is given twice".into(),
            });
        }
        clients.push(client);
    }
    Ok(clients)
}

/// The HTTP front's bounds from their options.
fn http_limits(
    header_read_ms: Option<u64>,
    keep_alive_ms: Option<u64>,
    max_connections: Option<usize>,
) -> Result<crate::http_front::HttpLimits, ConfigError> {
    let header_read_timeout = Duration::from_millis(header_read_ms.unwrap_or(DEFAULT_HEADER_READ_TIMEOUT_MS));
    if header_read_timeout < Duration::from_millis(100) {
        return Err(ConfigError::Rule { flag: "--header-read-timeout-ms", rule: "must be at least 100" });
    }
    let keep_alive_timeout = Duration::from_millis(keep_alive_ms.unwrap_or(DEFAULT_KEEP_ALIVE_TIMEOUT_MS));
    if keep_alive_timeout < Duration::from_millis(100) {
        return Err(ConfigError::Rule { flag: "--keep-alive-timeout-ms", rule: "must be at least 100" });
    }
    let max_connections = max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
    if max_connections == 0 {
        return Err(ConfigError::Rule { flag: "--max-connections", rule: "must be at least 1" });
    }
    Ok(crate::http_front::HttpLimits {
        header_read_timeout,
        keep_alive_timeout,
        max_connections,
        ..crate::http_front::HttpLimits::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> ServeArgs {
        let mut argv = vec!["tessera", "serve"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Serve(a) => a,
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_session_id_may_begin_with_a_hyphen() {
        for sid in ["-abcDEF_12", "--x", "abc-"] {
            let argv = ["tessera", "sessions", "end", "--user", "7", "--session", sid, "--redis", "redis://127.0.0.1"];
            match Cli::try_parse_from(argv).unwrap().command {
                Command::Sessions(SessionsCommand::End(a)) => assert_eq!(a.session.as_deref(), Some(sid)),
                _ => unreachable!(),
            }
        }
    }

    #[test]
    fn a_secret_never_swallows_the_next_flag() {
        // A secret option given no value (an empty variable in a script)
        // must not take the next option for its secret.
        let argv = ["tessera", "serve", "--introspection-secret", "--trusted-proxy=10.0.0.1"];
        assert!(Cli::try_parse_from(argv).is_err());
        // A secret that begins with `-` is given as `--option=value`.
        let secret = "-Zm9vYmFyYmF6cXV4cXV1eC1hZG1pbi10b2tlbg";
        let args = parse(&[&format!("--admin-token={secret}"), &format!("--introspection-secret={secret}")]);
        assert_eq!(args.admin.admin_token.as_deref(), Some(secret));
        assert_eq!(args.tokens.introspection_secret.as_deref(), Some(secret));
    }

    #[test]
    fn defaults_are_local_and_safe() {
        let s = parse(&[]).merged_over(ServeArgs::default()).into_settings().unwrap();
        assert_eq!(s.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(s.data_dir, PathBuf::from("./data"));
        assert_eq!(s.carrier, CarrierMode::Auto);
        assert!(!s.dev);
        assert_eq!(s.otp, OtpDelivery::Console);
        assert_eq!(s.log_format, crate::telemetry::LogFormat::Text);
        assert_eq!(s.shutdown_delay, Duration::ZERO);
        assert_eq!(s.metrics, MetricsExposure::Main, "/metrics on the main listener by default");
    }

    #[test]
    fn metrics_bind_is_main_off_or_an_address() {
        let settings = |args: &[&str]| parse(args).merged_over(ServeArgs::default()).into_settings();
        assert_eq!(settings(&["--metrics-bind", "main"]).unwrap().metrics, MetricsExposure::Main);
        assert_eq!(settings(&["--metrics-bind", "off"]).unwrap().metrics, MetricsExposure::Off);
        let bound = settings(&["--metrics-bind", "127.0.0.1:9100"]).unwrap().metrics;
        assert_eq!(bound, MetricsExposure::Bind("127.0.0.1:9100".parse().unwrap()));
        let error = settings(&["--metrics-bind", "public"]).unwrap_err().to_string();
        assert!(error.starts_with("--metrics-bind \"public\": main, off or an address"), "{error}");
    }

    #[test]
    fn events_go_to_a_webhook_and_with_redis_to_the_stream() {
        let settings = |args: &[&str]| parse(args).merged_over(ServeArgs::default()).into_settings();
        let off = settings(&[]).unwrap().events;
        assert!(off.webhook.is_none() && off.stream_max_len.is_none(), "no sink unless asked");
        assert!(!off.node.is_empty(), "the host name by default");
        let on = settings(&["--events-webhook", "https://hooks.example/tessera", "--node-name", "node-7"]).unwrap();
        assert_eq!(on.events.webhook.unwrap().as_str(), "https://hooks.example/tessera");
        assert_eq!(on.events.node, "node-7");
        assert!(on.events.stream_max_len.is_none(), "the stream is off by default, even with a webhook");
        let redis = ["--redis", "redis://127.0.0.1:6379", "--events-stream"];
        assert_eq!(settings(&redis).unwrap().events.stream_max_len, Some(DEFAULT_EVENTS_STREAM_MAX_LEN));
        let error = settings(&["--events-stream"]).unwrap_err().to_string();
        assert_eq!(error, "--events-stream needs --redis URL");
        let error = settings(&["--events-webhook", "ftp://hooks.example/"]).unwrap_err().to_string();
        assert_eq!(error, "--events-webhook must be an http(s) URL");
        let error = settings(&["--node-name", " "]).unwrap_err().to_string();
        assert_eq!(error, "--node-name must not be empty");
    }

    #[test]
    fn flags_beat_the_file_which_beats_defaults() {
        let file: ServeArgs = toml::from_str(
            "bind = \"127.0.0.1:9000\"\ncarrier = \"header\"\ndev = true\nallowed-origins = [\"https://a.example\"]\nidle-timeout = 600",
        )
        .unwrap();
        let s = parse(&[
            "--bind",
            "127.0.0.1:9100",
            "--allowed-origin",
            "https://b.example",
            "--allowed-origin",
            "https://c.example",
        ])
        .merged_over(file)
        .into_settings()
        .unwrap();
        assert_eq!(s.bind.port(), 9100);
        assert_eq!(s.carrier, CarrierMode::Header);
        assert!(s.dev);
        assert_eq!(s.allowed_origins.len(), 2);
        assert_eq!(s.expiry.idle(), Duration::from_secs(600));
    }

    #[test]
    fn bad_settings_are_explained() {
        let no_url = parse(&["--otp-sender", "webhook"]).merged_over(ServeArgs::default()).into_settings();
        assert!(no_url.unwrap_err().to_string().contains("--otp-webhook"));
        let bad_origin = parse(&["--allowed-origin", "*"]).merged_over(ServeArgs::default()).into_settings();
        assert!(bad_origin.is_err());
        assert!(toml::from_str::<ServeArgs>("no-such-key = 1").is_err());
        let bad_timeouts =
            parse(&["--idle-timeout", "100", "--absolute-timeout", "50"]).merged_over(ServeArgs::default());
        assert!(bad_timeouts.into_settings().is_err());
    }

    #[test]
    fn token_mode_is_opt_in_and_checked() {
        assert!(parse(&[]).merged_over(ServeArgs::default()).into_settings().unwrap().tokens.is_none());
        let s = parse(&["--tokens", "signed", "--token-algorithm", "es256", "--access-ttl", "300"])
            .merged_over(ServeArgs::default())
            .into_settings()
            .unwrap();
        let tokens = s.tokens.unwrap();
        assert_eq!(tokens.algorithm, SigningAlgorithm::ES256);
        assert_eq!(tokens.settings.access_ttl, Duration::from_secs(300));
        let s = parse(&["--data-dir", "/d"]).merged_over(ServeArgs::default()).into_settings().unwrap();
        assert_eq!(s.keys_file, PathBuf::from("/d/signing-keys.json"));
        let file: ServeArgs = toml::from_str("keys-file = \"/k.json\"").unwrap();
        let s = parse(&["--data-dir", "/d"]).merged_over(file).into_settings().unwrap();
        assert_eq!(s.keys_file, PathBuf::from("/k.json"), "the file's key path holds without --tokens signed");
        let too_long = parse(&["--tokens", "signed", "--access-ttl", "3600"]).merged_over(ServeArgs::default());
        assert!(too_long.into_settings().unwrap_err().to_string().contains("--idle-timeout"));
        for bad in [["--refresh-grace", "61"], ["--key-rotation-interval", "60"]] {
            let args = parse(&["--tokens", "signed", bad[0], bad[1]]).merged_over(ServeArgs::default());
            assert!(args.into_settings().is_err(), "{bad:?}");
        }
        let weak = parse(&["--introspection-secret", "short"]).merged_over(ServeArgs::default());
        assert!(weak.into_settings().is_err());
        let weak = parse(&["--introspection-client", "billing:short"]).merged_over(ServeArgs::default());
        assert!(weak.into_settings().unwrap_err().to_string().contains("16 characters"));
        let file: ServeArgs = toml::from_str("tokens = \"signed\"\nkey-rotation-interval = 0").unwrap();
        let s = parse(&[]).merged_over(file).into_settings().unwrap();
        assert!(s.tokens.unwrap().rotation_interval.is_none());
    }

    #[test]
    fn every_option_given_on_the_command_line_beats_the_file() {
        // The file sets every option that has a flag; the command line sets
        // them all again: the command line must win for each, with no
        // per-option merge code to forget.
        let file: ServeArgs = toml::from_str(
            "bind = \"127.0.0.1:1\"\nredis-timeout-ms = 1\ncache-lease-ms = 1\nheader-read-timeout-ms = 1\n\
             login-ceiling-per-phone = 1\nmax-connections = 1\nkeys-file = \"/file\"\ntrusted-proxies = [\"10.0.0.1\"]\n\
             carrier = \"header\"\notp-sender = \"console\"\ntokens = \"opaque\"\nlog = \"warn\"\n\
             log-format = \"text\"\nshutdown-delay-ms = 1",
        )
        .unwrap();
        let args = parse(&[
            "--bind",
            "127.0.0.1:2",
            "--redis-timeout-ms",
            "2",
            "--cache-lease-ms",
            "2",
            "--header-read-timeout-ms",
            "2",
            "--login-ceiling-per-phone",
            "2",
            "--max-connections",
            "2",
            "--keys-file",
            "/flag",
            "--carrier",
            "cookie",
            "--otp-sender",
            "webhook",
            "--tokens",
            "signed",
            "--log",
            "debug",
            "--log-format",
            "json",
            "--shutdown-delay-ms",
            "2",
        ])
        .merged_over(file);
        assert_eq!(args.listener.bind.unwrap().port(), 2);
        assert_eq!(args.storage.redis_timeout_ms, Some(2));
        assert_eq!(args.storage.cache_lease_ms, Some(2));
        assert_eq!(args.listener.header_read_timeout_ms, Some(2));
        assert_eq!(args.throttles.login_ceiling_per_phone, Some(2));
        assert_eq!(args.listener.max_connections, Some(2));
        assert_eq!(args.tokens.keys_file, Some(PathBuf::from("/flag")));
        assert_eq!(args.sessions.carrier, Some(CarrierArg::Cookie));
        assert_eq!(args.otp.otp_sender, Some(OtpSenderArg::Webhook));
        assert_eq!(args.tokens.mode, Some(TokensArg::Signed));
        assert_eq!(args.log.as_deref(), Some("debug"));
        assert_eq!(args.log_format, Some(LogFormatArg::Json));
        assert_eq!(args.listener.shutdown_delay_ms, Some(2));
        assert_eq!(
            args.listener.trusted_proxies,
            vec!["10.0.0.1".parse::<IpAddr>().unwrap()],
            "an empty list is not given"
        );
    }

    #[test]
    fn every_flag_has_its_toml_key_and_every_key_its_flag() {
        // Declared once, an option gets both: its variable, less `TESSERA_`,
        // is its TOML key, and the keys the file knows are exactly those. A
        // section flattened for clap but not for serde would fail here.
        use clap::CommandFactory;
        let cli = Cli::command();
        let serve = cli.find_subcommand("serve").unwrap();
        let mut from_flags: Vec<String> = serve
            .get_arguments()
            .filter_map(|a| a.get_env())
            .map(|env| env.to_str().unwrap().strip_prefix("TESSERA_").unwrap().to_lowercase().replace('_', "-"))
            .filter(|key| key != "config")
            .collect();
        let serde_json::Value::Object(keys) = serde_json::to_value(ServeArgs::default()).unwrap() else {
            panic!("the options serialize to a map")
        };
        let mut from_file: Vec<String> = keys.keys().cloned().collect();
        from_flags.sort();
        from_file.sort();
        assert_eq!(from_flags, from_file);
        for key in &from_file {
            let value = &keys[key];
            let toml = if value.is_array() { format!("{key} = []") } else { format!("{key} = \"x\"") };
            let err = toml::from_str::<ServeArgs>(&toml).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(!err.contains("unknown field"), "{key}: {err}");
        }
    }

    #[test]
    fn help_shows_the_defaults_resolution_applies() {
        use clap::CommandFactory;
        let cli = Cli::command();
        let serve = cli.find_subcommand("serve").unwrap();
        let help = |long: &str| {
            let arg = serve.get_arguments().find(|a| a.get_long() == Some(long)).unwrap();
            arg.get_help().unwrap().to_string()
        };
        assert!(help("redis-timeout-ms").ends_with(&format!("[default: {DEFAULT_REDIS_TIMEOUT_MS}]")));
        assert!(help("bind").ends_with("[default: 127.0.0.1:8080]"));
        assert!(help("carrier").ends_with("[default: auto]"));
        assert!(help("idle-timeout").ends_with("[default: 1800]"));
        assert!(help("key-rotation-interval").ends_with("[default: 2592000, 30 days]"));
        let s = Settings::for_data_dir(PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(s.bind, DEFAULT_BIND);
        assert_eq!(s.expiry.idle(), Duration::from_secs(1800));
        assert_eq!(s.http.max_connections, DEFAULT_MAX_CONNECTIONS);
        assert_eq!(s.throttles, Throttles::default());
        assert_eq!(s.max_sessions_per_user, Some(DEFAULT_MAX_SESSIONS_PER_USER));
    }

    #[test]
    fn errors_name_the_flag() {
        let err =
            |args: &[&str]| parse(args).merged_over(ServeArgs::default()).into_settings().unwrap_err().to_string();
        assert_eq!(err(&["--max-connections", "0"]), "--max-connections must be at least 1");
        assert!(err(&["--redis", "nope"]).starts_with("--redis: "));
        assert!(err(&["--database", "oracle://x"]).starts_with("--database \"oracle://x\""));
        assert!(err(&["--admin-token", "too-short"]).starts_with("--admin-token must be at least 32"));
        assert!(err(&["--tokens", "signed", "--issuer", " "]).starts_with("--issuer must not be empty"));
        assert!(err(&["--keep-alive-timeout-ms", "5"]).starts_with("--keep-alive-timeout-ms"));
        assert!(err(&["--shutdown-delay-ms", "300001"]).starts_with("--shutdown-delay-ms"));
    }

    #[test]
    fn a_bad_file_key_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tessera.toml");
        std::fs::write(&path, "log = \"warn\"\nbind = 5\n").unwrap();
        let err = ServeArgs::from_file(&path).unwrap_err().to_string();
        assert!(err.contains(": bind: invalid type"), "{err}");
        std::fs::write(&path, "log = \"warn\"\nno-such-key = 1\n").unwrap();
        let err = ServeArgs::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("no-such-key: unknown field"), "{err}");
        std::fs::write(&path, "bind = \n").unwrap();
        assert!(matches!(ServeArgs::from_file(&path), Err(ConfigError::Malformed { .. })));
    }

    #[test]
    fn introspection_clients_come_from_flags_the_variable_or_the_file() {
        let secret = "q8+Vd/3xZk1N7pQ0sT2u5w==";
        let s = parse(&[
            "--introspection-client",
            &format!("billing:{secret}"),
            "--introspection-client",
            "orders:x:yz-at-least-16-chars",
            "--introspection-rate-limit",
            "5",
        ])
        .merged_over(ServeArgs::default())
        .into_settings()
        .unwrap();
        let ids: Vec<&str> = s.introspection_clients.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["billing", "orders"]);
        assert_eq!(s.introspection_clients[0].secret, secret);
        assert_eq!(s.introspection_clients[1].secret, "x:yz-at-least-16-chars", "split at the first colon");
        assert_eq!(s.introspection_rate_limit, 5);
        assert!(!format!("{:?}", s.introspection_clients).contains(secret), "Debug hides the secret");
        let file: ServeArgs =
            toml::from_str("introspection-clients = [\"a:0123456789abcdef\"]\nintrospection-rate-limit = 7").unwrap();
        let s = parse(&[]).merged_over(file).into_settings().unwrap();
        assert_eq!(s.introspection_clients[0].id, "a");
        assert_eq!(s.introspection_rate_limit, 7);
        let err =
            |args: &[&str]| parse(args).merged_over(ServeArgs::default()).into_settings().unwrap_err().to_string();
        assert!(err(&["--introspection-client", "no-colon-0123456789"]).contains("ID:SECRET"));
        assert!(err(&["--introspection-client", ":0123456789abcdef"]).contains("client id"));
        let twice =
            err(&["--introspection-client", "a:0123456789abcdef", "--introspection-client", "a:fedcba9876543210"]);
        assert!(twice.contains("given twice") && !twice.contains("0123456789abcdef"), "{twice}");
        assert!(err(&["--introspection-rate-limit", "0"]).starts_with("--introspection-rate-limit"));
        let s = Settings::for_data_dir(PathBuf::from("/d"));
        assert_eq!(s.introspection_rate_limit, DEFAULT_INTROSPECTION_RATE_LIMIT);
        assert!(s.introspection_clients.is_empty() && s.introspection_secret.is_none());
    }

    #[test]
    fn dev_flag_takes_an_optional_value() {
        assert_eq!(parse(&["--dev"]).sessions.dev, Some(true));
        assert_eq!(parse(&["--dev=false"]).sessions.dev, Some(false));
        assert_eq!(parse(&[]).sessions.dev, None);
    }
}
