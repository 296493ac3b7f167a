//! Scripted faults: latency, throttling, server errors and failing long-running operations,
//! each for the next N requests that match.

use super::Service;
use super::http::Req;
use std::time::Duration;

/// What a fault does to a matching request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// Delay the response, then serve the request normally.
    Latency(Duration),
    /// Answer 429 with `Retry-After` in the service's own error format.
    Throttle {
        /// Seconds put in `Retry-After`.
        retry_after_secs: u32,
    },
    /// Answer with this 5xx status in the service's own error format.
    ServerError {
        /// HTTP status, e.g. 500 or 503.
        status: u16,
    },
    /// Close the connection without any answer, as a network failure or a crashed front end
    /// would.
    DropConnection,
    /// Let the request start its long-running operation, but make that operation end in
    /// `Failed` with this error.
    FailOperation {
        /// Error code reported by the operation.
        code: String,
        /// Error message reported by the operation.
        message: String,
    },
}

/// A fault armed for the next `times` matching requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// Only requests to this service match; `None` matches every service.
    pub service: Option<Service>,
    /// Only requests with this HTTP method match (e.g. "POST").
    pub method: Option<String>,
    /// Only requests whose path contains this text (case-insensitive) match.
    pub path_contains: Option<String>,
    /// The effect.
    pub kind: FaultKind,
    /// How many matching requests are affected.
    pub times: u32,
}

impl Fault {
    /// A fault of `kind` for the next request to `service`.
    pub fn new(service: Service, kind: FaultKind) -> Self {
        Self { service: Some(service), method: None, path_contains: None, kind, times: 1 }
    }
    /// 429 with `Retry-After: retry_after_secs`.
    pub fn throttle(service: Service, retry_after_secs: u32) -> Self {
        Self::new(service, FaultKind::Throttle { retry_after_secs })
    }
    /// A 5xx answer.
    pub fn server_error(service: Service, status: u16) -> Self {
        Self::new(service, FaultKind::ServerError { status })
    }
    /// The connection is closed without an answer.
    pub fn drop_connection(service: Service) -> Self {
        Self::new(service, FaultKind::DropConnection)
    }
    /// Extra latency before the answer.
    pub fn latency(service: Service, delay: Duration) -> Self {
        Self::new(service, FaultKind::Latency(delay))
    }
    /// The next long-running operation started by a matching request fails.
    pub fn fail_operation(service: Service, code: &str, message: &str) -> Self {
        Self::new(service, FaultKind::FailOperation { code: code.into(), message: message.into() })
    }
    /// Affects the next `n` matching requests instead of one.
    pub fn times(mut self, n: u32) -> Self {
        self.times = n;
        self
    }
    /// Restricts the fault to one HTTP method.
    pub fn method(mut self, method: &str) -> Self {
        self.method = Some(method.to_ascii_uppercase());
        self
    }
    /// Restricts the fault to paths containing `text` (case-insensitive).
    pub fn path_contains(mut self, text: &str) -> Self {
        self.path_contains = Some(text.to_ascii_lowercase());
        self
    }

    fn matches(&self, service: Service, req: &Req) -> bool {
        self.service.is_none_or(|s| s == service)
            && self.method.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(req.method.as_str()))
            && self
                .path_contains
                .as_deref()
                .map(str::to_ascii_lowercase)
                .is_none_or(|p| req.raw_path.to_ascii_lowercase().contains(&p) || super::http::decode(&req.raw_path).to_ascii_lowercase().contains(&p))
    }
}

/// An armed fault with its remaining count.
#[derive(Debug, Clone)]
pub(crate) struct FaultRule {
    pub fault: Fault,
    pub remaining: u32,
}

/// What the dispatcher must do before (or instead of) serving a request.
#[derive(Debug, Default)]
pub(crate) struct Triggered {
    pub delay: Duration,
    pub respond: Option<FaultKind>,
}

/// Consumes the request-level faults (latency, throttle, 5xx) that match this request.
/// Operation failures are consumed separately when an operation starts.
pub(crate) fn take_request_faults(rules: &mut Vec<FaultRule>, service: Service, req: &Req) -> Triggered {
    let mut t = Triggered::default();
    for rule in rules.iter_mut() {
        if rule.remaining == 0 || !rule.fault.matches(service, req) {
            continue;
        }
        match &rule.fault.kind {
            FaultKind::Latency(d) => {
                t.delay += *d;
                rule.remaining -= 1;
            }
            FaultKind::Throttle { .. } | FaultKind::ServerError { .. } | FaultKind::DropConnection if t.respond.is_none() => {
                t.respond = Some(rule.fault.kind.clone());
                rule.remaining -= 1;
            }
            _ => {}
        }
    }
    rules.retain(|r| r.remaining > 0);
    t
}

/// Consumes a matching operation failure, if one is armed.
pub(crate) fn take_operation_failure(rules: &mut Vec<FaultRule>, service: Service, req: &Req) -> Option<(String, String)> {
    let (rule, failure) = rules.iter_mut().find_map(|r| match &r.fault.kind {
        FaultKind::FailOperation { code, message } if r.remaining > 0 && r.fault.matches(service, req) => {
            let failure = (code.clone(), message.clone());
            Some((r, failure))
        }
        _ => None,
    })?;
    rule.remaining -= 1;
    rules.retain(|r| r.remaining > 0);
    Some(failure)
}
