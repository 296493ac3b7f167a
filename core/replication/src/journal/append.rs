//! Appending records to the active segment. The journal appends its own records here, and
//! so do the background tasks that journal a cycle's batches, one after the other.

use std::{fs::File, io::Write, path::Path};

use super::{BlockWrite, io, record, record::Record};
use crate::error::JournalError;

/// Journal bytes appended between two starts of their writeback.
const WRITEBACK_PIECE: u64 = 8 << 20;

/// Where the active segment's next record goes. Whoever appends owns it; a batch task
/// hands it on to the next batch once its records are on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tail {
    /// Length of the active segment: the offset of the next record.
    pub len: u64,
    /// The next record's sequence number.
    pub lsn: u64,
    /// Where writeback of the segment was last started.
    pub writeback_from: u64,
}

/// Appends `record`; returns its offset. `midway`, when given, runs after half of the
/// record's bytes are written (crash tests stop the process there).
pub(crate) fn append_record(
    file: &File,
    path: &Path,
    tail: &mut Tail,
    record: &Record,
    midway: Option<&dyn Fn()>,
) -> Result<u64, JournalError> {
    let bytes = record::encode(record, tail.lsn);
    let mut file = file;
    match midway {
        Some(midway) => {
            let half = bytes.len() / 2;
            file.write_all(&bytes[..half]).map_err(io("append", path))?;
            midway();
            file.write_all(&bytes[half..]).map_err(io("append", path))?;
        }
        None => file.write_all(&bytes).map_err(io("append", path))?,
    }
    Ok(advance(tail, bytes.len() as u64))
}

/// Appends the block record of `write`, holding `undo` (`None` for zeros), straight from the undo slice with one vectored write: the data
/// is neither copied into a record buffer nor written in several calls, which at cycle
/// rates is most of the journal's CPU. Returns the record's offset.
pub(crate) fn append_block(
    file: &File,
    path: &Path,
    tail: &mut Tail,
    cycle: u64,
    write: &BlockWrite,
    undo: Option<&[u8]>,
) -> Result<u64, JournalError> {
    let parts =
        record::encode_block_parts(tail.lsn, cycle, write.disk, write.offset, write.len, undo);
    let mut slices: Vec<std::io::IoSlice<'_>> = Vec::with_capacity(3);
    slices.push(std::io::IoSlice::new(&parts.head));
    slices.extend(undo.map(std::io::IoSlice::new));
    slices.push(std::io::IoSlice::new(&parts.crc));
    let total: usize = slices.iter().map(|s| s.len()).sum();
    let mut rest = &mut slices[..];
    let mut file_ref = file;
    while !rest.is_empty() {
        let n = match file_ref.write_vectored(rest) {
            Ok(0) => return Err(io("append", path)(std::io::ErrorKind::WriteZero.into())),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io("append", path)(e)),
        };
        std::io::IoSlice::advance_slices(&mut rest, n);
    }
    let record_offset = advance(tail, total as u64);
    // Block records are most of a cycle's journal bytes: their writeback starts as they
    // come, in pieces of a few MiB (fewer, larger submissions), so that the batch's fsync
    // waits for little more than the last piece.
    if tail.writeback_from > record_offset {
        tail.writeback_from = record_offset; // a new segment
    }
    if tail.len - tail.writeback_from >= WRITEBACK_PIECE {
        crate::transport::start_writeback(
            file,
            tail.writeback_from,
            tail.len - tail.writeback_from,
        );
        tail.writeback_from = tail.len;
    }
    Ok(record_offset)
}

/// Moves the tail past a record of `bytes`; returns the record's offset.
fn advance(tail: &mut Tail, bytes: u64) -> u64 {
    let offset = tail.len;
    tail.lsn += 1;
    tail.len += bytes;
    offset
}
