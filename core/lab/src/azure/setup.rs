//! Creating what a [`LabSpec`](super::spec::LabSpec) describes directly in the lab's state,
//! with the same shapes the Resource Manager and classic handlers produce.

use super::arm::{self, new_empty_disk, resource_id};
use super::classic::{self, RoleSetup};
use super::error::LabError;
use super::spec::{PowerSpec, SubscriptionSpec, VmSpec, VnetSpec};
use super::state::{ClassicVnet, DataDisk, Generic, Power, ResourceGroup, State, Subscription, Vm};
use serde_json::json;
use std::collections::BTreeMap;

const MIB: u64 = 1 << 20;

fn vnet_properties(v: &VnetSpec) -> serde_json::Value {
    let subnets: Vec<serde_json::Value> = v
        .subnets
        .iter()
        .map(|s| json!({"name": s.name, "etag": format!("W/\"{}\"", uuid::Uuid::new_v4()), "properties": {"addressPrefix": s.address_prefix, "provisioningState": "Succeeded"}}))
        .collect();
    json!({"addressSpace": {"addressPrefixes": v.address_prefixes}, "subnets": subnets, "resourceGuid": uuid::Uuid::new_v4().to_string()})
}

pub(crate) fn apply_subscription(st: &mut State, spec: &SubscriptionSpec) -> Result<(), LabError> {
    if spec.id.trim().is_empty() {
        return Err(LabError::Spec("a subscription needs an id".into()));
    }
    st.subs.entry(spec.id.to_ascii_lowercase()).or_insert_with(|| Subscription {
        id: spec.id.clone(),
        name: spec.name.clone().unwrap_or_else(|| spec.id.clone()),
        rgs: BTreeMap::new(),
        classic: Default::default(),
    });
    for g in &spec.resource_groups {
        let s = st.sub_mut(&spec.id).expect("inserted above");
        let rg = s.rgs.entry(g.name.to_ascii_lowercase()).or_insert_with(|| ResourceGroup {
            name: g.name.clone(),
            location: g.location.clone(),
            tags: json!({}),
            ..Default::default()
        });
        for v in &g.virtual_networks {
            rg.vnets.insert(
                v.name.to_ascii_lowercase(),
                Generic { name: v.name.clone(), location: g.location.clone(), tags: json!({}), properties: vnet_properties(v), provisioning: "Succeeded".into(), etag: format!("W/\"{}\"", uuid::Uuid::new_v4()) },
            );
        }
        for vm in &g.vms {
            create_arm_vm(st, &spec.id, &g.name, &g.location, vm)?;
        }
    }
    for v in &spec.classic.virtual_networks {
        let s = st.sub_mut(&spec.id).expect("inserted above");
        s.classic.vnets.insert(
            v.name.to_ascii_lowercase(),
            ClassicVnet {
                name: v.name.clone(),
                id: uuid::Uuid::new_v4().to_string(),
                location: v.location.clone().unwrap_or_else(|| "West Europe".into()),
                address_prefixes: v.address_prefixes.clone(),
                subnets: v.subnets.iter().map(|s| (s.name.clone(), s.address_prefix.clone())).collect(),
            },
        );
    }
    for vm in &spec.classic.vms {
        if let Some(n) = &vm.network {
            let known = st.sub(&spec.id).is_some_and(|s| s.classic.vnets.contains_key(&n.to_ascii_lowercase()));
            if !known {
                return Err(LabError::Spec(format!("classic VM '{}' names network '{n}', which is not described", vm.name)));
            }
        }
        let setup = RoleSetup {
            name: vm.name.clone(),
            size: vm.size.clone(),
            os: vm.os_type.clone(),
            subnet: vm.subnet.clone(),
            running: vm.running,
            os_disk_bytes: vm.os_disk_mib * MIB,
            data_disk_bytes: vm.data_disks_mib.iter().map(|m| m * MIB).collect(),
        };
        classic::create_vm(st, &spec.id, &vm.service, &vm.location, vm.network.clone(), setup).map_err(LabError::Spec)?;
    }
    Ok(())
}

fn create_arm_vm(st: &mut State, sub: &str, rg: &str, location: &str, vm: &VmSpec) -> Result<(), LabError> {
    let g = st.rg(sub, rg).expect("created by caller");
    let vnet = g.vnets.get(&vm.network.to_ascii_lowercase()).ok_or_else(|| LabError::Spec(format!("VM '{}' names network '{}', which is not described in group '{rg}'", vm.name, vm.network)))?;
    let prefix = vnet.properties["subnets"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"].as_str().is_some_and(|n| n.eq_ignore_ascii_case(&vm.subnet))))
        .and_then(|s| s["properties"]["addressPrefix"].as_str())
        .ok_or_else(|| LabError::Spec(format!("VM '{}' names subnet '{}', which network '{}' does not have", vm.name, vm.subnet, vm.network)))?
        .to_string();
    if g.vms.contains_key(&vm.name.to_ascii_lowercase()) {
        return Err(LabError::Spec(format!("VM '{}' is described twice in group '{rg}'", vm.name)));
    }
    let subnet_id = format!("{}/subnets/{}", resource_id(sub, &g.name, "Microsoft.Network/virtualNetworks", &vnet.name), vm.subnet);
    let rg_name = g.name.clone();
    let nic_count: usize = st.sub(sub).map(|s| s.rgs.values().map(|g| g.nics.len()).sum()).unwrap_or(0);
    let octets: Vec<&str> = prefix.split('/').next().unwrap_or("10.0.0.0").split('.').collect();
    let ip = if octets.len() == 4 { format!("{}.{}.{}.{}", octets[0], octets[1], octets[2], 4 + nic_count % 250) } else { "10.0.0.4".into() };
    let nic_name = format!("{}-nic", vm.name);
    let nic_id = resource_id(sub, &rg_name, "Microsoft.Network/networkInterfaces", &nic_name);
    let nic_props = json!({
        "ipConfigurations": [{
            "name": "ipconfig1", "id": format!("{nic_id}/ipConfigurations/ipconfig1"), "type": "Microsoft.Network/networkInterfaces/ipConfigurations",
            "etag": format!("W/\"{}\"", uuid::Uuid::new_v4()),
            "properties": {"privateIPAddress": ip, "privateIPAllocationMethod": "Dynamic", "privateIPAddressVersion": "IPv4", "primary": true,
                           "provisioningState": "Succeeded", "subnet": {"id": subnet_id}},
        }],
        "resourceGuid": uuid::Uuid::new_v4().to_string(),
    });
    let vm_id = resource_id(sub, &rg_name, "Microsoft.Compute/virtualMachines", &vm.name);
    let mut os = new_empty_disk(st, &format!("{}-osdisk", vm.name), location, vm.os_disk_mib * MIB, Some(vm.os_type.clone())).map_err(arm_spec_error)?;
    os.managed_by = Some(vm_id.clone());
    let mut data = Vec::new();
    let mut data_disks = Vec::new();
    for (lun, mib) in vm.data_disks_mib.iter().enumerate() {
        let mut d = new_empty_disk(st, &format!("{}-data{lun}", vm.name), location, mib * MIB, None).map_err(arm_spec_error)?;
        d.managed_by = Some(vm_id.clone());
        data.push(DataDisk { lun: lun as u32, disk: d.name.to_ascii_lowercase(), create_option: "Attach".into(), caching: "None".into() });
        data_disks.push(d);
    }
    let power = match vm.power_state {
        PowerSpec::Running => Power::Running,
        PowerSpec::Stopped => Power::Stopped,
        PowerSpec::Deallocated => Power::Deallocated,
    };
    let g = st.rg_mut(sub, rg).expect("created by caller");
    g.nics.insert(nic_name.to_ascii_lowercase(), Generic { name: nic_name, location: location.into(), tags: json!({}), properties: nic_props, provisioning: "Succeeded".into(), etag: format!("W/\"{}\"", uuid::Uuid::new_v4()) });
    let os_key = os.name.to_ascii_lowercase();
    g.disks.insert(os_key.clone(), os);
    for d in data_disks {
        g.disks.insert(d.name.to_ascii_lowercase(), d);
    }
    g.vms.insert(
        vm.name.to_ascii_lowercase(),
        Vm {
            name: vm.name.clone(),
            location: location.into(),
            tags: json!({}),
            vm_id: uuid::Uuid::new_v4().to_string(),
            size: vm.size.clone(),
            os_type: vm.os_type.clone(),
            os_disk: os_key,
            os_disk_create: "Attach".into(),
            data_disks: data,
            nics: vec![nic_id],
            power,
            provisioning: "Succeeded".into(),
            os_profile: serde_json::Value::Null,
        },
    );
    Ok(())
}

fn arm_spec_error(e: arm::ArmError) -> LabError {
    LabError::Spec(format!("{}: {}", e.code, e.message))
}
