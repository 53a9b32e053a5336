//! Concurrency: 8 processes allocating while shadow-utils' `usermod --add-subuids` and
//! `useradd` run in a loop on the same files (in a mount namespace where a copy of `/etc` is
//! `/etc`): no overlaps, no lost lines, and `getsubids` reads the result. Also threads of one
//! process allocating at once.

mod subids_support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use nonrootd::subids::{self, Settings};
use subids_support::{CHILD_ENV, TempEtc, assert_ok, child, config_for};

const CHILDREN: usize = 8;
const PER_CHILD: usize = 15;
const SHADOW_USERS: usize = 10;
const EXTRA: &str = "count = 1000\nmax = 400000000\n";

fn settings_for(root: &std::path::Path) -> Settings {
    let mut settings = Settings::with_login_defs(
        &config_for(&root.join("etc"), EXTRA),
        &root.join("state"),
        &root.join("no-login.defs"),
    );
    settings.lock_timeout = Duration::from_secs(60);
    settings
}

/// Not a test on its own: the allocating child process of `processes_and_shadow_allocate_at_once`.
#[test]
fn child_process() {
    let Ok(prefix) = std::env::var(CHILD_ENV) else {
        return;
    };
    let root = PathBuf::from(std::env::var("NONROOTD_TEST_ROOT").unwrap());
    let settings = settings_for(&root);
    for j in 0..PER_CHILD {
        subids::allocate(&settings, &format!("{prefix}t{j}"), None, false).unwrap();
    }
}

/// Owner → (start, count) of each line of a file; panics on an owner seen twice.
fn owners(text: &str) -> HashMap<String, (u64, u64)> {
    let mut map = HashMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(':').collect();
        let [owner, start, count] = f[..] else {
            panic!("bad line {line:?}")
        };
        let value = (start.parse().unwrap(), count.parse().unwrap());
        assert!(map.insert(owner.to_string(), value).is_none(), "{owner} twice");
    }
    map
}

#[test]
fn processes_and_shadow_allocate_at_once() {
    let etc = TempEtc::copy_of_host();
    let root = etc.etc().parent().unwrap().to_path_buf();
    assert_ok(&etc.shadow(&format!(
        "for i in $(seq 1 {SHADOW_USERS}); do useradd -K SUB_UID_COUNT=0 -K SUB_GID_COUNT=0 um$i; done"
    )));
    let mut shadow = etc
        .shadow_command(&format!(
            "for i in $(seq 1 {SHADOW_USERS}); do\n\
               s=$((500000000 + i * 1000)); e=$((s + 999))\n\
               usermod --add-subuids $s-$e --add-subgids $s-$e um$i\n\
               useradd -K SUB_UID_COUNT=1000 -K SUB_GID_COUNT=1000 ua$i\n\
             done"
        ))
        .spawn()
        .unwrap();
    let children: Vec<_> = (0..CHILDREN)
        .map(|k| spawn_captured(child("child_process", &format!("p{k}")).env("NONROOTD_TEST_ROOT", &root)))
        .collect();
    assert!(shadow.wait().unwrap().success(), "shadow's loop failed");
    for c in children {
        assert_ok(&c.wait_with_output().unwrap());
    }

    let settings = settings_for(&root);
    let check = subids::check(&settings).unwrap();
    assert!(check.is_clean(), "{check}");
    let (uids, gids) = (owners(&etc.read("subuid")), owners(&etc.read("subgid")));
    assert_eq!(uids.len(), CHILDREN * PER_CHILD + 2 * SHADOW_USERS, "no lost lines");
    assert_eq!(gids.len(), uids.len());
    for k in 0..CHILDREN {
        for j in 0..PER_CHILD {
            let name = format!("p{k}t{j}");
            assert_eq!(uids[&name].1, 1000);
            assert_eq!(uids[&name], gids[&name], "{name}: one start for both files");
        }
    }
    for i in 1..=SHADOW_USERS {
        assert_eq!(uids[&format!("um{i}")], (500_000_000 + i as u64 * 1000, 1000));
        assert_eq!(gids[&format!("ua{i}")].1, 1000);
    }
    let out = assert_ok(&etc.shadow("getsubids p3t7; getsubids -g ua4; getsubids um2"));
    let (p, u) = (uids["p3t7"], gids["ua4"]);
    assert_eq!(
        out,
        format!(
            "0: p3t7 {} {}\n0: ua4 {} {}\n0: um2 500002000 1000\n",
            p.0, p.1, u.0, u.1
        )
    );
}

/// Spawns with captured output, to collect with `wait_with_output`.
fn spawn_captured(cmd: &mut std::process::Command) -> std::process::Child {
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn threads_allocate_at_once() {
    let etc = TempEtc::new();
    let root = etc.etc().parent().unwrap().to_path_buf();
    std::thread::scope(|s| {
        for k in 0..4 {
            let settings = settings_for(&root);
            s.spawn(move || {
                for j in 0..10 {
                    subids::allocate(&settings, &format!("th{k}t{j}"), None, false).unwrap();
                }
            });
        }
    });
    let check = subids::check(&settings_for(&root)).unwrap();
    assert!(check.is_clean(), "{check}");
    assert_eq!(owners(&etc.read("subuid")).len(), 40);
    assert_eq!(owners(&etc.read("subuid")), owners(&etc.read("subgid")));
}
