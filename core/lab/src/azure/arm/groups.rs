//! Subscriptions and resource groups.

use super::{ArmResult, Ctx, fail, require_location, tags_of};
use crate::azure::lro::Effect;
use crate::azure::state::{ResourceGroup, State};
use axum::http::Method;
use serde_json::{Value, json};

fn sub_json(id: &str, name: &str) -> Value {
    json!({
        "id": format!("/subscriptions/{id}"), "subscriptionId": id, "displayName": name,
        "state": "Enabled", "authorizationSource": "RoleBased",
        "subscriptionPolicies": {"locationPlacementId": "Public_2014-09-01", "quotaId": "PayAsYouGo_2014-09-01", "spendingLimit": "Off"},
    })
}

pub(super) fn list_subscriptions(ctx: &Ctx, st: &State) -> ArmResult {
    let value: Vec<Value> = st.subs.values().map(|s| sub_json(&s.id, &s.name)).collect();
    Ok(ctx.json(200, &json!({ "value": value })))
}

pub(super) fn get_subscription(ctx: &Ctx, st: &State, sub: &str) -> ArmResult {
    let s = st.sub(sub).ok_or_else(|| fail(404, "SubscriptionNotFound", format!("The subscription '{sub}' could not be found.")))?;
    Ok(ctx.json(200, &sub_json(&s.id, &s.name)))
}

pub(crate) fn rg_json(sub: &str, rg: &ResourceGroup) -> Value {
    json!({
        "id": format!("/subscriptions/{sub}/resourceGroups/{}", rg.name),
        "name": rg.name, "type": "Microsoft.Resources/resourceGroups", "location": rg.location,
        "tags": rg.tags,
        "properties": {"provisioningState": if rg.deleting { "Deleting" } else { "Succeeded" }},
    })
}

pub(super) fn list(ctx: &Ctx, st: &State, sub: &str) -> ArmResult {
    let s = st.sub(sub).ok_or_else(|| fail(404, "SubscriptionNotFound", ""))?;
    let value: Vec<Value> = s.rgs.values().map(|g| rg_json(sub, g)).collect();
    Ok(ctx.json(200, &json!({ "value": value })))
}

pub(super) fn group(ctx: &Ctx, st: &mut State, sub: &str, name: &str) -> ArmResult {
    let key = name.to_ascii_lowercase();
    let missing = || fail(404, "ResourceGroupNotFound", format!("Resource group '{name}' could not be found."));
    match ctx.req.method {
        Method::GET => {
            let g = st.rg(sub, name).ok_or_else(missing)?;
            Ok(ctx.json(200, &rg_json(sub, g)))
        }
        Method::HEAD => Ok(ctx.empty(if st.rg(sub, name).is_some() { 204 } else { 404 })),
        Method::PUT | Method::PATCH => {
            let body = ctx.body_json()?;
            let s = st.sub_mut(sub).expect("subscription checked by the router");
            if let Some(g) = s.rgs.get_mut(&key) {
                if g.deleting {
                    return Err(fail(409, "ResourceGroupBeingDeleted", format!("The resource group '{name}' is in deprovisioning state and cannot perform this operation.")));
                }
                if body.get("tags").is_some() {
                    g.tags = tags_of(&body);
                }
                return Ok(ctx.json(200, &rg_json(sub, g)));
            }
            if ctx.req.method == Method::PATCH {
                return Err(missing());
            }
            let location = require_location(&body)?;
            validate_name(name)?;
            let g = ResourceGroup { name: name.to_string(), location, tags: tags_of(&body), ..Default::default() };
            let out = rg_json(sub, &g);
            s.rgs.insert(key, g);
            Ok(ctx.json(201, &out))
        }
        Method::DELETE => {
            let Some(g) = st.rg_mut(sub, name) else { return Ok(ctx.empty(404)) };
            if g.deleting {
                return Ok(ctx.empty(202));
            }
            g.deleting = true;
            let location = g.location.clone();
            let effect = Effect::DeleteGroup { sub: sub.into(), rg: name.into() };
            Ok(ctx.start_operation(st, sub, "Microsoft.Resources", &location, effect, None, 202, true, |_| None))
        }
        _ => Err(fail(405, "MethodNotAllowed", "The requested method is not allowed on a resource group.")),
    }
}

fn validate_name(name: &str) -> Result<(), super::ArmError> {
    let ok = !name.is_empty()
        && name.len() <= 90
        && !name.ends_with('.')
        && name.chars().all(|c| c.is_alphanumeric() || "-_.()".contains(c));
    if ok {
        Ok(())
    } else {
        Err(fail(400, "InvalidResourceGroup", format!("The provided resource group name '{name}' has these invalid characters or length.")))
    }
}

/// Completes a resource group deletion: the group and everything in it disappear.
pub(crate) fn apply_delete_group(st: &mut State, sub: &str, rg: &str, ok: bool) {
    let key = rg.to_ascii_lowercase();
    let Some(s) = st.sub_mut(sub) else { return };
    if !ok {
        if let Some(g) = s.rgs.get_mut(&key) {
            g.deleting = false;
        }
        return;
    }
    let Some(g) = s.rgs.remove(&key) else { return };
    for d in g.disks.values().chain(g.snapshots.values()) {
        let _ = st.blobs.delete_blob(&d.blob);
    }
}
