//! Scripted faults: latency, SOAP faults for the next N calls of a method, and dropped
//! connections. Rules name a SOAP method (`PowerOnVM_Task`) or a datastore file access
//! (`GET /folder`, `PUT /folder`); `None` matches every request.

use std::time::Duration;

use super::faults::Fault;

#[derive(Debug, Clone)]
struct FaultRule {
    method: String,
    remaining: u32,
    fault: Fault,
}

#[derive(Debug, Clone)]
struct DropRule {
    method: Option<String>,
    remaining: u32,
}

#[derive(Debug, Clone)]
struct ThrottleRule {
    method: Option<String>,
    remaining: u32,
    retry_after_secs: u32,
}

/// The active fault-injection rules.
#[derive(Debug, Default)]
pub struct Injections {
    latency: Vec<(Option<String>, Duration)>,
    faults: Vec<FaultRule>,
    drops: Vec<DropRule>,
    throttles: Vec<ThrottleRule>,
}

impl Injections {
    /// Adds `delay` before answering calls of `method` (or every call).
    pub fn add_latency(&mut self, method: Option<&str>, delay: Duration) {
        self.latency.retain(|(m, _)| m.as_deref() != method);
        self.latency.push((method.map(str::to_string), delay));
    }

    /// Makes the next `count` calls of `method` fail with `fault`.
    pub fn add_fault(&mut self, method: &str, count: u32, fault: Fault) {
        self.faults.push(FaultRule {
            method: method.to_string(),
            remaining: count,
            fault,
        });
    }

    /// Makes the next `count` calls of `method` (or any request) lose their connection.
    pub fn add_drop(&mut self, method: Option<&str>, count: u32) {
        self.drops.push(DropRule {
            method: method.map(str::to_string),
            remaining: count,
        });
    }

    /// Makes the next `count` calls of `method` (or any request) answer HTTP 429 with
    /// `Retry-After: retry_after_secs`, as a throttling proxy in front of vCenter does.
    pub fn add_throttle(&mut self, method: Option<&str>, count: u32, retry_after_secs: u32) {
        self.throttles.push(ThrottleRule {
            method: method.map(str::to_string),
            remaining: count,
            retry_after_secs,
        });
    }

    /// Consumes one injected throttle for this call, if any; returns its Retry-After.
    pub fn take_throttle(&mut self, method: &str) -> Option<u32> {
        let rule = self
            .throttles
            .iter_mut()
            .find(|r| r.remaining > 0 && r.method.as_deref().is_none_or(|m| m == method))?;
        rule.remaining -= 1;
        let secs = rule.retry_after_secs;
        self.throttles.retain(|r| r.remaining > 0);
        Some(secs)
    }

    /// Removes every rule.
    pub fn clear(&mut self) {
        *self = Injections::default();
    }

    /// The delay for a call: the method's own rule wins over the catch-all.
    pub fn latency_for(&self, method: &str) -> Duration {
        let specific = self
            .latency
            .iter()
            .find(|(m, _)| m.as_deref() == Some(method));
        let any = self.latency.iter().find(|(m, _)| m.is_none());
        specific.or(any).map(|(_, d)| *d).unwrap_or_default()
    }

    /// Consumes one injected fault for this call, if any.
    pub fn take_fault(&mut self, method: &str) -> Option<Fault> {
        let rule = self
            .faults
            .iter_mut()
            .find(|r| r.method == method && r.remaining > 0)?;
        rule.remaining -= 1;
        let fault = rule.fault.clone();
        self.faults.retain(|r| r.remaining > 0);
        Some(fault)
    }

    /// Consumes one injected connection drop for this call, if any.
    pub fn take_drop(&mut self, method: &str) -> bool {
        let Some(rule) = self
            .drops
            .iter_mut()
            .find(|r| r.remaining > 0 && r.method.as_deref().is_none_or(|m| m == method))
        else {
            return false;
        };
        rule.remaining -= 1;
        self.drops.retain(|r| r.remaining > 0);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_and_drops_are_counted_down() {
        let mut i = Injections::default();
        i.add_fault("PowerOnVM_Task", 2, Fault::system_error("x"));
        assert!(i.take_fault("PowerOffVM_Task").is_none());
        assert!(i.take_fault("PowerOnVM_Task").is_some());
        assert!(i.take_fault("PowerOnVM_Task").is_some());
        assert!(i.take_fault("PowerOnVM_Task").is_none());
        i.add_drop(None, 1);
        assert!(i.take_drop("Login"));
        assert!(!i.take_drop("Login"));
        i.add_latency(None, Duration::from_millis(5));
        i.add_latency(Some("Login"), Duration::from_millis(9));
        assert_eq!(i.latency_for("Login"), Duration::from_millis(9));
        assert_eq!(i.latency_for("Logout"), Duration::from_millis(5));
    }

    #[test]
    fn throttles_are_counted_down_and_carry_retry_after() {
        let mut i = Injections::default();
        i.add_throttle(Some("RetrievePropertiesEx"), 1, 7);
        assert_eq!(i.take_throttle("Login"), None);
        assert_eq!(i.take_throttle("RetrievePropertiesEx"), Some(7));
        assert_eq!(i.take_throttle("RetrievePropertiesEx"), None);
        i.add_throttle(None, 2, 3);
        assert_eq!(i.take_throttle("Login"), Some(3));
        i.clear();
        assert_eq!(i.take_throttle("Login"), None);
    }
}
