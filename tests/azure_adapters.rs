//! The Azure Resource Manager and classic adapters, driven through the plugin host's
//! sandbox against the simulated Azure site: inventory with deployment models, the VM
//! lifecycle around a failover (shutdown, delete on commit), snapshots and changed ranges
//! after guest writes and clears, page-blob bytes through the SAS locator, process-server
//! placement by deployment model and network, and every fault the lab can inject.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use homeward_lab::azure::{AzureLab, AzureLabConfig, DiskId, Fault, Service};
use homeward_plugin_host::bindings::compute::{OperationState, PowerOffMode, ProcessServerSpec, VmSpec};
use homeward_plugin_host::bindings::disks::{AccessMode, DiskFormat, Locator, PageBlobLocator};
use homeward_plugin_host::bindings::inventory::VmInfo;
use homeward_plugin_host::bindings::site::TransportKind;
use homeward_plugin_host::bindings::types::{DeploymentModel, Extent, PowerState, SiteKind};
use homeward_plugin_host::hash::sha256_file;
use homeward_plugin_host::limits::Limits;
use homeward_plugin_host::{AdapterError, CallError, EngineOptions, Plugin, PluginEngine, PluginSpec};

const SUB: &str = "2f0c6e7a-1111-4222-8333-944445555666";
const RG: &str = "rg-dr";
const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

const SPEC: &str = r#"
[[subscriptions]]
id = "2f0c6e7a-1111-4222-8333-944445555666"
name = "DR"

[[subscriptions.resource_groups]]
name = "rg-dr"
location = "westeurope"

[[subscriptions.resource_groups.virtual_networks]]
name = "vnet-dr"
address_prefixes = ["10.10.0.0/16"]
subnets = [{ name = "default", address_prefix = "10.10.1.0/24" }]

[[subscriptions.resource_groups.virtual_networks]]
name = "vnet-other"
address_prefixes = ["10.30.0.0/16"]
subnets = [{ name = "default", address_prefix = "10.30.1.0/24" }]

[[subscriptions.resource_groups.vms]]
name = "web01"
network = "vnet-dr"
subnet = "default"
os_disk_mib = 8
data_disks_mib = [4]

[[subscriptions.classic.virtual_networks]]
name = "classic-vnet"
address_prefixes = ["10.20.0.0/16"]
subnets = [{ name = "Subnet-1", address_prefix = "10.20.1.0/24" }]

[[subscriptions.classic.virtual_networks]]
name = "classic-other"
address_prefixes = ["10.40.0.0/16"]
subnets = [{ name = "Subnet-1", address_prefix = "10.40.1.0/24" }]

[[subscriptions.classic.vms]]
service = "legacy-svc"
name = "app01"
network = "classic-vnet"
subnet = "Subnet-1"
os_disk_mib = 8
data_disks_mib = [4]
"#;

/// A running lab, a plugin engine and a state directory; the lab stops when this drops,
/// also when a test fails.
struct Site {
    lab: AzureLab,
    dir: tempfile::TempDir,
    engine: PluginEngine,
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

fn site() -> Site {
    let lab = AzureLab::start_with_toml(AzureLabConfig::default(), SPEC).expect("the Azure lab starts");
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("azure-adapters-compile-cache");
    let engine = PluginEngine::new(EngineOptions { cache_dir: Some(cache), ..EngineOptions::default() }).expect("engine");
    Site { lab, dir: tempfile::tempdir().expect("tempdir"), engine }
}

/// Puts a secret in a host environment variable of its own and returns the variable name.
fn secret_var(value: &str) -> String {
    let var = format!("HOMEWARD_TEST_AZURE_SECRET_{}_{}", std::process::id(), SEQ.fetch_add(1, Ordering::SeqCst));
    // SAFETY: each variable is written once, before any adapter reads it.
    unsafe { std::env::set_var(&var, value) };
    var
}

fn origin(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("absolute URL");
    format!("{scheme}://{}", rest.split('/').next().unwrap_or(rest))
}

impl Site {
    fn load(&self, path: &Path, config: &[(&str, String)], secrets: &[(&str, String)]) -> Plugin {
        let name = format!("azure{}", SEQ.fetch_add(1, Ordering::SeqCst));
        let config: BTreeMap<String, String> = config.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        let mut allow: Vec<String> = ["login_endpoint", "arm_endpoint", "blob_endpoint", "management_endpoint"].iter().filter_map(|k| config.get(*k)).map(|u| origin(u)).collect();
        allow.dedup();
        let spec = PluginSpec {
            name: name.clone(),
            path: path.to_path_buf(),
            sha256: sha256_file(path).expect("hash"),
            allow_hosts: allow,
            preopens: vec![],
            config,
            secrets: secrets.iter().map(|(k, v)| (k.to_string(), secret_var(v))).collect(),
            limits: Limits { memory_mib: 128, call_timeout: Duration::from_secs(60), fuel: None },
            kv_dir: self.dir.path().join("kv").join(&name),
            config_source: "azure_adapters.rs".into(),
        };
        self.engine.load(spec).expect("the adapter loads")
    }

    fn rm(&self) -> Plugin {
        let e = self.lab.endpoints();
        let c = self.lab.credentials();
        self.load(
            homeward_plugin_artifacts::azure_rm(),
            &[
                ("login_endpoint", e.login.clone()),
                ("arm_endpoint", e.resource_manager.clone()),
                ("blob_endpoint", e.blob.clone()),
                ("tenant_id", c.tenant_id.clone()),
                ("client_id", c.client_id.clone()),
                ("subscription_id", SUB.into()),
                ("resource_group", RG.into()),
            ],
            &[("client_secret", c.client_secret)],
        )
    }

    fn classic_with_key(&self, certificate_key: &[u8]) -> Plugin {
        use base64::Engine;
        let e = self.lab.endpoints();
        let c = self.lab.credentials();
        self.load(
            homeward_plugin_artifacts::azure_classic(),
            &[
                ("management_endpoint", e.classic.clone()),
                ("blob_endpoint", format!("{}/{}", e.blob, c.storage_account)),
                ("subscription_id", SUB.into()),
                ("certificate_thumbprint", c.management_certificate.thumbprint.clone()),
                ("storage_account", c.storage_account.clone()),
            ],
            &[("management_certificate_key", base64::engine::general_purpose::STANDARD.encode(certificate_key)), ("storage_key", c.storage_key)],
        )
    }

    fn classic(&self) -> Plugin {
        self.classic_with_key(&self.lab.credentials().management_certificate.key)
    }

    fn rm_disk(&self, name: &str) -> DiskId {
        DiskId::Managed { subscription: SUB.into(), resource_group: RG.into(), disk: name.into() }
    }
}

fn kind(err: &CallError) -> &'static str {
    match err {
        CallError::Adapter { error, .. } => error.kind_name(),
        other => other.kind(),
    }
}

fn retry_after(err: &CallError) -> Option<u64> {
    match err {
        CallError::Adapter { error: AdapterError::Unavailable(u), .. } => u.retry_after_ms,
        _ => None,
    }
}

async fn done(p: &Plugin, op: homeward_plugin_host::bindings::compute::Operation, call: &str) -> homeward_plugin_host::bindings::compute::Operation {
    p.wait(op, call).await.unwrap_or_else(|e| panic!("{call} failed: {e}"))
}

async fn vm_by_name(p: &Plugin, name: &str) -> VmInfo {
    p.list_vms().await.expect("list-vms").into_iter().find(|v| v.name == name).unwrap_or_else(|| panic!("VM {name} listed"))
}

fn page_blob(l: &Locator) -> &PageBlobLocator {
    match l {
        Locator::PageBlob(b) => b,
        other => panic!("expected a page-blob locator, got {other:?}"),
    }
}

fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32).map(|i| (i.wrapping_mul(13).wrapping_add(seed) % 251) as u8 | 1).collect()
}

/// Extents as `(offset, length)` pairs, which compare.
fn pairs(v: Vec<Extent>) -> Vec<(u64, u64)> {
    v.iter().map(|e| (e.offset, e.length)).collect()
}

fn ext(offset: u64, length: u64) -> (u64, u64) {
    (offset, length)
}

fn with_query(url: &str, q: &str) -> String {
    if url.contains('?') { format!("{url}&{q}") } else { format!("{url}?{q}") }
}

/// A ranged Get Blob through a SAS URL; returns the status and the bytes.
async fn get_range(url: &str, offset: u64, len: u64) -> (u16, Vec<u8>) {
    let resp = reqwest::Client::new()
        .get(url)
        .header("x-ms-version", "2021-08-06")
        .header("x-ms-range", format!("bytes={offset}-{}", offset + len - 1))
        .send()
        .await
        .expect("GET through the locator");
    let status = resp.status().as_u16();
    (status, resp.bytes().await.expect("body").to_vec())
}

/// Put Page (update) through a SAS URL; returns the status.
async fn put_pages(url: &str, offset: u64, data: &[u8]) -> u16 {
    reqwest::Client::new()
        .put(with_query(url, "comp=page"))
        .header("x-ms-version", "2021-08-06")
        .header("x-ms-page-write", "update")
        .header("x-ms-range", format!("bytes={offset}-{}", offset + data.len() as u64 - 1))
        .body(data.to_vec())
        .send()
        .await
        .expect("PUT through the locator")
        .status()
        .as_u16()
}

/// Every change of a disk between `since` and `snapshot`, following the pages.
async fn changes(p: &Plugin, vm: &str, disk: &str, snapshot: &str, since: &str, capacity: u64) -> (Vec<(u64, u64)>, Vec<(u64, u64)>) {
    let (mut changed, mut cleared) = (Vec::new(), Vec::new());
    let mut start = 0;
    while start < capacity {
        let cs = p.changed_areas(vm, disk, snapshot, since, start).await.expect("changed-areas");
        assert_eq!(cs.start_offset, start);
        assert!(cs.length > 0, "a page must advance");
        assert_eq!(cs.change_id, snapshot, "the change id is the snapshot's");
        changed.extend(pairs(cs.changed));
        cleared.extend(pairs(cs.cleared));
        start = cs.start_offset + cs.length;
    }
    (changed, cleared)
}

/// Guest writes A and B, snapshot `s1`; then writes C and trims B, snapshot `s2`. The diff
/// s1→s2 must be exactly C changed and B cleared.
async fn writes_and_clears(lab: &AzureLab, p: &Plugin, vm: &str, disk: &str, lab_disk: &DiskId, capacity: u64) -> Vec<u8> {
    let a = pattern(16 * KIB as usize, 1);
    let b = pattern(8 * KIB as usize, 2);
    let c = pattern(4 * KIB as usize, 3);
    lab.write_disk(lab_disk, 0, &a).expect("guest write A");
    lab.write_disk(lab_disk, MIB, &b).expect("guest write B");
    let s1 = done(p, p.create_snapshot(vm, "s1", false).await.expect("create-snapshot s1"), "create-snapshot").await;
    assert_eq!(s1.target.as_deref(), Some("s1"));
    let again = p.create_snapshot(vm, "s1", false).await.expect_err("a second s1");
    assert_eq!(kind(&again), "already-exists");

    let (all, cleared_all) = changes(p, vm, disk, "s1", "*", capacity).await;
    assert_eq!(all, vec![ext(0, 16 * KIB), ext(MIB, 8 * KIB)], "\"*\" lists every written range of s1");
    assert!(cleared_all.is_empty());

    lab.write_disk(lab_disk, 512 * KIB, &c).expect("guest write C");
    lab.clear_disk(lab_disk, MIB, 8 * KIB).expect("guest trims B");
    done(p, p.create_snapshot(vm, "s2", false).await.expect("create-snapshot s2"), "create-snapshot").await;
    let (changed, cleared) = changes(p, vm, disk, "s2", "s1", capacity).await;
    assert_eq!(changed, vec![ext(512 * KIB, 4 * KIB)], "only C was written since s1");
    assert_eq!(cleared, vec![ext(MIB, 8 * KIB)], "the trimmed range is a change too");

    let stale = p.changed_areas(vm, disk, "s2", "no-such-snapshot", 0).await.expect_err("unknown change id");
    assert_eq!(kind(&stale), "invalid-argument", "an unknown change id asks for a resync");
    let missing = p.changed_areas(vm, disk, "s9", "s1", 0).await.expect_err("unknown snapshot");
    assert_eq!(kind(&missing), "not-found");

    let info = p.get_vm(vm).await.expect("get-vm");
    let names: Vec<(&str, Option<&str>)> = info.snapshots.iter().map(|s| (s.name.as_str(), s.parent.as_deref())).collect();
    assert_eq!(names, vec![("s1", None), ("s2", Some("s1"))]);
    c
}

// ---------------------------------------------------------------- Resource Manager

#[tokio::test(flavor = "multi_thread")]
async fn resource_manager_inventory_snapshots_and_locators() {
    let s = site();
    let p = s.rm();
    let info = p.describe().await.expect("describe");
    assert!(matches!(info.kind, SiteKind::AzureResourceManager), "{:?}", info.kind);
    assert_eq!(info.deployment_model, DeploymentModel::AzureResourceManager);
    assert!(info.capabilities.change_tracking && info.capabilities.deploy_process_server);
    assert_eq!(info.capabilities.transports, vec![TransportKind::PageBlob]);

    let nets = p.list_networks().await.expect("list-networks");
    let vnet = nets.iter().find(|n| n.name == "vnet-dr").expect("vnet-dr listed");
    assert_eq!(vnet.deployment_model, DeploymentModel::AzureResourceManager);
    assert_eq!(vnet.subnets, vec!["default".to_string()]);

    let web = vm_by_name(&p, "web01").await;
    assert_eq!(web.deployment_model, DeploymentModel::AzureResourceManager);
    assert_eq!(web.power_state, PowerState::PoweredOn);
    assert_eq!(web.guest_os, "Linux");
    assert_eq!((web.cpu_count, web.memory_mib), (2, 8192));
    assert_eq!(web.disks.len(), 2);
    assert_eq!((web.disks[0].label.as_str(), web.disks[0].capacity_bytes), ("web01-osdisk", 8 * MIB));
    assert_eq!((web.disks[1].label.as_str(), web.disks[1].capacity_bytes), ("web01-data0", 4 * MIB));
    assert!(web.nics[0].network.eq_ignore_ascii_case(&vnet.id), "the NIC is in vnet-dr");
    assert_eq!(p.get_vm(&web.id).await.expect("get-vm").name, "web01");
    assert_eq!(kind(&p.get_vm("legacy-svc/app01").await.expect_err("a classic id")), "not-found");

    let data = web.disks[1].id.clone();
    let c = writes_and_clears(&s.lab, &p, &web.id, &data, &s.rm_disk("web01-data0"), 4 * MIB).await;

    // The snapshot's bytes through its SAS locator: C where it was written, zeros where B
    // was trimmed. Closing ends the grant, and the URL stops working.
    let acc = p.open(&web.id, &data, Some("s2"), AccessMode::ReadOnly).await.expect("open s2");
    assert!(acc.read_only);
    assert_eq!(acc.capacity_bytes, 4 * MIB);
    let loc = page_blob(&acc.locator).clone();
    assert_eq!(loc.format, DiskFormat::VhdFixed);
    assert_eq!(get_range(&loc.url, 512 * KIB, 4 * KIB).await, (206, c.clone()));
    assert_eq!(get_range(&loc.url, MIB, 8 * KIB).await, (206, vec![0; 8 * KIB as usize]));
    p.close(&acc.handle).await.expect("close");
    assert_eq!(get_range(&loc.url, 0, 512).await.0, 403, "endGetAccess revokes the SAS");
    p.close(&acc.handle).await.expect("closing twice is fine");

    // A running VM's disk cannot be granted; reading it needs the VM deallocated.
    let busy = p.open(&web.id, &data, None, AccessMode::ReadOnly).await.expect_err("open while running");
    assert_eq!(kind(&busy), "conflict");

    // Failover: the failed-over VM is shut down (deallocated), idempotently.
    let op = done(&p, p.power_off(&web.id, PowerOffMode::Deallocate).await.expect("deallocate"), "power-off").await;
    assert_eq!(op.target.as_deref(), Some(web.id.as_str()));
    assert_eq!(s.lab.vm_power_state(SUB, RG, "web01").unwrap(), "deallocated");
    let again = p.power_off(&web.id, PowerOffMode::Deallocate).await.expect("deallocate again");
    assert!(matches!(again.state, OperationState::Succeeded), "already deallocated is a no-op");
    assert_eq!(p.get_vm(&web.id).await.unwrap().power_state, PowerState::Deallocated);

    let live = p.open(&web.id, &data, None, AccessMode::ReadOnly).await.expect("open the deallocated VM's disk");
    let url = page_blob(&live.locator).url.clone();
    let expected = s.lab.read_disk(&s.rm_disk("web01-data0"), 0, 16 * KIB).unwrap();
    assert_eq!(get_range(&url, 0, 16 * KIB).await, (206, expected));
    assert_eq!(put_pages(&url, 0, &vec![7; 512]).await, 403, "a read grant cannot write");
    p.close(&live.handle).await.expect("close");
    let write = p.open(&web.id, &data, None, AccessMode::ReadWrite).await.expect_err("write access to an attached disk");
    assert_eq!(kind(&write), "conflict");

    done(&p, p.remove_snapshot(&web.id, "s1").await.expect("remove-snapshot"), "remove-snapshot").await;
    assert_eq!(kind(&p.remove_snapshot(&web.id, "s1").await.expect_err("again")), "not-found");
    s.lab.shutdown();
}

#[tokio::test(flavor = "multi_thread")]
async fn resource_manager_vm_lifecycle_and_process_server() {
    let s = site();
    let p = s.rm();
    let web = vm_by_name(&p, "web01").await;
    let nets = p.list_networks().await.expect("list-networks");
    let id_of = |name: &str| nets.iter().find(|n| n.name == name).unwrap().id.clone();

    // The process server must match the VM's deployment model and network.
    let ps = |model, network: String, vms: Vec<String>| ProcessServerSpec { name: "ps-rm".into(), network, subnet: None, deployment_model: model, for_vms: vms };
    let wrong_model = p.deploy_process_server(ps(DeploymentModel::AzureClassic, id_of("vnet-dr"), vec![web.id.clone()])).await.expect_err("classic model");
    assert_eq!(kind(&wrong_model), "conflict");
    let classic_net = p.deploy_process_server(ps(DeploymentModel::AzureResourceManager, "classic-vnet".into(), vec![web.id.clone()])).await.expect_err("classic network");
    assert_eq!(kind(&classic_net), "conflict");
    let classic_vm = p.deploy_process_server(ps(DeploymentModel::AzureResourceManager, id_of("vnet-dr"), vec!["legacy-svc/app01".into()])).await.expect_err("classic VM");
    assert_eq!(kind(&classic_vm), "conflict");
    let other_net = p.deploy_process_server(ps(DeploymentModel::AzureResourceManager, id_of("vnet-other"), vec![web.id.clone()])).await.expect_err("other network");
    assert_eq!(kind(&other_net), "conflict");
    let op = p.deploy_process_server(ps(DeploymentModel::AzureResourceManager, id_of("vnet-dr"), vec![web.id.clone()])).await.expect("deploy");
    let op = done(&p, op, "deploy-process-server").await;
    let ps_vm = p.get_vm(op.target.as_deref().expect("target")).await.expect("the process server exists");
    assert_eq!(ps_vm.name, "ps-rm");
    assert_eq!(ps_vm.deployment_model, DeploymentModel::AzureResourceManager);
    assert!(ps_vm.nics[0].network.eq_ignore_ascii_case(&id_of("vnet-dr")));
    let dup = p.deploy_process_server(ps(DeploymentModel::AzureResourceManager, id_of("vnet-dr"), vec![web.id.clone()])).await.expect_err("twice");
    assert_eq!(kind(&dup), "already-exists");

    // A new VM, powered through its states, then deleted with its disks and NIC.
    let spec = VmSpec {
        name: "db01".into(),
        guest_os: "ubuntu64Guest".into(),
        cpu_count: 2,
        memory_mib: 4096,
        host: None,
        datastore: None,
        networks: vec![id_of("vnet-dr")],
        disks: vec![],
        extra_config: vec![],
    };
    let op = done(&p, p.create_vm(spec.clone()).await.expect("create-vm"), "create-vm").await;
    let db = op.target.expect("the new VM's id");
    assert_eq!(s.lab.vm_power_state(SUB, RG, "db01").unwrap(), "running");
    assert_eq!(kind(&p.create_vm(spec).await.expect_err("twice")), "already-exists");
    assert_eq!(kind(&p.delete_vm(&db).await.expect_err("running")), "conflict", "a running VM is not deleted");
    done(&p, p.power_off(&db, PowerOffMode::GuestShutdown).await.expect("guest shutdown"), "power-off").await;
    assert_eq!(s.lab.vm_power_state(SUB, RG, "db01").unwrap(), "stopped");
    done(&p, p.power_on(&db).await.expect("power-on"), "power-on").await;
    assert_eq!(s.lab.vm_power_state(SUB, RG, "db01").unwrap(), "running");
    assert!(matches!(p.power_on(&db).await.expect("again").state, OperationState::Succeeded));
    done(&p, p.power_off(&db, PowerOffMode::Hard).await.expect("hard power-off"), "power-off").await;
    assert_eq!(s.lab.vm_power_state(SUB, RG, "db01").unwrap(), "stopped");
    assert!(s.lab.requests().iter().any(|r| r.path.ends_with("/db01/powerOff") && r.query.contains("skipShutdown=true")));

    // Commit: the failed-over VM is deleted, and its disks and NIC after it.
    done(&p, p.delete_vm(&db).await.expect("delete-vm"), "delete-vm").await;
    assert!(!s.lab.vm_exists(SUB, RG, "db01"));
    let deleted: Vec<String> = s.lab.requests().iter().filter(|r| r.method == "DELETE" && r.status < 300).map(|r| r.path.to_ascii_lowercase()).collect();
    assert!(deleted.iter().any(|p| p.contains("microsoft.compute/disks/db01-osdisk")), "the OS disk is deleted: {deleted:?}");
    assert!(deleted.iter().any(|p| p.contains("networkinterfaces/db01-nic0")), "the NIC is deleted: {deleted:?}");
    assert_eq!(kind(&p.delete_vm(&db).await.expect_err("again")), "not-found");
    assert_eq!(kind(&p.poll_operation("op-unknown").await.expect_err("unknown operation")), "not-found");
    s.lab.shutdown();
}

#[tokio::test(flavor = "multi_thread")]
async fn resource_manager_faults() {
    let s = site();
    let p = s.rm();
    let web = vm_by_name(&p, "web01").await;

    s.lab.inject(Fault::throttle(Service::ResourceManager, 7));
    let err = p.list_vms().await.expect_err("throttled");
    assert_eq!((kind(&err), retry_after(&err)), ("unavailable", Some(7000)));
    assert_eq!(p.list_vms().await.expect("after the throttle").len(), 1);

    s.lab.inject(Fault::server_error(Service::ResourceManager, 503));
    assert_eq!(kind(&p.get_vm(&web.id).await.expect_err("503")), "unavailable");
    s.lab.inject(Fault::server_error(Service::ResourceManager, 500));
    assert_eq!(kind(&p.get_vm(&web.id).await.expect_err("500")), "unavailable");
    s.lab.inject(Fault::drop_connection(Service::ResourceManager));
    assert_eq!(kind(&p.get_vm(&web.id).await.expect_err("dropped")), "unavailable");
    s.lab.inject(Fault::latency(Service::ResourceManager, Duration::from_millis(300)));
    assert_eq!(p.get_vm(&web.id).await.expect("slow but fine").name, "web01");
    s.lab.inject(Fault::throttle(Service::Login, 3));
    s.lab.expire_tokens();
    assert_eq!(kind(&p.get_vm(&web.id).await.expect_err("the token endpoint throttles")), "unavailable");

    // An expired token is refreshed without the caller noticing.
    let logins_before = s.lab.requests().iter().filter(|r| r.service == Service::Login && r.status == 200).count();
    s.lab.expire_tokens();
    assert_eq!(p.get_vm(&web.id).await.expect("refreshed transparently").name, "web01");
    let reqs = s.lab.requests();
    assert!(reqs.iter().any(|r| r.service == Service::ResourceManager && r.status == 401), "the stale token was refused once");
    assert_eq!(reqs.iter().filter(|r| r.service == Service::Login && r.status == 200).count(), logins_before + 1, "one new token");

    // Throttled while polling: the poll is unavailable, the operation goes on.
    let op = p.power_off(&web.id, PowerOffMode::Hard).await.expect("power-off starts");
    s.lab.inject(Fault::throttle(Service::ResourceManager, 2).path_contains("/operations/"));
    let err = p.poll_operation(&op.id).await.expect_err("throttled poll");
    assert_eq!((kind(&err), retry_after(&err)), ("unavailable", Some(2000)));
    done(&p, op, "power-off").await;
    assert_eq!(s.lab.vm_power_state(SUB, RG, "web01").unwrap(), "stopped");

    // A long-running operation that fails carries the mapped error, and the VM is as before.
    s.lab.inject(Fault::fail_operation(Service::ResourceManager, "OperationNotAllowed", "Allocation failed in this zone."));
    let op = p.power_on(&web.id).await.expect("power-on starts");
    let err = p.wait(op.clone(), "power-on").await.expect_err("the operation fails");
    assert_eq!(kind(&err), "conflict");
    assert!(err.to_string().contains("Allocation failed"), "{err}");
    let again = p.poll_operation(&op.id).await.expect("poll after the end");
    assert!(matches!(again.state, OperationState::Failed(AdapterError::Conflict(_))), "{again:?}");
    assert_eq!(s.lab.vm_power_state(SUB, RG, "web01").unwrap(), "stopped");

    // Wrong credentials are permission-denied.
    let bad = s.load(
        homeward_plugin_artifacts::azure_rm(),
        &[
            ("login_endpoint", s.lab.endpoints().login.clone()),
            ("arm_endpoint", s.lab.endpoints().resource_manager.clone()),
            ("blob_endpoint", s.lab.endpoints().blob.clone()),
            ("tenant_id", s.lab.credentials().tenant_id),
            ("client_id", s.lab.credentials().client_id),
            ("subscription_id", SUB.into()),
            ("resource_group", RG.into()),
        ],
        &[("client_secret", "not-the-secret".into())],
    );
    assert_eq!(kind(&bad.describe().await.expect_err("bad secret")), "permission-denied");
    s.lab.shutdown();
}

// ---------------------------------------------------------------- classic

#[tokio::test(flavor = "multi_thread")]
async fn classic_inventory_snapshots_and_locators() {
    let s = site();
    let p = s.classic();
    let info = p.describe().await.expect("describe");
    assert!(matches!(info.kind, SiteKind::AzureClassic), "{:?}", info.kind);
    assert_eq!(info.deployment_model, DeploymentModel::AzureClassic);

    let nets = p.list_networks().await.expect("list-networks");
    let vnet = nets.iter().find(|n| n.id == "classic-vnet").expect("classic-vnet listed");
    assert_eq!((vnet.deployment_model, vnet.subnets.clone()), (DeploymentModel::AzureClassic, vec!["Subnet-1".to_string()]));

    let app = vm_by_name(&p, "app01").await;
    assert_eq!(app.id, "legacy-svc/app01");
    assert_eq!(app.deployment_model, DeploymentModel::AzureClassic);
    assert_eq!(app.power_state, PowerState::PoweredOn);
    assert_eq!(app.nics[0].network, "classic-vnet");
    let caps: Vec<u64> = app.disks.iter().map(|d| d.capacity_bytes).collect();
    assert_eq!(caps, vec![8 * MIB, 4 * MIB]);
    let data = app.disks[1].id.clone();
    let lab_disk = DiskId::Classic { subscription: SUB.into(), service: "legacy-svc".into(), role: "app01".into(), lun: Some(0) };

    let c = writes_and_clears(&s.lab, &p, &app.id, &data, &lab_disk, 4 * MIB).await;

    let snap = p.open(&app.id, &data, Some("s2"), AccessMode::ReadWrite).await.expect("open s2");
    assert!(snap.read_only, "a snapshot is always read-only");
    let url = page_blob(&snap.locator).url.clone();
    assert_eq!(get_range(&url, 512 * KIB, 4 * KIB).await, (206, c));
    assert_eq!(get_range(&url, MIB, 8 * KIB).await, (206, vec![0; 8 * KIB as usize]));
    assert_eq!(put_pages(&url, 0, &[9; 512]).await, 403, "a snapshot SAS cannot write");
    p.close(&snap.handle).await.expect("close");

    // Ranged writes through a read-write locator land on the disk the guest sees.
    let rw = p.open(&app.id, &data, None, AccessMode::ReadWrite).await.expect("open read-write");
    assert!(!rw.read_only);
    assert_eq!(rw.capacity_bytes, 4 * MIB);
    let url = page_blob(&rw.locator).url.clone();
    let bytes = pattern(8 * KIB as usize, 9);
    assert_eq!(put_pages(&url, 2 * MIB, &bytes).await, 201);
    assert_eq!(s.lab.read_disk(&lab_disk, 2 * MIB, 8 * KIB).unwrap(), bytes);
    assert_eq!(get_range(&url, 2 * MIB + 512, 1024).await, (206, bytes[512..1536].to_vec()));
    let ro = p.open(&app.id, &data, None, AccessMode::ReadOnly).await.expect("open read-only");
    assert_eq!(put_pages(&page_blob(&ro.locator).url, 0, &[9; 512]).await, 403, "a read-only SAS cannot write");

    done(&p, p.create_snapshot(&app.id, "s3", false).await.expect("s3"), "create-snapshot").await;
    let (changed, cleared) = changes(&p, &app.id, &data, "s3", "s2", 4 * MIB).await;
    assert_eq!((changed, cleared), (vec![ext(2 * MIB, 8 * KIB)], vec![]), "the locator's write is tracked");
    done(&p, p.remove_snapshot(&app.id, "s1").await.expect("remove-snapshot"), "remove-snapshot").await;
    assert_eq!(kind(&p.changed_areas(&app.id, &data, "s3", "s1", 0).await.expect_err("s1 is gone")), "invalid-argument");
    assert_eq!(kind(&p.remove_snapshot(&app.id, "s1").await.expect_err("again")), "not-found");
    assert_eq!(kind(&p.create_snapshot(&app.id, "q", true).await.expect_err("quiesce")), "unsupported");
    s.lab.shutdown();
}

#[tokio::test(flavor = "multi_thread")]
async fn classic_lifecycle_process_server_and_faults() {
    let s = site();
    let p = s.classic();
    let app = "legacy-svc/app01";

    let ps = |model, network: &str, vms: Vec<String>| ProcessServerSpec { name: "ps-classic".into(), network: network.into(), subnet: None, deployment_model: model, for_vms: vms };
    let wrong = p.deploy_process_server(ps(DeploymentModel::AzureResourceManager, "classic-vnet", vec![app.into()])).await.expect_err("RM model");
    assert_eq!(kind(&wrong), "conflict");
    let rm_net = format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/virtualNetworks/vnet-dr");
    assert_eq!(kind(&p.deploy_process_server(ps(DeploymentModel::AzureClassic, &rm_net, vec![app.into()])).await.expect_err("RM network")), "conflict");
    assert_eq!(kind(&p.deploy_process_server(ps(DeploymentModel::AzureClassic, "classic-other", vec![app.into()])).await.expect_err("other network")), "conflict");
    assert_eq!(kind(&p.deploy_process_server(ps(DeploymentModel::AzureClassic, "nowhere", vec![app.into()])).await.expect_err("unknown network")), "not-found");
    let op = p.deploy_process_server(ps(DeploymentModel::AzureClassic, "classic-vnet", vec![app.into()])).await.expect("deploy");
    let op = done(&p, op, "deploy-process-server").await;
    assert_eq!(op.target.as_deref(), Some("ps-classic/ps-classic"));
    assert!(s.lab.classic_role_exists(SUB, "ps-classic", "ps-classic"));
    let ps_vm = p.get_vm("ps-classic/ps-classic").await.expect("get-vm");
    assert_eq!((ps_vm.deployment_model, ps_vm.nics[0].network.as_str()), (DeploymentModel::AzureClassic, "classic-vnet"));
    assert_eq!(kind(&p.deploy_process_server(ps(DeploymentModel::AzureClassic, "classic-vnet", vec![app.into()])).await.expect_err("twice")), "already-exists");

    // Faults on Service Management.
    s.lab.inject(Fault::throttle(Service::Classic, 5));
    let err = p.list_vms().await.expect_err("throttled");
    assert_eq!((kind(&err), retry_after(&err)), ("unavailable", Some(5000)));
    s.lab.inject(Fault::server_error(Service::Classic, 503));
    assert_eq!(kind(&p.get_vm(app).await.expect_err("503")), "unavailable");
    s.lab.inject(Fault::drop_connection(Service::Classic));
    assert_eq!(kind(&p.get_vm(app).await.expect_err("dropped")), "unavailable");
    s.lab.inject(Fault::throttle(Service::Blob, 4));
    assert_eq!(kind(&p.get_vm(app).await.expect_err("storage throttled")), "unavailable");
    s.lab.inject(Fault::latency(Service::Classic, Duration::from_millis(300)));
    assert_eq!(p.get_vm(app).await.expect("slow but fine").name, "app01");
    s.lab.inject(Fault::fail_operation(Service::Classic, "ConflictError", "The role is busy."));
    let op = p.power_off(app, PowerOffMode::GuestShutdown).await.expect("shutdown starts");
    let err = p.wait(op, "power-off").await.expect_err("the operation fails");
    assert_eq!(kind(&err), "conflict");
    assert_eq!(s.lab.classic_role_state(SUB, "legacy-svc", "app01").unwrap().0, "Started", "a failed shutdown leaves the role running");
    let bad = s.classic_with_key(b"not the certificate key");
    assert_eq!(kind(&bad.describe().await.expect_err("wrong certificate")), "permission-denied");

    // Failover shutdown (deallocate), then delete on commit with the VHDs.
    assert_eq!(kind(&p.delete_vm(app).await.expect_err("running")), "conflict");
    done(&p, p.power_off(app, PowerOffMode::Deallocate).await.expect("deallocate"), "power-off").await;
    assert_eq!(s.lab.classic_role_state(SUB, "legacy-svc", "app01").unwrap().1, "StoppedDeallocated");
    assert_eq!(p.get_vm(app).await.unwrap().power_state, PowerState::Deallocated);
    assert!(matches!(p.power_off(app, PowerOffMode::Hard).await.expect("again").state, OperationState::Succeeded));
    done(&p, p.power_on(app).await.expect("power-on"), "power-on").await;
    assert_eq!(s.lab.classic_role_state(SUB, "legacy-svc", "app01").unwrap().1, "ReadyRole");
    done(&p, p.power_off(app, PowerOffMode::GuestShutdown).await.expect("shutdown"), "power-off").await;
    assert_eq!(s.lab.classic_role_state(SUB, "legacy-svc", "app01").unwrap().1, "StoppedVM");
    let disks = s.lab.classic_vm_disks(SUB, "legacy-svc", "app01").unwrap();
    done(&p, p.delete_vm(app).await.expect("delete-vm"), "delete-vm").await;
    assert!(!s.lab.classic_role_exists(SUB, "legacy-svc", "app01"));
    assert!(disks.iter().all(|d| !d.path.exists()), "the VHDs are deleted with the role");
    assert_eq!(kind(&p.delete_vm(app).await.expect_err("again")), "not-found");
    s.lab.shutdown();
}

// ---------------------------------------------------------------- Azurite

/// Azurite's well-known development account (documented by Microsoft; not a secret).
const AZURITE_ACCOUNT: &str = "devstoreaccount1";
const AZURITE_KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// A blob-only Azurite on a loopback port, killed when dropped (also when a test fails).
struct Azurite {
    child: std::process::Child,
    port: u16,
    _data: tempfile::TempDir,
}

impl Azurite {
    /// `HOMEWARD_AZURITE_BLOB`, else `tests/azurite/node_modules/.bin/azurite-blob`, else
    /// `azurite-blob` on the PATH.
    fn binary() -> PathBuf {
        if let Some(p) = std::env::var_os("HOMEWARD_AZURITE_BLOB") {
            return PathBuf::from(p);
        }
        let local = Path::new(env!("CARGO_MANIFEST_DIR")).join("azurite/node_modules/.bin/azurite-blob");
        if local.exists() {
            return local;
        }
        PathBuf::from("azurite-blob")
    }

    fn start() -> Azurite {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().unwrap().port();
        let data = tempfile::tempdir().expect("tempdir");
        let child = std::process::Command::new(Self::binary())
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string(), "--inMemoryPersistence", "--skipApiVersionCheck", "--loose", "--silent"])
            // In-memory persistence writes nothing, but keep any stray file out of the tree.
            .current_dir(data.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start Azurite ({e}); install it with `npm install --prefix tests/azurite azurite` or set HOMEWARD_AZURITE_BLOB"));
        let mut azurite = Azurite { child, port, _data: data };
        // Readiness, not speed: Node takes a moment to listen. Give up only if it exits.
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return azurite;
            }
            if let Ok(Some(status)) = azurite.child.try_wait() {
                panic!("Azurite exited before listening: {status}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}/{AZURITE_ACCOUNT}", self.port)
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends a request signed with SharedKey by the adapters' own signing code.
async fn shared_key(account: &homeward_sdk::azure::blob::Account, method: &str, url: &str, extra: &[(&str, String)], body: Vec<u8>) -> reqwest::Response {
    use homeward_sdk::azure::clock;
    let mut headers: Vec<(String, String)> = extra.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    headers.push(("x-ms-date".into(), clock::http_date(clock::unix_now())));
    headers.push(("x-ms-version".into(), "2021-08-06".into()));
    // Azurite, like Azure, wants Content-Length on every PUT, even an empty one.
    if method == "PUT" && body.is_empty() {
        headers.push(("content-length".into(), "0".into()));
    }
    let mut signed = headers.clone();
    if !body.is_empty() {
        signed.push(("content-length".into(), body.len().to_string()));
    }
    let sts = account.string_to_sign(method, url, &signed).expect("string to sign");
    // The HMAC itself comes from the lab, so only the string-to-sign is under test here.
    let sig = homeward_lab::azure::blob::shared_key::hmac_base64(&account.key, &sts);
    let mut req = reqwest::Client::new().request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url).header("authorization", format!("SharedKey {}:{sig}", account.name));
    for (k, v) in headers {
        req = req.header(k, v);
    }
    req.body(body).send().await.expect("request to Azurite")
}

#[tokio::test(flavor = "multi_thread")]
async fn page_blobs_against_azurite() {
    use base64::Engine;
    use homeward_sdk::azure::blob::{Account, BlobUrl, PageList};
    let azurite = Azurite::start();
    let account = Account { name: AZURITE_ACCOUNT.into(), key: base64::engine::general_purpose::STANDARD.decode(AZURITE_KEY).unwrap() };
    let base = azurite.base();

    let resp = shared_key(&account, "PUT", &format!("{base}/vhds?restype=container"), &[], Vec::new()).await;
    assert_eq!(resp.status().as_u16(), 201, "create container: {}", resp.text().await.unwrap_or_default());
    let blob_url = format!("{base}/vhds/disk.vhd");
    let create = [("x-ms-blob-type", "PageBlob".to_string()), ("x-ms-blob-content-length", MIB.to_string())];
    let resp = shared_key(&account, "PUT", &blob_url, &create, Vec::new()).await;
    assert_eq!(resp.status().as_u16(), 201, "create page blob: {}", resp.text().await.unwrap_or_default());

    let a = pattern(8 * KIB as usize, 21);
    let b = pattern(4 * KIB as usize, 22);
    for (offset, data) in [(0, &a), (512 * KIB, &b)] {
        let h = [("x-ms-page-write", "update".to_string()), ("x-ms-range", format!("bytes={offset}-{}", offset + data.len() as u64 - 1))];
        let resp = shared_key(&account, "PUT", &format!("{blob_url}?comp=page"), &h, data.clone()).await;
        assert_eq!(resp.status().as_u16(), 201, "Put Page: {}", resp.text().await.unwrap_or_default());
    }
    let resp = shared_key(&account, "GET", &blob_url, &[("x-ms-range", format!("bytes={}-{}", 512 * KIB, 512 * KIB + 4 * KIB - 1))], Vec::new()).await;
    assert_eq!(resp.status().as_u16(), 206);
    assert_eq!(resp.bytes().await.unwrap().to_vec(), b);

    let resp = shared_key(&account, "GET", &format!("{blob_url}?comp=pagelist"), &[], Vec::new()).await;
    assert_eq!(resp.status().as_u16(), 200);
    let list = PageList::parse(&resp.bytes().await.unwrap()).expect("page list");
    assert_eq!(list.valid, vec![(0, 8 * KIB), (512 * KIB, 516 * KIB)]);

    let resp = shared_key(&account, "PUT", &format!("{blob_url}?comp=snapshot"), &[], Vec::new()).await;
    assert_eq!(resp.status().as_u16(), 201);
    let stamp = resp.headers().get("x-ms-snapshot").expect("x-ms-snapshot").to_str().unwrap().to_string();
    let h = [("x-ms-page-write", "clear".to_string()), ("x-ms-range", format!("bytes=0-{}", 8 * KIB - 1))];
    assert_eq!(shared_key(&account, "PUT", &format!("{blob_url}?comp=page"), &h, Vec::new()).await.status().as_u16(), 201);
    let snap_list = format!("{blob_url}?comp=pagelist&snapshot={}", homeward_sdk::azure::encode(&stamp));
    let list = PageList::parse(&shared_key(&account, "GET", &snap_list, &[], Vec::new()).await.bytes().await.unwrap()).unwrap();
    assert_eq!(list.valid, vec![(0, 8 * KIB), (512 * KIB, 516 * KIB)], "the snapshot keeps what the live blob cleared");

    // SAS URLs signed by the adapters' code: read, write, and a snapshot.
    let parts = BlobUrl::parse(&blob_url, AZURITE_ACCOUNT).unwrap();
    let expiry = homeward_sdk::azure::clock::unix_now() + 3600;
    let read = account.sas_url(&parts, "r", expiry, None);
    assert_eq!(get_range(&read, 512 * KIB, 4 * KIB).await, (206, b.clone()));
    assert_eq!(get_range(&read, 0, 512).await, (206, vec![0; 512]), "cleared pages read as zeros");
    assert_eq!(put_pages(&read, 0, &a[..512]).await, 403, "a read SAS cannot write");
    let write = account.sas_url(&parts, "rw", expiry, None);
    assert_eq!(put_pages(&write, 64 * KIB, &a[..1024]).await, 201);
    assert_eq!(get_range(&write, 64 * KIB, 1024).await, (206, a[..1024].to_vec()));
    let snap = account.sas_url(&parts, "r", expiry, Some(&stamp));
    assert_eq!(get_range(&snap, 0, 8 * KIB).await, (206, a.clone()), "the snapshot SAS reads the snapshot");
    drop(azurite);
}
