//! Shared helpers of the `subids_*` integration tests: a temporary `etc` directory (empty, or
//! a copy of the host's `/etc` for shadow-utils), configs pointing at it, shadow-utils run in
//! a private mount namespace where that copy is `/etc`, and re-running this test binary as a
//! child process. The host's own `/etc/subuid` and `/etc/subgid` are never touched.
#![allow(dead_code)] // each test crate uses its own part

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nonrootd::subids::Settings;
use nonrootd_core::config::Config;
use tempfile::TempDir;

/// Environment variable that makes `child_main` do work in a re-run test binary.
pub const CHILD_ENV: &str = "NONROOTD_SUBIDS_CHILD";

pub struct TempEtc {
    root: TempDir,
}

impl TempEtc {
    /// An empty `etc` directory and a state directory.
    pub fn new() -> TempEtc {
        let root = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(root.path().join("etc")).expect("etc");
        TempEtc { root }
    }

    /// A copy of the host's `/etc`, for shadow-utils, with empty subuid and subgid files.
    pub fn copy_of_host() -> TempEtc {
        let root = tempfile::tempdir().expect("temp dir");
        let status = Command::new("cp")
            .arg("-a")
            .arg("/etc")
            .arg(root.path().join("etc"))
            .status()
            .expect("cp");
        assert!(status.success(), "cp -a /etc failed");
        let etc = TempEtc { root };
        etc.write("subuid", "");
        etc.write("subgid", "");
        etc
    }

    /// A copy of the host's `/etc` with `text` in both files, and settings with a short
    /// lock timeout.
    pub fn copy_of_host_with(text: &str) -> (TempEtc, Settings) {
        let etc = TempEtc::copy_of_host();
        etc.write("subuid", text);
        etc.write("subgid", text);
        let mut settings = etc.settings("");
        settings.lock_timeout = std::time::Duration::from_millis(300);
        (etc, settings)
    }

    pub fn etc(&self) -> PathBuf {
        self.root.path().join("etc")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.etc().join(name)
    }

    pub fn state(&self) -> PathBuf {
        self.root.path().join("state")
    }

    pub fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path(name), text).expect("write");
    }

    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_default()
    }

    /// A config whose `[subids]` points at this directory, plus `extra` lines in `[subids]`.
    pub fn config(&self, extra: &str) -> Config {
        config_for(&self.etc(), extra)
    }

    pub fn settings(&self, extra: &str) -> Settings {
        Settings::with_login_defs(&self.config(extra), &self.state(), &self.path("no-login.defs"))
    }

    /// Runs a shell script in a private mount namespace where this directory is `/etc`.
    pub fn shadow(&self, script: &str) -> Output {
        self.shadow_command(script).output().expect("unshare")
    }

    /// Runs `nonrootctl --config CONFIG --state-dir <state> ARGS` where this directory is `/etc`.
    pub fn nonrootctl(&self, config: &Path, args: &str) -> Output {
        self.shadow(&format!(
            "exec {} --config {} --state-dir {} {args}",
            env!("CARGO_BIN_EXE_nonrootctl"),
            config.display(),
            self.state().display()
        ))
    }

    pub fn shadow_command(&self, script: &str) -> Command {
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "sh", "-ec"])
            .arg(format!("mount --bind \"$NONROOTD_TEST_ETC\" /etc\n{script}"))
            .env("NONROOTD_TEST_ETC", self.etc());
        cmd
    }
}

/// A config for subuid and subgid files in `etc`, min 100000 and max 600100000; `extra`
/// comes in a drop-in that starts in `[subids]` and may replace those.
pub fn config_for(etc: &Path, extra: &str) -> Config {
    let main = config_text(etc);
    let sources = [
        (PathBuf::from("/test/nonrootd.toml"), main),
        (
            PathBuf::from("/test/nonrootd.d/test.toml"),
            format!("[subids]\n{extra}"),
        ),
    ];
    Config::from_sources(&sources).expect("valid test config")
}

/// The main file of [`config_for`], without a drop-in.
pub fn config_text(etc: &Path) -> String {
    format!(
        "[subids]\nsubuid_file = \"{}/subuid\"\nsubgid_file = \"{}/subgid\"\nmin = 100000\nmax = 600100000\n",
        etc.display(),
        etc.display()
    )
}

/// Asserts a command succeeded, showing its output otherwise.
pub fn assert_ok(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "status {}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// This test binary, run again for only `test_name` with `CHILD_ENV` set to `role`.
pub fn child(test_name: &str, role: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
    cmd.args(["--exact", test_name, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, role);
    cmd
}
