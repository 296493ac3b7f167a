//! SOAP 1.1 envelopes in the vim25 dialect: parsing requests into a small element tree and
//! writing responses, data objects and faults with the namespaces and `xsi:type`s real
//! vCenter and ESXi use.

use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::name::ResolveResult;
use quick_xml::{NsReader, Writer};

use super::faults::Fault;

/// Namespace of every vim25 element.
pub const VIM25: &str = "urn:vim25";
const SOAPENV: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";

/// A parsed XML element: local name, `xsi:type`, plain attributes, children and text.
#[derive(Debug, Clone, Default)]
pub struct Element {
    /// Local name (namespace prefix dropped).
    pub name: String,
    /// The `xsi:type` attribute, prefix dropped (`xsd:string` becomes `string`).
    pub xsi_type: Option<String>,
    /// Attributes not in the XSI namespace, by local name (e.g. a moref's `type`).
    pub attrs: Vec<(String, String)>,
    /// Child elements in document order.
    pub children: Vec<Element>,
    /// Concatenated, unescaped text content.
    pub text: String,
}

impl Element {
    /// First child with this local name.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// All children with this local name.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// Text of the first child with this name.
    pub fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.trim())
    }

    /// A plain (non-XSI) attribute.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Boolean child (`true`/`1`), if present.
    pub fn child_bool(&self, name: &str) -> Option<bool> {
        self.child_text(name).map(|t| t == "true" || t == "1")
    }

    /// Integer child, if present and numeric.
    pub fn child_i64(&self, name: &str) -> Option<i64> {
        self.child_text(name).and_then(|t| t.parse().ok())
    }

    /// This element read as a ManagedObjectReference.
    pub fn as_moref(&self) -> Option<MoRef> {
        let ty = self.attr("type")?;
        Some(MoRef::new(ty, self.text.trim()))
    }
}

/// A ManagedObjectReference: the object's type and its server-side id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MoRef {
    /// Managed object type, e.g. `VirtualMachine`.
    pub ty: String,
    /// Id, e.g. `vm-42`.
    pub value: String,
}

impl MoRef {
    /// Builds a reference.
    pub fn new(ty: impl Into<String>, value: impl Into<String>) -> Self {
        MoRef {
            ty: ty.into(),
            value: value.into(),
        }
    }
}

impl std::fmt::Display for MoRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.ty, self.value)
    }
}

/// Why a request body could not be understood as a SOAP call.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The XML itself is malformed.
    #[error("malformed XML: {0}")]
    Xml(String),
    /// The XML is well formed but is not a SOAP envelope with a body.
    #[error("not a SOAP request: {0}")]
    Shape(&'static str),
}

/// Parses an XML document into its root element.
pub fn parse_document(xml: &[u8]) -> Result<Element, ParseError> {
    let mut reader = NsReader::from_reader(xml);
    let mut stack: Vec<Element> = Vec::new();
    let mut root = None;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| ParseError::Xml(e.to_string()))?;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let mut el = Element {
                    name: local(e.local_name().as_ref()),
                    ..Default::default()
                };
                for attr in e.attributes() {
                    let attr = attr.map_err(|e| ParseError::Xml(e.to_string()))?;
                    let (ns, lname) = reader.resolve_attribute(attr.key);
                    let value = attr
                        .unescape_value()
                        .map_err(|e| ParseError::Xml(e.to_string()))?
                        .into_owned();
                    let lname = local(lname.as_ref());
                    match ns {
                        ResolveResult::Bound(n) if n.as_ref() == XSI.as_bytes() => {
                            if lname == "type" {
                                let bare = value.rsplit(':').next().unwrap_or(&value).to_string();
                                el.xsi_type = Some(bare);
                            }
                        }
                        _ if attr.key.as_ref().starts_with(b"xmlns") => {}
                        _ => el.attrs.push((lname, value)),
                    }
                }
                if matches!(event, Event::Empty(_)) {
                    attach(&mut stack, &mut root, el);
                } else {
                    stack.push(el);
                }
            }
            Event::End(_) => {
                let el = stack.pop().ok_or(ParseError::Shape("unbalanced end tag"))?;
                attach(&mut stack, &mut root, el);
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(
                        &t.xml10_content()
                            .map_err(|e| ParseError::Xml(e.to_string()))?,
                    );
                }
            }
            Event::CData(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text
                        .push_str(&t.decode().map_err(|e| ParseError::Xml(e.to_string()))?);
                }
            }
            Event::GeneralRef(r) => {
                let resolved = if r.is_char_ref() {
                    r.resolve_char_ref()
                        .map_err(|e| ParseError::Xml(e.to_string()))?
                        .map(String::from)
                } else {
                    let name = r.decode().map_err(|e| ParseError::Xml(e.to_string()))?;
                    quick_xml::escape::resolve_predefined_entity(&name).map(str::to_string)
                };
                let resolved = resolved.ok_or(ParseError::Shape("unknown entity reference"))?;
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&resolved);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err(ParseError::Shape("unterminated element"));
    }
    root.ok_or(ParseError::Shape("empty document"))
}

fn local(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

fn attach(stack: &mut [Element], root: &mut Option<Element>, el: Element) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(el),
        None => *root = Some(el),
    }
}

/// Extracts the single operation element from `Envelope/Body`.
pub fn parse_request(xml: &[u8]) -> Result<Element, ParseError> {
    let root = parse_document(xml)?;
    if root.name != "Envelope" {
        return Err(ParseError::Shape("root element is not Envelope"));
    }
    let body = root.child("Body").ok_or(ParseError::Shape("no Body"))?;
    body.children
        .first()
        .cloned()
        .ok_or(ParseError::Shape("empty Body"))
}

/// A value in a response: primitives, enums, references, data objects and arrays.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `xsd:string`.
    Str(String),
    /// `xsd:int`.
    Int(i32),
    /// `xsd:long`.
    Long(i64),
    /// `xsd:boolean`.
    Bool(bool),
    /// `xsd:dateTime`, already formatted.
    DateTime(String),
    /// A vim25 enum value with its enum type, e.g. (`VirtualMachinePowerState`, `poweredOn`).
    Enum(&'static str, String),
    /// A ManagedObjectReference.
    Ref(MoRef),
    /// A data object of the given vim25 type with fields in WSDL order.
    Data(Data),
    /// An array whose items have the given vim25 (or `xsd`) item type.
    Array(&'static str, Vec<Value>),
    /// An `xsd:anyType` slot (such as `OptionValue.value`) that must carry its `xsi:type`.
    Any(Box<Value>),
}

/// A vim25 data object: its type and its set fields in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Data {
    /// vim25 type name, e.g. `VirtualDisk`.
    pub ty: &'static str,
    /// Fields in WSDL order; unset optional fields are simply absent.
    pub fields: Vec<(&'static str, Value)>,
}

impl Data {
    /// A data object with no fields yet.
    pub fn new(ty: &'static str) -> Self {
        Data {
            ty,
            fields: Vec::new(),
        }
    }

    /// Appends a field.
    pub fn with(mut self, name: &'static str, v: impl Into<Value>) -> Self {
        self.fields.push((name, v.into()));
        self
    }

    /// Appends a field when the value is set.
    pub fn with_opt(mut self, name: &'static str, v: Option<impl Into<Value>>) -> Self {
        if let Some(v) = v {
            self.fields.push((name, v.into()));
        }
        self
    }

    /// A field by name.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.fields.iter().find(|(k, _)| *k == name).map(|(_, v)| v)
    }
}

impl From<Data> for Value {
    fn from(d: Data) -> Self {
        Value::Data(d)
    }
}
impl From<MoRef> for Value {
    fn from(m: MoRef) -> Self {
        Value::Ref(m)
    }
}
impl From<&MoRef> for Value {
    fn from(m: &MoRef) -> Self {
        Value::Ref(m.clone())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}
impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_string())
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}
impl From<i32> for Value {
    fn from(i: i32) -> Self {
        Value::Int(i)
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Long(i)
    }
}

impl Value {
    /// The `xsi:type` this value carries when it stands alone (as a property value).
    fn xsi_type(&self) -> String {
        match self {
            Value::Str(_) => "xsd:string".into(),
            Value::Int(_) => "xsd:int".into(),
            Value::Long(_) => "xsd:long".into(),
            Value::Bool(_) => "xsd:boolean".into(),
            Value::DateTime(_) => "xsd:dateTime".into(),
            Value::Enum(t, _) => (*t).into(),
            Value::Ref(_) => "ManagedObjectReference".into(),
            Value::Data(d) => d.ty.into(),
            Value::Array(item, _) => {
                let item = item
                    .strip_prefix("xsd:")
                    .map(capitalise)
                    .unwrap_or_else(|| (*item).to_string());
                format!("ArrayOf{item}")
            }
            Value::Any(inner) => inner.xsi_type(),
        }
    }

    /// Walks a dotted property path (`summary.capacity`) into nested data objects.
    pub fn walk(&self, path: &[&str]) -> Option<Value> {
        let Some((first, rest)) = path.split_first() else {
            return Some(self.clone());
        };
        match self {
            Value::Data(d) => d.get(first)?.walk(rest),
            _ => None,
        }
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Builds a response document with the envelope namespaces real servers declare.
pub struct XmlOut {
    w: Writer<Vec<u8>>,
}

impl Default for XmlOut {
    fn default() -> Self {
        Self::new()
    }
}

impl XmlOut {
    /// A writer positioned inside `soapenv:Body`.
    pub fn new() -> Self {
        let mut w = Writer::new(Vec::new());
        // Writing to a Vec cannot fail, so the results below are ignored deliberately.
        let _ = w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)));
        let env = BytesStart::new("soapenv:Envelope").with_attributes([
            ("xmlns:soapenc", "http://schemas.xmlsoap.org/soap/encoding/"),
            ("xmlns:soapenv", SOAPENV),
            ("xmlns:xsd", "http://www.w3.org/2001/XMLSchema"),
            ("xmlns:xsi", XSI),
        ]);
        let _ = w.write_event(Event::Start(env));
        let _ = w.write_event(Event::Start(BytesStart::new("soapenv:Body")));
        XmlOut { w }
    }

    /// Opens an element with attributes.
    pub fn start(&mut self, name: &str, attrs: &[(&str, &str)]) {
        let el = BytesStart::new(name).with_attributes(attrs.iter().copied());
        let _ = self.w.write_event(Event::Start(el));
    }

    /// Closes an element.
    pub fn end(&mut self, name: &str) {
        let _ = self.w.write_event(Event::End(BytesEnd::new(name)));
    }

    /// Writes `<name attrs>text</name>` with the text escaped.
    pub fn text_el(&mut self, name: &str, attrs: &[(&str, &str)], text: &str) {
        self.start(name, attrs);
        let _ = self.w.write_event(Event::Text(BytesText::new(text)));
        self.end(name);
    }

    /// Writes a value as element `name`. `typed` adds `xsi:type` even to primitives, as
    /// property values (`<val>`) and `anyType` slots need.
    pub fn value(&mut self, name: &str, v: &Value, typed: bool) {
        let ty = v.xsi_type();
        match v {
            Value::Str(s) | Value::DateTime(s) => self.prim(name, typed.then_some(ty.as_str()), s),
            Value::Int(i) => self.prim(name, typed.then_some(ty.as_str()), &i.to_string()),
            Value::Long(i) => self.prim(name, typed.then_some(ty.as_str()), &i.to_string()),
            Value::Bool(b) => self.prim(
                name,
                typed.then_some(ty.as_str()),
                if *b { "true" } else { "false" },
            ),
            Value::Enum(_, s) => self.prim(name, typed.then_some(ty.as_str()), s),
            Value::Ref(m) => {
                let mut attrs = vec![("type", m.ty.as_str())];
                if typed {
                    attrs.push(("xsi:type", "ManagedObjectReference"));
                }
                self.text_el(name, &attrs, &m.value);
            }
            Value::Data(d) => {
                // Data objects always carry xsi:type: most vim25 slots are polymorphic
                // (VirtualDevice, backing info, faults) and clients rely on it.
                self.start(name, &[("xsi:type", d.ty)]);
                self.fields(d);
                self.end(name);
            }
            Value::Array(item, items) => {
                if typed {
                    // A standalone array (a property value) is wrapped in its ArrayOfX type.
                    // Items are named by their type: `string` for xsd:string, `VirtualDisk`...
                    let item_el = item.strip_prefix("xsd:").unwrap_or(item).to_string();
                    self.start(name, &[("xsi:type", ty.as_str())]);
                    for it in items {
                        self.value(&item_el, it, true);
                    }
                    self.end(name);
                } else {
                    // Inside a data object an array is the field repeated.
                    for it in items {
                        self.value(name, it, false);
                    }
                }
            }
            Value::Any(inner) => self.value(name, inner, true),
        }
    }

    /// Writes the fields of a data object (without a wrapper element).
    pub fn fields(&mut self, d: &Data) {
        for (k, v) in &d.fields {
            self.value(k, v, false);
        }
    }

    fn prim(&mut self, name: &str, ty: Option<&str>, text: &str) {
        match ty {
            Some(t) => self.text_el(name, &[("xsi:type", t)], text),
            None => self.text_el(name, &[], text),
        }
    }

    /// Writes a SOAP fault the way vim25 servers do, with the fault object in `detail`.
    pub fn fault(&mut self, fault: &Fault) {
        self.start("soapenv:Fault", &[]);
        self.text_el("faultcode", &[], fault.code());
        self.text_el("faultstring", &[], &fault.message);
        self.start("detail", &[]);
        let el = format!("{}Fault", fault.kind);
        self.start(&el, &[("xmlns", VIM25), ("xsi:type", fault.kind)]);
        self.fields(&fault.data());
        self.end(&el);
        self.end("detail");
        self.end("soapenv:Fault");
    }

    /// Closes the envelope and returns the document bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.end("soapenv:Body");
        self.end("soapenv:Envelope");
        self.w.into_inner()
    }
}

/// A whole `<{method}Response xmlns="urn:vim25">` document with the given return values.
pub fn response(method: &str, returnvals: &[Value]) -> Vec<u8> {
    let mut out = XmlOut::new();
    let el = format!("{method}Response");
    out.start(&el, &[("xmlns", VIM25)]);
    for v in returnvals {
        write_returnval(&mut out, v);
    }
    out.end(&el);
    out.finish()
}

fn write_returnval(out: &mut XmlOut, v: &Value) {
    match v {
        // Arrays returned by a method are the returnval element repeated.
        Value::Array(_, items) => items.iter().for_each(|i| write_returnval(out, i)),
        Value::Data(d) => {
            // Returned data objects carry their declared type without xsi:type, as vCenter does.
            out.start("returnval", &[]);
            out.fields(d);
            out.end("returnval");
        }
        other => out.value("returnval", other, false),
    }
}

/// A whole fault document.
pub fn fault_document(fault: &Fault) -> Vec<u8> {
    let mut out = XmlOut::new();
    out.fault(fault);
    out.finish()
}

/// Formats milliseconds since the Unix epoch as `xsd:dateTime` in UTC.
pub fn format_datetime(unix_millis: u128) -> String {
    let secs = (unix_millis / 1000) as i64;
    let ms = (unix_millis % 1000) as u32;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Civil-from-days (H. Hinnant): avoids a date crate for one format.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

/// Now as `xsd:dateTime`.
pub fn now() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format_datetime(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_request_with_namespaces_and_entities() {
        let xml = br#"<?xml version="1.0"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><Login xmlns="urn:vim25"><_this type="SessionManager">SessionManager</_this><userName>a&amp;b</userName><spec xsi:type="vim25:VirtualMachineConfigSpec"/></Login></soapenv:Body></soapenv:Envelope>"#;
        let op = parse_request(xml).unwrap();
        assert_eq!(op.name, "Login");
        assert_eq!(
            op.child("_this").unwrap().as_moref().unwrap(),
            MoRef::new("SessionManager", "SessionManager")
        );
        assert_eq!(op.child_text("userName"), Some("a&b"));
        assert_eq!(
            op.child("spec").unwrap().xsi_type.as_deref(),
            Some("VirtualMachineConfigSpec")
        );
    }

    #[test]
    fn datetime_formats_known_instant() {
        assert_eq!(
            format_datetime(1_700_000_000_123),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(format_datetime(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn property_arrays_are_wrapped_and_fields_repeat() {
        let mut out = XmlOut::new();
        let arr = Value::Array("xsd:string", vec!["a".into(), "b".into()]);
        out.value("val", &arr, true);
        let d = Data::new("Thing").with("names", arr);
        out.value("obj", &Value::Data(d), false);
        let doc = String::from_utf8(out.finish()).unwrap();
        assert!(
            doc.contains(
                r#"<val xsi:type="ArrayOfString"><string xsi:type="xsd:string">a</string>"#
            ),
            "{doc}"
        );
        assert!(
            doc.contains(r#"<obj xsi:type="Thing"><names>a</names><names>b</names></obj>"#),
            "{doc}"
        );
    }
}
