//! The shipped unit runs nonrootd with `ProtectSystem=strict`: it can change only what its
//! `ReadWritePaths=` allow. A configured path outside them would fail with EROFS at apply time,
//! so `check-config` names it and the drop-in that allows it.

use std::path::{Path, PathBuf};

use crate::config::Config;

/// A path nonrootd will write, and the config key it comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrittenPath {
    pub key: &'static str,
    pub path: PathBuf,
}

/// Where the configured duties write: the data root, each socket, the DMI tables and the
/// directories of the subordinate id files (shadow's locks and the rename live there).
pub fn written_paths(config: &Config, data_root: Option<&Path>) -> Vec<WrittenPath> {
    let mut paths = Vec::new();
    if let Some(root) = data_root.filter(|_| config.docker.is_some()) {
        paths.push(WrittenPath {
            key: "docker.data_root",
            path: root.to_path_buf(),
        });
    }
    for socket in &config.sockets {
        paths.push(WrittenPath {
            key: "socket.path",
            path: socket.path.clone(),
        });
    }
    if let Some(dmi) = &config.dmi {
        paths.push(WrittenPath {
            key: "dmi.tables_dir",
            path: dmi.tables_dir.clone(),
        });
    }
    if !config.tenants.is_empty() {
        for (key, file) in [
            ("subids.subuid_file", &config.subids.subuid_file),
            ("subids.subgid_file", &config.subids.subgid_file),
        ] {
            let dir = file.parent().unwrap_or(Path::new("/"));
            paths.push(WrittenPath {
                key,
                path: dir.to_path_buf(),
            });
        }
    }
    paths
}

/// The `ReadWritePaths=` of a unit file or drop-in, in order; an empty assignment resets the
/// list, a leading `-` (ignore if missing) or `+` is dropped.
pub fn read_write_paths(unit: &str, mut paths: Vec<PathBuf>) -> Vec<PathBuf> {
    for line in unit.lines().map(str::trim) {
        let Some(value) = line.strip_prefix("ReadWritePaths=") else {
            continue;
        };
        if value.trim().is_empty() {
            paths.clear();
            continue;
        }
        for word in value.split_whitespace() {
            paths.push(PathBuf::from(word.trim_start_matches(['-', '+'])));
        }
    }
    paths
}

/// The written paths that no allowed path covers.
pub fn uncovered(written: &[WrittenPath], allowed: &[PathBuf]) -> Vec<WrittenPath> {
    written
        .iter()
        .filter(|w| !allowed.iter().any(|a| w.path.starts_with(a)))
        .cloned()
        .collect()
}

/// What the unit's `ProtectHome=yes` hides from nonrootd; `ReadWritePaths=` cannot open a path
/// below them again.
const PROTECTED_HOMES: [&str; 3] = ["/home", "/root", "/run/user"];

/// The drop-in an admin adds so that nonrootd may write `path`. Below /home, /root or
/// /run/user it also turns `ProtectHome=yes` into `read-only`, below which `ReadWritePaths=`
/// works.
pub fn drop_in_advice(path: &Path) -> String {
    let protect_home = match PROTECTED_HOMES.iter().any(|home| path.starts_with(home)) {
        true => "ProtectHome=read-only\\n",
        false => "",
    };
    format!(
        "add /etc/systemd/system/nonrootd.service.d/paths.conf with \"[Service]\\n{protect_home}ReadWritePaths={}\", then systemctl daemon-reload and restart nonrootd",
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::from_sources(&[(PathBuf::from("/etc/nonrootd/nonrootd.toml"), text.to_string())]).unwrap()
    }

    #[test]
    fn unit_paths_are_read_with_resets_and_prefixes() {
        let unit = "[Service]\nReadWritePaths=/etc\nReadWritePaths=/run -/var/lib/docker\n";
        let paths = read_write_paths(unit, Vec::new());
        assert_eq!(paths, [PathBuf::from("/etc"), "/run".into(), "/var/lib/docker".into()]);
        let drop_in = "[Service]\nReadWritePaths=\nReadWritePaths=+/srv\n";
        assert_eq!(read_write_paths(drop_in, paths), [PathBuf::from("/srv")]);
    }

    #[test]
    fn paths_outside_the_sandbox_are_named() {
        let config = config(
            "[docker]\n[[socket]]\npath = \"/run/docker.sock\"\nusers = [1]\n[[socket]]\npath = \"/srv/podman/podman.sock\"\nusers = [1]\n",
        );
        let allowed: Vec<PathBuf> = ["/etc", "/run", "/var/lib/docker", "/sys/firmware/dmi/tables"]
            .map(PathBuf::from)
            .into();
        let written = written_paths(&config, Some(Path::new("/data/docker")));
        let names: Vec<_> = uncovered(&written, &allowed)
            .into_iter()
            .map(|w| (w.key, w.path))
            .collect();
        assert_eq!(
            names,
            [
                ("docker.data_root", PathBuf::from("/data/docker")),
                ("socket.path", "/srv/podman/podman.sock".into())
            ]
        );
        assert!(uncovered(&written_paths(&config, Some(Path::new("/var/lib/docker"))), &allowed).len() == 1);
        assert!(drop_in_advice(Path::new("/srv")).contains("ReadWritePaths=/srv"));
    }

    #[test]
    fn paths_below_the_protected_homes_are_advised_protect_home_read_only() {
        for path in ["/home/app/data", "/root/data", "/run/user/1000/data"] {
            let advice = drop_in_advice(Path::new(path));
            assert!(
                advice.contains(&format!(
                    "\"[Service]\\nProtectHome=read-only\\nReadWritePaths={path}\""
                )),
                "{advice}"
            );
        }
        for path in ["/srv/data", "/homestead", "/run/docker.sock"] {
            assert!(!drop_in_advice(Path::new(path)).contains("ProtectHome"), "{path}");
        }
    }
}
