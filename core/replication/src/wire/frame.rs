//! Framing: `len u32 | kind u8 | payload | crc32c u32`, little endian. `len` counts the
//! kind byte and payload; the CRC32C covers them too, so a damaged frame is refused rather
//! than journaled.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest frame accepted; bigger lengths are treated as corruption.
pub const MAX_FRAME: u32 = 32 << 20;

/// A frame as read from the socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The message kind.
    pub kind: u8,
    /// Its payload.
    pub payload: Bytes,
}

/// Why a frame could not be read.
#[derive(Debug)]
pub enum FrameError {
    /// The socket failed or closed.
    Io(std::io::Error),
    /// The frame is damaged.
    Bad(String),
}

/// Writes one frame (buffered; the caller flushes).
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, kind: u8, payload: &[u8]) -> std::io::Result<()> {
    write_frame_parts(w, kind, &[payload]).await
}

/// Writes one frame whose payload is `parts` back to back, so that a block's bytes go
/// from the read buffer to the socket's buffer without being gathered first.
pub async fn write_frame_parts<W: AsyncWrite + Unpin>(w: &mut W, kind: u8, parts: &[&[u8]]) -> std::io::Result<()> {
    let len = 1 + parts.iter().map(|p| p.len() as u32).sum::<u32>();
    let crc = parts.iter().fold(crc32c::crc32c(&[kind]), |crc, p| crc32c::crc32c_append(crc, p));
    let mut head = [0u8; 5];
    head[..4].copy_from_slice(&len.to_le_bytes());
    head[4] = kind;
    w.write_all(&head).await?;
    for p in parts {
        w.write_all(p).await?;
    }
    w.write_all(&crc.to_le_bytes()).await
}

/// Reads one frame, verifying its length bound and checksum. The payload is read into a
/// buffer of its own, never zeroed first, and handed on without further copies.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Frame, FrameError> {
    let mut head = [0u8; 5];
    r.read_exact(&mut head[..4]).await.map_err(FrameError::Io)?;
    let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes"));
    if len == 0 || len > MAX_FRAME {
        return Err(FrameError::Bad(format!("frame length {len} is outside 1..={MAX_FRAME}")));
    }
    r.read_exact(&mut head[4..]).await.map_err(FrameError::Io)?;
    let kind = head[4];
    let want = len as usize - 1;
    let mut payload = BytesMut::with_capacity(want);
    let mut rest = (&mut *r).take(want as u64);
    while payload.len() < want {
        if rest.read_buf(&mut payload).await.map_err(FrameError::Io)? == 0 {
            return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
    }
    let mut stored = [0u8; 4];
    r.read_exact(&mut stored).await.map_err(FrameError::Io)?;
    let stored = u32::from_le_bytes(stored);
    let actual = crc32c::crc32c_append(crc32c::crc32c(&[kind]), &payload);
    if stored != actual {
        return Err(FrameError::Bad(format!("frame checksum mismatch: stored {stored:#010x}, computed {actual:#010x}")));
    }
    Ok(Frame { kind, payload: payload.freeze() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_damage_is_refused() {
        let mut buf = Vec::new();
        write_frame(&mut buf, 5, b"hello").await.unwrap();
        let frame = read_frame(&mut &buf[..]).await.unwrap();
        assert_eq!(frame, Frame { kind: 5, payload: Bytes::from_static(b"hello") });
        let mut bad = buf.clone();
        bad[6] ^= 1;
        assert!(matches!(read_frame(&mut &bad[..]).await, Err(FrameError::Bad(_))));
        let huge = (MAX_FRAME + 1).to_le_bytes();
        assert!(matches!(read_frame(&mut &huge[..]).await, Err(FrameError::Bad(_))));
        assert!(matches!(read_frame(&mut &buf[..3]).await, Err(FrameError::Io(_))));
        assert!(matches!(read_frame(&mut &buf[..8]).await, Err(FrameError::Io(_))));
        let mut parts = Vec::new();
        write_frame_parts(&mut parts, 5, &[b"he", b"", b"llo"]).await.unwrap();
        assert_eq!(parts, buf);
    }
}
