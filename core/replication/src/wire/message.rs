//! The messages of the replication protocol and their encoding. Control messages are
//! JSON; block and digest frames are binary, since they carry the bulk.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::{cycle::WireBlock, hash::Digest, journal::{Consistency, RecoveryPoint}};

/// The protocol's name in the handshake.
pub const PROTOCOL: &str = "homeward-replication";
/// The protocol version this build speaks.
pub const VERSION: u16 = 2;
/// Bytes per digest in a `Hashes` frame.
const DIGEST_LEN: usize = std::mem::size_of::<Digest>();

/// A disk the process server replicates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskDecl {
    /// Id inside the consistency group.
    pub id: u32,
    /// Size in bytes.
    pub size: u64,
}

/// The process server's opening message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Always [`PROTOCOL`].
    pub protocol: String,
    /// The sender's protocol version.
    pub version: u16,
    /// The consistency group (replication group) being replicated.
    pub group: String,
    /// Its disks.
    pub disks: Vec<DiskDecl>,
}

/// A replica's state as the master target reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskState {
    /// Id inside the group.
    pub id: u32,
    /// Whether the replica existed (a seed) or was created empty for this sync.
    pub existed: bool,
}

/// The master target's answer to [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// The version both sides will speak.
    pub version: u16,
    /// The cycle the master target expects next; earlier cycles are already points.
    pub next_cycle: u64,
    /// Its newest recovery point.
    pub newest_point: Option<RecoveryPoint>,
    /// Each replica's state.
    pub disks: Vec<DiskState>,
    /// The master target acknowledges every this many blocks; the sender's window must be
    /// larger.
    pub ack_every: u32,
    /// What the master target's open found, for the operator (a torn tail it cut).
    pub notes: Vec<String>,
}

/// A protocol message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Opens a session.
    Hello(Hello),
    /// Accepts it.
    Welcome(Welcome),
    /// Refuses it.
    Refuse {
        /// Why, for the operator.
        reason: String,
    },
    /// Starts a cycle.
    Begin {
        /// The cycle's sequence number; must be the master target's next cycle.
        seq: u64,
        /// The snapshot time of the point, ms since the Unix epoch.
        time_ms: u64,
        /// Crash- or app-consistent.
        consistency: Consistency,
    },
    /// A block of the open cycle.
    Block(WireBlock),
    /// Ends the cycle.
    End {
        /// The cycle.
        seq: u64,
        /// How many blocks it carried; the master target checks the count.
        blocks: u64,
    },
    /// The master target has journaled this many blocks of the open cycle.
    Ack {
        /// Blocks journaled so far.
        blocks: u64,
    },
    /// The cycle is a durable recovery point.
    Applied {
        /// The point.
        point: RecoveryPoint,
    },
    /// The master target failed; the session ends.
    Error {
        /// What failed.
        message: String,
    },
    /// Asks for the digests of every `block`-sized block of a replica under `key`.
    HashRequest {
        /// The disk.
        disk: u32,
        /// The block size.
        block: u64,
        /// The comparison's key ([`crate::hash::KEY_LEN`] bytes), drawn by the process
        /// server for this comparison.
        key: Vec<u8>,
    },
    /// A page of digests.
    Hashes {
        /// The disk.
        disk: u32,
        /// Index of the first block in this page.
        first: u64,
        /// The digests.
        digests: Vec<Digest>,
    },
    /// All digests of a disk were sent.
    HashesEnd {
        /// The disk.
        disk: u32,
        /// How many digests were sent in total.
        blocks: u64,
    },
    /// Ends the session.
    Bye,
}

#[derive(Serialize, Deserialize)]
struct BeginJson {
    seq: u64,
    time_ms: u64,
    consistency: Consistency,
}

impl Message {
    /// Encodes to a frame kind and payload.
    pub fn encode(&self) -> (u8, Vec<u8>) {
        let (kind, mut head, tail) = self.encode_parts();
        head.extend_from_slice(tail);
        (kind, head)
    }

    /// Encodes to a frame kind and a payload in two parts: a head, and the bulk a block
    /// carries (empty for every other message), which is not copied.
    pub fn encode_parts(&self) -> (u8, Vec<u8>, &[u8]) {
        if let Message::Block(b) = self {
            let mut head = Vec::with_capacity(18);
            head.extend_from_slice(&b.disk.to_le_bytes());
            head.extend_from_slice(&b.offset.to_le_bytes());
            head.extend_from_slice(&b.len.to_le_bytes());
            head.push(b.codec);
            head.push(u8::from(b.zero));
            return (5, head, &b.payload);
        }
        let (kind, payload) = self.encode_control();
        (kind, payload, &[])
    }

    fn encode_control(&self) -> (u8, Vec<u8>) {
        let json = |v: serde_json::Value| serde_json::to_vec(&v).expect("JSON encodes");
        match self {
            Message::Hello(h) => (1, serde_json::to_vec(h).expect("JSON encodes")),
            Message::Welcome(w) => (2, serde_json::to_vec(w).expect("JSON encodes")),
            Message::Refuse { reason } => (3, json(serde_json::json!({ "reason": reason }))),
            Message::Begin { seq, time_ms, consistency } => {
                (4, serde_json::to_vec(&BeginJson { seq: *seq, time_ms: *time_ms, consistency: *consistency }).expect("JSON encodes"))
            }
            Message::Block(_) => unreachable!("blocks are encoded in parts"),
            Message::End { seq, blocks } => (6, json(serde_json::json!({ "seq": seq, "blocks": blocks }))),
            Message::Ack { blocks } => (7, json(serde_json::json!({ "blocks": blocks }))),
            Message::Applied { point } => (8, serde_json::to_vec(point).expect("JSON encodes")),
            Message::Error { message } => (9, json(serde_json::json!({ "message": message }))),
            Message::HashRequest { disk, block, key } => (10, json(serde_json::json!({ "disk": disk, "block": block, "key": key }))),
            Message::Hashes { disk, first, digests } => {
                let mut out = Vec::with_capacity(12 + DIGEST_LEN * digests.len());
                out.extend_from_slice(&disk.to_le_bytes());
                out.extend_from_slice(&first.to_le_bytes());
                for d in digests {
                    out.extend_from_slice(d);
                }
                (11, out)
            }
            Message::HashesEnd { disk, blocks } => (12, json(serde_json::json!({ "disk": disk, "blocks": blocks }))),
            Message::Bye => (13, Vec::new()),
        }
    }

    /// Decodes a frame. A block's bytes stay in `payload`'s buffer.
    pub fn decode(kind: u8, frame: Bytes) -> Result<Message, String> {
        let payload = &frame[..];
        fn js<T: for<'de> Deserialize<'de>>(p: &[u8]) -> Result<T, String> {
            serde_json::from_slice(p).map_err(|e| format!("bad JSON payload: {e}"))
        }
        fn field<T: for<'de> Deserialize<'de>>(v: &serde_json::Value, name: &str) -> Result<T, String> {
            serde_json::from_value(v.get(name).cloned().ok_or(format!("missing field {name}"))?).map_err(|e| e.to_string())
        }
        Ok(match kind {
            1 => Message::Hello(js(payload)?),
            2 => Message::Welcome(js(payload)?),
            3 => Message::Refuse { reason: field(&js(payload)?, "reason")? },
            4 => {
                let b: BeginJson = js(payload)?;
                Message::Begin { seq: b.seq, time_ms: b.time_ms, consistency: b.consistency }
            }
            5 => {
                if payload.len() < 18 {
                    return Err("block frame too short".into());
                }
                let disk = u32::from_le_bytes(payload[0..4].try_into().expect("4"));
                let offset = u64::from_le_bytes(payload[4..12].try_into().expect("8"));
                let len = u32::from_le_bytes(payload[12..16].try_into().expect("4"));
                Message::Block(WireBlock {
                    disk,
                    offset,
                    len,
                    codec: payload[16],
                    zero: payload[17] != 0,
                    payload: frame.slice(18..),
                })
            }
            6 => {
                let v: serde_json::Value = js(payload)?;
                Message::End { seq: field(&v, "seq")?, blocks: field(&v, "blocks")? }
            }
            7 => Message::Ack { blocks: field(&js(payload)?, "blocks")? },
            8 => Message::Applied { point: js(payload)? },
            9 => Message::Error { message: field(&js(payload)?, "message")? },
            10 => {
                let v: serde_json::Value = js(payload)?;
                Message::HashRequest { disk: field(&v, "disk")?, block: field(&v, "block")?, key: field(&v, "key")? }
            }
            11 => {
                if payload.len() < 12 || !(payload.len() - 12).is_multiple_of(DIGEST_LEN) {
                    return Err("digest frame has a bad length".into());
                }
                let disk = u32::from_le_bytes(payload[0..4].try_into().expect("4"));
                let first = u64::from_le_bytes(payload[4..12].try_into().expect("8"));
                let digests = payload[12..].chunks(DIGEST_LEN).map(|c| c.try_into().expect("a digest's length")).collect();
                Message::Hashes { disk, first, digests }
            }
            12 => {
                let v: serde_json::Value = js(payload)?;
                Message::HashesEnd { disk: field(&v, "disk")?, blocks: field(&v, "blocks")? }
            }
            13 => Message::Bye,
            other => return Err(format!("unknown message kind {other}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_round_trips() {
        let point = RecoveryPoint { seq: 4, time_ms: 5, consistency: Consistency::App };
        let msgs = vec![
            Message::Hello(Hello { protocol: PROTOCOL.into(), version: VERSION, group: "g".into(), disks: vec![DiskDecl { id: 1, size: 9 }] }),
            Message::Welcome(Welcome {
                version: 1,
                next_cycle: 3,
                newest_point: Some(point),
                disks: vec![DiskState { id: 1, existed: true }],
                ack_every: 8,
                notes: vec!["n".into()],
            }),
            Message::Refuse { reason: "r".into() },
            Message::Begin { seq: 3, time_ms: 7, consistency: Consistency::Crash },
            Message::Block(WireBlock { disk: 2, offset: 4096, len: 3, codec: 0, zero: false, payload: Bytes::from_static(b"abc") }),
            Message::End { seq: 3, blocks: 1 },
            Message::Ack { blocks: 8 },
            Message::Applied { point },
            Message::Error { message: "e".into() },
            Message::HashRequest { disk: 1, block: 65536, key: vec![5; crate::hash::KEY_LEN] },
            Message::Hashes { disk: 1, first: 2, digests: vec![[1; 16], [2; 16]] },
            Message::HashesEnd { disk: 1, blocks: 4 },
            Message::Bye,
        ];
        for m in msgs {
            let (kind, payload) = m.encode();
            assert_eq!(Message::decode(kind, payload.into()).unwrap(), m);
        }
        assert!(Message::decode(99, Bytes::new()).is_err());
        assert!(Message::decode(5, Bytes::from_static(&[0; 3])).is_err());
    }
}
