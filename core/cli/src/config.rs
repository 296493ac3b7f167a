//! The operator's config: built-in defaults, then `homeward.toml` (or `--config FILE`, or
//! `HOMEWARD_CONFIG`), then `HOMEWARD_*` environment variables (`__` separates levels:
//! `HOMEWARD_PLUGINS__VCENTER__PATH`). Unknown keys are errors that name the key path.
//! Secrets never live in the file: `[plugins.NAME.secrets]` maps a secret's name to the
//! environment variable that holds it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::magic::RelativePathBuf;
use serde::{Deserialize, Serialize};

use homeward_plugin_host::limits::Limits;
use homeward_plugin_host::native::NativeTransportSpec;
use homeward_plugin_host::{PluginSpec, Preopen};

/// The file read when neither `--config` nor `HOMEWARD_CONFIG` names one.
pub const DEFAULT_CONFIG_FILE: &str = "homeward.toml";

/// The whole operator config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where Homeward keeps its state: compiled-code cache, plugin key-value stores, the
    /// configuration database.
    pub data_dir: RelativePathBuf,
    #[serde(default)]
    pub engine: EngineConfig,
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginConfig>,
    #[serde(default)]
    pub transports: BTreeMap<String, TransportConfig>,
    /// `[sites.NAME]`: the sites the pipeline protects between, each served by a plugin.
    #[serde(default)]
    pub sites: BTreeMap<String, SiteConfig>,
    /// `[backup]`: scheduled backups of the configuration database.
    #[serde(default)]
    pub backup: BackupConfig,
    /// `[replication]`: the cycle schedule.
    #[serde(default)]
    pub replication: ReplicationConfig,
}

/// `[replication]`: how often `homeward replicate --watch` cuts a recovery point, and how
/// fast cycles may send.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplicationConfig {
    /// Seconds between cycles (each makes a recovery point; the RPO is their spacing).
    pub cycle_interval_secs: u64,
    /// Bandwidth limit for cycles in megabits per second (decimal); 0 or absent means
    /// unlimited.
    pub bandwidth_mbps: Option<u64>,
    /// Compression of cycles on the wire: `auto` (default: raw to a master target on this
    /// host with no bandwidth limit, zstd-1 otherwise), `zstd-N`, `lz4` or `none`.
    pub codec: Option<String>,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig { cycle_interval_secs: 300, bandwidth_mbps: None, codec: None }
    }
}

/// `[sites.NAME]`: a site and the adapter that serves it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    /// The `[plugins.NAME]` that talks to this site.
    pub plugin: String,
    /// `on-prem` (VMware) or `azure`.
    pub role: String,
}

/// `[backup]`: the reference article insists on regular backups of the configuration
/// server, because failback is impossible without its database.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackupConfig {
    /// Take a backup when the newest is older than this many hours (0: never).
    pub every_hours: f64,
    /// Where scheduled backups go (default: data_dir/backups).
    pub dir: Option<RelativePathBuf>,
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig { every_hours: 24.0, dir: None }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: RelativePathBuf::from(PathBuf::from("homeward-data")),
            engine: EngineConfig::default(),
            plugins: BTreeMap::new(),
            transports: BTreeMap::new(),
            sites: BTreeMap::new(),
            backup: BackupConfig::default(),
            replication: ReplicationConfig::default(),
        }
    }
}

/// `[engine]`: how adapters are compiled and run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Cache compiled adapters under `data_dir/cache` (recommended).
    pub cache: bool,
    /// Use the pooling instance allocator.
    pub pooling: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig { cache: true, pooling: false }
    }
}

/// `[plugins.NAME]`: one adapter component.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// The component file (relative to this config file).
    pub path: RelativePathBuf,
    /// Its sha256; a mismatch refuses the plugin.
    pub sha256: String,
    /// Outbound origins granted (`https://host:port`, port `*` for any). Narrows the
    /// adapter's manifest; empty means no network.
    #[serde(default)]
    pub allow_hosts: Vec<String>,
    /// Directories the adapter may see.
    #[serde(default)]
    pub preopens: Vec<PreopenConfig>,
    /// The adapter's own settings, handed to it as strings.
    #[serde(default)]
    pub config: BTreeMap<String, ConfigValue>,
    /// Secret name → environment variable holding it.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    #[serde(default)]
    pub limits: LimitsConfig,
}

/// One preopened directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreopenConfig {
    /// The directory on this machine (relative to this config file).
    pub host: RelativePathBuf,
    /// Where the adapter sees it, such as `/site`.
    pub guest: String,
    #[serde(default)]
    pub writable: bool,
}

/// `[plugins.NAME.limits]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub memory_mib: u64,
    pub call_timeout_secs: f64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let d = Limits::default();
        LimitsConfig { memory_mib: d.memory_mib, call_timeout_secs: d.call_timeout.as_secs_f64() }
    }
}

/// A scalar in an adapter's config section.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum ConfigValue {
    Bool(bool),
    Integer(i64),
    Float(f64),
    String(String),
}

impl ConfigValue {
    /// The TOML spelling handed to the adapter.
    pub fn render(&self) -> String {
        match self {
            ConfigValue::Bool(b) => b.to_string(),
            ConfigValue::Integer(i) => i.to_string(),
            ConfigValue::Float(f) => f.to_string(),
            ConfigValue::String(s) => s.clone(),
        }
    }
}

/// `[transports.NAME]`: a trusted native disk transport.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransportConfig {
    pub path: RelativePathBuf,
    pub sha256: Option<String>,
    #[serde(default)]
    pub trusted: bool,
}

/// A loaded config and where it came from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: Config,
    /// The file read, if one existed.
    pub source: Option<PathBuf>,
}

/// Which file to read: `--config`, else `HOMEWARD_CONFIG`, else `./homeward.toml`.
pub fn config_path(flag: Option<&Path>) -> (PathBuf, bool) {
    if let Some(p) = flag {
        return (p.to_path_buf(), true);
    }
    if let Some(p) = std::env::var_os("HOMEWARD_CONFIG") {
        return (PathBuf::from(p), true);
    }
    (PathBuf::from(DEFAULT_CONFIG_FILE), false)
}

/// Keys that must never hold a secret in the file.
fn looks_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["password", "passwd", "secret", "token", "api_key", "apikey", "private_key", "account_key", "credential"].iter().any(|s| k.contains(s))
}

/// Loads and validates the layered config.
pub fn load(flag: Option<&Path>) -> anyhow::Result<LoadedConfig> {
    let (path, explicit) = config_path(flag);
    let exists = path.is_file();
    if explicit && !exists {
        bail!("config file {} does not exist; pass an existing file with --config or HOMEWARD_CONFIG", path.display());
    }
    let mut figment = Figment::from(Serialized::defaults(Config::default()));
    if exists {
        figment = figment.merge(Toml::file_exact(&path));
    }
    figment = figment.merge(Env::prefixed("HOMEWARD_").ignore(&["CONFIG", "LOG", "CRASH_AT"]).split("__"));
    let config: Config = figment.extract().map_err(|e| config_error(e, &path))?;
    validate(&config)?;
    Ok(LoadedConfig { config, source: exists.then(|| path.clone()) })
}

fn config_error(error: figment::Error, path: &Path) -> anyhow::Error {
    let mut lines = Vec::new();
    for e in error {
        let key = if e.path.is_empty() { String::new() } else { format!(" at `{}`", e.path.join(".")) };
        let origin = e
            .metadata
            .as_ref()
            .map(|m| m.source.as_ref().map(|s| s.to_string()).unwrap_or_else(|| m.name.to_string()))
            .map(|s| format!(" (from {s})"))
            .unwrap_or_default();
        lines.push(format!("{}{key}{origin}", e.kind));
    }
    anyhow::anyhow!("invalid config {}:\n  {}", path.display(), lines.join("\n  "))
}

fn validate(config: &Config) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    for (name, plugin) in &config.plugins {
        for key in plugin.config.keys() {
            if looks_secret(key) {
                problems.push(format!(
                    "plugins.{name}.config.{key} looks like a secret; secrets never go in the file: put `{key} = \"ENV_VAR_NAME\"` under [plugins.{name}.secrets] and export ENV_VAR_NAME"
                ));
            }
        }
        for (secret, var) in &plugin.secrets {
            if var.is_empty() || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                problems.push(format!(
                    "plugins.{name}.secrets.{secret} must name an environment variable (letters, digits, `_`), not hold the secret itself"
                ));
            }
        }
        if plugin.limits.memory_mib == 0 || plugin.limits.call_timeout_secs <= 0.0 {
            problems.push(format!("plugins.{name}.limits: memory_mib and call_timeout_secs must be positive"));
        }
        for p in &plugin.preopens {
            if !p.guest.starts_with('/') {
                problems.push(format!("plugins.{name}.preopens: guest path `{}` must be absolute, such as /site", p.guest));
            }
        }
    }
    for (name, site) in &config.sites {
        if !config.plugins.contains_key(&site.plugin) {
            problems.push(format!("sites.{name}.plugin names `{}`, which is not a [plugins.*] section", site.plugin));
        }
        if site.role != "on-prem" && site.role != "azure" {
            problems.push(format!("sites.{name}.role must be \"on-prem\" or \"azure\", not `{}`", site.role));
        }
    }
    if let Some(Err(e)) = config.replication.codec.as_deref().map(str::parse::<homeward_pipeline::CodecChoice>) {
        problems.push(format!("replication.codec: {e}"));
    }
    if problems.is_empty() { Ok(()) } else { bail!("invalid config:\n  {}", problems.join("\n  ")) }
}

impl LoadedConfig {
    /// The data directory, created if needed.
    pub fn data_dir(&self) -> anyhow::Result<PathBuf> {
        let dir = self.config.data_dir.relative();
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create data_dir {}", dir.display()))?;
        Ok(dir)
    }

    /// A human name for where the config came from.
    pub fn source_name(&self) -> String {
        self.source.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "built-in defaults".into())
    }

    /// The plugin host's spec for one configured plugin.
    pub fn plugin_spec(&self, name: &str) -> anyhow::Result<PluginSpec> {
        let plugin = self.config.plugins.get(name).with_context(|| {
            format!("no plugin `{name}` in {}; configured: {}", self.source_name(), self.plugin_names().join(", "))
        })?;
        let kv_dir = self.data_dir()?.join("kv").join(name);
        Ok(PluginSpec {
            name: name.to_string(),
            path: plugin.path.relative(),
            sha256: plugin.sha256.clone(),
            allow_hosts: plugin.allow_hosts.clone(),
            preopens: plugin
                .preopens
                .iter()
                .map(|p| Preopen { host: p.host.relative(), guest: p.guest.clone(), writable: p.writable })
                .collect(),
            config: plugin.config.iter().map(|(k, v)| (k.clone(), v.render())).collect(),
            secrets: plugin.secrets.clone(),
            limits: Limits {
                memory_mib: plugin.limits.memory_mib,
                call_timeout: Duration::from_secs_f64(plugin.limits.call_timeout_secs),
                fuel: None,
            },
            kv_dir,
            config_source: self.source_name(),
        })
    }

    /// The configured plugin names, sorted.
    pub fn plugin_names(&self) -> Vec<String> {
        self.config.plugins.keys().cloned().collect()
    }

    /// The native transport specs.
    pub fn transport_specs(&self) -> Vec<NativeTransportSpec> {
        self.config
            .transports
            .iter()
            .map(|(name, t)| NativeTransportSpec { name: name.clone(), path: t.path.relative(), sha256: t.sha256.clone(), trusted: t.trusted })
            .collect()
    }
}
