//! Framing: `len u32 | kind u8 | payload | crc32c u32`, little endian. `len` counts the
//! kind byte and payload; the CRC32C covers them too, so a damaged frame is refused rather
//! than journaled.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest frame accepted; bigger lengths are treated as corruption.
pub const MAX_FRAME: u32 = 32 << 20;

/// A frame as read from the socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The message kind.
    pub kind: u8,
    /// Its payload.
    pub payload: Vec<u8>,
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
    let len = 1 + payload.len() as u32;
    let mut crc = crc32c::crc32c(&[kind]);
    crc = crc32c::crc32c_append(crc, payload);
    w.write_all(&len.to_le_bytes()).await?;
    w.write_all(&[kind]).await?;
    w.write_all(payload).await?;
    w.write_all(&crc.to_le_bytes()).await
}

/// Reads one frame, verifying its length bound and checksum.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Frame, FrameError> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await.map_err(FrameError::Io)?;
    let len = u32::from_le_bytes(len);
    if len == 0 || len > MAX_FRAME {
        return Err(FrameError::Bad(format!("frame length {len} is outside 1..={MAX_FRAME}")));
    }
    let mut body = vec![0u8; len as usize + 4];
    r.read_exact(&mut body).await.map_err(FrameError::Io)?;
    let stored = u32::from_le_bytes(body[len as usize..].try_into().expect("4 bytes"));
    body.truncate(len as usize);
    let actual = crc32c::crc32c(&body);
    if stored != actual {
        return Err(FrameError::Bad(format!("frame checksum mismatch: stored {stored:#010x}, computed {actual:#010x}")));
    }
    let kind = body[0];
    body.remove(0);
    Ok(Frame { kind, payload: body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_damage_is_refused() {
        let mut buf = Vec::new();
        write_frame(&mut buf, 5, b"hello").await.unwrap();
        let frame = read_frame(&mut &buf[..]).await.unwrap();
        assert_eq!(frame, Frame { kind: 5, payload: b"hello".to_vec() });
        let mut bad = buf.clone();
        bad[6] ^= 1;
        assert!(matches!(read_frame(&mut &bad[..]).await, Err(FrameError::Bad(_))));
        let huge = (MAX_FRAME + 1).to_le_bytes();
        assert!(matches!(read_frame(&mut &huge[..]).await, Err(FrameError::Bad(_))));
        assert!(matches!(read_frame(&mut &buf[..3]).await, Err(FrameError::Io(_))));
    }
}
