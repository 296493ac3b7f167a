//! End-to-end tests of the site logic on a temporary directory with an in-memory store:
//! the same code the component runs, minus the host imports.

use std::fs::{self, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use homeward_sdk::AdapterError;
use homeward_sdk::compute::{DiskSpec, VmSpec};
use homeward_sdk::disks::Locator;
use homeward_sdk::types::{KeyValue, PowerState};

use crate::blocks::{BLOCK_SIZE, Span};
use crate::change_tracking::{self, ALL};
use crate::layout::{Site, Transport};
use crate::store::{MemStore, Store};
use crate::{compute, disk_access, inventory, snapshots};

const B: u64 = BLOCK_SIZE;

fn site_in(dir: &Path) -> Site {
    fs::write(dir.join("site.toml"), "networks = [\"lan\"]\n").unwrap();
    Site::from_values(
        Some(dir.display().to_string()),
        Some((1u64 << 30).to_string()),
        None,
    )
    .unwrap()
}

fn disk(label: &str, capacity: u64) -> DiskSpec {
    DiskSpec {
        label: label.into(),
        capacity_bytes: capacity,
        datastore: None,
        thin: true,
    }
}

fn spec(name: &str, disks: Vec<DiskSpec>) -> VmSpec {
    VmSpec {
        name: name.into(),
        guest_os: "ubuntu64Guest".into(),
        cpu_count: 2,
        memory_mib: 1024,
        host: None,
        datastore: None,
        networks: vec!["lan".into()],
        disks,
        extra_config: vec![KeyValue {
            key: "disk.EnableUUID".into(),
            value: "TRUE".into(),
        }],
    }
}

fn write_at(path: &Path, offset: u64, data: &[u8]) {
    let mut f = OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(data).unwrap();
}

fn span(offset: u64, length: u64) -> Span {
    Span { offset, length }
}

#[test]
fn create_vm_builds_a_sparse_vm_and_refuses_a_second_with_the_name() {
    let dir = tempfile::tempdir().unwrap();
    let site = site_in(dir.path());
    assert_eq!(
        compute::create_vm(&site, &spec("vm1", vec![disk("disk0", 10 * B)])).unwrap(),
        "vm1"
    );
    assert_eq!(
        fs::metadata(site.disk_file("vm1", "disk0")).unwrap().len(),
        10 * B
    );
    let again = compute::create_vm(&site, &spec("vm1", vec![]));
    assert!(
        matches!(again, Err(AdapterError::AlreadyExists(_))),
        "{again:?}"
    );

    let info = inventory::vm_info(&site, "vm1").unwrap();
    assert_eq!(info.disks.len(), 1);
    assert_eq!(info.disks[0].capacity_bytes, 10 * B);
    assert_eq!(info.nics.len(), 1);
    assert_eq!(info.extra_config[0].value, "TRUE");
    assert!(matches!(info.power_state, PowerState::PoweredOff));
    assert_eq!(inventory::list_vms(&site).unwrap().len(), 1);

    let mut bad = spec("vm2", vec![]);
    bad.networks = vec!["nowhere".into()];
    assert!(matches!(
        compute::create_vm(&site, &bad),
        Err(AdapterError::NotFound(_))
    ));
    assert!(matches!(
        compute::create_vm(&site, &spec("../x", vec![])),
        Err(AdapterError::InvalidArgument(_))
    ));
    let twice = spec("vm3", vec![disk("d", B), disk("d", B)]);
    assert!(matches!(
        compute::create_vm(&site, &twice),
        Err(AdapterError::InvalidArgument(_))
    ));
    let mut thick = spec("vm4", vec![disk("d", 2 << 30)]);
    thick.disks[0].thin = false;
    assert!(matches!(
        compute::create_vm(&site, &thick),
        Err(AdapterError::Conflict(_))
    ));
    assert_eq!(
        site.vm_ids().unwrap(),
        vec!["vm1"],
        "failed creates must leave nothing behind"
    );
}

#[test]
fn power_delete_and_their_repeats() {
    let dir = tempfile::tempdir().unwrap();
    let site = site_in(dir.path());
    let store = MemStore::default();
    compute::create_vm(&site, &spec("vm1", vec![disk("disk0", B)])).unwrap();
    compute::power_on(&site, "vm1").unwrap();
    compute::power_on(&site, "vm1").unwrap();
    assert!(matches!(
        inventory::vm_info(&site, "vm1").unwrap().power_state,
        PowerState::PoweredOn
    ));
    assert!(matches!(
        compute::delete_vm(&site, &store, "vm1"),
        Err(AdapterError::Conflict(_))
    ));
    compute::power_off(&site, "vm1").unwrap();
    compute::power_off(&site, "vm1").unwrap();
    compute::enable_change_tracking(&site, "vm1", "disk0").unwrap();
    snapshots::create(&site, &store, "vm1", "s", false).unwrap();
    assert!(!store.keys("ct/vm1/").is_empty());
    compute::delete_vm(&site, &store, "vm1").unwrap();
    assert!(!site.vm_dir("vm1").exists());
    assert!(
        store.keys("ct/vm1/").is_empty(),
        "change-tracking data outlived the VM"
    );
    assert!(matches!(
        compute::delete_vm(&site, &store, "vm1"),
        Err(AdapterError::NotFound(_))
    ));
    assert!(matches!(
        compute::power_on(&site, "vm1"),
        Err(AdapterError::NotFound(_))
    ));
}

#[test]
fn disks_attach_detach_and_reconfigure() {
    let dir = tempfile::tempdir().unwrap();
    let site = site_in(dir.path());
    let store = MemStore::default();
    compute::create_vm(&site, &spec("vm1", vec![])).unwrap();
    assert_eq!(
        compute::attach_disk(&site, "vm1", &disk("data", 3 * B)).unwrap(),
        "data"
    );
    assert!(matches!(
        compute::attach_disk(&site, "vm1", &disk("data", B)),
        Err(AdapterError::AlreadyExists(_))
    ));
    compute::detach_disk(&site, &store, "vm1", "data", false).unwrap();
    assert!(
        site.disk_file("vm1", "data").exists(),
        "detach without delete-backing keeps the data"
    );
    assert!(matches!(
        compute::detach_disk(&site, &store, "vm1", "data", true),
        Err(AdapterError::NotFound(_))
    ));
    assert!(matches!(
        compute::attach_disk(&site, "vm1", &disk("data", B)),
        Err(AdapterError::Conflict(_))
    ));
    compute::attach_disk(&site, "vm1", &disk("logs", B)).unwrap();
    compute::detach_disk(&site, &store, "vm1", "logs", true).unwrap();
    assert!(!site.disk_file("vm1", "logs").exists());

    let set = |k: &str, v: &str| (k.to_string(), v.to_string());
    compute::reconfigure(&site, "vm1", &[set("a", "1"), set("disk.EnableUUID", "")]).unwrap();
    let info = inventory::vm_info(&site, "vm1").unwrap();
    let keys: Vec<_> = info
        .extra_config
        .iter()
        .map(|kv| (kv.key.as_str(), kv.value.as_str()))
        .collect();
    assert_eq!(keys, vec![("a", "1")]);
    assert!(matches!(
        compute::reconfigure(&site, "vm1", &[set("", "x")]),
        Err(AdapterError::InvalidArgument(_))
    ));
}

#[test]
fn snapshots_are_sparse_copies_with_unique_names_and_a_parent_chain() {
    let dir = tempfile::tempdir().unwrap();
    let site = site_in(dir.path());
    let store = MemStore::default();
    compute::create_vm(&site, &spec("vm1", vec![disk("disk0", 8 * B + 100)])).unwrap();
    let path = site.disk_file("vm1", "disk0");
    write_at(&path, 2 * B + 5, b"hello");
    write_at(&path, 8 * B + 99, b"!");

    let s1 = snapshots::create(&site, &store, "vm1", "one", true).unwrap();
    let copy = snapshots::copy_file(&site, "vm1", &s1, "disk0");
    assert_eq!(fs::read(&copy).unwrap(), fs::read(&path).unwrap());
    assert!(matches!(
        snapshots::create(&site, &store, "vm1", "one", false),
        Err(AdapterError::AlreadyExists(_))
    ));

    write_at(&path, 0, b"later");
    let s2 = snapshots::create(&site, &store, "vm1", "two", false).unwrap();
    let s3 = snapshots::create(&site, &store, "vm1", "three", false).unwrap();
    assert_ne!(
        fs::read(&copy).unwrap(),
        fs::read(&path).unwrap(),
        "a snapshot must not follow the disk"
    );

    let info = inventory::vm_info(&site, "vm1").unwrap();
    let chain: Vec<_> = info
        .snapshots
        .iter()
        .map(|s| (s.id.clone(), s.parent.clone(), s.quiesced))
        .collect();
    assert_eq!(
        chain,
        vec![
            (s1.clone(), None, true),
            (s2.clone(), Some(s1.clone()), false),
            (s3.clone(), Some(s2.clone()), false)
        ]
    );

    snapshots::remove(&site, "vm1", &s2).unwrap();
    assert!(matches!(
        snapshots::remove(&site, "vm1", &s2),
        Err(AdapterError::NotFound(_))
    ));
    let info = inventory::vm_info(&site, "vm1").unwrap();
    assert_eq!(info.snapshots[1].parent.as_deref(), Some(s1.as_str()));
    // A removed snapshot's id is never handed out again.
    let s4 = snapshots::create(&site, &store, "vm1", "two", false).unwrap();
    assert!(s4 != s2 && s4 != s3);
}

#[test]
fn change_tracking_reports_changed_and_cleared_blocks_between_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let site = site_in(dir.path());
    let store = MemStore::default();
    compute::create_vm(&site, &spec("vm1", vec![disk("disk0", 8 * B)])).unwrap();
    let path = site.disk_file("vm1", "disk0");

    let s0 = snapshots::create(&site, &store, "vm1", "untracked", false).unwrap();
    let off = change_tracking::changed_areas(&site, &store, "vm1", "disk0", &s0, ALL, 0);
    assert!(matches!(off, Err(AdapterError::Unsupported(_))), "{off:?}");
    compute::enable_change_tracking(&site, "vm1", "disk0").unwrap();
    compute::enable_change_tracking(&site, "vm1", "disk0").unwrap();

    write_at(&path, 0, b"a");
    write_at(&path, B + 7, b"b");
    write_at(&path, 5 * B, &vec![1u8; 2 * B as usize]);
    let s1 = snapshots::create(&site, &store, "vm1", "one", false).unwrap();
    let all = change_tracking::changed_areas(&site, &store, "vm1", "disk0", &s1, ALL, 0).unwrap();
    assert_eq!(all.window, span(0, 8 * B));
    assert_eq!(all.diff.changed, vec![span(0, 2 * B), span(5 * B, 2 * B)]);
    assert!(all.diff.cleared.is_empty());
    let c1 = all.change_id;

    // Change block 1, clear block 5 (zeros), write block 3, leave 0 and 6 alone.
    write_at(&path, B + 7, b"c");
    write_at(&path, 5 * B, &vec![0u8; B as usize]);
    write_at(&path, 3 * B, b"d");
    let s2 = snapshots::create(&site, &store, "vm1", "two", false).unwrap();
    let delta = change_tracking::changed_areas(&site, &store, "vm1", "disk0", &s2, &c1, 0).unwrap();
    assert_eq!(delta.diff.changed, vec![span(B, B), span(3 * B, B)]);
    assert_eq!(delta.diff.cleared, vec![span(5 * B, B)]);
    assert_ne!(delta.change_id, c1);

    // Idempotent, and a later start offset covers only the rest.
    let again = change_tracking::changed_areas(&site, &store, "vm1", "disk0", &s2, &c1, 0).unwrap();
    assert_eq!(
        (again.diff, again.change_id.clone()),
        (delta.diff, delta.change_id.clone())
    );
    let tail =
        change_tracking::changed_areas(&site, &store, "vm1", "disk0", &s2, &c1, 3 * B + 1).unwrap();
    assert_eq!(tail.window, span(3 * B + 1, 5 * B - 1));
    assert_eq!(tail.diff.changed, vec![span(3 * B + 1, B - 1)]);
    let end =
        change_tracking::changed_areas(&site, &store, "vm1", "disk0", &s2, &c1, 8 * B).unwrap();
    assert_eq!(end.window.length, 0);
    let past = change_tracking::changed_areas(&site, &store, "vm1", "disk0", &s2, &c1, 8 * B + 1);
    assert!(matches!(past, Err(AdapterError::InvalidArgument(_))));

    // The snapshot behind a change id may go; its hashes stay until the id is superseded.
    snapshots::remove(&site, "vm1", &s1).unwrap();
    let c2 = delta.change_id;
    write_at(&path, 7 * B, b"e");
    let s3 = snapshots::create(&site, &store, "vm1", "three", false).unwrap();
    let next = change_tracking::changed_areas(&site, &store, "vm1", "disk0", &s3, &c2, 0).unwrap();
    assert_eq!(next.diff.changed, vec![span(7 * B, B)]);
    let stale = change_tracking::changed_areas(&site, &store, "vm1", "disk0", &s3, &c1, 0);
    assert!(
        matches!(stale, Err(AdapterError::InvalidArgument(_))),
        "superseded id still answered: {stale:?}"
    );
    assert!(store.keys(&format!("ct/vm1/disk0/{c1}/")).is_empty());
    let unknown =
        change_tracking::changed_areas(&site, &store, "vm1", "disk0", &s3, "99-nothing", 0);
    assert!(matches!(unknown, Err(AdapterError::InvalidArgument(_))));
}

#[test]
fn a_snapshot_taken_before_tracking_is_hashed_on_demand() {
    let dir = tempfile::tempdir().unwrap();
    let site = site_in(dir.path());
    let store = MemStore::default();
    compute::create_vm(&site, &spec("vm1", vec![disk("disk0", 4 * B)])).unwrap();
    write_at(&site.disk_file("vm1", "disk0"), 2 * B, b"x");
    let s1 = snapshots::create(&site, &store, "vm1", "early", false).unwrap();
    compute::enable_change_tracking(&site, "vm1", "disk0").unwrap();
    let all = change_tracking::changed_areas(&site, &store, "vm1", "disk0", &s1, ALL, 0).unwrap();
    assert_eq!(all.diff.changed, vec![span(2 * B, B)]);
    // Lost hashes (a wiped store) are rebuilt from the immutable copy, under the same id.
    store.delete_prefix("ct/").unwrap();
    let rebuilt =
        change_tracking::changed_areas(&site, &store, "vm1", "disk0", &s1, ALL, 0).unwrap();
    assert_eq!(
        (rebuilt.diff.changed, rebuilt.change_id),
        (all.diff.changed, all.change_id)
    );
}

#[test]
fn a_recreated_disk_does_not_answer_for_the_old_ones_change_id() {
    let dir = tempfile::tempdir().unwrap();
    let site = site_in(dir.path());
    let store = MemStore::default();
    compute::create_vm(&site, &spec("vm1", vec![disk("disk0", 2 * B)])).unwrap();
    compute::enable_change_tracking(&site, "vm1", "disk0").unwrap();
    let s1 = snapshots::create(&site, &store, "vm1", "one", false).unwrap();
    let c1 = change_tracking::changed_areas(&site, &store, "vm1", "disk0", &s1, ALL, 0)
        .unwrap()
        .change_id;
    compute::detach_disk(&site, &store, "vm1", "disk0", true).unwrap();
    compute::attach_disk(&site, "vm1", &disk("disk0", 2 * B)).unwrap();
    compute::enable_change_tracking(&site, "vm1", "disk0").unwrap();
    let s2 = snapshots::create(&site, &store, "vm1", "two", false).unwrap();
    let old = change_tracking::changed_areas(&site, &store, "vm1", "disk0", &s1, ALL, 0);
    assert!(matches!(old, Err(AdapterError::NotFound(_))), "{old:?}");
    let r = change_tracking::changed_areas(&site, &store, "vm1", "disk0", &s2, &c1, 0);
    assert!(matches!(r, Err(AdapterError::InvalidArgument(_))), "{r:?}");
}

#[test]
fn open_gives_file_locators_and_served_handles_read_and_write_in_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let mut site = site_in(dir.path());
    let store = MemStore::default();
    compute::create_vm(&site, &spec("vm1", vec![disk("disk0", 2 * B)])).unwrap();
    let s1 = snapshots::create(&site, &store, "vm1", "one", false).unwrap();

    let access = disk_access::open(&site, &store, "vm1", "disk0", None, true).unwrap();
    match &access.locator {
        Locator::File(f) => assert_eq!(Path::new(&f.path), site.disk_file("vm1", "disk0")),
        other => panic!("expected a file locator, got {other:?}"),
    }
    assert!(matches!(
        disk_access::read(&store, &access.handle, 0, 1),
        Err(AdapterError::Unsupported(_))
    ));
    disk_access::close(&store, &access.handle).unwrap();
    disk_access::close(&store, &access.handle).unwrap();
    assert!(matches!(
        disk_access::open(&site, &store, "vm1", "disk0", Some(&s1), true),
        Err(AdapterError::InvalidArgument(_))
    ));
    assert!(matches!(
        disk_access::open(&site, &store, "vm1", "nope", None, false),
        Err(AdapterError::NotFound(_))
    ));

    site.transport = Transport::Served;
    let rw = disk_access::open(&site, &store, "vm1", "disk0", None, true).unwrap();
    assert!(matches!(rw.locator, Locator::Served));
    disk_access::write(&store, &rw.handle, B - 2, b"span").unwrap();
    assert_eq!(
        disk_access::read(&store, &rw.handle, B - 3, 6).unwrap(),
        b"\0span\0"
    );
    assert!(matches!(
        disk_access::write(&store, &rw.handle, 2 * B - 1, b"xy"),
        Err(AdapterError::InvalidArgument(_))
    ));
    assert!(matches!(
        disk_access::read(&store, &rw.handle, u64::MAX, 2),
        Err(AdapterError::InvalidArgument(_))
    ));
    assert!(matches!(
        disk_access::read(&store, &rw.handle, 0, 5 << 20),
        Err(AdapterError::InvalidArgument(_))
    ));

    let ro = disk_access::open(&site, &store, "vm1", "disk0", Some(&s1), false).unwrap();
    assert!(ro.read_only);
    assert_eq!(
        disk_access::read(&store, &ro.handle, B - 2, 4).unwrap(),
        vec![0; 4],
        "the snapshot must not see later writes"
    );
    assert!(matches!(
        disk_access::write(&store, &ro.handle, 0, b"x"),
        Err(AdapterError::PermissionDenied(_))
    ));
    disk_access::close(&store, &ro.handle).unwrap();
    assert!(matches!(
        disk_access::read(&store, &ro.handle, 0, 1),
        Err(AdapterError::NotFound(_))
    ));
}

#[test]
fn the_demo_site_describes_itself() {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sites/demo");
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&demo, dir.path());
    let site = Site::from_values(Some(dir.path().display().to_string()), None, None).unwrap();
    let info = inventory::describe(&site).unwrap();
    assert!(info.product.contains("demo"));
    assert_eq!(inventory::hosts(&site).unwrap()[0].name, "demo-host");
    assert_eq!(inventory::datastores(&site).unwrap()[0].name, "demo-store");
    assert_eq!(inventory::networks(&site).unwrap().len(), 2);
    let vms = inventory::list_vms(&site).unwrap();
    assert_eq!(vms.len(), 1);
    assert_eq!(vms[0].id, "web01");
    assert!(vms[0].disks[0].change_tracking);

    let store = MemStore::default();
    let s1 = snapshots::create(&site, &store, "web01", "check", true).unwrap();
    let all = change_tracking::changed_areas(&site, &store, "web01", "disk0", &s1, ALL, 0).unwrap();
    assert_eq!(all.diff.changed, vec![span(0, B)]);
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            fs::create_dir_all(&target).unwrap();
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}
