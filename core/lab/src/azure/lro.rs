//! Long-running operations shared by Resource Manager (`Azure-AsyncOperation` / `Location`)
//! and classic Service Management (`x-ms-request-id` + `/operations/{id}`).
//!
//! An operation finishes once it has been polled `polls` times and `min_duration` has passed
//! (both from [`LroPolicy`]); only then does its effect land on the resources, so clients
//! that skip polling see the transitional states real Azure shows.

use super::http::{iso8601, unix_now};
use super::state::{ClassicPower, Power, State};
use serde_json::Value;
use std::time::{Duration, Instant};

/// How long operations stay `InProgress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LroPolicy {
    /// Status polls (either URL) answered `InProgress` before the operation completes.
    pub polls: u32,
    /// Minimum wall time before the operation completes.
    pub min_duration: Duration,
    /// Value of `Retry-After` on operation responses, in seconds.
    pub retry_after_secs: u32,
}

impl Default for LroPolicy {
    fn default() -> Self {
        Self { polls: 1, min_duration: Duration::ZERO, retry_after_secs: 1 }
    }
}

/// Which resource map an effect refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Vm,
    Disk,
    Snapshot,
    VirtualNetwork,
    NetworkInterface,
}

/// Addresses a Resource Manager resource by subscription, group and name (all as given).
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub sub: String,
    pub rg: String,
    pub name: String,
}

/// What completing an operation does.
#[derive(Debug, Clone)]
pub(crate) enum Effect {
    Provisioned(Kind, Target),
    VmPower { target: Target, to: Power, from: Power },
    Delete(Kind, Target),
    DeleteGroup { sub: String, rg: String },
    GrantAccess(Kind, Target, String),
    RevokeAccess(Kind, Target),
    ClassicPower { sub: String, service: String, role: String, to: ClassicPower, status: String, from: ClassicPower, from_status: String },
    ClassicDeleteRole { sub: String, service: String, role: String, delete_media: bool },
}

/// Who the operation belongs to, which decides its status URL.
#[derive(Debug, Clone)]
pub(crate) enum Scope {
    Arm { sub: String, provider: String, location: String },
    Classic { sub: String },
}

/// A started operation.
#[derive(Debug, Clone)]
pub(crate) struct Operation {
    pub id: String,
    pub scope: Scope,
    started: Instant,
    pub start_iso: String,
    pub end_iso: Option<String>,
    pub polls: u32,
    pub failure: Option<(String, String)>,
    pub effect: Effect,
    pub finished: bool,
    /// Body the `Location` URL returns on success (e.g. `{"accessSAS": …}`).
    pub result: Option<Value>,
}

impl Operation {
    pub fn new(scope: Scope, effect: Effect, failure: Option<(String, String)>, result: Option<Value>) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            scope,
            started: Instant::now(),
            start_iso: iso8601(unix_now()),
            end_iso: None,
            polls: 0,
            failure,
            effect,
            finished: false,
            result,
        }
    }

    /// `InProgress`, `Succeeded` or `Failed`.
    pub fn status(&self) -> &'static str {
        match (self.finished, &self.failure) {
            (false, _) => "InProgress",
            (true, None) => "Succeeded",
            (true, Some(_)) => "Failed",
        }
    }
}

/// Registers an operation; applies it at once when the policy asks for no polls or time.
pub(crate) fn start(state: &mut State, policy: &LroPolicy, op: Operation) -> String {
    let id = op.id.clone();
    state.ops.insert(id.clone(), op);
    settle(state, policy);
    id
}

/// Counts a poll of operation `id` and settles; `false` when the operation is unknown.
pub(crate) fn poll(state: &mut State, policy: &LroPolicy, id: &str) -> bool {
    match state.ops.get_mut(id) {
        Some(op) => {
            op.polls += 1;
            settle(state, policy);
            true
        }
        None => false,
    }
}

/// Completes every operation whose polls and time are used up, applying its effect.
pub(crate) fn settle(state: &mut State, policy: &LroPolicy) {
    let due: Vec<String> = state
        .ops
        .values()
        .filter(|op| !op.finished && op.polls >= policy.polls && op.started.elapsed() >= policy.min_duration)
        .map(|op| op.id.clone())
        .collect();
    for id in due {
        let Some(op) = state.ops.get_mut(&id) else { continue };
        op.finished = true;
        op.end_iso = Some(iso8601(unix_now()));
        let effect = op.effect.clone();
        let ok = op.failure.is_none();
        tracing::debug!(operation = %id, ok, "operation completed");
        apply(state, effect, ok);
    }
}

fn apply(state: &mut State, effect: Effect, ok: bool) {
    let outcome = if ok { "Succeeded" } else { "Failed" };
    match effect {
        Effect::Provisioned(kind, t) => {
            let Some(rg) = state.rg_mut(&t.sub, &t.rg) else { return };
            let key = t.name.to_ascii_lowercase();
            match kind {
                Kind::Vm => {
                    if let Some(vm) = rg.vms.get_mut(&key) {
                        vm.provisioning = outcome.into();
                        if vm.power == Power::Starting {
                            vm.power = if ok { Power::Running } else { Power::Stopped };
                        }
                    }
                }
                Kind::Disk => rg.disks.get_mut(&key).into_iter().for_each(|d| d.provisioning = outcome.into()),
                Kind::Snapshot => rg.snapshots.get_mut(&key).into_iter().for_each(|d| d.provisioning = outcome.into()),
                Kind::VirtualNetwork => rg.vnets.get_mut(&key).into_iter().for_each(|g| g.provisioning = outcome.into()),
                Kind::NetworkInterface => rg.nics.get_mut(&key).into_iter().for_each(|g| g.provisioning = outcome.into()),
            }
        }
        Effect::VmPower { target, to, from } => {
            if let Some(vm) = state.rg_mut(&target.sub, &target.rg).and_then(|rg| rg.vms.get_mut(&target.name.to_ascii_lowercase())) {
                vm.power = if ok { to } else { from };
                vm.provisioning = outcome.into();
            }
        }
        Effect::Delete(kind, t) => super::arm::apply_delete(state, kind, &t, ok),
        Effect::DeleteGroup { sub, rg } => super::arm::apply_delete_group(state, &sub, &rg, ok),
        Effect::GrantAccess(kind, t, sas) => {
            if let Some(d) = super::arm::disk_mut(state, kind, &t) {
                d.access_sas = ok.then_some(sas);
            }
        }
        Effect::RevokeAccess(kind, t) => {
            if let Some(d) = super::arm::disk_mut(state, kind, &t).filter(|_| ok) {
                d.access_sas = None;
                d.upload_pending = false;
            }
        }
        Effect::ClassicPower { sub, service, role, to, status, from, from_status } => {
            if let Some(r) = super::classic::role_mut(state, &sub, &service, &role) {
                (r.power, r.instance_status) = if ok { (to, status) } else { (from, from_status) };
            }
        }
        Effect::ClassicDeleteRole { sub, service, role, delete_media } => {
            super::classic::apply_delete_role(state, &sub, &service, &role, delete_media, ok)
        }
    }
}
