//! Homeward's data path: it moves disk blocks from a protected disk to its replica.
//!
//! - [`transport`]: reading and writing disks named by locators (datastore files with
//!   `SEEK_DATA`/`SEEK_HOLE`, HTTP range as in vSphere `/folder`, Azure page blobs with
//!   Put Page and Get Page Ranges). The trait is object safe so the plugin host can add the
//!   served-by-adapter and native-plugin transports from outside. An adapter's locator,
//!   with its request headers, container format and data offset, opens as a
//!   [`transport::Window`] onto exactly the disk's bytes ([`transport::open_adapter_locator`]),
//!   so a fixed VHD's footer or a container header is never read or written as disk data.
//! - [`journal`]: the retention journal: segments of CRC32C-checked records holding, for
//!   every write of a cycle, the bytes it overwrote (undo), appended and synced before the
//!   write touches the replica, plus begin, commit and rewind marks that make recovery
//!   points. Torn tails are cut at open; corruption elsewhere is reported with its segment
//!   and offset. Any retained point can be materialised onto new disks or the replicas
//!   themselves; pruning drops whole segments older than the retention.
//! - [`copy`], [`hash`], [`resync`]: full copy of allocated extents, block hashing of both
//!   sides at once (keyed XXH3-128 under a key drawn per comparison), hash-tree
//!   verification that repairs and reports differences and fails if they persist.
//! - [`cycle`]: change-tracked cycles (many reads in flight, compression, one recovery
//!   point per consistency group), the master target that journals and applies them, and
//!   the cycle schedule (app-consistent interval, measured RPO).
//! - [`wire`]: the process-server / master-target protocol over TCP: length-prefixed,
//!   checksummed frames, a versioned handshake that tells the sender where to resume, a
//!   bounded window of unacknowledged blocks and an optional bandwidth limit. The
//!   `homeward-replication-role` binary runs either role as its own process;
//!   [`wire::LoopbackMasterTarget`] runs both in one process over loopback, as the
//!   pipeline's cycles do.
//! - [`progress`]: bytes, blocks, rate and ETA on a watch channel.
//! - [`buffers`]: the bounded pool that read buffers return to, so that a cycle reads
//!   into pages already mapped rather than faulting in fresh ones.
//!
//! Why undo only: the replica holds the newest point, so the journal needs only what each
//! write overwrote to roll the replica back to any retained point, and each changed byte
//! is written twice (undo and replica) rather than three times. A master target killed
//! halfway through a cycle rolls back what of it landed and the process server, which
//! keeps its snapshot until the point is acknowledged, sends the cycle again.

#![warn(missing_docs)]

pub mod buffers;
pub mod compress;
pub mod copy;
pub mod cycle;
pub mod error;
pub mod extent;
pub mod hash;
pub mod journal;
pub mod progress;
pub mod resync;
pub mod transport;
pub mod wire;

pub use error::{JournalError, ReplicationError, TransportError, WireError};
