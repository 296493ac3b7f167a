//! Changing the classic site: roles (create as a cloud service with one deployment, power,
//! delete with their VHDs), blob-snapshot VM snapshots, and the failback process server.

use base64::Engine as _;
use homeward_sdk::azure::ops;
use homeward_sdk::azure::xml::escape as x;
use homeward_sdk::compute::{Operation, PowerOffMode, ProcessServerSpec, VmSpec};
use homeward_sdk::types::{AdapterError, DeploymentModel, PowerState};
use homeward_sdk::error;
use serde_json::Value;

use crate::networks;
use crate::operations;
use crate::site::Site;
use crate::snapshots;

const NS: &str = homeward_sdk::azure::classic::NS;
const GIB: u64 = 1 << 30;
/// Container new VHDs go to, as the portal does.
const VHD_CONTAINER: &str = "vhds";

/// (size, cores, memory MiB) of the classic role sizes, smallest first.
const SIZES: &[(&str, u32, u64)] = &[("ExtraSmall", 1, 768), ("Small", 1, 1792), ("Medium", 2, 3584), ("Large", 4, 7168), ("ExtraLarge", 8, 14_336)];

/// Cores and memory of a role size; (0, 0) when unknown.
pub fn shape(size: &str) -> (u32, u64) {
    SIZES.iter().find(|(n, _, _)| n.eq_ignore_ascii_case(size)).map(|(_, c, m)| (*c, *m)).unwrap_or((0, 0))
}

fn fit(cpus: u32, memory_mib: u64) -> &'static str {
    SIZES.iter().find(|(_, c, m)| *c >= cpus && *m >= memory_mib).map(|(n, _, _)| *n).unwrap_or("ExtraLarge")
}

fn check_name(name: &str, what: &str) -> Result<(), AdapterError> {
    let ok = !name.is_empty() && name.len() <= 63 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') && !name.starts_with('-');
    if ok { Ok(()) } else { Err(error::invalid(format!("{what} `{name}` must be 1-63 letters, digits or '-' (a cloud-service DNS label)"))) }
}

/// A new role: one cloud service, one deployment, one role of the same name.
struct NewRole<'a> {
    name: &'a str,
    os: &'a str,
    size: &'a str,
    vnet: Option<String>,
    subnet: Option<String>,
    /// GiB of the OS disk (none: the image's size) and of each data disk.
    os_gb: Option<u64>,
    data_gb: Vec<u64>,
    /// Existing VHDs to boot from (first: the OS disk), for a failover from replicas.
    attach: Vec<String>,
}

fn create(site: &Site, r: NewRole) -> Result<Operation, AdapterError> {
    check_name(r.name, "VM name")?;
    if site.sm.get_opt(&format!("reading cloud service {}", r.name), &format!("/services/hostedservices/{}", r.name))?.is_some() {
        return Err(error::already_exists(format!("classic cloud service {} already exists; nothing was created", r.name)));
    }
    let label = base64::engine::general_purpose::STANDARD.encode(r.name);
    let service = format!(
        r#"<?xml version="1.0" encoding="utf-8"?><CreateHostedService xmlns="{NS}"><ServiceName>{n}</ServiceName><Label>{label}</Label><Location>{loc}</Location></CreateHostedService>"#,
        n = x(r.name),
        loc = x(&site.location)
    );
    site.sm.send(&format!("creating cloud service {}", r.name), "POST", "/services/hostedservices", Some(service))?;
    let media = |suffix: &str| format!("{}/{VHD_CONTAINER}/{}-{}-{suffix}.vhd", site.blob_endpoint, r.name, r.name);
    let attached = r.attach.iter().skip(1).enumerate().map(|(lun, m)| format!("<DataVirtualHardDisk><HostCaching>None</HostCaching><Lun>{lun}</Lun><MediaLink>{}</MediaLink></DataVirtualHardDisk>", x(m)));
    let first_new = r.attach.len().saturating_sub(1);
    let data: String = attached
        .chain(r.data_gb.iter().enumerate().map(|(i, gb)| {
            let lun = first_new + i;
            format!("<DataVirtualHardDisk><HostCaching>None</HostCaching><Lun>{lun}</Lun><LogicalDiskSizeInGB>{gb}</LogicalDiskSizeInGB><MediaLink>{}</MediaLink></DataVirtualHardDisk>", x(&media(&format!("data{lun}"))))
        }))
        .collect();
    let subnet = r.subnet.as_ref().map(|s| format!("<SubnetNames><SubnetName>{}</SubnetName></SubnetNames>", x(s))).unwrap_or_default();
    let vnet = r.vnet.as_ref().map(|v| format!("<VirtualNetworkName>{}</VirtualNetworkName>", x(v))).unwrap_or_default();
    let image = if r.os == "Windows" { "a699494373c04fc0bc8f2bb1389d6106__Windows-Server-2019-Datacenter" } else { "b39f27a8b8c64d52b05eac6a62ebad85__Ubuntu-24_04-LTS-amd64-server" };
    let os_size = r.os_gb.map(|g| format!("<ResizedSizeInGB>{g}</ResizedSizeInGB>")).unwrap_or_default();
    // Booting from a replica VHD: its MediaLink and no image.
    let (os_media, image) = match r.attach.first() {
        Some(m) => (m.clone(), String::new()),
        None => (media("os"), format!("<SourceImageName>{image}</SourceImageName>")),
    };
    let body = format!(
        r#"<?xml version="1.0" encoding="utf-8"?><Deployment xmlns="{NS}" xmlns:i="http://www.w3.org/2001/XMLSchema-instance"><Name>{n}</Name><DeploymentSlot>Production</DeploymentSlot><Label>{label}</Label><RoleList><Role><RoleName>{n}</RoleName><RoleType>PersistentVMRole</RoleType><ConfigurationSets><ConfigurationSet i:type="NetworkConfigurationSet"><ConfigurationSetType>NetworkConfiguration</ConfigurationSetType>{subnet}</ConfigurationSet></ConfigurationSets><DataVirtualHardDisks>{data}</DataVirtualHardDisks><OSVirtualHardDisk><HostCaching>ReadWrite</HostCaching><MediaLink>{os}</MediaLink>{image}<OS>{ostype}</OS>{os_size}</OSVirtualHardDisk><RoleSize>{size}</RoleSize></Role></RoleList>{vnet}</Deployment>"#,
        n = x(r.name),
        os = x(&os_media),
        ostype = x(r.os),
        size = x(r.size),
    );
    let request = site.sm.start(&format!("deploying VM {}", r.name), "POST", &format!("/services/hostedservices/{}/deployments", r.name), Some(body))?;
    operations::start(vec![request], Some(format!("{}/{}", r.name, r.name)))
}

fn os_type(guest_os: &str) -> &'static str {
    if guest_os.to_ascii_lowercase().contains("win") { "Windows" } else { "Linux" }
}

/// The one classic network (and its first subnet) a new VM joins.
fn network_of(site: &Site, spec: &VmSpec) -> Result<(Option<String>, Option<String>), AdapterError> {
    if spec.networks.len() > 1 {
        return Err(error::invalid(format!("classic VM {} can join one virtual network, not {}", spec.name, spec.networks.len())));
    }
    Ok(match spec.networks.first() {
        Some(n) => {
            let v = networks::find(site, n)?;
            (Some(v.id), v.subnets.first().cloned())
        }
        None => (None, None),
    })
}

/// `compute.create-vm`: a cloud service with one role, in at most one classic network.
pub fn create_vm(site: &Site, spec: VmSpec) -> Result<Operation, AdapterError> {
    let (vnet, subnet) = network_of(site, &spec)?;
    let mut disks = spec.disks.iter();
    let os_gb = disks.next().map(|d| d.capacity_bytes.div_ceil(GIB).max(1));
    let data_gb = disks.map(|d| d.capacity_bytes.div_ceil(GIB).max(1)).collect();
    create(site, NewRole { name: &spec.name, os: os_type(&spec.guest_os), size: fit(spec.cpu_count, spec.memory_mib), vnet, subnet, os_gb, data_gb, attach: Vec::new() })
}

/// `compute.create-vm-from-disks`: a role booting from replica VHDs (the first is the OS
/// disk); `spec.disks` become new data disks after them.
pub fn create_vm_from_disks(site: &Site, spec: VmSpec, attach: Vec<String>) -> Result<Operation, AdapterError> {
    if attach.is_empty() {
        return Err(error::invalid(format!("VM {}: create-vm-from-disks needs at least the OS disk in `attach`", spec.name)));
    }
    for m in &attach {
        site.blob(m)?;
        if let Some(role) = site.all_roles()?.into_iter().find(|r| r.disks.iter().any(|d| d.media.eq_ignore_ascii_case(m))) {
            return Err(error::conflict(format!("disk {m} is already the disk of VM {}", role.id())));
        }
    }
    let (vnet, subnet) = network_of(site, &spec)?;
    let data_gb = spec.disks.iter().map(|d| d.capacity_bytes.div_ceil(GIB).max(1)).collect();
    create(site, NewRole { name: &spec.name, os: os_type(&spec.guest_os), size: fit(spec.cpu_count, spec.memory_mib), vnet, subnet, os_gb: None, data_gb, attach })
}

/// `compute.deploy-process-server`: only for classic VMs, in their classic network.
pub fn deploy_process_server(site: &Site, spec: ProcessServerSpec) -> Result<Operation, AdapterError> {
    if spec.deployment_model != DeploymentModel::AzureClassic {
        return Err(error::conflict(format!(
            "process server {} was asked for the {:?} deployment model, but this classic site only serves classic VMs; deploy it with the adapter of that model",
            spec.name, spec.deployment_model
        )));
    }
    if spec.network.starts_with("/subscriptions/") {
        return Err(error::conflict(format!("network `{}` is a Resource Manager network; a classic process server must join the failed-over VMs' classic network", spec.network)));
    }
    let vnet = networks::find(site, &spec.network)?;
    for vm in &spec.for_vms {
        if vm.starts_with("/subscriptions/") {
            return Err(error::conflict(format!("VM `{vm}` is a Resource Manager VM; the process server's deployment model must match the VM's")));
        }
        let role = site.role(vm)?;
        if !role.vnet.as_deref().is_some_and(|v| v.eq_ignore_ascii_case(&vnet.id)) {
            return Err(error::conflict(format!("VM {vm} is not in network {}; the process server must be in the failed-over VM's network", vnet.id)));
        }
    }
    let subnet = match &spec.subnet {
        Some(s) if vnet.subnets.iter().any(|n| n.eq_ignore_ascii_case(s)) => Some(s.clone()),
        Some(s) => return Err(error::not_found(format!("network {} has no subnet `{s}`", vnet.id))),
        None => vnet.subnets.first().cloned(),
    };
    create(site, NewRole { name: &spec.name, os: "Windows", size: "Large", vnet: Some(vnet.id), subnet, os_gb: None, data_gb: vec![128], attach: Vec::new() })
}

fn role_operation(site: &Site, vm: &str, body_inner: &str, what: &str) -> Result<Operation, AdapterError> {
    let role = site.role(vm)?;
    let path = format!("/services/hostedservices/{}/deployments/{}/roleinstances/{}/Operations", role.service, role.deployment, role.name);
    let request = site.sm.start(&format!("{what} VM {vm}"), "POST", &path, Some(format!(r#"<?xml version="1.0" encoding="utf-8"?>{body_inner}"#)))?;
    operations::start(vec![request], Some(role.id()))
}

/// `compute.power-on`.
pub fn power_on(site: &Site, vm: &str) -> Result<Operation, AdapterError> {
    let role = site.role(vm)?;
    if role.power_state() == PowerState::PoweredOn {
        return ops::completed(Some(role.id()));
    }
    role_operation(site, vm, &format!(r#"<StartRoleOperation xmlns="{NS}"><OperationType>StartRoleOperation</OperationType></StartRoleOperation>"#), "starting")
}

/// `compute.power-off`: classic shutdown always goes through the guest agent; `deallocate`
/// also releases the compute (`StoppedDeallocated`).
pub fn power_off(site: &Site, vm: &str, mode: PowerOffMode) -> Result<Operation, AdapterError> {
    let role = site.role(vm)?;
    let state = role.power_state();
    let dealloc = mode == PowerOffMode::Deallocate;
    if state == PowerState::Deallocated || (!dealloc && state == PowerState::PoweredOff) {
        return ops::completed(Some(role.id()));
    }
    let action = if dealloc { "StoppedDeallocated" } else { "Stopped" };
    role_operation(
        site,
        vm,
        &format!(r#"<ShutdownRoleOperation xmlns="{NS}"><OperationType>ShutdownRoleOperation</OperationType><PostShutdownAction>{action}</PostShutdownAction></ShutdownRoleOperation>"#),
        "shutting down",
    )
}

/// `compute.delete-vm`: the role with its VHDs (the whole deployment when it is the last
/// role), and its snapshot records.
pub fn delete_vm(site: &Site, vm: &str) -> Result<Operation, AdapterError> {
    let role = site.role(vm)?;
    if role.power_state() == PowerState::PoweredOn {
        return Err(error::conflict(format!("VM {vm} is running; power it off before deleting it")));
    }
    let path = if role.roles_in_deployment > 1 {
        format!("/services/hostedservices/{}/deployments/{}/roles/{}?comp=media", role.service, role.deployment, role.name)
    } else {
        format!("/services/hostedservices/{}/deployments/{}?comp=media", role.service, role.deployment)
    };
    delete_snapshots(site, &role)?;
    let request = site.sm.start(&format!("deleting VM {vm}"), "DELETE", &path, None)?;
    operations::start(vec![request], Some(role.id()))
}

fn delete_snapshots(site: &Site, role: &crate::site::Role) -> Result<(), AdapterError> {
    for name in snapshots::names(&role.id()) {
        remove_blob_snapshots(site, role, &name)?;
        snapshots::forget(&role.id(), &name)?;
    }
    Ok(())
}

fn remove_blob_snapshots(site: &Site, role: &crate::site::Role, name: &str) -> Result<(), AdapterError> {
    let record = snapshots::load(&role.id(), name).ok_or_else(|| snapshots::missing(&role.id(), name))?;
    for disk in &role.disks {
        let Some(stamp) = record["disks"][&disk.name].as_str() else { continue };
        let url = format!("{}?snapshot={}", site.blob(&disk.media)?.url(), homeward_sdk::azure::encode(stamp));
        match site.storage.send(&format!("deleting snapshot {name} of disk {}", disk.name), "DELETE", &url, Vec::new(), Vec::new()) {
            Ok(_) | Err(AdapterError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `compute.create-snapshot`: a blob snapshot of every VHD, taken at once.
pub fn create_snapshot(site: &Site, vm: &str, name: &str, quiesce: bool) -> Result<Operation, AdapterError> {
    if quiesce {
        return Err(error::unsupported(format!("VM {vm}: classic blob snapshots are crash-consistent; this adapter cannot quiesce the guest")));
    }
    if name.is_empty() || name.contains('/') {
        return Err(error::invalid(format!("snapshot name `{name}` must be non-empty and without '/'")));
    }
    let role = site.role(vm)?;
    if snapshots::load(&role.id(), name).is_some() {
        return Err(error::already_exists(format!("VM {vm} already has a snapshot named `{name}`; nothing was created")));
    }
    let mut disks = serde_json::Map::new();
    for d in &role.disks {
        let url = format!("{}?comp=snapshot", site.blob(&d.media)?.url());
        let resp = site.storage.send(&format!("snapshotting disk {} of VM {vm}", d.name), "PUT", &url, Vec::new(), Vec::new())?;
        let stamp = resp.header("x-ms-snapshot").ok_or_else(|| error::internal(format!("Snapshot Blob of {} answered without x-ms-snapshot", d.media)))?;
        disks.insert(d.name.clone(), Value::String(stamp.to_string()));
    }
    snapshots::save(&role.id(), name, &disks)?;
    ops::completed(Some(name.to_string()))
}

/// `compute.remove-snapshot`.
pub fn remove_snapshot(site: &Site, vm: &str, snapshot: &str) -> Result<Operation, AdapterError> {
    let role = site.role(vm)?;
    remove_blob_snapshots(site, &role, snapshot)?;
    snapshots::forget(&role.id(), snapshot)?;
    ops::completed(Some(snapshot.to_string()))
}
