//! Reading and atomically replacing the subordinate id files and nonrootd's state files.
//!
//! A replacement writes `<file>+` in the same directory, fsyncs it, gives it the old file's
//! mode and owner, renames it over the file and fsyncs the directory: a crash leaves the old
//! or the new file. The old file stays as the `<file>-` backup, linked there only after the
//! rename, so that `<file>-` and `<file>` are never the same inode (shadow truncates `<file>-`
//! when it writes its own backup).

use std::fs::{self, File, Metadata, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt, fchown};
use std::path::{Path, PathBuf};

use nonrootd_core::subids::SubidFile;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::SubidsError;
use super::lock::suffixed;

/// Reads and parses a subordinate id file; a missing file is an empty one.
pub(crate) fn read(path: &Path) -> Result<(SubidFile, Option<Metadata>), SubidsError> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((SubidFile::default(), None)),
        Err(e) => return Err(SubidsError::io(path, "open", e)),
    };
    let meta = file.metadata().map_err(|e| SubidsError::io(path, "stat", e))?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.read_to_end(&mut bytes)
        .map_err(|e| SubidsError::io(path, "read", e))?;
    Ok((SubidFile::parse(bytes), Some(meta)))
}

/// Replaces `path` with `bytes`, keeping the old file's mode and owner (new files get 0644)
/// and the old file as `<path>-`. The caller fsyncs the directory with [`sync_dir`].
pub(crate) fn replace(path: &Path, bytes: &[u8], old: Option<&Metadata>) -> Result<(), SubidsError> {
    let tmp = suffixed(path, "+");
    write_new(&tmp, bytes, old, true)?;
    let result = swap_in(path, &tmp, old.is_some());
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Writes a fresh `tmp` with the contents, mode and owner wanted, and fsyncs it if `sync`.
fn write_new(tmp: &Path, bytes: &[u8], old: Option<&Metadata>, sync: bool) -> Result<(), SubidsError> {
    match fs::remove_file(tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(SubidsError::io(tmp, "remove", e)),
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(tmp)
        .map_err(|e| SubidsError::io(tmp, "create", e))?;
    let result = (|| {
        file.write_all(bytes)?;
        match old {
            Some(meta) => {
                fchown(&file, Some(meta.uid()), Some(meta.gid()))?;
                file.set_permissions(Permissions::from_mode(meta.mode() & 0o7777))?;
            }
            None => file.set_permissions(Permissions::from_mode(0o644))?,
        }
        if sync { file.sync_all() } else { Ok(()) }
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(tmp);
        return Err(SubidsError::io(tmp, "write", e));
    }
    Ok(())
}

/// Renames `tmp` over `path`, keeps the old file as `<path>-`, fsyncs the directory.
fn swap_in(path: &Path, tmp: &Path, has_old: bool) -> Result<(), SubidsError> {
    let backup_link = suffixed(path, ".nonrootd-old");
    if has_old {
        match fs::remove_file(&backup_link) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(SubidsError::io(&backup_link, "remove", e)),
        }
        fs::hard_link(path, &backup_link).map_err(|e| SubidsError::io(&backup_link, "create", e))?;
    }
    fs::rename(tmp, path).map_err(|e| SubidsError::io(path, "replace", e))?;
    if has_old {
        let backup = suffixed(path, "-");
        fs::rename(&backup_link, &backup).map_err(|e| SubidsError::io(&backup, "replace", e))?;
    }
    Ok(())
}

/// Fsyncs the directory of `path`, making renames in it durable.
pub(crate) fn sync_dir(path: &Path) -> Result<(), SubidsError> {
    let dir = parent(path);
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| SubidsError::io(&dir, "sync", e))
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Reads a JSON state file; a missing one is the default.
pub(crate) fn read_state<T: DeserializeOwned + Default>(path: &Path) -> Result<T, SubidsError> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| SubidsError::State {
            path: path.to_path_buf(),
            message: e.to_string(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(SubidsError::io(path, "read", e)),
    }
}

/// Writes a JSON state file atomically, creating its directory if needed. Only a `durable`
/// write is fsynced: the others record facts that are merely informative.
pub(crate) fn write_state<T: Serialize>(path: &Path, value: &T, durable: bool) -> Result<(), SubidsError> {
    let dir = parent(path);
    fs::create_dir_all(&dir).map_err(|e| SubidsError::io(&dir, "create", e))?;
    let mut bytes = serde_json::to_vec(value).expect("state serializes");
    bytes.push(b'\n');
    let tmp = suffixed(path, ".tmp");
    write_new(&tmp, &bytes, None, durable)?;
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(SubidsError::io(path, "replace", e));
    }
    if durable { sync_dir(path) } else { Ok(()) }
}
