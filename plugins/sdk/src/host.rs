//! Typed access to the host imports: config, secrets, the key-value store and the log.

use crate::bindings::homeward::adapter::{config, kv, logging};
use crate::error;
use crate::types::AdapterError;

/// Returns a config value or an `invalid-argument` error naming the key to set.
pub fn require(key: &str) -> Result<String, AdapterError> {
    config::get(key).ok_or_else(|| {
        error::invalid(format!("missing config key `{key}`: set it in this plugin's [plugins.NAME.config] section"))
    })
}

/// Returns a config value, or `default` when absent.
pub fn config_or(key: &str, default: &str) -> String {
    config::get(key).unwrap_or_else(|| default.to_string())
}

/// Returns a secret named in `[plugins.NAME.secrets]`.
pub fn secret(name: &str) -> Result<String, AdapterError> {
    config::secret(name)
}

/// Reads a value from the adapter's key-value store.
pub fn kv_get(key: &str) -> Option<Vec<u8>> {
    kv::get(key)
}

/// Writes a value to the adapter's key-value store.
pub fn kv_set(key: &str, value: &[u8]) -> Result<(), AdapterError> {
    kv::set(key, value)
}

/// Deletes a key (absent keys are fine).
pub fn kv_delete(key: &str) -> Result<(), AdapterError> {
    kv::delete(key)
}

/// Lists keys with a prefix, sorted.
pub fn kv_list(prefix: &str) -> Vec<String> {
    kv::keys(prefix)
}

/// Logs at info level.
pub fn info(msg: &str) {
    logging::log(logging::Level::Info, msg);
}

/// Logs at debug level.
pub fn debug(msg: &str) {
    logging::log(logging::Level::Debug, msg);
}

/// Logs at warn level.
pub fn warn(msg: &str) {
    logging::log(logging::Level::Warn, msg);
}
