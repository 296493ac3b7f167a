//! Microsoft.Compute disks and snapshots, and SAS access to their page blobs
//! (`beginGetAccess` / `endGetAccess`).

use super::{ArmError, ArmResult, Ctx, fail, not_found, parse_id, require_location, resource_id, tags_of};
use crate::azure::blob::sas::{SasParams, canonical_blob};
use crate::azure::blob::store::{BlobRef, PAGE};
use crate::azure::http::{iso8601, parse_query, unix_now};
use crate::azure::lro::{Effect, Kind, Target};
use crate::azure::state::{Disk, MD_CONTAINER, State};
use crate::vhd::{FOOTER_SIZE, VhdFooter};
use axum::http::Method;
use serde_json::{Value, json};

const GIB: u64 = 1 << 30;

fn type_name(kind: Kind) -> &'static str {
    if kind == Kind::Snapshot { "Microsoft.Compute/snapshots" } else { "Microsoft.Compute/disks" }
}

pub(crate) fn disk_json(sub: &str, rg: &str, d: &Disk, kind: Kind) -> Value {
    let mut props = json!({
        "creationData": d.creation,
        "diskSizeGB": d.size_bytes.div_ceil(GIB),
        "diskSizeBytes": d.size_bytes,
        "uniqueId": d.unique_id,
        "timeCreated": d.time_created,
        "provisioningState": d.provisioning,
        "encryption": {"type": "EncryptionAtRestWithPlatformKey"},
        "networkAccessPolicy": "AllowAll",
        "publicNetworkAccess": "Enabled",
    });
    if let Some(os) = &d.os_type {
        props["osType"] = json!(os);
    }
    if kind == Kind::Snapshot {
        props["incremental"] = json!(d.incremental);
        props["diskState"] = json!(if d.access_sas.is_some() { "ActiveSAS" } else { "Unattached" });
    } else {
        props["diskState"] = json!(d.disk_state());
    }
    let mut v = json!({
        "name": d.name, "id": resource_id(sub, rg, type_name(kind), &d.name), "type": type_name(kind),
        "location": d.location, "tags": d.tags,
        "sku": {"name": d.sku, "tier": d.sku.split('_').next().unwrap_or("Standard")},
        "properties": props,
    });
    if let Some(m) = &d.managed_by {
        v["managedBy"] = json!(m);
    }
    v
}

fn map_mut<'a>(st: &'a mut State, kind: Kind, t: &Target) -> Option<&'a mut std::collections::BTreeMap<String, Disk>> {
    let g = st.rg_mut(&t.sub, &t.rg)?;
    Some(if kind == Kind::Snapshot { &mut g.snapshots } else { &mut g.disks })
}

/// The disk or snapshot `t`, mutable.
pub(crate) fn disk_mut<'a>(st: &'a mut State, kind: Kind, t: &Target) -> Option<&'a mut Disk> {
    map_mut(st, kind, t)?.get_mut(&t.name.to_ascii_lowercase())
}

fn find<'a>(st: &'a State, kind: Kind, t: &Target) -> Result<&'a Disk, ArmError> {
    let g = st.rg(&t.sub, &t.rg).expect("group checked by the router");
    let map = if kind == Kind::Snapshot { &g.snapshots } else { &g.disks };
    map.get(&t.name.to_ascii_lowercase()).ok_or_else(|| not_found(type_name(kind), &t.name, &t.rg))
}

/// A new empty managed disk of `size` bytes backed by a fresh fixed-VHD page blob.
pub(crate) fn new_empty_disk(st: &mut State, name: &str, location: &str, size: u64, os_type: Option<String>) -> Result<Disk, ArmError> {
    let blob = BlobRef::new(&st.md_account.clone(), MD_CONTAINER, &format!("abcd{}", uuid::Uuid::new_v4().simple()));
    st.create_vhd_blob(&blob, size).map_err(|f| fail(500, "InternalDiskManagementError", f.message))?;
    Ok(Disk {
        name: name.into(),
        location: location.into(),
        tags: json!({}),
        sku: "Premium_LRS".into(),
        size_bytes: size,
        blob,
        managed_by: None,
        access_sas: None,
        provisioning: "Succeeded".into(),
        creation: json!({"createOption": "Empty"}),
        unique_id: uuid::Uuid::new_v4().to_string(),
        time_created: iso8601(unix_now()),
        os_type,
        incremental: false,
        upload_pending: false,
    })
}

/// Resolves a `sourceResourceId` to the disk or snapshot it names.
fn source_disk(st: &State, id: &str) -> Result<Disk, ArmError> {
    let missing = || fail(404, "NotFound", format!("Resource {id} is not found."));
    let (sub, rg, ty, name) = parse_id(id).ok_or_else(missing)?;
    let g = st.rg(&sub, &rg).ok_or_else(missing)?;
    let map = match ty.as_str() {
        "microsoft.compute/disks" => &g.disks,
        "microsoft.compute/snapshots" => &g.snapshots,
        _ => return Err(fail(400, "InvalidParameter", format!("The source resource '{id}' must be a disk or a snapshot."))),
    };
    map.get(&name.to_ascii_lowercase()).cloned().ok_or_else(missing)
}

/// Parses a lab blob URL (`http://host:port/{account}/{container}/{blob}[?...]`).
fn blob_from_uri(uri: &str) -> Option<BlobRef> {
    let after_scheme = uri.split_once("://")?.1;
    let path = after_scheme.split_once('/')?.1.split('?').next()?;
    let mut parts = path.splitn(3, '/');
    let (a, c, b) = (parts.next()?, parts.next()?, parts.next()?);
    Some(BlobRef::new(&crate::azure::http::decode(a), &crate::azure::http::decode(c), &crate::azure::http::decode(b)))
}

pub(super) fn route(ctx: &Ctx, st: &mut State, kind: Kind, t: &Target, rest: &[&str]) -> ArmResult {
    match (ctx.req.method.clone(), rest) {
        (Method::GET, []) => Ok(ctx.json(200, &disk_json(&t.sub, &t.rg, find(st, kind, t)?, kind))),
        (Method::PUT, []) => put(ctx, st, kind, t),
        (Method::PATCH, []) => {
            let body = ctx.body_json()?;
            find(st, kind, t)?;
            let d = disk_mut(st, kind, t).expect("found above");
            if body.get("tags").is_some() {
                d.tags = tags_of(&body);
            }
            Ok(ctx.json(200, &disk_json(&t.sub, &t.rg, d, kind)))
        }
        (Method::DELETE, []) => delete(ctx, st, kind, t),
        (Method::POST, ["begingetaccess"]) => begin_get_access(ctx, st, kind, t),
        (Method::POST, ["endgetaccess"]) => {
            let d = find(st, kind, t)?;
            let location = d.location.clone();
            Ok(ctx.start_operation(st, &t.sub, "Microsoft.Compute", &location, Effect::RevokeAccess(kind, t.clone()), None, 202, true, |_| None))
        }
        _ => Err(fail(404, "NotFound", format!("The requested operation '{}' was not found on {}.", rest.join("/"), type_name(kind)))),
    }
}

fn put(ctx: &Ctx, st: &mut State, kind: Kind, t: &Target) -> ArmResult {
    let body = ctx.body_json()?;
    let location = require_location(&body)?;
    let props = body.get("properties").cloned().unwrap_or_else(|| json!({}));
    if let Ok(existing) = find(st, kind, t) {
        let wanted = props["diskSizeGB"].as_u64().map(|g| g * GIB);
        if wanted.is_some_and(|w| w != existing.size_bytes && w.div_ceil(GIB) != existing.size_bytes.div_ceil(GIB)) {
            return Err(fail(409, "OperationNotAllowed", format!("Changing the size of {} '{}' is not supported by this site.", type_name(kind), t.name)));
        }
        let d = disk_mut(st, kind, t).expect("found above");
        if body.get("tags").is_some() {
            d.tags = tags_of(&body);
        }
        let location = d.location.clone();
        return Ok(ctx.start_operation(st, &t.sub, "Microsoft.Compute", &location, Effect::Provisioned(kind, t.clone()), None, 200, true, |st| {
            find(st, kind, t).ok().map(|d| disk_json(&t.sub, &t.rg, d, kind))
        }));
    }
    let creation = props.get("creationData").cloned().unwrap_or_else(|| json!({}));
    let option = creation["createOption"].as_str().unwrap_or("").to_string();
    let os_type = props["osType"].as_str().map(str::to_string);
    let mut disk = match (kind, option.to_ascii_lowercase().as_str()) {
        (Kind::Disk, "empty") => {
            let gb = props["diskSizeGB"].as_u64().filter(|g| *g > 0).ok_or_else(|| {
                fail(400, "InvalidParameter", "Required parameter 'diskSizeGB' is missing (null) or zero for createOption Empty.")
            })?;
            new_empty_disk(st, &t.name, &location, gb * GIB, os_type)?
        }
        (Kind::Disk, "upload") => {
            let bytes = props["creationData"]["uploadSizeBytes"].as_u64().unwrap_or(0);
            if bytes < PAGE * 2 || bytes % PAGE != 0 {
                return Err(fail(400, "InvalidParameter", "uploadSizeBytes must be a multiple of 512 that includes the 512-byte VHD footer."));
            }
            let blob = BlobRef::new(&st.md_account.clone(), MD_CONTAINER, &format!("abcd{}", uuid::Uuid::new_v4().simple()));
            st.blobs.ensure_container(&blob.account, &blob.container);
            st.blobs.create_page_blob(&blob, bytes, "application/octet-stream").map_err(|f| fail(500, "InternalDiskManagementError", f.message))?;
            let mut d = new_empty_disk_record(&t.name, &location, bytes - PAGE, blob, os_type);
            d.upload_pending = true;
            d
        }
        (_, "copy") => {
            let src_id = creation["sourceResourceId"].as_str().unwrap_or_default();
            let src = source_disk(st, src_id)?;
            let incremental = kind == Kind::Snapshot && props["incremental"].as_bool().unwrap_or(false);
            if incremental && !src.incremental && !source_is_disk(src_id) {
                return Err(fail(400, "InvalidParameter", "An incremental snapshot can only be taken from a managed disk or another incremental snapshot."));
            }
            let live = st.blobs.get(&src.blob, None).map_err(|f| fail(404, "NotFound", f.message))?.clone();
            let copy = st.blobs.frozen_copy(&live, !incremental).map_err(|f| fail(500, "InternalDiskManagementError", f.message))?;
            let blob = BlobRef::new(&st.md_account.clone(), MD_CONTAINER, &format!("abcd{}", uuid::Uuid::new_v4().simple()));
            st.blobs.insert_blob(&blob, copy, kind == Kind::Snapshot).map_err(|f| fail(500, "InternalDiskManagementError", f.message))?;
            let mut d = new_empty_disk_record(&t.name, &location, src.size_bytes, blob, os_type.or(src.os_type.clone()));
            d.incremental = incremental;
            d.creation = json!({"createOption": "Copy", "sourceResourceId": src_id, "sourceUniqueId": src.unique_id});
            d
        }
        (Kind::Disk, "import") => {
            let uri = creation["sourceUri"].as_str().unwrap_or_default();
            let src = blob_from_uri(uri).ok_or_else(|| fail(400, "InvalidParameter", format!("The sourceUri '{uri}' is not a blob URL.")))?;
            let live = st.blobs.get(&src, None).map_err(|_| fail(400, "InvalidParameter", format!("The source blob '{uri}' does not exist.")))?.clone();
            let footer = st.blobs.read(&src, None, live.size - FOOTER_SIZE as u64, FOOTER_SIZE as u64).map_err(|f| fail(400, "InvalidParameter", f.message))?;
            VhdFooter::parse(&footer).map_err(|e| fail(400, "InvalidParameter", format!("The source blob '{uri}' is not a fixed VHD: {e}.")))?;
            let copy = st.blobs.frozen_copy(&live, true).map_err(|f| fail(500, "InternalDiskManagementError", f.message))?;
            let blob = BlobRef::new(&st.md_account.clone(), MD_CONTAINER, &format!("abcd{}", uuid::Uuid::new_v4().simple()));
            st.blobs.insert_blob(&blob, copy, false).map_err(|f| fail(500, "InternalDiskManagementError", f.message))?;
            new_empty_disk_record(&t.name, &location, live.size - PAGE, blob, os_type)
        }
        (_, other) => {
            return Err(fail(400, "InvalidParameter", format!("The value '{other}' of parameter 'creationData.createOption' is not supported for {}.", type_name(kind))));
        }
    };
    if disk.creation["createOption"].as_str() != Some("Copy") {
        disk.creation = creation;
    }
    disk.tags = tags_of(&body);
    if let Some(sku) = body["sku"]["name"].as_str() {
        disk.sku = sku.to_string();
    }
    disk.provisioning = "Updating".into();
    map_mut(st, kind, t).expect("group checked").insert(t.name.to_ascii_lowercase(), disk);
    Ok(ctx.start_operation(st, &t.sub, "Microsoft.Compute", &location, Effect::Provisioned(kind, t.clone()), None, 202, true, |st| {
        find(st, kind, t).ok().map(|d| disk_json(&t.sub, &t.rg, d, kind))
    }))
}

fn source_is_disk(id: &str) -> bool {
    parse_id(id).is_some_and(|(_, _, ty, _)| ty == "microsoft.compute/disks")
}

fn new_empty_disk_record(name: &str, location: &str, size: u64, blob: BlobRef, os_type: Option<String>) -> Disk {
    Disk {
        name: name.into(),
        location: location.into(),
        tags: json!({}),
        sku: "Premium_LRS".into(),
        size_bytes: size,
        blob,
        managed_by: None,
        access_sas: None,
        provisioning: "Succeeded".into(),
        creation: json!({}),
        unique_id: uuid::Uuid::new_v4().to_string(),
        time_created: iso8601(unix_now()),
        os_type,
        incremental: false,
        upload_pending: false,
    }
}

fn delete(ctx: &Ctx, st: &mut State, kind: Kind, t: &Target) -> ArmResult {
    let Ok(d) = find(st, kind, t) else { return Ok(ctx.empty(204)) };
    if let Some(vm) = &d.managed_by {
        return Err(fail(409, "OperationNotAllowed", format!("Disk {} is attached to VM {vm}.", d.name)));
    }
    if d.access_sas.is_some() {
        return Err(fail(409, "OperationNotAllowed", format!("{} {} has an active SAS; call endGetAccess first.", type_name(kind), d.name)));
    }
    let location = d.location.clone();
    disk_mut(st, kind, t).expect("found above").provisioning = "Deleting".into();
    Ok(ctx.start_operation(st, &t.sub, "Microsoft.Compute", &location, Effect::Delete(kind, t.clone()), None, 202, true, |_| None))
}

fn begin_get_access(ctx: &Ctx, st: &mut State, kind: Kind, t: &Target) -> ArmResult {
    let body = ctx.body_json()?;
    let access = body["access"].as_str().unwrap_or("");
    let perms = match access.to_ascii_lowercase().as_str() {
        "read" => "r",
        "write" => "rw",
        _ => return Err(fail(400, "InvalidParameter", format!("The value '{access}' of parameter 'access' is invalid; use Read or Write."))),
    };
    let duration = body["durationInSeconds"].as_u64().filter(|d| *d > 0).ok_or_else(|| {
        fail(400, "InvalidParameter", "Required parameter 'durationInSeconds' is missing (null).")
    })?;
    let d = find(st, kind, t)?.clone();
    if let Some(vm_id) = &d.managed_by {
        let deallocated = parse_id(vm_id)
            .and_then(|(s, r, _, n)| st.rg(&s, &r).and_then(|g| g.vms.get(&n.to_ascii_lowercase())).map(|vm| vm.power))
            .is_some_and(|p| p == crate::azure::state::Power::Deallocated);
        if !deallocated {
            return Err(fail(409, "OperationNotAllowed", format!("Unable to grant access to disk {} because it is attached to VM {vm_id}, which is not deallocated.", d.name)));
        }
    }
    if perms == "rw" && kind == Kind::Snapshot {
        return Err(fail(409, "OperationNotAllowed", format!("Snapshot {} is read-only; only Read access can be granted.", d.name)));
    }
    if d.upload_pending != (perms == "rw") {
        return Err(fail(409, "OperationNotAllowed", format!(
            "Disk {} is in state {}; {} access is not allowed.", d.name, d.disk_state(), access
        )));
    }
    if perms == "rw" && d.managed_by.is_some() {
        return Err(fail(409, "OperationNotAllowed", format!("Write access to disk {} requires it to be unattached.", d.name)));
    }
    let key = st.blobs.accounts.get(&d.blob.account).map(|a| a.key.clone()).unwrap_or_default();
    let query = SasParams::blob(perms, unix_now() + duration).to_query(&key, &canonical_blob(&d.blob.account, &d.blob.container, &d.blob.blob));
    let url = format!("{}/{}/{}/{}?{query}", ctx.shared.endpoints.blob, d.blob.account, d.blob.container, d.blob.blob);
    let result = json!({ "accessSAS": url });
    let effect = Effect::GrantAccess(kind, t.clone(), url);
    Ok(ctx.start_operation(st, &t.sub, "Microsoft.Compute", &d.location, effect, Some(result), 202, true, |_| None))
}

/// Whether a SAS signature is the current grant of the managed disk or snapshot behind
/// `blob`; revoked (`endGetAccess`) or superseded grants stop working, as on Azure.
pub(crate) fn md_sas_active(st: &State, blob: &BlobRef, sig: &str) -> bool {
    st.subs.values().flat_map(|s| s.rgs.values()).flat_map(|g| g.disks.values().chain(g.snapshots.values())).any(|d| {
        d.blob == *blob
            && d.access_sas.as_deref().is_some_and(|url| {
                let q = url.split_once('?').map(|(_, q)| q).unwrap_or("");
                parse_query(q).iter().any(|(k, v)| k == "sig" && v == sig)
            })
    })
}

/// Completes a disk or snapshot deletion, freeing its page blob.
pub(super) fn apply_delete(st: &mut State, kind: Kind, t: &Target, ok: bool) {
    let key = t.name.to_ascii_lowercase();
    let Some(map) = map_mut(st, kind, t) else { return };
    if !ok {
        if let Some(d) = map.get_mut(&key) {
            d.provisioning = "Succeeded".into();
        }
        return;
    }
    if let Some(d) = map.remove(&key) {
        let _ = st.blobs.delete_blob(&d.blob);
    }
}
