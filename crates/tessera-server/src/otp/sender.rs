//! How codes reach phones.

use std::time::Duration;

use async_trait::async_trait;

use crate::domain::{OtpCode, Telephone};

/// Delivers a code. An `Err` means the user will not get it.
#[async_trait]
pub trait OtpSender: Send + Sync + std::fmt::Debug + 'static {
    /// Sends `code` to `phone`; it expires in `expires_in`.
    async fn send(&self, phone: &Telephone, code: &OtpCode, expires_in: Duration) -> Result<(), String>;
}

/// Prints codes to standard output. For local development only: anyone who
/// reads the console can log in as anyone.
#[derive(Debug, Default)]
pub struct ConsoleSender;

#[async_trait]
impl OtpSender for ConsoleSender {
    async fn send(&self, phone: &Telephone, code: &OtpCode, expires_in: Duration) -> Result<(), String> {
        println!(
            "\n==================== DEVELOPMENT ONLY: OTP NOT SENT BY SMS ====================\n\
             code {} for {} (valid {} s)\n\
             ================================================================================\n",
            code.expose(),
            phone,
            expires_in.as_secs()
        );
        Ok(())
    }
}

/// POSTs `{"telephone", "code", "expires_in"}` as JSON to an SMS gateway
/// adapter. Any non-2xx answer, timeout or connection error is a failure.
#[derive(Debug, Clone)]
pub struct WebhookSender {
    client: reqwest::Client,
    url: reqwest::Url,
}

impl WebhookSender {
    /// A sender to `url`, giving up after 5 seconds.
    pub fn new(url: reqwest::Url) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self { client, url })
    }
}

#[async_trait]
impl OtpSender for WebhookSender {
    async fn send(&self, phone: &Telephone, code: &OtpCode, expires_in: Duration) -> Result<(), String> {
        let body = serde_json::json!({
            "telephone": phone.as_str(),
            "code": code.expose(),
            "expires_in": expires_in.as_secs(),
        });
        let response =
            self.client.post(self.url.clone()).json(&body).send().await.map_err(|e| e.without_url().to_string())?;
        if !response.status().is_success() {
            return Err(format!("webhook answered {}", response.status()));
        }
        Ok(())
    }
}
