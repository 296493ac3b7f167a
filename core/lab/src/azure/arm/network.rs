//! Microsoft.Network: virtual networks with subnets, and network interfaces.

use super::{ArmResult, Ctx, fail, not_found, parse_id, require_location, resource_id, tags_of};
use crate::azure::lro::{Effect, Kind, Target};
use crate::azure::state::{Generic, State};
use axum::http::Method;
use serde_json::{Value, json};

const VNET: &str = "Microsoft.Network/virtualNetworks";
const NIC: &str = "Microsoft.Network/networkInterfaces";

fn etag() -> String {
    format!("W/\"{}\"", uuid::Uuid::new_v4())
}

pub(super) fn vnet_json(sub: &str, rg: &str, g: &Generic) -> Value {
    let id = resource_id(sub, rg, VNET, &g.name);
    let mut props = g.properties.clone();
    props["provisioningState"] = json!(g.provisioning);
    if let Some(subnets) = props.get_mut("subnets").and_then(Value::as_array_mut) {
        for s in subnets {
            let name = s.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
            s["id"] = json!(format!("{id}/subnets/{name}"));
            s["type"] = json!("Microsoft.Network/virtualNetworks/subnets");
        }
    }
    json!({"name": g.name, "id": id, "etag": g.etag, "type": VNET, "location": g.location, "tags": g.tags, "properties": props})
}

/// The VM (id) a NIC is attached to, found by scanning the subscription's VMs.
fn nic_owner(st: &State, sub: &str, nic_id: &str) -> Option<String> {
    let s = st.sub(sub)?;
    s.rgs.values().find_map(|g| {
        g.vms.values().find(|vm| vm.nics.iter().any(|n| n.eq_ignore_ascii_case(nic_id))).map(|vm| {
            resource_id(&s.id, &g.name, "Microsoft.Compute/virtualMachines", &vm.name)
        })
    })
}

pub(super) fn nic_json(st: &State, sub: &str, rg: &str, g: &Generic) -> Value {
    let id = resource_id(sub, rg, NIC, &g.name);
    let mut props = g.properties.clone();
    props["provisioningState"] = json!(g.provisioning);
    if let Some(vm) = nic_owner(st, sub, &id) {
        props["virtualMachine"] = json!({ "id": vm });
    }
    json!({"name": g.name, "id": id, "etag": g.etag, "type": NIC, "location": g.location, "tags": g.tags, "properties": props})
}

/// Subnet ids referenced by NICs anywhere in the subscription.
fn subnets_in_use(st: &State, sub: &str) -> Vec<String> {
    let Some(s) = st.sub(sub) else { return Vec::new() };
    s.rgs
        .values()
        .flat_map(|g| g.nics.values())
        .flat_map(|n| n.properties["ipConfigurations"].as_array().cloned().unwrap_or_default())
        .filter_map(|c| c["properties"]["subnet"]["id"].as_str().map(str::to_ascii_lowercase))
        .collect()
}

pub(super) fn route_vnet(ctx: &Ctx, st: &mut State, t: &Target, rest: &[String]) -> ArmResult {
    match rest {
        [] => vnet(ctx, st, t),
        [sub] if sub.eq_ignore_ascii_case("subnets") => {
            let g = find(st, t, Kind::VirtualNetwork)?;
            let value = vnet_json(&t.sub, &t.rg, g)["properties"]["subnets"].clone();
            Ok(ctx.json(200, &json!({ "value": value })))
        }
        [sub, name] if sub.eq_ignore_ascii_case("subnets") => subnet(ctx, st, t, name),
        _ => Err(fail(400, "InvalidRequestUri", format!("The request uri '{}' is invalid.", ctx.req.raw_path))),
    }
}

fn find<'a>(st: &'a State, t: &Target, kind: Kind) -> Result<&'a Generic, super::ArmError> {
    let g = st.rg(&t.sub, &t.rg).expect("group checked by the router");
    let (map, ty) = if kind == Kind::VirtualNetwork { (&g.vnets, VNET) } else { (&g.nics, NIC) };
    map.get(&t.name.to_ascii_lowercase()).ok_or_else(|| not_found(ty, &t.name, &t.rg))
}

fn find_mut<'a>(st: &'a mut State, t: &Target, kind: Kind) -> Option<&'a mut Generic> {
    let g = st.rg_mut(&t.sub, &t.rg)?;
    let map = if kind == Kind::VirtualNetwork { &mut g.vnets } else { &mut g.nics };
    map.get_mut(&t.name.to_ascii_lowercase())
}

fn normalize_subnets(props: &mut Value) -> Result<(), super::ArmError> {
    let Some(subnets) = props.get_mut("subnets") else {
        props["subnets"] = json!([]);
        return Ok(());
    };
    let Some(list) = subnets.as_array_mut() else {
        return Err(fail(400, "InvalidRequestFormat", "Cannot parse the request: 'subnets' must be an array."));
    };
    for s in list {
        if s.get("name").and_then(Value::as_str).is_none_or(str::is_empty) {
            return Err(fail(400, "InvalidRequestFormat", "Cannot parse the request: every subnet needs a name."));
        }
        if s["properties"]["addressPrefix"].as_str().is_none() && s["properties"]["addressPrefixes"].as_array().is_none() {
            return Err(fail(400, "InvalidRequestFormat", "Cannot parse the request: every subnet needs an addressPrefix."));
        }
        s["etag"] = json!(etag());
        s["properties"]["provisioningState"] = json!("Succeeded");
    }
    Ok(())
}

fn vnet(ctx: &Ctx, st: &mut State, t: &Target) -> ArmResult {
    match ctx.req.method {
        Method::GET => Ok(ctx.json(200, &vnet_json(&t.sub, &t.rg, find(st, t, Kind::VirtualNetwork)?))),
        Method::PUT => {
            let body = ctx.body_json()?;
            let location = require_location(&body)?;
            let mut props = body.get("properties").cloned().unwrap_or_else(|| json!({}));
            if props["addressSpace"]["addressPrefixes"].as_array().is_none_or(Vec::is_empty) {
                return Err(fail(400, "InvalidAddressSpace", "The virtual network must have an address space with at least one address prefix."));
            }
            normalize_subnets(&mut props)?;
            props["resourceGuid"] = json!(uuid::Uuid::new_v4().to_string());
            let existed = find(st, t, Kind::VirtualNetwork).is_ok();
            let g = Generic { name: t.name.clone(), location: location.clone(), tags: tags_of(&body), properties: props, provisioning: "Updating".into(), etag: etag() };
            st.rg_mut(&t.sub, &t.rg).expect("group checked").vnets.insert(t.name.to_ascii_lowercase(), g);
            let effect = Effect::Provisioned(Kind::VirtualNetwork, t.clone());
            Ok(ctx.start_operation(st, &t.sub, "Microsoft.Network", &location, effect, None, if existed { 200 } else { 201 }, false, |st| {
                find(st, t, Kind::VirtualNetwork).ok().map(|g| vnet_json(&t.sub, &t.rg, g))
            }))
        }
        Method::DELETE => {
            let Ok(g) = find(st, t, Kind::VirtualNetwork) else { return Ok(ctx.empty(204)) };
            let prefix = format!("{}/subnets/", resource_id(&t.sub, &t.rg, VNET, &g.name)).to_ascii_lowercase();
            if let Some(used) = subnets_in_use(st, &t.sub).iter().find(|s| s.starts_with(&prefix)) {
                return Err(fail(400, "InUseSubnetCannotBeDeleted", format!("Subnet {used} is in use and cannot be deleted. In order to delete the subnet, delete all the resources within the subnet.")));
            }
            delete(ctx, st, t, Kind::VirtualNetwork)
        }
        _ => Err(fail(405, "MethodNotAllowed", "The requested method is not allowed.")),
    }
}

fn delete(ctx: &Ctx, st: &mut State, t: &Target, kind: Kind) -> ArmResult {
    let g = find_mut(st, t, kind).expect("found by caller");
    g.provisioning = "Deleting".into();
    let location = g.location.clone();
    Ok(ctx.start_operation(st, &t.sub, "Microsoft.Network", &location, Effect::Delete(kind, t.clone()), None, 202, true, |_| None))
}

fn subnet(ctx: &Ctx, st: &mut State, t: &Target, name: &str) -> ArmResult {
    let vnet_id = resource_id(&t.sub, &t.rg, VNET, &t.name);
    let g = find(st, t, Kind::VirtualNetwork)?;
    let subnets = g.properties["subnets"].as_array().cloned().unwrap_or_default();
    let pos = subnets.iter().position(|s| s["name"].as_str().is_some_and(|n| n.eq_ignore_ascii_case(name)));
    let render = |st: &State| {
        find(st, t, Kind::VirtualNetwork).ok().and_then(|g| {
            vnet_json(&t.sub, &t.rg, g)["properties"]["subnets"]
                .as_array()
                .and_then(|a| a.iter().find(|s| s["name"].as_str().is_some_and(|n| n.eq_ignore_ascii_case(name))).cloned())
        })
    };
    match ctx.req.method {
        Method::GET => {
            let _ = pos.ok_or_else(|| not_found("Microsoft.Network/virtualNetworks/subnets", &format!("{}/{name}", t.name), &t.rg))?;
            Ok(ctx.json(200, &render(st).unwrap_or_default()))
        }
        Method::PUT => {
            let body = ctx.body_json()?;
            let mut entry = json!([{ "name": name, "properties": body.get("properties").cloned().unwrap_or_else(|| json!({})) }]);
            let mut wrapper = json!({ "subnets": entry.take() });
            normalize_subnets(&mut wrapper)?;
            let new = wrapper["subnets"][0].clone();
            let g = find_mut(st, t, Kind::VirtualNetwork).expect("found above");
            let list = g.properties["subnets"].as_array_mut().expect("normalized on create");
            match pos {
                Some(i) => list[i] = new,
                None => list.push(new),
            }
            let location = g.location.clone();
            let effect = Effect::Provisioned(Kind::VirtualNetwork, t.clone());
            Ok(ctx.start_operation(st, &t.sub, "Microsoft.Network", &location, effect, None, if pos.is_some() { 200 } else { 201 }, false, render))
        }
        Method::DELETE => {
            let Some(i) = pos else { return Ok(ctx.empty(204)) };
            let id = format!("{vnet_id}/subnets/{name}").to_ascii_lowercase();
            if subnets_in_use(st, &t.sub).contains(&id) {
                return Err(fail(400, "InUseSubnetCannotBeDeleted", format!("Subnet {name} is in use by a network interface and cannot be deleted.")));
            }
            let g = find_mut(st, t, Kind::VirtualNetwork).expect("found above");
            g.properties["subnets"].as_array_mut().expect("normalized").remove(i);
            let location = g.location.clone();
            let effect = Effect::Provisioned(Kind::VirtualNetwork, t.clone());
            Ok(ctx.start_operation(st, &t.sub, "Microsoft.Network", &location, effect, None, 202, true, |_| None))
        }
        _ => Err(fail(405, "MethodNotAllowed", "The requested method is not allowed.")),
    }
}

/// Looks up a subnet by id; returns its address prefix.
fn subnet_prefix(st: &State, subnet_id: &str) -> Option<String> {
    let (vnet_part, subnet_name) = subnet_id.rsplit_once("/subnets/")?;
    let (sub, rg, ty, vnet) = parse_id(vnet_part)?;
    if ty != VNET.to_ascii_lowercase() {
        return None;
    }
    let g = st.rg(&sub, &rg)?.vnets.get(&vnet.to_ascii_lowercase())?;
    g.properties["subnets"].as_array()?.iter().find_map(|s| {
        s["name"].as_str().filter(|n| n.eq_ignore_ascii_case(subnet_name))?;
        s["properties"]["addressPrefix"].as_str().map(str::to_string).or_else(|| Some(String::new()))
    })
}

pub(super) fn route_nic(ctx: &Ctx, st: &mut State, t: &Target) -> ArmResult {
    match ctx.req.method {
        Method::GET => Ok(ctx.json(200, &nic_json(st, &t.sub, &t.rg, find(st, t, Kind::NetworkInterface)?))),
        Method::PUT => {
            let body = ctx.body_json()?;
            let location = require_location(&body)?;
            let mut props = body.get("properties").cloned().unwrap_or_else(|| json!({}));
            let nic_id = resource_id(&t.sub, &t.rg, NIC, &t.name);
            let count = st.sub(&t.sub).map(|s| s.rgs.values().map(|g| g.nics.len()).sum::<usize>()).unwrap_or(0);
            let Some(configs) = props.get_mut("ipConfigurations").and_then(Value::as_array_mut).filter(|a| !a.is_empty()) else {
                return Err(fail(400, "InvalidRequestFormat", "Cannot parse the request: a network interface needs at least one IP configuration."));
            };
            for (i, c) in configs.iter_mut().enumerate() {
                let subnet_id = c["properties"]["subnet"]["id"].as_str().unwrap_or_default().to_string();
                let Some(prefix) = subnet_prefix(st, &subnet_id) else {
                    return Err(fail(400, "InvalidResourceReference", format!("Resource {subnet_id} referenced by resource {nic_id} was not found. Please make sure that the referenced resource exists, and that both resources are in the same region.")));
                };
                let name = c["name"].as_str().map(str::to_string).unwrap_or_else(|| format!("ipconfig{}", i + 1));
                let base = prefix.split('/').next().unwrap_or("10.0.0.0");
                let octets: Vec<&str> = base.split('.').collect();
                let ip = if octets.len() == 4 { format!("{}.{}.{}.{}", octets[0], octets[1], octets[2], 4 + (count + i) % 250) } else { "10.0.0.4".into() };
                c["name"] = json!(name);
                c["id"] = json!(format!("{nic_id}/ipConfigurations/{name}"));
                c["etag"] = json!(etag());
                c["type"] = json!("Microsoft.Network/networkInterfaces/ipConfigurations");
                let p = &mut c["properties"];
                if p["privateIPAddress"].as_str().is_none() {
                    p["privateIPAddress"] = json!(ip);
                }
                p["privateIPAllocationMethod"] = json!(p["privateIPAllocationMethod"].as_str().unwrap_or("Dynamic"));
                p["privateIPAddressVersion"] = json!("IPv4");
                p["primary"] = json!(i == 0);
                p["provisioningState"] = json!("Succeeded");
            }
            props["resourceGuid"] = json!(uuid::Uuid::new_v4().to_string());
            props["macAddress"] = json!(format!("00-0D-3A-{:02X}-{:02X}-{:02X}", rand::random::<u8>(), rand::random::<u8>(), rand::random::<u8>()));
            let existed = find(st, t, Kind::NetworkInterface).is_ok();
            let g = Generic { name: t.name.clone(), location: location.clone(), tags: tags_of(&body), properties: props, provisioning: "Updating".into(), etag: etag() };
            st.rg_mut(&t.sub, &t.rg).expect("group checked").nics.insert(t.name.to_ascii_lowercase(), g);
            let effect = Effect::Provisioned(Kind::NetworkInterface, t.clone());
            Ok(ctx.start_operation(st, &t.sub, "Microsoft.Network", &location, effect, None, if existed { 200 } else { 201 }, false, |st| {
                find(st, t, Kind::NetworkInterface).ok().map(|g| nic_json(st, &t.sub, &t.rg, g))
            }))
        }
        Method::DELETE => {
            if find(st, t, Kind::NetworkInterface).is_err() {
                return Ok(ctx.empty(204));
            }
            let nic_id = resource_id(&t.sub, &t.rg, NIC, &t.name);
            if let Some(vm) = nic_owner(st, &t.sub, &nic_id) {
                return Err(fail(400, "NicInUse", format!("Network Interface {nic_id} is used by existing resource {vm}. In order to delete the network interface, it must be dissociated from the resource.")));
            }
            delete(ctx, st, t, Kind::NetworkInterface)
        }
        _ => Err(fail(405, "MethodNotAllowed", "The requested method is not allowed.")),
    }
}

/// Completes a network resource deletion.
pub(super) fn apply_delete(st: &mut State, kind: Kind, t: &Target, ok: bool) {
    let Some(g) = st.rg_mut(&t.sub, &t.rg) else { return };
    let map = if kind == Kind::VirtualNetwork { &mut g.vnets } else { &mut g.nics };
    let key = t.name.to_ascii_lowercase();
    if ok {
        map.remove(&key);
    } else if let Some(r) = map.get_mut(&key) {
        r.provisioning = "Succeeded".into();
    }
}

/// Checks that a NIC id exists (for VM creation).
pub(super) fn nic_exists(st: &State, id: &str) -> bool {
    parse_id(id).is_some_and(|(sub, rg, ty, name)| {
        ty == NIC.to_ascii_lowercase() && st.rg(&sub, &rg).is_some_and(|g| g.nics.contains_key(&name.to_ascii_lowercase()))
    })
}

/// The VM a NIC belongs to, if any.
pub(super) fn nic_vm(st: &State, sub: &str, id: &str) -> Option<String> {
    nic_owner(st, sub, id)
}
