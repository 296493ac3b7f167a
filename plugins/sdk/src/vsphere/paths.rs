//! Datastore paths (`[datastore1] web01/web01.vmdk`) and the `/folder` URLs that serve
//! datastore files over HTTP.

/// A datastore path split into the datastore name and the path inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatastorePath {
    /// The datastore's name.
    pub datastore: String,
    /// Relative to the datastore root, without a leading slash.
    pub rel: String,
}

impl DatastorePath {
    /// Parses `[ds] rel/path`; `None` if it is not in that form.
    pub fn parse(path: &str) -> Option<DatastorePath> {
        let rest = path.trim().strip_prefix('[')?;
        let (ds, rel) = rest.split_once(']')?;
        if ds.is_empty() {
            return None;
        }
        Some(DatastorePath { datastore: ds.to_string(), rel: rel.trim().trim_start_matches('/').to_string() })
    }

    /// The flat extent that holds a `vmfs`/`monolithicFlat` descriptor's data, by ESXi's
    /// naming convention: `x.vmdk` → `x-flat.vmdk`.
    pub fn flat_extent(&self) -> Option<DatastorePath> {
        let stem = self.rel.strip_suffix(".vmdk")?;
        Some(DatastorePath { datastore: self.datastore.clone(), rel: format!("{stem}-flat.vmdk") })
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters (and `/` when
/// `keep_slash`), for `/folder` paths and query values.
pub fn percent_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        let keep = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') || (keep_slash && b == b'/');
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `/folder` URL of a datastore file: `base/folder/<rel>?dcPath=<dc>&dsName=<ds>`.
pub fn folder_url(base: &str, datacenter: &str, file: &DatastorePath) -> String {
    format!(
        "{base}/folder/{}?dcPath={}&dsName={}",
        percent_encode(&file.rel, true),
        percent_encode(datacenter, false),
        percent_encode(&file.datastore, false)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datastore_paths_and_folder_urls() {
        let p = DatastorePath::parse("[datastore 1] web 01/web01-000001.vmdk").unwrap();
        assert_eq!(p.datastore, "datastore 1");
        assert_eq!(p.rel, "web 01/web01-000001.vmdk");
        let flat = p.flat_extent().unwrap();
        assert_eq!(flat.rel, "web 01/web01-000001-flat.vmdk");
        assert_eq!(
            folder_url("http://h:1", "dc/1", &flat),
            "http://h:1/folder/web%2001/web01-000001-flat.vmdk?dcPath=dc%2F1&dsName=datastore%201"
        );
        assert!(DatastorePath::parse("no brackets").is_none());
        assert!(DatastorePath::parse("[] x").is_none());
        assert_eq!(DatastorePath::parse("[ds]").unwrap().rel, "");
    }
}
