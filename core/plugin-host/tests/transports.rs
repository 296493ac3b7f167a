//! The served-by-adapter and native-plugin transports move real bytes for the data path:
//! round trips, range checks, and copies and resyncs running over them.

mod common;

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use homeward_plugin_host::bindings::disks::{AccessMode, Locator};
use homeward_plugin_host::hash::sha256_file;
use homeward_plugin_host::native::{NativeTransport, NativeTransportSpec};
use homeward_plugin_host::transports::{SERVED_MAX_IO, adapter_locator};
use homeward_plugin_host::{NativeDiskTransport, Plugin, Preopen, ServedTransport, open_disk_access};
use homeward_replication::{
    TransportError,
    copy::copy_allocated,
    resync::{ResyncOptions, Verified, resync},
    transport::{AdapterLocator, FileTransport, Transport},
};

const DISK: u64 = 8 << 20;

/// Deterministic bytes that do not compress to nothing.
fn bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn write_file_at(path: &Path, offset: u64, data: &[u8]) {
    use std::os::unix::fs::FileExt;
    std::fs::OpenOptions::new().write(true).open(path).unwrap().write_all_at(data, offset).unwrap();
}

/// A directory site with one VM whose 8 MiB sparse disk holds data at 1 MiB and 5 MiB.
fn site(root: &Path) -> std::path::PathBuf {
    std::fs::write(root.join("site.toml"), "name = \"t\"\nhost = \"h\"\ndatastore = \"d\"\nnetworks = [\"lan\"]\n").unwrap();
    let vm = root.join("vm1");
    std::fs::create_dir(&vm).unwrap();
    std::fs::write(
        vm.join("vm.toml"),
        format!("guest_os = \"otherGuest\"\ncpu_count = 1\nmemory_mib = 512\n\n[disks.disk0]\ncapacity_bytes = {DISK}\n"),
    )
    .unwrap();
    let disk = vm.join("disk0.raw");
    std::fs::File::create(&disk).unwrap().set_len(DISK).unwrap();
    write_file_at(&disk, 1 << 20, &bytes(1, 300_000));
    write_file_at(&disk, 5 << 20, &bytes(2, 65536));
    disk
}

fn template(name: &str, root: &Path, state: &Path, transport: &str) -> Arc<Plugin> {
    let mut spec = common::spec(
        name,
        homeward_plugin_artifacts::adapter_template(),
        &[("root", "/site"), ("transport", transport)],
        state,
    );
    spec.preopens.push(Preopen { host: root.to_path_buf(), guest: "/site".into(), writable: true });
    Arc::new(common::engine().load(spec).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_served_disk_round_trips_bytes_in_pieces_and_resyncs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("site");
    std::fs::create_dir(&root).unwrap();
    let disk_path = site(&root);
    let plugin = template("served", &root, dir.path(), "served");
    let access = plugin.open("vm1", "disk0", None, AccessMode::ReadWrite).await.unwrap();
    assert!(matches!(access.locator, Locator::Served), "{:?}", access.locator);
    assert_eq!(access.capacity_bytes, DISK);
    let disk = open_disk_access(plugin.clone(), &access).await.unwrap();
    assert!(disk.describe().starts_with("served:served/"), "{}", disk.describe());
    assert_eq!(disk.size().await.unwrap(), DISK);
    assert_eq!(disk.allocated_extents().await.unwrap(), vec![homeward_replication::extent::Extent::new(0, DISK)]);

    // A read over several pieces (more than SERVED_MAX_IO) returns exactly the file's bytes.
    let on_disk = std::fs::read(&disk_path).unwrap();
    let len = (2 * SERVED_MAX_IO + 12345) as usize;
    assert_eq!(&disk.read_at((1 << 20) - 100, len).await.unwrap()[..], &on_disk[(1 << 20) - 100..(1 << 20) - 100 + len]);
    // An unaligned write over several pieces lands exactly.
    let patch = bytes(3, (SERVED_MAX_IO * 2 + 777) as usize);
    disk.write_at(3 << 20 | 5, Bytes::from(patch.clone())).await.unwrap();
    disk.write_zeroes(1 << 20, 1000).await.unwrap();
    let mut want = on_disk;
    want[(3 << 20 | 5)..(3 << 20 | 5) + patch.len()].copy_from_slice(&patch);
    want[1 << 20..(1 << 20) + 1000].fill(0);
    assert_eq!(std::fs::read(&disk_path).unwrap(), want);
    let err = disk.read_at(DISK - 10, 20).await.unwrap_err();
    assert!(matches!(err, TransportError::Invalid { .. }), "{err:?}");

    // Fail back onto the served disk: only differing blocks are sent, and both sides verify.
    let seed_path = dir.path().join("seed.img");
    std::fs::copy(&disk_path, &seed_path).unwrap();
    write_file_at(&seed_path, 7 << 20, &bytes(4, 4096));
    write_file_at(&seed_path, 100, b"drift");
    let seed = FileTransport::open(&seed_path, false).unwrap();
    let report = resync(&seed, disk.as_ref(), ResyncOptions { full_verify: true, ..Default::default() }, None).await.unwrap();
    assert_eq!((report.blocks_sent, report.verified), (2, Verified::Identical));
    assert_eq!(std::fs::read(&disk_path).unwrap(), std::fs::read(&seed_path).unwrap());

    // A read-only handle refuses writes with a typed error, and nothing changes.
    let ro = plugin.open("vm1", "disk0", None, AccessMode::ReadOnly).await.unwrap();
    let ro_disk = ServedTransport::new(plugin.clone(), ro.handle.clone(), ro.capacity_bytes);
    let err = ro_disk.write_at(0, Bytes::from_static(b"nope")).await.unwrap_err();
    assert!(matches!(err, TransportError::Invalid { .. }), "{err:?}");
    assert_eq!(std::fs::read(&disk_path).unwrap(), std::fs::read(&seed_path).unwrap());
    plugin.close(&access.handle).await.unwrap();
    plugin.close(&ro.handle).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_locator_from_the_adapter_is_mapped_to_the_host_and_copied() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("site");
    std::fs::create_dir(&root).unwrap();
    let disk_path = site(&root);
    let plugin = template("file", &root, dir.path(), "file");
    let access = plugin.open("vm1", "disk0", None, AccessMode::ReadOnly).await.unwrap();
    match &access.locator {
        Locator::File(f) => {
            assert_eq!(f.path, "/site/vm1/disk0.raw");
            assert_eq!(f.data_offset, 0);
        }
        other => panic!("expected a file locator, got {other:?}"),
    }
    match adapter_locator(&plugin, &access.locator).unwrap() {
        Some(AdapterLocator::File { path, data_offset: 0, .. }) => assert_eq!(path, disk_path),
        other => panic!("{other:?}"),
    }
    let source = open_disk_access(plugin.clone(), &access).await.unwrap();
    // The file locator keeps the source sparse: holes are not read.
    let allocated: u64 = source.allocated_extents().await.unwrap().iter().map(|e| e.len).sum();
    assert!(allocated < DISK / 2, "{allocated}");
    let target_path = dir.path().join("copy.img");
    let target = FileTransport::create(&target_path, DISK).unwrap();
    let report = copy_allocated(source.as_ref(), &target, None).await.unwrap();
    assert!(report.bytes_written < DISK / 2, "{report:?}");
    assert_eq!(std::fs::read(&target_path).unwrap(), std::fs::read(&disk_path).unwrap());
    // A read-only access opens the file read-only: a write fails and changes nothing.
    assert!(source.write_at(0, Bytes::from_static(b"x")).await.is_err());
    // A path outside the preopens is refused rather than opened on the host.
    let outside = Locator::File(homeward_plugin_host::bindings::disks::FileLocator {
        path: "/etc/passwd".into(),
        format: homeward_plugin_host::bindings::disks::DiskFormat::Raw,
        data_offset: 0,
    });
    assert!(matches!(adapter_locator(&plugin, &outside).unwrap_err(), TransportError::Invalid { .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_disk_round_trips_bytes_and_copies_and_resyncs() {
    let lib = homeward_plugin_artifacts::native_transport_example().to_path_buf();
    let spec = NativeTransportSpec { name: "local".into(), sha256: Some(sha256_file(&lib).unwrap()), path: lib, trusted: true };
    let transport = NativeTransport::load(&spec).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.raw");
    std::fs::File::create(&path).unwrap().set_len(DISK).unwrap();
    let disk = NativeDiskTransport::new("local:disk.raw", transport.open(path.to_str().unwrap(), true).unwrap()).unwrap();
    assert_eq!(disk.size().await.unwrap(), DISK);

    let a = bytes(5, 200_000);
    let b = bytes(6, 65536);
    disk.write_at(1 << 20, Bytes::from(a.clone())).await.unwrap();
    disk.write_at(6 << 20, Bytes::from(b.clone())).await.unwrap();
    disk.write_zeroes((1 << 20) + 10, 20).await.unwrap();
    disk.flush().await.unwrap();
    let mut want = vec![0u8; DISK as usize];
    want[1 << 20..(1 << 20) + a.len()].copy_from_slice(&a);
    want[(1 << 20) + 10..(1 << 20) + 30].fill(0);
    want[6 << 20..(6 << 20) + b.len()].copy_from_slice(&b);
    assert_eq!(std::fs::read(&path).unwrap(), want);
    assert_eq!(&disk.read_at(1 << 20, a.len()).await.unwrap()[..], &want[1 << 20..(1 << 20) + a.len()]);
    // Ranges past the end are refused before they reach the library (which would grow
    // the file).
    let err = disk.write_at(DISK - 2, Bytes::from_static(b"past")).await.unwrap_err();
    assert!(matches!(err, TransportError::Invalid { .. }), "{err:?}");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), DISK);
    let allocated: u64 = disk.allocated_extents().await.unwrap().iter().map(|e| e.len).sum();
    assert!(allocated < DISK / 2, "holes are not allocated: {allocated}");

    // Copy the native disk to a file, then resync a drifted file back onto the native disk.
    let copy_path = dir.path().join("copy.img");
    let copy = FileTransport::create(&copy_path, DISK).unwrap();
    let report = copy_allocated(&disk, &copy, None).await.unwrap();
    assert!(report.bytes_read < DISK / 2, "{report:?}");
    assert_eq!(std::fs::read(&copy_path).unwrap(), want);
    write_file_at(&copy_path, 4 << 20, &bytes(7, 1000));
    let report = resync(&copy, &disk, ResyncOptions { full_verify: true, ..Default::default() }, None).await.unwrap();
    assert_eq!((report.blocks_sent, report.verified), (1, Verified::Identical));
    assert_eq!(std::fs::read(&path).unwrap(), std::fs::read(&copy_path).unwrap());
}
