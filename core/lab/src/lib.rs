//! Simulated sites for Homeward: vSphere (vCenter and standalone ESXi) and Azure
//! (Resource Manager, classic Service Management, Blob page blobs), served on loopback
//! with the real wire formats.

pub mod azure;
pub mod operator;
pub mod vhd;
pub mod vmdk;
pub mod vsphere;
