//! A user's devices: list, end one, end all others.

mod support;

use serde_json::Value;
use support::{failure, TestServer, PHONE};

async fn list(app: &TestServer, token: &str) -> Vec<Value> {
    let r = app.get("/user/sessions").bearer_auth(token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["data"].as_array().unwrap().clone()
}

#[tokio::test]
async fn users_see_and_end_their_sessions() {
    let app = TestServer::spawn().await;
    app.register(PHONE).await;
    app.register("13900000002").await;
    let phone = app.login_header(PHONE).await;
    let laptop = app.login_header(PHONE).await;
    let tablet = app.login_header(PHONE).await;
    let stranger = app.login_header("13900000002").await;

    let sessions = list(&app, &phone).await;
    assert_eq!(sessions.len(), 3);
    let current: Vec<&Value> = sessions.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    for s in &sessions {
        for field in ["id", "createdAt", "lastSeen", "userAgent", "ip", "current"] {
            assert!(s.get(field).is_some(), "{field} missing in {s}");
        }
        assert_eq!(s["ip"], "127.0.0.1");
    }
    let text = serde_json::to_string(&sessions).unwrap();
    for token in [&phone, &laptop, &tablet] {
        assert!(!text.contains(token.as_str()), "a token leaked into the list");
    }

    // End the laptop's session from the phone.
    let laptop_id = list(&app, &laptop).await.into_iter().find(|s| s["current"] == true).unwrap()["id"].clone();
    let r = app
        .delete(&format!("/user/sessions/{}", laptop_id.as_str().unwrap()))
        .bearer_auth(&phone)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(failure(app.get("/user/me").bearer_auth(&laptop).send().await.unwrap()).await, (401, 20003));
    assert_eq!(list(&app, &phone).await.len(), 2);

    // Nobody can end someone else's session, or guess ids.
    let stranger_id = list(&app, &stranger).await[0]["id"].as_str().unwrap().to_owned();
    let r = app.delete(&format!("/user/sessions/{stranger_id}")).bearer_auth(&phone).send().await.unwrap();
    assert_eq!(failure(r).await, (404, 20008));
    assert_eq!(app.get("/user/me").bearer_auth(&stranger).send().await.unwrap().status(), 200);

    // End all the others.
    let r = app.delete("/user/sessions").bearer_auth(&phone).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["data"]["revoked"], 1);
    assert_eq!(app.get("/user/me").bearer_auth(&tablet).send().await.unwrap().status(), 401);
    assert_eq!(app.get("/user/me").bearer_auth(&phone).send().await.unwrap().status(), 200);
    assert_eq!(app.get("/user/me").bearer_auth(&stranger).send().await.unwrap().status(), 200);
    assert_eq!(list(&app, &phone).await.len(), 1);
}

#[tokio::test]
async fn ending_ones_own_session_by_id_is_a_logout() {
    let app = TestServer::spawn().await;
    app.register(PHONE).await;
    let token = app.login_header(PHONE).await;
    let id = list(&app, &token).await[0]["id"].as_str().unwrap().to_owned();
    let r = app.delete(&format!("/user/sessions/{id}")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(app.get("/user/me").bearer_auth(&token).send().await.unwrap().status(), 401);
}

#[tokio::test]
async fn logout_everywhere_ends_every_session_of_the_caller_and_clears_the_cookie() {
    let app = TestServer::spawn().await;
    app.register(PHONE).await;
    app.register("13900000002").await;
    let (cookie, csrf) = app.login_cookie(PHONE).await;
    let phone = app.login_header(PHONE).await;
    let stranger = app.login_header("13900000002").await;
    let r = app.post("/user/logout-everywhere").header("cookie", &cookie).header("x-csrf-token", &csrf);
    let r = r.send().await.unwrap();
    assert_eq!(r.status(), 200);
    let cleared = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert_eq!(r.json::<Value>().await.unwrap()["data"]["revoked"], 2);
    assert_eq!(app.get("/user/me").header("cookie", &cookie).send().await.unwrap().status(), 401);
    assert_eq!(app.get("/user/me").bearer_auth(&phone).send().await.unwrap().status(), 401);
    assert_eq!(app.get("/user/me").bearer_auth(&stranger).send().await.unwrap().status(), 200);
    let r = app.post("/user/logout-everywhere").bearer_auth(&phone).send().await.unwrap();
    assert_eq!(failure(r).await, (401, 20003));
}
