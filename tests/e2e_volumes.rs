//! A volume prepared by nonrootd in the testbed (real systemd, dbus, dockerd): a container run
//! as `-u 999:999` writes to it; before the preparation it gets EACCES.

mod common;

use std::time::Duration;

use common::testbed::Testbed;

const LIMIT: Duration = Duration::from_secs(30);
const IMAGE: &str = "nonrootd-busybox";
const RUN_AS_999: &str = "docker run --rm -u 999:999 -v /srv/redis-data:/data nonrootd-busybox";

/// Installs the daemon as the package would (shipped unit, D-Bus policy) with a [[volume]] and
/// the drop-in the shipped unit needs for it: ProtectSystem=strict leaves /srv read-only to the
/// daemon unless a ReadWritePaths= names it (`nonrootctl check-config` says so).
fn install(testbed: &Testbed) {
    testbed.install_built(
        "[[volume]]\npath = \"/srv/redis-data\"\nuid = 999\ngid = 999\nmode = \"0750\"\n",
        Some("[Service]\nReadWritePaths=/srv/redis-data\n"),
    );
}

#[test]
fn a_container_as_999_writes_to_a_prepared_volume_and_gets_eacces_without() {
    let testbed = Testbed::boot("volumes");
    testbed.sh("systemctl start docker && docker info >/dev/null");
    testbed.docker_image(IMAGE);
    testbed.sh("mkdir -p /srv/redis-data/sub && echo old > /srv/redis-data/sub/existing");

    let before = testbed.try_sh(&format!("{RUN_AS_999} sh -c 'echo x > /data/f'"));
    assert!(!before.status.success(), "wrote without the preparation");
    let stderr = common::testbed::text(&before.stderr);
    assert!(stderr.contains("Permission denied"), "{stderr}");

    install(&testbed);
    // check-config reads the installed unit and its drop-ins: the drop-in lets the daemon
    // write this volume, not another one.
    let check = |path: &str| {
        testbed.sh(&format!(
            "printf '[[volume]]\\npath = \"{path}\"\\nuid = 999\\ngid = 999\\n' > /root/v.toml && {} --config /root/v.toml check-config",
            env!("CARGO_BIN_EXE_nonrootctl")
        ))
    };
    let covered = check("/srv/redis-data");
    assert!(!covered.contains("note:"), "{covered}");
    let other = check("/srv/other-data");
    assert!(
        other.contains("note: /root/v.toml:2: volume.path /srv/other-data is read-only for nonrootd.service"),
        "{other}"
    );
    assert!(other.contains("ReadWritePaths=-/srv/other-data"), "{other}");

    testbed.wait_until(
        LIMIT,
        "test \"$(stat -c %u:%g:%a /srv/redis-data) $(stat -c %u:%g /srv/redis-data/sub/existing)\" = '999:999:750 999:999'",
    );
    testbed.sh(&format!(
        "{RUN_AS_999} sh -c 'echo x > /data/f && mkdir /data/private && chmod 700 /data/private && echo y > /data/private/g'"
    ));

    // Something root-owned appears inside 999's 0700 directory; a Docker restart has the daemon
    // walk again under the shipped unit (which must read that directory to get there).
    testbed.sh("touch /srv/redis-data/private/from-root && chmod 0700 /srv/redis-data");
    testbed.sh("systemctl restart docker");
    testbed.wait_until(
        LIMIT,
        "test \"$(stat -c %u /srv/redis-data/private/from-root) $(stat -c %a /srv/redis-data)\" = '999 750'",
    );
    testbed.sh(&format!("{RUN_AS_999} sh -c 'cat /data/f /data/private/g >/dev/null'"));

    let check = testbed.sh("nonrootctl volumes check");
    assert!(check.starts_with("/srv/redis-data: 0 of "), "{check}");
    let status = testbed.sh("nonrootctl status");
    assert!(status.contains("/srv/redis-data"), "{status}");
    let applied = testbed.sh("nonrootctl apply --only volumes");
    assert!(applied.contains("correct      volumes /srv/redis-data"), "{applied}");
}

/// Docker's data root moved by /etc/docker/daemon.json (nonrootd's config names none):
/// check-config asks for the drop-in it needs; the daemon prepares the image directories there,
/// walks a named volume's data there, and refuses Docker's own files there, also when reached
/// through a bind mount of the data root.
#[test]
fn a_data_root_moved_by_daemon_json_is_prepared_and_guarded_there() {
    let testbed = Testbed::boot("data-root");
    // On the real disk below the testbed's /var/lib/docker (overlay2 cannot sit on overlayfs);
    // dockerd, up since the boot, restarts with it.
    testbed.sh(
        "set -e; mkdir -p /var/lib/docker/moved /srv/docker /srv/alias /etc/docker
         mount --bind /var/lib/docker/moved /srv/docker && mount --bind /srv/docker /srv/alias
         printf '{\"data-root\": \"/srv/docker\"}\\n' > /etc/docker/daemon.json",
    );
    let root_dir = testbed.sh("systemctl restart docker && docker info --format '{{.DockerRootDir}}'");
    assert_eq!(root_dir.trim(), "/srv/docker");
    testbed.docker_image(IMAGE);
    testbed.sh("docker volume create appdata >/dev/null && chmod 700 /srv/docker/image");
    let config = "[docker]\n\n\
                  [[volume]]\npath = \"/srv/docker/volumes/appdata/_data\"\nuid = 999\ngid = 999\n\n\
                  [[volume]]\npath = \"/srv/docker/overlay2\"\nuid = 999\ngid = 999\n\n\
                  [[volume]]\npath = \"/srv/alias/overlay2\"\nuid = 999\ngid = 999\n";
    testbed.sh(&format!("cat > /root/moved.toml <<'EOF'\n{config}EOF"));
    // check-config reads the shipped unit.
    let check = testbed.try_sh(&format!(
        "install -m644 {}/systemd/nonrootd.service /etc/systemd/system/ && {} --config /root/moved.toml check-config",
        env!("CARGO_MANIFEST_DIR"),
        env!("CARGO_BIN_EXE_nonrootctl")
    ));
    let said = common::testbed::text(&check.stdout) + &common::testbed::text(&check.stderr);
    assert!(
        said.contains(
            "/root/moved.toml: Docker's data root /srv/docker (data-root in /etc/docker/daemon.json) is read-only for nonrootd.service"
        ) && said.contains("ReadWritePaths=-/srv/docker"),
        "{said}"
    );

    testbed.install_built(config, Some("[Service]\nReadWritePaths=-/srv/docker\n"));
    testbed.wait_until(
        LIMIT,
        "test \"$(stat -c %a /srv/docker/image) $(stat -c %u:%g /srv/docker/volumes/appdata/_data)\" = '750 999:999'",
    );
    testbed.sh("docker run --rm -u 999:999 -v appdata:/data nonrootd-busybox sh -c 'echo x > /data/f'");
    let applied = testbed.try_sh("nonrootctl apply --only volumes");
    let report = common::testbed::text(&applied.stdout);
    assert_eq!(applied.status.code(), Some(1), "{report}");
    assert!(
        report.contains("correct      volumes /srv/docker/volumes/appdata/_data"),
        "{report}"
    );
    let line = |volume: &str| {
        report
            .lines()
            .find(|l| l.contains(&format!("volumes {volume} ")))
            .unwrap_or_default()
    };
    let inside = "): /srv/docker/overlay2 is inside Docker's data root /srv/docker:";
    let direct = line("/srv/docker/overlay2");
    assert!(direct.starts_with("refused") && direct.contains(inside), "{report}");
    let aliased = line("/srv/alias/overlay2");
    assert!(
        aliased.starts_with("refused")
            && aliased.contains(inside)
            && aliased.ends_with("(reached as /srv/alias/overlay2)"),
        "{report}"
    );
    // Docker's own files were left alone.
    testbed.sh("test \"$(stat -c %u /srv/docker/overlay2)\" = 0");
}
