//! Volume ownership: the host owner a `[[volume]]` wants (with a tenant's id mapping), what one
//! walked entry needs, and the summary of a walk.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::ids::{Gid, Uid};
use crate::mode::Mode;
use crate::plan::FileKind;
use crate::report::Outcome;
use crate::subids::{INVALID_ID, Range};

/// How a tenant's container ids become host ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mapping {
    /// dockerd's `userns-remap`: container id n is host id start + n.
    Remap,
    /// Rootless Docker or Podman: container id 0 is the tenant user itself, n is start + n - 1.
    Rootless,
}

impl Mapping {
    pub fn parse(text: &str) -> Result<Mapping, String> {
        match text {
            "remap" => Ok(Mapping::Remap),
            "rootless" => Ok(Mapping::Rootless),
            other => Err(format!("{other:?} is not a mapping: use \"remap\" or \"rootless\"")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mapping::Remap => "remap",
            Mapping::Rootless => "rootless",
        }
    }
}

/// Owner and group a volume's files must have on the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    pub uid: Uid,
    pub gid: Gid,
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.uid, self.gid)
    }
}

/// The host id of container id `id` for a tenant whose own id is `own` and whose subordinate
/// ranges are `ranges`. Several ranges are used one after the other, lowest start first, as
/// dockerd and newuidmap do; with one range this is exactly start + id (remap) or
/// start + id - 1 (rootless).
pub fn map_id(mapping: Mapping, own: u32, ranges: &[Range], id: u32) -> Result<u32, String> {
    let total: u64 = ranges.iter().map(|r| r.count).sum();
    if total == 0 {
        return Err("has no subordinate range".into());
    }
    let mut n = u64::from(id);
    if mapping == Mapping::Rootless {
        if id == 0 {
            return Ok(own);
        }
        n -= 1;
    }
    let mut sorted = ranges.to_vec();
    sorted.sort();
    for r in sorted {
        if n < r.count {
            let host = r.start + n;
            if host >= INVALID_ID {
                break;
            }
            return Ok(host as u32);
        }
        n -= r.count;
    }
    let known: Vec<String> = ranges.iter().map(ToString::to_string).collect();
    Err(format!(
        "id {id} is outside its {total} subordinate ids ({}) under {} mapping",
        known.join(", "),
        mapping.name()
    ))
}

/// What the walk saw of one entry (`statx` of its `O_PATH|O_NOFOLLOW` descriptor).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    pub kind: FileKind,
    /// Permission bits.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u64,
    pub dev: u64,
    /// The mount's id (`statx` STATX_MNT_ID): tells a bind mount of the same file system apart.
    pub mnt: u64,
    pub ino: u64,
}

/// Why an entry is left alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Skip {
    /// Anything but a directory with more than one link: it could be another file's alias
    /// (`/etc/shadow`, or a socket, FIFO or symlink of root's linked in from elsewhere).
    HardLinks,
    /// On another file system (a mount point inside the volume): never crossed.
    OtherFilesystem,
    /// A device node: re-owning it would hand out the device.
    Device,
    /// Gone (or moved) between reading the directory and looking at it: judged at the next
    /// walk.
    Vanished,
}

impl Skip {
    fn describe(self) -> &'static str {
        match self {
            Skip::HardLinks => "with hard links",
            Skip::OtherFilesystem => "on another file system",
            Skip::Device => "device nodes",
            Skip::Vanished => "vanished",
        }
    }
}

/// What to do with one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Correct,
    Change,
    Skip(Skip),
}

/// Judges one entry of the volume whose top directory is `top` and that `owner` must own.
/// Directories judged `Correct` or `Change` are descended into; skipped ones never.
#[inline]
pub fn judge(seen: &Seen, owner: Owner, top: &Seen) -> Verdict {
    if seen.dev != top.dev || seen.mnt != top.mnt {
        return Verdict::Skip(Skip::OtherFilesystem);
    }
    if seen.uid == owner.uid.0 && seen.gid == owner.gid.0 {
        return Verdict::Correct;
    }
    match seen.kind {
        FileKind::CharDevice | FileKind::BlockDevice => Verdict::Skip(Skip::Device),
        FileKind::Directory => Verdict::Change,
        _ if seen.nlink > 1 => Verdict::Skip(Skip::HardLinks),
        _ => Verdict::Change,
    }
}

/// For the mount `id` in `/proc/self/mountinfo` text: `None` when it is not a FUSE file
/// system (or not listed), else the uid that mounted it (its `user_id=` option), if recorded.
pub fn fuse_mounter(mountinfo: &str, id: u64) -> Option<Option<u32>> {
    mountinfo.lines().find_map(|line| {
        let mut fields = line.split(' ');
        if fields.next()?.parse::<u64>().ok()? != id {
            return None;
        }
        // "ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTIONS"
        let mut after_separator = fields.skip_while(|f| *f != "-").skip(1);
        let fstype = after_separator.next()?;
        if !(fstype == "fuse" || fstype == "fuseblk" || fstype.starts_with("fuse.")) {
            return None;
        }
        let super_options = after_separator.nth(1).unwrap_or("");
        Some(
            super_options
                .split(',')
                .find_map(|option| option.strip_prefix("user_id=")?.parse().ok()),
        )
    })
}

/// Distinct wrong owners a summary counts separately; the rest are "others".
const OWNERS_KEPT: usize = 8;

/// What a walk did, merged over its threads. Bounded in size whatever the tree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Entries looked at, the top directory included.
    pub seen: u64,
    /// Entries re-owned (or, checking, that need it).
    pub changed: u64,
    pub skipped: BTreeMap<Skip, u64>,
    /// The first skipped path of each reason, relative to the volume.
    pub skip_examples: BTreeMap<Skip, PathBuf>,
    /// Owners found on what needed a change: (uid, gid) → count.
    pub wrong_owners: BTreeMap<(u32, u32), u64>,
    pub wrong_other: u64,
    pub failed: u64,
    /// The first failure: relative path and error.
    pub first_failure: Option<String>,
    pub cancelled: bool,
}

impl Summary {
    pub fn skip(&mut self, why: Skip, path: impl FnOnce() -> PathBuf) {
        *self.skipped.entry(why).or_default() += 1;
        self.skip_examples.entry(why).or_insert_with(path);
    }

    pub fn wrong(&mut self, uid: u32, gid: u32) {
        self.changed += 1;
        self.count_owner((uid, gid), 1);
    }

    fn count_owner(&mut self, owner: (u32, u32), n: u64) {
        let kept = self.wrong_owners.len();
        match self.wrong_owners.get_mut(&owner) {
            Some(count) => *count += n,
            None if kept < OWNERS_KEPT => {
                self.wrong_owners.insert(owner, n);
            }
            None => self.wrong_other += n,
        }
    }

    /// Counts a failure; `path` is spelled out for the first one only.
    pub fn fail(&mut self, path: impl FnOnce() -> PathBuf, error: impl fmt::Display) {
        self.failed += 1;
        if self.first_failure.is_none() {
            self.first_failure = Some(format!("{}: {error}", shown(&path())));
        }
    }

    pub fn merge(&mut self, other: Summary) {
        self.seen += other.seen;
        self.failed += other.failed;
        self.cancelled |= other.cancelled;
        self.wrong_other += other.wrong_other;
        for (why, n) in other.skipped {
            *self.skipped.entry(why).or_default() += n;
        }
        for (why, path) in other.skip_examples {
            self.skip_examples.entry(why).or_insert(path);
        }
        self.changed += other.changed;
        for (owner, n) in other.wrong_owners {
            self.count_owner(owner, n);
        }
        if self.first_failure.is_none() {
            self.first_failure = other.first_failure;
        }
    }

    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }

    /// Skipped entries that are not owned as wanted: hard-linked files and device nodes are
    /// skipped only then (what is on another file system or vanished was not judged).
    pub fn left_not_owned(&self) -> u64 {
        [Skip::HardLinks, Skip::Device]
            .iter()
            .filter_map(|why| self.skipped.get(why))
            .sum()
    }

    /// "3 skipped: 2 with hard links (e.g. a/b), 1 on another file system (e.g. mnt)".
    fn describe_skips(&self) -> Option<String> {
        if self.skipped.is_empty() {
            return None;
        }
        let parts: Vec<String> = self
            .skipped
            .iter()
            .map(|(why, n)| match self.skip_examples.get(why) {
                Some(path) => format!("{n} {} (e.g. {})", why.describe(), shown(path)),
                None => format!("{n} {}", why.describe()),
            })
            .collect();
        Some(format!("{} skipped: {}", self.skipped_total(), parts.join(", ")))
    }

    /// "N of M changed (K skipped: …)", with failures and cancellation when there are any.
    pub fn describe(&self, verb: &str) -> String {
        let mut text = format!("{} of {} {verb}", self.changed, self.seen);
        if let Some(skips) = self.describe_skips() {
            text.push_str(&format!(" ({skips})"));
        }
        if self.failed > 0 {
            let first = self.first_failure.as_deref().unwrap_or("?");
            text.push_str(&format!("; {} failed, first {first}", self.failed));
        }
        if self.cancelled {
            text = format!("cancelled after {} files: {text}", self.seen);
        }
        text
    }

    /// For `volumes check`: "N of M not owned by U:G (n by 0:0, …) (K skipped: …)".
    pub fn describe_check(&self, owner: Owner) -> String {
        let mut text = format!("{} of {} not owned by {owner}", self.changed, self.seen);
        if self.changed > 0 {
            let mut by: Vec<String> = self
                .wrong_owners
                .iter()
                .map(|((u, g), n)| format!("{n} by {u}:{g}"))
                .collect();
            if self.wrong_other > 0 {
                by.push(format!("{} by others", self.wrong_other));
            }
            text.push_str(&format!(": {}", by.join(", ")));
        }
        if let Some(skips) = self.describe_skips() {
            text.push_str(&format!(" ({skips})"));
        }
        let left = self.left_not_owned();
        if left > 0 {
            text.push_str(&format!(
                "; {left} skipped not owned by {owner} either: a walk leaves them, chown each by hand once it is known to be the volume's own"
            ));
        }
        if self.failed > 0 {
            let first = self.first_failure.as_deref().unwrap_or("?");
            text.push_str(&format!("; {} failed, first {first}", self.failed));
        }
        text
    }
}

/// Characters of a path a message keeps: its end, after "…".
const SHOWN_CHARS: usize = 200;

/// A path from inside a volume, as messages show it: escaped (a file name is the container's,
/// and must never be a control character on root's terminal), its end only when long.
fn shown(path: &Path) -> String {
    if path.as_os_str().is_empty() {
        return ".".into();
    }
    let text = path.display().to_string().escape_debug().to_string();
    match text.char_indices().rev().nth(SHOWN_CHARS - 1) {
        Some((cut, _)) if cut > 0 => format!("…{}", &text[cut..]),
        _ => text,
    }
}

/// The report line's "desired": "owner 999:999", with the mode and the tenant's mapping.
pub fn desired(owner: Owner, mode: Option<Mode>, container: Option<(&str, Mapping, u32, u32)>) -> String {
    let mut text = format!("owner {owner}");
    if let Some((tenant, mapping, uid, gid)) = container {
        text.push_str(&format!(" = {uid}:{gid} of {tenant} ({})", mapping.name()));
    }
    if let Some(mode) = mode {
        text.push_str(&format!(", mode {mode}"));
    }
    text
}

/// The outcome of a walk: failed when it did not finish (cancelled, something failed); changed when it changed anything (the top directory's mode included),
/// its skips told; else correct. Skips alone (hard links, other file systems, devices, and
/// what moved during the walk, left to the next one) leave a walk correct: `nonrootctl volumes check` lists them.
pub fn outcome(summary: &Summary, mode_change: Option<(Mode, Mode)>, dry_run: bool) -> Outcome {
    let verb = if dry_run { "would change" } else { "changed" };
    let mut text = summary.describe(verb);
    if let Some((from, to)) = mode_change {
        text.push_str(&format!("; top mode {from} → {to}"));
    }
    if summary.cancelled || summary.failed > 0 {
        return Outcome::Failed { error: text };
    }
    if summary.changed == 0 && mode_change.is_none() {
        return Outcome::Correct;
    }
    if dry_run {
        Outcome::WouldChange { change: text }
    } else {
        Outcome::Changed { change: text }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, count: u64) -> Range {
        Range::new(start, count)
    }

    #[test]
    fn remap_is_start_plus_id() {
        assert_eq!(map_id(Mapping::Remap, 1000, &[r(100000, 65536)], 0), Ok(100000));
        assert_eq!(map_id(Mapping::Remap, 1000, &[r(100000, 65536)], 999), Ok(100999));
        assert_eq!(map_id(Mapping::Remap, 1000, &[r(100000, 65536)], 65535), Ok(165535));
        let out = map_id(Mapping::Remap, 1000, &[r(100000, 65536)], 65536).unwrap_err();
        assert_eq!(
            out,
            "id 65536 is outside its 65536 subordinate ids (100000-165535) under remap mapping"
        );
    }

    #[test]
    fn rootless_maps_zero_to_the_tenant_itself() {
        let ranges = [r(200000, 1000)];
        assert_eq!(map_id(Mapping::Rootless, 1001, &ranges, 0), Ok(1001));
        assert_eq!(map_id(Mapping::Rootless, 1001, &ranges, 1), Ok(200000));
        assert_eq!(map_id(Mapping::Rootless, 1001, &ranges, 999), Ok(200998));
        assert_eq!(map_id(Mapping::Rootless, 1001, &ranges, 1000), Ok(200999));
        assert!(map_id(Mapping::Rootless, 1001, &ranges, 1001).is_err());
    }

    #[test]
    fn no_range_is_refused_and_several_are_used_in_order() {
        assert_eq!(
            map_id(Mapping::Rootless, 1001, &[], 0).unwrap_err(),
            "has no subordinate range"
        );
        let ranges = [r(500000, 10), r(100000, 10)];
        assert_eq!(map_id(Mapping::Remap, 0, &ranges, 9), Ok(100009));
        assert_eq!(map_id(Mapping::Remap, 0, &ranges, 10), Ok(500000));
        assert!(map_id(Mapping::Remap, 0, &ranges, 20).is_err());
        assert!(map_id(Mapping::Remap, 0, &[r(u64::from(u32::MAX) - 5, 10)], 7).is_err());
    }

    fn seen(kind: FileKind, uid: u32, nlink: u64, dev: u64) -> Seen {
        Seen {
            kind,
            mode: 0o755,
            uid,
            gid: uid,
            nlink,
            dev,
            mnt: 7,
            ino: 2,
        }
    }

    #[test]
    fn judges_entries() {
        let owner = Owner {
            uid: Uid(999),
            gid: Gid(999),
        };
        let top = seen(FileKind::Directory, 0, 2, 1);
        let mut bind_mount = seen(FileKind::Directory, 0, 2, 1);
        bind_mount.mnt = 8;
        assert_eq!(judge(&bind_mount, owner, &top), Verdict::Skip(Skip::OtherFilesystem));
        assert_eq!(
            judge(&seen(FileKind::Regular, 999, 1, 1), owner, &top),
            Verdict::Correct
        );
        assert_eq!(judge(&seen(FileKind::Regular, 0, 1, 1), owner, &top), Verdict::Change);
        assert_eq!(judge(&seen(FileKind::Symlink, 0, 1, 1), owner, &top), Verdict::Change);
        assert_eq!(
            judge(&seen(FileKind::Regular, 0, 2, 1), owner, &top),
            Verdict::Skip(Skip::HardLinks)
        );
        assert_eq!(
            judge(&seen(FileKind::Regular, 999, 2, 1), owner, &top),
            Verdict::Correct
        );
        for kind in [FileKind::Socket, FileKind::Fifo, FileKind::Symlink] {
            assert_eq!(
                judge(&seen(kind, 0, 2, 1), owner, &top),
                Verdict::Skip(Skip::HardLinks),
                "{kind}"
            );
        }
        assert_eq!(judge(&seen(FileKind::Directory, 0, 5, 1), owner, &top), Verdict::Change);
        assert_eq!(
            judge(&seen(FileKind::Directory, 999, 2, 2), owner, &top),
            Verdict::Skip(Skip::OtherFilesystem)
        );
        assert_eq!(
            judge(&seen(FileKind::BlockDevice, 0, 1, 1), owner, &top),
            Verdict::Skip(Skip::Device)
        );
        let mut wrong_group = seen(FileKind::Directory, 999, 2, 1);
        wrong_group.gid = 0;
        assert_eq!(judge(&wrong_group, owner, &top), Verdict::Change);
    }

    #[test]
    fn fuse_mounts_are_found_with_their_mounter() {
        let mountinfo = "\
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard
216 27 0:57 / /srv/v rw,nosuid,nodev,relatime shared:9 - fuse.sshfs me@host:/x rw,user_id=1000,group_id=1000
217 27 0:58 / /srv/w rw,relatime - fuse /srv/src rw,user_id=0,group_id=0,allow_other
218 27 0:59 / /srv/x\\040y rw - fuseblk /dev/sdb1 rw,default_permissions
219 27 0:60 / /srv/z rw - fusectl fusectl rw
";
        assert_eq!(fuse_mounter(mountinfo, 27), None);
        assert_eq!(fuse_mounter(mountinfo, 216), Some(Some(1000)));
        assert_eq!(fuse_mounter(mountinfo, 217), Some(Some(0)));
        assert_eq!(fuse_mounter(mountinfo, 218), Some(None));
        assert_eq!(fuse_mounter(mountinfo, 219), None, "fusectl is no FUSE file system");
        assert_eq!(fuse_mounter(mountinfo, 2), None);
    }

    #[test]
    fn long_paths_are_shown_by_their_end() {
        let long: PathBuf = std::iter::repeat_n("d", 300).collect();
        let mut summary = Summary::default();
        summary.fail(|| long.join("f"), "EACCES");
        let shown = summary.first_failure.unwrap();
        assert!(shown.starts_with("…/d/d/") && shown.ends_with("d/f: EACCES"), "{shown}");
        assert_eq!(shown.chars().count(), 1 + SHOWN_CHARS + ": EACCES".len());
    }

    /// A file name is the container's: control characters reach no terminal as they are.
    #[test]
    fn names_from_inside_a_volume_are_escaped() {
        let mut summary = Summary::default();
        summary.skip(Skip::HardLinks, || PathBuf::from("x\u{1b}[2J\nFORGED\u{202e}"));
        summary.fail(|| PathBuf::from("a\rb"), "EACCES");
        let text = summary.describe("changed");
        assert!(!text.chars().any(|c| c.is_control() || c == '\u{202e}'), "{text:?}");
        assert!(
            text.contains(r"x\u{1b}[2J\nFORGED\u{202e}") && text.contains(r"a\rb: EACCES"),
            "{text}"
        );
    }

    #[test]
    fn summaries_merge_and_describe() {
        let mut a = Summary {
            seen: 10,
            ..Summary::default()
        };
        a.wrong(0, 0);
        a.skip(Skip::HardLinks, || PathBuf::from("x/link"));
        let mut b = Summary {
            seen: 5,
            ..Summary::default()
        };
        b.wrong(0, 0);
        b.wrong(1000, 1000);
        b.skip(Skip::HardLinks, || PathBuf::from("y"));
        b.skip(Skip::OtherFilesystem, || PathBuf::from("mnt"));
        a.merge(b);
        assert_eq!(
            a.describe("changed"),
            "3 of 15 changed (3 skipped: 2 with hard links (e.g. x/link), 1 on another file system (e.g. mnt))"
        );
        let owner = Owner {
            uid: Uid(999),
            gid: Gid(999),
        };
        assert_eq!(
            a.describe_check(owner),
            "3 of 15 not owned by 999:999: 2 by 0:0, 1 by 1000:1000 (3 skipped: 2 with hard links (e.g. x/link), \
             1 on another file system (e.g. mnt)); 2 skipped not owned by 999:999 either: a walk leaves them, \
             chown each by hand once it is known to be the volume's own"
        );
        assert_eq!(a.left_not_owned(), 2);
        assert_eq!(outcome(&a, None, false).label(), "changed");
        a.fail(|| PathBuf::from("z"), "Operation not permitted");
        assert!(matches!(outcome(&a, None, false), Outcome::Failed { .. }));
    }

    #[test]
    fn nothing_to_do_is_correct_and_a_mode_alone_is_a_change() {
        let done = Summary {
            seen: 3,
            ..Summary::default()
        };
        assert_eq!(outcome(&done, None, false), Outcome::Correct);
        let mode = Some((Mode::from_st_mode(0o755), Mode::from_st_mode(0o750)));
        assert_eq!(
            outcome(&done, mode, true),
            Outcome::WouldChange {
                change: "0 of 3 would change; top mode 0755 → 0750".into()
            }
        );
    }

    #[test]
    fn skips_by_design_leave_a_walk_correct() {
        let mut left_alone = Summary {
            seen: 4,
            ..Summary::default()
        };
        left_alone.skip(Skip::HardLinks, || PathBuf::from("fifo"));
        assert_eq!(outcome(&left_alone, None, false), Outcome::Correct);
        assert_eq!(outcome(&left_alone, None, true), Outcome::Correct);
        let mut changed = left_alone.clone();
        changed.wrong(0, 0);
        assert_eq!(
            outcome(&changed, None, false),
            Outcome::Changed {
                change: "1 of 4 changed (1 skipped: 1 with hard links (e.g. fifo))".into()
            }
        );
    }

    #[test]
    fn wrong_owners_are_bounded() {
        let mut s = Summary::default();
        for uid in 0..100 {
            s.wrong(uid, uid);
        }
        assert_eq!(s.wrong_owners.len(), OWNERS_KEPT);
        assert_eq!(s.wrong_other, 100 - OWNERS_KEPT as u64);
        assert_eq!(s.changed, 100);
    }
}
