//! Native transports: trust and pin are required, the ABI version is checked first, and
//! the example transport moves real bytes.

use std::io::Write;

use homeward_plugin_host::hash::sha256_file;
use homeward_plugin_host::native::{NativeError, NativeExtent, NativeTransport, NativeTransportSpec};

fn example() -> NativeTransportSpec {
    let path = homeward_plugin_artifacts::native_transport_example().to_path_buf();
    NativeTransportSpec { name: "local".into(), sha256: Some(sha256_file(&path).unwrap()), path, trusted: true }
}

#[test]
fn an_untrusted_library_is_refused() {
    let spec = NativeTransportSpec { trusted: false, ..example() };
    let err = NativeTransport::load(&spec).unwrap_err();
    assert!(matches!(err, NativeError::NotTrusted { .. }), "{err}");
    assert!(err.to_string().contains("trusted = true"));
}

#[test]
fn a_library_without_a_pin_is_refused_and_told_its_hash() {
    let spec = NativeTransportSpec { sha256: None, ..example() };
    let actual = sha256_file(&spec.path).unwrap();
    let err = NativeTransport::load(&spec).unwrap_err();
    assert!(matches!(err, NativeError::MissingPin { .. }), "{err}");
    assert!(err.to_string().contains(&actual));
}

#[test]
fn a_library_with_a_wrong_pin_is_refused() {
    let spec = NativeTransportSpec { sha256: Some("ab".repeat(32)), ..example() };
    assert!(matches!(NativeTransport::load(&spec).unwrap_err(), NativeError::HashMismatch { .. }));
}

#[test]
fn a_library_without_the_abi_version_symbol_is_refused() {
    // The misbehave adapter's directory holds no native library, so use a real shared
    // object that is not a transport: the C library.
    let libc = ["/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6", "/lib64/libc.so.6"]
        .into_iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.exists())
        .expect("a libc.so.6 to load");
    let spec = NativeTransportSpec { name: "libc".into(), sha256: Some(sha256_file(&libc).unwrap()), path: libc, trusted: true };
    let err = NativeTransport::load(&spec).unwrap_err();
    assert!(matches!(err, NativeError::MissingSymbol { symbol: "homeward_transport_abi_version", .. }), "{err}");
}

#[test]
fn the_example_transport_reads_writes_and_reports_only_allocated_extents() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.raw");
    let size = 8u64 << 20;
    {
        let mut f = std::fs::File::create(&path).unwrap();
        f.set_len(size).unwrap();
        f.flush().unwrap();
    }
    let transport = NativeTransport::load(&example()).unwrap();
    let mut disk = transport.open(path.to_str().unwrap(), true).unwrap();
    assert_eq!(disk.size().unwrap(), size);

    let block = vec![0xA5u8; 64 << 10];
    disk.write_at(1 << 20, &block).unwrap();
    disk.write_at(6 << 20, &block).unwrap();
    disk.flush().unwrap();

    let mut back = vec![0u8; block.len()];
    disk.read_at(6 << 20, &mut back).unwrap();
    assert_eq!(back, block);
    let on_disk = std::fs::read(&path).unwrap();
    assert_eq!(&on_disk[(1 << 20)..(1 << 20) + block.len()], &block[..]);

    let extents = disk.allocated_extents().unwrap();
    let covered: u64 = extents.iter().map(|e| e.length).sum();
    assert!(covered < size / 2, "holes are not reported as allocated: {extents:?}");
    for want in [1u64 << 20, 6 << 20] {
        assert!(
            extents.iter().any(|e: &NativeExtent| e.offset <= want && want + block.len() as u64 <= e.offset + e.length),
            "extent at {want} missing from {extents:?}"
        );
    }
    assert!(matches!(transport.open(dir.path().join("nope").to_str().unwrap(), false), Err(NativeError::Open { .. })));
}
