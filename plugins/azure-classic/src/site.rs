//! The configured classic site: Service Management, the storage account of the VHDs, and
//! the roles (VMs) read from cloud-service deployments.

use homeward_sdk::azure::blob::{Account, BlobUrl};
use homeward_sdk::azure::classic::Classic;
use homeward_sdk::azure::xml::Element;
use homeward_sdk::types::{AdapterError, PowerState};
use homeward_sdk::{error, host};

/// The adapter's view of its configuration.
pub struct Site {
    pub sm: Classic,
    pub storage: Account,
    /// Where new VHDs go: `{blob_endpoint}/{container}/…`.
    pub blob_endpoint: String,
    pub location: String,
}

/// A disk of a role.
#[derive(Debug, Clone)]
pub struct Disk {
    pub name: String,
    pub media: String,
}

/// A role (a classic VM) with what failback needs.
#[derive(Debug, Clone)]
pub struct Role {
    pub service: String,
    pub deployment: String,
    pub vnet: Option<String>,
    pub name: String,
    pub size: String,
    pub os: String,
    pub status: String,
    pub power: String,
    pub roles_in_deployment: usize,
    pub disks: Vec<Disk>,
}

impl Role {
    /// `{service}/{role}`: the VM id.
    pub fn id(&self) -> String {
        format!("{}/{}", self.service, self.name)
    }

    /// The power state from the instance status.
    pub fn power_state(&self) -> PowerState {
        match (self.status.as_str(), self.power.as_str()) {
            ("StoppedDeallocated", _) => PowerState::Deallocated,
            ("StoppedVM", _) | (_, "Stopped") => PowerState::PoweredOff,
            ("ReadyRole", _) | (_, "Started") => PowerState::PoweredOn,
            _ => PowerState::Unknown,
        }
    }

    /// The disk called `name`.
    pub fn disk(&self, name: &str) -> Result<&Disk, AdapterError> {
        self.disks.iter().find(|d| d.name.eq_ignore_ascii_case(name)).ok_or_else(|| error::not_found(format!("VM {} has no disk `{name}`", self.id())))
    }
}

impl Site {
    /// Reads the config (see the crate docs for the keys).
    pub fn load() -> Result<Site, AdapterError> {
        Ok(Site {
            sm: Classic::from_config()?,
            storage: Account::from_config("storage_account", "storage_key")?,
            blob_endpoint: host::require("blob_endpoint")?.trim_end_matches('/').to_string(),
            location: host::config_or("location", "West Europe"),
        })
    }

    /// The names of every cloud service.
    pub fn services(&self) -> Result<Vec<String>, AdapterError> {
        let doc = self.sm.get("listing cloud services", "/services/hostedservices")?;
        Ok(doc.all("HostedService").filter_map(|s| s.text_at("ServiceName").map(str::to_string)).collect())
    }

    /// The roles of a cloud service's production deployment (none when it has none).
    pub fn roles_of(&self, service: &str) -> Result<Vec<Role>, AdapterError> {
        let path = format!("/services/hostedservices/{service}/deploymentslots/production");
        match self.sm.get_opt(&format!("reading the deployment of cloud service {service}"), &path)? {
            Some(d) => Ok(roles(service, &d)),
            None => Ok(Vec::new()),
        }
    }

    /// Every role.
    pub fn all_roles(&self) -> Result<Vec<Role>, AdapterError> {
        let mut out = Vec::new();
        for s in self.services()? {
            out.extend(self.roles_of(&s)?);
        }
        Ok(out)
    }

    /// The role with VM id `{service}/{role}`.
    pub fn role(&self, vm: &str) -> Result<Role, AdapterError> {
        let (service, name) = vm.split_once('/').filter(|(s, r)| !s.is_empty() && !r.is_empty() && !r.contains('/')).ok_or_else(|| {
            error::not_found(format!("VM `{vm}` is not a classic VM id (`cloud-service/role`) on this site"))
        })?;
        self.roles_of(service)?.into_iter().find(|r| r.name.eq_ignore_ascii_case(name)).ok_or_else(|| error::not_found(format!("classic VM {vm} does not exist")))
    }

    /// A VHD's blob URL split into parts.
    pub fn blob(&self, media: &str) -> Result<BlobUrl, AdapterError> {
        BlobUrl::parse(media, &self.storage.name)
    }

    /// A VHD's virtual size (the blob without its 512-byte footer), at a snapshot or live.
    pub fn vhd_bytes(&self, media: &str, snapshot: Option<&str>) -> Result<u64, AdapterError> {
        let b = self.blob(media)?;
        let url = match snapshot {
            Some(s) => format!("{}?snapshot={}", b.url(), homeward_sdk::azure::encode(s)),
            None => b.url(),
        };
        // A one-page ranged read: Content-Range names the blob's full length.
        let resp = self.storage.send(&format!("reading VHD {media}"), "GET", &url, vec![("x-ms-range".into(), "bytes=0-511".into())], Vec::new())?;
        let len = resp
            .header("content-range")
            .and_then(|v| v.rsplit('/').next())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| error::internal(format!("VHD {media}: the ranged read named no total length")))?;
        Ok(len.saturating_sub(512))
    }
}

fn roles(service: &str, d: &Element) -> Vec<Role> {
    let deployment = d.text_at("Name").unwrap_or_default().to_string();
    let vnet = d.text_at("VirtualNetworkName").filter(|v| !v.is_empty()).map(str::to_string);
    let instances: Vec<&Element> = d.child("RoleInstanceList").map(|l| l.all("RoleInstance").collect()).unwrap_or_default();
    let list: Vec<&Element> = d.child("RoleList").map(|l| l.all("Role").collect()).unwrap_or_default();
    let count = list.len();
    list.into_iter()
        .map(|r| {
            let name = r.text_at("RoleName").unwrap_or_default().to_string();
            let inst = instances.iter().find(|i| i.text_at("RoleName") == Some(name.as_str()));
            let text = |path: &str| inst.and_then(|i| i.text_at(path)).unwrap_or_default().to_string();
            let mut disks = Vec::new();
            if let Some(os) = r.child("OSVirtualHardDisk") {
                disks.push(Disk { name: os.text_at("DiskName").unwrap_or_default().to_string(), media: os.text_at("MediaLink").unwrap_or_default().to_string() });
            }
            for dd in r.child("DataVirtualHardDisks").map(|l| l.all("DataVirtualHardDisk").collect::<Vec<_>>()).unwrap_or_default() {
                disks.push(Disk {
                    name: dd.text_at("DiskName").unwrap_or_default().to_string(),
                    media: dd.text_at("MediaLink").unwrap_or_default().to_string(),
                });
            }
            Role {
                service: service.to_string(),
                deployment: deployment.clone(),
                vnet: vnet.clone(),
                os: r.text_at("OSVirtualHardDisk/OS").unwrap_or_default().to_string(),
                size: r.text_at("RoleSize").unwrap_or_default().to_string(),
                status: text("InstanceStatus"),
                power: text("PowerState"),
                roles_in_deployment: count,
                disks,
                name,
            }
        })
        .collect()
}
