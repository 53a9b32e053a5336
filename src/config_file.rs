//! Reads the main config file and its drop-ins, refusing files that someone other than root
//! could have written.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nonrootd_core::config::{Config, ConfigError, Origin};
use nonrootd_core::plan::FileKind;

use crate::host::OpenError;
use crate::host::walk::{check_existing_root_only_dir, check_root_only_dir, open_directory_beneath_root};

/// Where the daemon and the CLI look when `--config` is not given.
pub const DEFAULT_CONFIG: &str = "/etc/nonrootd/nonrootd.toml";
/// The drop-in directory, beside the main file.
pub const DROP_IN_DIR: &str = "nonrootd.d";

fn file_error(path: &Path, message: impl Into<String>) -> ConfigError {
    ConfigError {
        origin: Origin {
            file: Arc::from(path),
            line: 0,
        },
        key: String::new(),
        message: message.into(),
    }
}

/// Reads one file without following a symlink, and only if root owns it and nobody else may
/// write it.
fn read_trusted(path: &Path) -> Result<String, ConfigError> {
    // O_NONBLOCK: a FIFO is opened without waiting for a writer, then refused.
    let mut file = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => file_error(path, "is a symbolic link: refusing to trust it"),
            _ => file_error(path, format!("cannot open: {e}")),
        })?;
    let meta = file
        .metadata()
        .map_err(|e| file_error(path, format!("cannot stat: {e}")))?;
    let kind = FileKind::from_st_mode(meta.mode());
    if kind != FileKind::Regular {
        return Err(file_error(path, format!("is {kind}, not a regular file")));
    }
    if meta.uid() != 0 {
        return Err(file_error(
            path,
            format!("is owned by uid {}, not root: refusing to trust it", meta.uid()),
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(file_error(
            path,
            format!(
                "mode {:04o} lets others than root write it: refusing to trust it",
                meta.mode() & 0o7777
            ),
        ));
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| file_error(path, format!("cannot read: {e}")))?;
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let mut error = file_error(path, "not UTF-8 text, which TOML must be");
        error.origin.line = 1 + valid.iter().filter(|b| **b == b'\n').count();
        error
    })
}

/// The directory of `main`.
fn main_dir(main: &Path) -> &Path {
    match main.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        Some(_) => Path::new("."),
        None => Path::new("/"),
    }
}

/// When run as root, refuses directories others could change the config in: the main file's
/// must be on a path of root's directories that others cannot write (sticky ones aside, like
/// the files' own check), and the drop-in directory must be root's alone, or anyone could add
/// or remove drop-ins.
fn check_dirs(main: &Path) -> Result<(), ConfigError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let dir = main_dir(main);
    let absolute = std::path::absolute(dir).map_err(|e| file_error(dir, e.to_string()))?;
    match open_directory_beneath_root(&absolute) {
        Ok(_) | Err(OpenError::Missing) => {}
        Err(OpenError::Refused(why)) => return Err(file_error(main, format!("{why}: refusing to trust it"))),
        Err(OpenError::Io(e)) => return Err(file_error(dir, format!("cannot open: {e}"))),
    }
    let drop_ins = dir.join(DROP_IN_DIR);
    check_root_only_dir(&drop_ins).map_err(|e| file_error(&drop_ins, e.to_string()))
}

/// The drop-ins of `main`: `nonrootd.d/*.toml` beside it, in lexical order; hidden files (an
/// editor's lock or temp file) are not drop-ins.
pub fn drop_ins(main: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let dir = main_dir(main).join(DROP_IN_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(file_error(&dir, format!("cannot list drop-ins: {e}"))),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| file_error(&dir, format!("cannot list drop-ins: {e}")))?;
        let path = entry.path();
        let hidden = entry.file_name().as_encoded_bytes().starts_with(b".");
        if !hidden && path.extension().is_some_and(|ext| ext == "toml") {
            files.push(path);
        }
    }
    // check_dirs passed a missing directory; someone else may have made it since (beside a
    // main file in a sticky directory such as /tmp). Root's alone now, it was when listed:
    // nobody else can make one in its place.
    check_existing_root_only_dir(&dir).map_err(|e| file_error(&dir, e.to_string()))?;
    files.sort();
    Ok(files)
}

/// Loads, merges and validates the main file and its drop-ins. Every problem is returned,
/// each naming its file (and line where there is one).
pub fn load(main: &Path) -> Result<Config, Vec<ConfigError>> {
    check_dirs(main).map_err(|e| vec![e])?;
    let mut paths = vec![main.to_path_buf()];
    paths.extend(drop_ins(main).map_err(|e| vec![e])?);
    let mut sources = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        match read_trusted(&path) {
            Ok(text) => sources.push((path, text)),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Config::from_sources(&sources)
}
