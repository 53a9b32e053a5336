//! Crash safety: a child process allocating in a loop is killed with SIGKILL at random points;
//! every state of the files seen meanwhile and afterwards is a whole old or new file, and
//! the stale locks of the dead child do not block the next allocation.

mod subids_support;

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nonrootd::subids::{self, Settings};
use subids_support::{CHILD_ENV, TempEtc, child, config_for};

const ROUNDS: usize = 20;

fn settings_for(root: &Path) -> Settings {
    let config = config_for(&root.join("etc"), "count = 1000\n");
    let mut settings = Settings::with_login_defs(&config, &root.join("state"), &root.join("no-login.defs"));
    settings.lock_timeout = Duration::from_secs(30);
    settings
}

/// Not a test on its own: the child that `kill_9_leaves_old_or_new_files` kills.
#[test]
fn child_process() {
    let Ok(start) = std::env::var(CHILD_ENV) else {
        return;
    };
    let root = PathBuf::from(std::env::var("NONROOTD_TEST_ROOT").unwrap());
    let settings = settings_for(&root);
    let start: usize = start.parse().unwrap();
    for j in start..start + 100_000 {
        subids::allocate(&settings, &format!("t{j}"), None, false).unwrap();
    }
}

/// The number of tenants in a file, which must be `t0 … tN-1` in order, 1000 ids each,
/// first fit from 100000, whole lines only.
fn tenants(bytes: &[u8]) -> usize {
    let text = std::str::from_utf8(bytes).expect("utf-8");
    assert!(text.is_empty() || text.ends_with('\n'), "torn file: {text:?}");
    for (j, line) in text.lines().enumerate() {
        assert_eq!(line, format!("t{j}:{}:1000", 100_000 + 1000 * j), "line {}", j + 1);
    }
    text.lines().count()
}

fn random_below(n: u64) -> u64 {
    RandomState::new().hash_one(std::process::id()) % n
}

#[test]
fn kill_9_leaves_old_or_new_files() {
    let etc = TempEtc::new();
    let root = etc.etc().parent().unwrap().to_path_buf();
    for _ in 0..ROUNDS {
        let done = tenants(&std::fs::read(etc.path("subgid")).unwrap_or_default());
        let mut child = child("child_process", &done.to_string())
            .env("NONROOTD_TEST_ROOT", &root)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Read the files while the child writes them, for a random while, then kill it.
        for _ in 0..=random_below(200) {
            // subgid first: subuid is always written before subgid, so a later read of subuid
            // holds at least the tenants an earlier read of subgid did.
            let gids = tenants(&std::fs::read(etc.path("subgid")).unwrap_or_default());
            let uids = tenants(&std::fs::read(etc.path("subuid")).unwrap_or_default());
            assert!(
                gids <= uids,
                "subgid has {gids} tenants, subuid read after it only {uids}"
            );
            std::thread::sleep(Duration::from_micros(random_below(2000)));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let uids = tenants(&std::fs::read(etc.path("subuid")).unwrap_or_default());
        let gids = tenants(&std::fs::read(etc.path("subgid")).unwrap_or_default());
        assert!(uids == gids || uids == gids + 1, "subuid {uids}, subgid {gids}");
    }
    // The dead child's locks are stale: the next allocation completes the files.
    let settings = settings_for(&root);
    let n = tenants(&std::fs::read(etc.path("subgid")).unwrap_or_default());
    subids::allocate(&settings, &format!("t{n}"), None, false).unwrap();
    assert_eq!(tenants(&std::fs::read(etc.path("subuid")).unwrap()), n + 1);
    assert_eq!(tenants(&std::fs::read(etc.path("subgid")).unwrap()), n + 1);
    let check = subids::check(&settings).unwrap();
    assert!(check.is_clean(), "{check}");
}
