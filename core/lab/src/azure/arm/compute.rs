//! Microsoft.Compute virtual machines: create/update/delete, power actions and instance view.

use super::disks::new_empty_disk;
use super::network::{nic_exists, nic_vm};
use super::{ArmError, ArmResult, Ctx, fail, not_found, parse_id, require_location, resource_id, tags_of};
use crate::azure::lro::{Effect, Kind, Target};
use crate::azure::state::{DataDisk, Power, ResourceGroup, State, Vm};
use axum::http::Method;
use serde_json::{Value, json};

const VM: &str = "Microsoft.Compute/virtualMachines";
const GIB: u64 = 1 << 30;

fn disk_id(sub: &str, rg: &str, name: &str) -> String {
    resource_id(sub, rg, "Microsoft.Compute/disks", name)
}

fn provisioning_code(p: &str) -> (String, &'static str, String) {
    let lc = p.to_ascii_lowercase();
    let level = if lc == "failed" { "Error" } else { "Info" };
    (format!("ProvisioningState/{lc}"), level, format!("Provisioning {lc}"))
}

fn instance_view(g: &ResourceGroup, vm: &Vm) -> Value {
    let (pcode, plevel, pdisplay) = provisioning_code(&vm.provisioning);
    let (code, display) = vm.power.code();
    let disks: Vec<Value> = std::iter::once(&vm.os_disk)
        .chain(vm.data_disks.iter().map(|d| &d.disk))
        .filter_map(|k| g.disks.get(k))
        .map(|d| json!({"name": d.name, "statuses": [{"code": "ProvisioningState/succeeded", "level": "Info", "displayStatus": "Provisioning succeeded"}]}))
        .collect();
    json!({
        "computerName": vm.name,
        "osName": if vm.os_type == "Windows" { "Windows Server 2019 Datacenter" } else { "ubuntu" },
        "disks": disks,
        "statuses": [
            {"code": pcode, "level": plevel, "displayStatus": pdisplay, "time": crate::azure::http::iso8601(crate::azure::http::unix_now())},
            {"code": code, "level": "Info", "displayStatus": display},
        ],
    })
}

pub(super) fn vm_json(sub: &str, g: &ResourceGroup, vm: &Vm, with_view: bool) -> Value {
    let os = g.disks.get(&vm.os_disk);
    let os_disk = json!({
        "osType": vm.os_type,
        "name": os.map(|d| d.name.clone()).unwrap_or_default(),
        "createOption": vm.os_disk_create,
        "caching": "ReadWrite",
        "managedDisk": {"id": os.map(|d| disk_id(sub, &g.name, &d.name)), "storageAccountType": os.map(|d| d.sku.clone())},
        "diskSizeGB": os.map(|d| d.size_bytes.div_ceil(GIB)),
        "deleteOption": "Detach",
    });
    let data: Vec<Value> = vm
        .data_disks
        .iter()
        .filter_map(|dd| g.disks.get(&dd.disk).map(|d| (dd, d)))
        .map(|(dd, d)| {
            json!({"lun": dd.lun, "name": d.name, "createOption": dd.create_option, "caching": dd.caching,
                   "managedDisk": {"id": disk_id(sub, &g.name, &d.name), "storageAccountType": d.sku},
                   "diskSizeGB": d.size_bytes.div_ceil(GIB), "toBeDetached": false, "deleteOption": "Detach"})
        })
        .collect();
    let nics: Vec<Value> = vm.nics.iter().enumerate().map(|(i, id)| json!({"id": id, "properties": {"primary": i == 0}})).collect();
    let mut props = json!({
        "vmId": vm.vm_id,
        "hardwareProfile": {"vmSize": vm.size},
        "storageProfile": {"osDisk": os_disk, "dataDisks": data},
        "networkProfile": {"networkInterfaces": nics},
        "provisioningState": vm.provisioning,
    });
    if !vm.os_profile.is_null() {
        props["osProfile"] = vm.os_profile.clone();
    }
    if with_view {
        props["instanceView"] = instance_view(g, vm);
    }
    json!({"name": vm.name, "id": resource_id(sub, &g.name, VM, &vm.name), "type": VM, "location": vm.location, "tags": vm.tags, "properties": props})
}

fn group<'a>(st: &'a State, t: &Target) -> &'a ResourceGroup {
    st.rg(&t.sub, &t.rg).expect("group checked by the router")
}

fn find<'a>(st: &'a State, t: &Target) -> Result<&'a Vm, ArmError> {
    group(st, t).vms.get(&t.name.to_ascii_lowercase()).ok_or_else(|| not_found(VM, &t.name, &t.rg))
}

fn find_mut<'a>(st: &'a mut State, t: &Target) -> &'a mut Vm {
    st.rg_mut(&t.sub, &t.rg).and_then(|g| g.vms.get_mut(&t.name.to_ascii_lowercase())).expect("found by caller")
}

pub(super) fn route(ctx: &Ctx, st: &mut State, t: &Target, rest: &[&str]) -> ArmResult {
    let expand = ctx.req.q("$expand").is_some_and(|e| e.eq_ignore_ascii_case("instanceView"));
    match (ctx.req.method.clone(), rest) {
        (Method::GET, []) => {
            let vm = find(st, t)?;
            Ok(ctx.json(200, &vm_json(&t.sub, group(st, t), vm, expand)))
        }
        (Method::GET, ["instanceview"]) => {
            let vm = find(st, t)?;
            Ok(ctx.json(200, &instance_view(group(st, t), vm)))
        }
        (Method::PUT, []) => put(ctx, st, t),
        (Method::DELETE, []) => {
            let Ok(vm) = find(st, t) else { return Ok(ctx.empty(204)) };
            let location = vm.location.clone();
            find_mut(st, t).provisioning = "Deleting".into();
            Ok(ctx.start_operation(st, &t.sub, "Microsoft.Compute", &location, Effect::Delete(Kind::Vm, t.clone()), None, 202, true, |_| None))
        }
        (Method::POST, [action]) => power(ctx, st, t, action),
        _ => Err(fail(404, "NotFound", format!("The requested operation '{}' was not found on virtual machines.", rest.join("/")))),
    }
}

fn power(ctx: &Ctx, st: &mut State, t: &Target, action: &str) -> ArmResult {
    let vm = find(st, t)?.clone();
    if vm.provisioning == "Deleting" {
        return Err(fail(409, "Conflict", format!("Operation '{action}' is not allowed since the virtual machine '{}' is being deleted.", vm.name)));
    }
    let (transitional, to) = match action {
        "start" => (Power::Starting, Power::Running),
        "poweroff" => (Power::Stopping, Power::Stopped),
        "deallocate" => (Power::Deallocating, Power::Deallocated),
        "restart" => {
            if vm.power != Power::Running {
                return Err(fail(409, "OperationNotAllowed", format!("Cannot restart virtual machine '{}' because it is not running.", vm.name)));
            }
            (Power::Starting, Power::Running)
        }
        other => return Err(fail(404, "NotFound", format!("The requested operation '{other}' was not found on virtual machines."))),
    };
    if to == Power::Running {
        let g = group(st, t);
        let with_sas = std::iter::once(&vm.os_disk).chain(vm.data_disks.iter().map(|d| &d.disk)).filter_map(|k| g.disks.get(k)).find(|d| d.access_sas.is_some());
        if let Some(d) = with_sas {
            return Err(fail(409, "OperationNotAllowed", format!("Cannot start virtual machine '{}' because disk '{}' has an active SAS. Call endGetAccess first.", vm.name, d.name)));
        }
    }
    let from = vm.power;
    let v = find_mut(st, t);
    v.power = transitional;
    v.provisioning = "Updating".into();
    let effect = Effect::VmPower { target: t.clone(), to, from };
    Ok(ctx.start_operation(st, &t.sub, "Microsoft.Compute", &vm.location, effect, None, 202, true, |_| None))
}

/// The disk a storage-profile entry refers to, created when the entry asks for it.
fn resolve_disk(st: &mut State, t: &Target, entry: &Value, default_name: String, location: &str, os_type: Option<String>, this_vm: &str) -> Result<(String, String), ArmError> {
    let option = entry["createOption"].as_str().unwrap_or("").to_string();
    match option.to_ascii_lowercase().as_str() {
        "attach" => {
            let id = entry["managedDisk"]["id"].as_str().unwrap_or_default();
            let (sub, rg, _, name) = parse_id(id).filter(|p| p.2 == "microsoft.compute/disks").ok_or_else(|| {
                fail(400, "InvalidParameter", format!("The managed disk id '{id}' is not a disk resource id."))
            })?;
            if !rg.eq_ignore_ascii_case(&t.rg) || !sub.eq_ignore_ascii_case(&t.sub) {
                return Err(fail(400, "InvalidParameter", format!("Disk '{id}' must be in the virtual machine's resource group.")));
            }
            let key = name.to_ascii_lowercase();
            let d = group(st, t).disks.get(&key).ok_or_else(|| fail(404, "NotFound", format!("Disk {name} is not found.")))?;
            if let Some(owner) = d.managed_by.as_ref().filter(|o| !o.eq_ignore_ascii_case(this_vm)) {
                return Err(fail(409, "OperationNotAllowed", format!("Disk '{name}' is already attached to VM '{owner}'.")));
            }
            if d.access_sas.is_some() || d.upload_pending {
                return Err(fail(409, "OperationNotAllowed", format!("Disk '{name}' is in state {} and cannot be attached.", d.disk_state())));
            }
            Ok((key, "Attach".into()))
        }
        "empty" | "fromimage" => {
            let gb = entry["diskSizeGB"].as_u64().unwrap_or(if option.eq_ignore_ascii_case("fromimage") { 30 } else { 0 });
            if gb == 0 {
                return Err(fail(400, "InvalidParameter", "Required parameter 'diskSizeGB' is missing (null) for an Empty data disk."));
            }
            let name = entry["name"].as_str().map(str::to_string).unwrap_or(default_name);
            let key = name.to_ascii_lowercase();
            if group(st, t).disks.contains_key(&key) {
                return Err(fail(409, "Conflict", format!("A disk named '{name}' already exists in resource group '{}'.", t.rg)));
            }
            let disk = new_empty_disk(st, &name, location, gb * GIB, os_type)?;
            st.rg_mut(&t.sub, &t.rg).expect("group checked").disks.insert(key.clone(), disk);
            Ok((key, if option.eq_ignore_ascii_case("fromimage") { "FromImage" } else { "Empty" }.into()))
        }
        _ => Err(fail(400, "InvalidParameter", format!("The value '{option}' of parameter 'createOption' is not valid."))),
    }
}

fn put(ctx: &Ctx, st: &mut State, t: &Target) -> ArmResult {
    let body = ctx.body_json()?;
    let location = require_location(&body)?;
    let props = &body["properties"];
    let vm_id_str = resource_id(&t.sub, &t.rg, VM, &t.name);
    let existing = find(st, t).ok().cloned();
    if existing.as_ref().is_some_and(|v| v.provisioning == "Deleting") {
        return Err(fail(409, "Conflict", format!("Virtual machine '{}' is being deleted.", t.name)));
    }
    let size = props["hardwareProfile"]["vmSize"].as_str().map(str::to_string).or_else(|| existing.as_ref().map(|v| v.size.clone()));
    let Some(size) = size else {
        return Err(fail(400, "InvalidParameter", "Required parameter 'hardwareProfile.vmSize' is missing (null)."));
    };
    let nics: Vec<String> = props["networkProfile"]["networkInterfaces"]
        .as_array()
        .map(|a| a.iter().filter_map(|n| n["id"].as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    if nics.is_empty() {
        return Err(fail(400, "InvalidParameter", "Required parameter 'networkProfile' is missing (null)."));
    }
    for n in &nics {
        if !nic_exists(st, n) {
            return Err(fail(404, "NotFound", format!("Resource {n} not found.")));
        }
        if let Some(owner) = nic_vm(st, &t.sub, n).filter(|o| !o.eq_ignore_ascii_case(&vm_id_str)) {
            return Err(fail(400, "NicInUse", format!("Network Interface {n} is used by existing resource {owner}.")));
        }
    }
    let os_entry = &props["storageProfile"]["osDisk"];
    let os_type = os_entry["osType"].as_str().map(str::to_string).or_else(|| existing.as_ref().map(|v| v.os_type.clone())).unwrap_or_else(|| "Linux".into());
    let (os_disk, os_disk_create) = match &existing {
        Some(v) => {
            let asked = os_entry["managedDisk"]["id"].as_str();
            if asked.is_some_and(|id| !id.eq_ignore_ascii_case(&disk_id(&t.sub, &t.rg, &group(st, t).disks.get(&v.os_disk).map(|d| d.name.clone()).unwrap_or_default()))) {
                return Err(fail(409, "PropertyChangeNotAllowed", "Changing property 'osDisk.managedDisk.id' is not allowed."));
            }
            (v.os_disk.clone(), v.os_disk_create.clone())
        }
        None => {
            if os_entry.is_null() {
                return Err(fail(400, "InvalidParameter", "Required parameter 'storageProfile.osDisk' is missing (null)."));
            }
            if os_entry["createOption"].as_str().is_some_and(|o| o.eq_ignore_ascii_case("empty")) {
                return Err(fail(400, "InvalidParameter", "The value 'Empty' of parameter 'osDisk.createOption' is not allowed; use FromImage or Attach."));
            }
            let default = format!("{}_OsDisk_1_{}", t.name, uuid::Uuid::new_v4().simple());
            resolve_disk(st, t, os_entry, default, &location, Some(os_type.clone()), &vm_id_str)?
        }
    };
    let mut data_disks = Vec::new();
    let entries = props["storageProfile"]["dataDisks"].as_array().cloned();
    let entries = match (entries, &existing) {
        (Some(e), _) => e,
        (None, Some(v)) => {
            data_disks = v.data_disks.clone();
            Vec::new()
        }
        (None, None) => Vec::new(),
    };
    for e in &entries {
        let Some(lun) = e["lun"].as_u64().map(|l| l as u32) else {
            return Err(fail(400, "InvalidParameter", "Required parameter 'dataDisk.lun' is missing (null)."));
        };
        if data_disks.iter().any(|d: &DataDisk| d.lun == lun) {
            return Err(fail(400, "InvalidParameter", format!("Data disks with duplicate LUN {lun} are specified.")));
        }
        let keep = existing.as_ref().and_then(|v| v.data_disks.iter().find(|d| d.lun == lun)).filter(|d| {
            e["managedDisk"]["id"].as_str().is_none_or(|id| parse_id(id).is_some_and(|p| p.3.eq_ignore_ascii_case(&d.disk)))
        });
        let (disk, create_option) = match keep {
            Some(d) => (d.disk.clone(), d.create_option.clone()),
            None => resolve_disk(st, t, e, format!("{}_disk{}_{}", t.name, lun, uuid::Uuid::new_v4().simple()), &location, None, &vm_id_str)?,
        };
        data_disks.push(DataDisk { lun, disk, create_option, caching: e["caching"].as_str().unwrap_or("None").to_string() });
    }
    // Detach what the new profile no longer lists, attach what it does.
    let g = st.rg_mut(&t.sub, &t.rg).expect("group checked");
    if let Some(v) = &existing {
        for old in &v.data_disks {
            if let Some(d) = g.disks.get_mut(&old.disk).filter(|_| !data_disks.iter().any(|d| d.disk == old.disk)) {
                d.managed_by = None;
            }
        }
    }
    for key in std::iter::once(&os_disk).chain(data_disks.iter().map(|d| &d.disk)) {
        if let Some(d) = g.disks.get_mut(key) {
            d.managed_by = Some(vm_id_str.clone());
        }
    }
    let created = existing.is_none();
    let vm = Vm {
        name: existing.as_ref().map(|v| v.name.clone()).unwrap_or_else(|| t.name.clone()),
        location: location.clone(),
        tags: if body.get("tags").is_some() { tags_of(&body) } else { existing.as_ref().map(|v| v.tags.clone()).unwrap_or_else(|| json!({})) },
        vm_id: existing.as_ref().map(|v| v.vm_id.clone()).unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        size,
        os_type,
        os_disk,
        os_disk_create,
        data_disks,
        nics,
        power: existing.as_ref().map(|v| v.power).unwrap_or(Power::Starting),
        provisioning: if created { "Creating" } else { "Updating" }.into(),
        os_profile: props.get("osProfile").cloned().map(strip_secrets).or_else(|| existing.as_ref().map(|v| v.os_profile.clone())).unwrap_or(Value::Null),
    };
    g.vms.insert(t.name.to_ascii_lowercase(), vm);
    Ok(ctx.start_operation(st, &t.sub, "Microsoft.Compute", &location, Effect::Provisioned(Kind::Vm, t.clone()), None, if created { 201 } else { 200 }, false, |st| {
        let g = group(st, t);
        g.vms.get(&t.name.to_ascii_lowercase()).map(|vm| vm_json(&t.sub, g, vm, false))
    }))
}

/// Azure never echoes passwords back.
fn strip_secrets(mut os_profile: Value) -> Value {
    if let Some(o) = os_profile.as_object_mut() {
        o.remove("adminPassword");
        o.remove("customData");
    }
    os_profile
}

/// Completes a VM deletion: the VM disappears and its disks are detached (kept).
pub(super) fn apply_delete(st: &mut State, t: &Target, ok: bool) {
    let Some(g) = st.rg_mut(&t.sub, &t.rg) else { return };
    let key = t.name.to_ascii_lowercase();
    if !ok {
        if let Some(v) = g.vms.get_mut(&key) {
            v.provisioning = "Failed".into();
        }
        return;
    }
    let Some(vm) = g.vms.remove(&key) else { return };
    for k in std::iter::once(&vm.os_disk).chain(vm.data_disks.iter().map(|d| &d.disk)) {
        if let Some(d) = g.disks.get_mut(k) {
            d.managed_by = None;
        }
    }
}
