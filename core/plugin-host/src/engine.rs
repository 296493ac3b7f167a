//! The wasmtime engine shared by every plugin: configuration, the epoch ticker, the linker
//! with the host imports, and the compiled-code cache.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::bindings::homeward::adapter::{config, kv, logging, types};
use crate::cache::{CacheOutcome, CompileCache};
use crate::error::LoadError;
use crate::verify::{Verified, verify};
use crate::plugin::{LoadStats, Plugin, PluginSpec};
use crate::state::AdapterState;

/// How the engine is set up.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Where compiled code is cached; `None` compiles on every start.
    pub cache_dir: Option<PathBuf>,
    /// Use the pooling instance allocator (fast instantiation, memory reserved up front).
    pub pooling: bool,
    /// Count fuel, so that `Limits::fuel` budgets apply (the test kit's deterministic mode).
    pub fuel: bool,
    /// How often the epoch advances; the granularity of deadlines and of yielding.
    pub epoch_tick: Duration,
    /// With pooling: the largest memory any plugin may be given, in MiB.
    pub pool_max_memory_mib: u64,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions { cache_dir: None, pooling: false, fuel: false, epoch_tick: Duration::from_millis(10), pool_max_memory_mib: 1024 }
    }
}

/// The engine plugins are compiled and run on. Dropping it stops the epoch ticker.
pub struct PluginEngine {
    pub(crate) engine: Engine,
    pub(crate) linker: Arc<Linker<AdapterState>>,
    cache: Option<CompileCache>,
    stop: Arc<AtomicBool>,
    pub(crate) options: EngineOptions,
}

impl PluginEngine {
    /// Builds the engine and starts its epoch ticker.
    pub fn new(options: EngineOptions) -> anyhow::Result<PluginEngine> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        config.consume_fuel(options.fuel);
        if options.pooling {
            let mut pool = PoolingAllocationConfig::default();
            pool.total_component_instances(64);
            pool.total_core_instances(256);
            pool.total_memories(256);
            pool.total_tables(256);
            pool.max_memory_size((options.pool_max_memory_mib as usize) << 20);
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&config)?;

        let mut linker = Linker::<AdapterState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        types::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
        logging::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
        config::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
        kv::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;

        let cache = match &options.cache_dir {
            Some(dir) => Some(CompileCache::new(dir)?),
            None => None,
        };

        let stop = Arc::new(AtomicBool::new(false));
        let ticker_engine = engine.clone();
        let ticker_stop = stop.clone();
        let tick = options.epoch_tick;
        std::thread::Builder::new().name("homeward-epoch".into()).spawn(move || {
            while !ticker_stop.load(Ordering::Relaxed) {
                std::thread::sleep(tick);
                ticker_engine.increment_epoch();
            }
        })?;

        Ok(PluginEngine { engine, linker: Arc::new(linker), cache, stop, options })
    }

    /// The underlying wasmtime engine.
    pub fn wasmtime(&self) -> &Engine {
        &self.engine
    }

    /// Loads a plugin: checks its pin, reads its version and manifest, refuses an
    /// incompatible one, and compiles it (or loads it from the cache). Nothing is
    /// instantiated until the first call.
    pub fn load(&self, spec: PluginSpec) -> Result<Plugin, LoadError> {
        let started = Instant::now();
        let name = spec.name.clone();
        let Verified { bytes, sha256: actual, info } = verify(&spec)?;

        let compile_started = Instant::now();
        let (component, outcome) = match &self.cache {
            Some(cache) => cache.load_or_compile(&self.engine, &actual, &bytes),
            None => wasmtime::component::Component::new(&self.engine, &bytes).map(|c| (c, CacheOutcome::Compiled)),
        }
        .map_err(|e| LoadError::Compile { name: name.clone(), message: format!("{e:#}") })?;
        let compile_time = compile_started.elapsed();

        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Compile { name: name.clone(), message: format!("cannot link its imports: {e:#}") })?;
        let pre = crate::bindings::AdapterPre::new(pre)
            .map_err(|e| LoadError::Compile { name: name.clone(), message: format!("{e:#}") })?;
        let stats = LoadStats { cache: outcome, compile_time, total_time: started.elapsed() };
        tracing::info!(plugin = %name, cache = ?outcome, ms = stats.total_time.as_millis() as u64, "plugin loaded");
        Plugin::new(self, spec, actual, info, pre, stats)
    }
}

impl Drop for PluginEngine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
