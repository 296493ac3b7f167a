//! VMDK disks as the lab stores them: a text descriptor plus a sparse flat extent.
//!
//! The layout is the one ESXi uses for thin `vmfs` disks (`vm.vmdk` describing
//! `vm-flat.vmdk`), so that `qemu-img info vm.vmdk` and any VMDK-aware tool read the lab's
//! disks like real ones. The extent is a sparse file: only written ranges take space.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Size of a VMDK sector; descriptors count extents in sectors.
pub const SECTOR: u64 = 512;

/// Errors reading or writing a VMDK descriptor or its extent.
#[derive(Debug, thiserror::Error)]
pub enum VmdkError {
    /// The file system refused an operation on one of the disk's files.
    #[error("{path}: {source}")]
    Io {
        /// File the operation was on.
        path: PathBuf,
        /// Underlying error.
        source: io::Error,
    },
    /// The descriptor could not be understood.
    #[error("{path}: not a VMDK descriptor the lab understands: {reason}")]
    BadDescriptor {
        /// Descriptor file.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> VmdkError + '_ {
    move |source| VmdkError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a descriptor says about a disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// `createType`, e.g. `vmfs` or `monolithicFlat`.
    pub create_type: String,
    /// Disk size in bytes (the extent's sector count times 512).
    pub capacity_bytes: u64,
    /// Flat extent file name, relative to the descriptor's directory.
    pub extent_file: String,
    /// `ddb.uuid` in the vSphere backing form `6000C29x-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
    pub uuid: Option<String>,
    /// Whether `ddb.thinProvisioned` is set.
    pub thin: bool,
}

/// Name of the flat extent ESXi pairs with a descriptor (`x.vmdk` → `x-flat.vmdk`).
pub fn flat_name_for(descriptor_name: &str) -> String {
    let stem = descriptor_name
        .strip_suffix(".vmdk")
        .unwrap_or(descriptor_name);
    format!("{stem}-flat.vmdk")
}

/// Converts a backing uuid (`6000C29a-...`) to the `ddb.uuid` byte form (`60 00 C2 9a ...`).
fn ddb_uuid(uuid: &str) -> String {
    let hex: String = uuid.chars().filter(|c| *c != '-').collect();
    let bytes: Vec<String> = hex
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    let (a, b) = bytes.split_at(bytes.len().min(8));
    format!("{}-{}", a.join(" "), b.join(" "))
}

/// Converts the `ddb.uuid` byte form back to the backing form.
fn backing_uuid(ddb: &str) -> Option<String> {
    let hex: String = ddb.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    if hex.len() != 32 {
        return None;
    }
    Some(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

/// Renders the descriptor text of a thin `vmfs` disk.
pub fn render_descriptor(capacity_bytes: u64, extent_file: &str, uuid: &str, thin: bool) -> String {
    let sectors = capacity_bytes.div_ceil(SECTOR);
    // The geometry is informational for VMDK readers; ESXi derives it the same way.
    let cylinders = (sectors / (255 * 63)).clamp(1, 65535);
    let mut s = String::new();
    let _ = writeln!(s, "# Disk DescriptorFile");
    let _ = writeln!(s, "version=1");
    let _ = writeln!(s, "encoding=\"UTF-8\"");
    let _ = writeln!(s, "CID=fffffffe");
    let _ = writeln!(s, "parentCID=ffffffff");
    let _ = writeln!(s, "createType=\"vmfs\"");
    let _ = writeln!(s);
    let _ = writeln!(s, "# Extent description");
    let _ = writeln!(s, "RW {sectors} VMFS \"{extent_file}\"");
    let _ = writeln!(s);
    let _ = writeln!(s, "# The Disk Data Base");
    let _ = writeln!(s, "#DDB");
    let _ = writeln!(s);
    let _ = writeln!(s, "ddb.adapterType = \"lsilogic\"");
    let _ = writeln!(s, "ddb.geometry.cylinders = \"{cylinders}\"");
    let _ = writeln!(s, "ddb.geometry.heads = \"255\"");
    let _ = writeln!(s, "ddb.geometry.sectors = \"63\"");
    let _ = writeln!(
        s,
        "ddb.longContentID = \"{}\"",
        uuid.replace('-', "").to_lowercase()
    );
    if thin {
        let _ = writeln!(s, "ddb.thinProvisioned = \"1\"");
    }
    let _ = writeln!(s, "ddb.uuid = \"{}\"", ddb_uuid(uuid));
    let _ = writeln!(s, "ddb.virtualHWVersion = \"19\"");
    s
}

/// Parses a descriptor's text. Accepts `vmfs` (`RW n VMFS "f"`) and `monolithicFlat`
/// (`RW n FLAT "f" 0`) single-extent disks, the two flat layouts the lab produces or attaches.
pub fn parse_descriptor(path: &Path, text: &str) -> Result<Descriptor, VmdkError> {
    let bad = |reason: &str| VmdkError::BadDescriptor {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let mut create_type = None;
    let mut extent = None;
    let mut uuid = None;
    let mut thin = false;
    for line in text.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("createType=") {
            create_type = Some(v.trim_matches('"').to_string());
        } else if line.starts_with("RW ") || line.starts_with("RDONLY ") {
            let mut parts = line.splitn(3, ' ');
            let _access = parts.next();
            let sectors: u64 = parts
                .next()
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| bad("extent sector count"))?;
            let rest = parts.next().ok_or_else(|| bad("extent type"))?;
            let (kind, rest) = rest.split_once(' ').ok_or_else(|| bad("extent file"))?;
            if kind != "VMFS" && kind != "FLAT" {
                return Err(bad(&format!("extent type {kind} is not flat")));
            }
            let (file, offset) = rest
                .trim()
                .strip_prefix('"')
                .and_then(|r| r.split_once('"'))
                .ok_or_else(|| bad("extent file name"))?;
            // The lab reads extents at their start; a flat extent inside a bigger file is
            // not a layout it produces or attaches.
            if !matches!(offset.trim(), "" | "0") {
                return Err(bad("flat extent offset is not 0"));
            }
            let file = file.to_string();
            if extent.is_some() {
                return Err(bad("more than one extent"));
            }
            extent = Some((sectors, file));
        } else if let Some((k, v)) = line.split_once('=') {
            let v = v.trim().trim_matches('"');
            match k.trim() {
                "ddb.uuid" => uuid = backing_uuid(v),
                "ddb.thinProvisioned" => thin = v == "1",
                _ => {}
            }
        }
    }
    let (sectors, extent_file) = extent.ok_or_else(|| bad("no extent line"))?;
    Ok(Descriptor {
        create_type: create_type.ok_or_else(|| bad("no createType"))?,
        capacity_bytes: sectors * SECTOR,
        extent_file,
        uuid,
        thin,
    })
}

/// Reads and parses the descriptor at `path`.
pub fn read_descriptor(path: &Path) -> Result<Descriptor, VmdkError> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    parse_descriptor(path, &text)
}

/// Creates `descriptor` and its sparse flat extent next to it. Fails with
/// `AlreadyExists` if either file exists, so a disk is never silently replaced.
pub fn create(
    descriptor: &Path,
    capacity_bytes: u64,
    uuid: &str,
    thin: bool,
) -> Result<PathBuf, VmdkError> {
    let name = descriptor
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("disk.vmdk");
    let flat_name = flat_name_for(name);
    let flat = descriptor.with_file_name(&flat_name);
    let text = render_descriptor(capacity_bytes, &flat_name, uuid, thin);
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    let f = opts.open(&flat).map_err(io_err(&flat))?;
    f.set_len(capacity_bytes.div_ceil(SECTOR) * SECTOR)
        .map_err(io_err(&flat))?;
    if let Err(e) = opts
        .open(descriptor)
        .and_then(|mut d| io::Write::write_all(&mut d, text.as_bytes()))
    {
        let _ = std::fs::remove_file(&flat);
        return Err(VmdkError::Io {
            path: descriptor.to_path_buf(),
            source: e,
        });
    }
    Ok(flat)
}

/// Writes `data` at `offset` of a flat extent.
pub fn write_at(flat: &Path, offset: u64, data: &[u8]) -> Result<(), VmdkError> {
    let f = OpenOptions::new()
        .write(true)
        .open(flat)
        .map_err(io_err(flat))?;
    f.write_all_at(data, offset).map_err(io_err(flat))
}

/// Reads `len` bytes at `offset` of a flat extent (zeros past its end).
pub fn read_at(flat: &Path, offset: u64, len: usize) -> Result<Vec<u8>, VmdkError> {
    let f = File::open(flat).map_err(io_err(flat))?;
    let mut buf = vec![0u8; len];
    let mut done = 0;
    while done < len {
        let n = f
            .read_at(&mut buf[done..], offset + done as u64)
            .map_err(io_err(flat))?;
        if n == 0 {
            break;
        }
        done += n;
    }
    Ok(buf)
}

/// Allocated byte ranges of a sparse file as `(start, length)`, from `SEEK_DATA`/`SEEK_HOLE`.
///
/// This is what a thin disk reports as allocated: blocks ever written, zeros included,
/// at the file system's block granularity.
pub fn allocated_ranges(path: &Path) -> Result<Vec<(u64, u64)>, VmdkError> {
    use std::os::fd::AsRawFd;
    let f = File::open(path).map_err(io_err(path))?;
    let len = f.metadata().map_err(io_err(path))?.len();
    let fd = f.as_raw_fd();
    let mut out = Vec::new();
    let mut pos: u64 = 0;
    while pos < len {
        // SAFETY: lseek on a descriptor we own; it only moves the file offset.
        let data = unsafe { libc::lseek(fd, pos as libc::off_t, libc::SEEK_DATA) };
        if data < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::ENXIO) {
                break; // no data after pos
            }
            return Err(VmdkError::Io {
                path: path.to_path_buf(),
                source: err,
            });
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        if hole < 0 {
            return Err(VmdkError::Io {
                path: path.to_path_buf(),
                source: io::Error::last_os_error(),
            });
        }
        let (data, hole) = (data as u64, (hole as u64).min(len));
        if hole > data {
            out.push((data, hole - data));
        }
        pos = hole.max(data + 1);
    }
    Ok(out)
}

/// Copies the given byte ranges of `src` into a new sparse file `dst` of `len` bytes, so a
/// copy of a thin disk stays thin.
pub fn sparse_copy(
    src: &Path,
    dst: &Path,
    len: u64,
    ranges: &[(u64, u64)],
) -> Result<(), VmdkError> {
    let out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dst)
        .map_err(io_err(dst))?;
    out.set_len(len).map_err(io_err(dst))?;
    copy_ranges(src, &out, dst, ranges)
}

/// Copies every allocated range of `src` into the existing file `dst` at the same offsets,
/// leaving the rest of `dst` untouched (and sparse).
pub fn copy_allocated(src: &Path, dst: &Path) -> Result<(), VmdkError> {
    let ranges = allocated_ranges(src)?;
    let out = OpenOptions::new()
        .write(true)
        .open(dst)
        .map_err(io_err(dst))?;
    copy_ranges(src, &out, dst, &ranges)
}

fn copy_ranges(src: &Path, out: &File, dst: &Path, ranges: &[(u64, u64)]) -> Result<(), VmdkError> {
    const CHUNK: u64 = 1 << 20;
    for &(start, length) in ranges {
        let mut off = start;
        let end = start + length;
        while off < end {
            let n = (end - off).min(CHUNK) as usize;
            let buf = read_at(src, off, n)?;
            out.write_all_at(&buf, off).map_err(io_err(dst))?;
            off += n as u64;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_round_trips() {
        let uuid = "6000C291-1234-5678-9abc-def012345678";
        let text = render_descriptor(64 << 20, "web-flat.vmdk", uuid, true);
        let d = parse_descriptor(Path::new("web.vmdk"), &text).unwrap();
        assert_eq!(d.capacity_bytes, 64 << 20);
        assert_eq!(d.extent_file, "web-flat.vmdk");
        assert_eq!(d.create_type, "vmfs");
        assert_eq!(d.uuid.as_deref(), Some(uuid));
        assert!(d.thin);
    }

    #[test]
    fn monolithic_flat_is_accepted() {
        let text = "version=1\ncreateType=\"monolithicFlat\"\nRW 2048 FLAT \"a-flat.vmdk\" 0\n";
        let d = parse_descriptor(Path::new("a.vmdk"), text).unwrap();
        assert_eq!(d.capacity_bytes, 2048 * 512);
        assert_eq!(d.extent_file, "a-flat.vmdk");
    }

    #[test]
    fn created_disk_is_sparse_and_tracks_allocation() {
        let dir = std::env::temp_dir().join(format!("vmdk-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let desc = dir.join("a.vmdk");
        let flat = create(
            &desc,
            64 << 20,
            "6000C291-1234-5678-9abc-def012345678",
            true,
        )
        .unwrap();
        assert!(allocated_ranges(&flat).unwrap().is_empty());
        write_at(&flat, 8 << 20, &[7u8; 4096]).unwrap();
        let ranges = allocated_ranges(&flat).unwrap();
        let total: u64 = ranges.iter().map(|r| r.1).sum();
        assert!(
            ranges
                .iter()
                .any(|&(s, l)| s <= 8 << 20 && s + l >= (8 << 20) + 4096),
            "{ranges:?}"
        );
        assert!(total < 64 << 20, "the extent must stay sparse: {ranges:?}");
        assert!(matches!(
            create(&desc, 1 << 20, "6000C291-1234-5678-9abc-def012345678", true),
            Err(VmdkError::Io { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn offset_extents_are_rejected() {
        let text = "createType=\"monolithicFlat\"\nRW 2048 FLAT \"a-flat.vmdk\" 128\n";
        assert!(parse_descriptor(Path::new("a.vmdk"), text).is_err());
    }

    #[test]
    fn sparse_extents_are_rejected() {
        let text = "createType=\"monolithicSparse\"\nRW 2048 SPARSE \"a.vmdk\"\n";
        assert!(parse_descriptor(Path::new("a.vmdk"), text).is_err());
    }
}
