//! Where things are in a directory site, and the adapter's config keys.
//!
//! ```text
//! <root>/site.toml                          optional: name, host, datastore, networks
//! <root>/<vm>/vm.toml                       the VM (see vm_file.rs)
//! <root>/<vm>/<label>.raw                   a raw, sparse disk
//! <root>/<vm>/.snapshots/<snap>/snapshot.toml
//! <root>/<vm>/.snapshots/<snap>/<label>.raw a sparse copy of the disk at the snapshot
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use homeward_sdk::{AdapterError, error};
use serde::Deserialize;

use crate::util::io_error;

/// Config key: the site directory as the adapter sees it (the guest path of the preopen).
pub const KEY_ROOT: &str = "root";
/// Config key: the datastore's capacity in bytes. WASI has no `statvfs`, so the adapter
/// cannot ask the file system; the operator states it.
pub const KEY_CAPACITY: &str = "capacity_bytes";
/// Config key: `file` (default) or `served`, the locator `disks.open` returns.
pub const KEY_TRANSPORT: &str = "transport";

/// Default for [`KEY_ROOT`].
pub const DEFAULT_ROOT: &str = "/site";
/// Default for [`KEY_CAPACITY`]: 1 TiB.
pub const DEFAULT_CAPACITY: u64 = 1 << 40;

/// The id of the site's one host.
pub const HOST_ID: &str = "local";
/// The id of the site's one datastore: the root directory.
pub const DATASTORE_ID: &str = "root";

const SITE_FILE: &str = "site.toml";
const VM_FILE: &str = "vm.toml";
const SNAPSHOTS_DIR: &str = ".snapshots";

/// How `disks.open` hands out disks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// The host's data movers open the file in the preopened directory themselves.
    File,
    /// The host reads and writes through `disks.read` and `disks.write`.
    Served,
}

/// The adapter's view of its site, from its config.
#[derive(Debug, Clone)]
pub struct Site {
    /// The site directory (guest path).
    pub root: PathBuf,
    /// The datastore capacity reported by `list-datastores`.
    pub capacity_bytes: u64,
    /// The locator kind `disks.open` returns.
    pub transport: Transport,
}

/// `site.toml`: what the directory cannot say about itself. Every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteFile {
    /// The site's name, shown in `describe`'s product string.
    pub name: Option<String>,
    /// The name of the one host.
    pub host: Option<String>,
    /// The name of the one datastore.
    pub datastore: Option<String>,
    /// Network names; each is also the network's id.
    #[serde(default)]
    pub networks: Vec<String>,
}

impl Site {
    /// Reads the config section through the host.
    pub fn from_config() -> Result<Site, AdapterError> {
        let get = homeward_sdk::bindings::homeward::adapter::config::get;
        Site::from_values(get(KEY_ROOT), get(KEY_CAPACITY), get(KEY_TRANSPORT))
    }

    /// Builds the site from raw config values, checking each.
    pub fn from_values(
        root: Option<String>,
        capacity: Option<String>,
        transport: Option<String>,
    ) -> Result<Site, AdapterError> {
        let root = root.unwrap_or_else(|| DEFAULT_ROOT.to_string());
        if !root.starts_with('/') {
            return Err(error::invalid(format!(
                "config key `{KEY_ROOT}` is `{root}`: give the absolute guest path of the preopened site directory, such as `/site`"
            )));
        }
        let capacity_bytes = match capacity {
            None => DEFAULT_CAPACITY,
            Some(v) => v.trim().parse::<u64>().map_err(|_| {
                error::invalid(format!("config key `{KEY_CAPACITY}` is `{v}`: give the datastore size in bytes, such as 1099511627776"))
            })?,
        };
        let transport = match transport.as_deref() {
            None | Some("file") => Transport::File,
            Some("served") => Transport::Served,
            Some(other) => {
                return Err(error::invalid(format!(
                    "config key `{KEY_TRANSPORT}` is `{other}`: use `file` or `served`"
                )));
            }
        };
        Ok(Site {
            root: PathBuf::from(root),
            capacity_bytes,
            transport,
        })
    }

    /// Fails with a message naming the config key when the root is not a readable directory.
    pub fn check_root(&self) -> Result<(), AdapterError> {
        match fs::metadata(&self.root) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(error::invalid(format!(
                "site root {} (config key `{KEY_ROOT}`) is not a directory",
                self.root.display()
            ))),
            Err(e) => Err(error::invalid(format!(
                "site root {} (config key `{KEY_ROOT}`) cannot be read ({e}): preopen the site directory for this plugin at that guest path",
                self.root.display()
            ))),
        }
    }

    /// Reads `site.toml`; a missing file means all defaults.
    pub fn site_file(&self) -> Result<SiteFile, AdapterError> {
        self.check_root()?;
        let path = self.root.join(SITE_FILE);
        match fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).map_err(|e| {
                error::internal(format!(
                    "{} is not a valid site description: {e}",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SiteFile::default()),
            Err(e) => Err(io_error("reading the site description", &path, e)),
        }
    }

    /// The folder of VM `vm`.
    pub fn vm_dir(&self, vm: &str) -> PathBuf {
        self.root.join(vm)
    }

    /// The description file of VM `vm`.
    pub fn vm_file(&self, vm: &str) -> PathBuf {
        self.vm_dir(vm).join(VM_FILE)
    }

    /// The raw file of disk `label` of VM `vm`.
    pub fn disk_file(&self, vm: &str, label: &str) -> PathBuf {
        self.vm_dir(vm).join(disk_file_name(label))
    }

    /// The folder holding VM `vm`'s snapshots.
    pub fn snapshots_dir(&self, vm: &str) -> PathBuf {
        self.vm_dir(vm).join(SNAPSHOTS_DIR)
    }

    /// The ids of the VMs: folders of the root that hold a `vm.toml`, sorted.
    pub fn vm_ids(&self) -> Result<Vec<String>, AdapterError> {
        self.check_root()?;
        let mut ids = Vec::new();
        for entry in
            fs::read_dir(&self.root).map_err(|e| io_error("listing the site", &self.root, e))?
        {
            let entry = entry.map_err(|e| io_error("listing the site", &self.root, e))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if check_name("VM", &name).is_ok() && entry.path().join(VM_FILE).is_file() {
                ids.push(name);
            }
        }
        ids.sort();
        Ok(ids)
    }
}

/// The file name of a disk's raw data.
pub fn disk_file_name(label: &str) -> String {
    format!("{label}.raw")
}

/// Checks that `name` can be a file name inside the site: ASCII letters, digits, `.`, `_`
/// and `-`, 1 to 128 characters, not starting with `.` (those names are the adapter's own).
pub fn check_name(what: &str, name: &str) -> Result<(), AdapterError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(error::invalid(format!(
            "{what} name `{name}` is not usable on a directory site: use 1-128 ASCII letters, digits, `.`, `_` or `-`, not starting with `.`"
        )))
    }
}

/// Writes `text` to `path` through a temporary file and a rename, so a crash leaves the old
/// or the new file, never half of one.
pub fn write_atomic(path: &Path, text: &str) -> Result<(), AdapterError> {
    let tmp = path.with_extension("toml.tmp");
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|e| io_error("writing", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_errors() {
        let site = Site::from_values(None, None, None).unwrap();
        assert_eq!(site.root, PathBuf::from("/site"));
        assert_eq!(site.capacity_bytes, DEFAULT_CAPACITY);
        assert_eq!(site.transport, Transport::File);
        let site = Site::from_values(
            Some("/x".into()),
            Some("4096".into()),
            Some("served".into()),
        )
        .unwrap();
        assert_eq!(
            (site.capacity_bytes, site.transport),
            (4096, Transport::Served)
        );
        assert!(matches!(
            Site::from_values(Some("rel".into()), None, None),
            Err(AdapterError::InvalidArgument(_))
        ));
        assert!(matches!(
            Site::from_values(None, Some("lots".into()), None),
            Err(AdapterError::InvalidArgument(_))
        ));
        assert!(matches!(
            Site::from_values(None, None, Some("ftp".into())),
            Err(AdapterError::InvalidArgument(_))
        ));
    }

    #[test]
    fn names_that_could_escape_the_site_are_refused() {
        for bad in ["", ".", "..", ".snapshots", "a/b", "a\\b", "é"] {
            assert!(check_name("VM", bad).is_err(), "{bad:?} accepted");
        }
        for good in ["vm1", "web-01.example", "A_b"] {
            assert!(check_name("VM", good).is_ok(), "{good:?} refused");
        }
    }
}
