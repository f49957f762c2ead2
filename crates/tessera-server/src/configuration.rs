//! Command line, environment and TOML file, merged into [`Settings`].
//!
//! Precedence: a flag beats its `TESSERA_*` variable, which beats the key in
//! the `--config` file, which beats the built-in default.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;
use tessera::{AllowedOrigin, CarrierMode, ExpiryPolicy};

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
}

/// Where tokens travel (see the README's "Carriers").
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CarrierArg {
    /// Cookie only.
    Cookie,
    /// `Authorization: Bearer` / `X-Auth-Token` only.
    Header,
    /// Header if present, else cookie.
    Auto,
}

/// How OTP codes are delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OtpSenderArg {
    /// Print to stdout (development only).
    Console,
    /// POST to `--otp-webhook`.
    Webhook,
}

/// `tessera serve` options; also the shape of the TOML file (kebab-case keys).
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServeArgs {
    /// A TOML file with any of the keys below (e.g. `bind = "0.0.0.0:8080"`).
    #[arg(long, env = "TESSERA_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "TESSERA_BIND", value_name = "ADDR")]
    pub bind: Option<SocketAddr>,

    /// Directory for the SQLite database (users, sessions, OTP challenges)
    /// and the generated server secret [default: ./data].
    #[arg(long, env = "TESSERA_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Token carrier: cookie, header or auto [default: auto].
    #[arg(long, env = "TESSERA_CARRIER", value_enum)]
    pub carrier: Option<CarrierArg>,

    /// Plain-HTTP development mode: cookies without Secure and without the
    /// __Host- prefix. Never in production.
    #[arg(long, env = "TESSERA_DEV", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub dev: Option<bool>,

    /// OTP delivery: console (development) or webhook [default: console].
    #[arg(long, env = "TESSERA_OTP_SENDER", value_enum)]
    pub otp_sender: Option<OtpSenderArg>,

    /// URL the webhook sender POSTs {"telephone","code","expires_in"} to.
    #[arg(long, env = "TESSERA_OTP_WEBHOOK", value_name = "URL")]
    pub otp_webhook: Option<String>,

    /// An origin trusted for CSRF and CORS, e.g. https://shop.example.
    /// Repeatable; the variable takes a comma-separated list.
    #[arg(long = "allowed-origin", env = "TESSERA_ALLOWED_ORIGINS", value_delimiter = ',', value_name = "ORIGIN")]
    #[serde(rename = "allowed-origins")]
    pub allowed_origins: Vec<String>,

    /// A reverse proxy whose X-Forwarded-For is believed. Repeatable; the
    /// variable takes a comma-separated list. Without one, the client
    /// address is the socket peer.
    #[arg(long = "trusted-proxy", env = "TESSERA_TRUSTED_PROXIES", value_delimiter = ',', value_name = "IP")]
    #[serde(rename = "trusted-proxies")]
    pub trusted_proxies: Vec<IpAddr>,

    /// Session idle timeout in seconds [default: 1800].
    #[arg(long, env = "TESSERA_IDLE_TIMEOUT", value_name = "SECS")]
    pub idle_timeout: Option<u64>,

    /// Session absolute timeout in seconds [default: 43200].
    #[arg(long, env = "TESSERA_ABSOLUTE_TIMEOUT", value_name = "SECS")]
    pub absolute_timeout: Option<u64>,

    /// Redis for sessions, OTP challenges and rate limits, shared by every
    /// node: redis://host:port[/db], rediss://…,
    /// redis+sentinel://host:port[,host:port…]/master-name[/db] or
    /// redis+cluster://host:port[,host:port…]. Without it, everything
    /// lives in the SQLite file of --data-dir.
    #[arg(long, env = "TESSERA_REDIS", value_name = "URL")]
    pub redis: Option<String>,

    /// Deadline for each Redis command in milliseconds; past it the request
    /// gets 503 [default: 250].
    #[arg(long, env = "TESSERA_REDIS_TIMEOUT_MS", value_name = "MS")]
    pub redis_timeout_ms: Option<u64>,

    /// Keep recently used sessions in memory, invalidated through Redis
    /// pub/sub [default: true].
    #[arg(long, env = "TESSERA_NEAR_CACHE", value_name = "BOOL")]
    pub near_cache: Option<bool>,

    /// The user database: postgres://user@host/db (shared by every node) or
    /// sqlite:///path [default: the SQLite file in --data-dir].
    #[arg(long, env = "TESSERA_DATABASE", value_name = "URL")]
    pub database: Option<String>,

    /// A file holding the server secret (32 bytes raw, or 64 hex digits, or
    /// base64), so that several nodes agree. The secret may instead be given
    /// in the TESSERA_SECRET variable. Without either, <data-dir>/secret is
    /// generated.
    #[arg(long, env = "TESSERA_SECRET_FILE", value_name = "FILE")]
    pub secret_file: Option<PathBuf>,

    /// Login attempts allowed per phone number per 15 minutes [default: 10].
    #[arg(long, env = "TESSERA_LOGIN_LIMIT_PER_PHONE", value_name = "N")]
    pub login_limit_per_phone: Option<u32>,

    /// Login attempts allowed per client address per 15 minutes; raise it
    /// when many users share one address (NAT) [default: 100].
    #[arg(long, env = "TESSERA_LOGIN_LIMIT_PER_IP", value_name = "N")]
    pub login_limit_per_ip: Option<u32>,

    /// OTP sends allowed per client address per hour [default: 20].
    #[arg(long, env = "TESSERA_OTP_LIMIT_PER_IP", value_name = "N")]
    pub otp_limit_per_ip: Option<u32>,

    /// The most sessions one user may hold; a login beyond it ends the
    /// user's oldest session. 0 means no cap [default: 10].
    #[arg(long, env = "TESSERA_MAX_SESSIONS_PER_USER", value_name = "N")]
    pub max_sessions_per_user: Option<usize>,

    /// Log filter in tracing's syntax [default: info].
    #[arg(long, env = "TESSERA_LOG", value_name = "FILTER")]
    pub log: Option<String>,
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
}

/// How many attempts the service allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttles {
    /// Login attempts per phone per 15 minutes.
    pub login_per_phone: u32,
    /// Login attempts per client address per 15 minutes.
    pub login_per_ip: u32,
    /// OTP sends per client address per hour.
    pub otp_per_ip: u32,
}

impl Default for Throttles {
    fn default() -> Self {
        Self { login_per_phone: 10, login_per_ip: 100, otp_per_ip: 20 }
    }
}

impl Settings {
    /// Defaults for a server on `data_dir` (tests start from here).
    pub fn for_data_dir(data_dir: PathBuf) -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir,
            carrier: CarrierMode::Auto,
            dev: false,
            otp: OtpDelivery::Console,
            allowed_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            expiry: ExpiryPolicy::default(),
            log: "info".into(),
            redis: None,
            secret: SecretSource::DataDir,
            database: None,
            throttles: Throttles::default(),
            max_sessions_per_user: Some(10),
        }
    }
}

impl ServeArgs {
    /// Merges the `--config` file under these arguments and checks the result.
    pub fn resolve(self) -> Result<Settings, String> {
        let file = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                toml::from_str::<ServeArgs>(&text).map_err(|e| format!("{}: {e}", path.display()))?
            }
            None => ServeArgs::default(),
        };
        self.merged_over(file).into_settings()
    }

    fn merged_over(self, file: ServeArgs) -> ServeArgs {
        ServeArgs {
            config: self.config,
            bind: self.bind.or(file.bind),
            data_dir: self.data_dir.or(file.data_dir),
            carrier: self.carrier.or(file.carrier),
            dev: self.dev.or(file.dev),
            otp_sender: self.otp_sender.or(file.otp_sender),
            otp_webhook: self.otp_webhook.or(file.otp_webhook),
            allowed_origins: or_list(self.allowed_origins, file.allowed_origins),
            trusted_proxies: or_list(self.trusted_proxies, file.trusted_proxies),
            idle_timeout: self.idle_timeout.or(file.idle_timeout),
            absolute_timeout: self.absolute_timeout.or(file.absolute_timeout),
            log: self.log.or(file.log),
            redis: self.redis.or(file.redis),
            redis_timeout_ms: self.redis_timeout_ms.or(file.redis_timeout_ms),
            near_cache: self.near_cache.or(file.near_cache),
            secret_file: self.secret_file.or(file.secret_file),
            database: self.database.or(file.database),
            login_limit_per_phone: self.login_limit_per_phone.or(file.login_limit_per_phone),
            login_limit_per_ip: self.login_limit_per_ip.or(file.login_limit_per_ip),
            otp_limit_per_ip: self.otp_limit_per_ip.or(file.otp_limit_per_ip),
            max_sessions_per_user: self.max_sessions_per_user.or(file.max_sessions_per_user),
        }
    }

    fn into_settings(self) -> Result<Settings, String> {
        let defaults = Settings::for_data_dir(PathBuf::from("./data"));
        let otp = match (self.otp_sender.unwrap_or(OtpSenderArg::Console), self.otp_webhook) {
            (OtpSenderArg::Console, _) => OtpDelivery::Console,
            (OtpSenderArg::Webhook, None) => return Err("--otp-sender webhook needs --otp-webhook URL".into()),
            (OtpSenderArg::Webhook, Some(url)) => {
                let url = reqwest::Url::parse(&url).map_err(|e| format!("--otp-webhook {url:?}: {e}"))?;
                if !matches!(url.scheme(), "http" | "https") {
                    return Err("--otp-webhook must be an http(s) URL".into());
                }
                OtpDelivery::Webhook(url)
            }
        };
        let allowed_origins = self
            .allowed_origins
            .iter()
            .map(|o| AllowedOrigin::parse(o).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        let idle = self.idle_timeout.map(Duration::from_secs).unwrap_or(defaults.expiry.idle());
        let absolute = self.absolute_timeout.map(Duration::from_secs).unwrap_or(defaults.expiry.absolute());
        let expiry = ExpiryPolicy::new(idle, absolute).map_err(|e| format!("session timeouts: {e}"))?;
        let redis = match self.redis {
            None => None,
            Some(url) => Some(RedisSettings {
                target: tessera::store::redis::RedisTarget::parse(&url).map_err(|e| format!("--redis: {e}"))?,
                timeout: Duration::from_millis(self.redis_timeout_ms.unwrap_or(250).max(1)),
                near_cache: self.near_cache.unwrap_or(true),
            }),
        };
        let secret = match (std::env::var("TESSERA_SECRET").ok().filter(|s| !s.is_empty()), self.secret_file) {
            (Some(value), _) => SecretSource::Value(value),
            (None, Some(path)) => SecretSource::File(path),
            (None, None) => SecretSource::DataDir,
        };
        if let Some(url) = &self.database {
            crate::users::Engine::of(url)
                .ok_or_else(|| format!("--database must be postgres://… or sqlite:…, not {url:?}"))?;
        }
        let throttles = Throttles {
            login_per_phone: self.login_limit_per_phone.unwrap_or(defaults.throttles.login_per_phone).max(1),
            login_per_ip: self.login_limit_per_ip.unwrap_or(defaults.throttles.login_per_ip).max(1),
            otp_per_ip: self.otp_limit_per_ip.unwrap_or(defaults.throttles.otp_per_ip).max(1),
        };
        Ok(Settings {
            max_sessions_per_user: match self.max_sessions_per_user {
                None => defaults.max_sessions_per_user,
                Some(0) => None,
                Some(n) => Some(n),
            },
            throttles,
            database: self.database,
            redis,
            secret,
            bind: self.bind.unwrap_or(defaults.bind),
            data_dir: self.data_dir.unwrap_or(defaults.data_dir),
            carrier: match self.carrier.unwrap_or(CarrierArg::Auto) {
                CarrierArg::Cookie => CarrierMode::Cookie,
                CarrierArg::Header => CarrierMode::Header,
                CarrierArg::Auto => CarrierMode::Auto,
            },
            dev: self.dev.unwrap_or(false),
            otp,
            allowed_origins,
            trusted_proxies: self.trusted_proxies,
            expiry,
            log: self.log.unwrap_or(defaults.log),
        })
    }
}

/// A repeatable option given at all replaces the file's list.
fn or_list<T>(given: Vec<T>, file: Vec<T>) -> Vec<T> {
    if given.is_empty() {
        file
    } else {
        given
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> ServeArgs {
        let mut argv = vec!["tessera", "serve"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Serve(a) => a,
        }
    }

    #[test]
    fn defaults_are_local_and_safe() {
        let s = parse(&[]).merged_over(ServeArgs::default()).into_settings().unwrap();
        assert_eq!(s.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(s.data_dir, PathBuf::from("./data"));
        assert_eq!(s.carrier, CarrierMode::Auto);
        assert!(!s.dev);
        assert_eq!(s.otp, OtpDelivery::Console);
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
        assert!(no_url.unwrap_err().contains("--otp-webhook"));
        let bad_origin = parse(&["--allowed-origin", "*"]).merged_over(ServeArgs::default()).into_settings();
        assert!(bad_origin.is_err());
        assert!(toml::from_str::<ServeArgs>("no-such-key = 1").is_err());
        let bad_timeouts =
            parse(&["--idle-timeout", "100", "--absolute-timeout", "50"]).merged_over(ServeArgs::default());
        assert!(bad_timeouts.into_settings().is_err());
    }

    #[test]
    fn dev_flag_takes_an_optional_value() {
        assert_eq!(parse(&["--dev"]).dev, Some(true));
        assert_eq!(parse(&["--dev=false"]).dev, Some(false));
        assert_eq!(parse(&[]).dev, None);
    }
}
