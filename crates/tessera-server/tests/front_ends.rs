//! Pages written for the course's API, as they are: served by Tessera on
//! the API's own origin (`--static-dir`), and reading failures from a 200
//! (`--fail-as-200`).

mod support;

use serde_json::{json, Value};
use support::{failure, TestServer, PASSWORD, PHONE};

fn pages() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("getotp.html"), "<!doctype html><title>getotp</title>").unwrap();
    std::fs::write(dir.path().join("index.html"), "<!doctype html><title>home</title>").unwrap();
    std::fs::create_dir(dir.path().join("static")).unwrap();
    std::fs::write(dir.path().join("static/app.js"), "console.log('hi')").unwrap();
    // A file named like an API path: the API wins.
    std::fs::write(dir.path().join("healthz"), "a file, not the probe").unwrap();
    dir
}

#[tokio::test]
async fn a_static_dir_serves_pages_beside_the_api_which_wins() {
    let dir = pages();
    let path = dir.path().to_path_buf();
    let app = TestServer::spawn_with(move |s| s.static_dir = Some(path)).await;

    let page = app.get("/getotp.html").send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(page.text().await.unwrap().contains("<title>getotp</title>"));
    let script = app.get("/static/app.js").send().await.unwrap();
    assert_eq!(script.status(), 200);
    assert!(script.headers()["content-type"].to_str().unwrap().contains("javascript"));

    let probe: Value = app.get("/healthz").send().await.unwrap().json().await.unwrap();
    assert_eq!(probe["status"], "success", "the API path, not the file");
    let about: Value = app.get("/").send().await.unwrap().json().await.unwrap();
    assert_eq!(about["data"]["service"], "tessera", "GET / stays the API's");

    for request in [
        app.get("/missing.html"),
        app.get("/static/../../etc/passwd"),
        app.get("/%2e%2e/%2e%2e/etc/passwd"),
        app.post("/getotp.html"),
        app.delete("/static/app.js"),
    ] {
        assert_eq!(failure(request.send().await.unwrap()).await, (404, 10007));
    }
}

#[tokio::test]
async fn a_missing_static_dir_is_refused_at_start() {
    let args = tessera_server::configuration::ServeArgs {
        pages: tessera_server::configuration::PagesArgs {
            static_dir: Some("/nonexistent/tessera-pages".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let error = args.resolve().unwrap_err().to_string();
    assert!(error.contains("--static-dir"), "{error}");
}

#[tokio::test]
async fn in_the_200_mode_business_failures_answer_200_and_transport_failures_do_not() {
    let app = TestServer::spawn_with(|s| s.fail_as_200 = true).await;
    app.register(PHONE).await;

    // The course's pages read errMsg from a 200.
    let login = |password: &str| app.post("/user/login").form(&[("telphone", PHONE), ("password", password)]);
    let r = login("wrong password").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!((body["status"].as_str(), body["data"]["errCode"].as_u64()), (Some("fail"), Some(20002)));
    let r = app.get("/user/me").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("www-authenticate").is_none(), "no challenge on a 200");
    assert_eq!(r.json::<Value>().await.unwrap()["data"]["errCode"], 20003);
    let r = app.post("/user/register").json(&json!({"telephone": "123"})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["data"]["errCode"], 10001);

    // A throttle keeps its 429 and Retry-After: clients must wait.
    app.otp(PHONE).await;
    let r = app.post("/user/getotp").json(&json!({"telephone": PHONE})).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_some());

    // Outside the user API statuses stay real: proxies act on them.
    assert_eq!(app.get("/auth/verify").send().await.unwrap().status(), 401);

    // Success is unchanged.
    assert_eq!(login(PASSWORD).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn without_the_200_mode_statuses_are_real() {
    let app = TestServer::spawn().await;
    assert_eq!(failure(app.get("/user/me").send().await.unwrap()).await, (401, 20003));
}

#[tokio::test]
async fn browsers_get_tesseras_pages_and_api_clients_the_about_object() {
    let app = TestServer::spawn().await;
    let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    let home = app.get("/").header("accept", browser).send().await.unwrap();
    assert_eq!(home.status(), 200);
    let h = home.headers().clone();
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    assert_eq!(h["cache-control"], "no-cache", "revalidated, not no-store: the page holds no personal data");
    assert_eq!(h["vary"], "Accept");
    assert!(h["content-security-policy"].to_str().unwrap().contains("script-src 'self'"));
    assert!(home.text().await.unwrap().contains("/ui/app.js"));
    // A browser revalidating gets a 304.
    let again = app.get("/").header("accept", browser).header("if-none-match", &h["etag"]).send().await.unwrap();
    assert_eq!(again.status(), 304);

    // API clients keep the about object, and its docs link works.
    let about = app.get("/").send().await.unwrap();
    assert_eq!(about.headers()["vary"], "Accept");
    assert_eq!(about.headers()["cache-control"], "no-store");
    let about: Value = about.json().await.unwrap();
    assert_eq!(about["data"]["service"], "tessera");
    let docs = app.get(about["data"]["docs"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(docs.status(), 200);
    assert_eq!(docs.headers()["content-type"], "text/markdown; charset=utf-8");
    assert!(docs.text().await.unwrap().starts_with("# Tessera"));

    for (path, kind) in [
        ("/ui/register", "text/html"),
        ("/ui/login", "text/html"),
        ("/ui/account", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/style.css", "text/css"),
    ] {
        let r = app.get(path).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with(kind), "{path}");
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    }
    for missing in ["/ui/", "/ui/README.md", "/ui/index.html", "/ui/../Cargo.toml"] {
        assert_eq!(failure(app.get(missing).send().await.unwrap()).await, (404, 10007), "{missing}");
    }
}

#[tokio::test]
async fn err_msg_is_english_when_the_request_prefers_it() {
    let app = TestServer::spawn().await;
    let me = |lang: Option<&'static str>| {
        let mut r = app.get("/user/me");
        if let Some(lang) = lang {
            r = r.header("accept-language", lang);
        }
        async move { r.send().await.unwrap().json::<Value>().await.unwrap()["data"]["errMsg"].clone() }
    };
    assert_eq!(me(None).await, "用户还未登陆");
    for english in ["en", "en-US", "en;q=0.9,zh;q=0.8", "fr-FR, en-GB;q=0.5"] {
        assert_eq!(me(Some(english)).await, "not logged in", "{english}");
    }
    for chinese in ["zh-CN,en;q=0.5", "zh", "fr", "*", "en;q=0"] {
        assert_eq!(me(Some(chinese)).await, "用户还未登陆", "{chinese}");
    }

    // Validation messages, every one, in the course's order.
    let r = app.post("/user/register").header("accept-language", "en-US").json(&json!({"age": "x"})).send().await;
    assert_eq!(
        r.unwrap().json::<Value>().await.unwrap()["data"]["errMsg"],
        "verification code is required,name is required,gender is required,age must be a whole number,\
         phone number is required,password is required"
    );
    let r = app.post("/user/getotp").header("accept-language", "en").json(&json!({"telephone": "12"})).send().await;
    assert_eq!(r.unwrap().json::<Value>().await.unwrap()["data"]["errMsg"], "phone number is not valid");
    let r = app.post("/user/getotp").json(&json!({"telephone": "12"})).send().await;
    assert_eq!(r.unwrap().json::<Value>().await.unwrap()["data"]["errMsg"], "手机号格式不正确");

    // The session layer's refusals too: a CSRF refusal names its reason.
    app.register(PHONE).await;
    let (cookie, _csrf) = app.login_cookie(PHONE).await;
    let r = app
        .post("/user/logout")
        .header("cookie", &cookie)
        .header("origin", "https://evil.example")
        .header("accept-language", "en")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<Value>().await.unwrap()["data"]["errMsg"],
        "cross-site request refused: its origin is not an allowed origin"
    );
}
