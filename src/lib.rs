//! nonrootd: host preparation for non-root containers. The pure logic lives in
//! `nonrootd_core`; this crate executes it on the host and hosts the CLI and the daemon.

pub mod apply;
pub mod cli;
pub mod client;
pub mod config_file;
pub mod daemon;
pub mod host;
pub mod ids;
pub mod lock;
pub mod message_id;
pub mod state;
pub mod subids;
pub mod volumes;
