//! VM sizes: their vCPUs and memory, and the smallest size that fits a request.

/// (size, vCPUs, memory MiB) of the general-purpose sizes this adapter chooses from,
/// smallest first.
const SIZES: &[(&str, u32, u64)] = &[
    ("Standard_B1s", 1, 1024),
    ("Standard_B2s", 2, 4096),
    ("Standard_D2s_v3", 2, 8192),
    ("Standard_D4s_v3", 4, 16_384),
    ("Standard_D8s_v3", 8, 32_768),
    ("Standard_D16s_v3", 16, 65_536),
    ("Standard_D32s_v3", 32, 131_072),
    ("Standard_D64s_v3", 64, 262_144),
];

/// vCPUs and memory of a size; (0, 0) for sizes this table does not know.
pub fn shape(size: &str) -> (u32, u64) {
    SIZES.iter().find(|(n, _, _)| n.eq_ignore_ascii_case(size)).map(|(_, c, m)| (*c, *m)).unwrap_or((0, 0))
}

/// The smallest size with at least `cpus` and `memory_mib`, or the largest.
pub fn fit(cpus: u32, memory_mib: u64) -> &'static str {
    SIZES.iter().find(|(_, c, m)| *c >= cpus && *m >= memory_mib).map(|(n, _, _)| *n).unwrap_or(SIZES[SIZES.len() - 1].0)
}
