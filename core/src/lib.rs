//! Pure logic of nonrootd: the configuration model, id newtypes and the planner that turns
//! desired state plus observed state into actions. Nothing here touches the host.
#![forbid(unsafe_code)]

pub mod acl;
pub mod config;
pub mod duty;
pub mod ids;
pub mod mode;
pub mod plan;
pub mod report;
pub mod sandbox;
pub mod status;
pub mod subids;
pub mod volumes;
