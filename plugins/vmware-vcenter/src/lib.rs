//! Homeward site adapter for a VMware vCenter Server site over the vim25 SOAP API.
//!
//! Config keys: `endpoint` (`host[:port]`), `username`, optional `scheme` (`https`
//! by default, or `http`). Secret: `password` (`[plugins.NAME.secrets] password = "ENV_VAR"`).
//! The logic lives in `homeward_sdk::vsphere`; `vsphere_adapter!` wires the contract to it.

homeward_sdk::manifest!("homeward-adapter.toml");

homeward_sdk::vsphere_adapter!(VmwarevCenter, homeward_sdk::vsphere::Flavor::Vcenter, "vmware-vcenter");
