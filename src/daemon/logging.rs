//! Logs go to the journal when systemd connected stderr to it (with real `MESSAGE_ID=` fields),
//! to stderr otherwise.

use std::io::IsTerminal;

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// True when stderr is the journal stream systemd set up (`$JOURNAL_STREAM` = its dev:inode).
fn stderr_is_journal() -> bool {
    use std::os::fd::AsFd;
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(stat) = nix::sys::stat::fstat(std::io::stderr().as_fd()) else {
        return false;
    };
    stream.to_string_lossy() == format!("{}:{}", stat.st_dev, stat.st_ino)
}

pub fn init() {
    if stderr_is_journal()
        && let Ok(journald) = tracing_journald::layer()
    {
        let journald = journald
            .with_field_prefix(None)
            .with_syslog_identifier("nonrootd".into());
        tracing_subscriber::registry()
            .with(journald)
            .with(LevelFilter::INFO)
            .init();
        return;
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::INFO)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
