//! The PropertyCollector: object traversal (TraversalSpec/SelectionSpec), container
//! views, property selection by path, and result paging.

use std::collections::BTreeSet;

use super::faults::Fault;
use super::inventory::{Inventory, View};
use super::properties::{known, properties};
use super::soap::{Data, Element, MoRef, Value};

/// Direct inventory children of an entity, as a ContainerView walks them.
fn children(inv: &Inventory, obj: &MoRef) -> Vec<MoRef> {
    let dc = &inv.datacenter;
    match obj.ty.as_str() {
        "Folder" if obj == &inv.root_folder => vec![dc.moref.clone()],
        "Folder" if obj == &dc.vm_folder => inv.vms.values().map(|v| v.moref.clone()).collect(),
        "Folder" if obj == &dc.host_folder => inv.hosts.iter().map(|h| h.compute.clone()).collect(),
        "Folder" if obj == &dc.datastore_folder => {
            inv.datastores.iter().map(|d| d.moref.clone()).collect()
        }
        "Folder" if obj == &dc.network_folder => {
            inv.networks.iter().map(|n| n.moref.clone()).collect()
        }
        "Datacenter" => vec![
            dc.vm_folder.clone(),
            dc.host_folder.clone(),
            dc.datastore_folder.clone(),
            dc.network_folder.clone(),
        ],
        "ComputeResource" => inv
            .hosts
            .iter()
            .filter(|h| &h.compute == obj)
            .flat_map(|h| [h.moref.clone(), h.pool.clone()])
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether an object of type `actual` satisfies a spec naming `wanted` (vim25 inheritance
/// for the types the lab has).
pub fn type_matches(wanted: &str, actual: &str) -> bool {
    wanted == actual
        || (wanted == "ManagedEntity"
            && matches!(
                actual,
                "Folder"
                    | "Datacenter"
                    | "ComputeResource"
                    | "ResourcePool"
                    | "HostSystem"
                    | "Datastore"
                    | "Network"
                    | "VirtualMachine"
            ))
        || (wanted == "View" && actual == "ContainerView")
}

/// The objects a container view currently shows.
pub fn view_members(inv: &Inventory, view: &View) -> Vec<MoRef> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    let mut frontier = children(inv, &view.container);
    while let Some(obj) = (!frontier.is_empty()).then(|| frontier.remove(0)) {
        if !seen.insert(obj.clone()) {
            continue;
        }
        if view.types.is_empty() || view.types.iter().any(|t| type_matches(t, &obj.ty)) {
            out.push(obj.clone());
        }
        if view.recursive {
            frontier.extend(children(inv, &obj));
        }
    }
    out
}

/// A parsed TraversalSpec.
#[derive(Debug, Clone)]
struct Traversal {
    ty: String,
    path: String,
    skip: bool,
    select: Vec<Selection>,
}

#[derive(Debug, Clone)]
enum Selection {
    Named(String),
    Inline(Traversal),
}

fn parse_selection(el: &Element, named: &mut Vec<(String, Traversal)>) -> Selection {
    let is_traversal = el.xsi_type.as_deref() == Some("TraversalSpec")
        || (el.child("type").is_some() && el.child("path").is_some());
    if !is_traversal {
        return Selection::Named(el.child_text("name").unwrap_or_default().to_string());
    }
    let t = Traversal {
        ty: el.child_text("type").unwrap_or_default().to_string(),
        path: el.child_text("path").unwrap_or_default().to_string(),
        skip: el.child_bool("skip").unwrap_or(false),
        select: el
            .children_named("selectSet")
            .map(|c| parse_selection(c, named))
            .collect(),
    };
    if let Some(name) = el.child_text("name").filter(|n| !n.is_empty()) {
        named.push((name.to_string(), t.clone()));
    }
    Selection::Inline(t)
}

fn ref_values(v: &Value) -> Vec<MoRef> {
    match v {
        Value::Ref(m) => vec![m.clone()],
        Value::Array(_, items) => items.iter().flat_map(ref_values).collect(),
        _ => Vec::new(),
    }
}

struct Walk<'a> {
    inv: &'a Inventory,
    named: &'a [(String, Traversal)],
    user: &'a str,
    session: &'a str,
    out: Vec<MoRef>,
}

impl Walk<'_> {
    fn visit(&mut self, obj: &MoRef, skip: bool, select: &[Selection], depth: usize) {
        if !skip && !self.out.contains(obj) {
            self.out.push(obj.clone());
        }
        // The inventory is a tree, so only recursive specs (a folder spec selecting
        // itself) could loop; a depth bound stops them.
        if depth > 16 {
            return;
        }
        for sel in select {
            let t = match sel {
                Selection::Inline(t) => t.clone(),
                Selection::Named(n) => match self.named.iter().find(|(name, _)| name == n) {
                    Some((_, t)) => t.clone(),
                    None => continue,
                },
            };
            if !type_matches(&t.ty, &obj.ty) {
                continue;
            }
            let Ok(props) = properties(self.inv, obj, self.user, self.session) else {
                continue;
            };
            let path: Vec<&str> = t.path.split('.').collect();
            let Some(v) = props
                .iter()
                .find(|(k, _)| *k == path[0])
                .and_then(|(_, v)| v.walk(&path[1..]))
            else {
                continue;
            };
            for child in ref_values(&v) {
                if self.inv.exists(&child) {
                    self.visit(&child, t.skip, &t.select, depth + 1);
                }
            }
        }
    }
}

/// Evaluates `specSet` (PropertyFilterSpec elements) and returns `ObjectContent`s.
pub fn retrieve(
    inv: &Inventory,
    spec_set: &[&Element],
    user: &super::inventory::User,
    session: &str,
) -> Result<Vec<Value>, Fault> {
    Ok(collect(inv, spec_set, user, session, false)?
        .into_iter()
        .map(|(obj, props)| {
            let prop_set = props
                .into_iter()
                .map(|(name, v)| {
                    Value::Data(
                        Data::new("DynamicProperty")
                            .with("name", name)
                            .with("val", Value::Any(Box::new(v))),
                    )
                })
                .collect();
            Data::new("ObjectContent")
                .with("obj", &obj)
                .with("propSet", Value::Array("DynamicProperty", prop_set))
                .into()
        })
        .collect())
}

/// Objects selected by the filter specs with their requested `(path, value)` pairs.
pub type Collected = Vec<(MoRef, Vec<(String, Value)>)>;

/// Evaluates filter specs into objects and `(path, value)` pairs. `lenient` skips start
/// objects that no longer exist, as a standing filter must when a VM is deleted.
pub fn collect(
    inv: &Inventory,
    spec_set: &[&Element],
    user: &super::inventory::User,
    session: &str,
    lenient: bool,
) -> Result<Collected, Fault> {
    let mut results: Collected = Vec::new();
    for spec in spec_set {
        let mut named = Vec::new();
        let mut roots = Vec::new();
        for os in spec.children_named("objectSet") {
            let obj = os
                .child("obj")
                .and_then(Element::as_moref)
                .ok_or_else(|| Fault::invalid_argument("specSet.objectSet.obj"))?;
            if !inv.exists(&obj) {
                if lenient {
                    continue;
                }
                return Err(Fault::not_found(&obj));
            }
            let select: Vec<Selection> = os
                .children_named("selectSet")
                .map(|c| parse_selection(c, &mut named))
                .collect();
            roots.push((obj, os.child_bool("skip").unwrap_or(false), select));
        }
        let mut walk = Walk {
            inv,
            named: &named,
            user: &user.name,
            session,
            out: Vec::new(),
        };
        for (obj, skip, select) in &roots {
            walk.visit(obj, *skip, select, 0);
        }
        // The property collector only shows what the user may read.
        if !user.has("System.Read") {
            continue;
        }
        let prop_specs: Vec<(String, bool, Vec<String>)> = spec
            .children_named("propSet")
            .map(|p| {
                (
                    p.child_text("type").unwrap_or_default().to_string(),
                    p.child_bool("all").unwrap_or(false),
                    p.children_named("pathSet")
                        .map(|x| x.text.trim().to_string())
                        .collect(),
                )
            })
            .collect();
        for obj in walk.out {
            let matching: Vec<&(String, bool, Vec<String>)> = prop_specs
                .iter()
                .filter(|(t, _, _)| type_matches(t, &obj.ty))
                .collect();
            if matching.is_empty() {
                continue;
            }
            let all = matching.iter().any(|(_, a, _)| *a);
            let mut paths: Vec<String> = Vec::new();
            for (_, _, p) in &matching {
                for x in p {
                    if !paths.contains(x) {
                        paths.push(x.clone());
                    }
                }
            }
            if all {
                for k in known(&obj.ty) {
                    if !paths.iter().any(|p| p == k) {
                        paths.push(k.to_string());
                    }
                }
            }
            for p in &paths {
                let top = p.split('.').next().unwrap_or_default();
                if !known(&obj.ty).contains(&top) {
                    return Err(Fault::invalid_property(p));
                }
            }
            let props = match properties(inv, &obj, &user.name, session) {
                Ok(p) => p,
                Err(_) => continue,
            };
            let mut prop_set = Vec::new();
            for p in &paths {
                let parts: Vec<&str> = p.split('.').collect();
                let Some(v) = props
                    .iter()
                    .find(|(k, _)| *k == parts[0])
                    .and_then(|(_, v)| v.walk(&parts[1..]))
                else {
                    continue;
                };
                prop_set.push((p.clone(), v));
            }
            results.push((obj, prop_set));
        }
    }
    Ok(results)
}

/// Builds a `RetrieveResult`, keeping the remainder as a page behind a token when
/// `max_objects` is smaller than the result.
pub fn page(
    inv: &mut Inventory,
    mut objects: Vec<Value>,
    max_objects: Option<usize>,
) -> Option<Value> {
    if objects.is_empty() {
        return None;
    }
    let mut token = None;
    if let Some(max) = max_objects.filter(|m| *m > 0 && objects.len() > *m) {
        let rest = objects.split_off(max);
        let t = inv.next().to_string();
        inv.pages.insert(t.clone(), (max, rest));
        token = Some(t);
    }
    Some(
        Data::new("RetrieveResult")
            .with_opt("token", token)
            .with("objects", Value::Array("ObjectContent", objects))
            .into(),
    )
}
