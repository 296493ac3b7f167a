//! Homeward site adapter for a standalone VMware ESXi host over the vim25 SOAP API (no vCenter inventory, no cloning; reports the free edition).
//!
//! Config keys: `endpoint` (`host[:port]`), `username`, optional `scheme` (`https`
//! by default, or `http`). Secret: `password` (`[plugins.NAME.secrets] password = "ENV_VAR"`).
//! The logic lives in `homeward_sdk::vsphere`; `vsphere_adapter!` wires the contract to it.

homeward_sdk::manifest!("homeward-adapter.toml");

homeward_sdk::vsphere_adapter!(VmwareEsxi, homeward_sdk::vsphere::Flavor::Esxi, "vmware-esxi");
