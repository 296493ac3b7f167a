//! The protocol between the process server (reads, compresses, sends) and the master
//! target (receives, journals, applies), over TCP.
//!
//! Every frame is length-prefixed and CRC32C-checked. A session opens with a versioned
//! handshake in which the master target says which cycle it expects next, so a process
//! server that lost its connection (or a master target that crashed) resumes without
//! sending a journaled cycle twice. The sender keeps a bounded window of blocks the
//! master target has not yet acknowledged, and can be held to a bandwidth limit.

mod client;
mod frame;
mod limit;
mod loopback;
mod message;
mod server;

pub use client::{ProcessServerSession, SessionOptions, SyncReport};
pub use frame::{Frame, FrameError, MAX_FRAME, read_frame, write_frame, write_frame_parts};
pub use limit::BandwidthLimiter;
pub use loopback::LoopbackMasterTarget;
pub use message::{DiskDecl, DiskState, Hello, Message, PROTOCOL, VERSION, Welcome};
pub use server::{ACK_EVERY, MasterTargetConfig, MasterTargetServer};
