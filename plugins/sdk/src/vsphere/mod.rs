//! vSphere (vim25 SOAP) logic shared by the vCenter and standalone-ESXi adapters.
//!
//! - [`session`]: the SOAP client, login with the `password` secret, the session cookie
//!   kept in the adapter's key-value store, re-login on `NotAuthenticated`;
//! - [`faults`]: vim25 faults mapped to the contract's error variant;
//! - [`collector`]: property retrieval through ContainerViews, with paging;
//! - [`inventory`]: hosts, datastores, networks and VMs as the contract's records;
//! - [`tasks`]: vim25 Tasks as `compute.operation`s (the Task moref is the id);
//! - [`compute`], [`disks`], [`site`]: the contract's functions, parameterised by
//!   [`Flavor`] so each adapter crate is a thin wiring of the `Guest` traits;
//! - [`paths`]: datastore paths (`[ds] dir/file.vmdk`) and `/folder` URLs.
//!
//! Config keys: `endpoint` (`host[:port]` of vCenter or the ESXi host), `username`, and
//! optionally `scheme` (`https`, the default, or `http`). Secret: `password`.

pub mod adapter;
pub mod collector;
pub mod compute;
pub mod disks;
pub mod faults;
pub mod inventory;
pub mod paths;
pub mod session;
pub mod site;
pub mod tasks;

/// Which vSphere product an adapter serves; decides what `describe` promises and what is
/// refused up front (cloning on a standalone host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// vCenter Server: many hosts, cloning, a managed inventory.
    Vcenter,
    /// A standalone ESXi host: one host, no cloning, possibly the free edition.
    Esxi,
}

impl Flavor {
    /// The `about.apiType` the endpoint must report.
    pub fn api_type(self) -> &'static str {
        match self {
            Flavor::Vcenter => "VirtualCenter",
            Flavor::Esxi => "HostAgent",
        }
    }

    /// The product as operators name it.
    pub fn product(self) -> &'static str {
        match self {
            Flavor::Vcenter => "vCenter Server",
            Flavor::Esxi => "standalone ESXi host",
        }
    }
}
