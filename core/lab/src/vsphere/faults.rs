//! vim25 method faults with their real type names, messages and detail fields.

use super::soap::{Data, MoRef, Value};

/// A vim25 `MethodFault`: thrown as a SOAP fault or carried in a failed task's `info.error`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct Fault {
    /// vim25 fault type, e.g. `InvalidPowerState`.
    pub kind: &'static str,
    /// The `faultstring` / `localizedMessage`.
    pub message: String,
    /// Detail fields of the fault object, in WSDL order.
    pub fields: Vec<(&'static str, Value)>,
}

impl Fault {
    /// A fault of any vim25 type; prefer the named constructors.
    pub fn new(kind: &'static str, message: impl Into<String>) -> Self {
        Fault {
            kind,
            message: message.into(),
            fields: Vec::new(),
        }
    }

    fn with(mut self, name: &'static str, v: impl Into<Value>) -> Self {
        self.fields.push((name, v.into()));
        self
    }

    /// SOAP `faultcode`: vim25 reports every method fault as a server fault.
    pub fn code(&self) -> &'static str {
        "ServerFaultCode"
    }

    /// The fault as a data object (its detail fields).
    pub fn data(&self) -> Data {
        Data {
            ty: self.kind,
            fields: self.fields.clone(),
        }
    }

    /// The `LocalizedMethodFault` a failed task reports in `info.error`.
    pub fn localized(&self) -> Value {
        Data::new("LocalizedMethodFault")
            .with("fault", self.data())
            .with("localizedMessage", self.message.as_str())
            .into()
    }

    /// Wrong user name or password.
    pub fn invalid_login() -> Self {
        Fault::new(
            "InvalidLogin",
            "Cannot complete login due to an incorrect user name or password.",
        )
    }

    /// No session, or an expired one.
    pub fn not_authenticated(object: &MoRef, privilege: &str) -> Self {
        Fault::new("NotAuthenticated", "The session is not authenticated.")
            .with("object", object)
            .with("privilegeId", privilege)
    }

    /// The session's user lacks `privilege` on `object`.
    pub fn no_permission(object: &MoRef, privilege: &str) -> Self {
        Fault::new("NoPermission", format!("Permission to perform this operation was denied. Required privilege '{privilege}' on managed object '{}'.", object.value))
            .with("object", object)
            .with("privilegeId", privilege)
    }

    /// The referenced managed object does not exist.
    pub fn not_found(obj: &MoRef) -> Self {
        Fault::new(
            "ManagedObjectNotFound",
            format!(
                "The object '{}:{}' has already been deleted or has not been completely created",
                obj.ty, obj.value
            ),
        )
        .with("obj", obj)
    }

    /// The VM is in the wrong power state for the operation.
    pub fn invalid_power_state(requested: Option<&str>, existing: &str) -> Self {
        let mut f = Fault::new(
            "InvalidPowerState",
            "The attempted operation cannot be performed in the current state (Powered "
                .to_string()
                + if existing == "poweredOn" {
                    "on)."
                } else {
                    "off)."
                },
        );
        if let Some(r) = requested {
            f = f.with(
                "requestedState",
                Value::Enum("VirtualMachinePowerState", r.to_string()),
            );
        }
        f.with(
            "existingState",
            Value::Enum("VirtualMachinePowerState", existing.to_string()),
        )
    }

    /// A parameter was not correct.
    pub fn invalid_argument(property: &str) -> Self {
        Fault::new(
            "InvalidArgument",
            format!("A specified parameter was not correct: {property}"),
        )
        .with("invalidProperty", property)
    }

    /// A property path that the object type does not have.
    pub fn invalid_property(name: &str) -> Self {
        Fault::new(
            "InvalidProperty",
            format!("Property {name} is not a valid property path"),
        )
        .with("name", name)
    }

    /// A file the operation would create exists already.
    pub fn file_already_exists(file: &str) -> Self {
        Fault::new(
            "FileAlreadyExists",
            format!(
                "Cannot complete the operation because the file or folder {file} already exists"
            ),
        )
        .with("file", file)
    }

    /// A file the operation needs does not exist.
    pub fn file_not_found(file: &str) -> Self {
        Fault::new("FileNotFound", format!("File {file} was not found")).with("file", file)
    }

    /// A file-level failure not covered by a more specific fault.
    pub fn file_fault(file: &str, why: &str) -> Self {
        Fault::new("FileFault", format!("Error caused by file {file}: {why}")).with("file", file)
    }

    /// The datastore has no room for the allocation (vim25's datastore-full fault).
    pub fn no_disk_space(file: &str, datastore: &str) -> Self {
        Fault::new("NoDiskSpace", format!("There is no more space for virtual disk {file}. You might be able to continue this session by freeing disk space on the relevant volume ({datastore}), and clicking Retry.")).with("file", file).with("datastore", datastore)
    }

    /// Another task is already operating on the entity.
    pub fn task_in_progress(task: &MoRef) -> Self {
        Fault::new("TaskInProgress", "Another task is already in progress.").with("task", task)
    }

    /// A VM of that name already exists in the folder.
    pub fn duplicate_name(name: &str, object: &MoRef) -> Self {
        Fault::new(
            "DuplicateName",
            format!("The name '{name}' already exists."),
        )
        .with("name", name)
        .with("object", object)
    }

    /// The operation is not supported by this server or object.
    pub fn not_supported(what: &str) -> Self {
        Fault::new(
            "NotSupported",
            format!("The operation is not supported on the object: {what}"),
        )
    }

    /// The licence or product edition forbids the operation (free ESXi refuses API writes).
    pub fn restricted_version() -> Self {
        Fault::new(
            "RestrictedVersion",
            "Current license or ESXi version prohibits execution of the requested operation.",
        )
    }

    /// The guest tools are not running, so a guest operation cannot be delivered.
    pub fn tools_unavailable() -> Self {
        Fault::new(
            "ToolsUnavailable",
            "Cannot complete operation because VMware Tools is not running in this virtual machine.",
        )
    }

    /// The datastore is not reachable from the host the VM would run on.
    pub fn invalid_datastore(ds: &MoRef, name: &str) -> Self {
        Fault::new(
            "InvalidDatastore",
            format!("The datastore '{name}' is not accessible from the host."),
        )
        .with("datastore", ds)
        .with("name", name)
    }

    /// An unknown method was called.
    pub fn method_not_found(receiver: &MoRef, method: &str) -> Self {
        Fault::new(
            "MethodNotFound",
            format!("Method {method} not found on object {}", receiver.value),
        )
        .with("receiver", receiver)
        .with("method", method)
    }

    /// A generic server-side failure; the lab uses it for injected faults by default.
    pub fn system_error(reason: &str) -> Self {
        Fault::new(
            "SystemError",
            format!("A general system error occurred: {reason}"),
        )
        .with("reason", reason)
    }

    /// The request body was not a SOAP call the server understands.
    pub fn invalid_request(why: &str) -> Self {
        Fault::new("InvalidRequest", format!("Invalid request: {why}"))
    }

    /// A continuation token unknown to the property collector.
    pub fn invalid_token(token: &str) -> Self {
        let mut f = Fault::invalid_argument("token");
        f.message = format!("A specified parameter was not correct: token {token}");
        f
    }
}
