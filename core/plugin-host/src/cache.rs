//! Compiled code cached on disk by the component's sha256, so a restart does not recompile.
//!
//! Each entry is `<sha256>-<engine>.cwasm` plus a `.sha256` sidecar of the compiled bytes:
//! loading native code is only safe for bytes this host wrote, so an entry whose bytes no
//! longer match its sidecar is discarded and recompiled.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

use crate::hash::sha256_bytes;

/// Whether a component came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheOutcome {
    /// Loaded precompiled code from the cache.
    Hit,
    /// Compiled now (and stored, when a cache is configured).
    Compiled,
}

/// A directory of compiled components.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: PathBuf,
}

impl CompileCache {
    /// Uses (creating) `dir` as the cache.
    pub fn new(dir: impl Into<PathBuf>) -> std::io::Result<CompileCache> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(CompileCache { dir })
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn entry(&self, engine: &Engine, sha256: &str) -> PathBuf {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        self.dir.join(format!("{sha256}-{:016x}.cwasm", h.finish()))
    }

    /// Loads the compiled component for `sha256`, or compiles `bytes` and stores it.
    pub fn load_or_compile(&self, engine: &Engine, sha256: &str, bytes: &[u8]) -> wasmtime::Result<(Component, CacheOutcome)> {
        let path = self.entry(engine, sha256);
        let sidecar = path.with_extension("cwasm.sha256");
        if let (Ok(code), Ok(expected)) = (std::fs::read(&path), std::fs::read_to_string(&sidecar)) {
            if sha256_bytes(&code) == expected.trim() {
                // SAFETY: the bytes are exactly what this host's engine serialised (checked
                // against the sidecar written alongside them), for this engine's settings.
                if let Ok(component) = unsafe { Component::deserialize(engine, &code) } {
                    return Ok((component, CacheOutcome::Hit));
                }
            }
            tracing::warn!(path = %path.display(), "discarding a stale or damaged compiled-code cache entry");
        }
        let code = engine.precompile_component(bytes)?;
        // SAFETY: `code` was produced just now by `precompile_component` on this engine.
        let component = unsafe { Component::deserialize(engine, &code)? };
        let tmp = path.with_extension("tmp");
        let stored = std::fs::write(&tmp, &code)
            .and_then(|_| std::fs::write(&sidecar, sha256_bytes(&code)))
            .and_then(|_| std::fs::rename(&tmp, &path));
        if let Err(e) = stored {
            tracing::warn!(path = %path.display(), error = %e, "could not store compiled code; the next start recompiles");
        }
        Ok((component, CacheOutcome::Compiled))
    }
}
