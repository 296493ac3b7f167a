//! What the site is (`describe`, with the licence edition) and what the caller may do
//! there (`HasPrivilegeOnEntities`).

use super::Flavor;
use super::collector;
use super::inventory;
use super::session::Client;
use crate::error;
use crate::inventory::{DatastoreInfo, PrivilegeCheck};
use crate::site::{Capabilities, Licence, SiteInfo, TransportKind};
use crate::soap::{Element, MoRef, Node};
use crate::types::{AdapterError, DeploymentModel, SiteKind};

/// Edition keys of the free vSphere Hypervisor, whose licence forbids the API writes and
/// change tracking that failback needs.
const FREE_EDITIONS: &[&str] = &["esxBasic", "esxFree"];

/// Whether a licence is the free vSphere Hypervisor.
pub fn is_free(edition: &str, name: &str) -> bool {
    FREE_EDITIONS.contains(&edition) || name.contains("Hypervisor")
}

fn licence(client: &Client, flavor: Flavor) -> Result<Option<Licence>, AdapterError> {
    let Some(lm) = client.content().license_manager.clone() else { return Ok(None) };
    let o = collector::of_object(client, &lm, &["licenses"])?;
    let infos: Vec<Licence> = o
        .get("licenses")
        .map(|l| {
            l.children
                .iter()
                .map(|i| {
                    let edition = i.child_text("editionKey").unwrap_or_default().to_string();
                    let name = i.child_text("name").unwrap_or_default().to_string();
                    Licence { free: is_free(&edition, &name), edition, name }
                })
                .collect()
        })
        .unwrap_or_default();
    // vCenter lists its own licence beside its hosts'; the site's is the vCenter one.
    let pick = match flavor {
        Flavor::Vcenter => infos.iter().find(|l| l.edition.starts_with("vc.")).or(infos.first()),
        Flavor::Esxi => infos.iter().find(|l| !l.edition.starts_with("vc.")).or(infos.first()),
    };
    Ok(pick.cloned())
}

/// Contacts the site, checks it is the product this adapter serves and that the
/// credentials work, and describes it.
pub fn describe(flavor: Flavor, adapter: &str) -> Result<SiteInfo, AdapterError> {
    let client = Client::get()?;
    let c = client.content();
    if c.api_type != flavor.api_type() {
        let other = if c.api_type == "VirtualCenter" { "vmware-vcenter" } else { "vmware-esxi" };
        return Err(error::invalid(format!(
            "{} is a {} ({}), but this adapter serves a {}; configure the {other} adapter for it",
            client.endpoint().base_url(),
            c.product,
            c.api_type,
            flavor.product()
        )));
    }
    let licence = licence(&client, flavor)?;
    let free = licence.as_ref().is_some_and(|l| l.free);
    Ok(SiteInfo {
        kind: match flavor {
            Flavor::Vcenter => SiteKind::Vcenter,
            Flavor::Esxi => SiteKind::Esxi,
        },
        adapter: adapter.to_string(),
        api_version: c.api_version.clone(),
        product: c.product.clone(),
        product_version: c.version.clone(),
        licence,
        deployment_model: DeploymentModel::OnPremises,
        capabilities: Capabilities {
            // The free edition refuses change tracking queries and every API write.
            change_tracking: !free,
            quiesced_snapshots: !free,
            create_vm: !free,
            clone_vm: flavor == Flavor::Vcenter,
            managed_inventory: flavor == Flavor::Vcenter,
            deploy_process_server: false,
            privileges: client.content().authorization_manager.is_some(),
            transports: vec![TransportKind::HttpRange],
        },
    })
}

/// `HasPrivilegeOnEntities` for the session's own user: (entity, privilege, granted).
fn has_privileges(client: &Client, entities: &[MoRef], privileges: &[&str]) -> Result<Vec<(MoRef, String, bool)>, AdapterError> {
    let am = client
        .content()
        .authorization_manager
        .clone()
        .ok_or_else(|| error::unsupported("this site has no AuthorizationManager, so privileges cannot be checked"))?;
    let mut args: Vec<Node> = entities.iter().map(|e| Node::moref("entity", e)).collect();
    args.push(Node::text("sessionId", client.session_key()?));
    args.extend(privileges.iter().map(|p| Node::text("privId", *p)));
    let resp = client.invoke("HasPrivilegeOnEntities", &am, &args, "checking privileges")?;
    let mut out = Vec::new();
    for ep in resp.children_named("returnval") {
        let Some(entity) = ep.child("entity").and_then(Element::as_moref) else { continue };
        for pa in ep.children_named("privAvailability") {
            out.push((entity.clone(), pa.child_text("privId").unwrap_or_default().to_string(), pa.child_bool("isGranted").unwrap_or(false)));
        }
    }
    Ok(out)
}

/// Fails with `permission-denied` naming the first of `privileges` the caller lacks on
/// `entity`. Sites without a privilege model let the server refuse the access itself.
pub fn require_privileges(client: &Client, entity: &MoRef, privileges: &[&str], what: &str) -> Result<(), AdapterError> {
    if client.content().authorization_manager.is_none() {
        return Ok(());
    }
    let checks = match has_privileges(client, std::slice::from_ref(entity), privileges) {
        Ok(c) => c,
        // Hosts that predate HasPrivilegeOnEntities leave the check to the access itself.
        Err(AdapterError::Unsupported(_)) => return Ok(()),
        Err(e) => return Err(e),
    };
    if let Some((_, p, _)) = checks.iter().find(|(_, _, granted)| !granted) {
        return Err(error::denied(format!("{what}: the account lacks the privilege `{p}` on {entity}. Grant `{p}` to the plugin's vSphere user")));
    }
    Ok(())
}

/// The datastores; a user who cannot browse them gets `permission-denied` naming
/// `Datastore.Browse`, never a partial or empty list.
pub fn list_datastores(client: &Client) -> Result<Vec<DatastoreInfo>, AdapterError> {
    let stores = inventory::datastores(client)?;
    if client.content().authorization_manager.is_some() && !stores.is_empty() {
        let refs: Vec<MoRef> = stores.iter().map(|(r, _)| r.clone()).collect();
        match has_privileges(client, &refs, &["Datastore.Browse"]) {
            Ok(checks) => {
                let denied: Vec<String> = checks.iter().filter(|c| !c.2).map(|c| c.0.value.clone()).collect();
                if !denied.is_empty() {
                    return Err(error::denied(format!(
                        "the account lacks the privilege `Datastore.Browse` on datastore(s) {}, so datastores cannot be discovered for failback. Update the vCenter credential to an account with `Datastore.Browse`",
                        denied.join(", ")
                    )));
                }
            }
            Err(AdapterError::Unsupported(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(stores.into_iter().map(|(_, d)| d).collect())
}

const ENTITY_TYPES: &[&str] = &["VirtualMachine", "Datastore", "HostSystem", "Network", "Datacenter", "ResourcePool", "ComputeResource", "Folder"];

/// Checks each (entity, privilege) pair; the empty entity id is the root folder.
pub fn check_privileges(client: &Client, entities: &[String], privileges: &[String]) -> Result<Vec<PrivilegeCheck>, AdapterError> {
    if client.content().authorization_manager.is_none() {
        return Err(error::unsupported("this site has no AuthorizationManager, so privileges cannot be checked"));
    }
    if entities.is_empty() || privileges.is_empty() {
        return Ok(Vec::new());
    }
    let mut refs = Vec::new();
    for e in entities {
        refs.push(if e.is_empty() { client.content().root_folder.clone() } else { inventory::resolve(client, e, ENTITY_TYPES)? });
    }
    let privs: Vec<&str> = privileges.iter().map(String::as_str).collect();
    let checks = has_privileges(client, &refs, &privs)?;
    let mut out = Vec::new();
    for (id, r) in entities.iter().zip(&refs) {
        for p in privileges {
            let granted = checks.iter().any(|(e, q, g)| e == r && q == p && *g);
            out.push(PrivilegeCheck { entity: id.clone(), privilege: p.clone(), granted });
        }
    }
    Ok(out)
}
