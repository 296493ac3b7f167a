//! The site's state: managed objects, their files on disk, users and sessions.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::LabError;
use super::cbt::ChangeTracker;
use super::faults::Fault;
use super::soap::MoRef;
use super::spec::{Mode, SiteSpec};
use super::tasks::Task;
use crate::vmdk;

/// Privileges of the `ReadOnly` role.
pub const READ_ONLY: &[&str] = &["System.Anonymous", "System.View", "System.Read"];

/// A login account.
#[derive(Debug, Clone)]
pub struct User {
    /// Login name.
    pub name: String,
    /// Password.
    pub password: String,
    /// `Admin` holds every privilege; otherwise only `privileges`.
    pub admin: bool,
    /// Granted privilege ids.
    pub privileges: BTreeSet<String>,
}

impl User {
    /// Whether the user holds `privilege` (everywhere: the lab grants roles at the root).
    pub fn has(&self, privilege: &str) -> bool {
        self.admin || self.privileges.contains(privilege)
    }
}

/// A logged-in session, keyed by its `vmware_soap_session` cookie value.
#[derive(Debug, Clone)]
pub struct Session {
    /// Session key (also the cookie value).
    pub key: String,
    /// Index into `Inventory::users`.
    pub user: String,
    /// Login time, `xsd:dateTime`.
    pub login_time: String,
}

/// The datacenter and its four folders.
#[derive(Debug, Clone)]
pub struct Datacenter {
    /// `datacenter-N` / `ha-datacenter`.
    pub moref: MoRef,
    /// Name, also the `/folder` `dcPath`.
    pub name: String,
    /// Folder of VMs.
    pub vm_folder: MoRef,
    /// Folder of compute resources.
    pub host_folder: MoRef,
    /// Folder of datastores.
    pub datastore_folder: MoRef,
    /// Folder of networks.
    pub network_folder: MoRef,
}

/// An ESXi host with its compute resource and root resource pool.
#[derive(Debug, Clone)]
pub struct Host {
    /// `host-N` / `ha-host`.
    pub moref: MoRef,
    /// Host name.
    pub name: String,
    /// Its (standalone) ComputeResource.
    pub compute: MoRef,
    /// The compute resource's root ResourcePool.
    pub pool: MoRef,
}

/// A datastore and the directory that holds its files.
#[derive(Debug, Clone)]
pub struct Datastore {
    /// `datastore-N`, or a VMFS uuid on ESXi.
    pub moref: MoRef,
    /// Name.
    pub name: String,
    /// VMFS volume uuid, used in its URL and mount path.
    pub volume_uuid: String,
    /// Capacity in bytes.
    pub capacity: u64,
    /// `VMFS`, `NFS`, ...
    pub fs_type: String,
    /// Hosts that mount it.
    pub hosts: Vec<MoRef>,
    /// Local directory holding its files.
    pub dir: PathBuf,
    /// Injected "datastore full": no allocation succeeds and free space reads 0.
    pub full: bool,
}

impl Datastore {
    /// Bytes the datastore's files really occupy (sparse extents count only written blocks).
    pub fn used(&self) -> u64 {
        fn walk(p: &Path) -> u64 {
            let Ok(rd) = std::fs::read_dir(p) else {
                return 0;
            };
            rd.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => walk(&e.path()),
                    Ok(m) => m.blocks() * 512,
                    Err(_) => 0,
                })
                .sum()
        }
        walk(&self.dir)
    }

    /// Free bytes as `summary.freeSpace` reports them.
    pub fn free(&self) -> u64 {
        if self.full {
            0
        } else {
            self.capacity.saturating_sub(self.used())
        }
    }

    /// The `[name] rel` path form.
    pub fn ds_path(&self, rel: &str) -> String {
        format!("[{}] {rel}", self.name)
    }
}

/// A port group.
#[derive(Debug, Clone)]
pub struct Network {
    /// `network-N` / `HaNetwork-<name>`.
    pub moref: MoRef,
    /// Port group name.
    pub name: String,
    /// Hosts that have it.
    pub hosts: Vec<MoRef>,
}

/// VM power state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Power {
    /// `poweredOn`.
    On,
    /// `poweredOff`.
    Off,
}

impl Power {
    /// vim25 `VirtualMachinePowerState` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Power::On => "poweredOn",
            Power::Off => "poweredOff",
        }
    }
}

/// A SCSI controller.
#[derive(Debug, Clone)]
pub struct Controller {
    /// Device key (1000 + bus).
    pub key: i32,
    /// SCSI bus number.
    pub bus: i32,
    /// vim25 type, e.g. `VirtualLsiLogicController`.
    pub kind: String,
}

/// A virtual disk and its chain of files (base first, the running file last).
#[derive(Debug, Clone)]
pub struct Disk {
    /// Device key.
    pub key: i32,
    /// Controller device key.
    pub controller_key: i32,
    /// Unit on the controller.
    pub unit: i32,
    /// Capacity in bytes.
    pub capacity: u64,
    /// Backing uuid (`6000C29...`), what `disk.EnableUUID` exposes to the guest.
    pub uuid: String,
    /// Datastore of the files.
    pub datastore: MoRef,
    /// Thin provisioned.
    pub thin: bool,
    /// Descriptor paths relative to the datastore; each snapshot froze all but the last.
    pub chain: Vec<String>,
    /// Change tracking, while enabled.
    pub cbt: Option<ChangeTracker>,
}

/// A network adapter.
#[derive(Debug, Clone)]
pub struct Nic {
    /// Device key.
    pub key: i32,
    /// vim25 type, e.g. `VirtualVmxnet3`.
    pub kind: String,
    /// Port group.
    pub network: MoRef,
    /// MAC address.
    pub mac: String,
}

/// A disk as a snapshot froze it.
#[derive(Debug, Clone)]
pub struct SnapDisk {
    /// Device key of the disk.
    pub key: i32,
    /// Frozen descriptor path relative to the datastore.
    pub file: String,
    /// Change id of the point the snapshot cut, when tracking was on.
    pub change_id: Option<String>,
}

/// A snapshot.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// `snapshot-N` / `<vm>-snapshot-<n>`.
    pub moref: MoRef,
    /// Per-VM snapshot id.
    pub id: i32,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Creation time.
    pub create_time: String,
    /// Power state when taken (poweredOn with memory = a memory snapshot).
    pub state: Power,
    /// Whether the guest file systems were quiesced.
    pub quiesced: bool,
    /// Parent snapshot.
    pub parent: Option<MoRef>,
    /// Disks as frozen.
    pub disks: Vec<SnapDisk>,
    /// vCPUs at snapshot time.
    pub cpus: i32,
    /// Memory at snapshot time.
    pub memory_mb: i64,
    /// extraConfig at snapshot time.
    pub extra_config: BTreeMap<String, String>,
}

/// A virtual machine.
#[derive(Debug, Clone)]
pub struct Vm {
    /// `vm-N` / `N`.
    pub moref: MoRef,
    /// Name.
    pub name: String,
    /// BIOS uuid (`config.uuid`).
    pub uuid: String,
    /// vCenter instance uuid.
    pub instance_uuid: String,
    /// `config.guestId`.
    pub guest_id: String,
    /// vCPUs.
    pub cpus: i32,
    /// Memory in MiB.
    pub memory_mb: i64,
    /// Host it runs on.
    pub host: MoRef,
    /// Datastore of its `.vmx`.
    pub datastore: MoRef,
    /// Directory relative to the datastore.
    pub dir: String,
    /// Power state.
    pub power: Power,
    /// Boot time while powered on.
    pub boot_time: Option<String>,
    /// `config.extraConfig`.
    pub extra_config: BTreeMap<String, String>,
    /// `config.changeTrackingEnabled`.
    pub change_tracking: bool,
    /// SCSI controllers.
    pub controllers: Vec<Controller>,
    /// Disks.
    pub disks: Vec<Disk>,
    /// NICs.
    pub nics: Vec<Nic>,
    /// Snapshots in creation order.
    pub snapshots: Vec<Snapshot>,
    /// `snapshot.currentSnapshot`.
    pub current_snapshot: Option<MoRef>,
    /// Next per-VM snapshot id.
    pub next_snapshot_id: i32,
    /// `config.changeVersion` source; bumped on every change.
    pub change_version: u64,
    /// Last modification time.
    pub modified: String,
}

impl Vm {
    /// A disk by device key.
    pub fn disk(&self, key: i32) -> Option<&Disk> {
        self.disks.iter().find(|d| d.key == key)
    }

    /// A snapshot by reference.
    pub fn snapshot(&self, m: &MoRef) -> Option<&Snapshot> {
        self.snapshots.iter().find(|s| &s.moref == m)
    }

    /// Records a change, as ESXi bumps `changeVersion`.
    pub fn touch(&mut self) {
        self.change_version += 1;
        self.modified = super::soap::now();
    }
}

/// A ContainerView created by a session.
#[derive(Debug, Clone)]
pub struct View {
    /// Container it watches.
    pub container: MoRef,
    /// Types it includes (all when empty).
    pub types: Vec<String>,
    /// Whether it descends below direct children.
    pub recursive: bool,
}

/// Edition and name of the site's licence.
#[derive(Debug, Clone)]
pub struct License {
    /// Edition key, e.g. `esxBasic`.
    pub edition: String,
}

impl License {
    /// Whether this is the free vSphere Hypervisor edition, which refuses API writes.
    pub fn is_free(&self) -> bool {
        self.edition == "esxBasic"
    }
}

/// Everything the site knows.
#[derive(Debug)]
pub struct Inventory {
    /// vCenter or ESXi.
    pub mode: Mode,
    /// `ServiceInstance.content.rootFolder`.
    pub root_folder: MoRef,
    /// The one datacenter.
    pub datacenter: Datacenter,
    /// Hosts.
    pub hosts: Vec<Host>,
    /// Datastores.
    pub datastores: Vec<Datastore>,
    /// Networks.
    pub networks: Vec<Network>,
    /// VMs by moref value, in creation order of ids.
    pub vms: BTreeMap<String, Vm>,
    /// Tasks by moref value.
    pub tasks: BTreeMap<String, Task>,
    /// Task ids in creation order (for `recentTask`).
    pub task_order: Vec<String>,
    /// Container views by moref value.
    pub views: BTreeMap<String, View>,
    /// Licence.
    pub license: License,
    /// Accounts.
    pub users: Vec<User>,
    /// Live sessions by key.
    pub sessions: BTreeMap<String, Session>,
    /// Standing property filters by moref value.
    pub filters: BTreeMap<String, super::updates::Filter>,
    /// Last `WaitForUpdatesEx` version handed to each session.
    pub update_versions: BTreeMap<String, u64>,
    /// vCenter `about.instanceUuid`.
    pub instance_uuid: String,
    /// Unfinished property-collector result pages by token.
    pub pages: BTreeMap<String, (usize, Vec<super::soap::Value>)>,
    next_id: u64,
}

/// Well-known singleton managed objects of the service content.
pub struct Singletons {
    /// PropertyCollector.
    pub property_collector: MoRef,
    /// ViewManager.
    pub view_manager: MoRef,
    /// SessionManager.
    pub session_manager: MoRef,
    /// AuthorizationManager.
    pub authorization_manager: MoRef,
    /// LicenseManager.
    pub license_manager: MoRef,
    /// TaskManager.
    pub task_manager: MoRef,
    /// SearchIndex.
    pub search_index: MoRef,
}

impl Inventory {
    /// Builds the inventory and creates every datastore directory and VM file.
    pub fn build(spec: &SiteSpec, dir: &Path) -> Result<Self, LabError> {
        let invalid = |m: String| LabError::InvalidSpec(m);
        if spec.hosts.is_empty() {
            return Err(invalid("at least one host is required".into()));
        }
        if spec.mode == Mode::Esxi && spec.hosts.len() != 1 {
            return Err(invalid(
                "a standalone ESXi site has exactly one host".into(),
            ));
        }
        if spec.users.is_empty() {
            return Err(invalid("at least one user is required".into()));
        }
        let edition = spec
            .license
            .clone()
            .unwrap_or_else(|| "esxEnterprisePlus".into());
        if spec.mode == Mode::Vcenter && edition == "esxBasic" {
            return Err(invalid(
                "vCenter cannot manage hosts with the free vSphere Hypervisor licence (esxBasic)"
                    .into(),
            ));
        }
        let duplicate = |what: &str, names: Vec<&str>| -> Result<(), LabError> {
            let mut seen = BTreeSet::new();
            match names.into_iter().find(|n| !seen.insert(*n)) {
                Some(n) => Err(LabError::InvalidSpec(format!(
                    "{what} '{n}' is described twice"
                ))),
                None => Ok(()),
            }
        };
        duplicate("host", spec.hosts.iter().map(|h| h.name.as_str()).collect())?;
        duplicate(
            "datastore",
            spec.datastores.iter().map(|d| d.name.as_str()).collect(),
        )?;
        duplicate(
            "network",
            spec.networks.iter().map(|n| n.name.as_str()).collect(),
        )?;
        duplicate("VM", spec.vms.iter().map(|v| v.name.as_str()).collect())?;
        duplicate("user", spec.users.iter().map(|u| u.name.as_str()).collect())?;
        let esxi = spec.mode == Mode::Esxi;
        let mut inv = Inventory {
            mode: spec.mode,
            root_folder: MoRef::new("Folder", if esxi { "ha-folder-root" } else { "group-d1" }),
            datacenter: Datacenter {
                moref: MoRef::new(
                    "Datacenter",
                    if esxi {
                        "ha-datacenter"
                    } else {
                        "datacenter-2"
                    },
                ),
                name: if esxi {
                    "ha-datacenter".into()
                } else {
                    spec.datacenter
                        .clone()
                        .unwrap_or_else(|| "Datacenter".into())
                },
                vm_folder: MoRef::new("Folder", if esxi { "ha-folder-vm" } else { "group-v3" }),
                host_folder: MoRef::new("Folder", if esxi { "ha-folder-host" } else { "group-h4" }),
                datastore_folder: MoRef::new(
                    "Folder",
                    if esxi {
                        "ha-folder-datastore"
                    } else {
                        "group-s5"
                    },
                ),
                network_folder: MoRef::new(
                    "Folder",
                    if esxi {
                        "ha-folder-network"
                    } else {
                        "group-n6"
                    },
                ),
            },
            hosts: Vec::new(),
            datastores: Vec::new(),
            networks: Vec::new(),
            vms: BTreeMap::new(),
            tasks: BTreeMap::new(),
            task_order: Vec::new(),
            views: BTreeMap::new(),
            license: License { edition },
            users: Vec::new(),
            sessions: BTreeMap::new(),
            filters: BTreeMap::new(),
            update_versions: BTreeMap::new(),
            instance_uuid: uuid::Uuid::new_v4().to_string(),
            pages: BTreeMap::new(),
            next_id: 7,
        };
        for h in &spec.hosts {
            let host = if esxi {
                Host {
                    moref: MoRef::new("HostSystem", "ha-host"),
                    name: h.name.clone(),
                    compute: MoRef::new("ComputeResource", "ha-compute-res"),
                    pool: MoRef::new("ResourcePool", "ha-root-pool"),
                }
            } else {
                let n = inv.next();
                Host {
                    moref: MoRef::new("HostSystem", format!("host-{}", n + 2)),
                    name: h.name.clone(),
                    compute: MoRef::new("ComputeResource", format!("domain-s{n}")),
                    pool: MoRef::new("ResourcePool", format!("resgroup-{}", n + 1)),
                }
            };
            inv.next_id += 2;
            inv.hosts.push(host);
        }
        let hosts_named = |inv: &Inventory,
                           names: &Option<Vec<String>>,
                           what: &str|
         -> Result<Vec<MoRef>, LabError> {
            match names {
                None => Ok(inv.hosts.iter().map(|h| h.moref.clone()).collect()),
                Some(names) => names
                    .iter()
                    .map(|n| {
                        inv.host_by_name(n).map(|h| h.moref.clone()).ok_or_else(|| {
                            LabError::InvalidSpec(format!("{what} names unknown host '{n}'"))
                        })
                    })
                    .collect(),
            }
        };
        for d in &spec.datastores {
            let hosts = hosts_named(&inv, &d.hosts, &format!("datastore '{}'", d.name))?;
            let u = uuid::Uuid::new_v4().simple().to_string();
            let volume_uuid = format!("{}-{}-{}-{}", &u[0..8], &u[8..16], &u[16..20], &u[20..32]);
            let moref = if esxi {
                volume_uuid.clone()
            } else {
                format!("datastore-{}", inv.next())
            };
            let ds_dir = dir.join("datastores").join(&d.name);
            std::fs::create_dir_all(&ds_dir).map_err(|e| LabError::Io {
                path: ds_dir.clone(),
                source: e,
            })?;
            inv.datastores.push(Datastore {
                moref: MoRef::new("Datastore", moref),
                name: d.name.clone(),
                volume_uuid,
                capacity: d.capacity_gib << 30,
                fs_type: d.r#type.clone(),
                hosts,
                dir: ds_dir,
                full: false,
            });
        }
        for n in &spec.networks {
            let hosts = hosts_named(&inv, &n.hosts, &format!("network '{}'", n.name))?;
            let moref = if esxi {
                format!("HaNetwork-{}", n.name)
            } else {
                format!("network-{}", inv.next())
            };
            inv.networks.push(Network {
                moref: MoRef::new("Network", moref),
                name: n.name.clone(),
                hosts,
            });
        }
        for u in &spec.users {
            let (admin, base): (bool, &[&str]) = match u.role.as_str() {
                "Admin" => (true, &[]),
                "ReadOnly" => (false, READ_ONLY),
                "NoAccess" => (false, &[]),
                other => {
                    return Err(invalid(format!(
                        "user '{}' has unknown role '{other}' (Admin, ReadOnly or NoAccess)",
                        u.name
                    )));
                }
            };
            let mut privileges: BTreeSet<String> = base.iter().map(|s| s.to_string()).collect();
            privileges.extend(u.privileges.iter().cloned());
            inv.users.push(User {
                name: u.name.clone(),
                password: u.password.clone(),
                admin,
                privileges,
            });
        }
        for v in &spec.vms {
            super::vmops::add_vm_from_spec(&mut inv, v)?;
        }
        Ok(inv)
    }

    /// Allocates the next numeric id.
    pub fn next(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// The singleton managers, named as vCenter or hostd names them.
    pub fn singletons(&self) -> Singletons {
        let esxi = self.mode == Mode::Esxi;
        let pick = |ty: &str, vc: &str, ha: &str| MoRef::new(ty, if esxi { ha } else { vc });
        Singletons {
            property_collector: pick(
                "PropertyCollector",
                "propertyCollector",
                "ha-property-collector",
            ),
            view_manager: pick("ViewManager", "ViewManager", "ViewManager"),
            session_manager: pick("SessionManager", "SessionManager", "ha-sessionmgr"),
            authorization_manager: pick(
                "AuthorizationManager",
                "AuthorizationManager",
                "ha-authmgr",
            ),
            license_manager: pick("LicenseManager", "LicenseManager", "ha-license-manager"),
            task_manager: pick("TaskManager", "TaskManager", "ha-taskmgr"),
            search_index: pick("SearchIndex", "SearchIndex", "ha-searchindex"),
        }
    }

    /// A host by name.
    pub fn host_by_name(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// A host by reference.
    pub fn host(&self, m: &MoRef) -> Option<&Host> {
        self.hosts.iter().find(|h| &h.moref == m)
    }

    /// A datastore by name.
    pub fn datastore_by_name(&self, name: &str) -> Option<&Datastore> {
        self.datastores.iter().find(|d| d.name == name)
    }

    /// A datastore by reference.
    pub fn datastore(&self, m: &MoRef) -> Option<&Datastore> {
        self.datastores.iter().find(|d| &d.moref == m)
    }

    /// A network by name.
    pub fn network_by_name(&self, name: &str) -> Option<&Network> {
        self.networks.iter().find(|n| n.name == name)
    }

    /// A VM by reference, or ManagedObjectNotFound.
    pub fn vm(&self, m: &MoRef) -> Result<&Vm, Fault> {
        if m.ty != "VirtualMachine" {
            return Err(Fault::not_found(m));
        }
        self.vms.get(&m.value).ok_or_else(|| Fault::not_found(m))
    }

    /// A VM by reference, mutably, or ManagedObjectNotFound.
    pub fn vm_mut(&mut self, m: &MoRef) -> Result<&mut Vm, Fault> {
        if m.ty != "VirtualMachine" {
            return Err(Fault::not_found(m));
        }
        self.vms
            .get_mut(&m.value)
            .ok_or_else(|| Fault::not_found(m))
    }

    /// A VM by name.
    pub fn vm_by_name(&self, name: &str) -> Option<&Vm> {
        self.vms.values().find(|v| v.name == name)
    }

    /// The VM owning a snapshot, and the snapshot.
    pub fn snapshot(&self, m: &MoRef) -> Option<(&Vm, &Snapshot)> {
        if m.ty != "VirtualMachineSnapshot" {
            return None;
        }
        self.vms
            .values()
            .find_map(|vm| vm.snapshot(m).map(|s| (vm, s)))
    }

    /// Splits `[ds] rel/path` into the datastore and the relative path.
    pub fn resolve_ds_path(&self, path: &str) -> Option<(&Datastore, String)> {
        let rest = path.trim().strip_prefix('[')?;
        let (name, rel) = rest.split_once(']')?;
        let ds = self.datastore_by_name(name)?;
        Some((ds, rel.trim().trim_start_matches('/').to_string()))
    }

    /// Local path of a file on a datastore; refuses `..` so paths stay inside the datastore.
    pub fn local_path(ds: &Datastore, rel: &str) -> Option<PathBuf> {
        let rel = Path::new(rel);
        if rel
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return None;
        }
        Some(ds.dir.join(rel))
    }

    /// Finds the VM disk whose running (last) file has this flat extent, for change tracking.
    pub fn disk_by_flat(&mut self, ds: &MoRef, rel_flat: &str) -> Option<(&mut Vm, usize)> {
        for vm in self.vms.values_mut() {
            for (i, d) in vm.disks.iter().enumerate() {
                if &d.datastore != ds {
                    continue;
                }
                let Some(top) = d.chain.last() else { continue };
                let flat = flat_of(top);
                if flat == rel_flat {
                    return Some((vm, i));
                }
            }
        }
        None
    }

    /// Whether any user-visible object with this reference exists.
    pub fn exists(&self, m: &MoRef) -> bool {
        let s = self.singletons();
        match m.ty.as_str() {
            "ServiceInstance" => m.value == "ServiceInstance",
            "Folder" => [
                &self.root_folder,
                &self.datacenter.vm_folder,
                &self.datacenter.host_folder,
                &self.datacenter.datastore_folder,
                &self.datacenter.network_folder,
            ]
            .contains(&m),
            "Datacenter" => m == &self.datacenter.moref,
            "HostSystem" => self.host(m).is_some(),
            "ComputeResource" => self.hosts.iter().any(|h| &h.compute == m),
            "ResourcePool" => self.hosts.iter().any(|h| &h.pool == m),
            "Datastore" => self.datastore(m).is_some(),
            "Network" => self.networks.iter().any(|n| &n.moref == m),
            "VirtualMachine" => self.vms.contains_key(&m.value),
            "VirtualMachineSnapshot" => self.snapshot(m).is_some(),
            "Task" => self.tasks.contains_key(&m.value),
            "ContainerView" => self.views.contains_key(&m.value),
            "PropertyFilter" => self.filters.contains_key(&m.value),
            "PropertyCollector" => m == &s.property_collector,
            "ViewManager" => m == &s.view_manager,
            "SessionManager" => m == &s.session_manager,
            "AuthorizationManager" => m == &s.authorization_manager,
            "LicenseManager" => m == &s.license_manager,
            "TaskManager" => m == &s.task_manager,
            "SearchIndex" => m == &s.search_index,
            _ => false,
        }
    }

    /// Fails with NoDiskSpace when the datastore is marked full or `extra` more bytes
    /// would exceed its capacity.
    pub fn check_space(ds: &Datastore, file: &str, extra: u64) -> Result<(), Fault> {
        if ds.full || ds.used().saturating_add(extra) > ds.capacity {
            return Err(Fault::no_disk_space(file, &ds.name));
        }
        Ok(())
    }
}

/// Flat extent path of a descriptor path (`vm/vm.vmdk` → `vm/vm-flat.vmdk`).
pub fn flat_of(descriptor_rel: &str) -> String {
    match descriptor_rel.rsplit_once('/') {
        Some((dir, name)) => format!("{dir}/{}", vmdk::flat_name_for(name)),
        None => vmdk::flat_name_for(descriptor_rel),
    }
}

/// A fresh disk backing uuid in vSphere's `6000C29x-...` form.
pub fn new_disk_uuid() -> String {
    let u = uuid::Uuid::new_v4().simple().to_string();
    format!(
        "6000C29{}-{}-{}-{}-{}",
        &u[0..1],
        &u[1..5],
        &u[5..9],
        &u[9..13],
        &u[13..25]
    )
}

/// A fresh MAC in VMware's assigned range `00:50:56`.
pub fn new_mac() -> String {
    let b = uuid::Uuid::new_v4().into_bytes();
    format!("00:50:56:{:02x}:{:02x}:{:02x}", b[0] & 0x3f, b[1], b[2])
}
