//! Every error code, with its HTTP status, over real HTTP.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{failure, TestServer, PASSWORD, PHONE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn parameter_errors_are_10001_with_the_course_messages() {
    let app = TestServer::spawn().await;
    let r = app.post("/user/register").json(&json!({"otpCode": "123456"})).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["data"]["errCode"], 10001);
    assert_eq!(body["data"]["errMsg"], "用户名不能为空,性别不能不填写,年龄不能不填写,手机号不能为空,密码不能为空");
    let r = app
        .post("/user/register")
        .json(&json!({"telephone": PHONE, "otpCode": "123456", "name": "x", "gender": 1, "age": 200, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["data"]["errMsg"], "年龄必须小于150岁");

    let cases = [
        app.post("/user/getotp").json(&json!({})).send(),
        app.post("/user/getotp").json(&json!({"telephone": "12"})).send(),
        app.post("/user/getotp").header("content-type", "application/json").body("{not json").send(),
        app.post("/user/getotp").header("content-type", "application/json").body("[]").send(),
        app.post("/user/getotp").header("content-type", "text/plain").body("telephone=1").send(),
        app.post("/user/getotp").json(&json!({"telephone": {"$gt": ""}})).send(),
        app.post("/user/getotp").form(&[("telephone", "x".repeat(20_000))]).send(),
        app.post("/user/login").json(&json!({"telephone": PHONE})).send(),
    ];
    for case in cases {
        assert_eq!(failure(case.await.unwrap()).await, (400, 10001));
    }
}

#[tokio::test]
async fn a_body_is_read_up_to_16_kib_and_refused_past_it() {
    let app = TestServer::spawn().await;
    // A JSON body of exactly `len` bytes: an invalid telephone padded out.
    let body_of = |len: usize| {
        let shell = json!({"telephone": "12", "pad": ""}).to_string();
        json!({"telephone": "12", "pad": "x".repeat(len - shell.len())}).to_string()
    };
    let send = |body: String| app.post("/user/getotp").header("content-type", "application/json").body(body).send();
    let read = |r: reqwest::Response| async move {
        assert_eq!(r.status(), 400);
        r.json::<Value>().await.unwrap()["data"]["errMsg"].as_str().unwrap().to_owned()
    };
    // At the limit the body is read, and its telephone judged.
    let at_limit = read(send(body_of(16 * 1024)).await.unwrap()).await;
    assert!(!at_limit.contains("16384"), "{at_limit}");
    // One byte past it, the body itself is refused, with the limit named.
    assert_eq!(read(send(body_of(16 * 1024 + 1)).await.unwrap()).await, "请求体不能超过16384字节");
    // However it arrives: without a length up front (chunked), too.
    let mut raw = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = "POST /user/getotp HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
                transfer-encoding: chunked\r\nconnection: close\r\n\r\n";
    raw.write_all(head.as_bytes()).await.unwrap();
    for chunk in [r#"{"telephone":"12","pad":""#.to_owned(), "x".repeat(20 * 1024), r#""}"#.to_owned()] {
        raw.write_all(format!("{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes()).await.unwrap();
    }
    raw.write_all(b"0\r\n\r\n").await.unwrap();
    // The server answers and closes with part of the body unread, which
    // may end the connection with a reset after the answer: keep what
    // arrived before it.
    let (mut answer, mut buf) = (Vec::new(), [0u8; 4096]);
    while let Ok(n @ 1..) = raw.read(&mut buf).await {
        answer.extend_from_slice(&buf[..n]);
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("请求体不能超过16384字节"), "{answer}");
}

#[tokio::test]
async fn login_failures_are_20002_and_identical_for_unknown_phones() {
    let app = TestServer::spawn().await;
    app.register(PHONE).await;
    let attempt = |phone: &'static str, password: &'static str| {
        app.post("/user/login").json(&json!({"telephone": phone, "password": password})).send()
    };
    let wrong_password = attempt(PHONE, "wrong password!").await.unwrap();
    let unknown_phone = attempt("13900000000", PASSWORD).await.unwrap();
    assert_eq!(wrong_password.status(), 401);
    assert_eq!(unknown_phone.status(), 401);
    let (a, b): (Value, Value) = (wrong_password.json().await.unwrap(), unknown_phone.json().await.unwrap());
    assert_eq!(a, b);
    assert_eq!(a["data"]["errCode"], 20002);
    // A wrong or absent OTP at login is the same failure.
    let r = app.post("/user/login").json(&json!({"telephone": PHONE, "otpCode": "000000"})).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), a);
}

#[tokio::test]
async fn not_logged_in_is_20003_for_missing_or_malformed_credentials() {
    let app = TestServer::spawn().await;
    let long = "x".repeat(4096);
    let requests = [
        app.get("/user/me"),
        app.get("/user/me").bearer_auth("garbage"),
        app.get("/user/me").header("x-auth-token", long.as_str()),
        app.get("/user/me").header("cookie", "tessera=%00%0D%0A"),
        app.get("/user/me").bearer_auth("' OR '1'='1"),
        app.get("/user/get?id=1"),
        app.get("/user/sessions"),
        app.get("/user/me?token=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
    ];
    for request in requests {
        let r = request.send().await.unwrap();
        let text = r.text().await.unwrap();
        assert!(!text.contains("garbage") && !text.contains("OR"), "nothing echoed: {text}");
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["data"]["errCode"], 20003, "{text}");
    }
}

#[tokio::test]
async fn unknown_users_are_20001_and_bad_ids_10001() {
    let app = TestServer::spawn().await;
    app.register(PHONE).await;
    let token = app.login_header(PHONE).await;
    assert_eq!(failure(app.get("/user/get?id=999").bearer_auth(&token).send().await.unwrap()).await, (404, 20001));
    assert_eq!(failure(app.get("/user/get?id=abc").bearer_auth(&token).send().await.unwrap()).await, (400, 10001));
    assert_eq!(failure(app.get("/user/get").bearer_auth(&token).send().await.unwrap()).await, (400, 10001));
}

#[tokio::test]
async fn registering_twice_is_409_only_after_a_valid_code() {
    let app = TestServer::spawn().await;
    app.register(PHONE).await;
    let body = |code: &str| json!({"telephone": PHONE, "otpCode": code, "name": "李四", "gender": 2, "age": 20, "password": PASSWORD});
    // Without a valid code nobody learns the phone is taken.
    let r = app.post("/user/register").json(&body("000000")).send().await.unwrap();
    assert_eq!(failure(r).await, (400, 20006));
    let code = app.otp(PHONE).await;
    let wrong = if code == "111111" { "222222" } else { "111111" };
    let r = app.post("/user/register").json(&body(wrong)).send().await.unwrap();
    assert_eq!(failure(r).await, (400, 20005));
    let r = app.post("/user/register").json(&body(&code)).send().await.unwrap();
    assert_eq!(failure(r).await, (409, 20004));
}

#[tokio::test]
async fn a_failing_sms_gateway_is_20007_and_leaves_no_usable_code() {
    let app = TestServer::spawn().await;
    app.sink.status.store(500, std::sync::atomic::Ordering::SeqCst);
    let r = app.post("/user/getotp").json(&json!({"telephone": PHONE})).send().await.unwrap();
    assert_eq!(failure(r).await, (502, 20007));
    let leaked = app.sink.last_code(&support::e164(PHONE));
    let r = app
        .post("/user/register")
        .json(&json!({"telephone": PHONE, "otpCode": leaked, "name": "x", "gender": 1, "age": 1, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(failure(r).await, (400, 20006));
}

#[tokio::test]
async fn throttles_are_429_with_retry_after() {
    let app = TestServer::spawn().await;
    assert_eq!(app.post("/user/getotp").json(&json!({"telephone": PHONE})).send().await.unwrap().status(), 200);
    let r = app.post("/user/getotp").json(&json!({"telephone": PHONE})).send().await.unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(failure(r).await, (429, 10003));
    app.clock.advance(Duration::from_secs(retry));
    assert_eq!(app.post("/user/getotp").json(&json!({"telephone": PHONE})).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn a_lost_database_is_503_with_retry_after_and_no_panic() {
    let app = TestServer::spawn().await;
    app.register(PHONE).await;
    let token = app.login_header(PHONE).await;
    app.pool.close().await;
    for r in [
        app.get("/user/me").bearer_auth(&token).send().await.unwrap(),
        app.get("/healthz").send().await.unwrap(),
        app.post("/user/getotp").json(&json!({"telephone": PHONE})).send().await.unwrap(),
    ] {
        assert_eq!(r.headers()["retry-after"], "1");
        assert_eq!(failure(r).await, (503, 10004));
    }
}

#[tokio::test]
async fn unknown_paths_are_10007() {
    let app = TestServer::spawn().await;
    assert_eq!(failure(app.get("/user/nope").send().await.unwrap()).await, (404, 10007));
}

#[tokio::test]
async fn internal_errors_are_10002_and_say_nothing_inside() {
    use axum::response::IntoResponse;
    let r = tessera_server::error::ApiError::internal("constraint failed: secret_table.column").into_response();
    assert_eq!(r.status(), 500);
    let bytes = axum::body::to_bytes(r.into_body(), 4096).await.unwrap();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    assert!(!text.contains("secret_table"), "{text}");
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["data"]["errCode"], 10002);
}
