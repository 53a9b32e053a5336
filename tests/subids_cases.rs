//! Table-driven cases: each directory under `tests/subids/cases/` holds input files
//! (`subuid`, `subgid`, optional extra `[subids]` lines in `subids.toml`), the commands to run
//! (`command`, one `nonrootctl subids …` per line) and the expected results (`output.expected`,
//! and `subuid.expected` / `subgid.expected` where a file changes; absent means byte-identical).
//! `NONROOTD_BLESS=1` writes the expected files instead of comparing.

mod subids_support;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use clap::Parser;
use nonrootd::cli::subids::{SubidsCommand, execute};
use nonrootd::subids::{self, SubidsError};
use nonrootd_core::duty::Duty;
use nonrootd_core::ids::{Gid, IdResolver, Uid};
use nonrootd_core::report::Outcome;
use subids_support::{CHILD_ENV, TempEtc, child, config_for};

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
    let commands = fs::read_to_string(dir.join("command")).unwrap();
    let transcript = run_commands(&env, &extra, commands.lines()).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
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

/// Runs `nonrootctl subids LINE` for each line, with `extra` lines in `[subids]`: what it
/// prints, with `[exit 1]` after a failure and `env`'s directory shown as `/etc`.
fn run_commands<'a>(env: &TempEtc, extra: &str, lines: impl Iterator<Item = &'a str>) -> Result<String, String> {
    let config = env.config(extra);
    let mut transcript = String::new();
    for line in lines {
        let words = std::iter::once("subids").chain(line.split_whitespace());
        let command = Line::try_parse_from(words).map_err(|e| format!("{line}: {e}"))?.command;
        let out = execute(command, &config, &env.state(), subids::DEFAULT_LOCK_TIMEOUT);
        let stderr = out
            .error
            .map(|f| format!("nonrootctl: {}\n", f.message))
            .unwrap_or_default();
        transcript += &format!("$ nonrootctl subids {line}\n{}{stderr}", out.stdout);
        if !out.success {
            transcript += "[exit 1]\n";
        }
    }
    Ok(transcript.replace(&env.etc().display().to_string(), "/etc"))
}

/// [`run_commands`] on files holding `subuid` and `subgid`, without extra settings.
fn run(subuid: &str, subgid: &str, lines: &[&str]) -> (TempEtc, String) {
    let env = TempEtc::new();
    env.write("subuid", subuid);
    env.write("subgid", subgid);
    let transcript = run_commands(&env, "", lines.iter().copied()).unwrap();
    (env, transcript)
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
    std::os::unix::fs::chown(env.path("subuid"), None, Some(2)).unwrap();
    subids::allocate(&env.settings(""), "acme", None, false).unwrap();
    let meta = fs::metadata(env.path("subuid")).unwrap();
    assert_eq!((meta.mode() & 0o7777, meta.uid(), meta.gid()), (0o640, 0, 2));
    assert_eq!(env.read("subuid"), "old:100000:65536\nacme:165536:65536\n");
    assert_eq!(env.read("subuid-"), "old:100000:65536\n");
    let new = fs::metadata(env.path("subgid")).unwrap();
    assert_eq!(new.mode() & 0o7777, 0o644);
    assert!(!env.path("subgid-").exists(), "no backup of a file that did not exist");
}

#[test]
fn set_id_and_execute_bits_and_write_for_others_are_dropped_as_shadow_does() {
    let env = TempEtc::new();
    env.write("subuid", "old:100000:65536\n");
    fs::set_permissions(env.path("subuid"), fs::Permissions::from_mode(0o4777)).unwrap();
    subids::allocate(&env.settings(""), "acme", None, false).unwrap();
    assert_eq!(fs::metadata(env.path("subuid")).unwrap().mode() & 0o7777, 0o664);
}

#[test]
fn a_symlink_a_fifo_or_another_user_s_file_is_refused_and_left_alone() {
    let env = TempEtc::new();
    env.write("admins-subuid", "old:100000:65536\n");
    env.write("subgid", "old:100000:65536\n");
    let refusal = |why: &str| {
        let err = subids::allocate(&env.settings(""), "acme", None, false).unwrap_err();
        let subuid = env.path("subuid");
        assert_eq!(
            err.to_string(),
            format!("{}: cannot use: {why}: refusing it", subuid.display())
        );
        assert_eq!(env.read("subgid"), "old:100000:65536\n");
        assert!(!env.path("subuid.lock").exists() && !env.path("subgid.lock").exists());
    };
    // shadow's tools refuse a symlink too; replacing it would turn it into a file.
    std::os::unix::fs::symlink("admins-subuid", env.path("subuid")).unwrap();
    refusal("is a symlink (shadow's tools refuse one too)");
    assert!(
        fs::symlink_metadata(env.path("subuid"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(env.read("admins-subuid"), "old:100000:65536\n");
    // Opened without waiting for a writer.
    fs::remove_file(env.path("subuid")).unwrap();
    nix::unistd::mkfifo(&env.path("subuid"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    refusal("is a FIFO, not a regular file");
    fs::remove_file(env.path("subuid")).unwrap();
    env.write("subuid", "old:100000:65536\n");
    std::os::unix::fs::chown(env.path("subuid"), Some(1), None).unwrap();
    refusal("is owned by uid 1, not root");
    assert_eq!(env.read("subuid"), "old:100000:65536\n");
}

#[test]
fn a_directory_others_can_write_is_refused_before_anything_is_locked() {
    let env = TempEtc::new();
    env.write("subuid", "old:100000:65536\n");
    fs::set_permissions(env.etc(), fs::Permissions::from_mode(0o1777)).unwrap();
    let err = subids::allocate(&env.settings(""), "acme", None, false).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: cannot use the directory: directory mode 1777 lets others write; only what root alone can change is trusted here: refusing to use it",
            env.etc().display()
        )
    );
    assert_eq!(env.read("subuid"), "old:100000:65536\n");
    assert!(!env.path("subuid.lock").exists() && !env.path(".pwd.lock").exists());
}

#[test]
fn a_failed_allocation_leaves_the_managed_ranges_record_as_it_was() {
    let env = TempEtc::new();
    env.write("subuid", "old:100000:65536\n");
    env.write("subgid", "old:100000:65536\n");
    subids::allocate(&env.settings(""), "first", None, false).unwrap();
    let record = env.state().join("subids-managed.jsonl");
    let before = fs::read_to_string(&record).unwrap();
    // `subgid+` cannot be made: nothing is replaced, and the record claims nothing new.
    fs::create_dir_all(env.path("subgid+/in-the-way")).unwrap();
    let err = subids::allocate(&env.settings(""), "acme", None, false).unwrap_err();
    assert!(err.to_string().contains("subgid+"), "{err}");
    assert_eq!(fs::read_to_string(&record).unwrap(), before);
    assert!(!env.read("subuid").contains("acme"));
}

/// The subgid file cannot be renamed over once the subuid file was (immutable: its backup
/// link fails): the error says the subuid file was replaced, and the record keeps the ranges
/// that file now holds.
#[test]
fn an_allocation_replacing_one_file_of_two_keeps_its_record() {
    /// `chattr +i` for the life of the guard.
    struct Immutable(PathBuf);
    impl Drop for Immutable {
        fn drop(&mut self) {
            let _ = std::process::Command::new("chattr").arg("-i").arg(&self.0).status();
        }
    }
    let env = TempEtc::new();
    env.write("subuid", "old:100000:65536\n");
    env.write("subgid", "old:100000:65536\n");
    let chattr = std::process::Command::new("chattr")
        .arg("+i")
        .arg(env.path("subgid"))
        .status()
        .unwrap();
    assert!(
        chattr.success(),
        "chattr +i on {} (needs a file system with the immutable flag)",
        env.path("subgid").display()
    );
    let _guard = Immutable(env.path("subgid"));
    let err = subids::allocate(&env.settings(""), "acme", None, false).unwrap_err();
    assert!(matches!(err, SubidsError::PartlyReplaced { .. }), "{err:?}");
    assert!(
        err.to_string()
            .ends_with(&format!("; already replaced: {}", env.path("subuid").display())),
        "{err}"
    );
    assert!(env.read("subuid").contains("acme:"));
    assert!(!env.read("subgid").contains("acme"));
    let record = fs::read_to_string(env.state().join("subids-managed.jsonl")).unwrap();
    assert!(record.contains("\"owner\":\"acme\",\"kind\":\"subuid\""), "{record}");
    assert!(!env.path("subgid+").exists());
}

#[test]
fn a_release_with_an_unreadable_record_changes_nothing() {
    let env = TempEtc::new();
    env.write("subuid", "old:100000:65536\n");
    env.write("subgid", "old:100000:65536\n");
    subids::allocate(&env.settings(""), "acme", None, false).unwrap();
    let (subuid, subgid) = (env.read("subuid"), env.read("subgid"));
    let record = env.state().join("subids-managed.jsonl");
    fs::write(&record, "not json\n").unwrap();
    let err = subids::release(&env.settings(""), "acme").unwrap_err();
    assert!(matches!(err, SubidsError::State { .. }), "{err}");
    assert_eq!((env.read("subuid"), env.read("subgid")), (subuid, subgid));
    assert!(!env.state().join("subids-quarantine.json").exists());
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
    // Just under the limit, of comment lines (NUL bytes would stop it sooner): read, but not
    // grown past it (a newline after the cut line and an 18-byte line).
    let just_under = nonrootd_core::subids::MAX_FILE_BYTES as u64 - 9;
    let comment = format!("#{}\n", "x".repeat(1021));
    big.set_len(0).unwrap();
    std::io::Write::write_all(
        &mut &big,
        comment.repeat(just_under as usize / comment.len() + 1).as_bytes(),
    )
    .unwrap();
    big.set_len(just_under).unwrap();
    refusal("the allocation would make it 67108874 bytes, more than the 64 MiB nonrootd reads");
    assert_eq!(fs::metadata(env.path("subuid")).unwrap().len(), just_under);
    assert!(!env.path("subuid-").exists() && !env.path("subuid+").exists());
}

/// Seconds since the epoch, as release stamps a quarantine.
fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A resolver with fixed users, standing in for NSS; it cannot answer for `unanswered`.
struct Users(&'static [(&'static str, u32)]);

impl IdResolver for Users {
    fn user(&self, name: &str) -> Result<Option<Uid>, String> {
        if name == "unanswered" {
            return Err("Input/output error".into());
        }
        Ok(self.0.iter().find(|(n, _)| *n == name).map(|(_, id)| Uid(*id)))
    }
    fn group(&self, _: &str) -> Result<Option<Gid>, String> {
        Ok(None)
    }
}

/// The `[[tenant]]`s of `extra` applied, with user acme (1001) alone on the host.
fn tenants_with_acme(env: &TempEtc, extra: &str) -> nonrootd_core::report::Report {
    let config = config_for(&env.etc(), extra);
    let users = Users(&[("acme", 1001)]);
    subids::ensure_tenants(&config, &users, &env.state(), false, subids::DEFAULT_LOCK_TIMEOUT)
}

#[test]
fn one_user_under_two_spellings_is_one_tenant() {
    let env = TempEtc::new();
    let extra = "count = 1000\n[[tenant]]\nname = \"acme\"\n[[tenant]]\nname = 1001\ncount = 5000\n";
    let report = tenants_with_acme(&env, extra);
    let outcomes: Vec<&str> = report.entries.iter().map(|e| e.outcome.label()).collect();
    assert_eq!(outcomes, ["changed", "changed", "refused", "refused"]);
    let Outcome::Refused { reason } = &report.entries[2].outcome else {
        unreachable!()
    };
    assert!(reason.contains("user 1001, a tenant already (at "), "{reason}");
    assert_eq!(env.read("subuid"), "acme:100000:1000\n");
}

/// A tenant whose lookup fails is failed (worth trying again), not refused as unknown; the
/// others are allocated.
#[test]
fn a_tenant_whose_lookup_fails_is_failed_and_the_others_are_allocated() {
    let env = TempEtc::new();
    let extra = "count = 1000\n[[tenant]]\nname = \"unanswered\"\n[[tenant]]\nname = \"acme\"\n";
    let report = tenants_with_acme(&env, extra);
    let outcomes: Vec<&str> = report.entries.iter().map(|e| e.outcome.label()).collect();
    assert_eq!(outcomes, ["failed", "failed", "changed", "changed"]);
    assert_eq!(
        report.entries[0].outcome,
        Outcome::Failed {
            error: "tenant unanswered: looking up user \"unanswered\" failed: Input/output error \
                    (/test/nonrootd.d/test.toml:4); nothing was done, try again once the user database answers"
                .into()
        }
    );
    assert_eq!(env.read("subuid"), "acme:100000:1000\n");
}

#[test]
fn ensure_tenants_allocates_once_and_refuses_unknown_users() {
    let env = TempEtc::new();
    env.write("subuid", "4321:100000:65536\n");
    let extra = "count = 1000\n[[tenant]]\nname = \"acme\"\ncount = 2000\n[[tenant]]\nname = \"ghost\"\n[[tenant]]\nname = \"cadvisor\"\n";
    let config = config_for(&env.etc(), extra);
    let users = Users(&[("acme", 1001), ("cadvisor", 4321)]);
    // A dry run tells what would be added and writes nothing.
    let dry = subids::ensure_tenants(&config, &users, &env.state(), true, subids::DEFAULT_LOCK_TIMEOUT);
    let would: Vec<&str> = dry.entries.iter().map(|e| e.outcome.label()).collect();
    assert_eq!(
        would,
        [
            "would change",
            "would change",
            "refused",
            "refused",
            "correct",
            "would change"
        ]
    );
    assert_eq!(env.read("subuid"), "4321:100000:65536\n");
    assert!(!env.etc().join("subgid").exists() && !env.state().exists());
    let first = subids::ensure_tenants(&config, &users, &env.state(), false, subids::DEFAULT_LOCK_TIMEOUT);
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
    let second = subids::ensure_tenants(&config, &users, &env.state(), false, subids::DEFAULT_LOCK_TIMEOUT);
    let outcomes: Vec<&Outcome> = second.entries.iter().map(|e| &e.outcome).collect();
    assert_eq!(outcomes.iter().filter(|o| ***o == Outcome::Correct).count(), 4);
    assert_eq!(env.read("subgid"), "acme:165536:2000\ncadvisor:100000:65536\n");
}

#[test]
fn a_range_is_never_mirrored_onto_root_or_outside_the_limits() {
    let (env, out) = run("acme:0:65536\n", "", &["allocate acme", "check"]);
    assert_eq!(
        out,
        "$ nonrootctl subids allocate acme\nacme 0 65536 subuid\nacme 100000 65536 subgid\n\
         $ nonrootctl subids check\n\
         /etc/subuid:1: range includes id 0, which maps the host's root: remove it\n\
         /etc/subgid: ok\n[exit 1]\n"
    );
    assert_eq!(
        env.read("subgid"),
        "acme:100000:65536\n",
        "never acme:0:65536 in subgid"
    );
    assert_eq!(env.read("subuid"), "acme:0:65536\n");
    // Past max in subgid: subuid gets the lowest free start instead.
    let (env, _) = run("", "acme:600090000:65536\n", &["allocate acme"]);
    assert_eq!(env.read("subuid"), "acme:100000:65536\n");
}

#[test]
fn owners_are_read_as_shadow_reads_them() {
    let text = " acme :100000:65536\n";
    let (env, out) = run(text, text, &["allocate acme", "release acme", "check"]);
    assert_eq!(
        out,
        "$ nonrootctl subids allocate acme\nacme 165536 65536\n\
         $ nonrootctl subids release acme\n\
         released acme 165536 65536 (/etc/subuid:2)\nreleased acme 165536 65536 (/etc/subgid:2)\n\
         quarantined for 30 days\n\
         $ nonrootctl subids check\n\
         /etc/subuid:1: shadow reads the owner \" acme \", Go tools \"acme \"; counted as taken, rewrite it as OWNER:START:COUNT in decimal\n\
         /etc/subgid:1: shadow reads the owner \" acme \", Go tools \"acme \"; counted as taken, rewrite it as OWNER:START:COUNT in decimal\n\
         [exit 1]\n"
    );
    assert_eq!((env.read("subuid"), env.read("subgid")), (text.into(), text.into()));
}

#[test]
fn a_line_only_some_readers_give_the_tenant_stops_its_allocation() {
    let (subuid, subgid) = ("acme:100000:65536\r\n", "acme:100000:65536:x\n");
    let (env, out) = run(subuid, subgid, &["allocate acme"]);
    assert_eq!(
        out,
        "$ nonrootctl subids allocate acme\n\
         nonrootctl: /etc/subuid: line 1: tenant acme owns it to some readers only (see nonrootctl subids check): fix or remove it first; nothing was written\n\
         [exit 1]\n"
    );
    assert_eq!((env.read("subuid"), env.read("subgid")), (subuid.into(), subgid.into()));
}

#[test]
fn numeric_owners_are_compared_by_value() {
    let (env, out) = run(
        "root:100000:10\n00:200000:10\nother:300000:10\n",
        "root:100000:10\n",
        &["check", "release root"],
    );
    assert_eq!(
        out,
        "$ nonrootctl subids check\n\
         /etc/subuid:2: owner \"00\" is uid 0 only to shadow 4.20 and later (a name to older shadow and Go tools): write it as 0\n\
         /etc/subgid: ok\n[exit 1]\n\
         $ nonrootctl subids release root\n\
         released root 100000 10 (/etc/subuid:1)\nreleased 00 200000 10 (/etc/subuid:2)\n\
         released root 100000 10 (/etc/subgid:1)\nquarantined for 30 days\n"
    );
    assert_eq!(env.read("subuid"), "other:300000:10\n");
}

#[test]
fn a_last_line_without_its_newline_is_reported_and_never_glued_to() {
    let (env, out) = run(
        "a:100000:65536",
        "a:100000:65536\n",
        &["check", "allocate acme", "check"],
    );
    assert_eq!(
        out,
        "$ nonrootctl subids check\n\
         /etc/subuid:1: no newline at the end: shadow 4.19 and later refuse the whole file, end the line with one\n\
         /etc/subgid: ok\n[exit 1]\n\
         $ nonrootctl subids allocate acme\nacme 165536 65536\n\
         $ nonrootctl subids check\n/etc/subuid: ok\n/etc/subgid: ok\n"
    );
    assert_eq!(env.read("subuid"), "a:100000:65536\nacme:165536:65536\n");
}

#[test]
fn a_lock_file_without_a_pid_is_refused_at_once() {
    let env = TempEtc::new();
    env.write("subuid", "old:100000:65536\n");
    env.write("subgid", "old:100000:65536\n");
    env.write("subgid.lock", "not a pid");
    // A timeout long enough that a slow disk cannot pass for the wait.
    let mut settings = env.settings("");
    settings.lock_timeout = std::time::Duration::from_secs(60);
    let started = std::time::Instant::now();
    let err = subids::allocate(&settings, "acme", None, false).unwrap_err();
    assert!(started.elapsed() < settings.lock_timeout / 3, "no wait for the timeout");
    assert!(matches!(err, SubidsError::InvalidLock { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "{}: lock file whose content is not a pid (shadow refuses it too): remove it by hand once no useradd, usermod or nonrootd is running; nothing was written",
            env.path("subgid.lock").display()
        )
    );
    assert_eq!(env.read("subuid"), "old:100000:65536\n");
    assert_eq!(env.read("subgid"), "old:100000:65536\n");
    assert_eq!(env.read("subgid.lock"), "not a pid", "left for a person to remove");
    assert!(!env.path("subuid.lock").exists(), "our own lock is removed");
}

#[test]
fn subuid_and_subgid_paths_that_clash_are_refused() {
    let env = TempEtc::new();
    env.write("subuid", "old:100000:65536\n");
    // Through a symlinked directory: the config's own check compares the paths as written.
    std::os::unix::fs::symlink(env.etc(), env.path("alias")).unwrap();
    for (other, exists) in [("alias/subuid", true), ("alias/subgid-new", false)] {
        let mut settings = env.settings("");
        settings.subgid_file = env.path(other);
        if !exists {
            settings.subuid_file = env.path("subgid-new");
        }
        let err = subids::allocate(&settings, "acme", None, false).unwrap_err();
        assert!(matches!(err, SubidsError::Clash { .. }), "{other}: {err}");
        assert!(
            err.to_string()
                .ends_with("clash: subuid and subgid ranges need a file each, neither named like one that replacing the other makes (<file>+, <file>-, <file>.lock, <file>.<pid>); nothing was written"),
            "{err}"
        );
        assert!(matches!(
            subids::release(&settings, "old"),
            Err(SubidsError::Clash { .. })
        ));
    }
    assert_eq!(env.read("subuid"), "old:100000:65536\n");
    assert!(!env.path("subgid-new").exists());
    // A name that replacing the other file makes or removes, through the alias too.
    env.write("subgid", "kept:100000:65536\n");
    for helper in ["alias/subuid+", "subuid-", "alias/subuid.lock", "subuid.nonrootd-old"] {
        let mut settings = env.settings("");
        settings.subgid_file = env.path(helper);
        let err = subids::allocate(&settings, "acme", None, false).unwrap_err();
        assert!(matches!(err, SubidsError::Clash { .. }), "{helper}: {err}");
    }
    let mut settings = env.settings("");
    settings.subuid_file = env.path("subgid.lock");
    assert!(matches!(
        subids::allocate(&settings, "acme", None, false),
        Err(SubidsError::Clash { .. })
    ));
    assert_eq!(env.read("subgid"), "kept:100000:65536\n");
    // Refused before any lock is taken: a lock held elsewhere is neither waited for nor
    // touched, and no lock of ours is ever taken twice under two names.
    let holder = format!("{}\0", nix::unistd::getppid());
    env.write("subuid.lock", &holder);
    let mut settings = env.settings("");
    settings.subgid_file = env.path("alias/subuid");
    let err = subids::allocate(&settings, "acme", None, false).unwrap_err();
    assert!(matches!(err, SubidsError::Clash { .. }), "{err}");
    assert_eq!(env.read("subuid.lock"), holder);
}

/// A min the config sets above the max that login.defs gives (which `check-config` cannot see
/// in the config alone): refused before anything is read, naming the config's line and
/// login.defs, not as a full pool.
#[test]
fn limits_completed_by_login_defs_that_leave_no_room_are_named() {
    let etc = TempEtc::new();
    etc.write("subuid", "");
    etc.write("subgid", "");
    etc.write("login.defs", "SUB_UID_MAX 600100000\nSUB_GID_MAX 700000000\n");
    // A config of the files in `etc` with `[subids]` lines from line 4 on, and no max.
    let config_with = |lines: &str| {
        let main = format!(
            "[subids]\nsubuid_file = \"{0}/subuid\"\nsubgid_file = \"{0}/subgid\"\n{lines}",
            etc.etc().display()
        );
        nonrootd_core::config::Config::from_sources(&[(PathBuf::from("/test/nonrootd.toml"), main)]).unwrap()
    };
    let config = config_with("min = 650000000\n");
    let settings = subids::Settings::with_login_defs(&config, &etc.state(), &etc.path("login.defs"));
    let err = subids::allocate(&settings, "acme", None, false).unwrap_err();
    assert!(matches!(err, SubidsError::Limits(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "/test/nonrootd.toml:4: subids.min: 650000000 is above max 600100000 ({}: SUB_UID_MAX, SUB_GID_MAX): no id can be handed out; nothing was written",
            etc.path("login.defs").display()
        )
    );
    assert_eq!(etc.read("subuid"), "");
    assert!(!etc.state().exists(), "no state written");

    // A login.defs that sets no maximum: shadow's default is named as such.
    etc.write("login.defs", "");
    let settings = subids::Settings::with_login_defs(&config, &etc.state(), &etc.path("login.defs"));
    let why = settings.check_limits().unwrap_err();
    assert!(why.contains("(shadow's default; "), "{why}");
    assert!(
        why.ends_with("sets neither SUB_UID_MAX nor SUB_GID_MAX): no id can be handed out"),
        "{why}"
    );

    // A configured count that never fits between the limits login.defs completes.
    let config = config_with("min = 600000000\ncount = 200000\n");
    let settings = subids::Settings::with_login_defs(&config, &etc.state(), &etc.path("no-login.defs"));
    settings.check_limits().unwrap();
    let why = settings.check_configured_counts().unwrap_err();
    assert!(
        why.starts_with("/test/nonrootd.toml:5: subids.count: 200000 ids never fit between min 600000000 (/test/nonrootd.toml:4: subids.min) and max 600100000 (shadow's default; "),
        "{why}"
    );
    assert!(why.ends_with("): 100001 ids"), "{why}");
}

#[test]
fn a_released_range_is_held_as_far_as_ids_map_and_list_and_a_full_pool_say_so() {
    // Older shadow read a count of -1 as 2^64 - 1: a user namespace maps ids up to 4294967294.
    let (_env, out) = run(
        "acme:100000:-1\n",
        "",
        &["release acme", "list", "allocate beta --count 10"],
    );
    let until = nonrootd_core::subids::utc_date(now() + 30 * 86_400);
    assert_eq!(
        out,
        format!(
            "$ nonrootctl subids release acme\n\
             released acme 100000 18446744073709551615 (/etc/subuid:1)\nquarantined for 30 days\n\
             $ nonrootctl subids list\n\
             OWNER                     START      COUNT MANAGED LOCATION\n\
             \n\
             QUARANTINED               START      COUNT FILE    UNTIL (UTC)\n\
             acme                     100000 4294867295 subuid  {until}\n\
             $ nonrootctl subids allocate beta --count 10\n\
             nonrootctl: tenant beta: no 10 free ids left between 100000 and 600100000 in both files: raise [subids] max or release a tenant (600000001 ids there are in quarantine after releases, for [subids] quarantine_days; nonrootctl subids list shows until when)\n\
             [exit 1]\n"
        )
    );
}

#[test]
fn a_release_after_another_tool_removed_the_lines_holds_the_recorded_ranges_and_forgets_them() {
    let env = TempEtc::new();
    env.write("subuid", "");
    env.write("subgid", "");
    subids::allocate(&env.settings(""), "acme", Some(1000), false).unwrap();
    // userdel removed acme's lines: files in volumes may still be owned by its ids.
    env.write("subuid", "");
    env.write("subgid", "");
    let released = subids::release(&env.settings(""), "acme").unwrap();
    assert_eq!(
        released.to_string(),
        "released acme 100000 1000 (subuid: no line held it any more, nonrootd's record did)\n\
         released acme 100000 1000 (subgid: no line held it any more, nonrootd's record did)\n\
         quarantined for 30 days\n"
    );
    let beta = subids::allocate(&env.settings(""), "beta", Some(1000), false).unwrap();
    assert_eq!(beta.to_string(), "beta 101000 1000\n", "acme's ids held back");
    let record = fs::read_to_string(env.state().join("subids-managed.jsonl")).unwrap();
    assert!(!record.contains("acme"), "the record forgets acme: {record}");
    // The name given the same range again later (by useradd) is not marked as nonrootd's.
    env.write("subuid", "acme:100000:1000\n");
    let listing = subids::list(&env.settings("")).unwrap();
    assert!(!listing.entries[0].managed, "{listing}");
    assert_eq!(listing.quarantined.len(), 2, "{listing}");
}

/// A release run again after one that a crash cut short once the quarantine was written (the
/// files and the record as before it) holds each range once.
#[test]
fn a_release_again_after_a_crash_quarantines_each_range_once() {
    let env = TempEtc::new();
    env.write("subuid", "");
    env.write("subgid", "");
    subids::allocate(&env.settings(""), "acme", Some(1000), false).unwrap();
    let record = env.state().join("subids-managed.jsonl");
    let before = (
        env.read("subuid"),
        env.read("subgid"),
        fs::read_to_string(&record).unwrap(),
    );
    subids::release(&env.settings(""), "acme").unwrap();
    env.write("subuid", &before.0);
    env.write("subgid", &before.1);
    fs::write(&record, &before.2).unwrap();
    subids::release(&env.settings(""), "acme").unwrap();
    let listing = subids::list(&env.settings("")).unwrap();
    assert_eq!(listing.quarantined.len(), 2, "{listing}");
}

/// Not a test on its own: the child of `a_record_append_that_fails_is_cut_back`, allocating
/// under a file size limit (the role) that the append to the record runs into.
#[test]
fn record_append_child() {
    let Ok(limit) = std::env::var(CHILD_ENV) else {
        return;
    };
    let root = PathBuf::from(std::env::var("NONROOTD_TEST_ROOT").unwrap());
    let etc = root.join("etc");
    let settings =
        subids::Settings::with_login_defs(&config_for(&etc, ""), &root.join("state"), &etc.join("no-login.defs"));
    let limit = libc::rlimit {
        rlim_cur: limit.parse().unwrap(),
        rlim_max: limit.parse().unwrap(),
    };
    // SAFETY: ignoring SIGXFSZ makes a write past the limit fail with EFBIG rather than end
    // the process; setrlimit only reads the struct it is given.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
    }
    let tenants: Vec<String> = (0..20).map(|i| format!("t{i}")).collect();
    let err = subids::allocate_many(&settings, &tenants, Some(1000), false).unwrap_err();
    println!("{err}");
}

#[test]
fn a_record_append_that_fails_is_cut_back() {
    let env = TempEtc::new();
    env.write("subuid", "");
    env.write("subgid", "");
    subids::allocate(&env.settings(""), "old", Some(1000), false).unwrap();
    let record = env.state().join("subids-managed.jsonl");
    let before = fs::read(&record).unwrap();
    // Room for one more line of the twenty: the append writes it, then fails.
    let limit = before.len() + before.len() / 2;
    let out = child("record_append_child", &limit.to_string())
        .env("NONROOTD_TEST_ROOT", env.etc().parent().unwrap())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("subids-managed.jsonl: cannot append: File too large"),
        "{stdout}"
    );
    assert_eq!(
        String::from_utf8(fs::read(&record).unwrap()).unwrap(),
        String::from_utf8(before).unwrap()
    );
    assert_eq!(env.read("subuid"), "old:100000:1000\n");
}

#[test]
fn a_quarantine_written_before_the_mappable_bound_is_read_within_it() {
    let env = TempEtc::new();
    env.write("subuid", "");
    env.write("subgid", "");
    let now = now();
    fs::create_dir_all(env.state()).unwrap();
    fs::write(
        env.state().join("subids-quarantine.json"),
        format!(
            "{{\"ranges\":[{{\"owner\":\"old\",\"kind\":\"subuid\",\"start\":4294960000,\"count\":18446744073709551615,\"released_at\":{now}}}]}}"
        ),
    )
    .unwrap();
    let listing = subids::list(&env.settings("")).unwrap();
    assert_eq!(listing.quarantined[0].count, 7295, "{listing}");
}

#[test]
fn a_release_holds_back_what_the_go_tools_read_of_an_octal_line_too() {
    let env = TempEtc::new();
    // shadow reads ids 65536…131071, Docker 200000…265535.
    env.write("subuid", "acme:0200000:65536\n");
    env.write("subgid", "");
    subids::release(&env.settings(""), "acme").unwrap();
    let listing = subids::list(&env.settings("")).unwrap();
    let held: Vec<(u64, u64)> = listing.quarantined.iter().map(|q| (q.start, q.count)).collect();
    assert_eq!(held, [(65536, 65536), (200_000, 65536)], "{listing}");
    let beta = subids::allocate(&env.settings(""), "beta", Some(100_000), false).unwrap();
    assert_eq!(beta.to_string(), "beta 265536 100000\n");
}

/// A volume tenant given by uid owns the lines written with its name too; when that name
/// cannot be looked up and a line could be it, its ranges are unknown: an error, not fewer
/// ranges (which would map its ids elsewhere).
#[test]
fn a_tenant_s_ranges_need_its_other_spelling_where_a_line_could_use_it() {
    let env = TempEtc::new();
    env.write("subuid", "acme:100000:65536\n");
    env.write("subgid", "acme:100000:65536\n");
    let config = config_for(&env.etc(), "");
    let tenant = nonrootd_core::ids::IdRef::Id(1001);
    let named = |_: &str| -> Result<Option<String>, String> { Ok(Some("acme".into())) };
    let [(_, subuid), _] = subids::tenant_ranges(&config, &tenant, 1001, named).unwrap();
    assert_eq!(subuid, [nonrootd_core::subids::Range::new(100000, 65536)]);
    let down = |_: &str| -> Result<Option<String>, String> { Err("Input/output error".into()) };
    let error = subids::tenant_ranges(&config, &tenant, 1001, down).unwrap_err();
    assert!(matches!(error, SubidsError::LookupFailed { .. }), "{error}");
}
