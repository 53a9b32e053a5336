//! nonrootd: host preparation for non-root containers.
