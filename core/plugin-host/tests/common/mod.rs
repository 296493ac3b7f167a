//! Shared helpers for the plugin host's integration tests.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use homeward_plugin_host::hash::sha256_file;
use homeward_plugin_host::limits::Limits;
use homeward_plugin_host::{EngineOptions, PluginEngine, PluginSpec};

/// A compiled-code cache shared by every test, so each component compiles once per run.
pub fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("plugin-host-compile-cache")
}

pub fn engine() -> PluginEngine {
    PluginEngine::new(EngineOptions { cache_dir: Some(cache_dir()), ..EngineOptions::default() }).unwrap()
}

/// A spec for `path` pinned to its real hash, with tight limits.
pub fn spec(name: &str, path: &Path, config: &[(&str, &str)], state: &Path) -> PluginSpec {
    PluginSpec {
        name: name.to_string(),
        path: path.to_path_buf(),
        sha256: sha256_file(path).unwrap(),
        allow_hosts: vec![],
        preopens: vec![],
        config: config.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
        secrets: BTreeMap::new(),
        limits: Limits { memory_mib: 64, call_timeout: Duration::from_secs(10), fuel: None },
        kv_dir: state.join("kv").join(name),
        config_source: "test.toml".into(),
    }
}

/// A one-shot HTTP server on 127.0.0.1 that answers every request with 200 `ok` and
/// counts requests. It stops when dropped.
pub struct TinyServer {
    pub port: u16,
    pub hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl TinyServer {
    pub async fn start() -> TinyServer {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = hits.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut buf = vec![0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let _ = sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").await;
                let _ = sock.shutdown().await;
            }
        });
        TinyServer { port, hits, task }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for TinyServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
