//! Loading: pins, versions, the compiled-code cache.

mod common;

use common::{engine, spec};
use homeward_plugin_host::cache::CacheOutcome;
use homeward_plugin_host::{EngineOptions, LoadError, PluginEngine, SUPPORTED_WIT_VERSION};

fn misbehave() -> &'static std::path::Path {
    homeward_plugin_artifacts::fixture_misbehave()
}

#[test]
fn a_wrong_pin_is_refused_and_the_error_gives_both_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec("pinned", misbehave(), &[], dir.path());
    let actual = s.sha256.clone();
    s.sha256 = "0".repeat(64);
    let err = engine().load(s).err().expect("refused");
    assert!(matches!(err, LoadError::HashMismatch { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains(&actual) && text.contains(&"0".repeat(64)), "{text}");
}

#[test]
fn the_version_is_read_before_instantiation_and_a_foreign_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // Same-length rewrite of every `homeward:adapter/...@0.1.0` name to 0.9.0, which
    // keeps the binary well-formed.
    let bytes = std::fs::read(misbehave()).unwrap();
    let needle = format!("@{SUPPORTED_WIT_VERSION}");
    let mut rewritten = bytes.clone();
    let mut i = 0;
    while let Some(pos) = rewritten[i..].windows(needle.len()).position(|w| w == needle.as_bytes()) {
        let at = i + pos;
        let before = &rewritten[at.saturating_sub(40)..at];
        if before.windows(17).any(|w| w == b"homeward:adapter/") {
            rewritten[at..at + needle.len()].copy_from_slice(b"@0.9.0");
        }
        i = at + needle.len();
    }
    assert_ne!(bytes, rewritten);
    let path = dir.path().join("future.wasm");
    std::fs::write(&path, &rewritten).unwrap();
    let err = engine().load(spec("future", &path, &[], dir.path())).err().expect("refused");
    match &err {
        LoadError::IncompatibleVersion { found, supported, .. } => {
            assert_eq!(found, "0.9.0");
            assert_eq!(supported, SUPPORTED_WIT_VERSION);
        }
        other => panic!("expected an incompatible-version error, got {other}"),
    }
}

#[test]
fn a_core_module_is_not_an_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("module.wasm");
    std::fs::write(&path, b"\0asm\x01\0\0\0").unwrap();
    let err = engine().load(spec("module", &path, &[], dir.path())).err().expect("refused");
    assert!(matches!(err, LoadError::NotAComponent { .. }), "{err}");
}

#[test]
fn the_manifest_and_exports_are_readable_without_instantiating() {
    let bytes = std::fs::read(misbehave()).unwrap();
    let info = homeward_plugin_host::inspect::inspect(&bytes).unwrap();
    assert_eq!(info.wit_version.as_deref(), Some(SUPPORTED_WIT_VERSION));
    let manifest = info.manifest.unwrap();
    assert_eq!(manifest.name, "misbehave");
    assert_eq!(manifest.outbound, vec!["http://{{declared}}".to_string()]);
    assert!(info.exports.iter().any(|e| e == "homeward:adapter/disks@0.1.0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_start_loads_compiled_code_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let options = EngineOptions { cache_dir: Some(dir.path().join("cache")), ..EngineOptions::default() };
    let first = PluginEngine::new(options.clone()).unwrap().load(spec("p", misbehave(), &[], dir.path())).unwrap();
    assert_eq!(first.load_stats().cache, CacheOutcome::Compiled);
    let engine = PluginEngine::new(options.clone()).unwrap();
    let second = engine.load(spec("p", misbehave(), &[], dir.path())).unwrap();
    assert_eq!(second.load_stats().cache, CacheOutcome::Hit);
    println!(
        "start with compile: {:?}; start from cache: {:?}",
        first.load_stats().total_time,
        second.load_stats().total_time
    );
    assert!(second.describe().await.is_ok());

    // A damaged cache entry is detected and recompiled, never loaded.
    for entry in std::fs::read_dir(dir.path().join("cache")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "cwasm") {
            let mut code = std::fs::read(&path).unwrap();
            let mid = code.len() / 2;
            code[mid] ^= 0xff;
            std::fs::write(&path, code).unwrap();
        }
    }
    let third = PluginEngine::new(options).unwrap().load(spec("p", misbehave(), &[], dir.path())).unwrap();
    assert_eq!(third.load_stats().cache, CacheOutcome::Compiled);
    assert!(third.describe().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooling_engines_run_adapters_too() {
    let dir = tempfile::tempdir().unwrap();
    let engine = PluginEngine::new(EngineOptions { cache_dir: Some(common::cache_dir()), pooling: true, ..EngineOptions::default() }).unwrap();
    let plugin = engine.load(spec("pooled", misbehave(), &[], dir.path())).unwrap();
    for _ in 0..3 {
        plugin.instantiate_fresh().await.unwrap();
    }
    assert!(plugin.describe().await.is_ok());
}
