//! The shipped unit runs nonrootd with `ProtectSystem=strict`: it can change only what its
//! `ReadWritePaths=` allow. A configured path outside them would fail with EROFS at apply time,
//! so `check-config` names it and the drop-in that allows it.

use std::path::{Path, PathBuf};

use crate::config::{Config, Origin};

/// A path nonrootd will write, and the config key it comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrittenPath {
    pub key: &'static str,
    /// As configured.
    pub path: PathBuf,
    /// What the unit must let nonrootd write for it: the path, or its directory for a socket
    /// (re-created as a new inode, which a read-only mount of the old one would not cover)
    /// and a subids file (shadow's locks and the rename live there).
    pub writable: PathBuf,
    /// Where the config sets it, or what makes it written (the `[dmi]` table, the first
    /// `[[tenant]]`); `None` for a data root from Docker's daemon.json or the default.
    pub origin: Option<Origin>,
}

/// Where the configured duties write: the data root, each socket's directory, the DMI tables
/// and the directories of the subordinate id files.
pub fn written_paths(config: &Config, data_root: Option<&Path>) -> Vec<WrittenPath> {
    let mut paths = Vec::new();
    if let Some(root) = data_root.filter(|_| config.docker.is_some()) {
        let configured = config.docker.as_ref().and_then(|d| d.data_root.as_ref());
        paths.push(WrittenPath {
            key: "docker.data_root",
            path: root.to_path_buf(),
            writable: root.to_path_buf(),
            origin: configured.map(|r| r.origin.clone()),
        });
    }
    for socket in &config.sockets {
        paths.push(WrittenPath {
            key: "socket.path",
            path: socket.path.clone(),
            writable: socket.path.parent().unwrap_or(Path::new("/")).to_path_buf(),
            origin: Some(socket.origin.clone()),
        });
    }
    if let Some(dmi) = &config.dmi {
        paths.push(WrittenPath {
            key: "dmi.tables_dir",
            path: dmi.tables_dir.clone(),
            writable: dmi.tables_dir.clone(),
            origin: Some(dmi.tables_dir_origin.clone()),
        });
    }
    if let Some(first_tenant) = config.tenants.first() {
        let subids = &config.subids;
        for (key, file, origin) in [
            ("subids.subuid_file", &subids.subuid_file, &subids.subuid_file_origin),
            ("subids.subgid_file", &subids.subgid_file, &subids.subgid_file_origin),
        ] {
            paths.push(WrittenPath {
                key,
                path: file.clone(),
                writable: file.parent().unwrap_or(Path::new("/")).to_path_buf(),
                origin: Some(origin.as_ref().unwrap_or(&first_tenant.name.origin).clone()),
            });
        }
    }
    paths
}

/// What nonrootd.service with its drop-ins lets nonrootd write.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnitSandbox {
    /// `ProtectSystem=`.
    pub protect_system: ProtectSystem,
    /// `ProtectHome=`.
    pub protect_home: ProtectHome,
    /// `ProtectKernelTunables=`: /sys and /proc/sys are read-only.
    pub protect_kernel_tunables: bool,
    /// `ReadWritePaths=`, in order.
    pub read_write_paths: Vec<PathBuf>,
    /// `ReadOnlyPaths=`, in order.
    pub read_only_paths: Vec<PathBuf>,
    /// `InaccessiblePaths=`, in order.
    pub inaccessible_paths: Vec<PathBuf>,
    /// `PrivateTmp=`: /tmp and /var/tmp are the unit's own.
    pub private_tmp: bool,
}

/// `ProtectSystem=`, as systemd 252 reads it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProtectSystem {
    #[default]
    No,
    /// `yes`: /usr, /boot and /efi are read-only.
    Yes,
    /// `full`: /etc too.
    Full,
    /// `strict`: every path but the API file systems and the homes (`ProtectHome=`'s).
    Strict,
}

/// `ProtectHome=`, as systemd 252 reads it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProtectHome {
    #[default]
    No,
    /// `read-only`.
    ReadOnly,
    /// `yes` or `tmpfs`: /home, /root and /run/user are hidden.
    Hidden,
}

/// What one mount of the unit's namespace does to the paths below it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Access {
    /// Made read-only by the named setting.
    ReadOnly(&'static str),
    ReadWrite,
}

/// Why nonrootd.service cannot write a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blocked {
    /// By the named setting (`ProtectSystem=strict`, `ReadOnlyPaths=`, …).
    ReadOnly(&'static str),
    /// By an `InaccessiblePaths=` entry.
    Inaccessible,
    HiddenHome,
    PrivateTmp,
}

impl std::fmt::Display for Blocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Blocked::ReadOnly(setting) => write!(f, "is read-only for nonrootd.service ({setting})"),
            Blocked::Inaccessible => f.write_str("is hidden from nonrootd.service (InaccessiblePaths=)"),
            Blocked::HiddenHome => {
                f.write_str("is hidden from nonrootd.service (ProtectHome=, which hides /home, /root and /run/user)")
            }
            Blocked::PrivateTmp => {
                f.write_str("is not the host's for nonrootd.service, which has a /tmp of its own (PrivateTmp=yes)")
            }
        }
    }
}

impl UnitSandbox {
    /// Reads a unit file or drop-in over what the earlier ones set, as systemd 252 does: a
    /// line ending in an unescaped `\` goes on in the next one (comment lines between are
    /// skipped), `#` and `;` lines are comments; an empty path list assignment resets that
    /// list, words may be quoted, `%%` and the path specifiers are expanded, and a leading `-`
    /// (ignore if missing) or `+` is dropped; the last valid `ProtectSystem=`, `ProtectHome=`,
    /// `ProtectKernelTunables=` and `PrivateTmp=` win, and an empty or invalid one is ignored
    /// (systemd logs it and keeps the earlier value).
    pub fn read(&mut self, unit: &str) {
        let mut in_service = false;
        for line in logical_lines(unit) {
            if line.starts_with('[') {
                in_service = line == "[Service]";
                continue;
            }
            let Some((key, value)) = line.split_once('=').filter(|_| in_service) else {
                continue;
            };
            let value = value.trim();
            // systemd 252 still reads the keys' old names.
            let (list, restricts) = match key.trim() {
                "ReadWritePaths" | "ReadWriteDirectories" => (&mut self.read_write_paths, false),
                "ReadOnlyPaths" | "ReadOnlyDirectories" => (&mut self.read_only_paths, true),
                "InaccessiblePaths" | "InaccessibleDirectories" => (&mut self.inaccessible_paths, true),
                "ProtectSystem" => {
                    self.protect_system = match (boolean(value), value) {
                        (Some(true), _) => ProtectSystem::Yes,
                        (Some(false), _) => ProtectSystem::No,
                        (None, "full") => ProtectSystem::Full,
                        (None, "strict") => ProtectSystem::Strict,
                        (None, _) => self.protect_system,
                    };
                    continue;
                }
                "ProtectHome" => {
                    self.protect_home = match (boolean(value), value) {
                        (Some(true), _) | (None, "tmpfs") => ProtectHome::Hidden,
                        (Some(false), _) => ProtectHome::No,
                        (None, "read-only") => ProtectHome::ReadOnly,
                        (None, _) => self.protect_home,
                    };
                    continue;
                }
                "ProtectKernelTunables" => {
                    self.protect_kernel_tunables = boolean(value).unwrap_or(self.protect_kernel_tunables);
                    continue;
                }
                // systemd 257's "disconnected" is another private /tmp (252 ignores it: taking
                // it as private errs on the side of naming the path).
                "PrivateTmp" => {
                    match (boolean(value), value) {
                        (Some(private), _) => self.private_tmp = private,
                        (None, "disconnected") => self.private_tmp = true,
                        (None, _) => {}
                    }
                    continue;
                }
                _ => continue,
            };
            if value.is_empty() {
                list.clear();
            }
            // Words up to one systemd cannot split (an open quote), which ends the line.
            for word in words(value).map_while(Result::ok) {
                let word = word.strip_prefix('-').unwrap_or(&word);
                let word = word.strip_prefix('+').unwrap_or(word);
                let path = match expand_specifiers(word) {
                    Ok(path) if path.starts_with('/') => PathBuf::from(path),
                    // systemd ignores a word that is no absolute path.
                    Ok(_) => continue,
                    // What a restriction holds past an unknown specifier is unknown: taken to
                    // hold the directory before it; a path it would open is left out.
                    Err(before) if restricts => {
                        let dir = before.rsplit_once('/').map_or("", |(dir, _)| dir);
                        PathBuf::from(if dir.is_empty() { "/" } else { dir })
                    }
                    Err(_) => continue,
                };
                list.push(path);
            }
        }
    }

    /// Why nonrootd cannot write `path`, or `None` when it can. Under an `InaccessiblePaths=`
    /// entry nothing is there; otherwise the deepest mount holding it decides (at one depth,
    /// the read-only one), as systemd orders them.
    pub fn blocks(&self, path: &Path) -> Option<Blocked> {
        if self.private_tmp && is_tmp(path) {
            return Some(Blocked::PrivateTmp);
        }
        if self.protect_home == ProtectHome::Hidden && is_home(path) {
            return Some(Blocked::HiddenHome);
        }
        if self.inaccessible_paths.iter().any(|entry| path.starts_with(entry)) {
            return Some(Blocked::Inaccessible);
        }
        let deepest = self
            .mounts()
            .into_iter()
            .filter(|(entry, _)| path.starts_with(entry))
            .max_by(|(a, a_access), (b, b_access)| {
                let depth = |p: &PathBuf| p.components().count();
                // Deeper wins; at one depth, read-only (which sorts first) wins.
                depth(a).cmp(&depth(b)).then(b_access.cmp(a_access))
            });
        match deepest {
            Some((_, Access::ReadOnly(setting))) => Some(Blocked::ReadOnly(setting)),
            Some((_, Access::ReadWrite)) | None => None,
        }
    }

    /// The unit's mounts that make paths read-only or writable again.
    fn mounts(&self) -> Vec<(PathBuf, Access)> {
        let read_only = |setting: &'static str, paths: &[&str]| -> Vec<(PathBuf, Access)> {
            paths
                .iter()
                .map(|p| (PathBuf::from(p), Access::ReadOnly(setting)))
                .collect()
        };
        let mut mounts = match self.protect_system {
            ProtectSystem::No => Vec::new(),
            ProtectSystem::Yes => read_only("ProtectSystem=yes", &["/usr", "/boot", "/efi"]),
            ProtectSystem::Full => read_only("ProtectSystem=full", &["/usr", "/boot", "/efi", "/etc"]),
            ProtectSystem::Strict => {
                let mut strict = read_only("ProtectSystem=strict", &["/"]);
                // The API file systems, and the homes (ProtectHome='s), stay writable.
                let writable = ["/dev", "/proc", "/sys"].into_iter().chain(PROTECTED_HOMES);
                strict.extend(writable.map(|p| (PathBuf::from(p), Access::ReadWrite)));
                strict
            }
        };
        if self.protect_home == ProtectHome::ReadOnly {
            mounts.extend(read_only("ProtectHome=read-only", &PROTECTED_HOMES));
        }
        if self.protect_kernel_tunables {
            mounts.extend(read_only("ProtectKernelTunables=yes", &["/sys", "/proc/sys"]));
        }
        mounts.extend(
            self.read_only_paths
                .iter()
                .map(|p| (p.clone(), Access::ReadOnly("ReadOnlyPaths="))),
        );
        mounts.extend(self.read_write_paths.iter().map(|p| (p.clone(), Access::ReadWrite)));
        mounts
    }

    /// The drop-in that lets nonrootd write `path` under this unit: [`drop_in_advice`]'s, or
    /// where a mount at that very path keeps it read-only (`ProtectHome=read-only` for a home
    /// itself, a `ReadOnlyPaths=` or `InaccessiblePaths=` entry, `ProtectSystem=full` at /etc)
    /// one that changes that setting instead. Each is tried on the model; when none opens the
    /// path, the setting to change by hand is named.
    pub fn advice(&self, path: &Path) -> String {
        let usual = usual_drop_in(path);
        let opening = format!("ReadWritePaths={}", unit_word(path));
        let mut tries = vec![usual.clone()];
        if is_home(path) {
            let mut no_protect_home = usual.clone();
            no_protect_home[0] = "ProtectHome=no".to_string();
            tries.push(no_protect_home);
        }
        // A list reset, then its entries but those holding the path listed again.
        let relisted = |key: &str, list: &[PathBuf]| -> Vec<String> {
            let others = list.iter().filter(|entry| !path.starts_with(entry));
            let mut lines = vec![format!("{key}=")];
            lines.extend(others.map(|entry| format!("{key}={}", unit_word(entry).trim_start_matches('-'))));
            lines
        };
        let ro = relisted("ReadOnlyPaths", &self.read_only_paths);
        let gone = relisted("InaccessiblePaths", &self.inaccessible_paths);
        tries.push([ro.clone(), vec![opening.clone()]].concat());
        tries.push([gone, ro, vec![opening.clone()]].concat());
        if self.protect_system == ProtectSystem::Full {
            tries.push(vec!["ProtectSystem=yes".to_string(), opening]);
        }
        for lines in tries {
            let mut trial = self.clone();
            trial.read(&format!("[Service]\n{}\n", lines.join("\n")));
            if trial.blocks(path).is_none() {
                return drop_in(&lines);
            }
        }
        match self.blocks(path) {
            Some(why) => format!("no drop-in of ReadWritePaths= alone opens it; change what makes it so ({why})"),
            None => drop_in(&usual),
        }
    }
}

/// `word` with `%%` and the specifiers of nonrootd.service expanded (`%t` /run, `%S`
/// /var/lib, `%C` /var/cache, `%L` /var/log, `%E` /etc, `%T` /tmp, `%V` /var/tmp, `%h` /root,
/// `%n` nonrootd.service, `%N`, `%p`, `%P` nonrootd, `%i`, `%I`, `%j`, `%J` empty, `%u`, `%g`
/// root, `%U`, `%G` 0); `Err` with what comes before any other specifier (the host's name,
/// its machine id, …).
fn expand_specifiers(word: &str) -> Result<String, String> {
    let mut out = String::with_capacity(word.len());
    let mut chars = word.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        out.push_str(match chars.next() {
            Some('%') => "%",
            Some('t') => "/run",
            Some('S') => "/var/lib",
            Some('C') => "/var/cache",
            Some('L') => "/var/log",
            Some('E') => "/etc",
            Some('T') => "/tmp",
            Some('V') => "/var/tmp",
            Some('h') => "/root",
            Some('n') => "nonrootd.service",
            Some('N' | 'p' | 'P') => "nonrootd",
            Some('i' | 'I' | 'j' | 'J') => "",
            Some('u' | 'g') => "root",
            Some('U' | 'G') => "0",
            _ => return Err(out),
        });
    }
    Ok(out)
}

/// The lines of a unit file as systemd reads them: a line ending in an unescaped backslash is
/// joined with the next (with a space), comment lines are left out, also between continued
/// ones.
fn logical_lines(unit: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut pending: Option<String> = None;
    for raw in unit.lines() {
        let line = raw.trim_start();
        if line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        // As written: a backslash followed by a blank continues nothing.
        let backslashes = line.len() - line.trim_end_matches('\\').len();
        let continues = backslashes % 2 == 1;
        let text = if continues { &line[..line.len() - 1] } else { line }.trim_end();
        let joined = match pending.take() {
            Some(mut before) => {
                before.push(' ');
                before.push_str(text);
                before
            }
            None => text.to_string(),
        };
        if continues {
            pending = Some(joined);
        } else {
            lines.push(joined);
        }
    }
    lines.extend(pending);
    lines
}

/// The words of a path list as systemd splits them: at white space outside quotes, quotes
/// removed, a backslash taking the next character as it is; `Err` for a word whose quote is
/// not closed or that ends in a lone backslash (systemd ignores the rest of the line).
fn words(value: &str) -> impl Iterator<Item = Result<String, ()>> + '_ {
    let mut chars = value.chars().peekable();
    std::iter::from_fn(move || {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        chars.peek()?;
        let mut word = String::new();
        let mut quote = None;
        while let Some(c) = chars.next() {
            match (c, quote) {
                ('\\', _) => match chars.next() {
                    Some(next) => word.push(next),
                    None => return Some(Err(())),
                },
                ('"' | '\'', None) => quote = Some(c),
                (c, Some(q)) if c == q => quote = None,
                (c, None) if c.is_whitespace() => break,
                (c, _) => word.push(c),
            }
        }
        Some(if quote.is_some() { Err(()) } else { Ok(word) })
    })
}

/// systemd's `parse_boolean`: case-insensitive.
fn boolean(value: &str) -> Option<bool> {
    let any = |words: [&str; 6]| words.iter().any(|w| value.eq_ignore_ascii_case(w));
    if any(["1", "yes", "y", "true", "t", "on"]) {
        Some(true)
    } else if any(["0", "no", "n", "false", "f", "off"]) {
        Some(false)
    } else {
        None
    }
}

/// What the unit's `ProtectHome=yes` hides from nonrootd; `ReadWritePaths=` cannot open a path
/// below them again.
const PROTECTED_HOMES: [&str; 3] = ["/home", "/root", "/run/user"];

fn is_home(path: &Path) -> bool {
    PROTECTED_HOMES.iter().any(|home| path.starts_with(home))
}

/// What `PrivateTmp=yes` replaces with directories of the unit's own.
fn is_tmp(path: &Path) -> bool {
    path.starts_with("/tmp") || path.starts_with("/var/tmp")
}

/// The drop-in an admin adds so that nonrootd may write `path` (with `-`: a path that does not
/// exist yet would keep the unit from starting otherwise). Below /home, /root or
/// /run/user it also turns `ProtectHome=yes` into `read-only`, below which `ReadWritePaths=`
/// works; below /tmp or /var/tmp it turns `PrivateTmp=` off, so that nonrootd sees the host's.
pub fn drop_in_advice(path: &Path) -> String {
    drop_in(&usual_drop_in(path))
}

/// The lines of [`drop_in_advice`]'s drop-in.
fn usual_drop_in(path: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    if is_home(path) {
        lines.push("ProtectHome=read-only".to_string());
    }
    if is_tmp(path) {
        lines.push("PrivateTmp=no".to_string());
    }
    lines.push(format!("ReadWritePaths={}", unit_word(path)));
    lines
}

/// The advice to add a drop-in of `lines`.
fn drop_in(lines: &[String]) -> String {
    format!(
        "add /etc/systemd/system/nonrootd.service.d/paths.conf with \"[Service]\\n{}\", then systemctl daemon-reload and restart nonrootd",
        lines.join("\\n")
    )
}

/// `-path` as one word of a unit file's path list: `%` doubled (a specifier otherwise),
/// quoted when it holds white space, a quote or a backslash (escaped inside).
fn unit_word(path: &Path) -> String {
    let text = format!("-{}", path.display()).replace('%', "%%");
    if !text.contains(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '\\')) {
        return text;
    }
    let mut word = String::from("'");
    for c in text.chars() {
        match c {
            '\'' | '\\' => {
                word.push('\\');
                word.push(c);
            }
            c => word.push(c),
        }
    }
    word.push('\'');
    word
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::from_sources(&[(PathBuf::from("/etc/nonrootd/nonrootd.toml"), text.to_string())]).unwrap()
    }

    /// The units read in order, each in `[Service]` unless it names its own section first.
    fn sandbox(units: &[&str]) -> UnitSandbox {
        let mut sandbox = UnitSandbox::default();
        for unit in units {
            match unit.starts_with('[') {
                true => sandbox.read(unit),
                false => sandbox.read(&format!("[Service]\n{unit}")),
            }
        }
        sandbox
    }

    /// Only `[Service]` counts: systemd ignores a key outside any section and these keys in
    /// another one.
    #[test]
    fn keys_outside_the_service_section_are_ignored() {
        let mut unit = UnitSandbox::default();
        unit.read("ProtectSystem=strict\nReadWritePaths=/srv/a\n");
        unit.read(
            "[Unit]\nReadWritePaths=/srv/b\n[Service]\nReadWritePaths=/srv/c\n[Install]\nReadWritePaths=/srv/d\n",
        );
        assert_eq!(unit.protect_system, ProtectSystem::No);
        assert_eq!(unit.read_write_paths, [PathBuf::from("/srv/c")]);
    }

    /// Old key names, one `-` then one `+`, words that are no absolute path, an open quote
    /// (the rest of the line ignored), a backslash and a blank after it (no continuation),
    /// and a restriction past an unknown specifier taken to hold the directory before it.
    #[test]
    fn words_are_taken_as_systemd_takes_them() {
        let unit = sandbox(&[
            "ReadWriteDirectories=-+/srv/a +-/srv/b relative \"\" -\nReadWritePaths=/srv/c \\ \nReadOnlyPaths=/srv/d\nReadWritePaths=/srv/e \"/srv/f\n",
            "InaccessibleDirectories=/srv/x/%H/y\nReadOnlyDirectories=/srv/%n\nReadWritePaths=/srv/%m\n",
        ]);
        assert_eq!(
            unit.read_write_paths,
            [PathBuf::from("/srv/a"), "/srv/c".into(), "/srv/e".into()]
        );
        assert_eq!(
            unit.read_only_paths,
            [PathBuf::from("/srv/d"), "/srv/nonrootd.service".into()]
        );
        assert_eq!(unit.inaccessible_paths, [PathBuf::from("/srv/x")]);
    }

    /// The advice is checked on the model: where a mount at the very path keeps it read-only,
    /// the setting behind it changes instead.
    #[test]
    fn the_advice_opens_the_path_it_is_for() {
        let shipped = sandbox(&[
            "ProtectSystem=strict\nProtectHome=yes\nReadOnlyPaths=/proc /srv/ro\nInaccessiblePaths=/srv/gone\nReadWritePaths=/run\n",
        ]);
        let opened = |advice: &str| {
            let text = advice.split('"').nth(1).unwrap().replace("\\n", "\n");
            let mut unit = shipped.clone();
            unit.read(&text);
            unit
        };
        for path in [
            "/srv/docker",
            "/root",
            "/home/app/data",
            "/srv/ro",
            "/srv/ro/x",
            "/srv/gone/x",
        ] {
            let advice = shipped.advice(Path::new(path));
            assert_eq!(opened(&advice).blocks(Path::new(path)), None, "{path}: {advice}");
        }
        // The other restrictions are listed again.
        let advice = shipped.advice(Path::new("/srv/ro"));
        assert!(
            advice.contains("ReadOnlyPaths=\\nReadOnlyPaths=/proc\\nReadWritePaths=-/srv/ro"),
            "{advice}"
        );
        assert_eq!(
            opened(&advice).blocks(Path::new("/proc/x")),
            Some(Blocked::ReadOnly("ReadOnlyPaths="))
        );
        let full = sandbox(&["ProtectSystem=full\n"]);
        assert!(full.advice(Path::new("/etc")).contains("ProtectSystem=yes"));
    }

    #[test]
    fn unit_paths_are_read_with_resets_and_prefixes() {
        let unit = "[Service]\nReadWritePaths=/etc\nReadWritePaths=/run -/var/lib/docker\n";
        let paths = sandbox(&[unit]).read_write_paths;
        assert_eq!(paths, [PathBuf::from("/etc"), "/run".into(), "/var/lib/docker".into()]);
        let drop_in = "[Service]\nReadWritePaths=\nReadWritePaths=+/srv\n";
        assert_eq!(sandbox(&[unit, drop_in]).read_write_paths, [PathBuf::from("/srv")]);
    }

    /// Continued lines (comments between them skipped), quoted words, specifiers,
    /// ProtectSystem= levels and the deepest of the mounts.
    #[test]
    fn units_are_read_as_systemd_reads_them() {
        let unit = sandbox(&[
            "[Service]\nProtectSystem=strict\n# ReadWritePaths=/commented\nReadWritePaths=/srv/a \\\n# was: /srv/t\n  \"/srv/b c\" '-/srv/d'\n",
            "ReadOnlyPaths=/srv/a/ro\nInaccessiblePaths=/srv/b\\ c/gone\nReadWritePaths=/srv/a/ro/rw '-/srv/e%%f' %t/x %S/y %p/z\nReadWritePaths=/srv/g\\\\\nReadWritePaths=/srv/h\n",
        ]);
        assert_eq!(
            unit.read_write_paths,
            [
                PathBuf::from("/srv/a"),
                "/srv/b c".into(),
                "/srv/d".into(),
                "/srv/a/ro/rw".into(),
                "/srv/e%f".into(),
                "/run/x".into(),
                "/var/lib/y".into(),
                // An escaped backslash ends the line.
                "/srv/g\\".into(),
                "/srv/h".into(),
            ]
        );
        let strict = Some(Blocked::ReadOnly("ProtectSystem=strict"));
        assert_eq!(unit.blocks(Path::new("/srv/a/x")), None);
        assert_eq!(unit.blocks(Path::new("/srv/b c/x")), None);
        assert_eq!(unit.blocks(Path::new("/srv/t/x")), strict);
        assert_eq!(unit.blocks(Path::new("/commented")), strict);
        assert_eq!(
            unit.blocks(Path::new("/srv/a/ro/x")),
            Some(Blocked::ReadOnly("ReadOnlyPaths="))
        );
        assert_eq!(unit.blocks(Path::new("/srv/a/ro/rw/x")), None);
        assert_eq!(unit.blocks(Path::new("/srv/b c/gone")), Some(Blocked::Inaccessible));
        // At one depth the read-only mount wins, ProtectSystem='s own included; nothing under
        // an inaccessible path is there to be written.
        let both = sandbox(&["ProtectSystem=strict\nReadWritePaths=/srv\nReadOnlyPaths=/srv\n"]);
        assert_eq!(
            both.blocks(Path::new("/srv/x")),
            Some(Blocked::ReadOnly("ReadOnlyPaths="))
        );
        let root = sandbox(&["ProtectSystem=strict\nReadWritePaths=/\n"]);
        assert_eq!(root.blocks(Path::new("/srv")), strict);
        let etc = sandbox(&["ProtectSystem=full\nReadWritePaths=/etc\n"]);
        assert_eq!(
            etc.blocks(Path::new("/etc/subuid")),
            Some(Blocked::ReadOnly("ProtectSystem=full"))
        );
        let gone = sandbox(&["InaccessiblePaths=/srv\nReadWritePaths=/srv/x\n"]);
        assert_eq!(gone.blocks(Path::new("/srv/x/y")), Some(Blocked::Inaccessible));
        let full = sandbox(&["ProtectSystem=strict\n", "ProtectSystem=full\nProtectSystem=bogus\n"]);
        assert_eq!(
            full.blocks(Path::new("/etc/x")),
            Some(Blocked::ReadOnly("ProtectSystem=full"))
        );
        assert_eq!(full.blocks(Path::new("/srv/x")), None);
        let off = sandbox(&["ProtectSystem=strict\n", "ProtectSystem=no\n"]);
        assert_eq!(off.blocks(Path::new("/usr/x")), None);
        let yes = sandbox(&["ProtectSystem=yes\n"]);
        assert_eq!(
            yes.blocks(Path::new("/usr/x")),
            Some(Blocked::ReadOnly("ProtectSystem=yes"))
        );
    }

    /// strict leaves the API file systems and the homes to their own settings.
    #[test]
    fn homes_and_kernel_tunables_have_settings_of_their_own() {
        let strict = sandbox(&["ProtectSystem=strict\nReadWritePaths=/sys/firmware/dmi/tables\n"]);
        assert_eq!(strict.blocks(Path::new("/home/docker")), None);
        assert_eq!(strict.blocks(Path::new("/sys/firmware/dmi/tables/DMI")), None);
        let tunables =
            sandbox(&["ProtectSystem=strict\nProtectKernelTunables=yes\nReadWritePaths=/sys/firmware/dmi/tables\n"]);
        assert_eq!(tunables.blocks(Path::new("/sys/firmware/dmi/tables/DMI")), None);
        assert_eq!(
            tunables.blocks(Path::new("/sys/class/x")),
            Some(Blocked::ReadOnly("ProtectKernelTunables=yes"))
        );
        let read_only = sandbox(&["ProtectSystem=full\nProtectHome=read-only\n"]);
        assert_eq!(
            read_only.blocks(Path::new("/home/docker")),
            Some(Blocked::ReadOnly("ProtectHome=read-only"))
        );
        let opened = sandbox(&["ProtectHome=read-only\nReadWritePaths=/home/docker\n"]);
        assert_eq!(opened.blocks(Path::new("/home/docker/x")), None);
    }

    #[test]
    fn paths_outside_the_sandbox_are_named() {
        let config = config(
            "[docker]\n[[socket]]\npath = \"/run/docker.sock\"\nusers = [1]\n[[socket]]\npath = \"/srv/podman/podman.sock\"\nusers = [1]\n",
        );
        let unit =
            sandbox(&["ProtectSystem=strict\nReadWritePaths=/etc /run -/var/lib/docker -/sys/firmware/dmi/tables\n"]);
        let blocked = |data_root: &str| -> Vec<_> {
            written_paths(&config, Some(Path::new(data_root)))
                .into_iter()
                .filter_map(|w| Some((w.key, w.writable.clone(), unit.blocks(&w.writable)?)))
                .collect()
        };
        let strict = Blocked::ReadOnly("ProtectSystem=strict");
        assert_eq!(
            blocked("/data/docker"),
            [
                ("docker.data_root", PathBuf::from("/data/docker"), strict),
                ("socket.path", "/srv/podman".into(), strict)
            ]
        );
        assert_eq!(blocked("/var/lib/docker").len(), 1);
        // With "-": a path that does not exist yet does not keep the unit from starting.
        assert!(drop_in_advice(Path::new("/srv")).contains("ReadWritePaths=-/srv\""));
        assert!(drop_in_advice(Path::new("/srv/a b%")).contains("ReadWritePaths='-/srv/a b%%'\""));
    }

    /// A path is named where it is set (a drop-in's line), else where what writes it is.
    #[test]
    fn written_paths_are_named_where_the_config_sets_them() {
        let main = "[docker]\n\n[dmi]\ngroup = \"adm\"\n\n[[tenant]]\nname = \"acme\"\n";
        let drop_in = "[docker]\ndata_root = \"/srv/docker\"\n[subids]\nsubgid_file = \"/srv/ids/subgid\"\n";
        let config = Config::from_sources(&[
            (PathBuf::from("/etc/n.toml"), main.to_string()),
            (PathBuf::from("/etc/n.d/10.toml"), drop_in.to_string()),
        ])
        .unwrap();
        let named: Vec<_> = written_paths(&config, Some(Path::new("/srv/docker")))
            .into_iter()
            .map(|w| (w.key, w.origin.map(|o| o.to_string())))
            .collect();
        let at = |place: &str| Some(place.to_string());
        assert_eq!(
            named,
            [
                ("docker.data_root", at("/etc/n.d/10.toml:2")),
                ("dmi.tables_dir", at("/etc/n.toml:3")),
                ("subids.subuid_file", at("/etc/n.toml:7")),
                ("subids.subgid_file", at("/etc/n.d/10.toml:4")),
            ]
        );
        // A data root from daemon.json or the default is set nowhere in the config.
        let unset = Config::from_sources(&[(PathBuf::from("/etc/n.toml"), "[docker]\n".into())]).unwrap();
        assert_eq!(
            written_paths(&unset, Some(Path::new("/var/lib/docker")))[0].origin,
            None
        );
    }

    #[test]
    fn private_tmp_and_protect_home_hide_what_read_write_paths_name() {
        let shipped = "[Service]\nProtectSystem=strict\nReadWritePaths=/run /tmp/x.sock /home/app\nProtectHome=yes\nPrivateTmp=yes\n";
        let unit = sandbox(&[shipped]);
        assert_eq!(unit.blocks(Path::new("/tmp/x.sock")), Some(Blocked::PrivateTmp));
        assert_eq!(unit.blocks(Path::new("/var/tmp/y.sock")), Some(Blocked::PrivateTmp));
        assert_eq!(unit.blocks(Path::new("/home/app/data")), Some(Blocked::HiddenHome));
        assert_eq!(unit.blocks(Path::new("/run/docker.sock")), None);
        assert_eq!(
            unit.blocks(Path::new("/tmpx/a.sock")),
            Some(Blocked::ReadOnly("ProtectSystem=strict"))
        );
        let opened = sandbox(&[shipped, "[Service]\nPrivateTmp=no\nProtectHome=read-only\n"]);
        assert_eq!(opened.blocks(Path::new("/tmp/x.sock")), None);
        assert_eq!(opened.blocks(Path::new("/home/app/data")), None);
        // systemd ignores an empty or invalid value (enum names are case-sensitive), and reads
        // booleans in any case.
        let ignored = sandbox(&[
            shipped,
            "PrivateTmp=\nProtectHome=\nPrivateTmp=maybe\nProtectHome=Read-Only\n",
        ]);
        assert_eq!((ignored.private_tmp, ignored.protect_home), (true, ProtectHome::Hidden));
        let off = sandbox(&[shipped, "PrivateTmp=No\nProtectHome=FALSE\n"]);
        assert_eq!((off.private_tmp, off.protect_home), (false, ProtectHome::No));
        assert_eq!(sandbox(&["ProtectHome=tmpfs\n"]).protect_home, ProtectHome::Hidden);
        assert!(sandbox(&["PrivateTmp=disconnected\n"]).private_tmp);
        assert!(
            drop_in_advice(Path::new("/tmp/x.sock"))
                .contains("\"[Service]\\nPrivateTmp=no\\nReadWritePaths=-/tmp/x.sock\"")
        );
    }

    #[test]
    fn paths_below_the_protected_homes_are_advised_protect_home_read_only() {
        for path in ["/home/app/data", "/root/data", "/run/user/1000/data"] {
            let advice = drop_in_advice(Path::new(path));
            assert!(
                advice.contains(&format!(
                    "\"[Service]\\nProtectHome=read-only\\nReadWritePaths=-{path}\""
                )),
                "{advice}"
            );
        }
        for path in ["/srv/data", "/homestead", "/run/docker.sock"] {
            assert!(!drop_in_advice(Path::new(path)).contains("ProtectHome"), "{path}");
        }
    }
}
