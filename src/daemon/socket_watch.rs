//! inotify on the parent directory of each configured socket (not on the socket itself, which
//! is replaced when Docker recreates it): a create, move or attribute change of a socket's name
//! is a cue to re-apply that socket; a queue overflow re-applies all of them. A delete is not
//! watched: there is nothing to fix until the next create, and an apply for it would only keep
//! the loop busy when systemd binds the new socket an instant later.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};
use tokio::io::unix::AsyncFd;
use tracing::{debug, warn};

/// What a batch of inotify events asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Cue {
    /// These sockets' names were touched.
    Sockets(BTreeSet<PathBuf>),
    /// Events were lost (queue overflow): re-check every socket.
    All,
}

/// Watches the parent directories of the configured sockets.
pub struct SocketWatch {
    inotify: AsyncFd<Inotify>,
    sockets: Vec<PathBuf>,
    /// Directory watched by each descriptor (several configured spellings can share one).
    dirs: HashMap<WatchDescriptor, Vec<PathBuf>>,
    /// Directories that did not exist when last tried.
    unwatched: BTreeSet<PathBuf>,
    buffer: Vec<u8>,
}

const MASK: WatchMask = WatchMask::CREATE
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::ATTRIB)
    .union(WatchMask::DELETE_SELF)
    .union(WatchMask::MOVE_SELF)
    .union(WatchMask::ONLYDIR);

impl SocketWatch {
    pub fn new(sockets: &[PathBuf]) -> io::Result<SocketWatch> {
        // SAFETY: `Inotify` owns its descriptor and returns the same one from `as_raw_fd` until
        // it is dropped, which happens only together with the `AsyncFd`.
        let inotify = unsafe { AsyncFd::register(Inotify::init()?) }?;
        let mut watch = SocketWatch {
            inotify,
            sockets: sockets.to_vec(),
            dirs: HashMap::new(),
            unwatched: sockets
                .iter()
                .filter_map(|s| s.parent())
                .map(Path::to_path_buf)
                .collect(),
            buffer: vec![0; 16 * 1024],
        };
        watch.watch_missing();
        Ok(watch)
    }

    /// Tries again to watch directories that did not exist; returns true when one appeared.
    pub fn watch_missing(&mut self) -> bool {
        let mut added = false;
        let pending = std::mem::take(&mut self.unwatched);
        for dir in pending {
            match self.inotify.get_mut().watches().add(&dir, MASK) {
                Ok(wd) => {
                    debug!(dir = %dir.display(), "watching socket directory");
                    self.dirs.entry(wd).or_default().push(dir);
                    added = true;
                }
                Err(e) => {
                    warn!(dir = %dir.display(), "cannot watch socket directory yet: {e}");
                    self.unwatched.insert(dir);
                }
            }
        }
        added
    }

    /// Waits for events and returns what they ask for. Everything readable at once is one
    /// batch, so a burst costs one apply per socket.
    pub async fn next(&mut self) -> io::Result<Cue> {
        loop {
            let mut guard = self.inotify.readable_mut().await?;
            let fd = guard.get_inner().as_raw_fd();
            let mut touched = BTreeSet::new();
            let mut overflow = false;
            let mut lost_dirs = Vec::new();
            let read = guard.try_io(|inner| {
                let events = inner.get_mut().read_events(&mut self.buffer)?;
                for event in events {
                    if event.mask.contains(EventMask::Q_OVERFLOW) {
                        overflow = true;
                    } else if event
                        .mask
                        .intersects(EventMask::DELETE_SELF | EventMask::MOVE_SELF | EventMask::IGNORED)
                    {
                        lost_dirs.push(event.wd.clone());
                    } else if let (Some(name), Some(dirs)) = (event.name, self.dirs.get(&event.wd)) {
                        for dir in dirs {
                            let path = dir.join(name);
                            if self.sockets.contains(&path) {
                                touched.insert(path);
                            }
                        }
                    }
                }
                Ok(())
            });
            match read {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
            for wd in lost_dirs {
                if let Some(dirs) = self.dirs.remove(&wd) {
                    warn!(fd, "a socket directory went away; watching again when it is back");
                    self.unwatched.extend(dirs.iter().cloned());
                    touched.extend(
                        self.sockets
                            .iter()
                            .filter(|s| s.parent().is_some_and(|p| dirs.iter().any(|d| d == p)))
                            .cloned(),
                    );
                }
            }
            if overflow {
                return Ok(Cue::All);
            }
            if !touched.is_empty() {
                return Ok(Cue::Sockets(touched));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_recreated_socket_and_an_attribute_change_are_cues() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("docker.sock");
        let mut watch = SocketWatch::new(std::slice::from_ref(&sock)).unwrap();
        std::fs::write(dir.path().join("unrelated"), "").unwrap();
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        assert_eq!(watch.next().await.unwrap(), Cue::Sockets([sock.clone()].into()));
        std::fs::set_permissions(&sock, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        assert_eq!(watch.next().await.unwrap(), Cue::Sockets([sock.clone()].into()));
    }

    #[tokio::test]
    async fn a_missing_directory_is_watched_once_it_exists() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("later/podman.sock");
        let mut watch = SocketWatch::new(std::slice::from_ref(&sock)).unwrap();
        assert!(!watch.watch_missing());
        std::fs::create_dir(dir.path().join("later")).unwrap();
        assert!(watch.watch_missing());
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        assert_eq!(watch.next().await.unwrap(), Cue::Sockets([sock].into()));
    }
}
