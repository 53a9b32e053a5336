//! nonrootd: host preparation for non-root containers.

pub mod subids;

/// Command-line front ends of `nonrootctl`.
pub mod cli {
    pub mod subids;
}
