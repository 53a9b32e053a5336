//! Subordinate id files (`/etc/subuid`, `/etc/subgid`): read leniently, as every consumer
//! would, check, allocate first fit with one start for both files, and write strictly.
//!
//! Two kinds of consumers read these files differently. shadow-utils (`newuidmap`,
//! `getsubids`, `useradd`) splits the raw line at `:` and reads numbers like
//! `strtoul(s, 0)`: `0200000` is octal, `0x` is hex, a `#` line is an owner named `#…`, and a
//! line with trailing spaces is ignored. Go tools (Docker, containers/storage) trim Unicode
//! white space off the line, skip `#` comments, read decimal, and refuse the whole file for a
//! line of other than three fields. A line counts as taken when either reads it. It is a
//! tenant's only when every shadow version from 4.13 on reads it as the tenant's (newer ones
//! refuse extra fields, negative numbers and ids past 4294967295); `release` removes every
//! line that any reader gives the tenant. Nothing is allocated in a file with a NUL byte,
//! which shadow cannot read past.
//!
//! Pure: bytes in, bytes out. Locking and atomic replacement live in the `nonrootd` crate.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::Range as Span;

use serde::{Deserialize, Serialize};

use crate::config::check_user_name;

/// The id no range may include: `(uid_t)-1`.
pub const INVALID_ID: u64 = u32::MAX as u64;

const SECONDS_PER_DAY: u64 = 86_400;

/// Which of the two files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Subuid,
    Subgid,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Subuid => "subuid",
            Kind::Subgid => "subgid",
        })
    }
}

/// `count` ids from `start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Range {
    pub start: u64,
    pub count: u64,
}

impl Range {
    pub fn new(start: u64, count: u64) -> Range {
        Range { start, count }
    }

    /// The last id, inclusive (saturating); meaningless for an empty range.
    pub fn last(self) -> u64 {
        self.start.saturating_add(self.count.saturating_sub(1))
    }

    /// Whether the range includes 4294967295 or goes beyond it.
    pub fn touches_invalid(self) -> bool {
        self.count > 0 && self.last() >= INVALID_ID
    }

    fn overlaps(self, other: Range) -> bool {
        self.count > 0 && other.count > 0 && self.start <= other.last() && other.start <= self.last()
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.last())
    }
}

/// One line that some consumer reads as a range. 32 bytes: each `nonrootctl subids` call
/// reads every line of both files into fresh pages, each costing a page fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// shadow's reading when shadow reads the line, else the Go tools' reading.
    pub range: Range,
    /// Where the owner, a user name or numeric uid, stands in the file's bytes, as shadow
    /// reads it (whitespace included), else as the Go tools do: [`SubidFile::owner`] reads it.
    owner: Span<u32>,
    /// 1-based line number.
    line: u32,
    /// How many bytes of leading whitespace of the owner the Go tools skip.
    go_skip: u16,
    shadow: ShadowReads,
    /// Whether the Go tools read the line.
    go_reads: bool,
}

impl Entry {
    /// 1-based line number.
    pub fn line(&self) -> usize {
        self.line as usize
    }
}

/// What [`SubidFile::check`] knows of one owner so far: its entry reaching furthest, and how
/// many of its entries reach the entry at hand.
struct OwnerSoFar<'a> {
    furthest: &'a Entry,
    active: usize,
}

/// FNV-1a, for the owners `check` counts: short keys from root's own files, where SipHash's
/// keyed defence costs half of a check and buys nothing.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Which shadow versions read a line as its entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShadowReads {
    /// Every version from 4.13 on, alike.
    All,
    /// Only older ones: extra fields (until 4.17), a negative number (until 4.14), ids past
    /// 4294967295 (until 4.19).
    OlderOnly,
    /// None: only the Go tools read it.
    Never,
}

impl ShadowReads {
    /// For a plain `owner:start:count` line in decimal.
    fn of_plain(range: Range) -> ShadowReads {
        if fits_id_t(range) {
            ShadowReads::All
        } else {
            ShadowReads::OlderOnly
        }
    }
}

/// The Go tools' reading of a line that shadow reads otherwise (`0200000`): taken too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SecondReading {
    pub line: usize,
    pub range: Range,
}

/// Whether two file names in one directory clash for shadow's way of replacing a file: one
/// name, or one is the other's `<name>+`, `<name>-`, `<name>.lock` or `<name>.<pid>` (or
/// nonrootd's `<name>.nonrootd-old`), which a replacement of the other makes or removes.
pub fn names_clash(a: &[u8], b: &[u8]) -> bool {
    let helper_of = |name: &[u8], of: &[u8]| {
        name.strip_prefix(of)
            .is_some_and(|rest| matches!(rest.first(), Some(b'+' | b'-' | b'.')))
    };
    a == b || helper_of(a, b) || helper_of(b, a)
}

/// The largest file read: positions in it fit in the `u32`s of [`Entry`] with room for the
/// lines a call appends. 64 MiB is some three million lines; shadow takes hours on a tenth.
pub const MAX_FILE_BYTES: usize = 64 << 20;

/// A file larger than [`MAX_FILE_BYTES`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooLarge {
    pub bytes: u64,
}

/// Whether a file of `bytes` may be read and written.
pub fn size_allowed(bytes: u64) -> Result<(), TooLarge> {
    if bytes > MAX_FILE_BYTES as u64 {
        return Err(TooLarge { bytes });
    }
    Ok(())
}

impl fmt::Display for TooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} bytes, more than the {} MiB nonrootd reads",
            self.bytes,
            MAX_FILE_BYTES >> 20
        )
    }
}

/// Something wrong in a file, for `check`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// No consumer reads this line; it is kept as it is. With other than three fields it
    /// makes the Go tools (Docker's userns-remap) refuse the whole file.
    Malformed { line: usize, breaks_go: bool },
    /// A NUL byte: shadow 4.19 and later refuse the whole file, older ones read this line and
    /// the next as one.
    Nul { line: usize },
    /// Consumers disagree about this line; it counts as taken all the same.
    Ambiguous { line: usize, why: String },
    /// A range of zero ids.
    Empty { line: usize },
    /// The range includes 4294967295, the invalid id.
    TouchesInvalid { line: usize },
    /// The range includes id 0: it maps the host's root.
    MapsRoot { line: usize },
    /// A numeric owner not written as shadow writes a uid (`00`, ` 0`, `+0`): shadow 4.20
    /// and later read it as `uid`, older shadow and Go tools as a name.
    NumericOwner { line: usize, owner: String, uid: u32 },
    /// The last line has no newline: shadow 4.19 and later refuse the whole file.
    NoFinalNewline { line: usize },
    /// Overlaps the range of another owner on `other_line`, and `others` more ranges of
    /// other owners.
    Overlap {
        line: usize,
        owner: String,
        other_line: usize,
        other_owner: String,
        others: usize,
    },
    /// The same owner twice over the same ids: `newuidmap` then fails with EINVAL.
    Duplicate {
        line: usize,
        owner: String,
        other_line: usize,
    },
}

impl Problem {
    pub fn line(&self) -> usize {
        match self {
            Problem::Malformed { line, .. }
            | Problem::Nul { line }
            | Problem::Ambiguous { line, .. }
            | Problem::Empty { line }
            | Problem::TouchesInvalid { line }
            | Problem::MapsRoot { line }
            | Problem::NumericOwner { line, .. }
            | Problem::NoFinalNewline { line }
            | Problem::Overlap { line, .. }
            | Problem::Duplicate { line, .. } => *line,
        }
    }
}

/// `LINE: message`; callers put the file name in front.
impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.line())?;
        match self {
            Problem::Malformed { breaks_go: false, .. } => {
                f.write_str("not OWNER:START:COUNT; no tool reads this line (kept as is)")
            }
            Problem::Malformed { breaks_go: true, .. } => f.write_str(
                "not OWNER:START:COUNT: shadow skips it, Docker and other Go tools refuse the whole file for it (userns-remap fails): fix or remove it",
            ),
            Problem::Nul { .. } => f.write_str(
                "a NUL byte: shadow 4.19 and later refuse the whole file, older shadow read this line and the next as one: remove it",
            ),
            Problem::Ambiguous { why, .. } => {
                write!(f, "{why}; counted as taken, rewrite it as OWNER:START:COUNT in decimal")
            }
            Problem::Empty { .. } => f.write_str("a range of 0 ids"),
            Problem::TouchesInvalid { .. } => f.write_str("range includes 4294967295, the invalid id"),
            Problem::MapsRoot { .. } => f.write_str("range includes id 0, which maps the host's root: remove it"),
            Problem::NumericOwner { owner, uid, .. } => write!(
                f,
                "owner {owner:?} is uid {uid} only to shadow 4.20 and later (a name to older shadow and Go tools): write it as {uid}"
            ),
            Problem::NoFinalNewline { .. } => {
                f.write_str("no newline at the end: shadow 4.19 and later refuse the whole file, end the line with one")
            }
            Problem::Overlap {
                owner,
                other_line,
                other_owner,
                others,
                ..
            } => {
                write!(
                    f,
                    "range of {owner:?} overlaps the range of {other_owner:?} on line {other_line}"
                )?;
                match others {
                    0 => Ok(()),
                    1 => f.write_str(" and 1 other"),
                    n => write!(f, " and {n} others"),
                }
            }
            Problem::Duplicate { owner, other_line, .. } => write!(
                f,
                "range of {owner:?} overlaps its own range on line {other_line} (newuidmap fails with EINVAL): remove one"
            ),
        }
    }
}

/// A parsed subuid or subgid file that remembers its bytes, to rewrite it strictly.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubidFile {
    bytes: Vec<u8>,
    /// How many lines, a last one without its newline included.
    lines: usize,
    /// The lines some consumer reads, in file order.
    pub entries: Vec<Entry>,
    /// Second readings of ambiguous lines, in file order.
    pub second_readings: Vec<SecondReading>,
    /// Malformed and ambiguous lines and NUL bytes, in file order.
    pub line_problems: Vec<Problem>,
    /// The first line holding a NUL byte: no allocation goes into such a file.
    pub nul_line: Option<usize>,
}

/// How one consumer reads a line: where the owner stands in the line, and the range.
struct Reading {
    owner: Span<usize>,
    range: Range,
}

/// shadow's reading of a line, which versions read it so, and whether it has fields past the
/// third (which shadow 4.18 and later refuse).
struct ShadowLine {
    reading: Reading,
    versions: ShadowReads,
    extra_fields: bool,
}

impl SubidFile {
    /// Reads a file leniently: what no consumer reads is reported and kept. Fails only on a
    /// file larger than [`MAX_FILE_BYTES`].
    pub fn parse(bytes: Vec<u8>) -> Result<SubidFile, TooLarge> {
        size_allowed(bytes.len() as u64)?;
        // Files of 100 000 lines are read per call. Lines usually take 16 bytes or more, and
        // pages never filled cost nothing; files of shorter lines grow the list, which glibc
        // moves with mremap, without copying.
        let mut entries = Vec::with_capacity(bytes.len() / 16 + 1);
        let mut second_readings = Vec::new();
        let mut line_problems = Vec::new();
        let mut nul_line = None;
        let mut lines = 0;
        let mut start = 0;
        while start < bytes.len() {
            let rest = &bytes[start..];
            let plain = plain_line(rest);
            let len = match &plain {
                Some((_, len)) => *len,
                None => rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len()),
            };
            let raw = &rest[..len];
            let line_start = start;
            start += len + 1;
            lines += 1;
            let line = lines;
            let entry = |reading: &Reading, shadow: ShadowReads, go_skip: usize, go_reads: bool| Entry {
                owner: position(line_start + reading.owner.start)..position(line_start + reading.owner.end),
                range: reading.range,
                line: position(line),
                go_skip: u16::try_from(go_skip).unwrap_or(u16::MAX),
                shadow,
                go_reads,
            };
            if let Some((plain, _)) = plain {
                entries.push(entry(&plain, ShadowReads::of_plain(plain.range), 0, true));
                continue;
            }
            // Its readings below are counted as taken; what readers make of it is the NUL's
            // problem, reported alone.
            let nul = raw.contains(&0);
            if nul {
                line_problems.push(Problem::Nul { line });
                nul_line.get_or_insert(line);
            }
            let (shadow, go) = (shadow_reading(raw), go_reading(raw));
            let (read, why) = match (shadow, go) {
                (None, None) => {
                    let (trimmed, _) = go_trim(raw);
                    if !nul && !trimmed.is_empty() && !trimmed.starts_with(b"#") {
                        let breaks_go = trimmed.split(|&b| b == b':').count() != 3;
                        line_problems.push(Problem::Malformed { line, breaks_go });
                    }
                    continue;
                }
                // The Go tools' owner is shadow's without its leading whitespace.
                (Some(s), Some(g)) => {
                    let why = if s.reading.range != g.range {
                        second_readings.push(SecondReading { line, range: g.range });
                        Some(format!(
                            "shadow reads ids {} (octal) but Go tools read {} (decimal)",
                            s.reading.range, g.range
                        ))
                    } else if g.owner != s.reading.owner {
                        let owner = |span: &Span<usize>| String::from_utf8_lossy(&raw[span.clone()]).into_owned();
                        Some(format!(
                            "shadow reads the owner {:?}, Go tools {:?}",
                            owner(&s.reading.owner),
                            owner(&g.owner)
                        ))
                    } else {
                        None
                    };
                    (entry(&s.reading, s.versions, g.owner.start, true), why)
                }
                (Some(s), None) => {
                    let why = if go_trim(raw).0.starts_with(b"#") {
                        "shadow reads this as a range of an owner named \"#…\", Go tools skip it as a comment"
                    } else if s.extra_fields {
                        "shadow before 4.18 reads this line, shadow 4.18 and later ignore it, Docker and other Go tools refuse the whole file for it (extra fields)"
                    } else {
                        "shadow reads this line, Go tools reject it (hex, a sign or spaces)"
                    };
                    (entry(&s.reading, s.versions, 0, false), Some(why.to_string()))
                }
                (None, Some(g)) => (
                    entry(&g, ShadowReads::Never, 0, true),
                    Some(
                        "Go tools read this line, shadow ignores it (spaces at an end, a leading +/- or too long)"
                            .into(),
                    ),
                ),
            };
            entries.push(read);
            if let Some(why) = why.filter(|_| !nul) {
                line_problems.push(Problem::Ambiguous { line, why });
            }
        }
        Ok(SubidFile {
            bytes,
            lines,
            entries,
            second_readings,
            line_problems,
            nul_line,
        })
    }

    /// The file as read.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Every range some consumer honours, including second readings.
    pub fn taken(&self) -> impl Iterator<Item = Range> + '_ {
        let seconds = self.second_readings.iter().map(|s| s.range);
        self.entries.iter().map(|e| e.range).chain(seconds)
    }

    /// The owner of `entry`, an entry of this file, as shadow reads it (else as the Go tools do).
    pub fn owner(&self, entry: &Entry) -> Cow<'_, str> {
        String::from_utf8_lossy(self.owner_bytes(entry))
    }

    fn owner_bytes(&self, entry: &Entry) -> &[u8] {
        &self.bytes[entry.owner.start as usize..entry.owner.end as usize]
    }

    /// The owner as the Go tools read it, if they read the line.
    fn go_owner_bytes(&self, entry: &Entry) -> Option<&[u8]> {
        let owner = self.owner_bytes(entry);
        if entry.go_reads {
            owner.get(usize::from(entry.go_skip)..)
        } else {
            None
        }
    }

    /// The entries of `tenant` (by name or by numeric uid) as every shadow version from 4.13
    /// on reads them: what newuidmap gives the tenant wherever it runs.
    pub fn owned_by<'a>(&'a self, tenant: &'a Tenant) -> impl Iterator<Item = &'a Entry> + 'a {
        self.entries.iter().filter(|e| self.gives_everywhere(e, tenant))
    }

    /// Whether every shadow version from 4.13 on reads `entry` as `tenant`'s.
    fn gives_everywhere(&self, entry: &Entry, tenant: &Tenant) -> bool {
        let owner = self.owner_bytes(entry);
        entry.shadow == ShadowReads::All && tenant.owns(owner) && uid_spelled_by_all(owner)
    }

    /// The entries that some reader (a shadow version or the Go tools) gives `tenant`. Only
    /// shadow 4.20 and later compare numeric owners by value, and they read only the lines
    /// every version reads; the others compare the owner as written.
    pub fn claimed_by<'a>(&'a self, tenant: &'a Tenant) -> impl Iterator<Item = &'a Entry> + 'a {
        self.entries.iter().filter(|e| {
            let by_shadow = match e.shadow {
                ShadowReads::All => tenant.owns(self.owner_bytes(e)),
                ShadowReads::OlderOnly => tenant.spelled(self.owner_bytes(e)),
                ShadowReads::Never => false,
            };
            // Where the Go tools read shadow's very owner, shadow's reading already said it.
            let go_differs = e.shadow == ShadowReads::Never || e.go_skip > 0;
            by_shadow || go_differs && self.go_owner_bytes(e).is_some_and(|owner| tenant.spelled(owner))
        })
    }

    /// Everything wrong in the file: malformed and ambiguous lines, empty ranges, ranges
    /// including id 0 or the invalid id, numeric owners not written as uids, a last line
    /// without its newline, overlaps between owners and within one owner.
    pub fn check(&self) -> Vec<Problem> {
        let mut problems = self.line_problems.clone();
        for e in &self.entries {
            let line = e.line();
            if e.range.count == 0 {
                problems.push(Problem::Empty { line });
            } else {
                if e.range.start == 0 {
                    problems.push(Problem::MapsRoot { line });
                }
                if e.range.touches_invalid() {
                    problems.push(Problem::TouchesInvalid { line });
                }
            }
            let owner = self.owner_bytes(e);
            // Not as shadow writes a uid (`uid_spelled_by_all`, with the uid already parsed).
            if let Some(uid) = shadow_uid(owner).filter(|_| e.shadow != ShadowReads::Never)
                && owner != uid.to_string().as_bytes()
            {
                let owner = self.owner(e).into_owned();
                problems.push(Problem::NumericOwner { line, owner, uid });
            }
        }
        if self.bytes.last().is_some_and(|b| *b != b'\n') {
            problems.push(Problem::NoFinalNewline { line: self.lines });
        }
        let mut sorted: Vec<&Entry> = self.entries.iter().filter(|e| e.range.count > 0).collect();
        sorted.sort_by_key(|e| (e.range.start, e.line()));
        // Each entry is checked against those before it in `sorted` that reach its start
        // (`active`, counted per owner): it names the one of another owner reaching furthest
        // and counts the others; one of its own owner is a duplicate.
        let mut furthest: Option<&Entry> = None;
        let mut furthest_other: Option<&Entry> = None;
        // Sized for one entry per owner, as files written by useradd or nonrootd have.
        let mut owners: HashMap<&[u8], OwnerSoFar<'_>, BuildHasherDefault<Fnv>> =
            HashMap::with_capacity_and_hasher(sorted.len(), BuildHasherDefault::default());
        let mut active: BinaryHeap<Reverse<(u64, usize)>> = BinaryHeap::new();
        let owner = |e: &Entry| self.owner(e).into_owned();
        let same_owner = |a: &Entry, b: &Entry| self.owner_bytes(a) == self.owner_bytes(b);
        for (index, &e) in sorted.iter().enumerate() {
            while let Some(&Reverse((last, ended))) = active.peek()
                && last < e.range.start
            {
                active.pop();
                if let Some(ended) = owners.get_mut(self.owner_bytes(sorted[ended])) {
                    ended.active -= 1;
                }
            }
            let own = owners
                .entry(self.owner_bytes(e))
                .or_insert(OwnerSoFar { furthest: e, active: 0 });
            if let Some(dup) = Some(own.furthest).filter(|o| o.line() != e.line() && o.range.overlaps(e.range)) {
                let (first, second) = if dup.line() < e.line() { (dup, e) } else { (e, dup) };
                problems.push(Problem::Duplicate {
                    line: second.line(),
                    owner: owner(second),
                    other_line: first.line(),
                });
            }
            let other = if furthest.is_some_and(|f| !same_owner(f, e)) {
                furthest
            } else {
                furthest_other
            };
            let others = active.len() - own.active;
            if e.range.last() > own.furthest.range.last() {
                own.furthest = e;
            }
            own.active += 1;
            if let Some(o) = other.filter(|o| o.range.overlaps(e.range)) {
                problems.push(Problem::Overlap {
                    line: e.line(),
                    owner: owner(e),
                    other_line: o.line(),
                    other_owner: owner(o),
                    others: others.saturating_sub(1),
                });
            }
            active.push(Reverse((e.range.last(), index)));
            let reaches = |x: Option<&Entry>| x.is_none_or(|x| e.range.last() > x.range.last());
            match furthest {
                Some(f) if reaches(furthest) => {
                    if !same_owner(f, e) {
                        furthest_other = Some(f);
                    }
                    furthest = Some(e);
                }
                None => furthest = Some(e),
                Some(f) => {
                    if !same_owner(f, e) && reaches(furthest_other) {
                        furthest_other = Some(e);
                    }
                }
            }
        }
        problems.sort_by_key(Problem::line);
        problems
    }

    /// Appends `owner:start:count` lines, read as they will be after writing: every other byte
    /// is kept, and the file ends in a newline.
    pub fn append(&mut self, owner: &str, ranges: &[Range]) {
        if ranges.is_empty() {
            return;
        }
        if !self.bytes.is_empty() && !self.bytes.ends_with(b"\n") {
            self.bytes.push(b'\n');
        }
        for r in ranges {
            let start = self.bytes.len();
            self.bytes
                .extend_from_slice(format!("{owner}:{}:{}\n", r.start, r.count).as_bytes());
            self.lines += 1;
            self.entries.push(Entry {
                owner: position(start)..position(start + owner.len()),
                range: *r,
                line: position(self.lines),
                go_skip: 0,
                shadow: ShadowReads::of_plain(*r),
                go_reads: true,
            });
        }
    }

    /// The file without the lines some reader gives `tenant` ([`SubidFile::claimed_by`]), and
    /// those lines; every other line kept as is.
    pub fn without<'a>(&'a self, tenant: &'a Tenant) -> (Vec<u8>, Vec<&'a Entry>) {
        let removed: Vec<&Entry> = self.claimed_by(tenant).collect();
        let mut out = Vec::with_capacity(self.bytes.len());
        let mut next = removed.iter().map(|e| e.line()).peekable();
        for (index, line) in self.bytes.split_inclusive(|b| *b == b'\n').enumerate() {
            if next.peek() == Some(&(index + 1)) {
                next.next();
            } else {
                out.extend_from_slice(line);
            }
        }
        if !out.is_empty() && !out.ends_with(b"\n") {
            out.push(b'\n');
        }
        (out, removed)
    }
}

/// A byte offset or line number of a file of at most [`MAX_FILE_BYTES`] plus the lines a
/// call appends, which always fits.
fn position(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The common line both readings agree on, read in one pass from the start of `rest`:
/// `owner:start:count` up to a newline or the end, with a printable owner not starting with
/// `#`, `+` or `-`, and decimal numbers without leading zeros. Also returns the line's
/// length without its newline.
fn plain_line(rest: &[u8]) -> Option<(Reading, usize)> {
    let owner = rest.iter().position(|b| !b.is_ascii_graphic() || *b == b':')?;
    if owner == 0 || rest[owner] != b':' || matches!(rest[0], b'#' | b'+' | b'-') {
        return None;
    }
    let (start, colon) = plain_decimal(rest, owner + 1)?;
    let (count, end) = plain_decimal(rest, colon + 1)?;
    let ends = rest.get(colon) == Some(&b':') && rest.get(end).is_none_or(|b| *b == b'\n');
    let reading = Reading {
        owner: 0..owner,
        range: Range::new(start, count),
    };
    (ends && end < 1024).then_some((reading, end))
}

/// The decimal number at `rest[from..]` (1 to 18 digits, no leading zero) and where it ends.
fn plain_decimal(rest: &[u8], from: usize) -> Option<(u64, usize)> {
    let mut value = 0u64;
    let mut end = from;
    while let Some(digit) = rest.get(end).map(|b| b.wrapping_sub(b'0')).filter(|d| *d <= 9) {
        if end - from == 18 {
            return None;
        }
        value = value * 10 + u64::from(digit);
        end += 1;
    }
    let len = end - from;
    (len == 1 || (len > 1 && rest[from] != b'0')).then_some((value, end))
}

/// shadow's `subordinate_parse`: the raw line (up to a NUL) split at `:`, at least three
/// non-empty fields, numbers as shadow's `getulong`. Lines starting with `+` or `-` are NIS
/// entries shadow does not parse. Read by every version when 4.20's stricter rules agree:
/// exactly three fields, no negative number, ids within 0…4294967295.
fn shadow_reading(raw: &[u8]) -> Option<ShadowLine> {
    let raw = &raw[..raw.iter().position(|&b| b == 0).unwrap_or(raw.len())];
    if raw.len() >= 1024 || raw.starts_with(b"+") || raw.starts_with(b"-") {
        return None;
    }
    let mut fields = raw.splitn(4, |&b| b == b':');
    let (owner, start, count) = (fields.next()?, fields.next()?, fields.next()?);
    if owner.is_empty() || start.is_empty() || count.is_empty() {
        return None;
    }
    let extra_fields = fields.next().is_some();
    let range = Range::new(strtoul(start)?, strtoul(count)?);
    // strtoul wraps a negative number around; shadow 4.15 and later refuse it.
    let wraps = |field: &[u8], value: u64| field.trim_ascii_start().starts_with(b"-") && value != 0;
    let all = !extra_fields && !wraps(start, range.start) && !wraps(count, range.count) && fits_id_t(range);
    Some(ShadowLine {
        reading: Reading {
            owner: 0..owner.len(),
            range,
        },
        versions: if all { ShadowReads::All } else { ShadowReads::OlderOnly },
        extra_fields,
    })
}

/// Whether shadow 4.20 and later read `range` (`id_t` ids: start and count up to 4294967295,
/// the last id at most 4294967295); older ones read anything up to 2⁶⁴ − 1.
fn fits_id_t(range: Range) -> bool {
    let max = u64::from(u32::MAX);
    range.start <= max && range.count <= max && range.start + range.count <= max + 1
}

/// A numeric owner as shadow 4.20 and later read it (`get_uid`): whitespace and a sign
/// allowed in front, then decimal digits, leading zeros included, up to 4294967295; `-0` is 0.
/// Older versions compare owners with the uid written as `%lu`.
fn shadow_uid(owner: &[u8]) -> Option<u32> {
    // C's isspace: space, \t, \n, \v, \f, \r.
    let blanks = owner.iter().take_while(|b| matches!(b, b' ' | b'\t'..=b'\r')).count();
    let s = &owner[blanks..];
    let (negative, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, s),
    };
    if digits.is_empty() {
        return None;
    }
    let mut uid: u32 = 0;
    for &b in digits {
        let digit = char::from(b).to_digit(10)?;
        uid = uid.checked_mul(10)?.checked_add(digit)?;
    }
    (!negative || uid == 0).then_some(uid)
}

/// Whether every shadow version reads `owner` alike: a name, or a uid written as `%lu`.
fn uid_spelled_by_all(owner: &[u8]) -> bool {
    shadow_uid(owner).is_none_or(|uid| owner == uid.to_string().as_bytes())
}

/// The Go tools' reading: the line trimmed, `#` lines skipped, exactly three fields, decimal.
fn go_reading(raw: &[u8]) -> Option<Reading> {
    let (line, lead) = go_trim(raw);
    if line.starts_with(b"#") {
        return None;
    }
    let fields: Vec<&[u8]> = line.split(|&b| b == b':').collect();
    let [owner, start, count] = fields[..] else {
        return None;
    };
    if owner.is_empty() {
        return None;
    }
    let decimal = |s: &[u8]| {
        let digits = s.strip_prefix(b"+").unwrap_or(s);
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(digits)
            .ok()?
            .parse::<u64>()
            .ok()
            .filter(|&n| n <= i64::MAX as u64)
    };
    Some(Reading {
        owner: lead..lead + owner.len(),
        range: Range::new(decimal(start)?, decimal(count)?),
    })
}

/// Go's `strings.TrimSpace`: Unicode white space (ASCII's, `\v`, U+0085, U+00A0 and the
/// others) off both ends, as far as the bytes decode as UTF-8 (one that does not stops it).
/// Also returns how many bytes went from the front.
fn go_trim(raw: &[u8]) -> (&[u8], usize) {
    let lead = raw.utf8_chunks().next().map_or(0, |chunk| {
        let valid = chunk.valid();
        valid.len() - valid.trim_start_matches(char::is_whitespace).len()
    });
    let rest = &raw[lead..];
    let end = match rest.utf8_chunks().last() {
        Some(chunk) if chunk.invalid().is_empty() => {
            let valid = chunk.valid();
            rest.len() - (valid.len() - valid.trim_end_matches(char::is_whitespace).len())
        }
        _ => rest.len(),
    };
    (&rest[..end], lead)
}

/// glibc's `strtoul(s, &end, 0)` on 64 bits, requiring the whole string to be a number
/// (shadow's `getulong`): leading whitespace and a sign allowed, `0x` hex, `0` octal.
pub fn strtoul(s: &[u8]) -> Option<u64> {
    let s = s.trim_ascii_start();
    let (negative, s) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let hex = s.len() > 2 && (s.starts_with(b"0x") || s.starts_with(b"0X")) && s[2].is_ascii_hexdigit();
    let (radix, digits) = match s {
        _ if hex => (16, &s[2..]),
        [b'0', ..] => (8, s),
        _ => (10, s),
    };
    if digits.is_empty() {
        return None;
    }
    let mut value: u64 = 0;
    for &b in digits {
        let digit = char::from(b).to_digit(radix)?;
        value = value.checked_mul(u64::from(radix))?.checked_add(u64::from(digit))?;
    }
    Some(if negative { value.wrapping_neg() } else { value })
}

/// A number from login.defs text (`SUB_UID_MIN 100000`), read like shadow's `def_load` and
/// `getdef_ulong`: the last line setting `key` wins, and its value (up to a `"`, after
/// blanks and quotes) must be wholly a number (`0x` hex and `0` octal too). `None` when
/// unset or when that value is not a number (`100000 # comment`): shadow then takes its
/// default.
pub fn login_defs_number(text: &str, key: &str) -> Option<u64> {
    let value = text.lines().rev().find_map(|line| {
        let name = line.trim_ascii_end().trim_start_matches([' ', '\t']);
        let (name, rest) = name.split_once([' ', '\t'])?;
        let value = rest.trim_start_matches([' ', '\t', '"']);
        (name == key).then(|| value.split('"').next().unwrap_or_default())
    })?;
    strtoul(value.as_bytes())
}

/// A tenant as it is looked up in the files: its own spelling, and the other spelling of
/// the same user when known (the numeric uid of a name, or the name of a uid).
#[derive(Clone, Debug)]
pub struct Tenant {
    owner: String,
    is_uid: bool,
    /// The other spelling, given or looked up on first need; `Err` when the lookup failed.
    alias: OnceCell<Result<Option<String>, String>>,
    /// Looks up the other spelling of `owner` on the host.
    lookup: Option<AliasLookup>,
}

/// Finds the other spelling of a tenant's owner on the host (the host's user database):
/// `Ok(None)` when there is none, `Err` when the database could not answer.
pub type AliasLookup = fn(owner: &str) -> Result<Option<String>, String>;

/// How a tenant was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Spelling {
    Name(String),
    Uid(u32),
}

impl Spelling {
    /// A valid user name (`^[a-z_][a-z0-9_-]*[$]?$`, at most 32 bytes) or a decimal uid
    /// without leading zeros below 4294967295.
    pub fn parse(text: &str) -> Result<Spelling, String> {
        if text.bytes().all(|b| b.is_ascii_digit()) && !text.is_empty() {
            return match text.parse::<u32>() {
                Ok(uid) if uid < u32::MAX && (text == "0" || !text.starts_with('0')) => Ok(Spelling::Uid(uid)),
                _ => Err(format!("{text:?} is not a valid uid")),
            };
        }
        check_user_name(text)?;
        Ok(Spelling::Name(text.to_string()))
    }
}

impl Tenant {
    /// `alias` is the other spelling of the same user, if the host knows it.
    pub fn new(spelling: &Spelling, alias: Option<String>) -> Tenant {
        Tenant {
            alias: OnceCell::from(Ok(alias)),
            ..Tenant::with_lookup(spelling, None)
        }
    }

    /// A tenant whose other spelling `lookup` finds when a line could be written with it:
    /// a name's uid only for numeric owners (a user database holding 100 000 users takes
    /// milliseconds to search), a uid's name for any other owner.
    pub fn looked_up(spelling: &Spelling, lookup: AliasLookup) -> Tenant {
        Tenant::with_lookup(spelling, Some(lookup))
    }

    fn with_lookup(spelling: &Spelling, lookup: Option<AliasLookup>) -> Tenant {
        let (owner, is_uid) = match spelling {
            Spelling::Name(name) => (name.clone(), false),
            Spelling::Uid(uid) => (uid.to_string(), true),
        };
        Tenant {
            owner,
            is_uid,
            alias: OnceCell::new(),
            lookup,
        }
    }

    /// What new lines are written with.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Whether a line's owner is this tenant: its spelling, or a numeric owner of the same
    /// uid by value as shadow reads it (`00` is uid 0), or its name when spelled as a uid.
    pub fn owns(&self, owner: impl AsRef<[u8]>) -> bool {
        let owner = owner.as_ref();
        if owner == self.owner.as_bytes() {
            return true;
        }
        match shadow_uid(owner) {
            Some(uid) => {
                let spelled = if self.is_uid {
                    Some(self.owner.as_str())
                } else {
                    self.alias()
                };
                spelled.and_then(|uid| uid.parse::<u32>().ok()) == Some(uid)
            }
            None => self.is_uid && self.alias().is_some_and(|alias| alias.as_bytes() == owner),
        }
    }

    /// Whether `owner` is written as this tenant: its spelling or the other one (name or uid).
    /// The other spelling is looked up only for an owner that could be it (a uid for a name,
    /// a name for a uid): a lookup may read all of /etc/passwd.
    pub fn spelled(&self, owner: impl AsRef<[u8]>) -> bool {
        let owner = owner.as_ref();
        if owner == self.owner.as_bytes() {
            return true;
        }
        let numeric = !owner.is_empty() && owner.iter().all(u8::is_ascii_digit);
        numeric != self.is_uid && self.alias().is_some_and(|alias| alias.as_bytes() == owner)
    }

    /// A failed lookup counts as no other spelling here; [`Tenant::lookup_failure`] tells.
    fn alias(&self) -> Option<&str> {
        let looked_up = self
            .alias
            .get_or_init(|| self.lookup.map_or(Ok(None), |lookup| lookup(&self.owner)));
        looked_up.as_ref().ok().and_then(Option::as_deref)
    }

    /// Why the other spelling could not be looked up, when a line needed it: which lines are
    /// the tenant's is then unknown, and nothing planned with this tenant may be written.
    pub fn lookup_failure(&self) -> Option<&str> {
        self.alias
            .get()
            .and_then(|alias| alias.as_ref().err())
            .map(String::as_str)
    }
}

/// A released range that is not handed out again until its quarantine ends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantined {
    pub owner: String,
    pub kind: Kind,
    pub start: u64,
    pub count: u64,
    /// Seconds since the Unix epoch.
    pub released_at: u64,
}

impl Quarantined {
    /// Whether the range is still held back at `now` (seconds since the epoch).
    pub fn active(&self, now: u64, days: u32) -> bool {
        now < self.released_at.saturating_add(u64::from(days) * SECONDS_PER_DAY)
    }

    pub fn range(&self) -> Range {
        Range::new(self.start, self.count)
    }

    /// When the quarantine ends (seconds since the epoch).
    pub fn until(&self, days: u32) -> u64 {
        self.released_at.saturating_add(u64::from(days) * SECONDS_PER_DAY)
    }
}

/// The ids of `r` that a user namespace can map (up to 4294967294), which is what a release
/// holds back: a count of `-1` as older shadow read it is not 2⁶⁴ − 1 ids held.
pub fn mappable(r: Range) -> Range {
    Range::new(r.start, r.count.min(INVALID_ID.saturating_sub(r.start)))
}

/// The date of `secs` (seconds since the epoch) in UTC, `YYYY-MM-DD`.
pub fn utc_date(secs: u64) -> String {
    // Howard Hinnant's civil_from_days, for days since 1970-01-01.
    let days = (secs / SECONDS_PER_DAY) as i64 + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Where new ranges may go: `min` … `max`, inclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub min: u32,
    pub max: u32,
}

impl Limits {
    /// How many ids of `ranges`, overlapping or not, lie within the limits.
    pub fn ids_within(self, ranges: &[Range]) -> u64 {
        let (min, max) = (u64::from(self.min), u64::from(self.max));
        let within = |r: &Range| (r.last().min(max) + 1).saturating_sub(r.start.max(min));
        Taken::new(ranges.iter().copied()).0.iter().map(within).sum()
    }

    /// Whether every id of `r`, a non-empty range, lies within the limits.
    fn contain(self, r: Range) -> bool {
        r.count > 0 && r.start >= u64::from(self.min) && r.last() <= u64::from(self.max)
    }
}

/// Taken ids as sorted, merged, non-empty ranges.
#[derive(Clone, Debug, Default)]
struct Taken(Vec<Range>);

impl Taken {
    fn new(ranges: impl IntoIterator<Item = Range>) -> Taken {
        // A file written first fit lists its ranges in order, mostly adjoining: merged as they
        // come they need no list of all ranges. What comes out of order (a second list,
        // quarantined ranges, holes refilled) is sorted after that merge, when it is short.
        let mut merged = Vec::new();
        let mut in_order = true;
        for r in ranges.into_iter().filter(|r| r.count > 0) {
            in_order &= merged.last().is_none_or(|m: &Range| m.start <= r.start);
            push_merged(&mut merged, r);
        }
        if !in_order {
            merged.sort_unstable();
            let unsorted = std::mem::take(&mut merged);
            for r in unsorted {
                push_merged(&mut merged, r);
            }
        }
        Taken(merged)
    }

    fn with(&self, more: &[Range]) -> Taken {
        Taken::new(self.0.iter().chain(more).copied())
    }

    /// Whether no id of `r` is taken and `r` stays clear of the invalid id.
    fn is_free(&self, r: Range) -> bool {
        let after = self.0.partition_point(|t| t.last() < r.start);
        !r.touches_invalid() && self.0.get(after).is_none_or(|t| !t.overlaps(r))
    }

    /// The lowest start ≥ min of `count` free ids ending ≤ max.
    fn first_fit(&self, limits: Limits, count: u64) -> Option<u64> {
        let max = u64::from(limits.max).min(INVALID_ID - 1);
        let mut low = u64::from(limits.min);
        let first = self.0.partition_point(|t| t.last() < low);
        for t in &self.0[first..] {
            if t.start > max {
                break;
            }
            if t.start.saturating_sub(low) >= count {
                break;
            }
            low = low.max(t.last().saturating_add(1));
        }
        let fits = count > 0 && low.checked_add(count - 1).is_some_and(|last| last <= max);
        fits.then_some(low)
    }
}

/// Adds `r` to `merged`, joining it with the last range when they overlap or adjoin and `r`
/// starts no earlier; a range that starts earlier is pushed as it is.
fn push_merged(merged: &mut Vec<Range>, r: Range) {
    match merged.last_mut() {
        Some(m) if m.start <= r.start && r.start <= m.last().saturating_add(1) => {
            // Saturating: 0 to u64::MAX has no count; ids that high are never handed out.
            m.count = (m.last().max(r.last()) - m.start).saturating_add(1);
        }
        _ => merged.push(r),
    }
}

/// Why a tenant cannot get what it asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AllocError {
    /// The tenant owns fewer ids than asked in `kind`, from line `line` on (the other file,
    /// if it owns nothing there, would get the same); `--grow` adds a second range.
    TooSmall {
        kind: Kind,
        line: usize,
        owned: u64,
        asked: u64,
    },
    /// Line `line` of `kind` is the tenant's to some readers only: a new range would give it
    /// two to those.
    Unclear { kind: Kind, line: usize },
    /// Line `line` of `kind` holds a NUL byte: shadow 4.19 and later cannot read that file,
    /// older ones read it and the next line as one, so a range added there is not what they
    /// see.
    Nul { kind: Kind, line: usize },
    /// No free run of `count` ids between min and max.
    Full { count: u64, limits: Limits },
}

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllocError::TooSmall {
                kind,
                line,
                owned,
                asked,
            } => write!(
                f,
                "owns {owned} ids in {kind} (line {line}), fewer than the {asked} asked: pass --grow to add a second range, or ask for at most {owned}"
            ),
            AllocError::Full { count, limits } => write!(
                f,
                "no {count} free ids left between {} and {} in both files: raise [subids] max or release a tenant",
                limits.min, limits.max
            ),
            AllocError::Unclear { kind, line } => write!(
                f,
                "line {line} of {kind} is the tenant's to some readers only (see nonrootctl subids check): fix or remove it first"
            ),
            AllocError::Nul { kind, line } => write!(
                f,
                "line {line} of {kind} holds a NUL byte, which shadow cannot read past: remove it first"
            ),
        }
    }
}

/// What an allocation changes, and what the tenant owns afterwards.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub subuid: Vec<Range>,
    pub subgid: Vec<Range>,
    pub add_subuid: Vec<Range>,
    pub add_subgid: Vec<Range>,
}

impl Plan {
    pub fn changes(&self) -> bool {
        !self.add_subuid.is_empty() || !self.add_subgid.is_empty()
    }
}

/// Everything an allocation looks at.
pub struct Request<'a> {
    pub subuid: &'a SubidFile,
    pub subgid: &'a SubidFile,
    /// Ranges still in quarantine; taken in both files.
    pub quarantined: &'a [Range],
    pub limits: Limits,
    pub tenant: &'a Tenant,
    pub count: u32,
    pub grow: bool,
}

/// Plans an allocation.
///
/// A tenant owning nothing gets the lowest start free in both files. A tenant owning ranges
/// keeps them; if it owns ranges in one file only, the other gets the same starts where free,
/// else the lowest free ones. Owning fewer than `count` ids is an error unless `grow`, which
/// adds the difference as a second range (one start for both files when both lack the same).
pub fn plan(req: &Request<'_>) -> Result<Plan, AllocError> {
    for (kind, file) in [(Kind::Subuid, req.subuid), (Kind::Subgid, req.subgid)] {
        if let Some(line) = file.nul_line {
            return Err(AllocError::Nul { kind, line });
        }
    }
    // The tenant's ranges; a line only some readers give it stops the plan.
    let owned = |kind, file: &SubidFile| -> Result<Vec<Range>, AllocError> {
        let mut ranges = Vec::new();
        for e in file.claimed_by(req.tenant) {
            if !file.gives_everywhere(e, req.tenant) {
                return Err(AllocError::Unclear { kind, line: e.line() });
            }
            if e.range.count > 0 {
                ranges.push(e.range);
            }
        }
        Ok(ranges)
    };
    let (uid_owned, gid_owned) = (owned(Kind::Subuid, req.subuid)?, owned(Kind::Subgid, req.subgid)?);
    // Where the tenant's first range of a file is, for a refusal that names it.
    let first_line = |file: &SubidFile| {
        let mut claimed = file.claimed_by(req.tenant);
        claimed.find(|e| e.range.count > 0).map_or(0, |e| e.line())
    };
    let uid_taken = Taken::new(req.subuid.taken().chain(req.quarantined.iter().copied()));
    let gid_taken = Taken::new(req.subgid.taken().chain(req.quarantined.iter().copied()));
    let count = u64::from(req.count);
    let mut plan = Plan::default();
    if uid_owned.is_empty() && gid_owned.is_empty() {
        let both = uid_taken.with(&gid_taken.0);
        let start = both.first_fit(req.limits, count).ok_or(AllocError::Full {
            count,
            limits: req.limits,
        })?;
        plan.add_subuid.push(Range::new(start, count));
        plan.add_subgid.push(Range::new(start, count));
    } else if gid_owned.is_empty() {
        plan.add_subgid = mirror(&uid_owned, &gid_taken, req.limits)?;
    } else if uid_owned.is_empty() {
        plan.add_subuid = mirror(&gid_owned, &uid_taken, req.limits)?;
    }
    plan.subuid = [&uid_owned[..], &plan.add_subuid[..]].concat();
    plan.subgid = [&gid_owned[..], &plan.add_subgid[..]].concat();
    let total = |ranges: &[Range]| ranges.iter().map(|r| r.count).sum::<u64>();
    let uid_need = count.saturating_sub(total(&plan.subuid));
    let gid_need = count.saturating_sub(total(&plan.subgid));
    // A file the tenant owns nothing in got a mirror of the other: the other is to blame.
    for (kind, need, ranges, file) in [
        (Kind::Subuid, uid_need, &uid_owned, req.subuid),
        (Kind::Subgid, gid_need, &gid_owned, req.subgid),
    ] {
        if need > 0 && !req.grow && !ranges.is_empty() {
            return Err(AllocError::TooSmall {
                kind,
                line: first_line(file),
                owned: total(ranges),
                asked: count,
            });
        }
    }
    let uid_taken = uid_taken.with(&plan.add_subuid);
    let gid_taken = gid_taken.with(&plan.add_subgid);
    let full = |count| AllocError::Full {
        count,
        limits: req.limits,
    };
    let mut grown = Vec::new();
    if uid_need > 0 && uid_need == gid_need {
        let start = uid_taken
            .with(&gid_taken.0)
            .first_fit(req.limits, uid_need)
            .ok_or(full(uid_need))?;
        grown.push((Kind::Subuid, Range::new(start, uid_need)));
        grown.push((Kind::Subgid, Range::new(start, uid_need)));
    } else {
        if uid_need > 0 {
            let start = uid_taken.first_fit(req.limits, uid_need).ok_or(full(uid_need))?;
            grown.push((Kind::Subuid, Range::new(start, uid_need)));
        }
        if gid_need > 0 {
            let start = gid_taken.first_fit(req.limits, gid_need).ok_or(full(gid_need))?;
            grown.push((Kind::Subgid, Range::new(start, gid_need)));
        }
    }
    for (kind, range) in grown {
        let (all, added) = match kind {
            Kind::Subuid => (&mut plan.subuid, &mut plan.add_subuid),
            Kind::Subgid => (&mut plan.subgid, &mut plan.add_subgid),
        };
        all.push(range);
        added.push(range);
    }
    Ok(plan)
}

/// The ranges of one file copied into the other: same start where free there and within the
/// limits (never 0 from `acme:0:65536`), else first fit.
fn mirror(ranges: &[Range], taken: &Taken, limits: Limits) -> Result<Vec<Range>, AllocError> {
    let mut taken = taken.clone();
    let mut out = Vec::new();
    for &r in ranges {
        let start = if limits.contain(r) && taken.is_free(r) {
            r.start
        } else {
            taken
                .first_fit(limits, r.count)
                .ok_or(AllocError::Full { count: r.count, limits })?
        };
        let range = Range::new(start, r.count);
        taken = taken.with(&[range]);
        out.push(range);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> SubidFile {
        SubidFile::parse(text.as_bytes().to_vec()).unwrap()
    }

    fn tenant(name: &str) -> Tenant {
        Tenant::new(&Spelling::parse(name).unwrap(), None)
    }

    const LIMITS: Limits = Limits {
        min: 100_000,
        max: 600_100_000,
    };

    #[test]
    fn strtoul_reads_like_shadow() {
        let cases: &[(&str, Option<u64>)] = &[
            ("100000", Some(100_000)),
            ("0200000", Some(65536)),
            ("0x186a0", Some(100_000)),
            ("0X186A0", Some(100_000)),
            (" 12", Some(12)),
            ("+5", Some(5)),
            ("-1", Some(u64::MAX)),
            ("0", Some(0)),
            ("08", None),
            ("0x", None),
            ("12 ", None),
            ("", None),
            (" ", None),
            ("1e3", None),
            ("18446744073709551616", None),
        ];
        for (text, want) in cases {
            assert_eq!(strtoul(text.as_bytes()), *want, "{text:?}");
        }
    }

    #[test]
    fn lenient_reading_table() {
        // (line, entry owner/start/count/other reading, problem substring)
        type Case = (
            &'static str,
            Option<(&'static str, u64, u64, Option<u64>)>,
            Option<&'static str>,
        );
        let cases: &[Case] = &[
            ("a:100000:65536", Some(("a", 100_000, 65536, None)), None),
            (
                "a:0200000:65536",
                Some(("a", 65536, 65536, Some(200_000))),
                Some("octal"),
            ),
            (
                "a:0x186a0:65536",
                Some(("a", 100_000, 65536, None)),
                Some("Go tools reject"),
            ),
            ("#a:100000:65536", Some(("#a", 100_000, 65536, None)), Some("comment")),
            (
                "a:100000:65536   ",
                Some(("a", 100_000, 65536, None)),
                Some("shadow ignores"),
            ),
            (
                "a:100000:65536\r",
                Some(("a", 100_000, 65536, None)),
                Some("shadow ignores"),
            ),
            (
                "a:100000:65536:x",
                Some(("a", 100_000, 65536, None)),
                Some("extra fields"),
            ),
            (
                "+a:100000:65536",
                Some(("+a", 100_000, 65536, None)),
                Some("shadow ignores"),
            ),
            ("a:100000:0", Some(("a", 100_000, 0, None)), Some("0 ids")),
            ("a:4294967295:1", Some(("a", INVALID_ID, 1, None)), Some("4294967295")),
            ("a:100000", None, Some("Go tools refuse the whole file")),
            ("a::1", None, Some("no tool reads")),
            ("garbage", None, Some("Go tools refuse the whole file")),
            // Go's TrimSpace takes Unicode white space off: \v, NEL, no-break and ideographic
            // spaces; a byte that is not UTF-8 stops it.
            (
                "a:100000:65536\x0b",
                Some(("a", 100_000, 65536, None)),
                Some("shadow ignores"),
            ),
            (
                "a:100000:65536\u{a0}",
                Some(("a", 100_000, 65536, None)),
                Some("shadow ignores"),
            ),
            (
                "\u{85}\u{3000}a:100000:65536",
                Some(("\u{85}\u{3000}a", 100_000, 65536, None)),
                Some("Go tools \"a\""),
            ),
            ("\u{a0}", None, None),
            ("a:1:\u{a0}1", None, Some("no tool reads")),
            ("a:01:5", Some(("a", 1, 5, None)), None),
            (
                "a:1234567890123456789:1",
                Some(("a", 1_234_567_890_123_456_789, 1, None)),
                Some("4294967295"),
            ),
            (
                " a :100000:65536",
                Some((" a ", 100_000, 65536, None)),
                Some("shadow reads the owner \" a \", Go tools \"a \""),
            ),
            ("00:100000:5", Some(("00", 100_000, 5, None)), Some("write it as 0")),
            ("a:0:5", Some(("a", 0, 5, None)), Some("host's root")),
            ("# a comment", None, None),
            ("", None, None),
            ("   ", None, None),
        ];
        for (line, want, problem) in cases {
            let parsed = file(&format!("{line}\n"));
            let got = parsed.entries.first().map(|e| {
                assert_eq!(e.line(), 1);
                (
                    parsed.owner(e).into_owned(),
                    e.range.start,
                    e.range.count,
                    parsed.second_readings.first().map(|s| s.range.start),
                )
            });
            let want = want.map(|(owner, start, count, other)| (owner.to_string(), start, count, other));
            assert_eq!(got, want, "{line:?}");
            let problems: Vec<String> = parsed.check().iter().map(|p| p.to_string()).collect();
            match problem {
                Some(p) => assert!(problems.len() == 1 && problems[0].contains(p), "{line:?}: {problems:?}"),
                None => assert!(problems.is_empty(), "{line:?}: {problems:?}"),
            }
        }
    }

    #[test]
    fn check_reports_overlaps_with_both_lines() {
        let f = file("a:100000:65536\nb:150000:10\nc:300000:10\na:300005:10\nc:300000:1\nb:150005:10\n");
        let problems: Vec<String> = f.check().iter().map(|p| p.to_string()).collect();
        assert_eq!(
            problems,
            [
                "2: range of \"b\" overlaps the range of \"a\" on line 1",
                "4: range of \"a\" overlaps the range of \"c\" on line 3",
                "5: range of \"c\" overlaps its own range on line 3 (newuidmap fails with EINVAL): remove one",
                "6: range of \"b\" overlaps its own range on line 2 (newuidmap fails with EINVAL): remove one",
                "6: range of \"b\" overlaps the range of \"a\" on line 1",
            ]
        );
    }

    #[test]
    fn first_fit_table() {
        // (taken ranges, count, expected start)
        type Case = (&'static [(u64, u64)], u64, Option<u64>);
        let cases: &[Case] = &[
            (&[], 65536, Some(100_000)),
            (&[(100_000, 65536)], 65536, Some(165_536)),
            (&[(100_000, 1000), (102_000, 1000)], 1000, Some(101_000)),
            (&[(100_000, 1000), (102_001, 1000)], 1000, Some(101_000)),
            (&[(100_000, 1000), (101_999, 1000)], 1000, Some(102_999)),
            (&[(0, 200_000)], 10, Some(200_000)),
            (&[(100_000, 600_000_001)], 1, None),
            (&[(100_000, 600_000_000)], 1, Some(600_100_000)),
            (&[(100_000, 600_000_000)], 2, None),
        ];
        for (taken, count, want) in cases {
            let t = Taken::new(taken.iter().map(|&(s, c)| Range::new(s, c)));
            assert_eq!(t.first_fit(LIMITS, *count), *want, "{taken:?} {count}");
        }
        let top = Limits {
            min: 4_294_967_000,
            max: u32::MAX,
        };
        assert_eq!(Taken::default().first_fit(top, 295), Some(4_294_967_000));
        assert_eq!(Taken::default().first_fit(top, 296), None, "never reaches 4294967295");
    }

    #[test]
    fn taken_merges_ranges_in_any_order() {
        // Against the plain way: sort everything, then join what overlaps or adjoins.
        let by_sorting = |ranges: &[Range]| {
            let mut all: Vec<Range> = ranges.iter().copied().filter(|r| r.count > 0).collect();
            all.sort_unstable();
            let mut merged: Vec<Range> = Vec::new();
            for r in all {
                match merged.last_mut() {
                    Some(m) if r.start <= m.last().saturating_add(1) => {
                        m.count = (m.last().max(r.last()) - m.start).saturating_add(1)
                    }
                    _ => merged.push(r),
                }
            }
            merged
        };
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for round in 0..2000 {
            let len = next(12);
            let mut ranges: Vec<Range> = (0..len).map(|_| Range::new(next(60), next(8))).collect();
            if round % 5 == 0 {
                // Near the top: counts saturating at u64::MAX.
                ranges.push(Range::new(next(3), u64::MAX - next(2)));
            }
            if round % 3 == 0 {
                ranges.sort_unstable();
            }
            assert_eq!(Taken::new(ranges.iter().copied()).0, by_sorting(&ranges), "{ranges:?}");
        }
    }

    #[test]
    fn files_over_the_limit_are_refused() {
        let err = SubidFile::parse(vec![0; MAX_FILE_BYTES + 1]).unwrap_err();
        assert_eq!(err.to_string(), "67108865 bytes, more than the 64 MiB nonrootd reads");
    }

    fn request<'a>(uid: &'a SubidFile, gid: &'a SubidFile, t: &'a Tenant, count: u32, grow: bool) -> Request<'a> {
        Request {
            subuid: uid,
            subgid: gid,
            quarantined: &[],
            limits: LIMITS,
            tenant: t,
            count,
            grow,
        }
    }

    #[test]
    fn allocation_rules_table() {
        // (subuid, subgid, tenant, count, grow, expected added subuid starts/counts, subgid)
        type Case = (
            &'static str,
            &'static str,
            &'static str,
            u32,
            bool,
            &'static [(u64, u64)],
            &'static [(u64, u64)],
        );
        let cases: &[Case] = &[
            ("", "", "acme", 65536, false, &[(100_000, 65536)], &[(100_000, 65536)]),
            // one start for both files
            (
                "a:100000:65536\n",
                "b:165536:65536\n",
                "acme",
                65536,
                false,
                &[(231_072, 65536)],
                &[(231_072, 65536)],
            ),
            // octal and decimal readings are both taken
            (
                "a:0200000:65536\n",
                "",
                "acme",
                65536,
                false,
                &[(131_072, 65536)],
                &[(131_072, 65536)],
            ),
            // owns both: kept
            (
                "acme:500000:65536\n",
                "acme:700000:65536\n",
                "acme",
                65536,
                false,
                &[],
                &[],
            ),
            // by numeric uid
            (
                "1001:500000:65536\n",
                "1001:500000:65536\n",
                "1001",
                65536,
                false,
                &[],
                &[],
            ),
            // only one file: same start when free
            (
                "acme:500000:65536\n",
                "",
                "acme",
                65536,
                false,
                &[],
                &[(500_000, 65536)],
            ),
            // only one file, same start taken in the other: lowest free
            (
                "acme:500000:65536\n",
                "x:500000:1\n",
                "acme",
                65536,
                false,
                &[],
                &[(100_000, 65536)],
            ),
            (
                "",
                "acme:500000:65536\n",
                "acme",
                65536,
                false,
                &[(500_000, 65536)],
                &[],
            ),
            // grow adds the difference, one start for both
            (
                "acme:100000:1000\n",
                "acme:100000:1000\n",
                "acme",
                3000,
                true,
                &[(101_000, 2000)],
                &[(101_000, 2000)],
            ),
        ];
        for (uid, gid, name, count, grow, add_uid, add_gid) in cases {
            let (uid, gid, t) = (file(uid), file(gid), tenant(name));
            let plan = plan(&request(&uid, &gid, &t, *count, *grow)).unwrap();
            let pairs = |rs: &[Range]| rs.iter().map(|r| (r.start, r.count)).collect::<Vec<_>>();
            assert_eq!(pairs(&plan.add_subuid), *add_uid, "{name} {uid:?}");
            assert_eq!(pairs(&plan.add_subgid), *add_gid, "{name} {gid:?}");
        }
    }

    #[test]
    fn a_range_is_mirrored_only_within_the_limits() {
        // subuid acme:0:65536 must never become subgid acme:0:65536 (host gid 0).
        let cases: &[(&str, u64)] = &[
            ("acme:0:65536\n", 100_000),
            ("acme:99999:10\n", 100_000),
            ("acme:600100000:2\n", 100_000),
            ("acme:600099999:2\n", 600_099_999),
        ];
        for (uid, want) in cases {
            let (uid, gid, t) = (file(uid), file(""), tenant("acme"));
            let to_gid = plan(&request(&uid, &gid, &t, 1, false)).unwrap();
            assert_eq!(to_gid.add_subgid.first().map(|r| r.start), Some(*want), "{uid:?}");
            let to_uid = plan(&request(&gid, &uid, &t, 1, false)).unwrap();
            assert_eq!(to_uid.add_subuid.first().map(|r| r.start), Some(*want), "{uid:?}");
        }
    }

    #[test]
    fn owner_by_alias_and_too_small() {
        let (uid, gid) = (file("1001:500000:1000\n"), file("acme:500000:1000\n"));
        let t = Tenant::new(&Spelling::Name("acme".into()), Some("1001".into()));
        let err = plan(&request(&uid, &gid, &t, 65536, false)).unwrap_err();
        assert_eq!(
            err,
            AllocError::TooSmall {
                kind: Kind::Subuid,
                line: 1,
                owned: 1000,
                asked: 65536
            }
        );
        assert!(
            plan(&request(&uid, &gid, &t, 1000, false))
                .unwrap()
                .add_subuid
                .is_empty()
        );
        // Owned in subgid only (line 2): subgid is named, not the mirror planned for subuid.
        let (uid, gid) = (file(""), file("other:100000:10\nacme:400000:10\n"));
        let err = plan(&request(&uid, &gid, &t, 65536, false)).unwrap_err();
        assert_eq!(
            err,
            AllocError::TooSmall {
                kind: Kind::Subgid,
                line: 2,
                owned: 10,
                asked: 65536
            }
        );
    }

    #[test]
    fn quarantined_ranges_are_skipped() {
        let (uid, gid, t) = (file(""), file(""), tenant("acme"));
        let q = [Range::new(100_000, 65536)];
        let req = Request {
            quarantined: &q,
            ..request(&uid, &gid, &t, 65536, false)
        };
        assert_eq!(plan(&req).unwrap().add_subuid, [Range::new(165_536, 65536)]);
        let held = Quarantined {
            owner: "x".into(),
            kind: Kind::Subuid,
            start: 1,
            count: 1,
            released_at: 1000,
        };
        assert!(held.active(1000 + 30 * SECONDS_PER_DAY - 1, 30));
        assert!(!held.active(1000 + 30 * SECONDS_PER_DAY, 30));
    }

    #[test]
    fn held_ids_are_counted_within_the_limits_and_mappable_ids_only() {
        let limits = Limits { min: 100, max: 199 };
        let held = [
            Range::new(50, 100),
            Range::new(120, 10),
            Range::new(190, 50),
            Range::new(300, 5),
        ];
        assert_eq!(limits.ids_within(&held), 50 + 10);
        assert_eq!(limits.ids_within(&[]), 0);
        assert_eq!(
            mappable(Range::new(100_000, u64::MAX)),
            Range::new(100_000, INVALID_ID - 100_000)
        );
        assert_eq!(mappable(Range::new(100_000, 65536)), Range::new(100_000, 65536));
        assert_eq!(mappable(Range::new(INVALID_ID, 1)).count, 0);
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(951_782_400), "2000-02-29");
        assert_eq!(utc_date(1_798_761_599), "2026-12-31");
        assert_eq!(utc_date(1_798_761_600), "2027-01-01");
    }

    #[test]
    fn full_pool_is_an_error() {
        let (uid, gid, t) = (file("a:100000:600000001\n"), file(""), tenant("acme"));
        assert!(matches!(
            plan(&request(&uid, &gid, &t, 1, false)),
            Err(AllocError::Full { .. })
        ));
        // shadow reads -1 as u64::MAX: with 0 joined, every id up to the top is taken.
        let (uid, gid) = (file("x:0:1\ny:1:-1\n"), file(""));
        assert!(matches!(
            plan(&request(&uid, &gid, &t, 1, false)),
            Err(AllocError::Full { .. })
        ));
    }

    #[test]
    fn writer_keeps_every_other_byte() {
        let text = "# c\n#x:1:2\nacme:100000:65536  \n junk\n1001:200000:10\nb:0200000:5";
        let mut f = file(text);
        let mut added = f.clone();
        added.append("new", &[Range::new(7, 8), Range::new(20, 1)]);
        let expected = format!("{text}\nnew:7:8\nnew:20:1\n");
        assert_eq!(String::from_utf8(added.bytes().to_vec()).unwrap(), expected);
        // Read as a parse of the written bytes would read it.
        assert_eq!(added, file(&expected));
        let t = Tenant::new(&Spelling::Name("acme".into()), Some("1001".into()));
        let (out, removed) = f.without(&t);
        assert_eq!(String::from_utf8(out).unwrap(), "# c\n#x:1:2\n junk\nb:0200000:5\n");
        assert_eq!(removed.iter().map(|e| e.line()).collect::<Vec<_>>(), [3, 5]);
        let mut empty = file("");
        empty.append("a", &[Range::new(1, 2)]);
        assert_eq!((empty.bytes(), empty.entries.len()), (&b"a:1:2\n"[..], 1));
        f.append("none", &[]);
        assert_eq!(f, file(text));
    }

    #[test]
    fn owners_are_read_from_the_bytes_as_written() {
        let f = SubidFile::parse(b"\xffa:1:2\nb:3:4".to_vec()).unwrap();
        let owners: Vec<String> = f.entries.iter().map(|e| f.owner(e).into_owned()).collect();
        assert_eq!(owners, ["\u{fffd}a", "b"]);
        assert_eq!(f.entries.iter().map(|e| e.line()).collect::<Vec<_>>(), [1, 2]);
    }

    static LOOKUPS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    fn counted_lookup(owner: &str) -> Result<Option<String>, String> {
        LOOKUPS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(Some(if owner == "acme" { "1001" } else { "acme" }.to_string()))
    }

    fn failed_lookup(_: &str) -> Result<Option<String>, String> {
        Err("the directory server did not answer".into())
    }

    #[test]
    fn a_failed_lookup_is_told_only_when_a_line_needed_it() {
        let name = Tenant::looked_up(&Spelling::Name("acme".into()), failed_lookup);
        assert_eq!(file("a:100000:10\nacme:200000:10\n").owned_by(&name).count(), 1);
        assert_eq!(name.lookup_failure(), None, "no numeric owner: the uid was not needed");
        assert_eq!(file("1001:100000:10\n").owned_by(&name).count(), 0);
        assert_eq!(name.lookup_failure(), Some("the directory server did not answer"));
        let uid = Tenant::looked_up(&Spelling::Uid(1001), failed_lookup);
        assert_eq!(file("acme:100000:10\n").claimed_by(&uid).count(), 0);
        assert!(uid.lookup_failure().is_some());
    }

    #[test]
    fn the_other_spelling_is_looked_up_once_and_only_where_a_line_could_use_it() {
        let lookups = || LOOKUPS.load(std::sync::atomic::Ordering::SeqCst);
        let named = file("a:100000:10\nacme:200000:10\nb:300000:10\n");
        let name = Tenant::looked_up(&Spelling::Name("acme".into()), counted_lookup);
        assert_eq!(named.owned_by(&name).count(), 1);
        assert_eq!(named.claimed_by(&name).count(), 1);
        assert_eq!(lookups(), 0, "a name's uid is never needed among named owners");
        let mixed = file("a:100000:10\n1001:200000:10\n7:300000:10\nacme:400000:10\n");
        assert_eq!(named.owned_by(&name).count() + mixed.owned_by(&name).count(), 3);
        assert_eq!(lookups(), 1, "looked up at the first numeric owner, then remembered");
        let uid = Tenant::looked_up(&Spelling::Uid(1001), counted_lookup);
        assert_eq!(mixed.owned_by(&uid).map(|e| e.line()).collect::<Vec<_>>(), [2, 4]);
        assert_eq!(lookups(), 2);
    }

    #[test]
    fn tenant_spellings() {
        assert_eq!(Spelling::parse("1001"), Ok(Spelling::Uid(1001)));
        assert_eq!(Spelling::parse("0"), Ok(Spelling::Uid(0)));
        for bad in ["evil:0:1", "a\nb", "../x", "01001", "4294967295", "", "Acme"] {
            assert!(Spelling::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn login_defs() {
        let text = "# SUB_UID_MIN 1\nSUB_UID_MIN\t\t   100000\nSUB_UID_MAX 0x10000000\n";
        assert_eq!(login_defs_number(text, "SUB_UID_MIN"), Some(100_000));
        assert_eq!(login_defs_number(text, "SUB_UID_MAX"), Some(0x1000_0000));
        assert_eq!(login_defs_number(text, "SUB_GID_MIN"), None);
    }

    #[test]
    fn login_defs_take_the_last_line_and_only_whole_numbers() {
        let number = |text: &str| login_defs_number(text, "SUB_GID_MIN");
        assert_eq!(
            number("SUB_GID_MIN 1\nSUB_GID_MIN 200000\n"),
            Some(200_000),
            "the last wins"
        );
        assert_eq!(number("SUB_GID_MIN 100000 # comment\n"), None);
        assert_eq!(
            number("SUB_GID_MIN 200000\nSUB_GID_MIN 1e5\n"),
            None,
            "a refused last value"
        );
        assert_eq!(
            number("SUB_GID_MIN 200000\nSUB_GID_MIN\n"),
            Some(200_000),
            "no value: no setting"
        );
        assert_eq!(number("  SUB_GID_MIN \"0200000\"  \r\n"), Some(65536), "quotes, octal");
        assert_eq!(
            number("SUB_GID_MIN 0x186a0\n#SUB_GID_MIN 7\nSUB_GID_MINIMUM 7\n"),
            Some(100_000)
        );
        assert_eq!(
            number("SUB_GID_MIN\t-5\n"),
            Some(u64::MAX - 4),
            "as strtoul: too large for an id"
        );
    }

    #[test]
    fn owners_are_read_as_shadow_reads_them() {
        // shadow reads " acme " (no such user), the Go tools "acme ": nobody reads "acme".
        let f = file(" acme :100000:65536\n");
        let t = tenant("acme");
        assert_eq!((f.owned_by(&t).count(), f.claimed_by(&t).count()), (0, 0));
        let problems: Vec<String> = f.check().iter().map(|p| p.to_string()).collect();
        assert_eq!(
            problems,
            [
                "1: shadow reads the owner \" acme \", Go tools \"acme \"; counted as taken, rewrite it as OWNER:START:COUNT in decimal"
            ]
        );
        let p = plan(&request(&f, &f, &t, 65536, false)).unwrap();
        assert_eq!(p.add_subuid, [Range::new(165_536, 65536)], "taken, not acme's");
        // The Go tools give " acme:…" to acme: released, but not counted as acme's range.
        let f = file(" acme:100000:65536\n");
        assert_eq!((f.owned_by(&t).count(), f.claimed_by(&t).count()), (0, 1));
        assert_eq!(f.without(&t).0, b"");
    }

    #[test]
    fn only_lines_every_shadow_version_reads_are_a_tenants() {
        let text = "acme:100000:65536\r\nacme:200000:10:x\nacme:300000:-1\nacme:4294967290:7\nacme:400000:10\n";
        let f = file(text);
        let shadow: Vec<ShadowReads> = f.entries.iter().map(|e| e.shadow).collect();
        use ShadowReads::*;
        assert_eq!(shadow, [Never, OlderOnly, OlderOnly, OlderOnly, All]);
        let t = tenant("acme");
        assert_eq!(f.owned_by(&t).map(Entry::line).collect::<Vec<_>>(), [5]);
        assert_eq!(
            f.claimed_by(&t).count(),
            5,
            "release takes every line a reader gives acme"
        );
        // A line some readers give acme and others don't: a new range would give acme two
        // to some, so nothing is planned until it is fixed.
        let (crlf, extra, plain) = (
            file("acme:100000:65536\r\n"),
            file("acme:100000:65536:x\n"),
            file("acme:100000:65536\n"),
        );
        let unclear = |uid, gid| plan(&request(uid, gid, &t, 65536, false)).unwrap_err();
        assert_eq!(
            unclear(&crlf, &plain),
            AllocError::Unclear {
                kind: Kind::Subuid,
                line: 1
            }
        );
        assert_eq!(
            unclear(&plain, &extra),
            AllocError::Unclear {
                kind: Kind::Subgid,
                line: 1
            }
        );
        // What no reader gives acme is only taken.
        let other = file("acme :100000:65536\n");
        let p = plan(&request(&other, &other, &t, 65536, false)).unwrap();
        assert_eq!((p.add_subuid[0].start, p.add_subgid[0].start), (165_536, 165_536));
    }

    #[test]
    fn a_numeric_owner_is_the_tenants_by_value_only_where_shadow_4_20_reads_the_line() {
        let t = Tenant::new(&Spelling::parse("acme").unwrap(), Some("1001".into()));
        let cases = [
            // (line, owned: what every shadow gives acme, claimed: what some reader gives it)
            ("1001:100000:65536\n", 1, 1),
            ("01001:100000:65536\n", 0, 1),
            ("+1001:100000:65536\n", 0, 0),
            ("0001001:100000:65536 \n", 0, 0),
            ("01001:100000:65536:x\n", 0, 0),
            ("1001:100000:65536:x\n", 0, 1),
        ];
        for (line, owned, claimed) in cases {
            let f = file(line);
            assert_eq!(
                (f.owned_by(&t).count(), f.claimed_by(&t).count()),
                (owned, claimed),
                "{line:?}"
            );
        }
    }

    #[test]
    fn numeric_owners_are_compared_by_value() {
        let cases: &[(&str, Option<u32>)] = &[
            ("0", Some(0)),
            ("00", Some(0)),
            (" \x0b7", Some(7)),
            ("+7", Some(7)),
            ("-0", Some(0)),
            ("-1", None),
            ("4294967295", Some(u32::MAX)),
            ("4294967296", None),
            ("7 ", None),
            ("0x10", None),
            ("", None),
            ("root", None),
        ];
        for (owner, want) in cases {
            assert_eq!(shadow_uid(owner.as_bytes()), *want, "{owner:?}");
        }
        let f = file("root:100000:10\n00:200000:10\n0:300000:10\n");
        let root = Tenant::new(&Spelling::Name("root".into()), Some("0".into()));
        let uid0 = Tenant::new(&Spelling::Uid(0), Some("root".into()));
        for t in [&root, &uid0] {
            assert_eq!(f.claimed_by(t).map(Entry::line).collect::<Vec<_>>(), [1, 2, 3]);
            // shadow before 4.20 compares "00" with "0" as strings.
            assert_eq!(f.owned_by(t).map(Entry::line).collect::<Vec<_>>(), [1, 3]);
        }
        assert_eq!(f.without(&root).0, b"");
        let problems: Vec<String> = f.check().iter().map(|p| p.to_string()).collect();
        assert_eq!(
            problems,
            [
                "2: owner \"00\" is uid 0 only to shadow 4.20 and later (a name to older shadow and Go tools): write it as 0"
            ]
        );
    }

    #[test]
    fn check_reports_ranges_mapping_root() {
        let f = file("a:0:1\nb:00:5\nc:0:0\nd:0:4294967296\n");
        let problems: Vec<String> = f.check().iter().map(|p| p.to_string()).collect();
        let root = "range includes id 0, which maps the host's root: remove it";
        assert_eq!(problems[0], format!("1: {root}"));
        assert!(problems.contains(&format!("2: {root}")), "{problems:?}");
        assert!(
            problems.iter().all(|p| !p.starts_with("3: range includes id 0")),
            "{problems:?}"
        );
        assert!(problems.contains(&format!("4: {root}")), "{problems:?}");
        assert!(problems.contains(&"4: range includes 4294967295, the invalid id".to_string()));
    }

    #[test]
    fn check_reports_a_last_line_without_its_newline() {
        let mut f = file("a:100000:5\nb:200000:5");
        let problems: Vec<String> = f.check().iter().map(|p| p.to_string()).collect();
        assert_eq!(
            problems,
            ["2: no newline at the end: shadow 4.19 and later refuse the whole file, end the line with one"]
        );
        f.append("c", &[Range::new(300_000, 5)]);
        assert_eq!(f.bytes(), b"a:100000:5\nb:200000:5\nc:300000:5\n");
        assert_eq!(f.check(), []);
        assert_eq!(file("").check(), []);
    }

    #[test]
    fn go_trim_stops_at_a_byte_that_is_not_utf8() {
        assert_eq!(go_trim(b" \xffa \x0b"), (&b"\xffa"[..], 1));
        assert_eq!(go_trim(b"\xc2\xa0a:1:2\xff \xc2\xa0"), (&b"a:1:2\xff"[..], 2));
        assert_eq!(go_trim(b"  \xff  "), (&b"\xff"[..], 2));
        assert_eq!(go_trim("\u{3000}".as_bytes()), (&b""[..], 3));
    }

    #[test]
    fn a_nul_byte_is_reported_and_stops_allocations_in_its_file() {
        let (uid, gid, t) = (
            file("a:100000:5\nb:200000:5\0x\nc:300000:5\n"),
            file(""),
            tenant("acme"),
        );
        let problems: Vec<String> = uid.check().iter().map(|p| p.to_string()).collect();
        assert_eq!(
            problems,
            [
                "2: a NUL byte: shadow 4.19 and later refuse the whole file, older shadow read this line and the next as one: remove it",
            ]
        );
        // Alone: what readers make of the rest of the line is the NUL's problem.
        let malformed: Vec<String> = file("x\0y\n").check().iter().map(|p| p.to_string()).collect();
        assert_eq!(malformed.len(), 1, "{malformed:?}");
        let want = AllocError::Nul {
            kind: Kind::Subuid,
            line: 2,
        };
        assert_eq!(plan(&request(&uid, &gid, &t, 65536, false)), Err(want));
        let want = AllocError::Nul {
            kind: Kind::Subgid,
            line: 2,
        };
        assert_eq!(plan(&request(&gid, &uid, &t, 65536, false)), Err(want));
    }

    #[test]
    fn check_counts_every_overlap_with_other_owners() {
        let problems = |text: &str| -> Vec<String> { file(text).check().iter().map(|p| p.to_string()).collect() };
        assert_eq!(
            problems("x:100:10\ny:105:10\nz:108:10\n"),
            [
                "2: range of \"y\" overlaps the range of \"x\" on line 1",
                "3: range of \"z\" overlaps the range of \"y\" on line 2 and 1 other",
            ]
        );
        // Named is the range reaching furthest; its own owner's ranges are not counted.
        assert_eq!(
            problems("x:100:10\ny:105:10\nz:108:10\nx:109:1\nw:0:1000\n"),
            [
                "1: range of \"x\" overlaps the range of \"w\" on line 5",
                "2: range of \"y\" overlaps the range of \"w\" on line 5 and 1 other",
                "3: range of \"z\" overlaps the range of \"w\" on line 5 and 2 others",
                "4: range of \"x\" overlaps its own range on line 1 (newuidmap fails with EINVAL): remove one",
                "4: range of \"x\" overlaps the range of \"w\" on line 5 and 2 others",
                "5: range includes id 0, which maps the host's root: remove it",
            ]
        );
    }

    #[test]
    fn entries_take_32_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 32);
    }
}
