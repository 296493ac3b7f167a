//! One module per command group.

pub mod config_check;
pub mod demo;
pub mod lab;
pub mod ops;
pub mod pin;
pub mod plugins;
pub mod transports;

use std::path::PathBuf;

use homeward_plugin_host::{EngineOptions, PluginEngine};

use crate::config::LoadedConfig;

/// Builds the plugin engine the config asks for.
pub fn engine(config: &LoadedConfig) -> anyhow::Result<PluginEngine> {
    let cache_dir: Option<PathBuf> = if config.config.engine.cache { Some(config.data_dir()?.join("cache")) } else { None };
    PluginEngine::new(EngineOptions { cache_dir, pooling: config.config.engine.pooling, ..EngineOptions::default() })
}
