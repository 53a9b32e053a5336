//! Reading and atomically replacing the subordinate id files and nonrootd's state files.
//!
//! A replacement writes `<file>+` in the same directory, fsyncs it, gives it the old file's
//! mode and owner, renames it over the file and fsyncs the directory: a crash leaves the old
//! or the new file. The old file stays as the `<file>-` backup, linked there only after the
//! rename, so that `<file>-` and `<file>` are never the same inode (shadow truncates `<file>-`
//! when it writes its own backup). The backup before it is removed first, on the writer's
//! thread, where freeing its blocks overlaps the other file's write. So a failed write leaves
//! no `<file>-` (shadow, which truncates `<file>-` and copies the file into it before writing,
//! leaves a copy of the file); the file itself is untouched either way.

use std::fs::{self, File, Metadata, OpenOptions, Permissions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt, fchown};
use std::path::{Path, PathBuf};

use nonrootd_core::plan::FileKind;
use nonrootd_core::subids::{MAX_FILE_BYTES, SubidFile, TooLarge, names_clash, size_allowed};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::SubidsError;
use super::lock::suffixed;

/// Reads and parses a subordinate id file; a missing file is an empty one.
pub(crate) fn read(path: &Path) -> Result<(SubidFile, Option<Metadata>), SubidsError> {
    let Some((file, meta)) = open(path)? else {
        return Ok((SubidFile::default(), None));
    };
    let too_large = |error| SubidsError::TooLarge {
        path: path.to_path_buf(),
        error,
        growing: false,
    };
    size_allowed(meta.len()).map_err(too_large)?;
    // Room for the lines an allocation appends, so that they don't move the buffer.
    let mut bytes = Vec::with_capacity(meta.len() as usize + APPEND_ROOM);
    (&file)
        .take(MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| SubidsError::io(path, "read", e))?;
    match SubidFile::parse(bytes) {
        Ok(parsed) => Ok((parsed, Some(meta))),
        // It grew while being read: name the size it has now.
        Err(error) => Err(too_large(
            file.metadata().map_or(error, |m| TooLarge { bytes: m.len() }),
        )),
    }
}

/// Opens a subordinate id file to read; `None` when there is none. Refused: a symlink (shadow's
/// tools open it with `O_NOFOLLOW` too, and a replacement would turn the link into a file), a
/// file that is not regular (a FIFO would block) and, when run as root, one that root does not
/// own.
fn open(path: &Path) -> Result<Option<(File, Metadata)>, SubidsError> {
    let refused = |why: String| SubidsError::io(path, "use", io::Error::other(format!("{why}: refusing it")));
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(refused("is a symlink (shadow's tools refuse one too)".into()));
        }
        Err(e) => return Err(SubidsError::io(path, "open", e)),
    };
    let meta = file.metadata().map_err(|e| SubidsError::io(path, "stat", e))?;
    let kind = FileKind::from_st_mode(meta.mode());
    if kind != FileKind::Regular {
        return Err(refused(format!("is {kind}, not a regular file")));
    }
    if meta.uid() != 0 && nix::unistd::geteuid().is_root() {
        return Err(refused(format!("is owned by uid {}, not root", meta.uid())));
    }
    Ok(Some((file, meta)))
}

/// Bytes kept free after a file read: a batch of 100 tenants' lines.
const APPEND_ROOM: usize = 4096;

/// Whether `a` and `b` clash: one inode, or names in one directory that replacing either
/// file would mix up ([`names_clash`]); the files may not exist yet.
pub(crate) fn clash(a: &Path, b: &Path) -> Result<bool, SubidsError> {
    let identity = |path: &Path| match fs::metadata(path) {
        Ok(m) => Ok(Some((m.dev(), m.ino()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(SubidsError::io(path, "stat", e)),
    };
    if let (Some(a), Some(b)) = (identity(a)?, identity(b)?)
        && a == b
    {
        return Ok(true);
    }
    let name = |path: &Path| path.file_name().unwrap_or_default().as_encoded_bytes().to_vec();
    if !names_clash(&name(a), &name(b)) {
        return Ok(false);
    }
    let (a_dir, b_dir) = (identity(&parent(a))?, identity(&parent(b))?);
    Ok(a_dir.is_some() && a_dir == b_dir)
}

/// A file to replace: its path, its new contents and the old file's metadata, if any.
pub(crate) type Replacement<'a> = (&'a Path, &'a [u8], Option<&'a Metadata>);

/// Replaces each `path` with its `bytes`, keeping the old file's mode and owner (new files get
/// 0644) and the old file as `<path>-`. Every `<path>+` is written and flushed first, each on
/// its own thread so that the flushes overlap; only when all are written are they renamed in,
/// so a failed write replaces nothing. A failed rename, not expected in a directory of root's,
/// leaves the files before it replaced: their directories are synced here (best effort) and
/// the error is [`SubidsError::PartlyReplaced`], naming them. The paths must name different
/// files. After a success the caller fsyncs the directories with [`sync_dir`].
pub(crate) fn replace_all(files: &[Replacement<'_>]) -> Result<(), SubidsError> {
    let tmps: Vec<PathBuf> = files.iter().map(|(path, ..)| suffixed(path, "+")).collect();
    let written: Vec<Result<(), SubidsError>> = std::thread::scope(|scope| {
        let mut writes = files.iter().zip(&tmps);
        let first = writes.next();
        let others: Vec<_> = writes
            .map(|(file, tmp)| {
                std::thread::Builder::new()
                    .spawn_scoped(scope, move || write_new(file, tmp))
                    // No thread to be had (a tasks limit): written here, after the first.
                    .map_err(|_| (file, tmp))
            })
            .collect();
        first
            .map(|(file, tmp)| write_new(file, tmp))
            .into_iter()
            .chain(others.into_iter().map(|other| match other {
                Ok(thread) => thread.join().expect("writer thread panicked"),
                Err((file, tmp)) => write_new(file, tmp),
            }))
            .collect()
    });
    let remove_tmps = |from: usize| {
        for tmp in &tmps[from..] {
            let _ = fs::remove_file(tmp);
        }
    };
    if let Some(error) = written.into_iter().find_map(Result::err) {
        remove_tmps(0);
        return Err(error);
    }
    let mut replaced = Vec::new();
    for (i, ((path, _, old), tmp)) in files.iter().zip(&tmps).enumerate() {
        if let Err((error, this_one)) = swap_in(path, tmp, old.is_some()) {
            remove_tmps(i + usize::from(this_one));
            replaced.extend(this_one.then(|| path.to_path_buf()));
            if replaced.is_empty() {
                return Err(error);
            }
            for path in &replaced {
                let _ = sync_dir(path);
            }
            return Err(SubidsError::PartlyReplaced {
                replaced,
                error: Box::new(error),
            });
        }
        replaced.push(path.to_path_buf());
    }
    Ok(())
}

/// Removes the backup of a file that exists, then writes a fresh `tmp` with the contents, mode
/// and owner wanted, and fsyncs it.
fn write_new(&(path, bytes, old): &Replacement<'_>, tmp: &Path) -> Result<(), SubidsError> {
    if old.is_some() {
        remove_if_present(&suffixed(path, "-"))?;
    }
    remove_if_present(tmp)?;
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
                // As shadow does: no set-id, sticky or execute bits, and no write for others.
                file.set_permissions(Permissions::from_mode(meta.mode() & 0o664))?;
            }
            None => file.set_permissions(Permissions::from_mode(0o644))?,
        }
        file.sync_all()
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(tmp);
        return Err(SubidsError::io(tmp, "write", e));
    }
    Ok(())
}

/// Renames `tmp` over `path` and keeps the old file as `<path>-`; an error says whether
/// `path` was replaced all the same (only its backup failed).
fn swap_in(path: &Path, tmp: &Path, has_old: bool) -> Result<(), (SubidsError, bool)> {
    let backup_link = suffixed(path, ".nonrootd-old");
    if has_old {
        remove_if_present(&backup_link).map_err(|e| (e, false))?;
        fs::hard_link(path, &backup_link).map_err(|e| (SubidsError::io(&backup_link, "create", e), false))?;
    }
    fs::rename(tmp, path).map_err(|e| (SubidsError::io(path, "replace", e), false))?;
    if has_old {
        let backup = suffixed(path, "-");
        fs::rename(&backup_link, &backup).map_err(|e| (SubidsError::io(&backup, "replace", e), true))?;
    }
    Ok(())
}

fn remove_if_present(path: &Path) -> Result<(), SubidsError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(SubidsError::io(path, "remove", e)),
    }
}

/// Fsyncs the directory of `path`, making renames in it durable.
pub(crate) fn sync_dir(path: &Path) -> Result<(), SubidsError> {
    let dir = parent(path);
    File::open(&dir).and_then(|d| d.sync_all()).map_err(|e| {
        SubidsError::io(
            &dir,
            "sync it (the files in it were replaced; a crash may undo that)",
            e,
        )
    })
}

pub(crate) fn parent(path: &Path) -> PathBuf {
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

/// Writes a JSON state file atomically and durably, creating its directory if needed.
pub(crate) fn write_state<T: Serialize>(path: &Path, value: &T) -> Result<(), SubidsError> {
    let mut bytes = serde_json::to_vec(value).expect("state serializes");
    bytes.push(b'\n');
    write_state_bytes(path, &bytes, true)
}

/// [`crate::state::write_atomically`], creating the directory first.
fn write_state_bytes(path: &Path, bytes: &[u8], durable: bool) -> Result<(), SubidsError> {
    let dir = parent(path);
    crate::state::ensure_dir(&dir).map_err(|e| SubidsError::io(&dir, "create", e))?;
    crate::state::write_atomically(path, bytes, durable)
        .map(drop)
        .map_err(|e| SubidsError::io(path, "replace", e))
}

/// Reads a state file of JSON lines; a missing file is empty. A last line without its newline
/// (an append cut short by a crash) is not read.
pub(crate) fn read_lines<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>, SubidsError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(SubidsError::io(path, "read", e)),
    };
    complete_lines(&bytes)
        .split(|b| *b == b'\n')
        .enumerate()
        .filter(|(_, line)| !line.is_empty())
        .map(|(index, line)| {
            serde_json::from_slice(line).map_err(|e| SubidsError::State {
                path: path.to_path_buf(),
                message: format!("line {}: {e}", index + 1),
            })
        })
        .collect()
}

/// Appends `values` as JSON lines with one `write`, first cutting off a last line that an
/// earlier append left without its newline; one that fails is cut back off. Not fsynced (see
/// [`write_lines`]). Returns the length before the append, for [`cut_back`].
pub(crate) fn append_lines<T: Serialize>(path: &Path, values: &[T]) -> Result<u64, SubidsError> {
    let dir = parent(path);
    crate::state::ensure_dir(&dir).map_err(|e| SubidsError::io(&dir, "create", e))?;
    let bytes = json_lines(values);
    let append = || -> io::Result<u64> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)?;
        let mut len = file.metadata()?.len();
        if len > 0 {
            let tail_start = len.saturating_sub(TAIL);
            let mut tail = Vec::new();
            file.seek(SeekFrom::Start(tail_start))?;
            Read::by_ref(&mut file).take(TAIL).read_to_end(&mut tail)?;
            if tail.last() != Some(&b'\n') {
                let keep = tail.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
                len = tail_start + keep as u64;
                file.set_len(len)?;
            }
        }
        // Lines written before a failure (a full disk, a file size limit) name ranges that
        // no file got: cut back off.
        file.write_all(&bytes).map(|()| len).inspect_err(|_| {
            let _ = file.set_len(len);
        })
    };
    append().map_err(|e| SubidsError::io(path, "append", e))
}

/// Cuts what an [`append_lines`] added back off, as far as that can be done: for lines that
/// name ranges no file got.
pub(crate) fn cut_back(path: &Path, len: u64) {
    let file = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path);
    let _ = file.and_then(|f| f.set_len(len));
}

/// Replaces a state file of JSON lines atomically. Not flushed: it records facts that are
/// merely informative.
pub(crate) fn write_lines<T: Serialize>(path: &Path, values: &[T]) -> Result<(), SubidsError> {
    write_state_bytes(path, &json_lines(values), false)
}

fn json_lines<T: Serialize>(values: &[T]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for value in values {
        serde_json::to_writer(&mut bytes, value).expect("state serializes");
        bytes.push(b'\n');
    }
    bytes
}

/// How far back a line cut short by a crash is looked for: longer than any line written.
const TAIL: u64 = 4096;

/// The bytes up to and including the last newline.
fn complete_lines(bytes: &[u8]) -> &[u8] {
    bytes.iter().rposition(|b| *b == b'\n').map_or(&[], |i| &bytes[..=i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacements_are_renamed_in_only_when_all_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("subuid"), dir.path().join("subgid"));
        fs::write(&a, "old a\n").unwrap();
        fs::write(&b, "old b\n").unwrap();
        fs::write(dir.path().join("subuid-"), "older a\n").unwrap();
        let (meta_a, meta_b) = (fs::metadata(&a).unwrap(), fs::metadata(&b).unwrap());
        // `subgid+` cannot be made: nothing is replaced, and no temp file is left.
        fs::create_dir_all(dir.path().join("subgid+/in-the-way")).unwrap();
        let err = replace_all(&[(&a, b"new a\n", Some(&meta_a)), (&b, b"new b\n", Some(&meta_b))]).unwrap_err();
        assert!(err.to_string().contains("subgid+"), "{err}");
        assert_eq!(fs::read_to_string(&a).unwrap(), "old a\n");
        assert!(!dir.path().join("subuid+").exists());
        fs::remove_dir_all(dir.path().join("subgid+")).unwrap();

        replace_all(&[(&a, b"new a\n", Some(&meta_a)), (&b, b"new b\n", Some(&meta_b))]).unwrap();
        assert_eq!(fs::read_to_string(&a).unwrap(), "new a\n");
        assert_eq!(fs::read_to_string(&b).unwrap(), "new b\n");
        assert_eq!(fs::read_to_string(dir.path().join("subuid-")).unwrap(), "old a\n");
        assert_eq!(fs::read_to_string(dir.path().join("subgid-")).unwrap(), "old b\n");
    }

    #[test]
    fn a_rename_that_fails_after_another_file_was_replaced_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("subuid"), dir.path().join("subgid"));
        fs::write(&a, "old a\n").unwrap();
        let meta = fs::metadata(&a).unwrap();
        // `subgid` is a directory by the time it is renamed over: its backup link fails.
        fs::create_dir(&b).unwrap();
        let err = replace_all(&[(&a, b"new a\n", Some(&meta)), (&b, b"new b\n", Some(&meta))]).unwrap_err();
        match &err {
            SubidsError::PartlyReplaced { replaced, .. } => assert_eq!(replaced, std::slice::from_ref(&a)),
            other => panic!("{other:?}"),
        }
        assert!(
            err.to_string()
                .ends_with(&format!("; already replaced: {}", a.display())),
            "{err}"
        );
        assert_eq!(fs::read_to_string(&a).unwrap(), "new a\n");
        assert!(!dir.path().join("subgid+").exists(), "its temp file is removed");
    }

    #[test]
    fn json_lines_survive_an_append_cut_short() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/managed.jsonl");
        assert!(read_lines::<u32>(&path).unwrap().is_empty());
        append_lines(&path, &[1u32, 2]).unwrap();
        append_lines(&path, &[3u32]).unwrap();
        assert_eq!(read_lines::<u32>(&path).unwrap(), [1, 2, 3]);
        // A crash in the middle of an append leaves a line without its newline.
        fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"4")
            .unwrap();
        assert_eq!(read_lines::<u32>(&path).unwrap(), [1, 2, 3]);
        append_lines(&path, &[5u32]).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "1\n2\n3\n5\n");
        write_lines(&path, &[7u32]).unwrap();
        assert_eq!(read_lines::<u32>(&path).unwrap(), [7]);
    }

    #[test]
    fn a_bad_json_line_is_an_error_naming_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("managed.jsonl");
        fs::write(&path, "1\nx\n3\n").unwrap();
        let err = read_lines::<u32>(&path).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{}: line 2: ", path.display())), "{err}");
    }
}
