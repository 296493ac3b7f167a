//! The failback pipeline: the configuration-server database, prerequisites, jobs and the
//! operations that move protected items through the three stages of failback.
//!
//! - [`store`]: SQLite (WAL) with versioned migrations, online backup and restore.
//! - [`model`]: items, groups, policies, process servers, master targets, points, events.
//! - [`jobs`]: jobs of idempotent, checkpointed steps that resume after a crash.
//! - [`prereq`] and [`facts`]: every rule of the reference article, checked before a job
//!   changes anything, all failures reported at once.
//! - [`ops`]: protect, failover (planned, unplanned, test), reprotect, failback, commit.
//! - [`replicate`]: snapshots, initial sync and delta resync, change-tracked cycles.
//! - [`datapath`]: adapter locators to native transports.

#![warn(missing_docs)]

pub mod datapath;
pub mod error;
pub mod facts;
pub mod jobs;
pub mod model;
pub mod ops;
pub mod pipeline;
pub mod prereq;
pub mod registry;
pub mod replicate;
pub mod store;

pub use error::PipelineError;
/// The wire codec, and the choice `[replication] codec` names (`auto` by default).
pub use homeward_replication::compress::{Codec, CodecChoice};
pub use pipeline::{JobProgress, Pipeline, SiteHandle, SiteRole};
