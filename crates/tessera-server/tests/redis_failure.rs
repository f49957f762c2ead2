//! The service on Redis when Redis fails: a stopped server, and a Sentinel
//! failover.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{failure, on_redis, TestServer, PHONE};
use tessera_testkit::{RedisServer, SentinelSetup};

async fn me(app: &TestServer, token: &str) -> u16 {
    app.get("/user/me").bearer_auth(token).send().await.map(|r| r.status().as_u16()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_is_503_then_the_node_recovers_without_a_restart() {
    let mut redis = RedisServer::start();
    let app = TestServer::spawn_with(on_redis(redis.url())).await;
    app.register(PHONE).await;
    let token = app.login_header(PHONE).await;
    assert_eq!(me(&app, &token).await, 200);

    redis.kill();
    tokio::time::sleep(Duration::from_millis(100)).await;
    for request in [
        app.get("/user/me").bearer_auth(&token),
        app.post("/user/getotp").json(&json!({"telephone": PHONE})),
        app.post("/user/login").json(&json!({"telephone": PHONE, "password": support::PASSWORD})),
        app.get("/healthz"),
    ] {
        let started = Instant::now();
        let r = request.send().await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(2), "bounded: {:?}", started.elapsed());
        assert_eq!(r.headers()["retry-after"], "1");
        assert_eq!(failure(r).await, (503, 10004));
    }

    redis.restart();
    let started = Instant::now();
    while app.get("/healthz").send().await.unwrap().status() != 200 {
        assert!(started.elapsed() < Duration::from_secs(10), "the node never recovered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The restarted Redis kept nothing (no persistence in the test): the old
    // session is gone, and new logins work.
    assert_eq!(me(&app, &token).await, 401);
    let token = app.login_header(PHONE).await;
    assert_eq!(me(&app, &token).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_keeps_sessions_and_revocations() {
    let mut setup = SentinelSetup::start();
    let app = TestServer::spawn_with(on_redis(setup.url())).await;
    app.register(PHONE).await;
    let kept = app.login_header(PHONE).await;
    let ended = app.login_header(PHONE).await;
    let r = app.post("/user/logout").bearer_auth(&ended).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(me(&app, &ended).await, 401);
    // Let the replica catch up with the login (the logout already waited).
    setup.master.cmd("WAIT 1 2000");

    let old_master = setup.master.port();
    setup.master.kill();
    let started = Instant::now();
    loop {
        let promoted = setup.current_master_port().is_some_and(|p| p != old_master);
        if promoted && me(&app, &kept).await == 200 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "failover did not complete");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("service back {:?} after the master died", started.elapsed());
    assert_eq!(setup.current_master_port(), Some(setup.replica.port()));
    assert_eq!(me(&app, &ended).await, 401, "a session ended before the failover stays ended");
    let fresh = app.login_header(PHONE).await;
    assert_eq!(me(&app, &fresh).await, 200, "new logins work on the new master");
    let body: Value = app.get("/user/sessions").bearer_auth(&fresh).send().await.unwrap().json().await.unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 2, "kept and fresh");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_mode_refuses_to_judge_access_tokens_while_cut_off_from_revocations() {
    let mut redis = RedisServer::start();
    let app = TestServer::spawn_with(|s| {
        on_redis(redis.url())(s);
        s.tokens = Some(tessera_server::configuration::TokenConfig::default());
    })
    .await;
    app.register(PHONE).await;
    let access = app.login_header(PHONE).await;
    assert_eq!(me(&app, &access).await, 200);

    // No store round trip per request, yet no blind trust either: once the
    // revocation feed is lost, a revocation could go unseen, so 503.
    redis.kill();
    let started = Instant::now();
    let refused = loop {
        let r = app.get("/user/me").bearer_auth(&access).send().await.unwrap();
        if r.status() == 503 {
            break r;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "still judging tokens without the revocation feed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_eq!(failure(refused).await, (503, 10004));

    redis.restart();
    let started = Instant::now();
    while me(&app, &access).await != 200 {
        assert!(started.elapsed() < Duration::from_secs(10), "never resubscribed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
