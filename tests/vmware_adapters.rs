//! The vCenter and standalone-ESXi adapters, driven through the plugin host's sandbox
//! against the simulated vSphere site in both of its modes: inventory, the VM lifecycle,
//! snapshots, changed areas compared extent by extent with what the guest wrote, disk
//! bytes through the locator, and the error paths an operator meets.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use homeward_lab::vsphere::{Fault, VsphereLab};
use homeward_plugin_host::bindings::compute::{DiskSpec, Operation, OperationState, PowerOffMode, VmSpec};
use homeward_plugin_host::bindings::disks::{AccessMode, DiskFormat, HttpLocator, Locator};
use homeward_plugin_host::bindings::inventory::VmInfo;
use homeward_plugin_host::bindings::site::TransportKind;
use homeward_plugin_host::bindings::types::{Extent, KeyValue, PowerState, SiteKind};
use homeward_plugin_host::hash::sha256_file;
use homeward_plugin_host::limits::Limits;
use homeward_plugin_host::{AdapterError, CallError, EngineOptions, Plugin, PluginEngine, PluginSpec};

const VCENTER: &str = r#"
mode = "vcenter"
datacenter = "dc1"

[[hosts]]
name = "esx1.lab.local"
[[hosts]]
name = "esx2.lab.local"

[[datastores]]
name = "datastore1"
capacity_gib = 100
[[datastores]]
name = "local-esx1"
capacity_gib = 20
hosts = ["esx1.lab.local"]

[[networks]]
name = "VM Network"

[[vms]]
name = "web01"
host = "esx1.lab.local"
datastore = "datastore1"
guest_id = "rhel8_64Guest"
power = "poweredOn"
cpus = 2
memory_mb = 2048
networks = ["VM Network"]
extra_config = { "disk.EnableUUID" = "TRUE" }
change_tracking = true
disks = [{ capacity_mib = 64 }]

[[users]]
name = "administrator@vsphere.local"
password = "Secret1!"
role = "Admin"

[[users]]
name = "auditor@vsphere.local"
password = "Look0nly"
role = "ReadOnly"
"#;

fn esxi(license: &str) -> String {
    format!(
        r#"
mode = "esxi"
license = "{license}"
hosts = [{{ name = "esx-standalone.lab.local" }}]
datastores = [{{ name = "datastore1", capacity_gib = 50 }}]
networks = [{{ name = "VM Network" }}]
vms = [{{ name = "web01", power = "poweredOn", networks = ["VM Network"], change_tracking = true, disks = [{{ capacity_mib = 64 }}] }}]
users = [{{ name = "root", password = "esxroot" }}, {{ name = "auditor", password = "Look0nly", role = "ReadOnly" }}]
"#
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Vcenter,
    Esxi,
}

impl Which {
    fn component(self) -> &'static Path {
        match self {
            Which::Vcenter => homeward_plugin_artifacts::vmware_vcenter(),
            Which::Esxi => homeward_plugin_artifacts::vmware_esxi(),
        }
    }

    fn spec(self) -> String {
        match self {
            Which::Vcenter => VCENTER.to_string(),
            Which::Esxi => esxi("esxEnterprisePlus"),
        }
    }

    fn read_only_user(self) -> &'static str {
        match self {
            Which::Vcenter => "auditor@vsphere.local",
            Which::Esxi => "auditor",
        }
    }
}

/// A lab site with its directory. Dropping it (also when a test panics) stops the server
/// and closes its connections.
struct Site {
    lab: VsphereLab,
    dir: tempfile::TempDir,
    engine: PluginEngine,
}

async fn site(spec: &str) -> Site {
    let dir = tempfile::tempdir().expect("tempdir");
    let lab = VsphereLab::from_toml(spec, dir.path().join("lab")).await.expect("the lab starts");
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("vmware-adapters-compile-cache");
    let engine = PluginEngine::new(EngineOptions { cache_dir: Some(cache), ..EngineOptions::default() }).expect("engine");
    Site { lab, dir, engine }
}

static SECRET_SEQ: AtomicUsize = AtomicUsize::new(0);

impl Site {
    /// Loads an adapter for this site as `user`/`password`, the password reaching it only
    /// through a secret that names a host environment variable.
    fn adapter(&self, which: Which, user: &str, password: &str, limits: Limits) -> Plugin {
        let var = format!("HOMEWARD_TEST_VSPHERE_PASSWORD_{}_{}", std::process::id(), SECRET_SEQ.fetch_add(1, Ordering::SeqCst));
        // SAFETY: every adapter gets a variable of its own, written once before it is read.
        unsafe { std::env::set_var(&var, password) };
        let endpoint = self.lab.addr().to_string();
        let name = format!("vsphere{}", SECRET_SEQ.load(Ordering::SeqCst));
        let path = which.component();
        let config: BTreeMap<String, String> =
            [("endpoint", endpoint.as_str()), ("username", user), ("scheme", "http")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let spec = PluginSpec {
            name: name.clone(),
            path: path.to_path_buf(),
            sha256: sha256_file(path).expect("hash"),
            allow_hosts: vec![format!("http://{endpoint}")],
            preopens: vec![],
            config,
            secrets: [("password".to_string(), var)].into_iter().collect(),
            limits,
            kv_dir: self.dir.path().join("kv").join(&name),
            config_source: "vmware_adapters.rs".into(),
        };
        self.engine.load(spec).expect("the adapter loads")
    }

    fn admin(&self, which: Which) -> Plugin {
        let c = self.lab.credentials();
        self.adapter(which, &c.user, &c.password, limits())
    }
}

fn limits() -> Limits {
    Limits { memory_mib: 128, call_timeout: Duration::from_secs(30), fuel: None }
}

fn kind(err: &CallError) -> &'static str {
    match err {
        CallError::Adapter { error, .. } => error.kind_name(),
        other => other.kind(),
    }
}

fn message(err: &CallError) -> String {
    err.adapter_error().map(|e| e.message().to_string()).unwrap_or_else(|| err.to_string())
}

async fn done(p: &Plugin, op: Operation, call: &str) -> Operation {
    p.wait(op, call).await.unwrap_or_else(|e| panic!("{call} failed: {e}"))
}

async fn vm_by_name(p: &Plugin, name: &str) -> VmInfo {
    p.list_vms().await.expect("list-vms").into_iter().find(|v| v.name == name).unwrap_or_else(|| panic!("VM {name} listed"))
}

/// Every changed extent of a disk between a change id and a snapshot, page by page.
async fn all_changes(p: &Plugin, vm: &str, disk: &str, snapshot: &str, since: &str, capacity: u64) -> (Vec<(u64, u64)>, String) {
    let mut start = 0;
    let mut out = Vec::new();
    let mut change_id = String::new();
    while start < capacity {
        let cs = p.changed_areas(vm, disk, snapshot, since, start).await.expect("changed-areas");
        assert_eq!(cs.start_offset, start);
        assert!(cs.length > 0, "a page must advance");
        assert!(cs.cleared.is_empty(), "vSphere reports zeroing as writes");
        out.extend(cs.changed.iter().map(|e: &Extent| (e.offset, e.length)));
        change_id = cs.change_id;
        start = cs.start_offset + cs.length;
    }
    (out, change_id)
}

fn http_locator(l: &Locator) -> &HttpLocator {
    match l {
        Locator::HttpRange(h) => h,
        other => panic!("expected an HTTP range locator, got {other:?}"),
    }
}

fn with_headers(mut req: reqwest::RequestBuilder, loc: &HttpLocator) -> reqwest::RequestBuilder {
    for (k, v) in &loc.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    req
}

async fn read_range(loc: &HttpLocator, offset: u64, len: u64) -> Vec<u8> {
    let start = loc.data_offset + offset;
    let resp = with_headers(reqwest::Client::new().get(&loc.url), loc)
        .header("Range", format!("bytes={start}-{}", start + len - 1))
        .send()
        .await
        .expect("GET through the locator");
    assert_eq!(resp.status().as_u16(), 206, "ranged GET of {}", loc.url);
    resp.bytes().await.expect("body").to_vec()
}

async fn write_range(loc: &HttpLocator, offset: u64, data: &[u8], total: u64) {
    let start = loc.data_offset + offset;
    let resp = with_headers(reqwest::Client::new().put(&loc.url), loc)
        .header("Content-Range", format!("bytes {start}-{}/{total}", start + data.len() as u64 - 1))
        .body(data.to_vec())
        .send()
        .await
        .expect("PUT through the locator");
    assert_eq!(resp.status().as_u16(), 200, "ranged PUT of {}", loc.url);
}

fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32).map(|i| (i.wrapping_mul(7).wrapping_add(seed) % 251) as u8).collect()
}

const MIB: u64 = 1 << 20;

async fn lifecycle(which: Which) {
    let s = site(&which.spec()).await;
    let p = s.admin(which);

    // What the site is.
    let info = p.describe().await.expect("describe");
    let lic = info.licence.clone().expect("a licence");
    assert!(!lic.free, "{lic:?}");
    match which {
        Which::Vcenter => {
            assert!(matches!(info.kind, SiteKind::Vcenter));
            assert!(info.capabilities.managed_inventory && info.capabilities.clone_vm);
            assert_eq!(lic.edition, "vc.standard");
        }
        Which::Esxi => {
            assert!(matches!(info.kind, SiteKind::Esxi));
            assert!(!info.capabilities.managed_inventory && !info.capabilities.clone_vm);
            assert_eq!(lic.edition, "esxEnterprisePlus");
        }
    }
    assert!(info.capabilities.privileges && info.capabilities.change_tracking && info.capabilities.create_vm);
    assert_eq!(info.capabilities.transports, vec![TransportKind::HttpRange]);
    assert_eq!(info.api_version, "8.0.2.0");

    // Inventory, with datastore reachability per host.
    let hosts = p.list_hosts().await.expect("list-hosts");
    let stores = p.list_datastores().await.expect("list-datastores");
    let nets = p.list_networks().await.expect("list-networks");
    assert!(hosts.iter().all(|h| h.connected && !h.in_maintenance && h.product_version == "8.0.2"));
    let ds1 = stores.iter().find(|d| d.name == "datastore1").expect("datastore1");
    assert_eq!(ds1.capacity_bytes, if which == Which::Vcenter { 100 << 30 } else { 50 << 30 });
    assert_eq!(ds1.filesystem, "VMFS");
    let mut mounted = ds1.accessible_from.clone();
    mounted.sort();
    let mut all_hosts: Vec<String> = hosts.iter().map(|h| h.id.clone()).collect();
    all_hosts.sort();
    assert_eq!(mounted, all_hosts, "datastore1 is mounted by every host");
    if which == Which::Vcenter {
        assert_eq!(hosts.len(), 2);
        let esx1 = hosts.iter().find(|h| h.name == "esx1.lab.local").unwrap();
        let local = stores.iter().find(|d| d.name == "local-esx1").expect("local-esx1");
        assert_eq!(local.accessible_from, vec![esx1.id.clone()], "only esx1 reaches local-esx1");
    } else {
        assert_eq!(hosts.len(), 1);
    }
    let net = nets.iter().find(|n| n.name == "VM Network").expect("VM Network");
    let web01 = vm_by_name(&p, "web01").await;
    assert_eq!(web01.power_state, PowerState::PoweredOn);
    assert_eq!(web01.disks.len(), 1);
    assert_eq!(web01.disks[0].capacity_bytes, 64 * MIB);
    assert_eq!(web01.disks[0].datastore.as_deref(), Some(ds1.id.as_str()));
    assert!(web01.disks[0].path.starts_with("[datastore1] web01/"), "{}", web01.disks[0].path);
    assert_eq!(web01.nics.len(), 1);
    assert_eq!(web01.nics[0].network, net.id);
    assert!(web01.host.as_ref().is_some_and(|h| hosts.iter().any(|x| &x.id == h)), "{:?}", web01.host);
    assert_eq!(p.get_vm(&web01.id).await.expect("get-vm").name, "web01");
    let checks = p.check_privileges(vec![ds1.id.clone(), String::new()], vec!["Datastore.Browse".into()]).await.expect("check-privileges");
    assert_eq!(checks.len(), 2);
    assert!(checks.iter().all(|c| c.granted && c.privilege == "Datastore.Browse"));

    // Create a VM with a disk; a second create with the name is refused.
    let spec = VmSpec {
        name: "mt01".into(),
        guest_os: "ubuntu64Guest".into(),
        cpu_count: 2,
        memory_mib: 1024,
        host: None,
        datastore: Some(ds1.id.clone()),
        networks: vec![net.id.clone()],
        disks: vec![DiskSpec { label: "os".into(), capacity_bytes: 32 * MIB, datastore: None, thin: true }],
        extra_config: vec![],
    };
    let op = done(&p, p.create_vm(spec.clone()).await.expect("create-vm"), "create-vm").await;
    let vm = op.target.clone().expect("the new VM's id");
    let err = p.create_vm(spec).await.unwrap_err();
    assert!(matches!(err, CallError::Adapter { error: AdapterError::AlreadyExists(_), .. }), "{err}");
    let mt = p.get_vm(&vm).await.expect("get-vm");
    assert_eq!((mt.name.as_str(), mt.cpu_count, mt.memory_mib, mt.guest_os.as_str()), ("mt01", 2, 1024, "ubuntu64Guest"));
    assert_eq!(mt.power_state, PowerState::PoweredOff);
    assert_eq!(mt.disks.len(), 1);
    assert_eq!(mt.disks[0].capacity_bytes, 32 * MIB);
    assert_eq!(mt.nics[0].network, net.id);
    let disk = mt.disks[0].id.clone();
    let key: i32 = disk.parse().expect("disk ids are device keys");
    assert_eq!(s.lab.disk_keys("mt01").unwrap(), vec![key]);

    // disk.EnableUUID, as the master target needs, and change tracking.
    let op = p.reconfigure(&vm, vec![KeyValue { key: "disk.EnableUUID".into(), value: "TRUE".into() }]).await.expect("reconfigure");
    done(&p, op, "reconfigure").await;
    assert_eq!(s.lab.extra_config("mt01", "disk.EnableUUID").unwrap().as_deref(), Some("TRUE"));
    let op = done(&p, p.enable_change_tracking(&vm, &disk).await.expect("enable-change-tracking"), "enable-change-tracking").await;
    assert!(matches!(op.state, OperationState::Succeeded));
    let mt = p.get_vm(&vm).await.unwrap();
    assert!(mt.extra_config.iter().any(|kv| kv.key == "disk.EnableUUID" && kv.value == "TRUE"));
    assert!(mt.disks[0].change_tracking);
    let again = p.enable_change_tracking(&vm, &disk).await.expect("again");
    assert!(matches!(again.state, OperationState::Succeeded), "a tracked disk is a no-op");

    // Attach and detach a second disk.
    let op = p.attach_disk(&vm, DiskSpec { label: "data".into(), capacity_bytes: 8 * MIB, datastore: None, thin: true }).await.expect("attach-disk");
    let data_disk = done(&p, op, "attach-disk").await.target.expect("the new disk's id");
    let mt = p.get_vm(&vm).await.unwrap();
    let added = mt.disks.iter().find(|d| d.id == data_disk).expect("attached disk listed");
    assert_eq!(added.capacity_bytes, 8 * MIB);
    let label = added.label.clone();
    let err = p.attach_disk(&vm, DiskSpec { label, capacity_bytes: MIB, datastore: None, thin: true }).await.unwrap_err();
    assert!(matches!(err, CallError::Adapter { error: AdapterError::AlreadyExists(_), .. }), "{err}");
    done(&p, p.detach_disk(&vm, &data_disk, true).await.expect("detach-disk"), "detach-disk").await;
    assert_eq!(p.get_vm(&vm).await.unwrap().disks.len(), 1);
    let err = p.detach_disk(&vm, &data_disk, true).await.unwrap_err();
    assert!(matches!(err, CallError::Adapter { error: AdapterError::NotFound(_), .. }), "{err}");

    // Power on; a second power-on is a succeeded no-op.
    done(&p, p.power_on(&vm).await.expect("power-on"), "power-on").await;
    assert!(s.lab.is_powered_on("mt01").unwrap());
    let again = p.power_on(&vm).await.expect("power-on again");
    assert!(matches!(again.state, OperationState::Succeeded));
    assert!(matches!(p.poll_operation(&again.id).await.expect("poll").state, OperationState::Succeeded));

    // A crash-consistent base, guest writes, an app-consistent point, a later write.
    let base = done(&p, p.create_snapshot(&vm, "base", false).await.expect("snapshot"), "create-snapshot").await.target.expect("snapshot id");
    let err = p.create_snapshot(&vm, "base", false).await.unwrap_err();
    assert!(matches!(err, CallError::Adapter { error: AdapterError::AlreadyExists(_), .. }), "{err}");
    let (initial, base_change) = all_changes(&p, &vm, &disk, &base, "*", 32 * MIB).await;
    assert!(initial.iter().map(|e| e.1).sum::<u64>() < 32 * MIB, "a fresh thin disk is sparse: {initial:?}");
    assert!(!base_change.is_empty() && base_change != "*", "{base_change}");

    let first = pattern(4096, 1);
    let third = pattern(1024, 3);
    s.lab.guest_write("mt01", key, MIB, &first).unwrap();
    s.lab.guest_write_zeros("mt01", key, 10 * MIB, 512).unwrap();
    s.lab.guest_write("mt01", key, 20 * MIB + 512, &third).unwrap();
    let app = done(&p, p.create_snapshot(&vm, "app", true).await.expect("quiesced snapshot"), "create-snapshot").await.target.expect("snapshot id");
    s.lab.guest_write("mt01", key, 30 * MIB, &[9; 512]).unwrap();
    let snaps = p.get_vm(&vm).await.unwrap().snapshots;
    let by_id = |id: &str| snaps.iter().find(|x| x.id == id).cloned().expect("snapshot listed");
    assert!(!by_id(&base).quiesced);
    assert!(by_id(&app).quiesced);
    assert_eq!(by_id(&app).parent.as_deref(), Some(base.as_str()));

    let (changed, app_change) = all_changes(&p, &vm, &disk, &app, &base_change, 32 * MIB).await;
    assert_eq!(
        changed,
        vec![(MIB, 4096), (10 * MIB, 512), (20 * MIB + 512, 1024)],
        "exactly what the guest wrote between the two snapshots"
    );
    assert_ne!(app_change, base_change);
    let (nothing, _) = all_changes(&p, &vm, &disk, &app, &app_change, 32 * MIB).await;
    assert!(nothing.is_empty(), "nothing changed since the snapshot's own change id: {nothing:?}");
    let err = p.changed_areas(&vm, &disk, "snapshot-none", &base_change, 0).await.unwrap_err();
    assert!(matches!(err, CallError::Adapter { error: AdapterError::NotFound(_), .. }), "{err}");

    // The snapshot's bytes through the locator: the written data, not the later write.
    let access = p.open(&vm, &disk, Some(&app), AccessMode::ReadOnly).await.expect("open snapshot");
    assert!(access.read_only);
    assert_eq!(access.capacity_bytes, 32 * MIB);
    let loc = http_locator(&access.locator);
    assert_eq!(loc.format, DiskFormat::VmdkFlat);
    assert_eq!(read_range(loc, MIB, 4096).await, first);
    assert_eq!(read_range(loc, 20 * MIB + 512, 1024).await, third);
    assert_eq!(read_range(loc, 30 * MIB, 512).await, vec![0; 512]);
    p.close(&access.handle).await.expect("close");
    p.close(&access.handle).await.expect("closing twice is fine");
    let err = p.read(&access.handle, 0, 512).await.unwrap_err();
    assert!(matches!(err, CallError::Adapter { error: AdapterError::NotFound(_), .. }), "{err}");

    // Wrong power state: a running VM's disk is locked, and a running VM is not deleted.
    let err = p.open(&vm, &disk, None, AccessMode::ReadWrite).await.unwrap_err();
    assert!(matches!(err, CallError::Adapter { error: AdapterError::Conflict(_), .. }), "{err}");
    let err = p.delete_vm(&vm).await.unwrap_err();
    assert!(matches!(err, CallError::Adapter { error: AdapterError::Conflict(_), .. }), "{err}");

    // Powered off, the running disk is written through the locator.
    done(&p, p.power_off(&vm, PowerOffMode::Hard).await.expect("power-off"), "power-off").await;
    let again = p.power_off(&vm, PowerOffMode::Hard).await.expect("power-off again");
    assert!(matches!(again.state, OperationState::Succeeded), "a VM already off is a no-op");
    let access = p.open(&vm, &disk, None, AccessMode::ReadWrite).await.expect("open read-write");
    assert!(!access.read_only);
    let loc = http_locator(&access.locator);
    let block = pattern(8192, 5);
    write_range(loc, 4 * MIB, &block, 32 * MIB).await;
    assert_eq!(s.lab.read_disk("mt01", key, 4 * MIB, 8192).unwrap(), block);
    assert_eq!(read_range(loc, 4 * MIB, 8192).await, block);
    assert_eq!(read_range(loc, 30 * MIB, 512).await, vec![9; 512], "the running disk has the later write");
    let err = p.read(&access.handle, 0, 512).await.unwrap_err();
    assert!(matches!(err, CallError::Adapter { error: AdapterError::Unsupported(_), .. }), "{err}");
    p.close(&access.handle).await.unwrap();

    // Snapshots removed (consolidated), then the VM deleted; repeats are not-found.
    done(&p, p.remove_snapshot(&vm, &app).await.expect("remove-snapshot"), "remove-snapshot").await;
    done(&p, p.remove_snapshot(&vm, &base).await.expect("remove-snapshot"), "remove-snapshot").await;
    assert!(p.get_vm(&vm).await.unwrap().snapshots.is_empty());
    assert!(s.lab.snapshot_names("mt01").unwrap().is_empty());
    assert_eq!(s.lab.read_disk("mt01", key, 4 * MIB, 8192).unwrap(), block, "consolidation keeps the data");
    let err = p.remove_snapshot(&vm, &app).await.unwrap_err();
    assert!(matches!(err, CallError::Adapter { error: AdapterError::NotFound(_), .. }), "{err}");
    done(&p, p.delete_vm(&vm).await.expect("delete-vm"), "delete-vm").await;
    assert!(s.lab.vm_ref("mt01").is_none());
    for err in [p.get_vm(&vm).await.unwrap_err(), p.delete_vm(&vm).await.unwrap_err()] {
        assert!(matches!(err, CallError::Adapter { error: AdapterError::NotFound(_), .. }), "{err}");
    }
    s.lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vcenter_adapter_runs_the_vm_lifecycle() {
    lifecycle(Which::Vcenter).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn esxi_adapter_runs_the_vm_lifecycle() {
    lifecycle(Which::Esxi).await;
}

async fn error_paths(which: Which) {
    let s = site(&which.spec()).await;
    let admin = s.admin(which);
    let web01 = vm_by_name(&admin, "web01").await;

    // A bad password.
    let creds = s.lab.credentials();
    let bad = s.adapter(which, &creds.user, "not-the-password", limits());
    for err in [bad.describe().await.unwrap_err(), bad.list_vms().await.unwrap_err()] {
        assert!(matches!(err, CallError::Adapter { error: AdapterError::PermissionDenied(_), .. }), "{err}");
        assert!(message(&err).contains("password"), "the fix names the credential: {err}");
    }

    // A read-only user sees VMs but cannot discover datastores or act.
    let ro_user = s.lab.user(which.read_only_user()).expect("read-only user");
    let ro = s.adapter(which, &ro_user.user, &ro_user.password, limits());
    assert!(ro.list_vms().await.expect("a read-only user lists VMs").iter().any(|v| v.name == "web01"));
    let err = ro.list_datastores().await.unwrap_err();
    assert!(matches!(err, CallError::Adapter { error: AdapterError::PermissionDenied(_), .. }), "{err}");
    assert!(message(&err).contains("Datastore.Browse"), "{err}");
    let ds = admin.list_datastores().await.unwrap().into_iter().find(|d| d.name == "datastore1").unwrap();
    let checks = ro.check_privileges(vec![ds.id.clone()], vec!["Datastore.Browse".into(), "System.Read".into()]).await.expect("check-privileges");
    let granted: Vec<(String, bool)> = checks.iter().map(|c| (c.privilege.clone(), c.granted)).collect();
    assert_eq!(granted, vec![("Datastore.Browse".into(), false), ("System.Read".into(), true)]);
    let err = ro.power_off(&web01.id, PowerOffMode::Hard).await.unwrap_err();
    assert!(matches!(err, CallError::Adapter { error: AdapterError::PermissionDenied(_), .. }), "{err}");
    assert!(message(&err).contains("VirtualMachine.Interact.PowerOff"), "{err}");
    let err = ro.open(&web01.id, &web01.disks[0].id, None, AccessMode::ReadOnly).await.unwrap_err();
    assert!(matches!(err, CallError::Adapter { error: AdapterError::PermissionDenied(_), .. }), "{err}");

    // A missing VM.
    for err in [
        admin.get_vm("vm-9999").await.unwrap_err(),
        admin.power_on("vm-9999").await.unwrap_err(),
        admin.delete_vm("vm-9999").await.unwrap_err(),
        admin.create_snapshot("vm-9999", "s", false).await.unwrap_err(),
        admin.changed_areas("vm-9999", "2000", "snapshot-1", "*", 0).await.unwrap_err(),
        admin.check_privileges(vec!["vm-9999".into()], vec!["System.Read".into()]).await.unwrap_err(),
    ] {
        assert!(matches!(err, CallError::Adapter { error: AdapterError::NotFound(_), .. }), "{err}");
    }
    let err = admin.poll_operation("task-424242").await.unwrap_err();
    assert!(matches!(err, CallError::Adapter { error: AdapterError::NotFound(_), .. }), "{err}");

    // A task that fails after it started: the operation carries the mapped error.
    s.lab.inject_task_error("CreateSnapshot_Task", 1, Fault::new("ApplicationQuiesceFault", "An error occurred while quiescing the virtual machine."));
    let op = admin.create_snapshot(&web01.id, "q", true).await.expect("the task starts");
    let err = admin.wait(op, "create-snapshot").await.unwrap_err();
    assert!(matches!(err, CallError::Adapter { error: AdapterError::Conflict(_), .. }), "{err}");
    assert!(s.lab.snapshot_names("web01").unwrap().is_empty());

    // A datastore running full refuses a snapshot with conflict.
    s.lab.set_datastore_full("datastore1", true).unwrap();
    let op = admin.create_snapshot(&web01.id, "full", false).await.expect("the task starts");
    let err = admin.wait(op, "create-snapshot").await.unwrap_err();
    assert!(matches!(err, CallError::Adapter { error: AdapterError::Conflict(_), .. }), "{err}");
    s.lab.set_datastore_full("datastore1", false).unwrap();

    // An expired session is renewed without the caller noticing.
    s.lab.expire_sessions();
    assert_eq!(admin.get_vm(&web01.id).await.expect("re-login").name, "web01");

    // A dropped connection is `unavailable`, and the next call is served.
    s.lab.drop_connections(Some("RetrievePropertiesEx"), 1);
    let err = admin.list_vms().await.unwrap_err();
    assert!(matches!(err, CallError::Adapter { error: AdapterError::Unavailable(_), .. }), "{err}");
    assert!(admin.list_vms().await.is_ok());

    // Latency past the call timeout cuts the call; the next call works from a fresh
    // instance, which reuses the session kept in the key-value store.
    let impatient = s.adapter(which, &creds.user, &creds.password, Limits { call_timeout: Duration::from_secs(3), ..limits() });
    assert!(impatient.list_hosts().await.is_ok());
    s.lab.inject_latency(Some("RetrievePropertiesEx"), Duration::from_secs(10));
    let err = impatient.list_vms().await.unwrap_err();
    assert!(matches!(err, CallError::Timeout { .. }), "{} {err}", kind(&err));
    s.lab.clear_injections();
    assert!(impatient.list_vms().await.expect("served after the latency is gone").iter().any(|v| v.name == "web01"));
    s.lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vcenter_adapter_error_paths() {
    error_paths(Which::Vcenter).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn esxi_adapter_error_paths() {
    error_paths(Which::Esxi).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn free_esxi_reports_its_edition_and_refuses_writes() {
    let s = site(&esxi("esxBasic")).await;
    let p = s.admin(Which::Esxi);
    let info = p.describe().await.expect("describe");
    let lic = info.licence.expect("licence");
    assert_eq!(lic.edition, "esxBasic");
    assert!(lic.free, "the free edition is reported so the pipeline can refuse failback");
    assert!(!info.capabilities.create_vm && !info.capabilities.change_tracking && !info.capabilities.clone_vm);
    let web01 = vm_by_name(&p, "web01").await;
    let err = p.power_off(&web01.id, PowerOffMode::Hard).await.unwrap_err();
    assert!(matches!(err, CallError::Adapter { error: AdapterError::Unsupported(_), .. }), "{err}");
    assert!(message(&err).contains("licence"), "{err}");
    s.lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_adapter_refuses_the_other_product() {
    let vc = site(VCENTER).await;
    let err = vc.admin(Which::Esxi).describe().await.unwrap_err();
    assert!(matches!(err, CallError::Adapter { error: AdapterError::InvalidArgument(_), .. }), "{err}");
    assert!(message(&err).contains("vmware-vcenter"), "{err}");
    let esx = site(&esxi("esxStandard")).await;
    let err = esx.admin(Which::Vcenter).describe().await.unwrap_err();
    assert!(matches!(err, CallError::Adapter { error: AdapterError::InvalidArgument(_), .. }), "{err}");
    assert!(message(&err).contains("vmware-esxi"), "{err}");
    vc.lab.shutdown().await;
    esx.lab.shutdown().await;
}

// ---- Compatibility with govmomi's vSphere simulator (vcsim) ----
//
// The simulator is a real, independent implementation of vim25, built from Debian's
// `golang-go` and `golang-github-vmware-govmomi-dev` with the launcher in
// tests/govmomi-sim. It runs the adapters' control plane in VPX (vCenter) and ESX
// (standalone host) mode. It has no QueryChangedDiskAreas and keeps no disk contents, so
// changed areas and disk bytes are covered by the lab tests above, not here.

mod govmomi {
    use std::io::{BufRead, BufReader};
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::sync::OnceLock;

    /// A running simulator; dropping it closes its stdin and kills it, even when a test
    /// fails.
    pub struct Sim {
        child: Child,
        pub addr: String,
    }

    impl Drop for Sim {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// Builds the launcher once per test run; `None` when there is no Go toolchain.
    fn launcher() -> Option<PathBuf> {
        static BUILT: OnceLock<Option<PathBuf>> = OnceLock::new();
        BUILT
            .get_or_init(|| {
                if Command::new("go").arg("version").output().is_err() {
                    return None;
                }
                let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
                let out = tmp.join("govmomi-sim");
                let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("govmomi-sim");
                let status = Command::new("go")
                    .args(["build", "-o"])
                    .arg(&out)
                    .arg(".")
                    .current_dir(&src)
                    .env("GOPATH", "/usr/share/gocode")
                    .env("GO111MODULE", "off")
                    .env("GOFLAGS", "-p=2")
                    .env("GOCACHE", tmp.join("gocache"))
                    .status()
                    .expect("run go build");
                assert!(
                    status.success(),
                    "building tests/govmomi-sim failed: install `golang-go golang-github-vmware-govmomi-dev` (apt-get)"
                );
                Some(out)
            })
            .clone()
    }

    /// Starts the simulator in `vpx` or `esx` mode; `None` (the test says it is skipped)
    /// without a Go toolchain.
    pub fn start(mode: &str) -> Option<Sim> {
        let Some(bin) = launcher() else {
            println!("skipped: no Go toolchain; install golang-go and golang-github-vmware-govmomi-dev to run the govmomi compatibility tests");
            return None;
        };
        let mut child = Command::new(bin).args(["-mode", mode]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("start govmomi-sim");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("the simulator prints its address");
        let addr = line.trim().to_string();
        assert!(addr.starts_with("127.0.0.1:"), "unexpected simulator address {addr:?}");
        Some(Sim { child, addr })
    }
}

/// Loads an adapter against the simulator at `addr` (user `user`, password `pass`).
fn sim_adapter(engine: &PluginEngine, dir: &Path, which: Which, addr: &str) -> Plugin {
    let var = format!("HOMEWARD_TEST_VCSIM_PASSWORD_{}_{}", std::process::id(), SECRET_SEQ.fetch_add(1, Ordering::SeqCst));
    // SAFETY: a variable of its own, written once before it is read.
    unsafe { std::env::set_var(&var, "pass") };
    let path = which.component();
    let name = format!("vcsim{}", SECRET_SEQ.load(Ordering::SeqCst));
    engine
        .load(PluginSpec {
            name: name.clone(),
            path: path.to_path_buf(),
            sha256: sha256_file(path).expect("hash"),
            allow_hosts: vec![format!("http://{addr}")],
            preopens: vec![],
            config: [("endpoint", addr), ("username", "user"), ("scheme", "http")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            secrets: [("password".to_string(), var)].into_iter().collect(),
            limits: limits(),
            kv_dir: dir.join("kv").join(name),
            config_source: "vmware_adapters.rs".into(),
        })
        .expect("the adapter loads")
}

async fn govmomi_control_plane(which: Which) {
    let Some(sim) = govmomi::start(if which == Which::Vcenter { "vpx" } else { "esx" }) else { return };
    let dir = tempfile::tempdir().unwrap();
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("vmware-adapters-compile-cache");
    let engine = PluginEngine::new(EngineOptions { cache_dir: Some(cache), ..EngineOptions::default() }).unwrap();
    let p = sim_adapter(&engine, dir.path(), which, &sim.addr);

    let info = p.describe().await.expect("describe");
    assert!(matches!((which, &info.kind), (Which::Vcenter, SiteKind::Vcenter) | (Which::Esxi, SiteKind::Esxi)));
    assert!(info.product.starts_with("VMware"), "{}", info.product);

    let hosts = p.list_hosts().await.expect("list-hosts");
    assert!(!hosts.is_empty());
    let stores = p.list_datastores().await.expect("list-datastores");
    let ds = stores.first().expect("a datastore").clone();
    assert!(!ds.accessible_from.is_empty() && ds.accessible_from.iter().all(|h| hosts.iter().any(|x| &x.id == h)), "{ds:?}");
    assert!(ds.capacity_bytes > 0);
    let nets = p.list_networks().await.expect("list-networks");
    let net = nets.iter().find(|n| n.name == "VM Network").expect("VM Network").clone();
    let vms = p.list_vms().await.expect("list-vms");
    assert!(!vms.is_empty());
    let existing = &vms[0];
    assert!(!existing.disks.is_empty(), "{existing:?}");
    assert_eq!(p.get_vm(&existing.id).await.expect("get-vm").id, existing.id);
    let checks = p.check_privileges(vec![ds.id.clone()], vec!["Datastore.Browse".into()]).await.expect("check-privileges");
    assert_eq!(checks.len(), 1);
    assert!(checks[0].granted, "the simulator's default user is an administrator");

    let spec = VmSpec {
        name: "homeward-compat".into(),
        guest_os: "otherGuest64".into(),
        cpu_count: 1,
        memory_mib: 256,
        host: None,
        datastore: Some(ds.id.clone()),
        networks: vec![net.id.clone()],
        disks: vec![DiskSpec { label: "os".into(), capacity_bytes: 16 * MIB, datastore: None, thin: true }],
        extra_config: vec![],
    };
    let vm = done(&p, p.create_vm(spec.clone()).await.expect("create-vm"), "create-vm").await.target.expect("vm id");
    let err = p.create_vm(spec).await.unwrap_err();
    assert!(matches!(err, CallError::Adapter { error: AdapterError::AlreadyExists(_), .. }), "{err}");
    let created = p.get_vm(&vm).await.expect("get-vm");
    assert_eq!(created.name, "homeward-compat");
    assert_eq!(created.disks.len(), 1);
    assert_eq!(created.disks[0].capacity_bytes, 16 * MIB);

    let op = p.reconfigure(&vm, vec![KeyValue { key: "disk.EnableUUID".into(), value: "TRUE".into() }]).await.expect("reconfigure");
    done(&p, op, "reconfigure").await;
    let after = p.get_vm(&vm).await.unwrap();
    assert!(after.extra_config.iter().any(|kv| kv.key == "disk.EnableUUID" && kv.value == "TRUE"), "{:?}", after.extra_config);

    done(&p, p.power_on(&vm).await.expect("power-on"), "power-on").await;
    assert_eq!(p.get_vm(&vm).await.unwrap().power_state, PowerState::PoweredOn);
    assert!(matches!(p.power_on(&vm).await.expect("again").state, OperationState::Succeeded));
    let crash = done(&p, p.create_snapshot(&vm, "crash", false).await.expect("snapshot"), "create-snapshot").await.target.expect("snapshot id");
    // A VM the simulator just created runs no guest tools: quiescing and guest shutdown
    // are refused up front, as on a real host.
    let err = p.create_snapshot(&vm, "app", true).await.unwrap_err();
    assert!(matches!(err, CallError::Adapter { error: AdapterError::Unsupported(_), .. }), "{err}");
    let err = p.power_off(&vm, PowerOffMode::GuestShutdown).await.unwrap_err();
    assert!(matches!(err, CallError::Adapter { error: AdapterError::Conflict(_), .. }), "{err}");
    let app = done(&p, p.create_snapshot(&vm, "app", false).await.expect("snapshot"), "create-snapshot").await.target.expect("snapshot id");
    let snaps = p.get_vm(&vm).await.unwrap().snapshots;
    assert_eq!(snaps.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), vec!["crash", "app"]);
    assert_eq!(snaps[1].parent.as_deref(), Some(crash.as_str()));
    // The simulator has no QueryChangedDiskAreas: the lab tests cover changed areas.
    let err = p.changed_areas(&vm, &created.disks[0].id, &app, "*", 0).await.unwrap_err();
    assert!(matches!(err, CallError::Adapter { error: AdapterError::Unsupported(_), .. }), "{err}");
    let err = p.delete_vm(&vm).await.unwrap_err();
    assert!(matches!(err, CallError::Adapter { error: AdapterError::Conflict(_), .. }), "{err}");
    done(&p, p.remove_snapshot(&vm, &app).await.expect("remove-snapshot"), "remove-snapshot").await;
    done(&p, p.remove_snapshot(&vm, &crash).await.expect("remove-snapshot"), "remove-snapshot").await;
    assert!(p.get_vm(&vm).await.unwrap().snapshots.is_empty());
    done(&p, p.power_off(&vm, PowerOffMode::Hard).await.expect("power-off"), "power-off").await;
    done(&p, p.delete_vm(&vm).await.expect("delete-vm"), "delete-vm").await;
    let err = p.get_vm(&vm).await.unwrap_err();
    assert!(matches!(err, CallError::Adapter { error: AdapterError::NotFound(_), .. }), "{err}");
    drop(sim);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vcenter_adapter_control_plane_against_govmomi_vpx() {
    govmomi_control_plane(Which::Vcenter).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn esxi_adapter_control_plane_against_govmomi_esx() {
    govmomi_control_plane(Which::Esxi).await;
}
