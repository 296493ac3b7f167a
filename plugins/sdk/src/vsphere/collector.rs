//! Property retrieval: `RetrievePropertiesEx` over a ContainerView of the whole inventory
//! (or over named objects), following `ContinueRetrievePropertiesEx` tokens.

use super::session::Client;
use crate::error;
use crate::soap::{Element, MoRef, Node};
use crate::types::AdapterError;

/// One object and the properties the server returned for it. Unset optional properties
/// are absent, as vSphere omits them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectContent {
    /// The object.
    pub obj: MoRef,
    /// (property path, `<val>` element).
    pub props: Vec<(String, Element)>,
}

impl ObjectContent {
    /// The value of a property path, if set.
    pub fn get(&self, path: &str) -> Option<&Element> {
        self.props.iter().find(|(p, _)| p == path).map(|(_, v)| v)
    }

    /// A property's trimmed text, or empty.
    pub fn text(&self, path: &str) -> String {
        self.get(path).map(|v| v.text.trim().to_string()).unwrap_or_default()
    }

    /// A property read as an integer.
    pub fn int(&self, path: &str) -> Option<i64> {
        self.get(path).and_then(Element::as_i64)
    }

    /// A property read as a boolean.
    pub fn bool(&self, path: &str) -> Option<bool> {
        self.get(path).and_then(Element::as_bool)
    }

    /// A property read as a moref.
    pub fn moref(&self, path: &str) -> Option<MoRef> {
        self.get(path).and_then(Element::as_moref)
    }
}

const PAGE: i64 = 500;

fn prop_set(ty: &str, paths: &[&str]) -> Node {
    Node::new("propSet").child_text("type", ty).children(paths.iter().map(|p| Node::text("pathSet", *p)))
}

/// Every object of type `ty` in the inventory (a recursive ContainerView on the root
/// folder), with `paths`.
pub fn all_of_type(client: &Client, ty: &str, paths: &[&str]) -> Result<Vec<ObjectContent>, AdapterError> {
    all_of_types(client, &[ty], paths)
}

/// Every object of any of `types` in the inventory, with `paths` (which every type must
/// have).
pub fn all_of_types(client: &Client, types: &[&str], paths: &[&str]) -> Result<Vec<ObjectContent>, AdapterError> {
    let content = client.content();
    let what = format!("listing {} objects", types.join("/"));
    let mut args = vec![Node::moref("container", &content.root_folder)];
    args.extend(types.iter().map(|t| Node::text("type", *t)));
    args.push(Node::text("recursive", "true"));
    let view = client
        .invoke("CreateContainerView", &content.view_manager, &args, &what)?
        .child("returnval")
        .and_then(Element::as_moref)
        .ok_or_else(|| error::internal(format!("{what}: CreateContainerView returned no view")))?;
    let spec = Node::new("specSet").children(types.iter().map(|t| prop_set(t, paths))).child(
        Node::new("objectSet")
            .child(Node::moref("obj", &view))
            .child_text("skip", "true")
            .child(Node::new("selectSet").xsi_type("TraversalSpec").child_text("name", "traverseView").child_text("type", "ContainerView").child_text("path", "view").child_text("skip", "false")),
    );
    let result = retrieve(client, spec, &what);
    // A view left behind only costs server memory until the session ends; never fail the
    // listing for it.
    let _ = client.call("DestroyView", &view, &[]);
    result
}

/// `paths` of the named objects (all of type `ty`).
pub fn of_objects(client: &Client, objs: &[MoRef], paths: &[&str]) -> Result<Vec<ObjectContent>, AdapterError> {
    let Some(first) = objs.first() else { return Ok(Vec::new()) };
    let what = format!("reading {}", objs.iter().map(|o| o.to_string()).collect::<Vec<_>>().join(", "));
    let spec = Node::new("specSet")
        .child(prop_set(&first.ty, paths))
        .children(objs.iter().map(|o| Node::new("objectSet").child(Node::moref("obj", o)).child_text("skip", "false")));
    retrieve(client, spec, &what)
}

/// `paths` of one object; `not-found` if it does not exist.
pub fn of_object(client: &Client, obj: &MoRef, paths: &[&str]) -> Result<ObjectContent, AdapterError> {
    of_objects(client, std::slice::from_ref(obj), paths)?
        .into_iter()
        .next()
        // An object the server returns nothing for is as good as absent.
        .ok_or_else(|| error::not_found(format!("{obj} does not exist on the site")))
}

fn retrieve(client: &Client, spec: Node, what: &str) -> Result<Vec<ObjectContent>, AdapterError> {
    let pc = client.content().property_collector.clone();
    let options = Node::new("options").child_text("maxObjects", PAGE.to_string());
    let mut page = client.invoke("RetrievePropertiesEx", &pc, &[spec, options], what)?;
    let mut out = Vec::new();
    while let Some(rv) = page.child("returnval") {
        out.extend(rv.children_named("objects").filter_map(object_content));
        let Some(token) = rv.child_text("token").map(str::to_string) else { break };
        page = client.invoke("ContinueRetrievePropertiesEx", &pc, &[Node::text("token", token)], what)?;
    }
    Ok(out)
}

fn object_content(o: &Element) -> Option<ObjectContent> {
    let obj = o.child("obj")?.as_moref()?;
    let props = o
        .children_named("propSet")
        .filter_map(|p| Some((p.child_text("name")?.to_string(), p.child("val")?.clone())))
        .collect();
    Some(ObjectContent { obj, props })
}
