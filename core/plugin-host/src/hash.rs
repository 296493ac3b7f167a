//! sha256 pins for plugin files.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

/// Returns the lowercase hex sha256 of a file, streaming it.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Returns the lowercase hex sha256 of bytes.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Normalises a configured pin: trims, lowercases and strips an optional `sha256:` prefix.
pub fn normalise_pin(pin: &str) -> String {
    let pin = pin.trim();
    pin.strip_prefix("sha256:").unwrap_or(pin).to_ascii_lowercase()
}
