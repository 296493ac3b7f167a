//! An operator config for a running vCenter lab and Azure lab: the `[sites]`, `[plugins]`
//! and grants the failback pipeline needs, with secrets left in environment variables.
//! `homeward demo` and the end-to-end tests use it, so both drive the lab the way an
//! operator's config would.

use std::path::Path;

use crate::{azure::AzureLab, vsphere::VsphereLab};

/// The subscription and resource group of the demo's Azure site (`examples/lab/demo-azure.toml`).
pub const DEMO_SUBSCRIPTION: &str = "2f0c6e7a-1111-4222-8333-944445555666";
/// The resource group of the demo's Azure site.
pub const DEMO_RESOURCE_GROUP: &str = "rg-dr";

/// A plugin component and its pin.
#[derive(Debug, Clone, Copy)]
pub struct Component<'a> {
    /// The `.wasm` file.
    pub path: &'a Path,
    /// Its sha256.
    pub sha256: &'a str,
}

/// Names of the environment variables holding the lab's secrets.
#[derive(Debug, Clone, Copy)]
pub struct SecretVars<'a> {
    /// The vCenter user's password.
    pub vcenter_password: &'a str,
    /// The Azure service principal's secret (Resource Manager).
    pub azure_client_secret: &'a str,
    /// The management certificate's key, base64 (classic).
    pub classic_certificate_key: &'a str,
    /// The storage account key (classic).
    pub classic_storage_key: &'a str,
}

/// The variable names `homeward demo` and the end-to-end tests use.
pub const LAB_SECRET_VARS: SecretVars<'static> = SecretVars {
    vcenter_password: "LAB_VCENTER_PASSWORD",
    azure_client_secret: "LAB_AZURE_CLIENT_SECRET",
    classic_certificate_key: "LAB_AZURE_CERTIFICATE_KEY",
    classic_storage_key: "LAB_AZURE_STORAGE_KEY",
};

impl SecretVars<'_> {
    /// The names in the order of [`secret_values`].
    pub fn names(&self) -> [&str; 4] {
        [self.vcenter_password, self.azure_client_secret, self.classic_certificate_key, self.classic_storage_key]
    }
}

/// Which Azure deployment model the `azure` site uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AzureModel {
    /// Resource Manager (the `azure-rm` adapter).
    ResourceManager,
    /// Classic Service Management (the `azure-classic` adapter).
    Classic,
}

/// The secret values matching [`SecretVars`] for a lab, to export before running.
pub fn secret_values(vc: &VsphereLab, vcenter_user: &str, az: &AzureLab) -> Option<[String; 4]> {
    use base64::Engine;
    let c = az.credentials();
    Some([
        vc.user(vcenter_user)?.password,
        c.client_secret.clone(),
        base64::engine::general_purpose::STANDARD.encode(&c.management_certificate.key),
        c.storage_key.clone(),
    ])
}

fn origin(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    format!("{scheme}://{}", rest.split('/').next().unwrap_or(rest))
}

/// The config text: `data_dir`, sites `onprem` (vCenter) and `azure` (Resource Manager),
/// and the two plugins granted exactly the lab's origins. `vcenter_user` picks one of the
/// lab's users (a read-only one shows the credential prerequisite).
#[allow(clippy::too_many_arguments)]
pub fn pipeline_config(vc: &VsphereLab, az: &AzureLab, model: AzureModel, vcenter: Component, azure: Component, vcenter_user: &str, data_dir: &Path, secrets: SecretVars) -> String {
    let endpoint = vc.base_url().trim_start_matches("http://").to_string();
    let e = az.endpoints();
    let c = az.credentials();
    let mut hosts = match model {
        AzureModel::ResourceManager => vec![origin(&e.login), origin(&e.resource_manager), origin(&e.blob)],
        AzureModel::Classic => vec![origin(&e.classic), origin(&e.blob)],
    };
    hosts.dedup();
    let azure_config = match model {
        AzureModel::ResourceManager => format!(
            "login_endpoint = \"{login}\"\narm_endpoint = \"{arm}\"\nblob_endpoint = \"{blob}\"\n\
             tenant_id = \"{tenant}\"\nclient_id = \"{client}\"\nsubscription_id = \"{DEMO_SUBSCRIPTION}\"\nresource_group = \"{DEMO_RESOURCE_GROUP}\"\n\n\
             [plugins.azure.secrets]\nclient_secret = \"{az_var}\"\n",
            login = e.login,
            arm = e.resource_manager,
            blob = e.blob,
            tenant = c.tenant_id,
            client = c.client_id,
            az_var = secrets.azure_client_secret,
        ),
        AzureModel::Classic => format!(
            "management_endpoint = \"{mgmt}\"\nblob_endpoint = \"{blob}/{account}\"\nsubscription_id = \"{DEMO_SUBSCRIPTION}\"\n\
             certificate_thumbprint = \"{thumb}\"\nstorage_account = \"{account}\"\n\n\
             [plugins.azure.secrets]\nmanagement_certificate_key = \"{cert_var}\"\nstorage_key = \"{key_var}\"\n",
            mgmt = e.classic,
            blob = e.blob,
            account = c.storage_account,
            thumb = c.management_certificate.thumbprint,
            cert_var = secrets.classic_certificate_key,
            key_var = secrets.classic_storage_key,
        ),
    };
    format!(
        "# An operator config for the lab sites it was written for.\n\
         data_dir = \"{state}\"\n\n[backup]\nevery_hours = 0\n\n\
         [sites.onprem]\nplugin = \"vcenter\"\nrole = \"on-prem\"\n\n\
         [sites.azure]\nplugin = \"azure\"\nrole = \"azure\"\n\n\
         [plugins.vcenter]\npath = \"{vc_path}\"\nsha256 = \"{vc_sha}\"\nallow_hosts = [\"http://{endpoint}\"]\n\n\
         [plugins.vcenter.config]\nendpoint = \"{endpoint}\"\nscheme = \"http\"\nusername = \"{vcenter_user}\"\n\n\
         [plugins.vcenter.secrets]\npassword = \"{vc_var}\"\n\n\
         [plugins.azure]\npath = \"{az_path}\"\nsha256 = \"{az_sha}\"\nallow_hosts = [{allow}]\n\n\
         [plugins.azure.config]\n{azure_config}",
        state = data_dir.display(),
        vc_path = vcenter.path.display(),
        vc_sha = vcenter.sha256,
        az_path = azure.path.display(),
        az_sha = azure.sha256,
        allow = hosts.iter().map(|h| format!("\"{h}\"")).collect::<Vec<_>>().join(", "),
        vc_var = secrets.vcenter_password,
    )
}

/// Deterministic guest data for drills: half text (compresses about 2:1), half noise,
/// in 4 KiB halves, like a real disk's mix.
pub fn guest_data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|i| {
            if i % 4096 < 2048 {
                b"homeward failback drill "[i % 24]
            } else {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            }
        })
        .collect()
}
