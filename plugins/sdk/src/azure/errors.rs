//! Azure error codes (Resource Manager, classic Service Management, Blob storage, the
//! identity platform) to the contract's closed error variant.

use crate::error;
use crate::types::AdapterError;

/// Maps an Azure answer to the contract's variant. `what` names the call and object, so the
/// message says what failed; the backend's code and message are quoted after it.
pub fn from_azure(what: &str, status: u16, code: &str, message: &str, retry_after_ms: Option<u64>) -> AdapterError {
    let msg = if code.is_empty() { format!("{what}: HTTP {status}: {message}") } else { format!("{what}: {code}: {message}") };
    if status == 429 || status >= 500 && !is_operation_failure(code, status) {
        return error::unavailable(msg, retry_after_ms);
    }
    match code {
        "ResourceNotFound" | "NotFound" | "ResourceGroupNotFound" | "SubscriptionNotFound" | "BlobNotFound" | "ContainerNotFound"
        | "PreviousSnapshotNotFound" | "ParentResourceNotFound" => error::not_found(msg),
        "Conflict" | "ConflictError" | "OperationNotAllowed" | "PropertyChangeNotAllowed" | "SnapshotsPresent" | "NicInUse"
        | "OperationPreempted" | "LeaseIdMissing" | "LeaseAlreadyPresent" => error::conflict(msg),
        "ResourceExists" | "BlobAlreadyExists" | "ContainerAlreadyExists" | "AlreadyExists" => error::already_exists(msg),
        "InvalidParameter" | "InvalidRequestContent" | "InvalidRequestFormat" | "InvalidResourceReference" | "BadRequest"
        | "InvalidHeaderValue" | "InvalidRange" | "InvalidPageRange" | "MissingRequiredHeader" | "InvalidApiVersionParameter"
        | "MissingApiVersionParameter" | "InvalidRequestUri" | "InvalidResourceType" | "LocationRequired" | "InvalidUri"
        | "InvalidQueryParameterValue" | "MissingOrIncorrectVersionHeader" | "PreviousSnapshotCannotBeNewer" | "invalid_request"
        | "invalid_scope" | "unsupported_grant_type" => error::invalid(msg),
        "AuthenticationFailed" | "InvalidAuthenticationToken" | "ExpiredAuthenticationToken" | "AuthorizationFailed" | "ForbiddenError"
        | "AuthorizationPermissionMismatch" | "NoAuthenticationInformation" | "invalid_client" | "unauthorized_client"
        | "LinkedAuthorizationFailed" => error::denied(msg),
        "TooManyRequests" | "ServerBusy" | "InternalServerError" | "ServiceUnavailable" | "RetryableError" => {
            error::unavailable(msg, retry_after_ms)
        }
        _ => match status {
            404 => error::not_found(msg),
            409 => error::conflict(msg),
            400 | 413 | 416 => error::invalid(msg),
            401 | 403 => error::denied(msg),
            _ => error::internal(msg),
        },
    }
}

/// A failed long-running operation is reported on a 500 by the `Location` URL, but it is
/// final, not a temporary failure, when it carries a specific code.
fn is_operation_failure(code: &str, status: u16) -> bool {
    status == 500 && !code.is_empty() && !matches!(code, "InternalServerError" | "ServerBusy" | "ServiceUnavailable" | "RetryableError" | "InternalError")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_codes_and_statuses() {
        assert!(matches!(from_azure("x", 404, "ResourceNotFound", "m", None), AdapterError::NotFound(_)));
        assert!(matches!(from_azure("x", 409, "OperationNotAllowed", "m", None), AdapterError::Conflict(_)));
        assert!(matches!(from_azure("x", 400, "InvalidParameter", "m", None), AdapterError::InvalidArgument(_)));
        assert!(matches!(from_azure("x", 403, "ForbiddenError", "m", None), AdapterError::PermissionDenied(_)));
        assert!(matches!(from_azure("x", 401, "InvalidAuthenticationToken", "m", None), AdapterError::PermissionDenied(_)));
        match from_azure("x", 429, "TooManyRequests", "m", Some(7000)) {
            AdapterError::Unavailable(u) => assert_eq!(u.retry_after_ms, Some(7000)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(from_azure("x", 503, "", "m", None), AdapterError::Unavailable(_)));
        assert!(matches!(from_azure("x", 500, "InternalServerError", "m", None), AdapterError::Unavailable(_)));
        assert!(matches!(from_azure("x", 500, "AllocationFailed", "m", None), AdapterError::Internal(_)));
    }
}
