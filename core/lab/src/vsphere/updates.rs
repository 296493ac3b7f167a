//! Standing property filters and `WaitForUpdatesEx`, the way vSphere clients usually wait
//! for tasks: CreateFilter on the task's `info`, then WaitForUpdatesEx until it settles.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Site;
use super::collector::{self, Collected};
use super::faults::Fault;
use super::inventory::{Inventory, User};
use super::soap::{Data, Element, MoRef, Value};

/// A PropertyFilter created by a session.
#[derive(Debug, Clone)]
pub struct Filter {
    /// Owning session key.
    pub session: String,
    /// The PropertyFilterSpec as sent.
    pub spec: Element,
    /// What the session was last told, per object.
    pub last: BTreeMap<MoRef, Vec<(String, Value)>>,
}

/// CreateFilter: registers a standing filter for the session.
pub fn create(inv: &mut Inventory, session: &str, spec: &Element) -> MoRef {
    let id = format!("session[{session}]{}", uuid::Uuid::new_v4());
    inv.filters.insert(
        id.clone(),
        Filter {
            session: session.to_string(),
            spec: spec.clone(),
            last: BTreeMap::new(),
        },
    );
    MoRef::new("PropertyFilter", id)
}

fn change(name: &str, val: Option<&Value>) -> Value {
    let op = if val.is_some() { "assign" } else { "remove" };
    Data::new("PropertyChange")
        .with("name", name)
        .with("op", Value::Enum("PropertyChangeOp", op.into()))
        .with_opt("val", val.map(|v| Value::Any(Box::new(v.clone()))))
        .into()
}

fn object_update(kind: &str, obj: &MoRef, changes: Vec<Value>) -> Value {
    Data::new("ObjectUpdate")
        .with("kind", Value::Enum("ObjectUpdateKind", kind.into()))
        .with("obj", obj)
        .with("changeSet", Value::Array("PropertyChange", changes))
        .into()
}

/// Differences between what a filter last reported and what it selects now.
fn diff(last: &BTreeMap<MoRef, Vec<(String, Value)>>, now: &Collected) -> Vec<Value> {
    let mut out = Vec::new();
    for (obj, props) in now {
        match last.get(obj) {
            None => {
                let changes = props.iter().map(|(n, v)| change(n, Some(v))).collect();
                out.push(object_update("enter", obj, changes));
            }
            Some(before) => {
                let mut changes: Vec<Value> = props
                    .iter()
                    .filter(|(n, v)| !before.iter().any(|(bn, bv)| bn == n && bv == v))
                    .map(|(n, v)| change(n, Some(v)))
                    .collect();
                changes.extend(
                    before
                        .iter()
                        .filter(|(bn, _)| !props.iter().any(|(n, _)| n == bn))
                        .map(|(bn, _)| change(bn, None)),
                );
                if !changes.is_empty() {
                    out.push(object_update("modify", obj, changes));
                }
            }
        }
    }
    for obj in last.keys() {
        if !now.iter().any(|(o, _)| o == obj) {
            out.push(object_update("leave", obj, Vec::new()));
        }
    }
    out
}

/// One pass over the session's filters; `Some(UpdateSet)` when anything changed.
fn poll(
    inv: &mut Inventory,
    session: &str,
    user: &User,
    from_scratch: bool,
) -> Result<Option<Value>, Fault> {
    let ids: Vec<String> = inv
        .filters
        .iter()
        .filter(|(_, f)| f.session == session)
        .map(|(k, _)| k.clone())
        .collect();
    let mut filter_set = Vec::new();
    for id in ids {
        let spec = inv.filters[&id].spec.clone();
        let now = collector::collect(inv, &[&spec], user, session, true)?;
        let filter = inv.filters.get_mut(&id).expect("filter listed above");
        if from_scratch {
            filter.last.clear();
        }
        let updates = diff(&filter.last, &now);
        filter.last = now.into_iter().collect();
        if !updates.is_empty() {
            filter_set.push(
                Data::new("PropertyFilterUpdate")
                    .with("filter", MoRef::new("PropertyFilter", id))
                    .with("objectSet", Value::Array("ObjectUpdate", updates))
                    .into(),
            );
        }
    }
    if filter_set.is_empty() {
        return Ok(None);
    }
    let version = inv.update_versions.entry(session.to_string()).or_insert(0);
    *version += 1;
    Ok(Some(
        Data::new("UpdateSet")
            .with("version", version.to_string())
            .with(
                "filterSet",
                Value::Array("PropertyFilterUpdate", filter_set),
            )
            .with("truncated", false)
            .into(),
    ))
}

/// WaitForUpdatesEx / WaitForUpdates / CheckForUpdates: waits (up to `maxWaitSeconds`, or
/// indefinitely when unset) until a filter of the session sees a change.
///
/// The lab keeps one "last reported" state per filter, so a client is expected to pass
/// the version it last received; an empty version restarts from the full state, as in vSphere.
pub async fn wait(
    site: &Arc<Site>,
    op: &Element,
    cookie: Option<&str>,
) -> Result<Vec<Value>, Fault> {
    let version = op.child_text("version").unwrap_or_default();
    let max_wait = match op.name.as_str() {
        "CheckForUpdates" => Some(0),
        _ => op
            .child("options")
            .and_then(|o| o.child_i64("maxWaitSeconds")),
    };
    let deadline = max_wait.map(|s| Instant::now() + Duration::from_secs(s.max(0) as u64));
    let mut from_scratch = version.is_empty();
    loop {
        {
            let mut inv = site.lock();
            let (session, user) = super::methods::authenticate(&inv, op, cookie)?;
            if let Some(set) = poll(&mut inv, &session, &user, from_scratch)? {
                return Ok(vec![set]);
            }
        }
        from_scratch = false;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(vec![]);
        }
        // Changes come from many places (tasks, the lab API, /folder); polling the
        // inventory keeps them all visible without hooks in each.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
