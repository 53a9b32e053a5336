//! Journal catalog ids of the messages an admin may want to search for
//! (`journalctl MESSAGE_ID=…`).

pub const STARTED: &str = "3f1c2b8e5d7a4f60a9e1c4d2b7f80a11";
pub const PATH_CHANGED: &str = "8a4e2f61c39b4d7e8f0a1b2c3d4e5f60";
pub const PATH_REFUSED: &str = "c1d2e3f4a5b64c7d8e9f0a1b2c3d4e5f";
pub const RELOAD_REFUSED: &str = "5e6f7a8b9c0d4e1f8a2b3c4d5e6f7a8b";
