//! The record of what nonrootd granted, kept in the state directory so that grants for ids
//! that are no longer configured can be revoked, and nothing else is.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{self, File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nonrootd_core::acl::{Grants, Qualifier};
use serde::{Deserialize, Serialize};

/// Where state lives when neither `--state-dir` nor `$STATE_DIRECTORY` says otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/nonrootd";
const GRANTS_FILE: &str = "grants.json";

/// The state directory: `$STATE_DIRECTORY` (set by systemd's `StateDirectory=`), else the default.
pub fn default_state_dir() -> PathBuf {
    state_dir_from(std::env::var_os("STATE_DIRECTORY"))
}

/// An empty `$STATE_DIRECTORY` counts as unset: it would put the state in the current directory.
fn state_dir_from(variable: Option<OsString>) -> PathBuf {
    variable
        .filter(|dir| !dir.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_STATE_DIR), PathBuf::from)
}

/// Made by the package's removal scripts before they revoke, removed when it is installed
/// again: while it exists no apply grants a socket (revoking still works).
const REMOVAL_MARK: &str = "removing";

/// The removal mark in `state_dir`, when there is one; an error when that cannot be told
/// (then no socket may be granted, and none revoked on a guess).
pub fn removal_mark(state_dir: &Path) -> io::Result<Option<PathBuf>> {
    let mark = state_dir.join(REMOVAL_MARK);
    match fs::symlink_metadata(&mark) {
        Ok(_) => Ok(Some(mark)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(naming(&mark)(e)),
    }
}

/// ACL entries granted per socket path.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantRecord {
    pub sockets: BTreeMap<PathBuf, Grants>,
    /// The last answer for each configured name ("user:alice" → "user:1001"): what a name
    /// whose lookup fails is granted as, until the lookup works again.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub names: BTreeMap<String, Qualifier>,
}

/// Identifies one version of `grants.json`: a save renames a new inode into place and
/// nothing writes the file in place, so a record read earlier is still true while the stamp is
/// unchanged, as long as that version is held open ([`HeldRecord`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordStamp {
    dev: u64,
    ino: u64,
    size: u64,
    /// Seconds and nanoseconds: a product would overflow for a far-off time.
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl RecordStamp {
    /// The stamp of the record in `state_dir` now; `None` when there is none.
    pub fn of(state_dir: &Path) -> io::Result<Option<RecordStamp>> {
        match fs::symlink_metadata(state_dir.join(GRANTS_FILE)) {
            Ok(m) => Ok(Some(RecordStamp::from_metadata(&m))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn from_metadata(m: &Metadata) -> RecordStamp {
        RecordStamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

/// One version of `grants.json`, kept open: while it is, its inode cannot be freed and given
/// to a later save, so an equal stamp (timestamps are coarse) means this very file.
pub struct HeldRecord {
    pub stamp: RecordStamp,
    _file: File,
}

impl HeldRecord {
    /// Opens the record in `state_dir` now; `None` when there is none.
    fn open(state_dir: &Path) -> io::Result<Option<HeldRecord>> {
        let path = state_dir.join(GRANTS_FILE);
        // O_NONBLOCK: a FIFO there must not keep the apply (and the lock) waiting forever.
        let file = match File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(&path)
        {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(naming(&path)(e)),
        };
        let metadata = file.metadata().map_err(naming(&path))?;
        if !metadata.is_file() {
            return Err(naming(&path)(io::Error::new(
                io::ErrorKind::InvalidData,
                "is not a regular file; it should hold the ACL entries nonrootd granted",
            )));
        }
        HeldRecord::of(file, &path).map(Some)
    }

    fn of(file: File, path: &Path) -> io::Result<HeldRecord> {
        let stamp = RecordStamp::from_metadata(&file.metadata().map_err(naming(path))?);
        Ok(HeldRecord { stamp, _file: file })
    }
}

/// Creates the state directory (mode 0700) if it does not exist, flushing each new entry in
/// its parent (a record whose directory a power loss takes away could never be revoked from),
/// then checks the directory there ([`check_existing_root_only_dir`]): the caller's check
/// passed a missing directory, which someone else may have made since (below a sticky
/// directory such as /tmp).
pub fn ensure_dir(dir: &Path) -> io::Result<()> {
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|d| fs::symlink_metadata(d).is_err())
        .collect();
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    for made in missing {
        if let Some(parent) = made.parent().filter(|p| !p.as_os_str().is_empty()) {
            File::open(parent).and_then(|d| d.sync_all()).map_err(naming(parent))?;
        }
    }
    crate::host::walk::check_existing_root_only_dir(dir)
}

impl GrantRecord {
    /// Reads the record; a missing file is an empty record.
    pub fn load(state_dir: &Path) -> io::Result<GrantRecord> {
        Ok(GrantRecord::load_held(state_dir)?.0)
    }

    /// Reads the record and keeps the version read open; a missing file is an empty record.
    pub fn load_held(state_dir: &Path) -> io::Result<(GrantRecord, Option<HeldRecord>)> {
        let path = state_dir.join(GRANTS_FILE);
        let Some(held) = HeldRecord::open(state_dir)? else {
            return Ok((GrantRecord::default(), None));
        };
        let mut bytes = Vec::new();
        (&held._file).read_to_end(&mut bytes).map_err(naming(&path))?;
        let record = serde_json::from_slice(&bytes).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} is corrupt ({e}); it records the ACL entries nonrootd granted: repair it, or remove those entries (setfacl -x) before the file (removed alone, its entries count as someone else's and are never revoked)",
                    path.display()
                ),
            )
        })?;
        Ok((record, Some(held)))
    }

    /// Writes the record atomically: a temp file, fsync, rename, fsync of the directory. The
    /// version written is returned held open.
    pub fn save(&self, state_dir: &Path) -> io::Result<HeldRecord> {
        let bytes = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        let path = state_dir.join(GRANTS_FILE);
        HeldRecord::of(write_atomically(&path, &bytes, true)?, &path)
    }
}

/// Puts `path` in front of an error's message.
fn naming(path: &Path) -> impl Fn(io::Error) -> io::Error + '_ {
    move |e| io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Replaces `path` with `bytes` (a new file of mode 0600) so that a crash leaves either the
/// old or the new content; only a `durable` replacement is flushed, file and directory, to
/// outlast a power loss. The caller holds the lock that serializes writers of `path`; errors
/// name the file involved. Returns the file written, open.
pub fn write_atomically(path: &Path, bytes: &[u8], durable: bool) -> io::Result<File> {
    let dir = match path.parent() {
        Some(parent) if parent.as_os_str().is_empty() => Path::new("."),
        Some(parent) => parent,
        None => Path::new("/"),
    };
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    // A temp file of this name is a crashed process's leftover: no live process has our pid.
    if let Err(e) = fs::remove_file(&tmp)
        && e.kind() != io::ErrorKind::NotFound
    {
        return Err(naming(&tmp)(e));
    }
    let result = (|| {
        let mut file = File::options()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
            .map_err(naming(&tmp))?;
        file.write_all(bytes).map_err(naming(&tmp))?;
        if durable {
            file.sync_all().map_err(naming(&tmp))?;
        }
        fs::rename(&tmp, path).map_err(|e| {
            let message = format!("renaming {} to {}: {e}", tmp.display(), path.display());
            io::Error::new(e.kind(), message)
        })?;
        if durable {
            File::open(dir).and_then(|d| d.sync_all()).map_err(naming(dir))?;
        }
        Ok(file)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use nonrootd_core::acl::{Perm, Qualifier};
    use nonrootd_core::ids::Uid;

    /// A mark that cannot be looked up is an error, not "no mark" (which would grant).
    #[test]
    fn a_removal_mark_that_cannot_be_looked_up_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(removal_mark(dir.path()).unwrap(), None);
        std::fs::write(dir.path().join(REMOVAL_MARK), "").unwrap();
        assert_eq!(removal_mark(dir.path()).unwrap(), Some(dir.path().join(REMOVAL_MARK)));
        let not_a_dir = dir.path().join(REMOVAL_MARK);
        let error = removal_mark(&not_a_dir).unwrap_err().to_string();
        assert!(
            error.starts_with(&format!("{}/removing: ", not_a_dir.display())),
            "{error}"
        );
    }

    /// A record written before it kept names' answers still loads.
    #[test]
    fn a_record_without_names_loads() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(GRANTS_FILE),
            r#"{"sockets": {"/run/docker.sock": {"user:4321": "rw-"}}}"#,
        )
        .unwrap();
        let record = GrantRecord::load(dir.path()).unwrap();
        assert_eq!(record.sockets.len(), 1);
        assert!(record.names.is_empty());
    }

    /// An mtime past 2262 (nanoseconds past i64) still gives a stamp.
    #[test]
    fn a_record_from_a_far_off_time_has_a_stamp() {
        let dir = tempfile::tempdir().unwrap();
        GrantRecord::default().save(dir.path()).unwrap();
        let far = nix::sys::time::TimeSpec::new(i64::MAX / 1000, 0);
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            &dir.path().join(GRANTS_FILE),
            &far,
            &far,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
        assert!(RecordStamp::of(dir.path()).unwrap().is_some());
        GrantRecord::load(dir.path()).unwrap();
    }

    /// A FIFO (or anything but a file) at grants.json is an error naming it, at once: opening
    /// it for reading would wait for a writer, with the apply lock held.
    #[test]
    fn a_record_that_is_not_a_regular_file_is_refused_without_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(GRANTS_FILE);
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let error = GrantRecord::load(dir.path()).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "{}: is not a regular file; it should hold the ACL entries nonrootd granted",
                path.display()
            )
        );
    }

    #[test]
    fn record_round_trips_and_a_missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(GrantRecord::load(dir.path()).unwrap(), GrantRecord::default());
        let mut record = GrantRecord::default();
        record
            .sockets
            .entry(PathBuf::from("/run/docker.sock"))
            .or_default()
            .insert(Qualifier::User(Uid(4321)), Perm::RW);
        record.save(dir.path()).unwrap();
        let text = fs::read_to_string(dir.path().join(GRANTS_FILE)).unwrap();
        assert!(text.contains("\"user:4321\": \"rw-\""), "{text}");
        assert_eq!(GrantRecord::load(dir.path()).unwrap(), record);
    }

    #[test]
    fn a_held_record_keeps_its_inode_from_later_saves() {
        // On disk: ext4 gives a freed inode number to the next file made, tmpfs never (there
        // the test passes without proving anything).
        let dir = tempfile::tempdir_in("/var/tmp")
            .or_else(|_| tempfile::tempdir())
            .unwrap();
        for _ in 0..3 {
            GrantRecord::default().save(dir.path()).unwrap();
        }
        let (_, held) = GrantRecord::load_held(dir.path()).unwrap();
        let held = held.unwrap();
        for _ in 0..4 {
            GrantRecord::default().save(dir.path()).unwrap();
            let now = RecordStamp::of(dir.path()).unwrap().unwrap();
            assert_ne!(now.ino, held.stamp.ino, "a save was given the inode of the record held");
        }
    }

    #[test]
    fn an_empty_state_directory_variable_counts_as_unset() {
        assert_eq!(state_dir_from(None), Path::new(DEFAULT_STATE_DIR));
        assert_eq!(state_dir_from(Some("".into())), Path::new(DEFAULT_STATE_DIR));
        assert_eq!(
            state_dir_from(Some("/var/lib/nonrootd-test".into())),
            Path::new("/var/lib/nonrootd-test")
        );
    }

    #[test]
    fn a_crashed_writers_temp_file_with_our_pid_does_not_block_saving() {
        let dir = tempfile::tempdir().unwrap();
        let leftover = dir.path().join(format!("grants.tmp.{}", std::process::id()));
        fs::write(&leftover, "half a record").unwrap();
        GrantRecord::default().save(dir.path()).unwrap();
        assert_eq!(GrantRecord::load(dir.path()).unwrap(), GrantRecord::default());
        assert!(!leftover.exists());
    }

    #[test]
    fn write_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-dir/grants.json");
        let err = write_atomically(&missing, b"{}", true).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        let tmp = missing.with_extension(format!("tmp.{}", std::process::id()));
        assert!(err.to_string().starts_with(&format!("{}: ", tmp.display())), "{err}");
    }

    #[test]
    fn a_corrupt_record_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(GRANTS_FILE), "{").unwrap();
        let err = GrantRecord::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("grants.json is corrupt"), "{err}");
    }
}
