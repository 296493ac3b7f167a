//! The sandbox: each misbehaviour fails only its own call, with a typed error, and the
//! host and the other adapters keep serving.

mod common;

use std::time::Duration;

use common::{TinyServer, engine, spec};
use homeward_plugin_host::outbound::Denial;
use homeward_plugin_host::{AdapterError, CallError, Preopen};

fn misbehave() -> &'static std::path::Path {
    homeward_plugin_artifacts::fixture_misbehave()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_fails_that_call_and_the_next_call_gets_a_fresh_instance() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine();
    let bad = engine.load(spec("bad", misbehave(), &[("mode", "trap")], dir.path())).unwrap();
    let good = engine.load(spec("good", misbehave(), &[], dir.path())).unwrap();

    let err = bad.list_vms().await.unwrap_err();
    assert!(matches!(err, CallError::Trap { .. }), "{err}");
    assert!(err.to_string().contains("bad"), "the error names the plugin: {err}");

    // The same plugin serves its next call from a fresh instance, and the other plugin
    // was never disturbed.
    assert!(bad.describe().await.is_ok());
    assert_eq!(good.list_vms().await.unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_loop_is_cut_at_the_deadline_while_others_keep_serving() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine();
    let mut s = spec("spinner", misbehave(), &[("mode", "loop")], dir.path());
    s.limits.call_timeout = Duration::from_millis(700);
    let spinner = std::sync::Arc::new(engine.load(s).unwrap());
    let good = engine.load(spec("good", misbehave(), &[], dir.path())).unwrap();

    let spinning = {
        let spinner = spinner.clone();
        tokio::spawn(async move { spinner.list_vms().await })
    };
    // While the spinner spins, the other adapter answers.
    for _ in 0..3 {
        assert!(good.describe().await.is_ok());
    }
    let err = spinning.await.unwrap().unwrap_err();
    assert!(matches!(err, CallError::Timeout { .. }), "{err}");
    assert!(err.to_string().contains("call_timeout_secs"), "the error says how to raise the limit: {err}");
    assert!(spinner.describe().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocating_past_the_cap_is_a_memory_limit_error() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine();
    let mut s = spec("hog", misbehave(), &[("mode", "oom")], dir.path());
    s.limits.memory_mib = 48;
    let hog = engine.load(s).unwrap();
    let err = hog.list_vms().await.unwrap_err();
    assert!(matches!(err, CallError::MemoryLimit { limit_mib: 48, .. }), "{err}");
    assert!(hog.describe().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_but_ungranted_host_is_denied_with_the_config_line_that_allows_it() {
    let server = TinyServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let engine = engine();
    let endpoint = format!("127.0.0.1:{}", server.port);
    let url = format!("http://{endpoint}/sdk");
    let plugin = engine.load(spec("vc", misbehave(), &[("mode", "http"), ("declared", &endpoint), ("url", &url)], dir.path())).unwrap();

    let err = plugin.list_vms().await.unwrap_err();
    match &err {
        CallError::Denied { denial: Denial::NotGranted { target, fix }, .. } => {
            assert_eq!(target.port, server.port);
            assert!(fix.contains(&format!("allow_hosts = [\"http://{endpoint}\"]")), "{fix}");
            assert!(fix.contains("[plugins.vc]"), "{fix}");
        }
        other => panic!("expected a not-granted denial, got {other}"),
    }
    assert_eq!(server.hits(), 0, "no request may leave the sandbox");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_the_manifest_does_not_declare_is_denied_even_when_granted() {
    let server = TinyServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let engine = engine();
    let url = format!("http://127.0.0.1:{}/", server.port);
    let mut s = spec("sneaky", misbehave(), &[("mode", "http"), ("declared", "127.0.0.1:1"), ("url", &url)], dir.path());
    s.allow_hosts = vec!["http://127.0.0.1:*".into()];
    let plugin = engine.load(s).unwrap();
    let err = plugin.list_vms().await.unwrap_err();
    assert!(matches!(err, CallError::Denied { denial: Denial::NotDeclared { .. }, .. }), "{err}");
    assert_eq!(server.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_and_granted_host_is_reached() {
    let server = TinyServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let engine = engine();
    let endpoint = format!("127.0.0.1:{}", server.port);
    let url = format!("http://{endpoint}/sdk");
    let mut s = spec("vc", misbehave(), &[("mode", "http"), ("declared", &endpoint), ("url", &url)], dir.path());
    s.allow_hosts = vec![format!("http://{endpoint}")];
    let plugin = engine.load(s).unwrap();
    let err = plugin.list_vms().await.unwrap_err();
    // The fixture reports the status it got back, which proves the request went out.
    match err.adapter_error() {
        Some(AdapterError::Internal(msg)) => assert!(msg.contains("HTTP 200"), "{msg}"),
        _ => panic!("expected the fixture's report of a response, got {err}"),
    }
    assert_eq!(server.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_invisible_without_a_preopen_and_readable_with_one() {
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    std::fs::create_dir(&site).unwrap();
    std::fs::write(site.join("secret.txt"), b"twelve bytes").unwrap();
    let engine = engine();

    let host_path = site.join("secret.txt").display().to_string();
    let blind = engine.load(spec("blind", misbehave(), &[("mode", "file"), ("file", &host_path)], dir.path())).unwrap();
    let err = blind.list_vms().await.unwrap_err();
    assert!(matches!(err.adapter_error(), Some(AdapterError::PermissionDenied(_))), "{err}");

    let mut s = spec("sighted", misbehave(), &[("mode", "file"), ("file", "/site/secret.txt")], dir.path());
    s.preopens = vec![Preopen { host: site.clone(), guest: "/site".into(), writable: false }];
    let sighted = engine.load(s).unwrap();
    let err = sighted.list_vms().await.unwrap_err();
    match err.adapter_error() {
        Some(AdapterError::Internal(msg)) => assert!(msg.contains("read 12 bytes"), "{msg}"),
        _ => panic!("expected the fixture to read the preopened file, got {err}"),
    }
    assert_eq!(sighted.resolve_guest_path("/site/secret.txt").unwrap(), site.join("secret.txt"));
    assert!(sighted.resolve_guest_path("/site/../etc/passwd").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_come_from_the_environment_variable_the_config_names() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine();
    let var = "HOMEWARD_TEST_SECRET_TOKEN_7F3A";
    let mut s = spec("sec", misbehave(), &[("mode", "secret")], dir.path());
    s.secrets.insert("token".into(), var.into());
    let plugin = engine.load(s).unwrap();

    // SAFETY: this variable is unique to this test.
    unsafe { std::env::remove_var(var) };
    let err = plugin.list_vms().await.unwrap_err();
    match err.adapter_error() {
        Some(AdapterError::PermissionDenied(msg)) => assert!(msg.contains(var), "the error names the variable: {msg}"),
        _ => panic!("expected permission-denied, got {err}"),
    }
    unsafe { std::env::set_var(var, "s3cr3t-value") };
    let err = plugin.list_vms().await.unwrap_err();
    match err.adapter_error() {
        Some(AdapterError::Internal(msg)) => assert!(msg.contains("12 characters"), "{msg}"),
        _ => panic!("expected the fixture's report, got {err}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_value_store_persists_across_instances_and_engines() {
    let dir = tempfile::tempdir().unwrap();
    for expected in 1..=2 {
        let engine = engine();
        let plugin = engine.load(spec("kv", misbehave(), &[("mode", "kv")], dir.path())).unwrap();
        let err = plugin.list_vms().await.unwrap_err();
        match err.adapter_error() {
            Some(AdapterError::Conflict(msg)) => assert_eq!(msg, &format!("kv counter is now {expected}")),
            _ => panic!("expected the fixture's counter, got {err}"),
        }
    }
}
