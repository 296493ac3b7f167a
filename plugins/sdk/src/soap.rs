//! SOAP 1.1 for adapters that speak XML web services (vSphere's vim25).
//!
//! Requests are built as a small tree of [`Node`]s and written with quick-xml, so every
//! text and attribute value is escaped; responses are parsed with quick-xml into
//! [`Element`] trees. A SOAP fault becomes a [`SoapFault`] carrying the fault's type name
//! (from the `xsi:type` of the object in `detail`), its message and the detail object.

use std::fmt;

use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::name::ResolveResult;
use quick_xml::{NsReader, Writer};

const SOAPENV: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";
const XSD: &str = "http://www.w3.org/2001/XMLSchema";

/// An element to write: name, attributes, then either text or children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Element name, written as given (prefixes included).
    pub name: String,
    /// Attributes in order; values are escaped when written.
    pub attrs: Vec<(String, String)>,
    /// Text content; escaped when written.
    pub text: Option<String>,
    /// Child elements in order.
    pub children: Vec<Node>,
}

impl Node {
    /// An empty element.
    pub fn new(name: impl Into<String>) -> Self {
        Node { name: name.into(), attrs: Vec::new(), text: None, children: Vec::new() }
    }

    /// An element holding only `text`.
    pub fn text(name: impl Into<String>, text: impl Into<String>) -> Self {
        Node { text: Some(text.into()), ..Node::new(name) }
    }

    /// A ManagedObjectReference element (`<name type="Ty">value</name>`).
    pub fn moref(name: impl Into<String>, moref: &MoRef) -> Self {
        Node::text(name, moref.value.clone()).attr("type", moref.ty.clone())
    }

    /// Adds an attribute.
    pub fn attr(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.attrs.push((key.into(), value.into()));
        self
    }

    /// Sets `xsi:type`, as polymorphic vim25 slots (devices, backings, specs) need.
    pub fn xsi_type(self, ty: &str) -> Self {
        self.attr("xsi:type", ty)
    }

    /// Appends a child.
    pub fn child(mut self, child: Node) -> Self {
        self.children.push(child);
        self
    }

    /// Appends a child holding text.
    pub fn child_text(self, name: &str, text: impl Into<String>) -> Self {
        self.child(Node::text(name, text))
    }

    /// Appends children.
    pub fn children(mut self, children: impl IntoIterator<Item = Node>) -> Self {
        self.children.extend(children);
        self
    }

    fn write(&self, w: &mut Writer<Vec<u8>>) {
        let start = BytesStart::new(self.name.as_str()).with_attributes(self.attrs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        // Writing into a Vec cannot fail, so the results are ignored deliberately.
        if self.text.is_none() && self.children.is_empty() {
            let _ = w.write_event(Event::Empty(start));
            return;
        }
        let _ = w.write_event(Event::Start(start));
        if let Some(t) = &self.text {
            let _ = w.write_event(Event::Text(BytesText::new(t)));
        }
        for c in &self.children {
            c.write(w);
        }
        let _ = w.write_event(Event::End(BytesEnd::new(self.name.as_str())));
    }
}

/// Builds a SOAP 1.1 envelope calling `method` in namespace `ns` on `this`, with the
/// arguments in order (vim25 arguments are positional elements after `_this`).
pub fn envelope(ns: &str, method: &str, this: &MoRef, args: &[Node]) -> Vec<u8> {
    let mut w = Writer::new(Vec::new());
    let _ = w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)));
    let env = BytesStart::new("soapenv:Envelope").with_attributes([("xmlns:soapenv", SOAPENV), ("xmlns:xsd", XSD), ("xmlns:xsi", XSI)]);
    let _ = w.write_event(Event::Start(env));
    let _ = w.write_event(Event::Start(BytesStart::new("soapenv:Body")));
    let mut call = Node::new(method).attr("xmlns", ns).child(Node::moref("_this", this));
    call.children.extend(args.iter().cloned());
    call.write(&mut w);
    let _ = w.write_event(Event::End(BytesEnd::new("soapenv:Body")));
    let _ = w.write_event(Event::End(BytesEnd::new("soapenv:Envelope")));
    w.into_inner()
}

/// A ManagedObjectReference: the object's type and its server-side id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MoRef {
    /// Managed object type, such as `VirtualMachine`.
    pub ty: String,
    /// The id, such as `vm-42`.
    pub value: String,
}

impl MoRef {
    /// Builds a reference.
    pub fn new(ty: impl Into<String>, value: impl Into<String>) -> Self {
        MoRef { ty: ty.into(), value: value.into() }
    }
}

impl fmt::Display for MoRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.ty, self.value)
    }
}

/// A parsed element: local name, `xsi:type`, other attributes, children and text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    /// Local name (prefix dropped).
    pub name: String,
    /// The `xsi:type`, prefix dropped (`xsd:string` becomes `string`).
    pub xsi_type: Option<String>,
    /// Attributes outside the XSI namespace, by local name.
    pub attrs: Vec<(String, String)>,
    /// Child elements in document order.
    pub children: Vec<Element>,
    /// Unescaped text content.
    pub text: String,
}

impl Element {
    /// The first child with this local name.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Every child with this local name.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The trimmed text of the first child with this name.
    pub fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.trim())
    }

    /// Follows a path of child names (`["summary", "config", "name"]`).
    pub fn path(&self, names: &[&str]) -> Option<&Element> {
        names.iter().try_fold(self, |el, n| el.child(n))
    }

    /// An attribute outside the XSI namespace.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// A boolean child (`true` or `1`).
    pub fn child_bool(&self, name: &str) -> Option<bool> {
        self.child_text(name).map(|t| t == "true" || t == "1")
    }

    /// An integer child.
    pub fn child_i64(&self, name: &str) -> Option<i64> {
        self.child_text(name).and_then(|t| t.parse().ok())
    }

    /// The element's own trimmed text as an integer.
    pub fn as_i64(&self) -> Option<i64> {
        self.text.trim().parse().ok()
    }

    /// The element's own text as a boolean.
    pub fn as_bool(&self) -> Option<bool> {
        match self.text.trim() {
            "true" | "1" => Some(true),
            "false" | "0" => Some(false),
            _ => None,
        }
    }

    /// This element read as a ManagedObjectReference (its `type` attribute and text).
    pub fn as_moref(&self) -> Option<MoRef> {
        Some(MoRef::new(self.attr("type")?, self.text.trim()))
    }
}

/// Why a document could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XmlError {
    /// The XML is malformed.
    Malformed(String),
    /// Well-formed XML of the wrong shape (no envelope, no body...).
    Shape(String),
}

impl fmt::Display for XmlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            XmlError::Malformed(m) => write!(f, "malformed XML: {m}"),
            XmlError::Shape(m) => write!(f, "unexpected XML: {m}"),
        }
    }
}

fn malformed(e: impl fmt::Display) -> XmlError {
    XmlError::Malformed(e.to_string())
}

/// Parses a document into its root element.
pub fn parse_document(xml: &[u8]) -> Result<Element, XmlError> {
    let mut reader = NsReader::from_reader(xml);
    let mut stack: Vec<Element> = Vec::new();
    let mut root = None;
    loop {
        let event = reader.read_event().map_err(malformed)?;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let mut el = Element { name: String::from_utf8_lossy(e.local_name().as_ref()).into_owned(), ..Default::default() };
                for attr in e.attributes() {
                    let attr = attr.map_err(malformed)?;
                    if attr.key.as_ref().starts_with(b"xmlns") {
                        continue;
                    }
                    let (ns, local) = reader.resolve_attribute(attr.key);
                    let value = attr.unescape_value().map_err(malformed)?.into_owned();
                    let local = String::from_utf8_lossy(local.as_ref()).into_owned();
                    match ns {
                        ResolveResult::Bound(n) if n.as_ref() == XSI.as_bytes() => {
                            if local == "type" {
                                el.xsi_type = Some(value.rsplit(':').next().unwrap_or(&value).to_string());
                            }
                        }
                        _ => el.attrs.push((local, value)),
                    }
                }
                if matches!(event, Event::Empty(_)) {
                    attach(&mut stack, &mut root, el);
                } else {
                    stack.push(el);
                }
            }
            Event::End(_) => {
                let el = stack.pop().ok_or_else(|| XmlError::Shape("unbalanced end tag".into()))?;
                attach(&mut stack, &mut root, el);
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&t.xml10_content().map_err(malformed)?);
                }
            }
            Event::CData(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&t.decode().map_err(malformed)?);
                }
            }
            Event::GeneralRef(r) => {
                let resolved = if r.is_char_ref() {
                    r.resolve_char_ref().map_err(malformed)?.map(String::from)
                } else {
                    let name = r.decode().map_err(malformed)?;
                    quick_xml::escape::resolve_predefined_entity(&name).map(str::to_string)
                };
                let resolved = resolved.ok_or_else(|| XmlError::Shape("unknown entity reference".into()))?;
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&resolved);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err(XmlError::Shape("unterminated element".into()));
    }
    root.ok_or_else(|| XmlError::Shape("empty document".into()))
}

fn attach(stack: &mut [Element], root: &mut Option<Element>, el: Element) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(el),
        None => *root = Some(el),
    }
}

/// A SOAP fault: the fault object's type, the server's message and the fault object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoapFault {
    /// The fault type, such as `InvalidPowerState` (from the detail object's `xsi:type`,
    /// else its element name without the `Fault` suffix, else the `faultcode`).
    pub kind: String,
    /// `faultstring`.
    pub message: String,
    /// The fault object from `detail`, for its fields (`privilegeId`, `obj`...).
    pub detail: Element,
}

impl SoapFault {
    /// Reads a `Fault` element (from a SOAP body or a vim25 `LocalizedMethodFault.fault`).
    pub fn from_fault_element(fault: &Element) -> SoapFault {
        let detail = fault.child("detail").and_then(|d| d.children.first()).cloned().unwrap_or_default();
        let kind = detail
            .xsi_type
            .clone()
            .or_else(|| detail.name.strip_suffix("Fault").filter(|n| !n.is_empty()).map(str::to_string))
            .or_else(|| fault.child_text("faultcode").map(|c| c.rsplit(':').next().unwrap_or(c).to_string()))
            .unwrap_or_else(|| "UnknownFault".into());
        SoapFault { kind, message: fault.child_text("faultstring").unwrap_or_default().to_string(), detail }
    }
}

impl fmt::Display for SoapFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

/// What a SOAP response body held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The first element of the body (`<MethodResponse>`).
    Response(Element),
    /// A SOAP fault.
    Fault(SoapFault),
}

/// Parses a response document into its body's answer or its fault.
pub fn parse_response(xml: &[u8]) -> Result<Outcome, XmlError> {
    let root = parse_document(xml)?;
    if root.name != "Envelope" {
        return Err(XmlError::Shape(format!("root element is <{}>, not a SOAP Envelope", root.name)));
    }
    let body = root.child("Body").ok_or_else(|| XmlError::Shape("the envelope has no Body".into()))?;
    let first = body.children.first().ok_or_else(|| XmlError::Shape("the SOAP Body is empty".into()))?;
    if first.name == "Fault" {
        return Ok(Outcome::Fault(SoapFault::from_fault_element(first)));
    }
    Ok(Outcome::Response(first.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_escape_text_and_attributes() {
        let this = MoRef::new("SessionManager", "Session<Mgr>");
        let body = envelope("urn:vim25", "Login", &this, &[Node::text("userName", "a&b"), Node::text("password", "<\"pw'>")]);
        let text = String::from_utf8(body.clone()).unwrap();
        assert!(text.contains("a&amp;b"), "{text}");
        assert!(!text.contains("<\"pw'>"), "{text}");
        let root = parse_document(&body).unwrap();
        let call = root.child("Body").unwrap().child("Login").unwrap();
        assert_eq!(call.child("_this").unwrap().as_moref().unwrap(), this);
        assert_eq!(call.child_text("userName"), Some("a&b"));
        assert_eq!(call.child_text("password"), Some("<\"pw'>"));
    }

    #[test]
    fn typed_nodes_round_trip() {
        let n = Node::new("extraConfig").child_text("key", "disk.EnableUUID").child(Node::text("value", "TRUE").xsi_type("xsd:string"));
        let body = envelope("urn:vim25", "X", &MoRef::new("A", "b"), &[n]);
        let root = parse_document(&body).unwrap();
        let ec = root.path(&["Body", "X", "extraConfig"]).unwrap();
        assert_eq!(ec.child("value").unwrap().xsi_type.as_deref(), Some("string"));
    }

    #[test]
    fn faults_name_their_type_and_message() {
        let xml = br#"<?xml version="1.0"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>Permission to perform this operation was denied &amp; logged.</faultstring><detail><NoPermissionFault xmlns="urn:vim25" xsi:type="NoPermission"><object type="VirtualMachine">vm-1</object><privilegeId>VirtualMachine.Interact.PowerOff</privilegeId></NoPermissionFault></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"#;
        match parse_response(xml).unwrap() {
            Outcome::Fault(f) => {
                assert_eq!(f.kind, "NoPermission");
                assert_eq!(f.message, "Permission to perform this operation was denied & logged.");
                assert_eq!(f.detail.child_text("privilegeId"), Some("VirtualMachine.Interact.PowerOff"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn responses_and_bad_documents() {
        let xml = br#"<Envelope><Body><CurrentTimeResponse xmlns="urn:vim25"><returnval>2026-01-01T00:00:00Z</returnval></CurrentTimeResponse></Body></Envelope>"#;
        match parse_response(xml).unwrap() {
            Outcome::Response(r) => assert_eq!(r.child_text("returnval"), Some("2026-01-01T00:00:00Z")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse_response(b"<html>oops</html>"), Err(XmlError::Shape(_))));
        assert!(matches!(parse_response(b"<a><b></a>"), Err(XmlError::Malformed(_))));
    }
}
