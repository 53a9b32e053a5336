//! nonrootd against a real systemd 252, system bus and dockerd (the testbed), with no
//! ExecStartPost= hook installed: every fix below is the daemon's own.

mod common;

use std::time::Duration;

use common::testbed::Testbed;

const LIMIT: Duration = Duration::from_secs(20);
const IMAGE_DIRS: &str = "/var/lib/docker/image /var/lib/docker/image/overlay2 /var/lib/docker/image/overlay2/layerdb";
/// uid 4321 talks to the Docker API through the socket ACL (the 20.10 client of docker.io).
const AS_4321: &str = "setpriv --reuid 4321 --regid 4321 --clear-groups env HOME=/tmp /usr/bin/docker version --format '{{.Server.Version}}'";

fn install(testbed: &Testbed) {
    testbed.install_built(
        "[docker]\n\n[[socket]]\npath = \"/run/docker.sock\"\nusers = [4321]\n",
        None,
    );
}

fn socket_inode(testbed: &Testbed) -> String {
    testbed.sh("stat -c %i /run/docker.sock").trim().to_string()
}

/// Nothing runs in the daemon (an apply, a walk), nor is queued: one starts when none runs.
/// (`status` exits 1 while anything is refused or failed: its output counts.)
macro_rules! idle {
    () => {
        r#"s=$(nonrootctl status --json; true) && echo "$s" | grep -q '"applying":null' && echo "$s" | grep -q '"walking":null'"#
    };
}

/// The daemon's last apply was the re-check of a new subscription to systemd (or of a new
/// bus connection with it), made at SINCE (seconds) or later, and nothing runs any more (the
/// last apply recorded may have been the socket fixer's part of it).
const SUBSCRIBED: &str = concat!(
    r#"t=$(nonrootctl status --json | sed -n 's/.*"last_trigger":{"at":\([0-9]*\),"text":"\([^"]*\)".*/\1 \2/p') && [ "${t%% *}" -ge SINCE ] && case "${t#* }" in "subscribed to systemd"*|"connected to the system bus (and"*) true ;; *) false ;; esac && "#,
    idle!()
);

fn break_things(testbed: &Testbed) {
    testbed.sh(&format!("chmod 0700 {IMAGE_DIRS}"));
}

fn all_right(testbed: &Testbed) {
    testbed.wait_until(LIMIT, &format!("test \"$(stat -c %a {IMAGE_DIRS} | sort -u)\" = 750"));
    testbed.wait_until(
        LIMIT,
        "getfacl -cp /run/docker.sock | grep -qx 'user:4321:rw-' && getfacl -cp /run/docker.sock | grep -q '^mask::rw'",
    );
    testbed.wait_until(LIMIT, AS_4321);
}

#[test]
fn every_way_docker_restarts_is_followed_without_anyone_running_nonrootctl() {
    let testbed = Testbed::boot("triggers");
    testbed.sh("systemctl start docker && docker info >/dev/null");
    install(&testbed);
    all_right(&testbed);
    assert!(
        testbed
            .try_sh(&format!(
                "setpriv --reuid 4322 --regid 4322 --clear-groups env HOME=/tmp {}",
                "/usr/bin/docker version"
            ))
            .status
            .code()
            != Some(0)
    );

    // (what comes first and the re-check it makes, if any; then, once that re-check is done
    // and the host broken, the trigger that must be followed; whether it re-creates the socket)
    let triggers = [
        (None, "systemctl restart docker", false),
        (None, "systemctl restart docker.socket", true),
        (
            None,
            "systemctl stop docker.service docker.socket; systemctl start docker.socket",
            true,
        ),
        // A Docker start after the re-subscription, not the re-check that comes with it.
        (
            Some(("systemctl daemon-reexec", SUBSCRIBED)),
            "systemctl restart docker",
            false,
        ),
        (
            Some(("systemctl restart dbus", SUBSCRIBED)),
            "systemctl restart docker",
            false,
        ),
        // docker.service started by socket activation (a client's connection) is followed. (A
        // stop makes no re-check, unless systemd reports the job before the state: a second to
        // settle, then whatever it queued is done.)
        (
            Some(("systemctl stop docker.service", concat!("sleep 1; ", idle!()))),
            "docker version >/dev/null",
            false,
        ),
    ];
    for (before, trigger, recreates_socket) in triggers {
        if let Some((setup, recheck)) = before {
            let since = testbed.sh("date +%s");
            testbed.sh(setup);
            if !recheck.is_empty() {
                testbed.wait_until(LIMIT, &recheck.replace("SINCE", since.trim()));
            }
        }
        break_things(&testbed);
        let inode = socket_inode(&testbed);
        // Still broken: nothing but the trigger fixes it.
        testbed.sh(&format!("test \"$(stat -c %a {IMAGE_DIRS} | sort -u)\" = 700"));
        testbed.sh(trigger);
        // Socket activation: the first connection starts dockerd where the trigger did not.
        all_right(&testbed);
        assert_eq!(
            socket_inode(&testbed) != inode,
            recreates_socket,
            "{trigger}: socket re-created?"
        );
    }
    let status = testbed.sh("nonrootctl status");
    assert!(status.contains("Bus: connected, following systemd"), "{status}");
    let as_nobody = testbed.sh("setpriv --reuid 65534 --regid 65534 --clear-groups nonrootctl status --json");
    assert!(as_nobody.contains("\"following_systemd\":true"), "{as_nobody}");
}

#[test]
fn a_named_user_whose_uid_changed_gets_its_new_uid_on_the_recreated_socket() {
    let testbed = Testbed::boot("names");
    // The testbed's /etc is its own overlay: the user exists there only.
    testbed.sh("useradd -M -N -s /usr/sbin/nologin -u 4321 dockerapp");
    testbed.install_built(
        "[docker]\n\n[[socket]]\npath = \"/run/docker.sock\"\nusers = [\"dockerapp\"]\n",
        None,
    );
    // Numeric (-n): getfacl would print the name.
    let granted_only = |uid: u32, other: u32| {
        testbed.wait_until(
            LIMIT,
            &format!(
                "acl=$(getfacl -ncp /run/docker.sock) && echo \"$acl\" | grep -qx 'user:{uid}:rw-' && ! echo \"$acl\" | grep -q 'user:{other}:'"
            ),
        );
        testbed.wait_until(LIMIT, &AS_4321.replace("4321", &uid.to_string()));
    };
    granted_only(4321, 4322);
    testbed.sh("usermod -u 4322 dockerapp");
    for trigger in [
        "systemctl restart docker.socket",
        "systemctl stop docker.service docker.socket; systemctl start docker.socket",
    ] {
        testbed.sh(trigger);
        granted_only(4322, 4321);
        let record = testbed.sh("cat /var/lib/nonrootd/grants.json");
        assert!(
            record.contains("user:4322") && !record.contains("user:4321"),
            "{trigger}: {record}"
        );
    }
}

#[test]
fn a_socket_dockerd_makes_itself_keeps_its_group_and_gets_the_grant() {
    let testbed = Testbed::boot("own-socket");
    testbed.sh("systemctl start docker && docker info >/dev/null");
    install(&testbed);
    all_right(&testbed);
    // dockerd without socket activation: it binds the socket itself with umask 0777 (mode
    // 0000), then gives it to root:docker and chmods it 0660.
    testbed.sh("systemctl stop docker.service docker.socket; \
         systemd-run --unit=own-socket-dockerd /usr/sbin/dockerd -H unix:///run/docker.sock \
         --containerd=/run/containerd/containerd.sock");
    testbed.wait_until(LIMIT, "docker info >/dev/null");
    testbed.wait_until(
        LIMIT,
        "acl=$(getfacl -ncp /run/docker.sock) && echo \"$acl\" | grep -qx 'user:4321:rw-' && echo \"$acl\" | grep -qx 'group::rw-'",
    );
    testbed.wait_until(LIMIT, AS_4321);
    let docker_gid = testbed.sh("getent group docker | cut -d: -f3");
    let as_member = AS_4321.replace("--clear-groups", &format!("--groups {}", docker_gid.trim()));
    testbed.wait_until(LIMIT, &as_member.replace("4321", "4323"));
    testbed.sh("systemctl stop own-socket-dockerd");
}

#[test]
fn two_hundred_socket_recreations_are_all_fixed_without_growth() {
    let testbed = Testbed::boot("recreate");
    install(&testbed);
    let usage = |t: &Testbed| {
        // The fewest fds over a few samples: an apply in flight holds a few for a moment.
        t.sh("pid=$(systemctl show -P MainPID nonrootd)
              fds=$(for i in $(seq 10); do ls /proc/$pid/fd | wc -l; sleep 0.05; done | sort -n | head -1)
              echo $fds $(awk '/VmRSS/ {print $2}' /proc/$pid/status)")
    };
    let before = usage(&testbed);
    let mut missed = Vec::new();
    for round in 0..200 {
        testbed.sh("systemctl stop docker.service docker.socket; systemctl start docker.socket");
        let out = testbed.try_sh(
            "for i in $(seq 500); do getfacl -cp /run/docker.sock 2>/dev/null | grep -qx 'user:4321:rw-' && exit 0; sleep 0.01; done; exit 1",
        );
        if !out.status.success() {
            missed.push(round);
        }
    }
    assert!(missed.is_empty(), "re-creations never fixed: {missed:?}");
    testbed.wait_until(LIMIT, AS_4321);
    let after = usage(&testbed);
    let parse = |s: &str| {
        s.split_whitespace()
            .map(|n| n.parse::<u64>().unwrap())
            .collect::<Vec<_>>()
    };
    let (b, a) = (parse(&before), parse(&after));
    assert!(a[0] <= b[0], "fds grew: {before} → {after}");
    assert!(a[1] <= b[1] + 2048, "RSS grew (kB): {before} → {after}");
    // journald takes the messages in on its own time.
    testbed.wait_until(
        LIMIT,
        "test $(journalctl -u nonrootd -o verbose MESSAGE_ID=8a4e2f61c39b4d7e8f0a1b2c3d4e5f60 | grep -c 'MESSAGE=changed') -ge 200",
    );
}

#[test]
fn a_reload_that_changes_the_followed_units_takes_effect() {
    let testbed = Testbed::boot("units");
    install(&testbed);
    testbed.sh(
        "set -e
         printf '[Service]\\nType=oneshot\\nRemainAfterExit=yes\\nExecStart=/bin/true\\n' > /etc/systemd/system/runtime-prep.service
         systemctl daemon-reload
         printf '[docker]\\nunits = [\"runtime-prep.service\"]\\n' > /etc/nonrootd/nonrootd.toml
         systemctl reload nonrootd",
    );
    // The reload's apply is done before the directories are broken: only the unit's start
    // fixes them.
    testbed.wait_until(LIMIT, idle!());
    testbed.sh(&format!("mkdir -p {IMAGE_DIRS}; chmod 0700 {IMAGE_DIRS}"));
    testbed.sh(&format!("test \"$(stat -c %a {IMAGE_DIRS} | sort -u)\" = 700"));
    testbed.sh("systemctl start runtime-prep.service");
    testbed.wait_until(LIMIT, &format!("test \"$(stat -c %a {IMAGE_DIRS} | sort -u)\" = 750"));
    let status = testbed.sh("nonrootctl status");
    assert!(status.contains("runtime-prep.service"), "{status}");
}

/// What `chrt -p` says of the daemon's thread named `comm`, on one line: policy, priority and,
/// for deadline scheduling, runtime/deadline/period in ns.
fn policy_of(testbed: &Testbed, comm: &str) -> String {
    testbed
        .sh(&format!(
            "pid=$(systemctl show -P MainPID nonrootd)
             for t in /proc/$pid/task/*; do
               [ \"$(cat $t/comm)\" = {comm} ] && chrt -p ${{t##*/}} | sed 's/.*: //' | tr '\\n' ' '
             done; true"
        ))
        .trim()
        .to_string()
}

const DEADLINE: &str = "SCHED_DEADLINE|SCHED_RESET_ON_FORK 0 1000000/10000000/10000000";
const FIFO: &str = "SCHED_FIFO|SCHED_RESET_ON_FORK 1";
const NORMAL: &str = "SCHED_OTHER 0";

fn set_drop_in(testbed: &Testbed, text: &str) {
    testbed.sh(&format!(
        "mkdir -p /etc/systemd/system/nonrootd.service.d
         cat > /etc/systemd/system/nonrootd.service.d/scheduling.conf <<'EOF'\n[Service]\n{text}EOF
         systemctl daemon-reload && systemctl restart nonrootd"
    ));
}

/// A new socket is fixed, and the fixer is back at `policy` while it waits.
fn recreated_and_waiting_at(testbed: &Testbed, policy: &str) {
    break_things(testbed);
    testbed.sh("systemctl restart docker.socket");
    all_right(testbed);
    common::bus::wait_for(
        LIMIT,
        || policy_of(testbed, "socket-fixer") == policy,
        &format!("the socket fixer waiting at {policy}"),
    );
}

#[test]
fn the_socket_fixer_waits_urgent_and_works_normal() {
    let testbed = Testbed::boot("scheduling");
    install(&testbed);
    all_right(&testbed);
    let pid_limits = testbed.sh("cat /proc/$(systemctl show -P MainPID nonrootd)/limits");
    assert!(pid_limits.contains("Max realtime timeout      200000"), "{pid_limits}");
    assert_eq!(policy_of(&testbed, "nonrootd"), NORMAL);
    // Deadline scheduling as shipped. The fixer is urgent only once sched_setattr was confined
    // to its own thread (a type-level rule in the daemon): urgent here proves that the unit's
    // filters let the daemon install that confinement too.
    common::bus::wait_for(
        LIMIT,
        || policy_of(&testbed, "socket-fixer") == DEADLINE,
        "the socket fixer waiting at deadline scheduling",
    );
    // Urgent again after every kind of work: a new socket, a re-check, a reload.
    for trigger in ["systemctl restart docker", "systemctl reload nonrootd"] {
        break_things(&testbed);
        testbed.sh(trigger);
        all_right(&testbed);
        common::bus::wait_for(LIMIT, || policy_of(&testbed, "socket-fixer") == DEADLINE, trigger);
    }
    recreated_and_waiting_at(&testbed, DEADLINE);
    said(
        &testbed,
        &["socket fixer: deadline scheduling (1 ms per 10 ms) while granting new sockets"],
    );

    // A thread kept off some CPUs cannot have deadline scheduling (while the kernel enforces
    // real-time bandwidth): real-time priority 1 instead where its cgroup has a real-time
    // budget, else normal priority and a warning.
    let allowed =
        testbed.sh("sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' /proc/$(systemctl show -P MainPID nonrootd)/status");
    let first_cpu: String = allowed.chars().take_while(char::is_ascii_digit).collect();
    let several_cpus = allowed.trim() != first_cpu;
    let bandwidth = testbed.sh("cat /proc/sys/kernel/sched_rt_runtime_us").trim() != "-1";
    if several_cpus && bandwidth {
        let one_cpu = format!("CPUAffinity={first_cpu}\n");
        set_drop_in(&testbed, &one_cpu);
        let real_time = "socket fixer: real-time priority 1 while granting new sockets";
        let neither = "socket fixer: new sockets are granted at normal priority until the next \
                       reload; refused: deadline scheduling (1 ms per 10 ms): Operation not \
                       permitted (os error 1), real-time priority 1: Operation not permitted";
        let expected = match said(&testbed, &[real_time, neither]) {
            0 => FIFO,
            _ => NORMAL,
        };
        recreated_and_waiting_at(&testbed, expected);
        // Kernels with CONFIG_RT_GROUP_SCHED (cgroup v1 `cpu.rt_runtime_us`) give a service's
        // cpu cgroup no real-time budget; given one, the fixer gets real-time.
        if testbed
            .try_sh("test -e /sys/fs/cgroup/cpu/cpu.rt_runtime_us")
            .status
            .success()
        {
            set_drop_in(&testbed, &format!("{one_cpu}{RT_BUDGET}"));
            said(&testbed, &[real_time]);
            recreated_and_waiting_at(&testbed, FIFO);
        }
    }

    // Turned off by the system call filter: normal priority.
    set_drop_in(&testbed, "SystemCallFilter=~sched_setattr\n");
    recreated_and_waiting_at(&testbed, NORMAL);
}

/// Waits until the running daemon (this process, not an earlier one) logged one of `lines`;
/// returns which.
fn said(testbed: &Testbed, lines: &[&str]) -> usize {
    let mut which = None;
    common::bus::wait_for(
        LIMIT,
        || {
            let log = testbed.sh("journalctl -u nonrootd _PID=$(systemctl show -P MainPID nonrootd) -o cat");
            which = lines.iter().position(|line| log.contains(line));
            which.is_some()
        },
        &format!("the daemon saying one of {lines:?}"),
    );
    which.unwrap()
}

/// A line giving the service's cpu cgroup (and its parents) a real-time budget of 10 ms per
/// second, which kernels without `CONFIG_RT_GROUP_SCHED` (Debian's, Fedora's) do not need.
const RT_BUDGET: &str = "ExecStartPre=+/bin/sh -c 'cd /sys/fs/cgroup/cpu && for g in . system.slice system.slice/nonrootd.service; do echo 10000 > $g/cpu.rt_runtime_us; done'
";

/// Docker with `userns-remap` keeps its images in `<data root>/UID.GID`: the docker duty says
/// so (refused, nothing touched) until the config names that directory, then prepares it.
#[test]
fn with_userns_remap_the_remapped_root_is_asked_for_then_prepared() {
    let testbed = Testbed::boot("userns-remap");
    // dockerd makes the dockremap user and its subordinate ids (in the testbed's /etc).
    testbed.sh(
        "mkdir -p /etc/docker && printf '{\"userns-remap\": \"default\"}\\n' > /etc/docker/daemon.json
         systemctl restart docker && docker info >/dev/null",
    );
    let remapped = testbed
        .sh("docker info --format '{{.DockerRootDir}}'")
        .trim()
        .to_string();
    assert!(
        remapped.starts_with("/var/lib/docker/") && remapped.contains('.'),
        "{remapped}"
    );
    testbed.install_built("[docker]\n", None);
    let refused = testbed.try_sh("nonrootctl apply --only docker");
    let report = common::testbed::text(&refused.stdout);
    assert_eq!(refused.status.code(), Some(1), "{report}");
    assert!(
        report.contains("refused      docker  /etc/docker/daemon.json (the data root): /etc/docker/daemon.json sets \"userns-remap\": \"default\""),
        "{report}"
    );
    testbed.sh(&format!("chmod 0700 {remapped}/image"));
    testbed.sh(&format!(
        "printf '[docker]\\ndata_root = \"{remapped}\"\\n' > /etc/nonrootd/nonrootd.toml && systemctl reload nonrootd"
    ));
    testbed.wait_until(LIMIT, &format!("test \"$(stat -c %a {remapped}/image)\" = 750"));
    let applied = testbed.sh("nonrootctl apply --only docker");
    assert!(applied.contains("0 refused, 0 failed"), "{applied}");
}
