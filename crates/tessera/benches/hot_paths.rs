//! Micro benchmarks of the per-request hot paths, each beside a baseline
//! measured in the same run (the summary at the end prints the ratios):
//!
//! - token generation (OS CSPRNG) and hashing, against a bare SHA-256;
//! - the token format check, on a good and on a malformed token;
//! - session record encode/decode for Redis, against serde_json alone;
//! - a near-cache hit in `RedisStore::load`, against a `HashMap` lookup
//!   plus clone (the floor for serving an owned record from memory);
//! - signing and verifying access tokens (EdDSA, ES256, HS256), and a
//!   verified-token cache hit in `SignedTokens::verify_bearer` (what the
//!   session layer asks) and in `SignedTokens::verify` (claims decoded
//!   again) against a full Ed25519 verification.
//!
//! `cargo bench -p tessera --all-features --bench hot_paths`. The near-cache case starts a
//! real `redis-server` on a free port through the test harness.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use sha2::{Digest, Sha256};
use tessera::record::Attribute;
use tessera::store::redis::codec;
use tessera::store::redis::RedisStoreConfig;
use tessera::{ClientMeta, RedisStore, SessionRecord, SessionStore, SessionToken, Timestamp, UserId};

fn typical_record() -> SessionRecord {
    let mut record = SessionRecord {
        user_id: Some(UserId::from(42)),
        attributes: Default::default(),
        created_at: Timestamp::from_millis(1_790_000_000_000),
        last_seen: Timestamp::from_millis(1_790_000_000_000),
        idle_deadline: Timestamp::from_millis(1_790_001_800_000),
        absolute_deadline: Timestamp::from_millis(1_790_043_200_000),
        version: 0,
        client: ClientMeta::new(
            Some("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)"),
            Some([10, 1, 2, 3].into()),
        ),
    };
    // One application attribute (Tessera's own sessions hold none).
    let cart = serde_json::json!({"items": [17, 42], "currency": "CNY"});
    record.attributes.insert("cart".into(), Attribute { value: Some(cart), version: 0 });
    record
}

/// Mean time per call of `f`, for the ratio summary.
fn mean(mut f: impl FnMut()) -> Duration {
    let n = 200_000u32;
    let started = Instant::now();
    for _ in 0..n {
        f();
    }
    started.elapsed() / n
}

fn tokens(c: &mut Criterion) {
    let token = SessionToken::generate();
    let text = token.expose();
    let bytes = [7u8; 32];
    c.bench_function("token/generate", |b| b.iter(SessionToken::generate));
    c.bench_function("token/key (sha256)", |b| b.iter(|| black_box(&token).key()));
    c.bench_function("baseline/sha256 of 32 bytes", |b| b.iter(|| Sha256::digest(black_box(bytes))));
    c.bench_function("token/parse valid", |b| b.iter(|| SessionToken::parse(black_box(&text))));
    let bad = "x".repeat(4096);
    c.bench_function("token/parse 4 KB junk", |b| b.iter(|| SessionToken::parse(black_box(&bad))));
}

fn records(c: &mut Criterion) {
    let record = typical_record();
    let value = codec::encode(&record);
    c.bench_function("record/encode (redis value)", |b| b.iter(|| codec::encode(black_box(&record))));
    c.bench_function("record/decode (redis value)", |b| b.iter(|| codec::decode(black_box(&value))));
    let json = serde_json::to_vec(&record).unwrap();
    c.bench_function("baseline/serde_json decode of the record", |b| {
        b.iter(|| serde_json::from_slice::<SessionRecord>(black_box(&json)).unwrap())
    });
}

fn near_cache(c: &mut Criterion) {
    let server = tessera_testkit::RedisServer::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = rt.block_on(async {
        let store = Arc::new(RedisStore::connect(&server.url(), RedisStoreConfig::default()).await.unwrap());
        while !store.near_cache().unwrap().is_trusted() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        store
    });
    let key = store.issue_token(Some(&UserId::from(42))).key();
    let mut record = typical_record();
    let now = tessera::Clock::now(&tessera::SystemClock);
    record.idle_deadline = now + Duration::from_secs(1800);
    record.absolute_deadline = now + Duration::from_secs(12 * 3600);
    rt.block_on(store.create(&key, &record)).unwrap();
    rt.block_on(store.load(&key)).unwrap(); // now cached
    c.bench_function("near cache/hit (RedisStore::load)", |b| {
        b.to_async(&rt).iter(|| async { store.load(black_box(&key)).await.unwrap() })
    });
    let map: HashMap<_, _> = [(key, record.clone())].into_iter().collect();
    c.bench_function("baseline/HashMap get + clone", |b| b.iter(|| map.get(black_box(&key)).cloned()));

    let hit = mean(|| {
        black_box(rt.block_on(store.load(&key)).unwrap());
    });
    let floor = mean(|| {
        black_box(map.get(&key).cloned());
    });
    let token = SessionToken::generate();
    let key_time = mean(|| {
        black_box(token.key());
    });
    let sha = mean(|| {
        black_box(Sha256::digest(black_box([7u8; 32])));
    });
    let value = codec::encode(&record);
    let decode = mean(|| {
        black_box(codec::decode(&value).unwrap());
    });
    let json = serde_json::to_vec(&record).unwrap();
    let json_decode = mean(|| {
        black_box(serde_json::from_slice::<SessionRecord>(&json).unwrap());
    });
    println!("\nratios to baselines (same run, plain timing loops):");
    println!("  token key / bare sha256:        {:>8.2?} / {:>8.2?} = {:.2}", key_time, sha, ratio(key_time, sha));
    println!(
        "  redis decode / serde_json:      {:>8.2?} / {:>8.2?} = {:.2}",
        decode,
        json_decode,
        ratio(decode, json_decode)
    );
    println!("  near-cache hit / HashMap+clone: {:>8.2?} / {:>8.2?} = {:.2}", hit, floor, ratio(hit, floor));
}

fn signed(c: &mut Criterion) {
    use tessera::revocation::MemoryRevocations;
    use tessera::signed::{verify, AccessClaims, Expectations, KeyRing, KeySet, SigningAlgorithm};
    let now = tessera::Clock::now(&tessera::SystemClock);
    let claims = AccessClaims {
        iss: "tessera".into(),
        aud: "tessera".into(),
        sub: UserId::from(42),
        sid: "c2lkLW9mLXRoZS1mYW1pbHktMDEyMzQ1Njc4OWFiY2RlZg".into(),
        iat: now.as_secs(),
        nbf: now.as_secs(),
        exp: now.as_secs() + 600,
        jti: "AAECAwQFBgcICQoLDA0ODw".into(),
        iat_ms: None,
    };
    let expect = Expectations::new("tessera", "tessera", Duration::from_secs(30));
    for alg in [SigningAlgorithm::EdDSA, SigningAlgorithm::ES256, SigningAlgorithm::HS256] {
        let ring = KeyRing::new(&KeySet::generate(alg, now)).unwrap();
        let token = ring.sign(&claims).unwrap();
        c.bench_function(&format!("jwt/sign {}", alg.as_str()), |b| b.iter(|| ring.sign(black_box(&claims)).unwrap()));
        c.bench_function(&format!("jwt/verify {}", alg.as_str()), |b| {
            b.iter(|| verify(black_box(&token), ring.verifying(), &expect, now).unwrap())
        });
    }
    let keys = KeySet::generate(SigningAlgorithm::EdDSA, now);
    let ring = KeyRing::new(&keys).unwrap();
    let token = ring.sign(&claims).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let engine = rt
        .block_on(tessera::SignedTokens::new(
            tessera::TokenSettings::default(),
            &keys,
            Arc::new(MemoryRevocations::new()),
            [1; 32],
        ))
        .unwrap();
    engine.verify(&token, now).unwrap(); // now cached
    c.bench_function("jwt/verified-token cache hit, for a request (SignedTokens::verify_bearer)", |b| {
        b.iter(|| engine.verify_bearer(black_box(&token), now).unwrap())
    });
    c.bench_function("jwt/verified-token cache hit, claims decoded again (SignedTokens::verify)", |b| {
        b.iter(|| engine.verify(black_box(&token), now).unwrap())
    });
    let bearer = mean(|| {
        black_box(engine.verify_bearer(&token, now).unwrap());
    });
    let claims = mean(|| {
        black_box(engine.verify(&token, now).unwrap());
    });
    let full = mean(|| {
        black_box(verify(&token, ring.verifying(), &expect, now).unwrap());
    });
    println!(
        "  cached verify_bearer / full EdDSA verify: {:>8.2?} / {:>8.2?} = {:.4}",
        bearer,
        full,
        ratio(bearer, full)
    );
    println!(
        "  cached verify / full EdDSA verify:        {:>8.2?} / {:>8.2?} = {:.4}",
        claims,
        full,
        ratio(claims, full)
    );
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-12)
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    targets = tokens, records, near_cache, signed
}
criterion_main!(benches);
