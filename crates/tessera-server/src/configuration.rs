//! Command line, environment and TOML file, merged into [`Settings`].
//!
//! Precedence: a flag beats its `TESSERA_*` variable, which beats the key in
//! the `--config` file, which beats the built-in default.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};
use tessera::signed::SigningAlgorithm;
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

/// How OTP codes are delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OtpSenderArg {
    /// Print to stdout (development only).
    Console,
    /// POST to `--otp-webhook`.
    Webhook,
}

/// `tessera serve` options; also the shape of the TOML file (kebab-case keys).
#[derive(Debug, Clone, Default, Args, Deserialize, Serialize)]
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

    /// How long a node may answer from memory (near cache, revocation
    /// list) after it last proved its Redis subscription alive, in
    /// milliseconds; capped at --redis-timeout-ms. This is the worst case
    /// for a node cut off from Redis to stop honouring an ended session
    /// [default: 250].
    #[arg(long, env = "TESSERA_CACHE_LEASE_MS", value_name = "MS")]
    pub cache_lease_ms: Option<u64>,

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

    /// Failed logins allowed per phone number from one client address per
    /// 15 minutes; successful logins do not count [default: 10].
    #[arg(long, env = "TESSERA_LOGIN_LIMIT_PER_PHONE", value_name = "N")]
    pub login_limit_per_phone: Option<u32>,

    /// Failed logins allowed per phone number from all addresses together
    /// per 15 minutes (the ceiling against guessing from many addresses)
    /// [default: 100].
    #[arg(long, env = "TESSERA_LOGIN_CEILING_PER_PHONE", value_name = "N")]
    pub login_ceiling_per_phone: Option<u32>,

    /// Failed logins allowed per client address per 15 minutes; raise it
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

    /// A client must send a request's line and headers within this many
    /// milliseconds [default: 10000].
    #[arg(long, env = "TESSERA_HEADER_READ_TIMEOUT_MS", value_name = "MS")]
    pub header_read_timeout_ms: Option<u64>,

    /// A kept-alive connection that moves no bytes for this many
    /// milliseconds is closed [default: 60000].
    #[arg(long, env = "TESSERA_KEEP_ALIVE_TIMEOUT_MS", value_name = "MS")]
    pub keep_alive_timeout_ms: Option<u64>,

    /// Open client connections at most; lowered to fit the process's
    /// open-file limit. At the cap new connections wait in the listen
    /// backlog [default: 10000].
    #[arg(long, env = "TESSERA_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,

    /// Log filter in tracing's syntax [default: info].
    #[arg(long, env = "TESSERA_LOG", value_name = "FILTER")]
    pub log: Option<String>,

    /// What logins hand out: opaque session tokens, or signed access
    /// tokens with rotating refresh tokens [default: opaque].
    #[arg(long, env = "TESSERA_TOKENS", value_enum)]
    pub tokens: Option<TokensArg>,

    /// Access-token signing algorithm [default: eddsa].
    #[arg(long, env = "TESSERA_TOKEN_ALGORITHM", value_enum)]
    pub token_algorithm: Option<AlgorithmArg>,

    /// Access-token lifetime in seconds [default: 600].
    #[arg(long, env = "TESSERA_ACCESS_TTL", value_name = "SECS")]
    pub access_ttl: Option<u64>,

    /// Two refreshes with one token within this many seconds get the same
    /// new pair instead of a theft verdict [default: 10].
    #[arg(long, env = "TESSERA_REFRESH_GRACE", value_name = "SECS")]
    pub refresh_grace: Option<u64>,

    /// The signing-key file, shared by every node (a shared volume or a
    /// mounted secret) [default: <data-dir>/signing-keys.json].
    #[arg(long, env = "TESSERA_KEYS_FILE", value_name = "FILE")]
    pub keys_file: Option<PathBuf>,

    /// Rotate the signing key automatically after this many seconds; 0
    /// turns automatic rotation off [default: 2592000, 30 days].
    #[arg(long, env = "TESSERA_KEY_ROTATION_INTERVAL", value_name = "SECS")]
    pub key_rotation_interval: Option<u64>,

    /// The `iss` of access tokens [default: tessera].
    #[arg(long, env = "TESSERA_ISSUER", value_name = "ISS")]
    pub issuer: Option<String>,

    /// The `aud` of access tokens [default: tessera].
    #[arg(long, env = "TESSERA_AUDIENCE", value_name = "AUD")]
    pub audience: Option<String>,

    /// The secret services present (HTTP Basic password, or
    /// `client_secret`) to call POST /oauth/introspect; without it the
    /// endpoint is off. At least 16 characters.
    #[arg(long, env = "TESSERA_INTROSPECTION_SECRET", value_name = "SECRET", hide_env_values = true)]
    pub introspection_secret: Option<String>,
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
    /// The secret for `POST /oauth/introspect`; `None`: endpoint off.
    pub introspection_secret: Option<String>,
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
            algorithm: SigningAlgorithm::EdDSA,
            rotation_interval: Some(Duration::from_secs(30 * 24 * 3600)),
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
        Self { login_per_phone: 10, login_ceiling_per_phone: 100, login_per_ip: 100, otp_per_ip: 20 }
    }
}

impl Settings {
    /// Defaults for a server on `data_dir` (tests start from here).
    pub fn for_data_dir(data_dir: PathBuf) -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            keys_file: data_dir.join("signing-keys.json"),
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
            tokens: None,
            key_algorithm: None,
            http: crate::http_front::HttpLimits::default(),
            introspection_secret: None,
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

    /// These options over `file`'s: every option given here (a value, or a
    /// non-empty list) wins. Written once for all options: a new one needs
    /// no line here.
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
            Some(url) => {
                let timeout = Duration::from_millis(self.redis_timeout_ms.unwrap_or(250).max(1));
                Some(RedisSettings {
                    target: tessera::store::redis::RedisTarget::parse(&url).map_err(|e| format!("--redis: {e}"))?,
                    timeout,
                    near_cache: self.near_cache.unwrap_or(true),
                    // A lease longer than a command's deadline would let
                    // memory answer for longer than Redis itself could.
                    cache_lease: Duration::from_millis(self.cache_lease_ms.unwrap_or(250).max(10)).min(timeout),
                })
            }
        };
        let http =
            http_limits(&defaults.http, self.header_read_timeout_ms, self.keep_alive_timeout_ms, self.max_connections)?;
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
            login_ceiling_per_phone: self
                .login_ceiling_per_phone
                .unwrap_or(defaults.throttles.login_ceiling_per_phone)
                .max(1),
            login_per_ip: self.login_limit_per_ip.unwrap_or(defaults.throttles.login_per_ip).max(1),
            otp_per_ip: self.otp_limit_per_ip.unwrap_or(defaults.throttles.otp_per_ip).max(1),
        };
        let data_dir = self.data_dir.unwrap_or(defaults.data_dir);
        let keys_file = self.keys_file.unwrap_or_else(|| data_dir.join("signing-keys.json"));
        let key_algorithm = self.token_algorithm.map(AlgorithmArg::algorithm);
        let tokens = match self.tokens.unwrap_or(TokensArg::Opaque) {
            TokensArg::Opaque => None,
            TokensArg::Signed => Some(token_config(
                self.token_algorithm,
                self.access_ttl,
                self.refresh_grace,
                self.key_rotation_interval,
                self.issuer,
                self.audience,
                &expiry,
            )?),
        };
        if self.introspection_secret.as_ref().is_some_and(|s| s.chars().count() < 16) {
            return Err("--introspection-secret must be at least 16 characters".into());
        }
        Ok(Settings {
            tokens,
            introspection_secret: self.introspection_secret,
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
            data_dir,
            keys_file,
            key_algorithm,
            http,
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

#[allow(clippy::too_many_arguments)]
fn token_config(
    algorithm: Option<AlgorithmArg>,
    access_ttl: Option<u64>,
    refresh_grace: Option<u64>,
    rotation: Option<u64>,
    issuer: Option<String>,
    audience: Option<String>,
    expiry: &ExpiryPolicy,
) -> Result<TokenConfig, String> {
    let defaults = TokenSettings::default();
    let access_ttl = access_ttl.map(Duration::from_secs).unwrap_or(defaults.access_ttl);
    if access_ttl.is_zero() || access_ttl > Duration::from_secs(24 * 3600) {
        return Err("--access-ttl must be between 1 second and a day".into());
    }
    // A family's idle deadline moves only when it refreshes, which a client
    // does about once per access-token lifetime.
    if access_ttl >= expiry.idle() {
        return Err("--access-ttl must be shorter than --idle-timeout (refreshes keep a family alive)".into());
    }
    let refresh_grace = refresh_grace.map(Duration::from_secs).unwrap_or(defaults.refresh_grace);
    // Within the window a reused token is forgiven: keep it short.
    if refresh_grace > Duration::from_secs(60) {
        return Err("--refresh-grace must be at most 60 seconds".into());
    }
    let rotation = rotation.unwrap_or(TokenConfig::default().rotation_interval.map_or(0, |d| d.as_secs()));
    // Verifiers may cache the JWKS for a minute; a rotation sooner than a
    // few minutes after the last could sign with a key they have not seen.
    if rotation != 0 && rotation < 300 {
        return Err("--key-rotation-interval must be 0 (off) or at least 300 seconds".into());
    }
    let nonempty = |v: Option<String>, name: &str, default: String| match v {
        Some(v) if v.trim().is_empty() => Err(format!("--{name} must not be empty")),
        Some(v) => Ok(v),
        None => Ok(default),
    };
    Ok(TokenConfig {
        settings: TokenSettings {
            issuer: nonempty(issuer, "issuer", defaults.issuer.clone())?,
            audience: nonempty(audience, "audience", defaults.audience.clone())?,
            access_ttl,
            refresh_grace,
            ..defaults
        },
        algorithm: algorithm.unwrap_or(AlgorithmArg::Eddsa).algorithm(),
        rotation_interval: match rotation {
            0 => None,
            secs => Some(Duration::from_secs(secs)),
        },
    })
}

/// The HTTP front's bounds from their options.
fn http_limits(
    defaults: &crate::http_front::HttpLimits,
    header_read_ms: Option<u64>,
    keep_alive_ms: Option<u64>,
    max_connections: Option<usize>,
) -> Result<crate::http_front::HttpLimits, String> {
    let header_read_timeout = header_read_ms.map(Duration::from_millis).unwrap_or(defaults.header_read_timeout);
    let keep_alive_timeout = keep_alive_ms.map(Duration::from_millis).unwrap_or(defaults.keep_alive_timeout);
    if header_read_timeout < Duration::from_millis(100) || keep_alive_timeout < Duration::from_millis(100) {
        return Err("--header-read-timeout-ms and --keep-alive-timeout-ms must be at least 100".into());
    }
    let max_connections = max_connections.unwrap_or(defaults.max_connections);
    if max_connections == 0 {
        return Err("--max-connections must be at least 1".into());
    }
    Ok(crate::http_front::HttpLimits { header_read_timeout, keep_alive_timeout, max_connections, ..*defaults })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> ServeArgs {
        let mut argv = vec!["tessera", "serve"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Serve(a) => a,
            Command::Keys(_) => unreachable!(),
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
        assert!(too_long.into_settings().unwrap_err().contains("--idle-timeout"));
        for bad in [["--refresh-grace", "61"], ["--key-rotation-interval", "60"]] {
            let args = parse(&["--tokens", "signed", bad[0], bad[1]]).merged_over(ServeArgs::default());
            assert!(args.into_settings().is_err(), "{bad:?}");
        }
        let weak = parse(&["--introspection-secret", "short"]).merged_over(ServeArgs::default());
        assert!(weak.into_settings().is_err());
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
             login-ceiling-per-phone = 1\nmax-connections = 1\nkeys-file = \"/file\"\ntrusted-proxies = [\"10.0.0.1\"]",
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
        ])
        .merged_over(file);
        assert_eq!(args.bind.unwrap().port(), 2);
        assert_eq!(args.redis_timeout_ms, Some(2));
        assert_eq!(args.cache_lease_ms, Some(2));
        assert_eq!(args.header_read_timeout_ms, Some(2));
        assert_eq!(args.login_ceiling_per_phone, Some(2));
        assert_eq!(args.max_connections, Some(2));
        assert_eq!(args.keys_file, Some(PathBuf::from("/flag")));
        assert_eq!(args.trusted_proxies, vec!["10.0.0.1".parse::<IpAddr>().unwrap()], "an empty list is not given");
    }

    #[test]
    fn dev_flag_takes_an_optional_value() {
        assert_eq!(parse(&["--dev"]).dev, Some(true));
        assert_eq!(parse(&["--dev=false"]).dev, Some(false));
        assert_eq!(parse(&[]).dev, None);
    }
}
