//! The key-value store each adapter gets: one directory per plugin name, one file per key,
//! written atomically (temp file, fsync, rename) so a crash never leaves half a value.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 512;
/// The largest value accepted, in bytes.
pub const MAX_VALUE_BYTES: usize = 16 << 20;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    #[error("key of {0} bytes is longer than the {MAX_KEY_BYTES}-byte limit")]
    KeyTooLong(usize),
    #[error("value of {0} bytes is larger than the {MAX_VALUE_BYTES}-byte limit")]
    ValueTooLarge(usize),
    #[error("cannot write the key-value store at {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// A plugin's key-value store.
#[derive(Debug, Clone)]
pub struct KvStore {
    dir: PathBuf,
}

impl KvStore {
    /// Opens (creating) the store in `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<KvStore, KvError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|source| KvError::Io { path: dir.clone(), source })?;
        Ok(KvStore { dir })
    }

    /// The directory holding the store.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_for(&self, key: &str) -> Result<PathBuf, KvError> {
        if key.len() > MAX_KEY_BYTES {
            return Err(KvError::KeyTooLong(key.len()));
        }
        // Hex keeps any key a valid, flat file name.
        Ok(self.dir.join(format!("k{}", hex::encode(key.as_bytes()))))
    }

    /// Reads a value.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        fs::read(self.path_for(key).ok()?).ok()
    }

    /// Writes a value durably.
    pub fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        if value.len() > MAX_VALUE_BYTES {
            return Err(KvError::ValueTooLarge(value.len()));
        }
        let path = self.path_for(key)?;
        let tmp = path.with_extension("tmp");
        let io = |source| KvError::Io { path: path.clone(), source };
        let mut file = fs::File::create(&tmp).map_err(io)?;
        file.write_all(value).map_err(io)?;
        file.sync_all().map_err(io)?;
        fs::rename(&tmp, &path).map_err(io)?;
        Ok(())
    }

    /// Deletes a key; an absent key is fine.
    pub fn delete(&self, key: &str) -> Result<(), KvError> {
        let path = self.path_for(key)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(KvError::Io { path, source }),
        }
    }

    /// Lists keys with a prefix, sorted.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let Ok(entries) = fs::read_dir(&self.dir) else { return Vec::new() };
        let mut keys: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|name| name.strip_prefix('k').and_then(|h| hex::decode(h).ok()))
            .filter_map(|raw| String::from_utf8(raw).ok())
            .filter(|k| k.starts_with(prefix))
            .collect();
        keys.sort();
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let kv = KvStore::open(dir.path()).unwrap();
        kv.set("cbt/vm1/disk0", b"abc").unwrap();
        kv.set("cbt/vm2/disk0", b"").unwrap();
        kv.set("other", b"x").unwrap();
        let again = KvStore::open(dir.path()).unwrap();
        assert_eq!(again.get("cbt/vm1/disk0").unwrap(), b"abc");
        assert_eq!(again.keys("cbt/"), vec!["cbt/vm1/disk0", "cbt/vm2/disk0"]);
        again.delete("cbt/vm1/disk0").unwrap();
        again.delete("cbt/vm1/disk0").unwrap();
        assert!(again.get("cbt/vm1/disk0").is_none());
    }

    #[test]
    fn oversized_keys_and_values_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let kv = KvStore::open(dir.path()).unwrap();
        assert!(matches!(kv.set(&"k".repeat(MAX_KEY_BYTES + 1), b""), Err(KvError::KeyTooLong(_))));
        assert!(matches!(kv.set("k", &vec![0; MAX_VALUE_BYTES + 1]), Err(KvError::ValueTooLarge(_))));
    }
}
