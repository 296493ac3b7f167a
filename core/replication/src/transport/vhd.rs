//! The fixed-VHD footer: the 512 bytes after the data of an Azure page-blob disk. A new
//! disk uploaded to Azure must carry one; the data path writes it when it creates a replica.

/// A fixed-VHD footer for a disk of `capacity` bytes (big-endian fields, one's-complement
/// checksum, CHS geometry as the VHD specification computes it).
pub fn fixed_vhd_footer(capacity: u64) -> [u8; 512] {
    let mut f = [0u8; 512];
    f[0..8].copy_from_slice(b"conectix");
    f[8..12].copy_from_slice(&2u32.to_be_bytes()); // features: reserved bit
    f[12..16].copy_from_slice(&0x0001_0000u32.to_be_bytes()); // format version
    f[16..24].copy_from_slice(&u64::MAX.to_be_bytes()); // data offset: none for fixed
    f[28..32].copy_from_slice(b"hwrd"); // creator application
    f[32..36].copy_from_slice(&0x0001_0000u32.to_be_bytes());
    f[36..40].copy_from_slice(b"Wi2k");
    f[40..48].copy_from_slice(&capacity.to_be_bytes());
    f[48..56].copy_from_slice(&capacity.to_be_bytes());
    let (c, h, s) = chs(capacity / 512);
    f[56..58].copy_from_slice(&c.to_be_bytes());
    f[58] = h;
    f[59] = s;
    f[60..64].copy_from_slice(&2u32.to_be_bytes()); // disk type: fixed
    let id = blake3::hash(&capacity.to_le_bytes());
    f[68..84].copy_from_slice(&id.as_bytes()[..16]);
    let sum: u32 = f.iter().map(|&b| b as u32).sum();
    f[64..68].copy_from_slice(&(!sum).to_be_bytes());
    f
}

fn chs(sectors: u64) -> (u16, u8, u8) {
    let total = sectors.min(65535 * 16 * 255);
    let (spt, heads, cyl_heads);
    if total >= 65535 * 16 * 63 {
        spt = 255;
        heads = 16;
        cyl_heads = total / spt;
    } else {
        let mut s = 17;
        let mut ch = total / s;
        let mut h = ch.div_ceil(1024).max(4);
        if ch >= h * 1024 || h > 16 {
            s = 31;
            h = 16;
            ch = total / s;
        }
        if ch >= h * 1024 {
            s = 63;
            h = 16;
            ch = total / s;
        }
        spt = s;
        heads = h;
        cyl_heads = ch;
    }
    ((cyl_heads / heads) as u16, heads as u8, spt as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_footer_checksums_and_describes_a_fixed_disk() {
        let f = fixed_vhd_footer(64 << 20);
        assert_eq!(&f[0..8], b"conectix");
        assert_eq!(u32::from_be_bytes(f[60..64].try_into().unwrap()), 2);
        assert_eq!(u64::from_be_bytes(f[48..56].try_into().unwrap()), 64 << 20);
        let mut g = f;
        g[64..68].fill(0);
        let sum: u32 = g.iter().map(|&b| b as u32).sum();
        assert_eq!(u32::from_be_bytes(f[64..68].try_into().unwrap()), !sum);
    }
}
