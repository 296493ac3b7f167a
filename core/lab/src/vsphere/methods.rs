//! vim25 method dispatch: authentication, privilege and licence checks, then the method.

use std::sync::Arc;

use super::Site;
use super::collector;
use super::configspec::ConfigSpec;
use super::faults::Fault;
use super::inventory::{Inventory, Power, Session, User};
use super::properties::{service_content, user_session};
use super::search;
use super::soap::{Data, Element, MoRef, Value, now};
use super::spec::Mode;
use super::tasks::{self, NewTask, TaskOp};
use super::updates;
use super::vmops::{self, NewVm};

/// What a call produced, beyond its return values.
#[derive(Debug)]
pub enum Reply {
    /// Return values (none for void methods).
    Values(Vec<Value>),
    /// A new session: set this cookie.
    LoggedIn {
        /// Session key, the cookie value.
        key: String,
        /// The `UserSession`.
        session: Value,
    },
    /// The session ended: clear the cookie.
    LoggedOut,
}

/// Methods a free vSphere Hypervisor licence refuses, as real free ESXi refuses API writes.
const RESTRICTED_ON_FREE: &[&str] = &[
    "CreateVM_Task",
    "PowerOnVM_Task",
    "PowerOffVM_Task",
    "ShutdownGuest",
    "Destroy_Task",
    "ReconfigVM_Task",
    "CreateSnapshot_Task",
    "RemoveSnapshot_Task",
    "RemoveAllSnapshots_Task",
    "QueryChangedDiskAreas",
    "CloneVM_Task",
];

fn this(op: &Element) -> Result<MoRef, Fault> {
    op.child("_this")
        .and_then(Element::as_moref)
        .ok_or_else(|| Fault::invalid_request("missing _this"))
}

fn require(user: &User, obj: &MoRef, privilege: &str) -> Result<(), Fault> {
    if user.has(privilege) {
        Ok(())
    } else {
        Err(Fault::no_permission(obj, privilege))
    }
}

fn arg_ref(op: &Element, name: &str) -> Result<MoRef, Fault> {
    op.child(name)
        .and_then(Element::as_moref)
        .ok_or_else(|| Fault::invalid_argument(name))
}

/// The session named by the cookie and its user, or NotAuthenticated.
pub fn authenticate(
    inv: &Inventory,
    op: &Element,
    cookie: Option<&str>,
) -> Result<(String, User), Fault> {
    let this = this(op)?;
    let key = cookie
        .filter(|k| inv.sessions.contains_key(*k))
        .ok_or_else(|| Fault::not_authenticated(&this, "System.View"))?
        .to_string();
    let user_name = inv.sessions[&key].user.clone();
    let user = inv
        .users
        .iter()
        .find(|u| u.name == user_name)
        .cloned()
        .ok_or_else(|| Fault::not_authenticated(&this, "System.View"))?;
    Ok((key, user))
}

/// Executes one SOAP operation for the session named by the cookie.
pub fn call(site: &Arc<Site>, op: &Element, cookie: Option<&str>) -> Result<Reply, Fault> {
    let method = op.name.as_str();
    let this = this(op)?;
    let mut inv = site.lock();
    if !inv.exists(&this) {
        return Err(Fault::not_found(&this));
    }
    match method {
        "RetrieveServiceContent" => return Ok(Reply::Values(vec![service_content(&inv).into()])),
        "CurrentTime" => return Ok(Reply::Values(vec![Value::DateTime(now())])),
        "Login" => {
            let name = op.child_text("userName").unwrap_or_default();
            let password = op
                .child("password")
                .map(|p| p.text.as_str())
                .unwrap_or_default();
            let user = inv
                .users
                .iter()
                .find(|u| u.name == name && u.password == password)
                .ok_or_else(Fault::invalid_login)?
                .name
                .clone();
            let key = uuid::Uuid::new_v4().to_string();
            let sess = Session {
                key: key.clone(),
                user: user.clone(),
                login_time: now(),
            };
            let value = user_session(&sess, &user).into();
            inv.sessions.insert(key.clone(), sess);
            return Ok(Reply::LoggedIn {
                key,
                session: value,
            });
        }
        _ => {}
    }
    let (session_key, user) = authenticate(&inv, op, cookie)?;
    if inv.mode == Mode::Esxi && inv.license.is_free() && RESTRICTED_ON_FREE.contains(&method) {
        return Err(Fault::restricted_version());
    }
    match method {
        "Logout" => {
            inv.sessions.remove(&session_key);
            let prefix = format!("session[{session_key}]");
            inv.views.retain(|k, _| !k.starts_with(&prefix));
            inv.filters.retain(|k, _| !k.starts_with(&prefix));
            inv.update_versions.remove(&session_key);
            Ok(Reply::LoggedOut)
        }
        "CreateFilter" => {
            let spec = op
                .child("spec")
                .ok_or_else(|| Fault::invalid_argument("spec"))?;
            // Validate now, so a bad spec fails CreateFilter rather than every later wait.
            collector::collect(&inv, &[spec], &user, &session_key, false)?;
            let filter = updates::create(&mut inv, &session_key, spec);
            Ok(Reply::Values(vec![filter.into()]))
        }
        "DestroyPropertyFilter" => {
            inv.filters.remove(&this.value);
            Ok(Reply::Values(vec![]))
        }
        "RetrievePropertiesEx" | "RetrieveProperties" => {
            let specs: Vec<&Element> = op.children_named("specSet").collect();
            if specs.is_empty() {
                return Err(Fault::invalid_argument("specSet"));
            }
            let objects = collector::retrieve(&inv, &specs, &user, &session_key)?;
            if method == "RetrieveProperties" {
                return Ok(Reply::Values(objects));
            }
            let max = op
                .child("options")
                .and_then(|o| o.child_i64("maxObjects"))
                .map(|m| m.max(0) as usize);
            Ok(Reply::Values(
                collector::page(&mut inv, objects, max)
                    .into_iter()
                    .collect(),
            ))
        }
        "ContinueRetrievePropertiesEx" => {
            let token = op.child_text("token").unwrap_or_default().to_string();
            let (max, rest) = inv
                .pages
                .remove(&token)
                .ok_or_else(|| Fault::invalid_token(&token))?;
            Ok(Reply::Values(
                collector::page(&mut inv, rest, Some(max))
                    .into_iter()
                    .collect(),
            ))
        }
        "CancelRetrievePropertiesEx" => {
            let token = op.child_text("token").unwrap_or_default().to_string();
            inv.pages
                .remove(&token)
                .ok_or_else(|| Fault::invalid_token(&token))?;
            Ok(Reply::Values(vec![]))
        }
        "CreateContainerView" => {
            let container = arg_ref(op, "container")?;
            if !inv.exists(&container)
                || !matches!(
                    container.ty.as_str(),
                    "Folder" | "Datacenter" | "ComputeResource" | "ResourcePool" | "HostSystem"
                )
            {
                return Err(Fault::not_found(&container));
            }
            let types = op
                .children_named("type")
                .map(|t| t.text.trim().to_string())
                .collect();
            let recursive = op.child_bool("recursive").unwrap_or(false);
            let id = format!("session[{session_key}]{}", uuid::Uuid::new_v4());
            inv.views.insert(
                id.clone(),
                super::inventory::View {
                    container,
                    types,
                    recursive,
                },
            );
            Ok(Reply::Values(vec![MoRef::new("ContainerView", id).into()]))
        }
        "DestroyView" => {
            inv.views.remove(&this.value);
            Ok(Reply::Values(vec![]))
        }
        "HasPrivilegeOnEntities" | "HasPrivilegeOnEntity" => {
            let sid = op.child_text("sessionId").unwrap_or_default();
            let target = inv
                .sessions
                .get(sid)
                .map(|s| s.user.clone())
                .ok_or_else(|| Fault::invalid_argument("sessionId"))?;
            let target = inv
                .users
                .iter()
                .find(|u| u.name == target)
                .cloned()
                .ok_or_else(|| Fault::invalid_argument("sessionId"))?;
            let privs: Vec<String> = op
                .children_named("privId")
                .map(|p| p.text.trim().to_string())
                .collect();
            let entities: Vec<MoRef> = op
                .children_named("entity")
                .filter_map(Element::as_moref)
                .collect();
            for e in &entities {
                if !inv.exists(e) {
                    return Err(Fault::not_found(e));
                }
            }
            if method == "HasPrivilegeOnEntity" {
                return Ok(Reply::Values(
                    privs.iter().map(|p| Value::Bool(target.has(p))).collect(),
                ));
            }
            Ok(Reply::Values(
                entities
                    .iter()
                    .map(|e| {
                        Data::new("EntityPrivilege")
                            .with("entity", e)
                            .with(
                                "privAvailability",
                                Value::Array(
                                    "PrivilegeAvailability",
                                    privs
                                        .iter()
                                        .map(|p| {
                                            Data::new("PrivilegeAvailability")
                                                .with("privId", p.as_str())
                                                .with("isGranted", target.has(p))
                                                .into()
                                        })
                                        .collect(),
                                ),
                            )
                            .into()
                    })
                    .collect(),
            ))
        }
        "CreateVM_Task" => create_vm(site, &mut inv, op, &this, &user),
        "PowerOnVM_Task"
        | "PowerOffVM_Task"
        | "Destroy_Task"
        | "ReconfigVM_Task"
        | "CreateSnapshot_Task"
        | "RemoveAllSnapshots_Task" => vm_task(site, &mut inv, op, &this, &user),
        "ShutdownGuest" => {
            let vm = inv.vm_mut(&this)?;
            require(&user, &this, "VirtualMachine.Interact.PowerOff")?;
            if vm.power == Power::Off {
                return Err(Fault::invalid_power_state(None, "poweredOff"));
            }
            vmops::power_off(vm)?;
            Ok(Reply::Values(vec![]))
        }
        "RemoveSnapshot_Task" => {
            let (vm_ref, vm_name) = inv
                .snapshot(&this)
                .map(|(vm, _)| (vm.moref.clone(), vm.name.clone()))
                .ok_or_else(|| Fault::not_found(&this))?;
            require(&user, &this, "VirtualMachine.State.RemoveSnapshot")?;
            let children = op.child_bool("removeChildren").unwrap_or(false);
            let snap = this.clone();
            let task_op: TaskOp = Box::new(move |inv: &mut Inventory| {
                vmops::remove_snapshot(inv, &snap, children).map(|_| None)
            });
            // The VM is the entity that is busy, so a second snapshot operation waits its turn.
            let t = tasks::submit(
                site,
                &mut inv,
                NewTask {
                    entity: vm_ref,
                    entity_name: vm_name,
                    method,
                    description_id: "vm.Snapshot.remove",
                    user: &user.name,
                },
                task_op,
            )?;
            Ok(Reply::Values(vec![t.into()]))
        }
        "FindByUuid" | "FindAllByUuid" | "FindByInventoryPath" | "FindByDatastorePath"
            if this.ty == "SearchIndex" =>
        {
            let found = search::call(&inv, method, op)
                .unwrap_or_else(|| Err(Fault::method_not_found(&this, method)))?;
            // Objects the user may not read are not found, as with the property collector.
            Ok(Reply::Values(if user.has("System.Read") {
                found
            } else {
                Vec::new()
            }))
        }
        "QueryChangedDiskAreas" => query_changed(&inv, op, &this, &user),
        "CloneVM_Task" => clone_vm(site, &mut inv, op, &this, &user),
        _ => Err(Fault::method_not_found(&this, method)),
    }
}

fn create_vm(
    site: &Arc<Site>,
    inv: &mut Inventory,
    op: &Element,
    folder: &MoRef,
    user: &User,
) -> Result<Reply, Fault> {
    if folder != &inv.datacenter.vm_folder {
        return Err(Fault::not_supported(
            "CreateVM_Task on a folder other than the datacenter's vmFolder",
        ));
    }
    require(user, folder, "VirtualMachine.Inventory.Create")?;
    let spec = ConfigSpec::parse(
        op.child("config")
            .ok_or_else(|| Fault::invalid_argument("config"))?,
    )?;
    let pool = arg_ref(op, "pool")?;
    let host = match op.child("host").and_then(Element::as_moref) {
        Some(h) => inv
            .host(&h)
            .map(|x| x.moref.clone())
            .ok_or_else(|| Fault::not_found(&h))?,
        None => inv
            .hosts
            .iter()
            .find(|h| h.pool == pool)
            .map(|h| h.moref.clone())
            .ok_or_else(|| Fault::not_found(&pool))?,
    };
    let name = spec
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| Fault::invalid_argument("config.name"))?;
    let path = spec
        .vm_path_name
        .clone()
        .ok_or_else(|| Fault::invalid_argument("config.files.vmPathName"))?;
    let (ds, _) = inv.resolve_ds_path(&path).ok_or_else(|| {
        Fault::new(
            "InvalidDatastorePath",
            format!("Invalid datastore path '{path}'."),
        )
    })?;
    let new = NewVm {
        name: name.clone(),
        guest_id: spec
            .guest_id
            .clone()
            .unwrap_or_else(|| "otherGuest64".into()),
        cpus: spec.num_cpus.unwrap_or(1),
        memory_mb: spec.memory_mb.unwrap_or(1024),
        host,
        datastore: ds.moref.clone(),
    };
    let task_op: TaskOp = Box::new(move |inv: &mut Inventory| {
        let vm_ref = vmops::create_vm(inv, new)?;
        let applied = ConfigSpec {
            name: None,
            guest_id: None,
            num_cpus: None,
            memory_mb: None,
            ..spec
        }
        .apply(inv, &vm_ref);
        if let Err(f) = applied {
            // A failed create leaves nothing behind.
            let _ = vmops::destroy(inv, &vm_ref);
            return Err(f);
        }
        Ok(Some(Value::Ref(vm_ref)))
    });
    let t = tasks::submit(
        site,
        inv,
        NewTask {
            entity: folder.clone(),
            entity_name: "vm".into(),
            method: "CreateVM_Task",
            description_id: "Folder.createVm",
            user: &user.name,
        },
        task_op,
    )?;
    Ok(Reply::Values(vec![t.into()]))
}

fn clone_vm(
    site: &Arc<Site>,
    inv: &mut Inventory,
    op: &Element,
    src: &MoRef,
    user: &User,
) -> Result<Reply, Fault> {
    let src_name = inv.vm(src)?.name.clone();
    if inv.mode == Mode::Esxi {
        return Err(Fault::not_supported(
            "CloneVM_Task: a standalone ESXi host cannot clone virtual machines; clone through vCenter",
        ));
    }
    require(user, src, "VirtualMachine.Provisioning.Clone")?;
    let folder = arg_ref(op, "folder")?;
    if folder != inv.datacenter.vm_folder {
        return Err(Fault::not_found(&folder));
    }
    let name = op
        .child_text("name")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| Fault::invalid_argument("name"))?
        .to_string();
    let spec = op
        .child("spec")
        .ok_or_else(|| Fault::invalid_argument("spec"))?;
    if spec.child_bool("template") == Some(true) {
        return Err(Fault::not_supported("CloneVM_Task to a template"));
    }
    let location = spec.child("location");
    let datastore = location
        .and_then(|l| l.child("datastore"))
        .and_then(Element::as_moref);
    let mut host = location
        .and_then(|l| l.child("host"))
        .and_then(Element::as_moref);
    if host.is_none() {
        let pool = location
            .and_then(|l| l.child("pool"))
            .and_then(Element::as_moref);
        host = pool.and_then(|p| {
            inv.hosts
                .iter()
                .find(|h| h.pool == p)
                .map(|h| h.moref.clone())
        });
    }
    let power = spec.child_bool("powerOn").unwrap_or(false);
    let source = src.clone();
    let task_op: TaskOp = Box::new(move |inv: &mut Inventory| {
        vmops::clone_vm(inv, &source, &name, datastore, host, power).map(|vm| Some(Value::Ref(vm)))
    });
    let t = tasks::submit(
        site,
        inv,
        NewTask {
            entity: src.clone(),
            entity_name: src_name,
            method: "CloneVM_Task",
            description_id: "VirtualMachine.clone",
            user: &user.name,
        },
        task_op,
    )?;
    Ok(Reply::Values(vec![t.into()]))
}

fn vm_task(
    site: &Arc<Site>,
    inv: &mut Inventory,
    op: &Element,
    vm_ref: &MoRef,
    user: &User,
) -> Result<Reply, Fault> {
    let vm_name = inv.vm(vm_ref)?.name.clone();
    let method = op.name.as_str();
    let target = vm_ref.clone();
    let (desc, task_op): (&str, TaskOp) = match method {
        "PowerOnVM_Task" => {
            require(user, vm_ref, "VirtualMachine.Interact.PowerOn")?;
            (
                "VirtualMachine.powerOn",
                Box::new(move |inv: &mut Inventory| {
                    vmops::power_on(inv.vm_mut(&target)?).map(|_| None)
                }),
            )
        }
        "PowerOffVM_Task" => {
            require(user, vm_ref, "VirtualMachine.Interact.PowerOff")?;
            (
                "VirtualMachine.powerOff",
                Box::new(move |inv: &mut Inventory| {
                    vmops::power_off(inv.vm_mut(&target)?).map(|_| None)
                }),
            )
        }
        "Destroy_Task" => {
            require(user, vm_ref, "VirtualMachine.Inventory.Delete")?;
            (
                "VirtualMachine.destroy",
                Box::new(move |inv: &mut Inventory| vmops::destroy(inv, &target).map(|_| None)),
            )
        }
        "ReconfigVM_Task" => {
            let spec = ConfigSpec::parse(
                op.child("spec")
                    .ok_or_else(|| Fault::invalid_argument("spec"))?,
            )?;
            for p in spec.privileges() {
                require(user, vm_ref, p)?;
            }
            (
                "VirtualMachine.reconfigure",
                Box::new(move |inv: &mut Inventory| spec.apply(inv, &target).map(|_| None)),
            )
        }
        "CreateSnapshot_Task" => {
            require(user, vm_ref, "VirtualMachine.State.CreateSnapshot")?;
            let name = op.child_text("name").unwrap_or_default().to_string();
            let description = op.child_text("description").unwrap_or_default().to_string();
            let memory = op.child_bool("memory").unwrap_or(false);
            let quiesce = op.child_bool("quiesce").unwrap_or(false);
            (
                "VirtualMachine.createSnapshot",
                Box::new(move |inv: &mut Inventory| {
                    vmops::create_snapshot(inv, &target, &name, &description, memory, quiesce)
                        .map(|s| Some(Value::Ref(s)))
                }),
            )
        }
        "RemoveAllSnapshots_Task" => {
            require(user, vm_ref, "VirtualMachine.State.RemoveSnapshot")?;
            (
                "VirtualMachine.removeAllSnapshots",
                Box::new(move |inv: &mut Inventory| {
                    let roots: Vec<MoRef> = inv
                        .vm(&target)?
                        .snapshots
                        .iter()
                        .filter(|s| s.parent.is_none())
                        .map(|s| s.moref.clone())
                        .collect();
                    for r in roots {
                        vmops::remove_snapshot(inv, &r, true)?;
                    }
                    Ok(None)
                }),
            )
        }
        other => return Err(Fault::method_not_found(vm_ref, other)),
    };
    let t = tasks::submit(
        site,
        inv,
        NewTask {
            entity: vm_ref.clone(),
            entity_name: vm_name,
            method,
            description_id: desc,
            user: &user.name,
        },
        task_op,
    )?;
    Ok(Reply::Values(vec![t.into()]))
}

fn query_changed(
    inv: &Inventory,
    op: &Element,
    vm_ref: &MoRef,
    user: &User,
) -> Result<Reply, Fault> {
    let vm = inv.vm(vm_ref)?;
    require(user, vm_ref, "VirtualMachine.Provisioning.DiskRandomRead")?;
    let key = op
        .child_i64("deviceKey")
        .ok_or_else(|| Fault::invalid_argument("deviceKey"))? as i32;
    let start = op.child_i64("startOffset").unwrap_or(0).max(0) as u64;
    let change_id = op
        .child_text("changeId")
        .ok_or_else(|| Fault::invalid_argument("changeId"))?;
    let disk = vm
        .disk(key)
        .ok_or_else(|| Fault::invalid_argument("deviceKey"))?;
    let ds = inv
        .datastore(&disk.datastore)
        .ok_or_else(|| Fault::not_found(&disk.datastore))?;
    let snap = match op.child("snapshot").and_then(Element::as_moref) {
        Some(s) => Some(vm.snapshot(&s).ok_or_else(|| Fault::not_found(&s))?),
        None => None,
    };
    if snap.is_none() && vm.power == Power::On {
        return Err(Fault::file_fault(
            &ds.ds_path(disk.chain.last().map(String::as_str).unwrap_or_default()),
            "a powered-on virtual machine's disk is queried through a snapshot",
        ));
    }
    if start > disk.capacity {
        return Err(Fault::invalid_argument("startOffset"));
    }
    let (file, point) = match snap {
        Some(s) => {
            let sd = s
                .disks
                .iter()
                .find(|d| d.key == key)
                .ok_or_else(|| Fault::invalid_argument("deviceKey"))?;
            (sd.file.clone(), Some(sd.change_id.clone()))
        }
        None => (disk.chain.last().cloned().unwrap_or_default(), None),
    };
    let ds_file = ds.ds_path(&file);
    let extents: Vec<(u64, u64)> = if change_id == "*" {
        let flat = Inventory::local_path(ds, &super::inventory::flat_of(&file))
            .ok_or_else(|| Fault::invalid_argument("deviceKey"))?;
        let mut set = super::cbt::ExtentSet::new();
        for (s, l) in crate::vmdk::allocated_ranges(&flat)
            .map_err(|e| Fault::file_fault(&ds_file, &e.to_string()))?
        {
            set.insert(s, l);
        }
        set.clipped(start, disk.capacity)
    } else {
        let tracker = disk
            .cbt
            .as_ref()
            .filter(|_| vm.change_tracking)
            .ok_or_else(|| {
                Fault::file_fault(&ds_file, "change tracking is not enabled for this disk")
            })?;
        let until = match point {
            // The snapshot's own change id must belong to the current tracking epoch; one
            // from before a reset cannot bound a query.
            Some(Some(id)) => Some(tracker.point_of(&id).map_err(|_| {
                Fault::file_fault(
                    &ds_file,
                    "the snapshot predates the disk's current change tracking",
                )
            })?),
            Some(None) => {
                return Err(Fault::file_fault(
                    &ds_file,
                    "the snapshot has no change tracking information",
                ));
            }
            None => None,
        };
        let set = tracker
            .changed_since(change_id, until)
            .map_err(|_| Fault::invalid_argument("changeId"))?;
        set.clipped(start, disk.capacity)
    };
    Ok(Reply::Values(vec![
        Data::new("DiskChangeInfo")
            .with("startOffset", Value::Long(start as i64))
            .with("length", Value::Long((disk.capacity - start) as i64))
            .with(
                "changedArea",
                Value::Array(
                    "DiskChangeExtent",
                    extents
                        .into_iter()
                        .map(|(s, l)| {
                            Data::new("DiskChangeExtent")
                                .with("start", Value::Long(s as i64))
                                .with("length", Value::Long(l as i64))
                                .into()
                        })
                        .collect(),
                ),
            )
            .into(),
    ]))
}
