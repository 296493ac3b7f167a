//! What an adapter call costs, and what instantiating an adapter costs with and without
//! the pooling allocator. Prints the pooled/on-demand ratio measured in the same run.
//!
//! `cargo bench -p homeward-plugin-host --bench adapter_calls`

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use homeward_plugin_host::hash::sha256_file;
use homeward_plugin_host::limits::Limits;
use homeward_plugin_host::{EngineOptions, Plugin, PluginEngine, PluginSpec};

fn load(engine: &PluginEngine, state: &std::path::Path) -> Plugin {
    let path = homeward_plugin_artifacts::fixture_misbehave();
    engine
        .load(PluginSpec {
            name: "bench".into(),
            path: path.to_path_buf(),
            sha256: sha256_file(path).unwrap(),
            allow_hosts: vec![],
            preopens: vec![],
            config: BTreeMap::new(),
            secrets: BTreeMap::new(),
            limits: Limits::default(),
            kv_dir: state.join("kv"),
            config_source: "bench".into(),
        })
        .unwrap()
}

fn engine(pooling: bool, cache: &std::path::Path) -> PluginEngine {
    PluginEngine::new(EngineOptions { cache_dir: Some(cache.to_path_buf()), pooling, ..EngineOptions::default() }).unwrap()
}

/// Mean time of `iters` fresh instantiations.
fn mean_instantiate(rt: &tokio::runtime::Runtime, plugin: &Plugin, iters: u32) -> Duration {
    let started = Instant::now();
    for _ in 0..iters {
        rt.block_on(plugin.instantiate_fresh()).unwrap();
    }
    started.elapsed() / iters
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");

    let on_demand = engine(false, &cache);
    let plugin = load(&on_demand, dir.path());
    rt.block_on(plugin.describe()).unwrap();
    c.bench_function("adapter call: site.describe on a live instance", |b| {
        b.to_async(&rt).iter(|| async { plugin.describe().await.unwrap() })
    });
    c.bench_function("instantiate: on-demand allocator", |b| b.to_async(&rt).iter(|| async { plugin.instantiate_fresh().await.unwrap() }));

    let pooled_engine = engine(true, &cache);
    let pooled = load(&pooled_engine, dir.path());
    c.bench_function("instantiate: pooling allocator", |b| b.to_async(&rt).iter(|| async { pooled.instantiate_fresh().await.unwrap() }));

    // The same comparison as one printed ratio, both sides measured now.
    let base = mean_instantiate(&rt, &plugin, 200);
    let pool = mean_instantiate(&rt, &pooled, 200);
    println!(
        "instantiate: on-demand {:?}, pooling {:?}; pooling takes {:.2}x the on-demand time",
        base,
        pool,
        pool.as_secs_f64() / base.as_secs_f64()
    );
}

criterion_group! {
    name = group;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(group);
