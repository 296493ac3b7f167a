//! Simulated Azure site: the Microsoft identity token endpoint, Resource Manager, classic
//! Service Management and Blob storage, each on its own loopback port and speaking the real
//! wire formats, so adapters and the page-blob transport cannot tell it from Azure.
//!
//! # Endpoints
//! - **Login** ([`Endpoints::login`]): `POST /{tenant}/oauth2/v2.0/token` (client
//!   credentials, `scope=https://management.azure.com/.default`) and the v1
//!   `/{tenant}/oauth2/token` (`resource=`). Tokens expire after
//!   [`AzureLabConfig::token_lifetime`] or when [`AzureLab::expire_tokens`] is called.
//! - **Resource Manager** ([`Endpoints::resource_manager`]), bearer token and `api-version`
//!   on every call: subscriptions; `resourceGroups` (PUT/GET/HEAD/PATCH/DELETE, list);
//!   `Microsoft.Network/virtualNetworks` (+ `subnets`) and `networkInterfaces`;
//!   `Microsoft.Compute/virtualMachines` (PUT create/update incl. attach/detach of data
//!   disks, GET with `$expand=instanceView`, `instanceView`, DELETE, list per group and per
//!   subscription, POST `start`, `powerOff`, `deallocate`, `restart`);
//!   `Microsoft.Compute/disks` (createOption `Empty`, `Copy`, `Import`, `Upload`) and
//!   `snapshots` (`Copy`, `incremental`), POST `beginGetAccess` / `endGetAccess`.
//!   Long-running operations answer 201/202 with `Azure-AsyncOperation`
//!   (`…/providers/{ns}/locations/{loc}/operations/{id}`), `Location`
//!   (`…/operationResults/{id}`) and `Retry-After`; see [`LroPolicy`].
//! - **Classic** ([`Endpoints::classic`]), `x-ms-version` and the certificate stand-in of
//!   [`classic::auth`]: `/{sub}/services/hostedservices` (GET list, POST create),
//!   `…/{service}` (GET, `embed-detail`, DELETE), `…/deployments` (POST VM deployment),
//!   `…/deployments/{name}` and `…/deploymentslots/{slot}` (GET, DELETE), `…/roles` (POST add
//!   role), `…/roles/{role}` (GET, DELETE with `comp=media`),
//!   `…/roleinstances/{role}/Operations` (Shutdown/Start/RestartRoleOperation),
//!   `/{sub}/services/networking/virtualnetwork`, `/{sub}/operations/{request-id}`.
//! - **Blob** ([`Endpoints::blob`]), SharedKey or SAS: containers (create, delete, list
//!   blobs), page blobs (Put Blob, Put Page update/clear, Get Blob with ranges, HEAD,
//!   Snapshot, Delete with `x-ms-delete-snapshots`), Get Page Ranges with `snapshot`,
//!   `prevsnapshot` and `x-ms-previous-snapshot-url`.
//!
//! ```no_run
//! use homeward_lab::azure::{AzureLab, AzureLabConfig, LabSpec};
//! let lab = AzureLab::start(AzureLabConfig::default())?;
//! lab.apply_spec(&LabSpec::from_toml(r#"
//!     [[subscriptions]]
//!     id = "11111111-2222-3333-4444-555555555555"
//!     [[subscriptions.resource_groups]]
//!     name = "rg"
//!     location = "westeurope"
//! "#)?)?;
//! println!("ARM at {}", lab.endpoints().resource_manager);
//! lab.shutdown();
//! # Ok::<(), homeward_lab::azure::LabError>(())
//! ```

pub mod blob;
pub mod classic;
mod error;
pub mod faults;
mod http;
pub mod lro;
mod ranges;
mod server;
mod setup;
pub mod spec;
mod state;
mod token;

pub(crate) mod arm;
mod api;

pub use api::{AzureLab, Credentials, DiskId, DiskInfo, Endpoints};
pub use classic::auth::ManagementCertificate;
pub use error::LabError;
pub use faults::{Fault, FaultKind};
pub use lro::LroPolicy;
pub use spec::LabSpec;

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// The four simulated services, each on its own port like the real hosts
/// (`login.microsoftonline.com`, `management.azure.com`, `management.core.windows.net`,
/// `{account}.blob.core.windows.net`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// The token endpoint.
    Login,
    /// Resource Manager JSON.
    ResourceManager,
    /// Classic Service Management XML.
    Classic,
    /// Blob storage (path-style: `/{account}/{container}/{blob}`).
    Blob,
}

impl std::fmt::Display for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Service::Login => "login",
            Service::ResourceManager => "arm",
            Service::Classic => "classic",
            Service::Blob => "blob",
        })
    }
}

/// One request the lab answered, for tests that check how a client behaved (retries,
/// polling, which calls it made).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// Service that answered.
    pub service: Service,
    /// HTTP method.
    pub method: String,
    /// Percent-decoded path.
    pub path: String,
    /// Raw query string (without `?`).
    pub query: String,
    /// HTTP status of the answer; dropped connections are not recorded.
    pub status: u16,
    /// When the answer was produced.
    pub at: std::time::SystemTime,
}

/// Settings and credentials of a lab; [`Default`] makes random credentials.
#[derive(Debug, Clone)]
pub struct AzureLabConfig {
    /// Directory (tenant) id.
    pub tenant_id: String,
    /// Service principal's application (client) id.
    pub client_id: String,
    /// Service principal's secret.
    pub client_secret: String,
    /// Lifetime of issued bearer tokens.
    pub token_lifetime: Duration,
    /// Name of the customer storage account.
    pub storage_account: String,
    /// Its key (raw bytes; the handle shows it base64 like the portal).
    pub storage_key: Vec<u8>,
    /// Classic management certificate that is authorized on every classic subscription.
    pub management_certificate: ManagementCertificate,
    /// How long long-running operations stay in progress.
    pub lro: LroPolicy,
    /// Where page blobs are stored; a temporary directory removed at shutdown when `None`.
    pub data_dir: Option<PathBuf>,
}

impl Default for AzureLabConfig {
    fn default() -> Self {
        let rand_bytes = |n: usize| (0..n).map(|_| rand::random::<u8>()).collect::<Vec<u8>>();
        Self {
            tenant_id: uuid::Uuid::new_v4().to_string(),
            client_id: uuid::Uuid::new_v4().to_string(),
            client_secret: base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, rand_bytes(30)),
            token_lifetime: Duration::from_secs(3600),
            storage_account: format!("homewardlab{:06}", rand::random::<u32>() % 1_000_000),
            storage_key: rand_bytes(64),
            management_certificate: ManagementCertificate::generate(),
            lro: LroPolicy::default(),
            data_dir: None,
        }
    }
}

/// What every handler shares: the configuration, the endpoints and the locked state.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: AzureLabConfig,
    pub endpoints: Endpoints,
    state: Mutex<state::State>,
}

impl Shared {
    /// Locks the state; a handler that panicked cannot leave it half-updated in a way later
    /// requests care about, so poisoning is ignored.
    pub fn lock(&self) -> MutexGuard<'_, state::State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}
