//! One-time SMS codes: issue, send, verify.
//!
//! A challenge is keyed by phone number in the server's store, not in the
//! caller's session, so a header-only mobile client can run the whole flow
//! without holding any session first. Only an HMAC of the code is kept.

pub mod sender;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use tessera::Clock;

use crate::domain::{OtpCode, Telephone};
use crate::error::ApiError;
use crate::limits::{self, Limit, RateLimiter};
use crate::secret::ServerSecret;
pub use sender::{ConsoleSender, OtpSender, WebhookSender};
pub use store::{Attempt, ChallengeStore, RedisChallenges, SqliteChallenges};

/// Lifetimes, caps and throttles for codes.
#[derive(Debug, Clone)]
pub struct OtpPolicy {
    /// How long a code stays valid (5 minutes).
    pub lifetime: Duration,
    /// Wrong tries before a code dies (5).
    pub max_attempts: u32,
    /// Sends per phone in a short window (1 per 60 s).
    pub per_phone_burst: Limit,
    /// Sends per phone per hour (5).
    pub per_phone_hourly: Limit,
    /// Sends per client IP per hour (20).
    pub per_ip_hourly: Limit,
}

impl Default for OtpPolicy {
    fn default() -> Self {
        const HOUR: Duration = Duration::from_secs(3600);
        Self {
            lifetime: Duration::from_secs(300),
            max_attempts: 5,
            per_phone_burst: Limit::new(1, Duration::from_secs(60)),
            per_phone_hourly: Limit::new(5, HOUR),
            per_ip_hourly: Limit::new(20, HOUR),
        }
    }
}

/// What checking a code found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The code was right; the challenge is consumed.
    Verified,
    /// Wrong code.
    Mismatch,
    /// No usable challenge (never sent, expired, used or exhausted).
    Expired,
}

/// Issues and checks codes.
#[derive(Debug, Clone)]
pub struct OtpService {
    pub(crate) store: Arc<dyn ChallengeStore>,
    pub(crate) sender: Arc<dyn OtpSender>,
    pub(crate) limiter: Arc<dyn RateLimiter>,
    pub(crate) secret: ServerSecret,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) policy: OtpPolicy,
}

impl OtpService {
    /// The key under which `value` (a phone number, a client address) is
    /// stored and counted: a keyed hash, so no store holds it in clear.
    pub fn pseudonym(&self, value: &str) -> String {
        self.secret.pseudonym(value)
    }

    fn mac(&self, phone: &Telephone, code: &OtpCode) -> [u8; 32] {
        self.secret.mac("tessera/otp/v1", &[phone.as_str().as_bytes(), code.expose().as_bytes()])
    }

    /// Sends a new code to `phone`, replacing any pending one. Throttled per
    /// phone and per client address. Answers the same whether or not the
    /// phone is registered: registration needs the code too.
    pub async fn send(&self, phone: &Telephone, client: &str) -> Result<(), ApiError> {
        let now = self.clock.now();
        let p = &self.policy;
        let subject = self.pseudonym(phone.as_str());
        limits::check(
            &*self.limiter,
            now,
            &[
                (format!("otp-phone-burst:{subject}"), p.per_phone_burst),
                (format!("otp-phone-hour:{subject}"), p.per_phone_hourly),
                (format!("otp-ip-hour:{}", self.pseudonym(client)), p.per_ip_hourly),
            ],
        )
        .await?;
        let code = OtpCode::generate();
        let mac = self.mac(phone, &code);
        self.store.put(&subject, &mac, now + p.lifetime).await?;
        if let Err(reason) = self.sender.send(phone, &code, p.lifetime).await {
            // A code the user never received must not stay guessable.
            self.store.discard(&subject, &mac).await?;
            return Err(ApiError::OtpSendFailed(reason));
        }
        tracing::info!(phone = %phone.masked(), "OTP sent");
        Ok(())
    }

    /// Checks `code` for `phone`: right codes are consumed, wrong ones
    /// counted, and the challenge dies after the attempt cap.
    pub async fn verify(&self, phone: &Telephone, code: &OtpCode) -> Result<Verdict, ApiError> {
        let mac = self.mac(phone, code);
        let subject = self.pseudonym(phone.as_str());
        let verdict = match self.store.attempt(&subject, &mac, self.clock.now(), self.policy.max_attempts).await? {
            Attempt::Verified => Verdict::Verified,
            Attempt::Mismatch => Verdict::Mismatch,
            Attempt::NoChallenge => Verdict::Expired,
        };
        tracing::info!(phone = %phone.masked(), ?verdict, "OTP checked");
        Ok(verdict)
    }
}
