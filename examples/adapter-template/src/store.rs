//! The key-value store behind a trait, so the site logic runs natively in unit tests with
//! an in-memory map while the component uses the host's store.

use homeward_sdk::AdapterError;

/// The adapter's persistent key-value store (the `kv` host import).
pub trait Store {
    /// The value under `key`, or none.
    fn get(&self, key: &str) -> Option<Vec<u8>>;
    /// Stores `value` under `key`, durably.
    fn set(&self, key: &str, value: &[u8]) -> Result<(), AdapterError>;
    /// Removes `key`; an absent key is fine.
    fn delete(&self, key: &str) -> Result<(), AdapterError>;
    /// Every key starting with `prefix`, sorted.
    fn keys(&self, prefix: &str) -> Vec<String>;

    /// Increments the counter under `key` and returns its new value (first value: 1).
    fn next_seq(&self, key: &str) -> Result<u64, AdapterError> {
        let current = self
            .get(key)
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map(u64::from_le_bytes)
            .unwrap_or(0);
        let next = current + 1;
        self.set(key, &next.to_le_bytes())?;
        Ok(next)
    }

    /// Removes every key starting with `prefix`.
    fn delete_prefix(&self, prefix: &str) -> Result<(), AdapterError> {
        for key in self.keys(prefix) {
            self.delete(&key)?;
        }
        Ok(())
    }
}

/// The host's store, scoped by the host to this configured plugin.
pub struct HostStore;

impl Store for HostStore {
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        homeward_sdk::host::kv_get(key)
    }
    fn set(&self, key: &str, value: &[u8]) -> Result<(), AdapterError> {
        homeward_sdk::host::kv_set(key, value)
    }
    fn delete(&self, key: &str) -> Result<(), AdapterError> {
        homeward_sdk::host::kv_delete(key)
    }
    fn keys(&self, prefix: &str) -> Vec<String> {
        homeward_sdk::host::kv_list(prefix)
    }
}

/// An in-memory store for native tests.
#[cfg(test)]
#[derive(Default)]
pub struct MemStore(pub std::cell::RefCell<std::collections::BTreeMap<String, Vec<u8>>>);

#[cfg(test)]
impl Store for MemStore {
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.0.borrow().get(key).cloned()
    }
    fn set(&self, key: &str, value: &[u8]) -> Result<(), AdapterError> {
        self.0.borrow_mut().insert(key.to_string(), value.to_vec());
        Ok(())
    }
    fn delete(&self, key: &str) -> Result<(), AdapterError> {
        self.0.borrow_mut().remove(key);
        Ok(())
    }
    fn keys(&self, prefix: &str) -> Vec<String> {
        self.0
            .borrow()
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect()
    }
}
