//! Signing keys: generated, kept in a key file, rotated, published as a JWKS.
//!
//! A key set holds one `current` key (signs), one `next` key (published
//! ahead of use, so verifiers that cache the JWKS already know it when it
//! starts signing) and `retired` keys that still verify until the last
//! token they signed has expired. Rotation moves next to current and
//! current to retired; nobody is logged out by it.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::clock::Timestamp;

/// The algorithms Tessera signs access tokens with. One per key, never
/// negotiated by the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SigningAlgorithm {
    /// Ed25519 (the default): small keys, fast, deterministic signatures.
    EdDSA,
    /// ECDSA over P-256 with SHA-256.
    ES256,
    /// HMAC-SHA256 with a 256-bit random secret. Verifiers need the secret,
    /// so such keys are never published; other services use introspection.
    HS256,
}

impl SigningAlgorithm {
    /// The `alg` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EdDSA => "EdDSA",
            Self::ES256 => "ES256",
            Self::HS256 => "HS256",
        }
    }

    pub(crate) fn jwt(self) -> Algorithm {
        match self {
            Self::EdDSA => Algorithm::EdDSA,
            Self::ES256 => Algorithm::ES256,
            Self::HS256 => Algorithm::HS256,
        }
    }
}

impl FromStr for SigningAlgorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "eddsa" | "ed25519" => Ok(Self::EdDSA),
            "es256" => Ok(Self::ES256),
            "hs256" => Ok(Self::HS256),
            other => Err(format!("signing algorithm must be eddsa, es256 or hs256, not {other:?}")),
        }
    }
}

/// Where a key is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    /// Published, not yet signing.
    Next,
    /// Signing.
    Current,
    /// No longer signing; verifies until `verify_until`.
    Retired,
}

/// One key as the key file keeps it.
#[derive(Clone, Serialize, Deserialize)]
pub struct StoredKey {
    /// The `kid` header value: 96 random bits, base64url.
    pub kid: String,
    /// The one algorithm this key is used with.
    pub alg: SigningAlgorithm,
    /// Where the key is in its life.
    pub status: KeyStatus,
    /// When it was made (milliseconds since the epoch).
    pub created_at: i64,
    /// For retired keys: when the last token it signed has expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_until: Option<i64>,
    /// The private material, base64url: an Ed25519 seed, a P-256 scalar or
    /// an HMAC secret, 32 bytes each.
    secret: String,
}

impl fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// Why a key set cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing the key file failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The key file is not a key set.
    #[error("key file {0}: not a Tessera key set: {1}")]
    Format(String, String),
    /// A key's material is unusable.
    #[error("key {0}: {1}")]
    Material(String, String),
}

fn random32() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS CSPRNG is unavailable");
    bytes
}

impl StoredKey {
    /// A fresh key for `alg`.
    pub fn generate(alg: SigningAlgorithm, status: KeyStatus, now: Timestamp) -> Self {
        let mut kid = [0u8; 12];
        getrandom::fill(&mut kid).expect("the OS CSPRNG is unavailable");
        let secret = loop {
            let candidate = random32();
            // A P-256 scalar must be below the group order; any other
            // 32 bytes are valid material.
            if alg != SigningAlgorithm::ES256 || p256::SecretKey::from_slice(&candidate).is_ok() {
                break candidate;
            }
        };
        Self {
            kid: URL_SAFE_NO_PAD.encode(kid),
            alg,
            status,
            created_at: now.as_millis(),
            verify_until: None,
            secret: URL_SAFE_NO_PAD.encode(secret),
        }
    }

    fn material(&self) -> Result<[u8; 32], KeyError> {
        let bytes =
            URL_SAFE_NO_PAD.decode(&self.secret).map_err(|e| KeyError::Material(self.kid.clone(), e.to_string()))?;
        bytes.try_into().map_err(|_| KeyError::Material(self.kid.clone(), "material must be 32 bytes".into()))
    }

    /// The key that signs with it.
    fn encoding_key(&self) -> Result<EncodingKey, KeyError> {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        let material = self.material()?;
        let bad = |e: String| KeyError::Material(self.kid.clone(), e);
        Ok(match self.alg {
            SigningAlgorithm::EdDSA => {
                let der =
                    ed25519_dalek::SigningKey::from_bytes(&material).to_pkcs8_der().map_err(|e| bad(e.to_string()))?;
                EncodingKey::from_ed_der(der.as_bytes())
            }
            SigningAlgorithm::ES256 => {
                use p256::pkcs8::EncodePrivateKey as _;
                let secret = p256::SecretKey::from_slice(&material).map_err(|e| bad(e.to_string()))?;
                let der = secret.to_pkcs8_der().map_err(|e| bad(e.to_string()))?;
                EncodingKey::from_ec_der(der.as_bytes())
            }
            SigningAlgorithm::HS256 => EncodingKey::from_secret(&material),
        })
    }

    /// The key that verifies it, and its public JWK (none for HMAC).
    fn decoding_key(&self) -> Result<(DecodingKey, Option<Value>), KeyError> {
        let material = self.material()?;
        let bad = |e: String| KeyError::Material(self.kid.clone(), e);
        Ok(match self.alg {
            SigningAlgorithm::EdDSA => {
                let public = ed25519_dalek::SigningKey::from_bytes(&material).verifying_key().to_bytes();
                let x = URL_SAFE_NO_PAD.encode(public);
                let key = DecodingKey::from_ed_components(&x).map_err(|e| bad(e.to_string()))?;
                let jwk =
                    json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": self.kid, "alg": "EdDSA", "use": "sig"});
                (key, Some(jwk))
            }
            SigningAlgorithm::ES256 => {
                use p256::elliptic_curve::sec1::ToEncodedPoint;
                let secret = p256::SecretKey::from_slice(&material).map_err(|e| bad(e.to_string()))?;
                let point = secret.public_key().to_encoded_point(false);
                let (Some(x), Some(y)) = (point.x(), point.y()) else {
                    return Err(bad("public point has no coordinates".into()));
                };
                let (x, y) = (URL_SAFE_NO_PAD.encode(x), URL_SAFE_NO_PAD.encode(y));
                let key = DecodingKey::from_ec_components(&x, &y).map_err(|e| bad(e.to_string()))?;
                let jwk =
                    json!({"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": self.kid, "alg": "ES256", "use": "sig"});
                (key, Some(jwk))
            }
            SigningAlgorithm::HS256 => (DecodingKey::from_secret(&material), None),
        })
    }
}

/// The keys of one issuer, as kept in the key file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeySet {
    /// The keys, in no particular order.
    pub keys: Vec<StoredKey>,
    /// When the current key started signing (milliseconds since the epoch).
    #[serde(default)]
    pub rotated_at: i64,
}

impl KeySet {
    /// A new set: a current and a next key of `alg`.
    pub fn generate(alg: SigningAlgorithm, now: Timestamp) -> Self {
        Self {
            keys: vec![
                StoredKey::generate(alg, KeyStatus::Current, now),
                StoredKey::generate(alg, KeyStatus::Next, now),
            ],
            rotated_at: now.as_millis(),
        }
    }

    /// The signing key.
    pub fn current(&self) -> Option<&StoredKey> {
        self.keys.iter().find(|k| k.status == KeyStatus::Current)
    }

    /// Next becomes current (a new next of `alg` is made), current retires
    /// and keeps verifying for `retired_for` (the longest access-token
    /// lifetime plus leeway); retired keys past their time are removed.
    pub fn rotate(&mut self, alg: SigningAlgorithm, now: Timestamp, retired_for: Duration) {
        let mut promoted = false;
        for key in &mut self.keys {
            match key.status {
                KeyStatus::Current => {
                    key.status = KeyStatus::Retired;
                    key.verify_until = Some((now + retired_for).as_millis());
                }
                KeyStatus::Next if !promoted => {
                    key.status = KeyStatus::Current;
                    promoted = true;
                }
                _ => {}
            }
        }
        if !promoted {
            self.keys.push(StoredKey::generate(alg, KeyStatus::Current, now));
        }
        self.keys.retain(|k| k.status != KeyStatus::Next);
        self.keys.push(StoredKey::generate(alg, KeyStatus::Next, now));
        self.rotated_at = now.as_millis();
        self.prune(now);
    }

    /// Whether the current key has signed for `interval` or longer.
    pub fn rotation_due(&self, now: Timestamp, interval: Duration) -> bool {
        now >= Timestamp::from_millis(self.rotated_at) + interval
    }

    /// Removes retired keys whose tokens have all expired; whether any went.
    pub fn prune(&mut self, now: Timestamp) -> bool {
        let before = self.keys.len();
        self.keys.retain(|k| k.status != KeyStatus::Retired || k.verify_until.is_some_and(|t| t > now.as_millis()));
        self.keys.len() != before
    }

    /// Reads a key file.
    pub fn load(path: &Path) -> Result<Option<Self>, KeyError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(KeyError::Io { path: path.display().to_string(), source }),
        };
        #[cfg(unix)]
        if let Ok(meta) = std::fs::metadata(path) {
            use std::os::unix::fs::PermissionsExt;
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(file = %path.display(), "the signing-key file is readable by others than its owner");
            }
        }
        Self::from_json(&text).map(Some).map_err(|e| match e {
            KeyError::Format(_, why) => KeyError::Format(path.display().to_string(), why),
            other => other,
        })
    }

    /// Parses a key file's text; a set must have a current key.
    pub fn from_json(text: &str) -> Result<Self, KeyError> {
        let set: Self = serde_json::from_str(text).map_err(|e| KeyError::Format("-".into(), e.to_string()))?;
        if set.current().is_none() {
            return Err(KeyError::Format("-".into(), "no current key".into()));
        }
        Ok(set)
    }

    /// Writes the key file atomically: a new temporary file (random name,
    /// never an existing file or link, owner-only) renamed over it, and the
    /// directory synced so the rename survives a crash.
    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        let io = |source| KeyError::Io { path: path.display().to_string(), source };
        let mut suffix = [0u8; 9];
        getrandom::fill(&mut suffix).expect("the OS CSPRNG is unavailable");
        let tmp = path.with_extension(format!("{}.tmp", URL_SAFE_NO_PAD.encode(suffix)));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp).map_err(io)?;
        let text = serde_json::to_vec_pretty(self).expect("a key set serializes");
        let written = file.write_all(&text).and_then(|()| file.sync_all()).and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(e));
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        Ok(())
    }
}

/// A key set ready for use: the signing key and every verifying key.
#[derive(Clone)]
pub struct KeyRing {
    signing: (String, SigningAlgorithm, EncodingKey),
    verifying: VerifyingKeys,
    jwks: Value,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing").field("signing", &self.signing.0).field("verifying", &self.verifying).finish()
    }
}

impl KeyRing {
    /// Prepares `set`; fails on a set without a current key or with bad material.
    pub fn new(set: &KeySet) -> Result<Self, KeyError> {
        let current = set.current().ok_or_else(|| KeyError::Material("-".into(), "no current key".into()))?;
        let signing = (current.kid.clone(), current.alg, current.encoding_key()?);
        let mut keys = HashMap::new();
        let mut published = Vec::new();
        for key in &set.keys {
            let (decoding, jwk) = key.decoding_key()?;
            keys.insert(key.kid.clone(), (key.alg, decoding));
            published.extend(jwk);
        }
        Ok(Self { signing, verifying: VerifyingKeys { keys }, jwks: json!({ "keys": published }) })
    }

    /// The `kid`, algorithm and key that sign new tokens.
    pub(crate) fn signing(&self) -> (&str, SigningAlgorithm, &EncodingKey) {
        (&self.signing.0, self.signing.1, &self.signing.2)
    }

    /// Signs `claims` as an access token with the current key.
    pub fn sign(&self, claims: &super::AccessClaims) -> Result<String, super::SigningError> {
        let (kid, alg, key) = self.signing();
        let mut header = jsonwebtoken::Header::new(alg.jwt());
        header.typ = Some(super::ACCESS_TOKEN_TYPE.into());
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, key).map_err(|e| super::SigningError(e.to_string()))
    }

    /// Signs any header and payload with the current key, as given: for
    /// tests that must show what a verifier does with hostile headers
    /// under a valid signature. Never use it to issue tokens.
    #[doc(hidden)]
    pub fn sign_raw(&self, header: &Value, payload: &Value) -> String {
        let (_, alg, key) = self.signing();
        let message =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(payload.to_string()));
        let signature = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg.jwt()).expect("the current key signs");
        format!("{message}.{signature}")
    }

    /// The keys tokens are verified with.
    pub fn verifying(&self) -> &VerifyingKeys {
        &self.verifying
    }

    /// The public keys as a JWKS document (`{"keys": [...]}`): current,
    /// next and still-verifying retired keys; HMAC keys never.
    pub fn jwks(&self) -> &Value {
        &self.jwks
    }
}

/// Verifying keys by `kid`, each with its one algorithm.
#[derive(Clone, Default)]
pub struct VerifyingKeys {
    keys: HashMap<String, (SigningAlgorithm, DecodingKey)>,
}

impl fmt::Debug for VerifyingKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.keys.keys()).finish()
    }
}

impl VerifyingKeys {
    /// Reads a JWKS document, as another service fetches it from the
    /// issuer's `/.well-known/jwks.json`. Every key must name its `kid`
    /// and its `alg` (EdDSA or ES256); symmetric keys are refused, since a
    /// published secret is no secret.
    pub fn from_jwks(text: &str) -> Result<Self, KeyError> {
        let set: jsonwebtoken::jwk::JwkSet =
            serde_json::from_str(text).map_err(|e| KeyError::Format("JWKS".into(), e.to_string()))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let kid =
                jwk.common.key_id.clone().ok_or_else(|| KeyError::Format("JWKS".into(), "a key has no kid".into()))?;
            let alg = match jwk.common.key_algorithm {
                Some(jsonwebtoken::jwk::KeyAlgorithm::EdDSA) => SigningAlgorithm::EdDSA,
                Some(jsonwebtoken::jwk::KeyAlgorithm::ES256) => SigningAlgorithm::ES256,
                other => return Err(KeyError::Material(kid, format!("unsupported or missing alg {other:?}"))),
            };
            let key = DecodingKey::from_jwk(jwk).map_err(|e| KeyError::Material(kid.clone(), e.to_string()))?;
            keys.insert(kid, (alg, key));
        }
        Ok(Self { keys })
    }

    /// The key for `kid`, if it is one of ours.
    pub(crate) fn get(&self, kid: &str) -> Option<&(SigningAlgorithm, DecodingKey)> {
        self.keys.get(kid)
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp::from_millis(1_800_000_000_000);

    #[test]
    fn algorithms_parse() {
        assert_eq!("EdDSA".parse(), Ok(SigningAlgorithm::EdDSA));
        assert_eq!("es256".parse(), Ok(SigningAlgorithm::ES256));
        assert_eq!("HS256".parse(), Ok(SigningAlgorithm::HS256));
        assert!("none".parse::<SigningAlgorithm>().is_err());
        assert!("RS256".parse::<SigningAlgorithm>().is_err());
    }

    #[test]
    fn rotation_promotes_next_and_keeps_the_old_key_verifying_for_a_while() {
        let mut set = KeySet::generate(SigningAlgorithm::EdDSA, NOW);
        let (first, next) = (set.current().unwrap().kid.clone(), set.keys[1].kid.clone());
        set.rotate(SigningAlgorithm::EdDSA, NOW, Duration::from_secs(660));
        assert_eq!(set.current().unwrap().kid, next, "the published next key signs now");
        let old = set.keys.iter().find(|k| k.kid == first).unwrap();
        assert_eq!(old.status, KeyStatus::Retired);
        assert_eq!(set.keys.len(), 3);
        assert!(!set.prune(NOW + Duration::from_secs(659)));
        assert!(set.prune(NOW + Duration::from_secs(660)));
        assert!(set.keys.iter().all(|k| k.kid != first));
    }

    #[test]
    fn the_jwks_publishes_current_and_next_but_never_secrets() {
        for alg in [SigningAlgorithm::EdDSA, SigningAlgorithm::ES256] {
            let ring = KeyRing::new(&KeySet::generate(alg, NOW)).unwrap();
            let keys = ring.jwks()["keys"].as_array().unwrap();
            assert_eq!(keys.len(), 2);
            for k in keys {
                assert_eq!(k["alg"], alg.as_str());
                assert!(k.get("d").is_none() && k.get("k").is_none(), "private part published: {k}");
            }
            let parsed = VerifyingKeys::from_jwks(&ring.jwks().to_string()).unwrap();
            assert_eq!(parsed.len(), 2);
        }
        let hmac = KeyRing::new(&KeySet::generate(SigningAlgorithm::HS256, NOW)).unwrap();
        assert_eq!(hmac.jwks()["keys"].as_array().unwrap().len(), 0);
    }

    #[test]
    fn a_jwks_with_a_symmetric_key_is_refused() {
        let jwks = r#"{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"a","alg":"HS256"}]}"#;
        assert!(VerifyingKeys::from_jwks(jwks).is_err());
    }

    #[test]
    fn the_key_file_round_trips_with_owner_only_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        assert!(KeySet::load(&path).unwrap().is_none());
        let set = KeySet::generate(SigningAlgorithm::ES256, NOW);
        set.save(&path).unwrap();
        let back = KeySet::load(&path).unwrap().unwrap();
        assert_eq!(back.current().unwrap().kid, set.current().unwrap().kid);
        KeyRing::new(&back).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        std::fs::write(&path, "{\"keys\":[]}").unwrap();
        assert!(KeySet::load(&path).is_err(), "a set without a current key is refused");
    }
}
