//! Fixed VHD footers: the 512-byte trailer that turns a raw disk image into a VHD.
//!
//! Azure page blobs that back disks are fixed VHDs (raw image followed by this footer), so
//! the lab writes the same trailer; that is what lets `qemu-img` and other tools open the
//! lab's disk files as `vpc`.

use thiserror::Error;

/// Size of a VHD footer in bytes.
pub const FOOTER_SIZE: usize = 512;

const COOKIE: &[u8; 8] = b"conectix";
const FEATURES_RESERVED: u32 = 0x0000_0002;
const FILE_FORMAT_VERSION: u32 = 0x0001_0000;
const FIXED_DATA_OFFSET: u64 = u64::MAX;
/// Hyper-V's creator application. Tools (qemu among them) trust `current_size` rather than the
/// CHS geometry for this creator, which matters for sizes the geometry cannot express.
const CREATOR_APP: &[u8; 4] = b"win ";
const CREATOR_VERSION: u32 = 0x000a_0000;
const CREATOR_HOST_OS_WINDOWS: u32 = 0x5769_326b; // "Wi2k"
/// Disk type 2 is "fixed hard disk".
pub const DISK_TYPE_FIXED: u32 = 2;
/// Seconds between the Unix epoch and the VHD epoch (2000-01-01T00:00:00Z).
const VHD_EPOCH_UNIX: u64 = 946_684_800;

/// Why a footer could not be read.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum VhdError {
    /// The footer is not 512 bytes long.
    #[error("a VHD footer is 512 bytes, got {0}")]
    WrongLength(usize),
    /// The "conectix" cookie is missing: the data is not a VHD.
    #[error("no VHD cookie \"conectix\" in the footer")]
    MissingCookie,
    /// The stored checksum does not match the footer's contents.
    #[error("VHD footer checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    BadChecksum {
        /// Checksum found in the footer.
        stored: u32,
        /// Checksum computed from the footer bytes.
        computed: u32,
    },
    /// The disk size is not a multiple of 512 bytes.
    #[error("VHD disk size {0} is not a multiple of 512 bytes")]
    UnalignedSize(u64),
}

/// Cylinder/head/sector geometry as stored in the footer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Cylinders.
    pub cylinders: u16,
    /// Heads.
    pub heads: u8,
    /// Sectors per track.
    pub sectors_per_track: u8,
}

/// The fields of a VHD footer that matter to Homeward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VhdFooter {
    /// Size of the virtual disk in bytes (without the footer).
    pub current_size: u64,
    /// Size of the disk at creation time.
    pub original_size: u64,
    /// Disk type (2 = fixed, 3 = dynamic, 4 = differencing).
    pub disk_type: u32,
    /// Geometry derived from the size.
    pub geometry: Geometry,
    /// The disk's unique identifier.
    pub unique_id: [u8; 16],
    /// Creation time, seconds since the Unix epoch.
    pub created_unix: u64,
}

impl VhdFooter {
    /// A footer for a fixed disk of `size` bytes.
    pub fn fixed(size: u64, unique_id: [u8; 16], created_unix: u64) -> Result<Self, VhdError> {
        if !size.is_multiple_of(512) {
            return Err(VhdError::UnalignedSize(size));
        }
        Ok(Self {
            current_size: size,
            original_size: size,
            disk_type: DISK_TYPE_FIXED,
            geometry: geometry_for(size),
            unique_id,
            created_unix,
        })
    }

    /// Serialises the footer with its checksum.
    pub fn to_bytes(&self) -> [u8; FOOTER_SIZE] {
        let mut b = [0u8; FOOTER_SIZE];
        b[0..8].copy_from_slice(COOKIE);
        b[8..12].copy_from_slice(&FEATURES_RESERVED.to_be_bytes());
        b[12..16].copy_from_slice(&FILE_FORMAT_VERSION.to_be_bytes());
        b[16..24].copy_from_slice(&FIXED_DATA_OFFSET.to_be_bytes());
        let stamp = self.created_unix.saturating_sub(VHD_EPOCH_UNIX).min(u32::MAX as u64) as u32;
        b[24..28].copy_from_slice(&stamp.to_be_bytes());
        b[28..32].copy_from_slice(CREATOR_APP);
        b[32..36].copy_from_slice(&CREATOR_VERSION.to_be_bytes());
        b[36..40].copy_from_slice(&CREATOR_HOST_OS_WINDOWS.to_be_bytes());
        b[40..48].copy_from_slice(&self.original_size.to_be_bytes());
        b[48..56].copy_from_slice(&self.current_size.to_be_bytes());
        b[56..58].copy_from_slice(&self.geometry.cylinders.to_be_bytes());
        b[58] = self.geometry.heads;
        b[59] = self.geometry.sectors_per_track;
        b[60..64].copy_from_slice(&self.disk_type.to_be_bytes());
        b[68..84].copy_from_slice(&self.unique_id);
        let sum = checksum(&b);
        b[64..68].copy_from_slice(&sum.to_be_bytes());
        b
    }

    /// Parses and validates a footer (cookie and checksum).
    pub fn parse(bytes: &[u8]) -> Result<Self, VhdError> {
        if bytes.len() != FOOTER_SIZE {
            return Err(VhdError::WrongLength(bytes.len()));
        }
        if &bytes[0..8] != COOKIE {
            return Err(VhdError::MissingCookie);
        }
        let stored = u32::from_be_bytes(bytes[64..68].try_into().expect("4 bytes"));
        let computed = checksum(bytes);
        if stored != computed {
            return Err(VhdError::BadChecksum { stored, computed });
        }
        let be64 = |r: std::ops::Range<usize>| u64::from_be_bytes(bytes[r].try_into().expect("8 bytes"));
        let mut unique_id = [0u8; 16];
        unique_id.copy_from_slice(&bytes[68..84]);
        Ok(Self {
            original_size: be64(40..48),
            current_size: be64(48..56),
            geometry: Geometry {
                cylinders: u16::from_be_bytes([bytes[56], bytes[57]]),
                heads: bytes[58],
                sectors_per_track: bytes[59],
            },
            disk_type: u32::from_be_bytes(bytes[60..64].try_into().expect("4 bytes")),
            unique_id,
            created_unix: u32::from_be_bytes(bytes[24..28].try_into().expect("4 bytes")) as u64
                + VHD_EPOCH_UNIX,
        })
    }
}

/// One's complement of the byte sum, with the checksum field itself counted as zero.
pub fn checksum(footer: &[u8]) -> u32 {
    let sum = footer
        .iter()
        .enumerate()
        .filter(|(i, _)| !(64..68).contains(i))
        .fold(0u32, |acc, (_, b)| acc.wrapping_add(*b as u32));
    !sum
}

/// CHS geometry from the VHD specification's algorithm (appendix "CHS calculation").
pub fn geometry_for(size: u64) -> Geometry {
    let mut total = size / 512;
    if total > 65535 * 16 * 255 {
        total = 65535 * 16 * 255;
    }
    let (spt, heads, cyl_times_heads);
    if total >= 65535 * 16 * 63 {
        spt = 255;
        heads = 16;
        cyl_times_heads = total / spt;
    } else {
        let mut s = 17;
        let mut cth = total / s;
        let mut h = cth.div_ceil(1024);
        if h < 4 {
            h = 4;
        }
        if cth >= h * 1024 || h > 16 {
            s = 31;
            h = 16;
            cth = total / s;
        }
        if cth >= h * 1024 {
            s = 63;
            h = 16;
            cth = total / s;
        }
        spt = s;
        heads = h;
        cyl_times_heads = cth;
    }
    Geometry {
        cylinders: (cyl_times_heads / heads).min(u16::MAX as u64) as u16,
        heads: heads as u8,
        sectors_per_track: spt as u8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn footer_round_trips_with_valid_checksum() {
        let f = VhdFooter::fixed(64 << 20, [7; 16], 1_700_000_000).unwrap();
        let bytes = f.to_bytes();
        assert_eq!(&bytes[0..8], b"conectix");
        assert_eq!(VhdFooter::parse(&bytes).unwrap(), f);
    }

    #[test]
    fn corrupted_footer_fails_checksum() {
        let mut bytes = VhdFooter::fixed(1 << 30, [1; 16], 1_700_000_000).unwrap().to_bytes();
        bytes[50] ^= 0xff;
        assert!(matches!(VhdFooter::parse(&bytes), Err(VhdError::BadChecksum { .. })));
    }

    #[test]
    fn unaligned_size_is_refused() {
        assert_eq!(VhdFooter::fixed(1000, [0; 16], 0), Err(VhdError::UnalignedSize(1000)));
    }

    #[test]
    fn geometry_matches_the_specification_examples() {
        // 1 GiB falls through the 17 and 31 sector steps to 63 sectors per track.
        let g = geometry_for(1 << 30);
        assert_eq!((g.cylinders, g.heads, g.sectors_per_track), (2080, 16, 63));
        let g = geometry_for(64 << 20);
        assert_eq!((g.heads, g.sectors_per_track), (8, 17));
    }
}
