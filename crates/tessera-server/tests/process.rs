//! The real `tessera` binary: start-up, console OTP sender, SIGTERM, and a
//! restart on the same data directory after which tokens still work.

mod support;

use std::ffi::OsStr;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use support::node::{Node, BIN};
use tokio::process::Command;

/// A node with the console OTP sender on `data`.
async fn console_node(data: &Path) -> Node {
    Node::launch([OsStr::new("--otp-sender"), OsStr::new("console"), OsStr::new("--data-dir"), data.as_os_str()], &[])
        .await
}

#[tokio::test]
async fn tokens_survive_a_restart_on_the_same_data_directory() {
    let data = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let mut server = console_node(data.path()).await;
    let base = server.base.clone();

    let r = http.post(format!("{base}/user/getotp")).json(&json!({"telephone": "13812345678"})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let code = server.code().await;
    let r = http
        .post(format!("{base}/user/register"))
        .json(&json!({"telephone": "13812345678", "otpCode": code, "name": "n", "gender": 2, "age": 40, "password": "a long password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .post(format!("{base}/user/login"))
        .header("x-auth-mode", "header")
        .json(&json!({"telephone": "13812345678", "password": "a long password"}))
        .send()
        .await
        .unwrap();
    let token = r.json::<Value>().await.unwrap()["data"]["token"].as_str().unwrap().to_owned();
    server.stop().await;

    #[cfg(unix)]
    {
        // Password hashes, session digests and the secret: owner only.
        use std::os::unix::fs::PermissionsExt;
        for file in ["secret", "tessera.db", "tessera.db-wal", "tessera.db-shm"] {
            let path = data.path().join(file);
            if (file.ends_with("-wal") || file.ends_with("-shm")) && !path.exists() {
                continue; // checkpointed away at a clean stop
            }
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
    }

    let server = console_node(data.path()).await;
    let r = http.get(format!("{}/user/me", server.base)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["data"]["telephone"], "+8613812345678");
    server.stop().await;
}

#[tokio::test]
async fn help_documents_every_flag_and_bad_flags_fail_clearly() {
    let out = std::process::Command::new(BIN).args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--bind",
        "--data-dir",
        "--carrier",
        "--dev",
        "--otp-sender",
        "--otp-webhook",
        "--allowed-origin",
        "--config",
        "TESSERA_BIND",
        "TESSERA_DATA_DIR",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
    let out = std::process::Command::new(BIN).args(["serve", "--otp-sender", "webhook"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr).unwrap().contains("--otp-webhook"));
}

#[tokio::test]
async fn a_config_file_is_read() {
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("tessera.toml");
    std::fs::write(&config, format!("data-dir = {:?}\ncarrier = \"header\"\n", data.path().join("d"))).unwrap();
    let node = Node::launch([OsStr::new("--config"), config.as_os_str()], &[]).await;
    assert!(node.base.starts_with("http://127.0.0.1:"), "{}", node.base);
    assert!(data.path().join("d").join("tessera.db").exists(), "data-dir from the file was used");
    node.stop().await;
}

#[tokio::test]
async fn a_second_process_without_redis_refuses_a_data_directory_in_use() {
    let data = tempfile::tempdir().unwrap();
    let first = console_node(data.path()).await;
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        Command::new(BIN).args(["serve", "--dev", "--bind", "127.0.0.1:0"]).arg("--data-dir").arg(data.path()).output(),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another tessera process") && err.contains("--redis"), "{err}");
    first.stop().await;
}

#[tokio::test]
async fn keys_rotate_rotates_the_named_key_file() {
    let data = tempfile::tempdir().unwrap();
    let shared = data.path().join("shared-keys.json");
    let rotate = |how: &[&str], env: &[(&str, &std::path::Path)]| {
        let mut command = std::process::Command::new(BIN);
        command.args(["keys", "rotate", "--data-dir"]).arg(data.path().join("d")).args(how);
        for (k, v) in env {
            command.env(k, v);
        }
        let out = command.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        std::fs::read_to_string(&shared).unwrap()
    };
    let first = rotate(&["--keys-file", shared.to_str().unwrap()], &[]);
    let second = rotate(&[], &[("TESSERA_KEYS_FILE", &shared)]);
    assert_ne!(first, second, "TESSERA_KEYS_FILE names the file rotated");
    let config = data.path().join("tessera.toml");
    std::fs::write(&config, format!("keys-file = {shared:?}\n")).unwrap();
    let third = rotate(&["--config", config.to_str().unwrap()], &[]);
    assert_ne!(second, third, "so does the config file");
    assert!(!data.path().join("d").join("signing-keys.json").exists(), "the default file was left alone");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&shared).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
