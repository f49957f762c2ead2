//! The standard OAuth and Bearer shapes over HTTP: introspection (RFC 7662)
//! with RFC 6749 §2.3.1 client authentication, named clients and their
//! rate limits; the RFC 6749 §6 refresh and its §5 answers; RFC 6750's
//! `WWW-Authenticate: Bearer`; and authlib, a standard OAuth client, doing
//! both without an adapter.

mod support;

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};
use support::introspect::authlib;
use support::{failure, TestServer, PHONE};
use tessera_server::configuration::{IntrospectionClient, TokenConfig};

/// An `openssl rand -base64 16` secret: `+`, `/` and `=`.
const BILLING_SECRET: &str = "q8+Vd/3xZk1N7pQ0sT2u5w==";
/// A secret with `%` (and a broken escape) and `+`.
const ORDERS_SECRET: &str = "orders%20secret/50%+==";
const SHARED_SECRET: &str = "shared-introspection-secret";

fn client(id: &str, secret: &str) -> IntrospectionClient {
    IntrospectionClient { id: id.into(), secret: secret.into() }
}

/// Token mode, two named clients, the shared secret, `limit` per minute.
async fn server(limit: u32) -> TestServer {
    let server = TestServer::spawn_with(|s| {
        s.tokens = Some(TokenConfig::default());
        s.introspection_secret = Some(SHARED_SECRET.into());
        s.introspection_clients = vec![client("billing", BILLING_SECRET), client("order service", ORDERS_SECRET)];
        s.introspection_rate_limit = limit;
    })
    .await;
    server.register(PHONE).await;
    server
}

/// A header client's login: (access, refresh).
async fn login(server: &TestServer) -> (String, String) {
    let r = server
        .post("/user/login")
        .header("x-auth-mode", "header")
        .json(&json!({"telephone": PHONE, "password": support::PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let data = r.json::<Value>().await.unwrap()["data"].clone();
    (data["accessToken"].as_str().unwrap().to_owned(), data["refreshToken"].as_str().unwrap().to_owned())
}

/// RFC 6749 §2.3.1's encoding of an id or secret before Basic.
fn form(text: &str) -> String {
    serde_urlencoded::to_string([("", text)]).unwrap()[1..].to_owned()
}

fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

/// (status, `WWW-Authenticate`, body) of an introspection with these
/// headers and form fields.
async fn introspect(server: &TestServer, authorization: Option<&str>, fields: &[(&str, &str)]) -> (u16, String, Value) {
    let mut request = server.post("/oauth/introspect").form(fields);
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    let challenge = r.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (status, challenge, r.json().await.unwrap())
}

#[tokio::test]
async fn introspection_clients_authenticate_as_rfc_6749_says() {
    let server = server(1000).await;
    let (access, refresh_token) = login(&server).await;
    let token = [("token", access.as_str())];

    // Basic, id and secret form-encoded first (what Go's x/oauth2 and
    // Nimbus send), and raw as before.
    for authorization in [
        basic("billing", &form(BILLING_SECRET)),
        basic("billing", BILLING_SECRET),
        basic(&form("order service"), &form(ORDERS_SECRET)),
        basic("order service", ORDERS_SECRET),
        basic("anyone", SHARED_SECRET),
        basic("", SHARED_SECRET),
    ] {
        let (status, _, body) = introspect(&server, Some(&authorization), &token).await;
        assert_eq!(status, 200, "{authorization}: {body}");
        assert_eq!(body["active"], true);
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["iss"], "tessera");
        assert!(body["sub"].is_string() && body["exp"].is_i64(), "{body}");
    }
    // Or in the body.
    for fields in [
        [("client_id", "billing"), ("client_secret", BILLING_SECRET)],
        [("client_id", "order service"), ("client_secret", ORDERS_SECRET)],
        [("client_id", "anyone"), ("client_secret", SHARED_SECRET)],
    ] {
        let mut fields = fields.to_vec();
        fields.push(("token", &access));
        let (status, _, body) = introspect(&server, None, &fields).await;
        assert_eq!((status, &body["active"]), (200, &json!(true)), "{fields:?}");
    }

    // A named client's id takes only its own secret; nothing, or a
    // broken header, is no client: 401 invalid_client with a Basic challenge.
    for authorization in [
        Some(basic("billing", ORDERS_SECRET)),
        Some(basic("billing", SHARED_SECRET)),
        Some(basic("billing", &BILLING_SECRET[..20])),
        Some(basic("orders", ORDERS_SECRET)),
        Some("Basic not-base64!".to_owned()),
        None,
    ] {
        let (status, challenge, body) = introspect(&server, authorization.as_deref(), &token).await;
        assert_eq!(status, 401, "{authorization:?}");
        assert_eq!(body, json!({"error": "invalid_client"}));
        assert_eq!(challenge, "Basic realm=\"tessera\"");
    }

    // token_type_hint: accepted, unknown values ignored, never narrowing
    // the search (RFC 7662 §2.1); refresh tokens are never active.
    let billing = basic("billing", &form(BILLING_SECRET));
    for hint in ["access_token", "refresh_token", "id_token", "what"] {
        let fields = [("token", access.as_str()), ("token_type_hint", hint)];
        let (status, _, body) = introspect(&server, Some(&billing), &fields).await;
        assert_eq!((status, &body["active"]), (200, &json!(true)), "{hint}");
        let fields = [("token", refresh_token.as_str()), ("token_type_hint", hint)];
        assert_eq!(introspect(&server, Some(&billing), &fields).await.2, json!({"active": false}), "{hint}");
    }
    let (status, _, body) = introspect(&server, Some(&billing), &[]).await;
    assert_eq!((status, body), (400, json!({"error": "invalid_request"})));
}

#[tokio::test]
async fn each_introspection_client_has_its_own_rate_limit() {
    let server = server(3).await;
    let (access, _) = login(&server).await;
    let token = [("token", access.as_str())];
    let billing = basic("billing", &form(BILLING_SECRET));
    for _ in 0..3 {
        assert_eq!(introspect(&server, Some(&billing), &token).await.0, 200);
    }
    let r = server.post("/oauth/introspect").header("authorization", &billing).form(&token).send().await.unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(failure(r).await, (429, 10003));
    // The same client by body credentials is the same client.
    let body = [("client_id", "billing"), ("client_secret", BILLING_SECRET), ("token", &access)];
    assert_eq!(introspect(&server, None, &body).await.0, 429);
    // Other clients are not affected; holders of the shared secret are one
    // client whatever ids they give.
    assert_eq!(introspect(&server, Some(&basic("order service", ORDERS_SECRET)), &token).await.0, 200);
    for id in ["a", "b", "c"] {
        assert_eq!(introspect(&server, Some(&basic(id, SHARED_SECRET)), &token).await.0, 200);
    }
    assert_eq!(introspect(&server, Some(&basic("d", SHARED_SECRET)), &token).await.0, 429);
    // A wrong secret is refused before it costs the client anything.
    assert_eq!(introspect(&server, Some(&basic("order service", BILLING_SECRET)), &token).await.0, 401);
    server.clock.advance(Duration::from_secs(61));
    assert_eq!(introspect(&server, Some(&billing), &token).await.0, 200, "a new window");
}

/// `POST /auth/refresh` with an RFC 6749 §6 form.
async fn oauth_refresh(server: &TestServer, fields: &[(&str, &str)]) -> (u16, reqwest::header::HeaderMap, Value) {
    let r = server.post("/auth/refresh").form(fields).send().await.unwrap();
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    (status, headers, r.json().await.unwrap())
}

#[tokio::test]
async fn refresh_answers_the_rfc_6749_form_in_rfc_shapes() {
    let server = server(1000).await;
    let (_, first) = login(&server).await;
    let fields = [("grant_type", "refresh_token"), ("refresh_token", &first), ("client_id", "app"), ("scope", "x")];
    let (status, headers, body) = oauth_refresh(&server, &fields).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["pragma"], "no-cache");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 600);
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["access_token", "expires_in", "refresh_token", "token_type"], "no envelope");
    let (access, second) = (body["access_token"].as_str().unwrap(), body["refresh_token"].as_str().unwrap());
    assert_ne!(second, first);
    assert_eq!(server.get("/user/me").bearer_auth(access).send().await.unwrap().status(), 200);

    // The envelope form still works on the token the RFC form handed out.
    let r = server.post("/auth/refresh").json(&json!({"refreshToken": second})).send().await.unwrap();
    let envelope: Value = r.json().await.unwrap();
    assert_eq!(envelope["status"], "success");
    let third = envelope["data"]["refreshToken"].as_str().unwrap().to_owned();

    // Refusals are RFC 6749 §5.2 errors, never the envelope.
    let error = |status: u16, error: &str| (status, json!({ "error": error }));
    let answer = |(status, _, body): (u16, _, Value)| (status, body);
    let garbage = "A".repeat(86);
    for token in [garbage.as_str(), "short", "a.b.c"] {
        let fields = [("grant_type", "refresh_token"), ("refresh_token", token)];
        assert_eq!(answer(oauth_refresh(&server, &fields).await), error(400, "invalid_grant"), "{token}");
    }
    let fields = [("grant_type", "password"), ("refresh_token", third.as_str())];
    assert_eq!(answer(oauth_refresh(&server, &fields).await), error(400, "unsupported_grant_type"));
    let fields = [("grant_type", "refresh_token"), ("refreshToken", third.as_str())];
    assert_eq!(answer(oauth_refresh(&server, &fields).await), error(400, "invalid_request"));
    // A reused token, past the grace window: invalid_grant, and the whole
    // family ends (the live token of the family with it), as ever.
    server.clock.advance(Duration::from_secs(11));
    let fields = [("grant_type", "refresh_token"), ("refresh_token", first.as_str())];
    assert_eq!(answer(oauth_refresh(&server, &fields).await), error(400, "invalid_grant"));
    let fields = [("grant_type", "refresh_token"), ("refresh_token", third.as_str())];
    assert_eq!(answer(oauth_refresh(&server, &fields).await), error(400, "invalid_grant"));
    // The envelope form keeps its own answer.
    let r = server.post("/auth/refresh").json(&json!({"refreshToken": third})).send().await.unwrap();
    assert_eq!(failure(r).await, (401, 20009));
}

fn challenge(r: &reqwest::Response) -> Option<String> {
    r.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn a_refused_bearer_token_gets_the_rfc_6750_challenge_in_both_modes() {
    let invalid = Some("Bearer realm=\"tessera\", error=\"invalid_token\"".to_owned());
    let bare = Some("Bearer realm=\"tessera\"".to_owned());

    let opaque = TestServer::spawn().await;
    opaque.register(PHONE).await;
    let unknown = "A".repeat(43);
    for token in ["garbage", unknown.as_str()] {
        let r = opaque.get("/user/me").bearer_auth(token).send().await.unwrap();
        assert_eq!(challenge(&r), invalid, "{token}");
        assert_eq!(failure(r).await, (401, 20003), "the body stays the course's");
    }
    let r = opaque.get("/user/me").send().await.unwrap();
    assert_eq!(challenge(&r), bare, "no credential: no error code");
    assert_eq!(failure(r).await, (401, 20003));
    // Every route that wants a session, not only /user/me.
    let r = opaque.post("/user/logout-everywhere").bearer_auth(&unknown).send().await.unwrap();
    assert_eq!((r.status().as_u16(), challenge(&r)), (401, invalid.clone()));
    // Not the Bearer scheme: no Bearer challenge.
    let r = opaque.get("/user/me").header("x-auth-token", &unknown).send().await.unwrap();
    assert_eq!((r.status().as_u16(), challenge(&r)), (401, None));
    let r = opaque.get("/user/me").header("cookie", format!("tessera={unknown}")).send().await.unwrap();
    assert_eq!((r.status().as_u16(), challenge(&r)), (401, None));
    // A live session answers as ever.
    let token = opaque.login_header(PHONE).await;
    let r = opaque.get("/user/me").bearer_auth(&token).send().await.unwrap();
    assert_eq!((r.status().as_u16(), challenge(&r)), (200, None));

    let signed = server(1000).await;
    let (access, refresh_token) = login(&signed).await;
    signed.clock.advance(Duration::from_secs(600 + 31));
    let r = signed.get("/user/me").bearer_auth(&access).send().await.unwrap();
    assert_eq!((r.status().as_u16(), challenge(&r)), (401, invalid), "an expired access token");
    // The refresh endpoint's own refusal is no resource's challenge.
    let r = signed.post("/auth/refresh").json(&json!({"refreshToken": "A".repeat(86)})).send().await.unwrap();
    assert_eq!((r.status().as_u16(), challenge(&r)), (401, None));
    let fields = [("grant_type", "refresh_token"), ("refresh_token", refresh_token.as_str())];
    assert_eq!(oauth_refresh(&signed, &fields).await.0, 200, "and refreshing brings the client back");
}

#[tokio::test]
async fn authlib_introspects_and_refreshes_without_an_adapter() {
    let server = server(1000).await;
    let base = format!("http://{}", server.addr);
    let (access, first) = login(&server).await;

    for method in ["client_secret_basic", "client_secret_post"] {
        for (id, secret) in [("billing", BILLING_SECRET), ("order service", ORDERS_SECRET)] {
            let answer = authlib(&["introspect", &base, method, id, secret, &access, "access_token"]).await;
            assert_eq!(answer["status"], 200, "{method} {id}: {answer}");
            assert_eq!(answer["body"]["active"], true);
            assert_eq!(answer["body"]["token_type"], "Bearer");
        }
        let answer = authlib(&["introspect", &base, method, "billing", ORDERS_SECRET, &access]).await;
        assert_eq!((&answer["status"], &answer["body"]["error"]), (&json!(401), &json!("invalid_client")));
    }

    let answer = authlib(&["refresh", &base, &first]).await;
    let token = &answer["token"];
    assert_eq!(token["token_type"], "Bearer", "{answer}");
    assert_eq!(token["expires_in"], 600);
    let (access2, second) = (token["access_token"].as_str().unwrap(), token["refresh_token"].as_str().unwrap());
    assert_eq!(server.get("/user/me").bearer_auth(access2).send().await.unwrap().status(), 200);
    let answer = authlib(&["refresh", &base, second]).await;
    assert!(answer["token"]["access_token"].is_string(), "{answer}");
    // Refusals raise in authlib instead of becoming a token.
    assert_eq!(authlib(&["refresh", &base, &"A".repeat(86)]).await, json!({"error": "invalid_grant"}));
    server.clock.advance(Duration::from_secs(11));
    assert_eq!(authlib(&["refresh", &base, &first]).await, json!({"error": "invalid_grant"}), "reused");
}
