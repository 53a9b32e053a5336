//! The installed package in a real systemd 252 + dbus + dockerd (the testbed): install, the
//! Docker hook, status and authorization, Docker restarted four ways, DMI readers, tenants,
//! reload, upgrade, removal and purge, and a reboot; the .rpm's install, upgrade and erase.
//!
//! Needs the packages: `scripts/package` and `scripts/package --no-build --version <version>.1` (scripts/check-packaging, run by scripts/test,
//! builds both); `NONROOTD_DEB`, `NONROOTD_DEB_UPGRADE`, `NONROOTD_RPM` and
//! `NONROOTD_RPM_UPGRADE` may name them.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::testbed::Testbed;

const LIMIT: Duration = Duration::from_secs(20);
const IMAGE_DIRS: &str = "/var/lib/docker/image /var/lib/docker/image/overlay2 /var/lib/docker/image/overlay2/layerdb";
const AS_4321: &str = "setpriv --reuid 4321 --regid 4321 --clear-groups env HOME=/tmp /usr/bin/docker version --format '{{.Server.Version}}'";
const CONFIG: &str = "[docker]\n\n[[socket]]\npath = \"/run/docker.sock\"\nusers = [4321]\n";

fn package(var: &str, version: &str) -> PathBuf {
    built(var, &format!("nonrootd_{version}-1_amd64.deb"))
}

/// `target/packages/<name>`, or what `var` names.
fn built(var: &str, name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(var) {
        return PathBuf::from(path);
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/packages")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: run scripts/package (scripts/test does)",
        path.display()
    );
    path
}

fn deb() -> PathBuf {
    package("NONROOTD_DEB", env!("CARGO_PKG_VERSION"))
}

/// Installs the package the way an admin does, then writes `config` and reloads.
fn install(testbed: &Testbed, config: &str) {
    // The host's policy-rc.d (a container image's "never start services") is visible in the overlay.
    testbed.sh(&format!(
        "set -e; rm -f /usr/sbin/policy-rc.d; dpkg -i {} >/dev/null; systemctl is-active nonrootd",
        deb().display()
    ));
    write_config(testbed, config);
    testbed.sh("systemctl reload nonrootd");
}

fn write_config(testbed: &Testbed, config: &str) {
    testbed.sh(&format!("cat > /etc/nonrootd/nonrootd.toml <<'EOF'\n{config}EOF"));
}

fn docker_right(testbed: &Testbed) {
    testbed.wait_until(LIMIT, &format!("test \"$(stat -c %a {IMAGE_DIRS} | sort -u)\" = 750"));
    testbed.wait_until(LIMIT, "getfacl -cp /run/docker.sock | grep -qx 'user:4321:rw-'");
    testbed.wait_until(LIMIT, AS_4321);
}

fn container_as_4321_talks_to_docker(testbed: &Testbed) {
    let version = testbed.sh(
        "docker run --rm -u 4321:4321 -e HOME=/tmp -v /run/docker.sock:/run/docker.sock nonroot-client \
         /usr/bin/docker -H unix:///run/docker.sock version --format '{{.Server.Version}}'",
    );
    assert!(version.trim().starts_with("20.10"), "{version}");
}

#[test]
fn installed_package_serves_status_and_keeps_docker_right_through_four_restarts() {
    let testbed = Testbed::boot("pkg-restarts");
    testbed.sh("systemctl start docker");
    testbed.docker_client_image("nonroot-client");
    install(&testbed, CONFIG);
    docker_right(&testbed);

    // It subscribes to systemd right after it starts.
    testbed.wait_until(
        Duration::from_secs(10),
        "nonrootctl status | grep -q 'Bus: connected, following systemd'",
    );
    let status = testbed.sh("nonrootctl status");
    assert!(
        status.contains("active (running)") && status.contains("Bus: connected, following systemd"),
        "{status}"
    );
    let as_nobody = testbed.sh("setpriv --reuid 65534 --regid 65534 --clear-groups nonrootctl status");
    assert!(
        as_nobody.contains("✓ sockets /run/docker.sock (user:4321:rw-)"),
        "{as_nobody}"
    );
    let denied = testbed.try_sh("setpriv --reuid 65534 --regid 65534 --clear-groups nonrootctl apply");
    assert_eq!(denied.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&denied.stderr);
    assert!(
        stderr.contains("permission denied: Apply needs root") && stderr.contains("uid 65534"),
        "{stderr}"
    );

    let restarts = [
        "systemctl restart docker",
        "systemctl restart docker.socket",
        "systemctl stop docker.service docker.socket; systemctl start docker.socket",
        "kill -9 $(systemctl show -P MainPID docker); sleep 3",
    ];
    for restart in restarts {
        testbed.sh(&format!("chmod 0700 {IMAGE_DIRS}"));
        testbed.sh(restart);
        docker_right(&testbed);
        container_as_4321_talks_to_docker(&testbed);
    }
    // A gid-0 process that is not root (cAdvisor's `operator`) lists the layer database.
    testbed.sh("setpriv --reuid 4322 --regid 0 --clear-groups ls /var/lib/docker/image/overlay2/layerdb >/dev/null");
    // With the daemon stopped, `nonrootctl apply` applies in-process.
    testbed.sh(&format!("systemctl stop nonrootd; chmod 0700 {IMAGE_DIRS}"));
    let local = testbed.sh("nonrootctl apply --only docker");
    assert!(local.contains("3 changed"), "{local}");
    testbed.sh("systemctl start nonrootd");
    // The hook ran in Docker's start and succeeded.
    let hook = testbed.sh("systemctl show -P ExecStartPost docker.service");
    assert!(
        hook.contains("nonrootctl") && hook.contains("code=exited ; status=0 "),
        "{hook}"
    );
}

/// SMBIOS 3.0 tables as the kernel exports them: an entry point and a table with one System
/// Information structure (type 1) holding `uuid`, then end-of-table.
fn smbios_tables(uuid: [u8; 16]) -> (Vec<u8>, Vec<u8>) {
    let mut table = vec![1, 0x1b, 0x00, 0x01, 1, 2, 0, 0];
    table.extend_from_slice(&uuid);
    table.extend_from_slice(&[6, 0, 0]);
    table.extend_from_slice(b"nonrootd\0testbed\0\0");
    table.extend_from_slice(&[127, 4, 0x00, 0x02, 0, 0]);
    let mut entry = b"_SM3_".to_vec();
    entry.extend_from_slice(&[0, 0x18, 3, 0, 0, 1, 0]);
    entry.extend_from_slice(&(table.len() as u32).to_le_bytes());
    entry.extend_from_slice(&0u64.to_le_bytes());
    let sum = entry.iter().fold(0u8, |s, b| s.wrapping_add(*b));
    entry[5] = 0u8.wrapping_sub(sum);
    (entry, table)
}

#[test]
fn dmi_tables_become_readable_by_the_group_only_and_by_a_mounted_consumer() {
    let testbed = Testbed::boot("pkg-dmi");
    let uuid = [
        0x78, 0x56, 0x34, 0x12, 0x34, 0x12, 0x78, 0x56, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0,
    ];
    let (entry, table) = smbios_tables(uuid);
    let staging = PathBuf::from(format!("/var/tmp/nonrootd-e2e-dmi-{}", std::process::id()));
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::write(staging.join("smbios_entry_point"), entry).unwrap();
    std::fs::write(staging.join("DMI"), table).unwrap();
    testbed.sh(&format!(
        "set -e; mount -t tmpfs -o mode=0755 firmware /sys/firmware; mkdir -p /sys/firmware/dmi/tables
         cp {0}/smbios_entry_point {0}/DMI /sys/firmware/dmi/tables/; chmod 0400 /sys/firmware/dmi/tables/*
         groupadd -g 990 dmi; useradd -u 4400 -G dmi reader; useradd -u 4401 other
         systemctl start docker",
        staging.display()
    ));
    std::fs::remove_dir_all(&staging).unwrap();
    testbed.docker_client_image("nonroot-client");
    install(&testbed, &format!("{CONFIG}\n[dmi]\ngroup = \"dmi\"\n"));
    // Reload answers once the config is in force; the apply follows.
    testbed.wait_until(
        LIMIT,
        "test \"$(stat -c '%a %G' /sys/firmware/dmi/tables/DMI /sys/firmware/dmi/tables/smbios_entry_point | sort -u)\" = '440 dmi'",
    );
    let modes =
        testbed.sh("stat -c '%a %U:%G' /sys/firmware/dmi/tables/DMI /sys/firmware/dmi/tables/smbios_entry_point");
    assert_eq!(modes, "440 root:dmi\n440 root:dmi\n");
    let read = testbed.sh("setpriv --reuid 4400 --regid 4400 --init-groups dmidecode -s system-uuid");
    assert_eq!(read.trim(), "12345678-1234-5678-1234-56789abcdef0");
    let denied = testbed.try_sh("setpriv --reuid 4401 --regid 4401 --init-groups cat /sys/firmware/dmi/tables/DMI");
    assert!(String::from_utf8_lossy(&denied.stderr).contains("Permission denied"));
    testbed.sh(
        "docker run --rm -u 4321:4321 --group-add 990 -v /sys/firmware/dmi/tables:/rootfs/sys/firmware/dmi/tables:ro \
         nonroot-client sh -c 'cat /rootfs/sys/firmware/dmi/tables/DMI /rootfs/sys/firmware/dmi/tables/smbios_entry_point >/dev/null'",
    );
    let without_group = testbed.try_sh(
        "docker run --rm -u 4321:4321 -v /sys/firmware/dmi/tables:/rootfs/sys/firmware/dmi/tables:ro \
         nonroot-client cat /rootfs/sys/firmware/dmi/tables/DMI",
    );
    assert!(!without_group.status.success(), "read without the group");
    // As after a reboot (the kernel makes them root's 0400), with the daemon not up yet:
    // Docker's start fixes them before dockerd starts its containers.
    testbed.sh(
        "systemctl stop nonrootd; chown root:root /sys/firmware/dmi/tables/*; chmod 0400 /sys/firmware/dmi/tables/*
         systemctl restart docker",
    );
    let modes =
        testbed.sh("stat -c '%a %U:%G' /sys/firmware/dmi/tables/DMI /sys/firmware/dmi/tables/smbios_entry_point");
    assert_eq!(modes, "440 root:dmi\n440 root:dmi\n");
}

#[test]
fn a_configured_tenant_gets_ranges_that_unshare_map_auto_uses() {
    let testbed = Testbed::boot("pkg-tenant");
    testbed.sh("useradd -m -K SUB_UID_COUNT=0 -K SUB_GID_COUNT=0 acme; ! grep -q '^acme:' /etc/subuid");
    let podman_map =
        "su - acme -c 'podman system migrate 2>/dev/null; podman unshare cat /proc/self/uid_map' 2>/dev/null";
    let uid = testbed.sh("id -u acme").trim().to_string();
    let alone = testbed.sh(podman_map);
    assert_eq!(
        alone.split_whitespace().collect::<Vec<_>>(),
        ["0", uid.as_str(), "1"],
        "{alone}"
    );

    install(&testbed, &format!("{CONFIG}\n[[tenant]]\nname = \"acme\"\n"));
    // Reload answers once the config is in force; the apply that allocates follows.
    testbed.wait_until(LIMIT, "grep -q '^acme:' /etc/subuid && grep -q '^acme:' /etc/subgid");
    let line = testbed.sh("grep '^acme:' /etc/subuid /etc/subgid");
    assert!(
        line.contains("/etc/subuid:acme:") && line.contains("/etc/subgid:acme:"),
        "{line}"
    );
    let fields: Vec<&str> = line.lines().next().unwrap().split(':').collect();
    let (start, count) = (fields[2], fields[3]);
    let map = testbed.sh("su acme -c 'unshare --map-auto --map-root-user cat /proc/self/uid_map'");
    assert!(map.contains(start), "uid_map does not use the range {start}:\n{map}");
    // podman keeps its first user namespace alive: `podman system migrate` lets it see the range.
    let mapped = testbed.sh(podman_map);
    let rows: Vec<Vec<&str>> = mapped.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(
        rows,
        [vec!["0", uid.as_str(), "1"], vec!["1", start, count]],
        "{mapped}"
    );
    // Debian's useradd gives new users a range; nonrootd adds nothing for them.
    testbed.sh("useradd -m beta");
    write_config(
        &testbed,
        &format!("{CONFIG}\n[[tenant]]\nname = \"acme\"\n[[tenant]]\nname = \"beta\"\n"),
    );
    let before = testbed.sh("cat /etc/subuid /etc/subgid");
    testbed.sh("systemctl reload nonrootd");
    // Reload answers once the config is in force; an apply asked for next runs after its own.
    testbed.sh("nonrootctl apply");
    assert_eq!(testbed.sh("cat /etc/subuid /etc/subgid"), before);
}

#[test]
fn a_broken_config_on_reload_is_refused_and_the_old_one_stays_in_force() {
    let testbed = Testbed::boot("pkg-reload");
    testbed.sh("systemctl start docker");
    install(&testbed, CONFIG);
    write_config(&testbed, &format!("{CONFIG}acess = \"rw\"\n"));
    let reload = testbed.try_sh("systemctl reload nonrootd");
    assert!(!reload.status.success(), "a broken config was accepted");
    testbed.sh("systemctl is-active nonrootd");
    // journald takes the message in on its own time.
    testbed.wait_until(
        LIMIT,
        "journalctl -u nonrootd -o cat MESSAGE_ID=5e6f7a8b9c0d4e1f8a2b3c4d5e6f7a8b | grep -qF 'unknown field `acess`'",
    );
    testbed.sh("systemctl restart docker.socket");
    docker_right(&testbed);
    // Off the system bus (no dbus, or while it restarts) `systemctl reload` still reloads:
    // nonrootctl sends the daemon SIGHUP, which systemd's $MAINPID names.
    testbed.sh("systemctl stop dbus.socket dbus.service");
    write_config(&testbed, &CONFIG.replace("[4321]", "[4321, 4322]"));
    testbed.sh("systemctl reload nonrootd");
    testbed.wait_until(
        LIMIT,
        "journalctl -u nonrootd -o cat -n 20 | grep -qF 'is not on the system bus'",
    );
    testbed.wait_until(LIMIT, "getfacl -cp /run/docker.sock | grep -qx 'user:4322:rw-'");
    // A broken config is refused there too, as over the bus.
    write_config(&testbed, &format!("{CONFIG}acess = \"rw\"\n"));
    let refused = testbed.try_sh("systemctl reload nonrootd");
    assert!(!refused.status.success(), "a broken config was accepted off the bus");
    testbed.sh("systemctl is-active nonrootd");
}

/// The files of /etc, /usr and /var/lib, one per line.
fn system_files(testbed: &Testbed) -> String {
    testbed.sh("find /etc /usr /var/lib -xdev | sort")
}

/// The files named like nonrootd that are there now and were not in `before` ([`system_files`]).
fn nonrootd_files_since(testbed: &Testbed, before: &str) -> Vec<String> {
    let before: std::collections::HashSet<&str> = before.lines().collect();
    system_files(testbed)
        .lines()
        .filter(|f| !before.contains(f) && f.contains("nonrootd"))
        .map(str::to_string)
        .collect()
}

/// `removal` fails while the daemon will not stop (it would outlive its package): it keeps
/// running, nothing is revoked, no removal mark is left and the package (`installed`) stays.
fn refused_while_the_daemon_will_not_stop(testbed: &Testbed, removal: &str, installed: &str) {
    testbed.sh(
        "mkdir -p /etc/systemd/system/nonrootd.service.d && printf '[Unit]\\nRefuseManualStop=yes\\n' >/etc/systemd/system/nonrootd.service.d/refuse.conf && systemctl daemon-reload",
    );
    let refused = testbed.try_sh(removal);
    assert_ne!(
        refused.status.code(),
        Some(0),
        "{removal} went on with the daemon running"
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("nonrootd.service is still running"), "{stderr}");
    testbed.sh(&format!(
        "systemctl is-active nonrootd && {installed} && test ! -e /var/lib/nonrootd/removing"
    ));
    docker_right(testbed);
    testbed.sh("rm -r /etc/systemd/system/nonrootd.service.d && systemctl daemon-reload");
}

/// Upgrades with `command`: nonrootd is restarted, Docker is not, and the config edit stays.
fn upgrade_restarts_nonrootd_only(testbed: &Testbed, command: &str) {
    let pids = || testbed.sh("systemctl show -P MainPID nonrootd docker");
    let before = pids();
    testbed.sh(command);
    let after = pids();
    let (b, a): (Vec<_>, Vec<_>) = (before.lines().collect(), after.lines().collect());
    assert_ne!(a[0], b[0], "nonrootd was not restarted");
    assert_eq!(a[1], b[1], "docker was restarted");
    assert_eq!(
        testbed.sh("cat /etc/nonrootd/nonrootd.toml"),
        CONFIG,
        "the config edit was lost"
    );
}

#[test]
fn upgrade_keeps_config_restarts_nonrootd_not_docker_and_removal_leaves_nothing() {
    let testbed = Testbed::boot("pkg-upgrade");
    testbed.sh("systemctl start docker");
    let before_files = system_files(&testbed);
    install(&testbed, CONFIG);
    docker_right(&testbed);
    let upgrade = package("NONROOTD_DEB_UPGRADE", concat!(env!("CARGO_PKG_VERSION"), ".1"));
    upgrade_restarts_nonrootd_only(&testbed, &format!("dpkg -i {} >/dev/null", upgrade.display()));
    assert_eq!(
        testbed.sh("dpkg-query -W -f '${Version}' nonrootd"),
        concat!(env!("CARGO_PKG_VERSION"), ".1-1")
    );

    testbed.sh("dpkg -r nonrootd >/dev/null");
    assert!(
        !testbed.sh("getfacl -cp /run/docker.sock").contains("4321"),
        "a grant survived removal"
    );
    // Installed again after a removal: running again, like a first install, also when it was
    // not running at the removal.
    let install_again = format!("dpkg -i {} >/dev/null", upgrade.display());
    for removal in ["true", "systemctl stop nonrootd && dpkg -r nonrootd >/dev/null"] {
        testbed.sh(&format!("{removal} && {install_again}"));
        testbed.sh("systemctl is-active nonrootd");
        testbed.sh("test ! -e /var/lib/nonrootd/stopped-by-removal && test ! -e /var/lib/nonrootd/removed");
    }
    // A daemon that will not stop fails the removal: it would outlive its package (and
    // grant again once the mark is gone). Nothing is revoked, no mark is left.
    refused_while_the_daemon_will_not_stop(&testbed, "dpkg -r nonrootd", "dpkg -s nonrootd >/dev/null");
    // A removal that fails at the revoke (an unreadable record) leaves the daemon as it found
    // it: running again if it ran, stopped if the admin had stopped it.
    testbed.sh(
        "cp -a /var/lib/nonrootd/grants.json /root/grants.good && echo '{ not json' > /var/lib/nonrootd/grants.json",
    );
    for (before, after) in [
        ("systemctl start nonrootd", "active"),
        ("systemctl stop nonrootd", "inactive"),
    ] {
        testbed.sh(before);
        let failed = testbed.try_sh("dpkg -r nonrootd");
        assert_ne!(failed.status.code(), Some(0), "the removal went on without a revoke");
        let state = testbed.try_sh("systemctl is-active nonrootd");
        assert_eq!(String::from_utf8_lossy(&state.stdout).trim(), after, "{before}");
    }
    testbed.sh("mv /root/grants.good /var/lib/nonrootd/grants.json && systemctl start nonrootd");
    testbed.sh("dpkg -r nonrootd >/dev/null");
    testbed.sh("dpkg -P nonrootd >/dev/null");
    assert!(testbed.try_sh("test -e /var/lib/nonrootd").status.code() != Some(0));
    let left = nonrootd_files_since(&testbed, &before_files);
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// The .rpm against the real systemd (Debian's rpm, with its own database in the testbed):
/// its scriptlets install (daemon-reload: the unit and Docker's hook drop-ins are seen),
/// upgrade (nonrootd restarted, Docker not, the edited config kept), refuse an erase while the
/// daemon will not stop, and erase (daemon stopped, grants revoked, only the edited config
/// left, as `.rpmsave`).
#[test]
fn the_rpm_installs_upgrades_and_erases_under_systemd_like_the_deb() {
    let testbed = Testbed::boot("pkg-rpm");
    testbed.sh("systemctl start docker");
    let before_files = system_files(&testbed);
    let version = env!("CARGO_PKG_VERSION");
    let (first, upgrade) = (
        built("NONROOTD_RPM", &format!("nonrootd-{version}-1.x86_64.rpm")),
        built("NONROOTD_RPM_UPGRADE", &format!("nonrootd-{version}.1-1.x86_64.rpm")),
    );
    // Debian's rpm installs only when told it is on purpose; nothing here is in its database.
    let rpm_cmd = "rpm --nodeps $(rpm --force-debian --version >/dev/null 2>&1 && echo --force-debian)";
    testbed.sh(&format!("{rpm_cmd} -i {}", first.display()));
    let drop_ins = testbed.sh("systemctl show -P DropInPaths docker.service docker.socket");
    assert_eq!(drop_ins.matches("nonrootd.conf").count(), 2, "{drop_ins}");
    // As on Fedora, where a preset may leave it disabled.
    testbed.sh("systemctl enable --now nonrootd >/dev/null 2>&1 && systemctl is-active nonrootd");
    write_config(&testbed, CONFIG);
    testbed.sh("systemctl reload nonrootd");
    docker_right(&testbed);

    upgrade_restarts_nonrootd_only(&testbed, &format!("{rpm_cmd} -U {}", upgrade.display()));
    assert_eq!(
        testbed.sh("rpm -q --qf '%{VERSION}' nonrootd"),
        concat!(env!("CARGO_PKG_VERSION"), ".1")
    );
    docker_right(&testbed);

    refused_while_the_daemon_will_not_stop(&testbed, &format!("{rpm_cmd} -e nonrootd"), "rpm -q nonrootd");
    // Without nonrootctl nothing could be revoked: refused, the daemon left running.
    testbed.sh("mv /usr/bin/nonrootctl /root/nonrootctl");
    let refused = testbed.try_sh(&format!("{rpm_cmd} -e nonrootd"));
    assert_ne!(refused.status.code(), Some(0), "the erase went on without nonrootctl");
    testbed.sh("mv /root/nonrootctl /usr/bin/nonrootctl && systemctl is-active nonrootd");

    testbed.sh(&format!("{rpm_cmd} -e nonrootd"));
    assert!(
        !testbed.sh("getfacl -cp /run/docker.sock").contains("4321"),
        "a grant survived the erase"
    );
    assert_ne!(testbed.try_sh("systemctl is-active nonrootd").status.code(), Some(0));
    let left = nonrootd_files_since(&testbed, &before_files);
    assert_eq!(left, ["/etc/nonrootd", "/etc/nonrootd/nonrootd.toml.rpmsave"]);
}

/// The hooks end at boot with status 0, i.e. within their timeout (`timeout` would exit 124):
/// they neither fail nor hold up Docker's start for long. The boot times are printed for
/// comparison, with nonrootd and without; no timing is asserted.
#[test]
fn after_a_reboot_everything_is_right_and_the_hooks_succeed_at_boot() {
    let testbed = Testbed::boot("pkg-reboot");
    testbed.sh("systemctl enable --now docker.socket docker.service");
    install(&testbed, CONFIG);
    docker_right(&testbed);
    testbed.stop();
    let started = Instant::now();
    testbed.boot_again();
    eprintln!("boot with nonrootd and its hook: {:?}", started.elapsed());
    docker_right(&testbed);
    for hook in ["ExecStartPre", "ExecStartPost"] {
        let ran = testbed.sh(&format!("systemctl show -P {hook} docker.service"));
        assert!(
            ran.contains("nonrootctl") && ran.contains("code=exited ; status=0 "),
            "the {hook} hook failed or timed out at boot: {ran}"
        );
    }
    let socket_hook = testbed.sh("systemctl show -P ExecStartPost docker.socket");
    assert!(socket_hook.contains("code=exited ; status=0 "), "{socket_hook}");
    testbed.sh("systemctl is-active nonrootd");

    testbed.sh("dpkg -r nonrootd >/dev/null");
    testbed.stop();
    let started = Instant::now();
    testbed.boot_again();
    eprintln!("boot without nonrootd: {:?}", started.elapsed());
}
