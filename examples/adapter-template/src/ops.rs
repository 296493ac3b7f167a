//! Operations. Everything on a directory site finishes inside the call, so each operation
//! is born `succeeded`; it is still recorded in the key-value store so `poll-operation`
//! answers for its id afterwards, across restarts, as the contract promises.

use homeward_sdk::compute::{Operation, OperationState};
use homeward_sdk::{AdapterError, error};

use crate::store::Store;

/// How many finished operations stay pollable; older ids answer `not-found` ("expired").
pub const RETAINED: u64 = 1024;

const SEQ_KEY: &str = "seq/op";

fn key(n: u64) -> String {
    format!("op/{n}")
}

fn operation(id: String, target: Option<String>) -> Operation {
    Operation {
        id,
        state: OperationState::Succeeded,
        progress_percent: Some(100),
        target,
        poll_after_ms: 0,
    }
}

/// Records a finished operation that created or changed `target` and returns it.
pub fn succeeded(store: &dyn Store, target: &str) -> Result<Operation, AdapterError> {
    let n = store.next_seq(SEQ_KEY)?;
    store.set(&key(n), target.as_bytes())?;
    if n > RETAINED {
        store.delete(&key(n - RETAINED))?;
    }
    Ok(operation(format!("op-{n}"), Some(target.to_string())))
}

/// Returns the recorded operation `id`.
pub fn poll(store: &dyn Store, id: &str) -> Result<Operation, AdapterError> {
    let unknown = || {
        error::not_found(format!(
            "operation `{id}` is unknown or expired (the last {RETAINED} are kept)"
        ))
    };
    let n: u64 = id
        .strip_prefix("op-")
        .and_then(|n| n.parse().ok())
        .ok_or_else(unknown)?;
    let target = store.get(&key(n)).ok_or_else(unknown)?;
    let target = String::from_utf8(target)
        .map_err(|_| error::internal(format!("operation `{id}`: stored target is not UTF-8")))?;
    Ok(operation(id.to_string(), Some(target)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;

    #[test]
    fn operations_are_pollable_until_they_expire() {
        let store = MemStore::default();
        let first = succeeded(&store, "vm1").unwrap();
        let again = poll(&store, &first.id).unwrap();
        assert_eq!(again.target.as_deref(), Some("vm1"));
        assert!(matches!(again.state, OperationState::Succeeded));
        for _ in 0..RETAINED {
            succeeded(&store, "x").unwrap();
        }
        assert!(matches!(
            poll(&store, &first.id),
            Err(AdapterError::NotFound(_))
        ));
        assert!(matches!(
            poll(&store, "op-x"),
            Err(AdapterError::NotFound(_))
        ));
        assert_eq!(store.keys("op/").len() as u64, RETAINED);
    }
}
