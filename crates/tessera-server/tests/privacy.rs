//! What a dump of Redis gives away: after users register, log in over both
//! carriers, fail a login, ask "who am I" and refresh, every key and value
//! in Redis is read back and searched for their phone numbers, names,
//! session and CSRF tokens. Opaque sessions and token mode alike.

mod support;

use serde_json::{json, Value};
use support::{e164, on_redis, TestServer, ORIGIN, PASSWORD};
use tessera_server::configuration::TokenConfig;
use tessera_server::events::EventsConfig;
use tessera_testkit::http::cookie_pair;
use tessera_testkit::RedisServer;

/// A user the test registers: a phone and a name of their own.
struct Person {
    phone: &'static str,
    name: &'static str,
}

const PEOPLE: [Person; 3] = [
    Person { phone: "13811112222", name: "Wang Xiuying" },
    Person { phone: "13933334444", name: "李秀英" },
    Person { phone: "13755556666", name: "Zhang Wei" },
];

/// What must not be found: the people's phones (national and E.164),
/// names, and every token and CSRF token handed out.
#[derive(Default)]
struct Secrets(Vec<(String, String)>);

impl Secrets {
    fn add(&mut self, what: impl Into<String>, value: impl Into<String>) {
        self.0.push((what.into(), value.into()));
    }
}

async fn register(server: &TestServer, person: &Person) {
    let code = server.otp(person.phone).await;
    let r = server
        .post("/user/register")
        .json(&json!({"telephone": person.phone, "otpCode": code, "name": person.name,
                      "gender": 2, "age": 41, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    server.clock.advance(std::time::Duration::from_secs(61));
}

/// Logs `person` in over the header carrier and the cookie carrier, asks
/// "who am I" on both, fails a login; records what was handed out.
async fn use_the_service(server: &TestServer, person: &Person, secrets: &mut Secrets) {
    let header = support::password_login_header(&server.http, &server.url("/user/login"), person.phone).await;
    let token = header["token"].as_str().or(header["accessToken"].as_str()).unwrap().to_owned();
    secrets.add("a header token", &token);
    if let Some(refresh) = header["refreshToken"].as_str() {
        secrets.add("a refresh token", refresh);
    }
    let me: Value = server.get("/user/me").bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["data"]["telephone"], e164(person.phone), "who-am-I still answers with the profile: {me}");
    assert_eq!(me["data"]["name"], person.name);

    let r = server
        .post("/user/login")
        .header("origin", ORIGIN)
        .form(&[("telphone", person.phone), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookies: Vec<String> =
        r.headers().get_all("set-cookie").iter().map(|c| cookie_pair(c.to_str().unwrap())).collect();
    let body: Value = r.json().await.unwrap();
    let csrf = body["data"]["csrfToken"].as_str().unwrap().to_owned();
    for cookie in &cookies {
        secrets.add("a cookie", cookie.split_once('=').unwrap().1);
    }
    secrets.add("a CSRF token", &csrf);
    let r = server.get("/user/csrf").header("cookie", cookies.join("; ")).send().await.unwrap();
    let again: Value = r.json().await.unwrap();
    assert_eq!(again["data"]["csrfToken"], csrf.as_str(), "the CSRF token is the same on a later request");
    let r = server.get("/user/me").header("cookie", cookies.join("; ")).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["data"]["name"], person.name);

    let r = server
        .post("/user/login")
        .header("x-auth-mode", "header")
        .json(&json!({"telephone": person.phone, "password": "not the password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(support::failure(r).await.1, 20002, "a wrong password is a failed login");
    // A pending code too (its challenge lives in Redis).
    server.otp(person.phone).await;
    server.clock.advance(std::time::Duration::from_secs(61));

    let national = person.phone;
    secrets.add(format!("the phone {national}"), national);
    secrets.add(format!("the phone {national}, E.164"), e164(national));
    secrets.add(format!("the name {}", person.name), person.name);
    // cjson may write non-ASCII as \u escapes.
    let escaped: String = person.name.encode_utf16().map(|u| format!("\\u{u:04x}")).collect();
    if !person.name.is_ascii() {
        secrets.add(format!("the name {}, escaped", person.name), escaped);
    }
}

/// Every key in Redis with its value, as bytes: strings, sorted sets,
/// hashes, sets, lists and streams.
async fn dump(redis: &RedisServer) -> Vec<(Vec<u8>, Vec<u8>)> {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query_async(&mut c).await.unwrap();
    let mut out = Vec::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE").arg(&key).query_async(&mut c).await.unwrap();
        let parts: Vec<Vec<u8>> = match kind.as_str() {
            "string" => vec![redis::cmd("GET").arg(&key).query_async(&mut c).await.unwrap()],
            "zset" => {
                redis::cmd("ZRANGE").arg(&key).arg(0).arg(-1).arg("WITHSCORES").query_async(&mut c).await.unwrap()
            }
            "hash" => redis::cmd("HGETALL").arg(&key).query_async(&mut c).await.unwrap(),
            "set" => redis::cmd("SMEMBERS").arg(&key).query_async(&mut c).await.unwrap(),
            "list" => redis::cmd("LRANGE").arg(&key).arg(0).arg(-1).query_async(&mut c).await.unwrap(),
            "stream" => {
                let v: redis::Value =
                    redis::cmd("XRANGE").arg(&key).arg("-").arg("+").query_async(&mut c).await.unwrap();
                vec![format!("{v:?}").into_bytes()]
            }
            other => panic!("a key of type {other} the dump does not read"),
        };
        out.push((key, parts.concat()));
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

async fn nothing_personal_in_redis(token_mode: bool) {
    let redis = RedisServer::start();
    let server = TestServer::spawn_with(|s| {
        on_redis(redis.url())(s);
        if token_mode {
            s.tokens = Some(TokenConfig::default());
        }
        // Events go to the Redis stream too: they must mask what they tell.
        s.events = EventsConfig { webhook: None, stream_max_len: Some(1000), node: "node-a".into() };
    })
    .await;
    let mut secrets = Secrets::default();
    for person in &PEOPLE {
        register(&server, person).await;
        use_the_service(&server, person, &mut secrets).await;
    }
    // Let the event delivery task write the stream.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let dump = dump(&redis).await;
    let sessions = dump.iter().filter(|(k, _)| contains(k, ":s:")).count();
    assert!(sessions >= PEOPLE.len(), "the dump holds the sessions ({sessions} found)");
    for (key, value) in &dump {
        for (what, secret) in &secrets.0 {
            let name = String::from_utf8_lossy(key);
            assert!(!contains(key, secret), "{what} in the name of key {name}");
            assert!(!contains(value, secret), "{what} in the value of key {name}: {}", String::from_utf8_lossy(value));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_holds_no_phone_name_token_or_csrf_token_of_opaque_sessions() {
    nothing_personal_in_redis(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_holds_no_phone_name_token_or_csrf_token_in_token_mode() {
    nothing_personal_in_redis(true).await;
}
