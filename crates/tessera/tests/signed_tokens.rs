//! The "Signed tokens" checklist against the verifier: every hostile token
//! a release must refuse, and the rotation and revocation rules.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tessera::revocation::{MemoryRevocations, Revocation};
use tessera::signed::{
    verify, AccessClaims, Expectations, KeyRing, KeySet, RefreshToken, Rejection, SigningAlgorithm, Verifier,
};
use tessera::{ManualClock, SessionKey, SignedTokens, Timestamp, TokenSettings, UserId};

const NOW_SECS: i64 = 1_900_000_000;
const NOW: Timestamp = Timestamp::from_millis(NOW_SECS * 1000);

fn expectations() -> Expectations {
    Expectations::new("https://issuer.example", "shop-api", Duration::from_secs(30))
}

fn claims() -> AccessClaims {
    AccessClaims {
        iss: "https://issuer.example".into(),
        aud: "shop-api".into(),
        sub: UserId::from(42),
        sid: URL_SAFE_NO_PAD.encode([9u8; 32]),
        iat: NOW_SECS,
        nbf: NOW_SECS,
        exp: NOW_SECS + 600,
        jti: "jti-1".into(),
        iat_ms: None,
    }
}

fn ring(alg: SigningAlgorithm) -> (KeySet, KeyRing) {
    let set = KeySet::generate(alg, NOW);
    let ring = KeyRing::new(&set).unwrap();
    (set, ring)
}

fn kid(set: &KeySet) -> String {
    set.current().unwrap().kid.clone()
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

fn check(token: &str, ring: &KeyRing) -> Result<AccessClaims, Rejection> {
    verify(token, ring.verifying(), &expectations(), NOW)
}

fn header(set: &KeySet, extra: Value) -> Value {
    let mut h = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": kid(set)});
    h.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    h
}

#[test]
fn a_well_formed_token_verifies_for_every_algorithm() {
    for alg in [SigningAlgorithm::EdDSA, SigningAlgorithm::ES256, SigningAlgorithm::HS256] {
        let (_, ring) = ring(alg);
        let token = ring.sign(&claims()).unwrap();
        assert_eq!(check(&token, &ring), Ok(claims()), "{alg:?}");
    }
}

#[test]
fn alg_none_is_refused() {
    let (set, ring) = ring(SigningAlgorithm::EdDSA);
    for alg in ["none", "None", "NONE"] {
        let token = format!("{}.{}.", b64(&header(&set, json!({"alg": alg}))), b64(&json!(claims())));
        assert_eq!(check(&token, &ring), Err(Rejection::WrongAlgorithm), "{alg}");
    }
}

#[test]
fn hs256_keyed_with_the_public_key_is_refused() {
    let (set, ring) = ring(SigningAlgorithm::EdDSA);
    let jwk = &ring.jwks()["keys"][0];
    let public = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap();
    // The classic confusion: MAC with the public key's bytes, or its JWK text.
    for secret in [public.clone(), jwk.to_string().into_bytes(), jwk["x"].as_str().unwrap().as_bytes().to_vec()] {
        let message = format!("{}.{}", b64(&header(&set, json!({"alg": "HS256"}))), b64(&json!(claims())));
        let mut mac = Hmac::<Sha256>::new_from_slice(&secret).unwrap();
        mac.update(message.as_bytes());
        let token = format!("{message}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()));
        assert_eq!(check(&token, &ring), Err(Rejection::WrongAlgorithm));
    }
}

#[test]
fn empty_truncated_and_foreign_signatures_are_refused() {
    let (_, ring) = ring(SigningAlgorithm::EdDSA);
    let token = ring.sign(&claims()).unwrap();
    let (message, signature) = token.rsplit_once('.').unwrap();
    let bad_signature =
        |r: Result<AccessClaims, Rejection>| matches!(r, Err(Rejection::BadSignature | Rejection::Malformed));
    assert!(bad_signature(check(&format!("{message}."), &ring)), "empty signature");
    assert!(bad_signature(check(&format!("{message}.{}", &signature[..signature.len() - 8]), &ring)), "truncated");
    let (_, other) = self::ring(SigningAlgorithm::EdDSA);
    let foreign = other.sign(&claims()).unwrap();
    assert_eq!(check(&foreign, &ring), Err(Rejection::UnknownKey), "another issuer's key id");
}

#[test]
fn a_tampered_payload_is_refused() {
    let (_, ring) = ring(SigningAlgorithm::EdDSA);
    let token = ring.sign(&claims()).unwrap();
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut forged = claims();
    forged.sub = UserId::from(1);
    parts[1] = b64(&json!(forged));
    assert_eq!(check(&parts.join("."), &ring), Err(Rejection::BadSignature));
}

#[test]
fn hostile_key_ids_are_unknown_keys() {
    let (set, ring) = ring(SigningAlgorithm::EdDSA);
    for kid in ["../../../../etc/passwd", "/dev/zero", "' OR 1=1 --", "\u{0000}", &"k".repeat(1000)] {
        let token = ring.sign_raw(&header(&set, json!({"kid": kid})), &json!(claims()));
        assert_eq!(check(&token, &ring), Err(Rejection::UnknownKey), "{kid:.30}");
    }
    let token = ring.sign_raw(&json!({"alg": "EdDSA", "typ": "at+jwt"}), &json!(claims()));
    assert_eq!(check(&token, &ring), Err(Rejection::UnknownKey), "no kid at all");
    let huge = ring.sign_raw(&header(&set, json!({"kid": "k".repeat(10_000)})), &json!(claims()));
    assert_eq!(check(&huge, &ring), Err(Rejection::Malformed), "over the size limit, not even parsed");
}

#[tokio::test]
async fn key_urls_and_inline_keys_are_refused_without_any_fetch() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let (set, ring) = ring(SigningAlgorithm::EdDSA);
    // An attacker's own key, inline, with a token it signed.
    let (_, attacker) = self::ring(SigningAlgorithm::EdDSA);
    let attacker_jwk = attacker.jwks()["keys"][0].clone();
    let hostile = [
        json!({"jku": url}),
        json!({"x5u": url}),
        json!({"jwk": attacker_jwk}),
        json!({"x5c": ["MIIB"]}),
        json!({"x5t#S256": "abc"}),
        json!({"crit": ["exp"]}),
        json!({"crit": ["https://example/ext"], "https://example/ext": true}),
    ];
    for extra in hostile {
        // Signed with our own key too: the header alone must sink it.
        let ours = ring.sign_raw(&header(&set, extra.clone()), &json!(claims()));
        assert_eq!(check(&ours, &ring), Err(Rejection::ForbiddenHeader), "{extra}");
        let theirs = attacker.sign_raw(&header(&set, extra.clone()), &json!(claims()));
        assert!(check(&theirs, &ring).is_err(), "{extra}");
    }
    let knock = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
    assert!(knock.is_err(), "the verifier made a network request");
}

#[test]
fn times_are_enforced_with_bounded_leeway() {
    let (_, ring) = ring(SigningAlgorithm::EdDSA);
    let at = |exp: i64, nbf: i64| AccessClaims { exp: NOW_SECS + exp, nbf: NOW_SECS + nbf, ..claims() };
    assert_eq!(check(&ring.sign(&at(-31, -600)).unwrap(), &ring), Err(Rejection::Expired), "past exp beyond leeway");
    assert!(check(&ring.sign(&at(-10, -600)).unwrap(), &ring).is_ok(), "within the 30 s leeway");
    assert_eq!(check(&ring.sign(&at(600, 120)).unwrap(), &ring), Err(Rejection::NotYetValid), "future nbf");
    assert!(check(&ring.sign(&at(600, 20)).unwrap(), &ring).is_ok(), "nbf within leeway");
    let lax = Expectations::new("i", "a", Duration::from_secs(3600));
    assert_eq!(lax.leeway(), Duration::from_secs(60), "leeway is capped at a minute");
}

#[test]
fn issuer_audience_and_required_claims_are_exact() {
    let (set, ring) = ring(SigningAlgorithm::EdDSA);
    let wrong_aud = AccessClaims { aud: "shop-api-evil".into(), ..claims() };
    assert_eq!(check(&ring.sign(&wrong_aud).unwrap(), &ring), Err(Rejection::WrongAudience));
    let wrong_iss = AccessClaims { iss: "https://issuer.example.evil".into(), ..claims() };
    assert_eq!(check(&ring.sign(&wrong_iss).unwrap(), &ring), Err(Rejection::WrongIssuer));
    for missing in ["exp", "nbf", "iss", "aud", "sub", "sid"] {
        let mut payload = json!(claims());
        payload.as_object_mut().unwrap().remove(missing);
        let token = ring.sign_raw(&header(&set, json!({})), &payload);
        assert_eq!(check(&token, &ring), Err(Rejection::Malformed), "missing {missing}");
    }
}

#[test]
fn only_access_tokens_pass_as_access_tokens() {
    let (set, ring) = ring(SigningAlgorithm::EdDSA);
    for typ in [json!("JWT"), json!("refresh+jwt"), json!(null)] {
        let token = ring.sign_raw(&header(&set, json!({"typ": typ})), &json!(claims()));
        assert_eq!(check(&token, &ring), Err(Rejection::WrongType), "typ {typ}");
    }
    let refresh = RefreshToken::generate(SessionKey::from_bytes([1; 32])).expose();
    assert_eq!(check(&refresh, &ring), Err(Rejection::Malformed), "a refresh token is no access token");
    for junk in ["", "a.b", "a.b.c", "....", &"A".repeat(20_000)] {
        assert_eq!(check(junk, &ring), Err(Rejection::Malformed), "{junk:.20}");
    }
}

#[test]
fn rotation_keeps_old_tokens_valid_until_the_old_key_is_removed() {
    let (mut set, ring) = ring(SigningAlgorithm::EdDSA);
    let before = ring.sign(&claims()).unwrap();
    set.rotate(SigningAlgorithm::EdDSA, NOW, Duration::from_secs(660));
    let rotated = KeyRing::new(&set).unwrap();
    assert_eq!(check(&before, &rotated), Ok(claims()), "signed by the previous key, still valid");
    let after = rotated.sign(&claims()).unwrap();
    assert!(check(&after, &rotated).is_ok());
    assert_eq!(check(&after, &ring), Ok(claims()), "the old ring already knew the next key");
    assert_eq!(rotated.jwks()["keys"].as_array().unwrap().len(), 3, "retired, current and a new next");
    set.prune(NOW + Duration::from_secs(661));
    let pruned = KeyRing::new(&set).unwrap();
    assert_eq!(check(&before, &pruned), Err(Rejection::UnknownKey), "a removed key verifies nothing");
}

#[test]
fn another_service_verifies_with_the_jwks_alone() {
    let (_, ring) = ring(SigningAlgorithm::ES256);
    let clock = Arc::new(ManualClock::new(NOW));
    let verifier = Verifier::from_jwks(&ring.jwks().to_string(), "https://issuer.example", "shop-api")
        .unwrap()
        .with_clock(clock.clone());
    let token = ring.sign(&claims()).unwrap();
    assert_eq!(verifier.verify(&token), Ok(claims()));
    clock.advance(Duration::from_secs(700));
    assert_eq!(verifier.verify(&token), Err(Rejection::Expired));
}

/// An engine over memory revocations, switched to `keys` so the test can
/// sign tokens it will accept.
async fn engine(keys: &KeySet) -> SignedTokens {
    let settings = TokenSettings {
        issuer: "https://issuer.example".into(),
        audience: "shop-api".into(),
        ..TokenSettings::default()
    };
    SignedTokens::new(settings, keys, Arc::new(MemoryRevocations::new()), [3; 32]).await.unwrap()
}

#[tokio::test]
async fn cached_tokens_are_still_refused_once_revoked_or_expired() {
    let (keys, ring) = ring(SigningAlgorithm::EdDSA);
    let tokens = engine(&keys).await;
    let token = ring.sign(&claims()).unwrap();
    assert!(tokens.verify(&token, NOW).is_ok());
    assert!(tokens.verify(&token, NOW).is_ok(), "served from the cache");
    assert_eq!(
        tokens.verify(&token, NOW + Duration::from_secs(631)).err(),
        Some(Rejection::Expired),
        "never served past exp + leeway, cached or not"
    );
    assert_eq!(
        tokens.verify(&token, NOW + Duration::from_secs(630)).err(),
        Some(Rejection::Expired),
        "nor at exp + leeway itself"
    );
    let family = tessera::revocation::family_of(&claims().sid).unwrap();
    tokens.revoke(&[tokens.family_revocation(&family, NOW)]).await.unwrap();
    assert_eq!(tokens.verify(&token, NOW).err(), Some(Rejection::Revoked));
    let user_cut = Revocation::User {
        user: UserId::from(42),
        not_before_ms: (NOW_SECS + 1) * 1000,
        until: NOW + Duration::from_secs(700),
    };
    let other_family = AccessClaims { sid: URL_SAFE_NO_PAD.encode([8u8; 32]), ..claims() };
    let other = ring.sign(&other_family).unwrap();
    assert!(tokens.verify(&other, NOW).is_ok());
    tokens.revoke(&[user_cut]).await.unwrap();
    assert_eq!(tokens.verify(&other, NOW).err(), Some(Rejection::Revoked), "logout everywhere reaches every family");
}

#[tokio::test]
async fn a_cached_token_has_the_claims_it_was_verified_with() {
    // The cache keeps only what a request reads; `verify` decodes the rest
    // again from the token, which must give what the first check gave.
    let (keys, ring) = ring(SigningAlgorithm::EdDSA);
    let tokens = engine(&keys).await;
    let issued = AccessClaims { iat_ms: Some(NOW_SECS * 1000 + 250), jti: "j\"ti/é".into(), ..claims() };
    let token = ring.sign(&issued).unwrap();
    assert_eq!(*tokens.verify(&token, NOW).unwrap(), issued);
    // 31 s earlier a full check would refuse it as not yet valid (nbf and
    // 30 s of leeway): only the cache answers there.
    let earlier = NOW - Duration::from_secs(31);
    assert_eq!(verify(&token, ring.verifying(), &expectations(), earlier), Err(Rejection::NotYetValid));
    assert_eq!(*tokens.verify(&token, earlier).unwrap(), issued, "served from the cache");
}

#[tokio::test]
async fn cached_tokens_are_judged_by_their_own_sid_whatever_is_revoked() {
    let (keys, ring) = ring(SigningAlgorithm::EdDSA);
    let tokens = engine(&keys).await;
    let until = NOW + Duration::from_secs(700);
    let issued_ms = NOW_SECS * 1000 + 250;
    // Families whose sids are all `_` and all `-`: spelled with base64's
    // standard alphabet, or padded, they would name other families.
    let kept_sid = URL_SAFE_NO_PAD.encode([0xff; 32]);
    let other_sid = URL_SAFE_NO_PAD.encode(std::array::from_fn::<u8, 32, _>(|i| [0xfb, 0xef, 0xbe][i % 3]));
    assert!(kept_sid.starts_with("____") && other_sid.starts_with("----"));
    let issued = AccessClaims { sid: kept_sid.clone(), iat_ms: Some(issued_ms), ..claims() };
    let kept = ring.sign(&issued).unwrap();
    let other = ring.sign(&AccessClaims { sid: other_sid.clone(), ..issued.clone() }).unwrap();
    let odd = ring.sign(&AccessClaims { sid: "names-no-family".into(), ..issued.clone() }).unwrap();
    let verdicts = |tokens: &SignedTokens| [&kept, &other, &odd].map(|token| tokens.verify(token, NOW).map(|_| ()));
    let revoked = Err(Rejection::Revoked);
    assert_eq!(verdicts(&tokens), [Ok(()), Ok(()), Ok(())], "first checks");
    // An unrelated family: the list is no longer empty, nothing here is refused.
    tokens.revoke(&[Revocation::Family { sid: URL_SAFE_NO_PAD.encode([7u8; 32]), until }]).await.unwrap();
    assert_eq!(verdicts(&tokens), [Ok(()), Ok(()), Ok(())], "from the cache");
    tokens.revoke(&[Revocation::Family { sid: "names-no-family".into(), until }]).await.unwrap();
    assert_eq!(verdicts(&tokens), [Ok(()), Ok(()), revoked], "a sid that names no family");
    let everywhere_else =
        |not_before_ms| Revocation::Others { user: UserId::from(42), not_before_ms, keep: kept_sid.clone(), until };
    tokens.revoke(&[everywhere_else(issued_ms)]).await.unwrap();
    assert_eq!(verdicts(&tokens), [Ok(()), Ok(()), revoked], "issued at the cutoff is not before it");
    tokens.revoke(&[everywhere_else(issued_ms + 1)]).await.unwrap();
    assert_eq!(verdicts(&tokens), [Ok(()), revoked, revoked], "everywhere else: only the kept family stays");
    tokens.revoke(&[Revocation::Family { sid: kept_sid.clone(), until }]).await.unwrap();
    assert_eq!(verdicts(&tokens), [revoked, revoked, revoked], "and then that family too");
}

#[tokio::test]
async fn swapping_keys_drops_tokens_under_removed_keys_even_from_the_cache() {
    let (keys, ring) = ring(SigningAlgorithm::EdDSA);
    let tokens = engine(&keys).await;
    let token = ring.sign(&claims()).unwrap();
    assert!(tokens.verify(&token, NOW).is_ok());
    tokens.set_keys(&KeySet::generate(SigningAlgorithm::EdDSA, NOW)).unwrap();
    assert_eq!(tokens.verify(&token, NOW).err(), Some(Rejection::UnknownKey));
}

#[tokio::test]
async fn a_token_meant_to_outlive_its_revocation_is_refused() {
    // Revocations are remembered for one access-token lifetime (10 min by
    // default); a token signed to live an hour could outlive its revocation.
    let (keys, ring) = ring(SigningAlgorithm::EdDSA);
    let tokens = engine(&keys).await;
    let long = ring.sign(&AccessClaims { exp: NOW_SECS + 3600, ..claims() }).unwrap();
    assert_eq!(tokens.verify(&long, NOW).err(), Some(Rejection::Expired));
    assert!(tokens.verify(&ring.sign(&claims()).unwrap(), NOW).is_ok());
}
