//! Managed object properties as vim25 data objects, for the property collector.

use super::faults::Fault;
use super::inventory::Inventory;
use super::soap::{Data, MoRef, Value, now};
use super::spec::Mode;
use super::vm_properties::{vm_config, vm_properties};

/// Top-level properties each managed object type serves (what `all` returns).
pub fn known(ty: &str) -> &'static [&'static str] {
    match ty {
        "ServiceInstance" => &["content", "serverClock"],
        "Folder" => &["name", "parent", "childEntity", "childType"],
        "Datacenter" => &[
            "name",
            "parent",
            "vmFolder",
            "hostFolder",
            "datastoreFolder",
            "networkFolder",
            "datastore",
            "network",
        ],
        "ComputeResource" => &[
            "name",
            "parent",
            "host",
            "resourcePool",
            "datastore",
            "network",
        ],
        "ResourcePool" => &["name", "parent", "owner", "vm", "resourcePool"],
        "HostSystem" => &[
            "name",
            "parent",
            "runtime",
            "summary",
            "config",
            "vm",
            "datastore",
            "network",
        ],
        "Datastore" => &["name", "parent", "summary", "info", "host", "vm"],
        "Network" => &["name", "parent", "summary", "host", "vm"],
        "VirtualMachine" => &[
            "name",
            "parent",
            "config",
            "runtime",
            "guest",
            "summary",
            "snapshot",
            "rootSnapshot",
            "resourcePool",
            "datastore",
            "network",
        ],
        "VirtualMachineSnapshot" => &["config", "childSnapshot", "vm"],
        "Task" => &["info"],
        "ContainerView" => &["view", "container", "type", "recursive"],
        "ViewManager" => &["viewList"],
        "SessionManager" => &["currentSession"],
        "LicenseManager" => &["licenses"],
        "AuthorizationManager" => &["roleList"],
        "TaskManager" => &["recentTask"],
        _ => &[],
    }
}

pub(super) fn refs(v: impl IntoIterator<Item = MoRef>) -> Value {
    Value::Array(
        "ManagedObjectReference",
        v.into_iter().map(Value::Ref).collect(),
    )
}

pub(super) fn strings(v: impl IntoIterator<Item = String>) -> Value {
    Value::Array("xsd:string", v.into_iter().map(Value::Str).collect())
}

/// A `Description` (device labels, role info).
pub(super) fn description(label: String, summary: String) -> Data {
    Data::new("Description")
        .with("label", label)
        .with("summary", summary)
}

/// `AboutInfo` of the service (vCenter) or of an ESXi host.
pub fn about(mode: Mode, instance_uuid: &str) -> Data {
    match mode {
        Mode::Vcenter => Data::new("AboutInfo")
            .with("name", "VMware vCenter Server")
            .with("fullName", "VMware vCenter Server 8.0.2 build-22385739")
            .with("vendor", "VMware, Inc.")
            .with("version", "8.0.2")
            .with("build", "22385739")
            .with("localeVersion", "INTL")
            .with("localeBuild", "000")
            .with("osType", "linux-x64")
            .with("productLineId", "vpx")
            .with("apiType", "VirtualCenter")
            .with("apiVersion", "8.0.2.0")
            .with("instanceUuid", instance_uuid)
            .with("licenseProductName", "VMware VirtualCenter Server")
            .with("licenseProductVersion", "8.0"),
        Mode::Esxi => host_about(),
    }
}

fn host_about() -> Data {
    Data::new("AboutInfo")
        .with("name", "VMware ESXi")
        .with("fullName", "VMware ESXi 8.0.2 build-22380479")
        .with("vendor", "VMware, Inc.")
        .with("version", "8.0.2")
        .with("build", "22380479")
        .with("localeVersion", "INTL")
        .with("localeBuild", "000")
        .with("osType", "vmnix-x86")
        .with("productLineId", "embeddedEsx")
        .with("apiType", "HostAgent")
        .with("apiVersion", "8.0.2.0")
        .with("licenseProductName", "VMware ESX Server")
        .with("licenseProductVersion", "8.0")
}

/// Display name of a licence edition key.
pub fn edition_name(key: &str) -> &str {
    match key {
        "esxBasic" => "vSphere 8 Hypervisor",
        "esxStandard" => "vSphere 8 Standard",
        "esxEnterprisePlus" => "vSphere 8 Enterprise Plus",
        "esxEssentials" => "vSphere 8 Essentials",
        "vc.standard" => "vCenter Server 8 Standard",
        "eval" => "Evaluation Mode",
        other => other,
    }
}

fn license_info(key: &str, edition: &str, unit: &str, used: i32) -> Value {
    Data::new("LicenseManagerLicenseInfo")
        .with("licenseKey", key)
        .with("editionKey", edition)
        .with("name", edition_name(edition))
        .with(
            "total",
            Value::Int(if edition == "esxBasic" || edition == "eval" {
                0
            } else {
                16
            }),
        )
        .with("used", Value::Int(used))
        .with("costUnit", unit)
        .with(
            "properties",
            Value::Array(
                "KeyAnyValue",
                vec![
                    Data::new("KeyAnyValue")
                        .with("key", "ProductName")
                        .with("value", Value::Any(Box::new(edition_name(edition).into())))
                        .into(),
                ],
            ),
        )
        .into()
}

fn ds_summary(ds: &super::inventory::Datastore) -> Data {
    Data::new("DatastoreSummary")
        .with("datastore", &ds.moref)
        .with("name", ds.name.as_str())
        .with("url", format!("ds:///vmfs/volumes/{}/", ds.volume_uuid))
        .with("capacity", Value::Long(ds.capacity as i64))
        .with("freeSpace", Value::Long(ds.free() as i64))
        .with("accessible", true)
        .with("multipleHostAccess", ds.hosts.len() > 1)
        .with("type", ds.fs_type.as_str())
        .with("maintenanceMode", "normal")
}

/// All top-level properties of an object, as a user may see them. Unset optional
/// properties are absent, as vSphere omits them.
pub fn properties(
    inv: &Inventory,
    obj: &MoRef,
    session_user: &str,
    session_key: &str,
) -> Result<Vec<(&'static str, Value)>, Fault> {
    let s = inv.singletons();
    let dc = &inv.datacenter;
    let nf = || Fault::not_found(obj);
    let folder = |name: &str, children: Vec<MoRef>, child_type: &[&str], parent: Option<MoRef>| {
        let mut v = vec![("name", Value::Str(name.to_string()))];
        if let Some(p) = parent {
            v.push(("parent", Value::Ref(p)));
        }
        v.push(("childEntity", refs(children)));
        v.push((
            "childType",
            strings(child_type.iter().map(|s| s.to_string())),
        ));
        v
    };
    let all_ds = || {
        inv.datastores
            .iter()
            .map(|d| d.moref.clone())
            .collect::<Vec<_>>()
    };
    let all_net = || {
        inv.networks
            .iter()
            .map(|d| d.moref.clone())
            .collect::<Vec<_>>()
    };
    Ok(match obj.ty.as_str() {
        "ServiceInstance" if obj.value == "ServiceInstance" => {
            vec![
                ("content", service_content(inv).into()),
                ("serverClock", Value::DateTime(now())),
            ]
        }
        "Folder" if obj == &inv.root_folder => folder(
            "Datacenters",
            vec![dc.moref.clone()],
            &["Folder", "Datacenter"],
            None,
        ),
        "Folder" if obj == &dc.vm_folder => folder(
            "vm",
            inv.vms.values().map(|v| v.moref.clone()).collect(),
            &["Folder", "VirtualMachine", "VirtualApp"],
            Some(dc.moref.clone()),
        ),
        "Folder" if obj == &dc.host_folder => folder(
            "host",
            inv.hosts.iter().map(|h| h.compute.clone()).collect(),
            &["Folder", "ComputeResource"],
            Some(dc.moref.clone()),
        ),
        "Folder" if obj == &dc.datastore_folder => folder(
            "datastore",
            all_ds(),
            &["Folder", "Datastore", "StoragePod"],
            Some(dc.moref.clone()),
        ),
        "Folder" if obj == &dc.network_folder => folder(
            "network",
            all_net(),
            &["Folder", "Network"],
            Some(dc.moref.clone()),
        ),
        "Datacenter" if obj == &dc.moref => vec![
            ("name", Value::Str(dc.name.clone())),
            ("parent", Value::Ref(inv.root_folder.clone())),
            ("vmFolder", Value::Ref(dc.vm_folder.clone())),
            ("hostFolder", Value::Ref(dc.host_folder.clone())),
            ("datastoreFolder", Value::Ref(dc.datastore_folder.clone())),
            ("networkFolder", Value::Ref(dc.network_folder.clone())),
            ("datastore", refs(all_ds())),
            ("network", refs(all_net())),
        ],
        "ComputeResource" => {
            let h = inv
                .hosts
                .iter()
                .find(|h| &h.compute == obj)
                .ok_or_else(nf)?;
            vec![
                ("name", Value::Str(h.name.clone())),
                ("parent", Value::Ref(dc.host_folder.clone())),
                ("host", refs([h.moref.clone()])),
                ("resourcePool", Value::Ref(h.pool.clone())),
                (
                    "datastore",
                    refs(
                        inv.datastores
                            .iter()
                            .filter(|d| d.hosts.contains(&h.moref))
                            .map(|d| d.moref.clone()),
                    ),
                ),
                (
                    "network",
                    refs(
                        inv.networks
                            .iter()
                            .filter(|n| n.hosts.contains(&h.moref))
                            .map(|n| n.moref.clone()),
                    ),
                ),
            ]
        }
        "ResourcePool" => {
            let h = inv.hosts.iter().find(|h| &h.pool == obj).ok_or_else(nf)?;
            vec![
                ("name", Value::Str("Resources".into())),
                ("parent", Value::Ref(h.compute.clone())),
                ("owner", Value::Ref(h.compute.clone())),
                (
                    "vm",
                    refs(
                        inv.vms
                            .values()
                            .filter(|v| v.host == h.moref)
                            .map(|v| v.moref.clone()),
                    ),
                ),
                ("resourcePool", refs([])),
            ]
        }
        "HostSystem" => {
            let h = inv.host(obj).ok_or_else(nf)?;
            let runtime = Data::new("HostRuntimeInfo")
                .with(
                    "connectionState",
                    Value::Enum("HostSystemConnectionState", "connected".into()),
                )
                .with(
                    "powerState",
                    Value::Enum("HostSystemPowerState", "poweredOn".into()),
                )
                .with("inMaintenanceMode", false);
            vec![
                ("name", Value::Str(h.name.clone())),
                ("parent", Value::Ref(h.compute.clone())),
                ("runtime", runtime.clone().into()),
                (
                    "summary",
                    Data::new("HostListSummary")
                        .with("host", &h.moref)
                        .with("runtime", runtime)
                        .with(
                            "config",
                            Data::new("HostConfigSummary")
                                .with("name", h.name.as_str())
                                .with("port", Value::Int(443))
                                .with("product", host_about()),
                        )
                        .with(
                            "overallStatus",
                            Value::Enum("ManagedEntityStatus", "green".into()),
                        )
                        .into(),
                ),
                (
                    "config",
                    Data::new("HostConfigInfo")
                        .with("host", &h.moref)
                        .with("product", host_about())
                        .into(),
                ),
                (
                    "vm",
                    refs(
                        inv.vms
                            .values()
                            .filter(|v| v.host == h.moref)
                            .map(|v| v.moref.clone()),
                    ),
                ),
                (
                    "datastore",
                    refs(
                        inv.datastores
                            .iter()
                            .filter(|d| d.hosts.contains(&h.moref))
                            .map(|d| d.moref.clone()),
                    ),
                ),
                (
                    "network",
                    refs(
                        inv.networks
                            .iter()
                            .filter(|n| n.hosts.contains(&h.moref))
                            .map(|n| n.moref.clone()),
                    ),
                ),
            ]
        }
        "Datastore" => {
            let d = inv.datastore(obj).ok_or_else(nf)?;
            let info_ty = match d.fs_type.as_str() {
                "VMFS" => "VmfsDatastoreInfo",
                "NFS" | "NFS41" => "NasDatastoreInfo",
                _ => "LocalDatastoreInfo",
            };
            vec![
                ("name", Value::Str(d.name.clone())),
                ("parent", Value::Ref(dc.datastore_folder.clone())),
                ("summary", ds_summary(d).into()),
                (
                    "info",
                    Data::new(info_ty)
                        .with("name", d.name.as_str())
                        .with("url", format!("ds:///vmfs/volumes/{}/", d.volume_uuid))
                        .with("freeSpace", Value::Long(d.free() as i64))
                        .with("maxFileSize", Value::Long(62 << 40))
                        .with("timestamp", Value::DateTime(now()))
                        .into(),
                ),
                (
                    "host",
                    Value::Array(
                        "DatastoreHostMount",
                        d.hosts
                            .iter()
                            .map(|h| {
                                Data::new("DatastoreHostMount")
                                    .with("key", h)
                                    .with(
                                        "mountInfo",
                                        Data::new("HostMountInfo")
                                            .with(
                                                "path",
                                                format!("/vmfs/volumes/{}", d.volume_uuid),
                                            )
                                            .with("accessMode", "readWrite")
                                            .with("mounted", true)
                                            .with("accessible", true),
                                    )
                                    .into()
                            })
                            .collect(),
                    ),
                ),
                (
                    "vm",
                    refs(
                        inv.vms
                            .values()
                            .filter(|v| {
                                v.datastore == d.moref
                                    || v.disks.iter().any(|x| x.datastore == d.moref)
                            })
                            .map(|v| v.moref.clone()),
                    ),
                ),
            ]
        }
        "Network" => {
            let n = inv
                .networks
                .iter()
                .find(|n| &n.moref == obj)
                .ok_or_else(nf)?;
            vec![
                ("name", Value::Str(n.name.clone())),
                ("parent", Value::Ref(dc.network_folder.clone())),
                (
                    "summary",
                    Data::new("NetworkSummary")
                        .with("network", &n.moref)
                        .with("name", n.name.as_str())
                        .with("accessible", true)
                        .into(),
                ),
                ("host", refs(n.hosts.clone())),
                (
                    "vm",
                    refs(
                        inv.vms
                            .values()
                            .filter(|v| v.nics.iter().any(|x| x.network == n.moref))
                            .map(|v| v.moref.clone()),
                    ),
                ),
            ]
        }
        "VirtualMachine" => vm_properties(inv, inv.vm(obj)?),
        "VirtualMachineSnapshot" => {
            let (vm, s) = inv.snapshot(obj).ok_or_else(nf)?;
            vec![
                ("config", vm_config(inv, vm, Some(s))),
                (
                    "childSnapshot",
                    refs(
                        vm.snapshots
                            .iter()
                            .filter(|c| c.parent.as_ref() == Some(obj))
                            .map(|c| c.moref.clone()),
                    ),
                ),
                ("vm", Value::Ref(vm.moref.clone())),
            ]
        }
        "Task" => vec![("info", inv.tasks.get(&obj.value).ok_or_else(nf)?.info())],
        "ContainerView" => {
            let v = inv.views.get(&obj.value).ok_or_else(nf)?;
            vec![
                ("view", refs(super::collector::view_members(inv, v))),
                ("container", Value::Ref(v.container.clone())),
                ("type", strings(v.types.clone())),
                ("recursive", Value::Bool(v.recursive)),
            ]
        }
        "ViewManager" if obj == &s.view_manager => {
            vec![(
                "viewList",
                refs(
                    inv.views
                        .keys()
                        .filter(|k| k.starts_with(&format!("session[{session_key}]")))
                        .map(|k| MoRef::new("ContainerView", k.clone())),
                ),
            )]
        }
        "SessionManager" if obj == &s.session_manager => {
            let sess = inv.sessions.get(session_key).ok_or_else(nf)?;
            vec![("currentSession", user_session(sess, session_user).into())]
        }
        "LicenseManager" if obj == &s.license_manager => {
            let mut lic = vec![license_info(
                &license_key(&inv.license.edition),
                &inv.license.edition,
                "cpuPackage",
                inv.hosts.len() as i32,
            )];
            if inv.mode == Mode::Vcenter {
                lic.push(license_info(
                    "VC000-00000-00000-00000-0000S",
                    "vc.standard",
                    "server",
                    1,
                ));
            }
            vec![("licenses", Value::Array("LicenseManagerLicenseInfo", lic))]
        }
        "AuthorizationManager" if obj == &s.authorization_manager => vec![("roleList", roles())],
        "TaskManager" if obj == &s.task_manager => {
            vec![(
                "recentTask",
                refs(
                    inv.task_order
                        .iter()
                        .rev()
                        .take(50)
                        .rev()
                        .map(|t| MoRef::new("Task", t.clone())),
                ),
            )]
        }
        _ => return Err(nf()),
    })
}

/// A stable, licence-key-shaped string for an edition.
pub fn license_key(edition: &str) -> String {
    match edition {
        "eval" => "00000-00000-00000-00000-00000".into(),
        "esxBasic" => "HV000-00000-00000-00000-0FREE".into(),
        other => {
            let h: u32 = other
                .bytes()
                .fold(7u32, |a, b| a.wrapping_mul(31).wrapping_add(b as u32));
            format!(
                "{:05X}-00000-00000-00000-{:05X}",
                h & 0xFFFFF,
                (h >> 12) & 0xFFFFF
            )
        }
    }
}

fn roles() -> Value {
    let role = |id: i32, name: &str, privs: &[&str]| -> Value {
        Data::new("AuthorizationRole")
            .with("roleId", Value::Int(id))
            .with("system", true)
            .with("name", name)
            .with("info", description(name.to_string(), name.to_string()))
            .with("privilege", strings(privs.iter().map(|s| s.to_string())))
            .into()
    };
    Value::Array(
        "AuthorizationRole",
        vec![
            role(-1, "Admin", &[]),
            role(-2, "ReadOnly", super::inventory::READ_ONLY),
            role(-5, "NoAccess", &[]),
        ],
    )
}

/// The `UserSession` of a session.
pub fn user_session(sess: &super::inventory::Session, user: &str) -> Data {
    Data::new("UserSession")
        .with("key", sess.key.as_str())
        .with("userName", user)
        .with("fullName", user)
        .with("loginTime", Value::DateTime(sess.login_time.clone()))
        .with("lastActiveTime", Value::DateTime(now()))
        .with("locale", "en")
        .with("messageLocale", "en")
        .with("extensionSession", false)
        .with("ipAddress", "127.0.0.1")
        .with("userAgent", "")
        .with("callCount", Value::Long(0))
}

/// `ServiceContent`, with the managers the lab implements.
pub fn service_content(inv: &Inventory) -> Data {
    let s = inv.singletons();
    Data::new("ServiceContent")
        .with("rootFolder", &inv.root_folder)
        .with("propertyCollector", s.property_collector)
        .with("viewManager", s.view_manager)
        .with("about", about(inv.mode, &inv.instance_uuid))
        .with("sessionManager", s.session_manager)
        .with("authorizationManager", s.authorization_manager)
        .with("taskManager", s.task_manager)
        .with("licenseManager", s.license_manager)
        .with("searchIndex", s.search_index)
}
