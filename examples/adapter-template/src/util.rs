//! Small helpers the WASI sandbox does not provide: RFC 3339 times, generated UUIDs and
//! MACs, and mapping file-system errors onto the contract's error variant.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use homeward_sdk::{AdapterError, error};

/// Nanoseconds since the Unix epoch (WASI wall clock).
pub fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// The current time as RFC 3339 UTC with second precision.
pub fn now_rfc3339() -> String {
    rfc3339((now_nanos() / 1_000_000_000) as i64)
}

/// Formats Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(unix_secs: i64) -> String {
    let days = unix_secs.div_euclid(86_400);
    let secs = unix_secs.rem_euclid(86_400);
    // Howard Hinnant's civil-from-days: no date crate needed inside the sandbox.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

static UNIQUE: AtomicU64 = AtomicU64::new(0);

/// A new UUID (RFC 9562 version 8, "custom"): a hash of `seed`, the time and a counter.
/// WASI has random numbers, but the SDK does not expose them and uniqueness is all a
/// directory site needs, so hashing avoids another dependency.
pub fn new_uuid(seed: &str) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(seed.as_bytes());
    hasher.update(&now_nanos().to_le_bytes());
    hasher.update(&UNIQUE.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    uuid_from_hash(hasher.finalize().as_bytes())
}

/// A UUID that always comes out the same for `seed`, for descriptions written by hand
/// without one.
pub fn stable_uuid(seed: &str) -> String {
    uuid_from_hash(blake3::hash(seed.as_bytes()).as_bytes())
}

fn uuid_from_hash(hash: &[u8; 32]) -> String {
    let mut b = [0u8; 16];
    b.copy_from_slice(&hash[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// A locally administered unicast MAC, stable for a VM's UUID and NIC index.
pub fn mac_for(vm_uuid: &str, index: usize) -> String {
    let h = blake3::hash(format!("{vm_uuid}/nic/{index}").as_bytes());
    let b = h.as_bytes();
    format!(
        "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[0], b[1], b[2], b[3], b[4]
    )
}

/// Maps a file-system error on `path` to the contract's error, saying what to do.
pub fn io_error(what: &str, path: &Path, e: io::Error) -> AdapterError {
    let p = path.display();
    match e.kind() {
        io::ErrorKind::NotFound => error::not_found(format!("{what}: {p} does not exist")),
        io::ErrorKind::AlreadyExists => {
            error::already_exists(format!("{what}: {p} already exists"))
        }
        io::ErrorKind::PermissionDenied => error::denied(format!(
            "{what}: access to {p} denied ({e}); preopen the site directory read-write for this plugin"
        )),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => error::conflict(format!(
            "{what}: the file system holding {p} is full ({e}); free space and retry"
        )),
        _ => error::internal(format!("{what}: {p}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_763_771_696), "2025-11-22T00:34:56Z");
    }

    #[test]
    fn uuids_are_well_formed_and_distinct() {
        let a = new_uuid("x");
        let b = new_uuid("x");
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "8");
        assert_eq!(stable_uuid("vm1"), stable_uuid("vm1"));
        assert_ne!(stable_uuid("vm1"), stable_uuid("vm2"));
    }
}
