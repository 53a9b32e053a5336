//! Table-driven cases: each directory under `tests/subids/cases/` holds input files
//! (`subuid`, `subgid`, optional extra `[subids]` lines in `subids.toml`), the commands to run
//! (`command`, one `nonrootctl subids …` per line) and the expected results (`output.expected`,
//! and `subuid.expected` / `subgid.expected` where a file changes; absent means byte-identical).
//! `NONROOTD_BLESS=1` writes the expected files instead of comparing.

mod subids_support;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use clap::Parser;
use nonrootd::cli::subids::{SubidsCommand, execute};
use nonrootd::subids::{self, SubidsError};
use nonrootd_core::duty::Duty;
use nonrootd_core::ids::{Gid, IdResolver, Uid};
use nonrootd_core::report::Outcome;
use subids_support::{TempEtc, config_for};

#[derive(Parser)]
struct Line {
    #[command(subcommand)]
    command: SubidsCommand,
}

fn run_case(dir: &Path, bless: bool) -> Vec<String> {
    let env = TempEtc::new();
    let input = |name: &str| fs::read(dir.join(name)).ok();
    for name in ["subuid", "subgid"] {
        if let Some(bytes) = input(name) {
            fs::write(env.path(name), bytes).unwrap();
        }
    }
    let extra = fs::read_to_string(dir.join("subids.toml")).unwrap_or_default();
    let config = env.config(&extra);
    let mut transcript = String::new();
    for line in fs::read_to_string(dir.join("command")).unwrap().lines() {
        let words = std::iter::once("subids").chain(line.split_whitespace());
        let command = Line::try_parse_from(words)
            .unwrap_or_else(|e| panic!("{}: {line}: {e}", dir.display()))
            .command;
        let out = execute(command, &config, &env.state());
        transcript += &format!("$ nonrootctl subids {line}\n{}{}", out.stdout, out.stderr);
        if !out.success {
            transcript += "[exit 1]\n";
        }
    }
    let transcript = transcript.replace(&env.etc().display().to_string(), "/etc");
    let mut results = vec![("output.expected".to_string(), Some(transcript.into_bytes()), None)];
    for name in ["subuid", "subgid"] {
        let got = fs::read(env.path(name)).ok();
        results.push((format!("{name}.expected"), got, input(name)));
    }
    let mut failures = Vec::new();
    for (expected_name, got, unchanged) in results {
        let expected_path = dir.join(&expected_name);
        let expected = fs::read(&expected_path).ok().or(unchanged.clone());
        if bless {
            match &got {
                Some(bytes) if got != unchanged || expected_name == "output.expected" => {
                    fs::write(&expected_path, bytes).unwrap()
                }
                _ => {
                    let _ = fs::remove_file(&expected_path);
                }
            }
        } else if got != expected {
            let show = |b: &Option<Vec<u8>>| b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
            failures.push(format!(
                "{}/{expected_name}:\n--- expected\n{:?}\n--- got\n{:?}",
                dir.display(),
                show(&expected),
                show(&got)
            ));
        }
    }
    failures
}

#[test]
fn cases() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/subids/cases");
    let bless = std::env::var_os("NONROOTD_BLESS").is_some();
    let mut dirs: Vec<_> = fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).collect();
    dirs.sort();
    assert!(dirs.len() >= 15, "cases missing in {}", root.display());
    let failures: Vec<String> = dirs.iter().flat_map(|d| run_case(d, bless)).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn invalid_tenant_names_write_nothing() {
    let env = TempEtc::new();
    env.write("subuid", "old:100000:65536\n");
    env.write("subgid", "old:100000:65536\n");
    let settings = env.settings("");
    for bad in ["evil:0:1", "a\nb", "../x", "x/y", "", " acme", "acme\n", "4294967295"] {
        let err = subids::allocate(&settings, bad, None, false).unwrap_err();
        assert!(matches!(err, SubidsError::InvalidTenant { .. }), "{bad:?}: {err}");
        assert!(err.to_string().contains("nothing was written"), "{err}");
        assert!(matches!(
            subids::release(&settings, bad),
            Err(SubidsError::InvalidTenant { .. })
        ));
    }
    assert_eq!(env.read("subuid"), "old:100000:65536\n");
    assert_eq!(env.read("subgid"), "old:100000:65536\n");
    let mut names: Vec<_> = fs::read_dir(env.etc())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["subgid", "subuid"], "no lock, temp or backup files");
    assert!(!env.state().exists());
}

#[test]
fn mode_owner_and_backup_are_kept() {
    let env = TempEtc::new();
    env.write("subuid", "old:100000:65536\n");
    fs::set_permissions(env.path("subuid"), fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(env.path("subuid"), Some(1), Some(2)).unwrap();
    subids::allocate(&env.settings(""), "acme", None, false).unwrap();
    let meta = fs::metadata(env.path("subuid")).unwrap();
    assert_eq!((meta.mode() & 0o7777, meta.uid(), meta.gid()), (0o640, 1, 2));
    assert_eq!(env.read("subuid"), "old:100000:65536\nacme:165536:65536\n");
    assert_eq!(env.read("subuid-"), "old:100000:65536\n");
    let new = fs::metadata(env.path("subgid")).unwrap();
    assert_eq!(new.mode() & 0o7777, 0o644);
    assert!(!env.path("subgid-").exists(), "no backup of a file that did not exist");
}

#[test]
fn a_file_too_large_to_read_is_named_and_left_alone() {
    let env = TempEtc::new();
    env.write("subgid", "old:100000:65536\n");
    // Sparse: reading it touches no disk.
    let big = fs::File::create(env.path("subuid")).unwrap();
    let refusal = |why: &str| {
        let err = subids::allocate(&env.settings(""), "acme", None, false).unwrap_err();
        let subuid = env.path("subuid");
        assert_eq!(
            err.to_string(),
            format!("{}: {why}: nothing was written", subuid.display())
        );
    };
    big.set_len(1 << 30).unwrap();
    refusal("1073741824 bytes, more than the 64 MiB nonrootd reads");
    assert_eq!(env.read("subgid"), "old:100000:65536\n");
    assert!(!env.path("subuid.lock").exists() && !env.path("subgid.lock").exists());
    // Just under the limit: read, but not grown past it (a newline and an 18-byte line).
    let just_under = nonrootd_core::subids::MAX_FILE_BYTES as u64 - 9;
    big.set_len(just_under).unwrap();
    refusal("the allocation would make it 67108874 bytes, more than the 64 MiB nonrootd reads");
    assert_eq!(fs::metadata(env.path("subuid")).unwrap().len(), just_under);
    assert!(!env.path("subuid-").exists() && !env.path("subuid+").exists());
}

/// A resolver with fixed users, standing in for NSS.
struct Users(&'static [(&'static str, u32)]);

impl IdResolver for Users {
    fn user(&self, name: &str) -> Option<Uid> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, id)| Uid(*id))
    }
    fn group(&self, _: &str) -> Option<Gid> {
        None
    }
}

#[test]
fn ensure_tenants_allocates_once_and_refuses_unknown_users() {
    let env = TempEtc::new();
    env.write("subuid", "4321:100000:65536\n");
    let extra = "count = 1000\n[[tenant]]\nname = \"acme\"\ncount = 2000\n[[tenant]]\nname = \"ghost\"\n[[tenant]]\nname = \"cadvisor\"\n";
    let config = config_for(&env.etc(), extra);
    let users = Users(&[("acme", 1001), ("cadvisor", 4321)]);
    let first = subids::ensure_tenants(&config, &users, &env.state());
    let lines: Vec<String> = first
        .entries
        .iter()
        .map(|e| e.to_string().replace(&env.etc().display().to_string(), "/etc"))
        .collect();
    assert_eq!(
        lines,
        [
            "changed      subids  /etc/subuid (acme: 2000 ids): added acme:165536:2000",
            "changed      subids  /etc/subgid (acme: 2000 ids): added acme:165536:2000",
            "refused      subids  /etc/subuid (ghost: 1000 ids): no such user \"ghost\" (/test/nonrootd.d/test.toml:7)",
            "refused      subids  /etc/subgid (ghost: 1000 ids): no such user \"ghost\" (/test/nonrootd.d/test.toml:7)",
            "correct      subids  /etc/subuid (cadvisor: 1000 ids)",
            "changed      subids  /etc/subgid (cadvisor: 1000 ids): added cadvisor:100000:65536",
        ]
    );
    assert!(first.entries.iter().all(|e| e.duty == Duty::Subids));
    assert!(!first.succeeded());
    let second = subids::ensure_tenants(&config, &users, &env.state());
    let outcomes: Vec<&Outcome> = second.entries.iter().map(|e| &e.outcome).collect();
    assert_eq!(outcomes.iter().filter(|o| ***o == Outcome::Correct).count(), 4);
    assert_eq!(env.read("subgid"), "acme:165536:2000\ncadvisor:100000:65536\n");
}
