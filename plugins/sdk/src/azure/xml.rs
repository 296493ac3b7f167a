//! A small element tree for the XML documents Azure returns (Service Management, Blob).

use quick_xml::Reader;
use quick_xml::events::Event;

/// An element: its local name (namespace prefix dropped), its text and its children.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    /// Parses a document and returns its root element.
    pub fn parse(body: &[u8]) -> Result<Element, String> {
        let body = body.strip_prefix("\u{feff}".as_bytes()).unwrap_or(body);
        let mut reader = Reader::from_reader(body);
        let mut buf = Vec::new();
        let mut stack: Vec<Element> = vec![Element::default()];
        loop {
            match reader.read_event_into(&mut buf) {
                Ok(Event::Start(s)) => stack.push(Element { name: String::from_utf8_lossy(s.local_name().as_ref()).into_owned(), ..Default::default() }),
                Ok(Event::Empty(s)) => {
                    let e = Element { name: String::from_utf8_lossy(s.local_name().as_ref()).into_owned(), ..Default::default() };
                    stack.last_mut().expect("root sentinel").children.push(e);
                }
                Ok(Event::End(_)) => {
                    let done = stack.pop().expect("balanced by the reader");
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(done),
                        None => return Err("unbalanced XML".into()),
                    }
                }
                Ok(Event::Text(t)) => {
                    let text = t.decode().map_err(|e| e.to_string())?;
                    stack.last_mut().expect("root sentinel").text.push_str(&text);
                }
                Ok(Event::CData(t)) => stack.last_mut().expect("root sentinel").text.push_str(&String::from_utf8_lossy(&t)),
                Ok(Event::GeneralRef(r)) => {
                    let name: &[u8] = &r;
                    let ch = match name {
                        b"amp" => "&",
                        b"lt" => "<",
                        b"gt" => ">",
                        b"quot" => "\"",
                        b"apos" => "'",
                        _ => "",
                    };
                    stack.last_mut().expect("root sentinel").text.push_str(ch);
                }
                Ok(Event::Eof) => break,
                Err(e) => return Err(format!("malformed XML at byte {}: {e}", reader.buffer_position())),
                _ => {}
            }
            buf.clear();
        }
        let root = stack.pop().filter(|_| stack.is_empty()).ok_or("unclosed XML element")?;
        root.children.into_iter().next().ok_or_else(|| "empty XML document".into())
    }

    /// The first child called `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Every child called `name`.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The element at a `/`-separated path of child names.
    pub fn at(&self, path: &str) -> Option<&Element> {
        path.split('/').try_fold(self, |e, name| e.child(name))
    }

    /// The trimmed text at a path, if the element exists.
    pub fn text_at(&self, path: &str) -> Option<&str> {
        self.at(path).map(|e| e.text.trim())
    }
}

/// Escapes text for an XML element or attribute.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&apos;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nested_documents() {
        let doc = "\u{feff}<?xml version=\"1.0\"?><a xmlns=\"x\"><b>1</b><b>2 &amp; 3</b><c/><d><e>deep</e></d></a>";
        let root = Element::parse(doc.as_bytes()).unwrap();
        assert_eq!(root.name, "a");
        assert_eq!(root.all("b").map(|b| b.text.as_str()).collect::<Vec<_>>(), vec!["1", "2 & 3"]);
        assert_eq!(root.text_at("d/e"), Some("deep"));
        assert!(root.child("c").is_some());
        assert!(Element::parse(b"<a><b></a>").is_err());
    }
}
