//! Interoperation with Debian's shadow-utils (packages `passwd` and `uidmap`): `useradd`,
//! `usermod` and `getsubids` run in a private mount namespace where a copy of `/etc` is `/etc`.

mod subids_support;

use nonrootd::subids;
use subids_support::{TempEtc, assert_ok};

/// getsubids' lines for a user: `0: NAME START COUNT`.
fn getsubids(etc: &TempEtc, flag: &str, user: &str) -> String {
    assert_ok(&etc.shadow(&format!("getsubids {flag} {user}")))
}

#[test]
fn getsubids_reads_what_nonrootd_writes() {
    let etc = TempEtc::copy_of_host();
    etc.write("subuid", "#old:100000:65536\nold:0x30000:1000   \n");
    assert_ok(&etc.shadow("useradd -K SUB_UID_COUNT=0 -K SUB_GID_COUNT=0 tenant1"));
    let a = subids::allocate(&etc.settings(""), "tenant1", None, false).unwrap();
    assert_eq!(a.to_string(), "tenant1 165536 65536\n");
    assert_eq!(getsubids(&etc, "", "tenant1"), "0: tenant1 165536 65536\n");
    assert_eq!(getsubids(&etc, "-g", "tenant1"), "0: tenant1 165536 65536\n");
}

#[test]
fn a_batch_is_one_write_that_getsubids_reads() {
    let etc = TempEtc::copy_of_host();
    let before = etc.read("subuid");
    assert_ok(&etc.shadow(
        "useradd -K SUB_UID_COUNT=0 -K SUB_GID_COUNT=0 b1\n\
         useradd -K SUB_UID_COUNT=0 -K SUB_GID_COUNT=0 b2",
    ));
    let tenants = ["b1".to_string(), "b2".to_string()];
    let all = subids::allocate_many(&etc.settings(""), &tenants, Some(1000), false).unwrap();
    assert_eq!(all.len(), 2);
    let (b1, b2) = (all[0].subuid[0].start, all[1].subuid[0].start);
    assert_eq!(b2, b1 + 1000, "the second tenant sees the first one's range as taken");
    assert_eq!(
        etc.read("subuid-"),
        before,
        "one replacement: the backup is the file before the batch"
    );
    assert_eq!(getsubids(&etc, "", "b1"), format!("0: b1 {b1} 1000\n"));
    assert_eq!(getsubids(&etc, "-g", "b2"), format!("0: b2 {b2} 1000\n"));
}

#[test]
fn ranges_added_by_usermod_are_taken() {
    let etc = TempEtc::copy_of_host();
    assert_ok(&etc.shadow(
        "useradd -K SUB_UID_COUNT=0 -K SUB_GID_COUNT=0 t1\n\
         useradd -K SUB_UID_COUNT=0 -K SUB_GID_COUNT=0 t2\n\
         usermod --add-subuids 100000-165535 --add-subgids 100000-199999 t1",
    ));
    let a = subids::allocate(&etc.settings(""), "t2", Some(1000), false).unwrap();
    assert_eq!(a.to_string(), "t2 200000 1000\n", "one start free in both files");
    assert_eq!(getsubids(&etc, "", "t2"), "0: t2 200000 1000\n");
    assert_eq!(getsubids(&etc, "-g", "t1"), "0: t1 100000 100000\n");
}

#[test]
fn debian_useradd_ranges_are_kept_and_useradd_sees_ours() {
    let etc = TempEtc::copy_of_host();
    assert_ok(&etc.shadow("useradd t3"));
    let settings = etc.settings("");
    let kept = subids::allocate(&settings, "t3", None, false).unwrap();
    assert!(!kept.changed(), "useradd already gave t3 a range: {kept:?}");
    assert_eq!(kept.to_string(), "t3 100000 65536\n");
    let ours = subids::allocate(&settings, "acme", None, false).unwrap();
    assert_eq!(ours.to_string(), "acme 165536 65536\n");
    assert_ok(&etc.shadow("useradd t4"));
    assert_eq!(
        getsubids(&etc, "", "t4"),
        "0: t4 231072 65536\n",
        "useradd's first fit skips nonrootd's range"
    );
    let check = subids::check(&settings).unwrap();
    assert!(check.is_clean(), "{check}");
}

#[test]
fn a_nul_byte_that_hides_lines_from_shadow_stops_allocations() {
    let etc = TempEtc::copy_of_host();
    let text = "c:300000:10\na:100000:10\0x\nb:200000:10\n";
    etc.write("subuid", text);
    assert_ok(&etc.shadow("useradd -K SUB_UID_COUNT=0 -K SUB_GID_COUNT=0 b"));
    let hidden = etc.shadow("getsubids b");
    assert!(!hidden.status.success(), "shadow reads past the NUL: {hidden:?}");
    let refused = subids::allocate(&etc.settings(""), "d", None, false).unwrap_err();
    assert_eq!(
        refused.to_string(),
        format!(
            "{}: line 2: a NUL byte, so shadow 4.19 and later cannot read the file (older shadow read this line and the next as one): remove it first; nothing was written",
            etc.path("subuid").display()
        )
    );
    assert_eq!(etc.read("subuid"), text);
}

/// A user database that cannot answer (`passwd: files` without `/etc/passwd`: glibc says
/// "unavailable", an error) leaves unknown which lines are a tenant's when some line could
/// be written with its other spelling: allocating and releasing then fail and write nothing.
/// Where no line needs the lookup, an allocation by name goes ahead; one by uid fails, since
/// a user may be named like that number.
#[test]
fn a_user_database_that_cannot_answer_stops_what_needs_it_and_writes_nothing() {
    let lines = "1001:100000:65536\nbob:200000:65536\n";
    let (etc, _) = TempEtc::copy_of_host_with(lines);
    etc.write("nsswitch.conf", "passwd: files\ngroup: files\n");
    std::fs::remove_file(etc.path("passwd")).unwrap();
    let config = etc.path("nonrootd-test.toml");
    std::fs::write(&config, subids_support::config_text(&etc.etc())).unwrap();
    let nonrootctl = |args: &str| etc.nonrootctl(&config, &format!("subids {args}"));
    // A name's uid for the numeric owner; a user named like the uid.
    let unknown = "which lines are its own is unknown";
    let named = "looking up a user named ";
    for (args, why) in [
        ("allocate acme", unknown),
        ("release acme", unknown),
        ("allocate 3003", named),
    ] {
        let out = nonrootctl(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args}: {stderr}");
        assert!(
            stderr.contains(why) && stderr.contains("nothing was done"),
            "{args}: {stderr}"
        );
        assert_eq!(etc.read("subuid"), lines, "{args}");
        assert_eq!(etc.read("subgid"), lines, "{args}");
    }
    // A plan that would fail (acme owns fewer ids than asked) fails for the lookup first: its
    // error was worked out without the line its uid may own.
    let small = "acme:100000:10\n1001:200000:10\n";
    etc.write("subuid", small);
    etc.write("subgid", small);
    let stderr = String::from_utf8_lossy(&nonrootctl("allocate acme").stderr).into_owned();
    assert!(stderr.contains("which lines are its own is unknown"), "{stderr}");
    assert_eq!(etc.read("subuid"), small);
    let lines = "acme:100000:65536\nbob:200000:65536\n";
    etc.write("subuid", lines);
    etc.write("subgid", lines);
    assert_eq!(assert_ok(&nonrootctl("allocate acme")), "acme 100000 65536\n");
}

/// A user named like a number (Debian's useradd makes one) owns the lines written with that
/// number, as shadow reads them: uid 1234 is refused, and nothing is written.
#[test]
fn a_uid_that_is_another_user_s_name_is_refused() {
    let etc = TempEtc::copy_of_host();
    assert_ok(&etc.shadow("useradd -K SUB_UID_COUNT=0 -K SUB_GID_COUNT=0 -u 4243 1234"));
    let config = etc.path("nonrootd-test.toml");
    std::fs::write(&config, subids_support::config_text(&etc.etc())).unwrap();
    let out = etc.nonrootctl(&config, "subids allocate 1234");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("uid 1234 cannot own lines in the files: shadow gives lines owned by 1234 to the user named \"1234\" (uid 4243)"),
        "{stderr}"
    );
    // A [[tenant]] given as that uid is refused the same way, naming its line.
    let text = format!("{}\n[[tenant]]\nname = 1234\n", subids_support::config_text(&etc.etc()));
    std::fs::write(&config, text).unwrap();
    let out = etc.nonrootctl(&config, "apply --only subids");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("refused") && stdout.contains("(uid 4243) (") && stdout.contains("nonrootd-test.toml:8)"),
        "{stdout}"
    );
    assert_eq!((etc.read("subuid"), etc.read("subgid")), (String::new(), String::new()));
}
