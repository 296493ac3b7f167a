//! Sites, master targets and process servers: discovery and registration.

use serde::Serialize;
use serde_json::json;

use homeward_plugin_host::bindings::compute::ProcessServerSpec;

use crate::{
    error::PipelineError,
    model::{MasterTarget, ProcessServer},
    pipeline::{Pipeline, SiteRole},
    store::{Table, now_ms},
};

/// What discovery found on one site.
#[derive(Debug, Clone, Serialize)]
pub struct Discovery {
    /// The site.
    pub site: String,
    /// Its role.
    pub role: SiteRole,
    /// Hosts, datastores, networks and VMs found.
    pub hosts: usize,
    /// Datastores found (none when discovery of them was denied).
    pub datastores: usize,
    /// Networks found.
    pub networks: usize,
    /// VMs found.
    pub vms: usize,
    /// Why datastores could not be listed (a read-only vCenter user), with the fix.
    pub datastore_error: Option<String>,
}

impl Pipeline {
    /// Discovers every configured site and stores its inventory.
    pub async fn discover(&self) -> Result<Vec<Discovery>, PipelineError> {
        let mut out = Vec::new();
        for site in self.sites.values() {
            let p = &site.plugin;
            let info = p.describe().await.map_err(PipelineError::adapter(&site.name, "site.describe", "the site"))?;
            let hosts = p.list_hosts().await.map_err(PipelineError::adapter(&site.name, "inventory.list-hosts", "the site"))?;
            let networks = p.list_networks().await.map_err(PipelineError::adapter(&site.name, "inventory.list-networks", "the site"))?;
            let vms = p.list_vms().await.map_err(PipelineError::adapter(&site.name, "inventory.list-vms", "the site"))?;
            let (datastores, ds_error) = match p.list_datastores().await {
                Ok(d) => (d, None),
                Err(e) => (Vec::new(), Some(format!("{e}; update the credential of site {} with an account that can browse datastores, then discover again", site.name))),
            };
            let inventory = json!({
                "hosts": hosts.iter().map(|h| json!({"id": h.id, "name": h.name})).collect::<Vec<_>>(),
                "datastores": datastores.iter().map(|d| json!({"id": d.id, "name": d.name, "accessible_from": d.accessible_from, "filesystem": d.filesystem})).collect::<Vec<_>>(),
                "networks": networks.iter().map(|n| json!({"id": n.id, "name": n.name})).collect::<Vec<_>>(),
                "vms": vms.iter().map(|v| json!({"id": v.id, "name": v.name, "host": v.host, "disks": v.disks.len()})).collect::<Vec<_>>(),
            });
            let info_json = json!({"api_version": info.api_version, "product_version": info.product_version, "edition": info.licence.as_ref().map(|l| l.edition.clone()), "free": info.licence.as_ref().is_some_and(|l| l.free)});
            self.store.put_site(&site.name, site.role.as_str(), p.name(), &info_json.to_string(), &inventory.to_string(), ds_error.as_deref())?;
            if let Some(e) = &ds_error {
                self.store.event("warning", &format!("site {}", site.name), "datastore-discovery-denied", e)?;
            }
            out.push(Discovery { site: site.name.clone(), role: site.role, hosts: hosts.len(), datastores: datastores.len(), networks: networks.len(), vms: vms.len(), datastore_error: ds_error });
        }
        Ok(out)
    }

    /// Registers an on-premises VM as a master target with its retention volume. The
    /// datastore it is on now is remembered, to detect a later storage vMotion.
    pub async fn register_master_target(&self, name: &str, site: Option<&str>, vm: &str, retention: &str, os_family: &str) -> Result<MasterTarget, PipelineError> {
        let s = self.site_of_role(SiteRole::OnPrem, site)?;
        let vms = s.plugin.list_vms().await.map_err(PipelineError::adapter(&s.name, "inventory.list-vms", "the site"))?;
        let v = vms.iter().find(|v| v.name == vm || v.id == vm).ok_or_else(|| PipelineError::NotFound {
            what: "VM",
            name: vm.to_string(),
            fix: format!("create the master target VM on site {} first (disk.EnableUUID=TRUE, a retention volume)", s.name),
        })?;
        std::fs::create_dir_all(retention).map_err(|e| PipelineError::Io { path: retention.into(), message: format!("{e}; create and mount the retention volume first") })?;
        let mt = MasterTarget {
            name: name.to_string(),
            site: s.name.clone(),
            vm: v.id.clone(),
            host: v.host.clone(),
            registered_datastore: v.disks.first().and_then(|d| d.datastore.clone()),
            retention_path: retention.to_string(),
            os_family: os_family.to_string(),
        };
        self.store.put(Table::MasterTargets, name, &mt)?;
        Ok(mt)
    }

    /// Deploys a process server in Azure, in the failed-over VMs' network, and registers
    /// it with a first heartbeat. Idempotent: an existing one is registered as it is.
    pub async fn deploy_process_server(&self, name: &str, site: Option<&str>, network: &str, for_vms: Vec<String>) -> Result<ProcessServer, PipelineError> {
        let s = self.site_of_role(SiteRole::Azure, site)?;
        let info = s.plugin.describe().await.map_err(PipelineError::adapter(&s.name, "site.describe", "the site"))?;
        let nets = s.plugin.list_networks().await.map_err(PipelineError::adapter(&s.name, "inventory.list-networks", "the site"))?;
        let net = nets.iter().find(|n| n.id.eq_ignore_ascii_case(network) || n.name == network).ok_or_else(|| PipelineError::NotFound {
            what: "Azure network",
            name: network.to_string(),
            fix: format!("choose one of: {}", nets.iter().map(|n| n.name.clone()).collect::<Vec<_>>().join(", ")),
        })?;
        let spec = ProcessServerSpec { name: name.to_string(), network: net.id.clone(), subnet: None, deployment_model: info.deployment_model, for_vms };
        let vm = match s.plugin.deploy_process_server(spec).await {
            Ok(op) => self.wait(&s.name, op, "compute.deploy-process-server", name).await?.unwrap_or_default(),
            Err(homeward_plugin_host::CallError::Adapter { error: homeward_plugin_host::AdapterError::AlreadyExists(_), .. }) => {
                let vms = s.plugin.list_vms().await.map_err(PipelineError::adapter(&s.name, "inventory.list-vms", "the site"))?;
                vms.into_iter().find(|v| v.name == name).map(|v| v.id).unwrap_or_default()
            }
            Err(e) => return Err(PipelineError::adapter(&s.name, "compute.deploy-process-server", name)(e)),
        };
        let model = match info.deployment_model {
            homeward_plugin_host::bindings::types::DeploymentModel::AzureClassic => "azure-classic",
            homeward_plugin_host::bindings::types::DeploymentModel::AzureResourceManager => "azure-resource-manager",
            _ => "on-premises",
        };
        let ps = ProcessServer { name: name.to_string(), site: s.name.clone(), vm, deployment_model: model.into(), network: net.id.clone(), heartbeat_ms: Some(now_ms()) };
        self.store.put(Table::ProcessServers, name, &ps)?;
        Ok(ps)
    }
}
