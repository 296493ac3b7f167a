//! vim25 faults mapped to the contract's closed error variant.

use crate::error;
use crate::soap::SoapFault;
use crate::types::AdapterError;

/// Maps a vim25 fault met while doing `what` (such as `powering on VirtualMachine:vm-7`)
/// to the contract's error, keeping the server's message and adding the fix where one is
/// known.
pub fn to_error(fault: &SoapFault, what: &str) -> AdapterError {
    let said = if fault.message.is_empty() { fault.kind.clone() } else { format!("{} ({})", fault.message, fault.kind) };
    match fault.kind.as_str() {
        "InvalidLogin" => error::denied(format!(
            "{what}: the server refused the user name or password: {said}. Update the plugin's `username` config key or its `password` secret"
        )),
        "NotAuthenticated" => error::denied(format!("{what}: the session is not authenticated: {said}. Check the plugin's credentials")),
        "NoPermission" => {
            let privilege = fault.detail.child_text("privilegeId").unwrap_or("unknown");
            let object = fault.detail.child("object").and_then(|o| o.as_moref()).map(|m| m.to_string()).unwrap_or_default();
            error::denied(format!(
                "{what}: the account lacks the privilege `{privilege}` on {object}: {said}. Grant `{privilege}` to the plugin's vSphere user"
            ))
        }
        "ManagedObjectNotFound" | "FileNotFound" | "NotFound" => error::not_found(format!("{what}: {said}")),
        "DuplicateName" | "FileAlreadyExists" | "AlreadyExists" => error::already_exists(format!("{what}: {said}")),
        "InvalidArgument" | "InvalidProperty" | "InvalidRequest" | "InvalidDatastorePath" | "InvalidName" | "InvalidType"
        | "InvalidDatastore" | "InvalidDeviceSpec" | "InvalidDeviceBacking" => error::invalid(format!("{what}: {said}")),
        "InvalidPowerState" | "InvalidState" | "TaskInProgress" | "NoDiskSpace" | "FileLocked" | "ToolsUnavailable"
        | "ApplicationQuiesceFault" | "ConcurrentAccess" | "SnapshotFault" | "ResourceInUse" => {
            error::conflict(format!("{what}: {said}"))
        }
        "RestrictedVersion" => error::unsupported(format!(
            "{what}: the site's licence forbids this API call: {said}. The free vSphere Hypervisor edition cannot be managed through the API; apply a paid or evaluation licence"
        )),
        "NotSupported" | "NotImplemented" | "MethodNotFound" => error::unsupported(format!("{what}: {said}")),
        "SystemError" | "HostCommunication" | "HostNotConnected" | "HostNotReachable" | "RequestCanceled" | "Timedout"
        | "NotEnoughLicenses" => error::unavailable(format!("{what}: {said}"), None),
        _ => error::internal(format!("{what}: the server answered with fault {said}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soap::Element;

    fn fault(kind: &str) -> SoapFault {
        SoapFault { kind: kind.into(), message: "m".into(), detail: Element::default() }
    }

    #[test]
    fn faults_map_to_the_contract() {
        let kind = |k: &str| match to_error(&fault(k), "x") {
            AdapterError::NotFound(_) => "not-found",
            AdapterError::AlreadyExists(_) => "already-exists",
            AdapterError::InvalidArgument(_) => "invalid-argument",
            AdapterError::PermissionDenied(_) => "permission-denied",
            AdapterError::Unavailable(_) => "unavailable",
            AdapterError::Unsupported(_) => "unsupported",
            AdapterError::Conflict(_) => "conflict",
            AdapterError::Internal(_) => "internal",
        };
        assert_eq!(kind("NotAuthenticated"), "permission-denied");
        assert_eq!(kind("InvalidLogin"), "permission-denied");
        assert_eq!(kind("NoPermission"), "permission-denied");
        assert_eq!(kind("ManagedObjectNotFound"), "not-found");
        assert_eq!(kind("InvalidPowerState"), "conflict");
        assert_eq!(kind("DuplicateName"), "already-exists");
        assert_eq!(kind("FileAlreadyExists"), "already-exists");
        assert_eq!(kind("InvalidArgument"), "invalid-argument");
        assert_eq!(kind("InvalidProperty"), "invalid-argument");
        assert_eq!(kind("NoDiskSpace"), "conflict");
        assert_eq!(kind("TaskInProgress"), "conflict");
        assert_eq!(kind("RestrictedVersion"), "unsupported");
        assert_eq!(kind("NotSupported"), "unsupported");
        assert_eq!(kind("SystemError"), "unavailable");
        assert_eq!(kind("Bizarre"), "internal");
    }

    #[test]
    fn no_permission_names_the_privilege() {
        let mut f = fault("NoPermission");
        f.detail.children.push(Element { name: "privilegeId".into(), text: "Datastore.Browse".into(), ..Default::default() });
        match to_error(&f, "listing") {
            AdapterError::PermissionDenied(m) => assert!(m.contains("`Datastore.Browse`"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
