//! The configuration: the main file plus drop-ins, merged, validated, with every problem
//! reported as `file:line: key: message`.
//!
//! Merge rules: files are applied in the order given (main file, then drop-ins in lexical
//! order); a later value replaces an earlier one, arrays of tables (`[[socket]]`, `[[tenant]]`,
//! `[[volume]]`) append. Unknown keys are errors. An absent section does nothing.

use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;

use crate::acl::Perm;
use crate::ids::{IdRef, IdResolver, Uid};
use crate::mode::Mode;
use crate::volumes::Mapping;

/// Where a value was written; line 0 stands for the whole file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub file: Arc<Path>,
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            0 => write!(f, "{}", self.file.display()),
            line => write!(f, "{}:{line}", self.file.display()),
        }
    }
}

/// A value with the place it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located<T> {
    pub value: T,
    pub origin: Origin,
}

/// One problem in the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub origin: Origin,
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.origin, self.message)
        } else {
            write!(f, "{}: {}: {}", self.origin, self.key, self.message)
        }
    }
}

/// The `[docker]` duty: modes of Docker's image directories.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DockerConfig {
    /// Units whose activation re-triggers the docker duties.
    pub units: Vec<String>,
    /// `None`: take `data-root` from Docker's daemon.json, else `/var/lib/docker`.
    pub data_root: Option<Located<PathBuf>>,
    /// Relative to the data root.
    pub image_dirs: Vec<PathBuf>,
    pub image_dir_mode: Mode,
}

impl DockerConfig {
    /// The data root the config names, if any.
    pub fn configured_data_root(&self) -> Option<&Path> {
        self.data_root.as_ref().map(|root| root.value.as_path())
    }
}

/// A `[[socket]]`: ACL entries to grant on a Unix socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketConfig {
    pub path: PathBuf,
    pub users: Vec<Located<IdRef>>,
    pub groups: Vec<Located<IdRef>>,
    pub access: Perm,
    pub origin: Origin,
}

/// Who may read the DMI tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DmiAccess {
    /// `chown root:<group>`, mode 0440.
    Group(Located<IdRef>),
    /// Mode 0444.
    WorldReadable,
}

/// The `[dmi]` duty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DmiConfig {
    pub tables_dir: PathBuf,
    /// Where `tables_dir` is set, else where `[dmi]` is.
    pub tables_dir_origin: Origin,
    pub access: DmiAccess,
}

/// `[subids]`: where subordinate ids live and how ranges are handed out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubidsConfig {
    pub subuid_file: PathBuf,
    pub subgid_file: PathBuf,
    /// Where `subuid_file` and `subgid_file` are set; `None` for the defaults.
    pub subuid_file_origin: Option<Origin>,
    pub subgid_file_origin: Option<Origin>,
    /// `None`: the higher of SUB_UID_MIN and SUB_GID_MIN from login.defs, else 100000.
    pub min: Option<u32>,
    /// `None`: the lower of SUB_UID_MAX and SUB_GID_MAX from login.defs, else 600100000
    /// (inclusive).
    pub max: Option<u32>,
    /// Where `min` and `max` are set, for errors about the limits that login.defs completes.
    pub min_origin: Option<Origin>,
    pub max_origin: Option<Origin>,
    /// Where `count` is set; `None` for the default.
    pub count_origin: Option<Origin>,
    pub count: u32,
    pub quarantine_days: u32,
}

/// A `[[tenant]]` that must own a subordinate id range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantConfig {
    pub name: Located<IdRef>,
    pub count: Option<u32>,
}

/// A `[[volume]]`: a host directory whose tree must belong to a container's user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeConfig {
    pub path: PathBuf,
    /// Owner wanted: a host id, or with `tenant` a container id.
    pub uid: u32,
    pub gid: u32,
    /// Mode of the top directory only.
    pub mode: Option<Mode>,
    pub tenant: Option<VolumeTenant>,
    pub origin: Origin,
}

/// The user-namespaced tenant whose container ids a volume's `uid` and `gid` are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeTenant {
    pub name: Located<IdRef>,
    pub mapping: Mapping,
}

/// The whole validated configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub docker: Option<DockerConfig>,
    pub sockets: Vec<SocketConfig>,
    pub dmi: Option<DmiConfig>,
    pub subids: SubidsConfig,
    pub tenants: Vec<TenantConfig>,
    pub volumes: Vec<VolumeConfig>,
}

pub const DEFAULT_UNITS: [&str; 2] = ["docker.socket", "docker.service"];
pub const DEFAULT_IMAGE_DIRS: [&str; 3] = ["image", "image/overlay2", "image/overlay2/layerdb"];
pub const DEFAULT_IMAGE_DIR_MODE: &str = "0750";
pub const DEFAULT_DMI_TABLES_DIR: &str = "/sys/firmware/dmi/tables";
pub const DEFAULT_SUBUID_FILE: &str = "/etc/subuid";
pub const DEFAULT_SUBGID_FILE: &str = "/etc/subgid";
pub const DEFAULT_SUBID_COUNT: u32 = 65536;
pub const DEFAULT_QUARANTINE_DAYS: u32 = 30;

// ---- raw, per-file shapes ----

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFile {
    docker: Option<RawDocker>,
    #[serde(default)]
    socket: Vec<RawSocket>,
    dmi: Option<Spanned<RawDmi>>,
    subids: Option<RawSubids>,
    #[serde(default)]
    tenant: Vec<RawTenant>,
    #[serde(default)]
    volume: Vec<RawVolume>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDocker {
    units: Option<Spanned<Vec<Spanned<String>>>>,
    data_root: Option<Spanned<String>>,
    image_dirs: Option<Spanned<Vec<Spanned<String>>>>,
    image_dir_mode: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSocket {
    path: Spanned<String>,
    #[serde(default)]
    users: Vec<Spanned<IdRef>>,
    #[serde(default)]
    groups: Vec<Spanned<IdRef>>,
    access: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDmi {
    tables_dir: Option<Spanned<String>>,
    group: Option<Spanned<IdRef>>,
    world_readable: Option<Spanned<bool>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSubids {
    subuid_file: Option<Spanned<String>>,
    subgid_file: Option<Spanned<String>>,
    min: Option<Spanned<NumericId>>,
    max: Option<Spanned<NumericId>>,
    count: Option<Spanned<Number>>,
    quarantine_days: Option<Spanned<Number>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    name: Spanned<IdRef>,
    count: Option<Spanned<Number>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVolume {
    path: Spanned<String>,
    uid: Option<Spanned<NumericId>>,
    gid: Option<Spanned<NumericId>>,
    mode: Option<Spanned<String>>,
    tenant: Option<Spanned<IdRef>>,
    mapping: Option<Spanned<String>>,
}

/// A count in the config. Its errors say what is expected in words, where serde's say "u32".
struct Number(u32);

/// A uid or gid that must be given as a number.
struct NumericId(u32);

/// Reads a `u32`, naming what is `expected` when the value is not one.
struct U32Visitor {
    expected: &'static str,
}

impl serde::de::Visitor<'_> for U32Visitor {
    type Value = u32;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expected)
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<u32, E> {
        u32::try_from(v).map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<u32, E> {
        u64::try_from(v)
            .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
            .and_then(|v| self.visit_u64(v))
    }
}

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Number, D::Error> {
        let expected = "a whole number from 0 to 4294967295";
        deserializer.deserialize_any(U32Visitor { expected }).map(Number)
    }
}

impl<'de> Deserialize<'de> for NumericId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<NumericId, D::Error> {
        let expected = "a numeric id from 0 to 4294967294";
        deserializer.deserialize_any(U32Visitor { expected }).map(NumericId)
    }
}

impl From<Number> for u32 {
    fn from(number: Number) -> u32 {
        number.0
    }
}

impl From<NumericId> for u32 {
    fn from(id: NumericId) -> u32 {
        id.0
    }
}

/// Turns byte spans of one file into origins.
struct SourceFile {
    file: Arc<Path>,
    /// Where each line starts: a line number is one search, whatever the file's size.
    line_starts: Vec<usize>,
}

impl SourceFile {
    fn new(path: &Path, text: &str) -> SourceFile {
        let after_newlines = text
            .bytes()
            .enumerate()
            .filter(|(_, b)| *b == b'\n')
            .map(|(i, _)| i + 1);
        SourceFile {
            file: Arc::from(path),
            line_starts: std::iter::once(0).chain(after_newlines).collect(),
        }
    }

    fn origin(&self, offset: usize) -> Origin {
        Origin {
            file: self.file.clone(),
            line: self.line_starts.partition_point(|&start| start <= offset),
        }
    }

    fn at<T, U: From<T>>(&self, spanned: Spanned<T>) -> Located<U> {
        let origin = self.origin(spanned.span().start);
        Located {
            value: spanned.into_inner().into(),
            origin,
        }
    }

    /// An array whose elements keep their own lines.
    fn each<T>(&self, spanned: Spanned<Vec<Spanned<T>>>) -> Located<Vec<Located<T>>> {
        let origin = self.origin(spanned.span().start);
        Located {
            value: spanned.into_inner().into_iter().map(|e| self.at(e)).collect(),
            origin,
        }
    }

    fn opt<T, U: From<T>>(&self, spanned: Option<Spanned<T>>) -> Option<Located<U>> {
        spanned.map(|s| self.at(s))
    }
}

// ---- merged layers: the last value of each key, with where it came from ----

#[derive(Default)]
struct Layers {
    docker: Option<DockerLayer>,
    sockets: Vec<SocketLayer>,
    dmi: Option<DmiLayer>,
    subids: SubidsLayer,
    tenants: Vec<TenantLayer>,
    volumes: Vec<VolumeLayer>,
}

#[derive(Default)]
struct DockerLayer {
    units: Option<Located<Vec<Located<String>>>>,
    data_root: Option<Located<String>>,
    image_dirs: Option<Located<Vec<Located<String>>>>,
    image_dir_mode: Option<Located<String>>,
}

struct SocketLayer {
    path: Located<String>,
    users: Vec<Located<IdRef>>,
    groups: Vec<Located<IdRef>>,
    access: Option<Located<String>>,
}

#[derive(Default)]
struct DmiLayer {
    /// Where the last `[dmi]` table was written.
    declared: Option<Origin>,
    tables_dir: Option<Located<String>>,
    group: Option<Located<IdRef>>,
    world_readable: Option<Located<bool>>,
}

#[derive(Default)]
struct SubidsLayer {
    subuid_file: Option<Located<String>>,
    subgid_file: Option<Located<String>>,
    min: Option<Located<u32>>,
    max: Option<Located<u32>>,
    count: Option<Located<u32>>,
    quarantine_days: Option<Located<u32>>,
}

struct TenantLayer {
    name: Located<IdRef>,
    count: Option<Located<u32>>,
}

struct VolumeLayer {
    path: Located<String>,
    uid: Option<Located<u32>>,
    gid: Option<Located<u32>>,
    mode: Option<Located<String>>,
    tenant: Option<Located<IdRef>>,
    mapping: Option<Located<String>>,
}

fn replace<T>(slot: &mut Option<T>, value: Option<T>) {
    if value.is_some() {
        *slot = value;
    }
}

impl Layers {
    fn add(&mut self, src: &SourceFile, raw: RawFile) {
        if let Some(d) = raw.docker {
            let layer = self.docker.get_or_insert_with(Default::default);
            replace(&mut layer.units, d.units.map(|u| src.each(u)));
            replace(&mut layer.data_root, src.opt(d.data_root));
            replace(&mut layer.image_dirs, d.image_dirs.map(|u| src.each(u)));
            replace(&mut layer.image_dir_mode, src.opt(d.image_dir_mode));
        }
        for s in raw.socket {
            self.sockets.push(SocketLayer {
                path: src.at(s.path),
                users: s.users.into_iter().map(|u| src.at(u)).collect(),
                groups: s.groups.into_iter().map(|g| src.at(g)).collect(),
                access: src.opt(s.access),
            });
        }
        if let Some(d) = raw.dmi {
            let d: Located<RawDmi> = src.at(d);
            let layer = self.dmi.get_or_insert_with(Default::default);
            layer.declared = Some(d.origin);
            let d = d.value;
            replace(&mut layer.tables_dir, src.opt(d.tables_dir));
            replace(&mut layer.group, src.opt(d.group));
            replace(&mut layer.world_readable, src.opt(d.world_readable));
        }
        if let Some(s) = raw.subids {
            let layer = &mut self.subids;
            replace(&mut layer.subuid_file, src.opt(s.subuid_file));
            replace(&mut layer.subgid_file, src.opt(s.subgid_file));
            replace(&mut layer.min, src.opt(s.min));
            replace(&mut layer.max, src.opt(s.max));
            replace(&mut layer.count, src.opt(s.count));
            replace(&mut layer.quarantine_days, src.opt(s.quarantine_days));
        }
        for t in raw.tenant {
            self.tenants.push(TenantLayer {
                name: src.at(t.name),
                count: src.opt(t.count),
            });
        }
        for v in raw.volume {
            self.volumes.push(VolumeLayer {
                path: src.at(v.path),
                uid: src.opt(v.uid),
                gid: src.opt(v.gid),
                mode: src.opt(v.mode),
                tenant: src.opt(v.tenant),
                mapping: src.opt(v.mapping),
            });
        }
    }
}

/// Collects errors while validating the merged layers.
struct Checker {
    errors: Vec<ConfigError>,
}

impl Checker {
    fn error(&mut self, origin: &Origin, key: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            origin: origin.clone(),
            key: key.to_string(),
            message: message.into(),
        });
    }

    fn absolute(&mut self, key: &str, value: &Located<String>) -> PathBuf {
        if let Err(message) = check_absolute(&value.value) {
            self.error(&value.origin, key, message);
        }
        PathBuf::from(&value.value)
    }

    /// [`absolute`](Self::absolute), for a path that must name a file: no trailing `/`.
    fn file(&mut self, key: &str, value: &Located<String>) -> PathBuf {
        if value.value.len() > 1 && value.value.ends_with('/') {
            let message = format!("{:?} ends in \"/\": name the file itself", value.value);
            self.error(&value.origin, key, message);
        }
        self.absolute(key, value)
    }

    fn absolute_or(&mut self, key: &str, value: &Option<Located<String>>, default: &str) -> PathBuf {
        value
            .as_ref()
            .map_or_else(|| PathBuf::from(default), |v| self.absolute(key, v))
    }

    fn file_or(&mut self, key: &str, value: &Option<Located<String>>, default: &str) -> PathBuf {
        value
            .as_ref()
            .map_or_else(|| PathBuf::from(default), |v| self.file(key, v))
    }
}

/// The dotted key of the key or value that starts at `offset`, as the parser sees the file:
/// serde's type errors point at the value, an unknown field at its key. Array elements count
/// as their array's key.
fn key_of_value_at(text: &str, offset: usize) -> Option<String> {
    let table = toml::de::DeTable::parse(text).ok()?;
    let mut path = Vec::new();
    key_in_table(table.get_ref(), offset, &mut path).then(|| path.join("."))
}

fn key_in_table(table: &toml::de::DeTable<'_>, offset: usize, path: &mut Vec<String>) -> bool {
    for (key, value) in table {
        path.push(key.get_ref().to_string());
        if key.span().start == offset || key_in_value(value, offset, path) {
            return true;
        }
        path.pop();
    }
    false
}

/// Whether the value starting at `offset` is `value` or inside it (`path` then names it).
fn key_in_value(value: &toml::Spanned<toml::de::DeValue<'_>>, offset: usize, path: &mut Vec<String>) -> bool {
    let inside = match value.get_ref() {
        toml::de::DeValue::Table(table) => key_in_table(table, offset, path),
        toml::de::DeValue::Array(array) => array.iter().any(|element| key_in_value(element, offset, path)),
        _ => false,
    };
    inside || value.span().start == offset
}

/// serde's message with the parser's own type names ("struct RawDmi with 3 elements") said
/// as the file has them: "a table".
fn without_type_names(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("struct Raw") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "struct Raw".len()..];
        let name_end = after.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(after.len());
        let after = &after[name_end..];
        // " with N elements" follows a struct read from an array.
        let elements = after
            .strip_prefix(" with ")
            .and_then(|t| t.split_once(" elements"))
            .filter(|(n, _)| n.bytes().all(|b| b.is_ascii_digit()));
        out.push_str("a table");
        rest = elements.map_or(after, |(_, tail)| tail);
    }
    out.push_str(rest);
    out
}

/// What is written before `=` on the line of `offset`: the key of a value the parser refused
/// before any key could be known.
fn key_written_at(text: &str, offset: usize) -> &str {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = &text[start..];
    line[..line.find(['\n', '=']).unwrap_or(line.len())].trim()
}

/// serde's words for a section written with the wrong brackets, or a mode written as a
/// number, with the right way added; `written`: the key on the error's line.
fn with_table_hint(key: &str, written: &str, message: &str) -> String {
    const MODE_HINT: &str = "write a mode as a string, like mode = \"0750\"";
    if message.starts_with("unexpected leading zero") {
        let hint = match written.trim_matches(['"', '\'']).ends_with("mode") {
            true => MODE_HINT,
            false => "write the number without it",
        };
        return format!("{message} ({hint})");
    }
    if !message.starts_with("invalid type") && !message.starts_with("invalid length") {
        return message.to_string();
    }
    if key.ends_with("mode") && message.starts_with("invalid type: integer") {
        return format!("{message} ({MODE_HINT})");
    }
    let hint = match key {
        "docker" | "dmi" | "subids" => format!("write [{key}], one table"),
        "socket" | "tenant" | "volume" => format!("write [[{key}]], one table per {key}"),
        _ => return message.to_string(),
    };
    format!("{message} ({hint})")
}

/// The key a "duplicate key" error points at: the parser, which refused the file, cannot
/// name it for [`key_of_value_at`]. Its table is found by parsing the file up to the
/// duplicate's line with a probe key added there, so headers inside strings or arrays do not
/// mislead it.
fn duplicated_key(text: &str, error: &toml::de::Error) -> Option<String> {
    const PROBE: &str = "nonrootd-probe-key";
    if !error.message().contains("duplicate key") {
        return None;
    }
    let span = error.span()?;
    let key = text.get(span.clone())?.trim().trim_matches(['[', ']']).trim();
    if key.is_empty() {
        return None;
    }
    let line_start = text[..span.start].rfind('\n').map_or(0, |i| i + 1);
    let before = &text[..line_start];
    let header_line = text[line_start..span.start].trim_start().starts_with('[');
    let probed = format!("{before}\n{PROBE} = 0\n");
    let table = match header_line {
        true => None,
        false => key_named(&probed, PROBE).and_then(|path| Some(path.rsplit_once('.')?.0.to_string())),
    };
    Some(table.map_or_else(|| key.to_string(), |table| format!("{table}.{key}")))
}

/// The dotted path of the key called `name` in `text`, if it parses.
fn key_named(text: &str, name: &str) -> Option<String> {
    let offset = text.rfind(name)?;
    key_of_value_at(text, offset)
}

/// Accepts only absolute, normalized paths: no `.`, `..` or empty components.
pub fn check_absolute(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("{path:?} must be an absolute path"));
    }
    if path.contains('\0') {
        return Err(format!("{path:?} contains a NUL byte, which no path can"));
    }
    if path.contains("//") || has_dot_components(path) {
        return Err(format!(
            "{path:?} must be a normalized path (no \".\", \"..\" or \"//\")"
        ));
    }
    Ok(())
}

fn has_dot_components(path: &str) -> bool {
    path.split('/').any(|c| c == "." || c == "..")
}

fn check_relative(path: &str) -> Result<(), String> {
    if path.contains('\0') {
        return Err(format!("{path:?} contains a NUL byte, which no path can"));
    }
    let p = Path::new(path);
    let normal = !path.is_empty()
        && !path.contains("//")
        && !has_dot_components(path)
        && p.components().all(|c| matches!(c, Component::Normal(_)));
    if normal {
        Ok(())
    } else {
        Err(format!(
            "{path:?} must be a relative path below the data root, without \"..\""
        ))
    }
}

/// Accepts user names as shadow-utils does (`^[a-z_][a-z0-9_-]*[$]?$`, at most 32 bytes).
pub fn check_user_name(name: &str) -> Result<(), String> {
    let bytes = name.as_bytes();
    let body = bytes.strip_suffix(b"$").unwrap_or(bytes);
    let valid = !body.is_empty()
        && name.len() <= 32
        && matches!(body[0], b'a'..=b'z' | b'_')
        && body
            .iter()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(format!("{name:?} is not a valid user name"))
    }
}

/// The unit types systemd knows.
const UNIT_TYPES: [&str; 11] = [
    "service",
    "socket",
    "target",
    "device",
    "mount",
    "automount",
    "swap",
    "timer",
    "path",
    "slice",
    "scope",
];

/// Accepts the names of units that can become active, as systemd spells them: `NAME.TYPE`
/// or `NAME@INSTANCE.TYPE`, at most 255 bytes of ASCII letters, digits and `:-_.\`.
fn check_unit_name(name: &str) -> Result<(), String> {
    let refuse = |why: &str| Err(format!("{name:?} is not a unit name: {why}"));
    let valid_char = |c: char| c.is_ascii_alphanumeric() || ":-_.\\@".contains(c);
    if name.len() > 255 {
        return refuse("longer than 255 bytes");
    }
    if !name.chars().all(valid_char) {
        return refuse("only ASCII letters, digits and \":-_.\\@\" may appear in one");
    }
    let Some((stem, suffix)) = name.rsplit_once('.').filter(|(_, suffix)| UNIT_TYPES.contains(suffix)) else {
        return refuse("it needs a type suffix, like \".service\" or \".socket\"");
    };
    if stem.is_empty() {
        return refuse(&format!("nothing comes before \".{suffix}\""));
    }
    match stem.split_once('@') {
        None => Ok(()),
        Some((prefix, instance)) if !prefix.is_empty() && !instance.is_empty() && !instance.contains('@') => Ok(()),
        Some(_) => refuse("write NAME@INSTANCE.TYPE, like \"getty@tty1.service\""),
    }
}

/// Refuses image directory modes beyond the duty's point, read access for a group: write for
/// others, set-uid, set-gid and sticky bits.
fn check_image_dir_mode(text: &str, mode: Mode) -> Result<(), String> {
    let mut excess = Vec::new();
    if mode.bits() & 0o7000 != 0 {
        excess.push("set-uid, set-gid or sticky bits");
    }
    match (mode.bits() & 0o020 != 0, mode.bits() & 0o002 != 0) {
        (true, true) => excess.push("write for the group and others"),
        (true, false) => excess.push("write for the group"),
        (false, true) => excess.push("write for others"),
        (false, false) => {}
    }
    if excess.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{text:?} gives {}: the directories need only read access for a group, like \"0750\"",
        excess.join(" and ")
    ))
}

impl Config {
    /// Parses and merges `sources` (path, contents) in order, then validates the result.
    pub fn from_sources(sources: &[(PathBuf, String)]) -> Result<Config, Vec<ConfigError>> {
        let mut layers = Layers::default();
        let mut errors = Vec::new();
        for (path, text) in sources {
            let src = SourceFile::new(path, text);
            match toml::from_str::<RawFile>(text) {
                Ok(raw) => layers.add(&src, raw),
                Err(e) => {
                    let at = e.span().map_or(0, |s| s.start);
                    let key = key_of_value_at(text, at)
                        .or_else(|| duplicated_key(text, &e))
                        .unwrap_or_default();
                    errors.push(ConfigError {
                        origin: src.origin(at),
                        key: key.clone(),
                        message: with_table_hint(
                            &key,
                            key_written_at(text, at),
                            &without_type_names(e.message().trim()),
                        ),
                    })
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut checker = Checker { errors };
        let config = layers.validate(&mut checker);
        if checker.errors.is_empty() {
            return Ok(config);
        }
        let file_rank = |e: &ConfigError| sources.iter().position(|(p, _)| **p == *e.origin.file);
        checker.errors.sort_by_key(|e| (file_rank(e), e.origin.line));
        Err(checker.errors)
    }

    /// The systemd units whose start re-applies: `[docker].units`, else Docker's defaults.
    pub fn followed_units(&self) -> Vec<String> {
        match &self.docker {
            Some(docker) => docker.units.clone(),
            None => DEFAULT_UNITS.iter().map(|u| u.to_string()).collect(),
        }
    }

    /// Names in the config that do not resolve on this host (an error for `check-config`;
    /// at apply time only the affected entry is refused).
    pub fn unresolved(&self, ids: &dyn IdResolver) -> Vec<ConfigError> {
        let mut checker = Checker { errors: Vec::new() };
        for socket in &self.sockets {
            for user in &socket.users {
                if let Err(m) = user.value.resolve_user(ids) {
                    checker.error(&user.origin, "socket.users", m);
                }
            }
            for group in &socket.groups {
                if let Err(m) = group.value.resolve_group(ids) {
                    checker.error(&group.origin, "socket.groups", m);
                }
            }
        }
        if let Some(DmiConfig {
            access: DmiAccess::Group(group),
            ..
        }) = &self.dmi
            && let Err(m) = group.value.resolve_group(ids)
        {
            checker.error(&group.origin, "dmi.group", m);
        }
        let mut tenant_users: Vec<(Uid, &Origin)> = Vec::new();
        for tenant in &self.tenants {
            match tenant.name.value.resolve_user(ids) {
                Err(m) => checker.error(&tenant.name.origin, "tenant.name", m),
                Ok(uid) => match tenant_users.iter().find(|(seen, _)| *seen == uid) {
                    Some((_, first)) => {
                        let message = format!("{} is user {uid}, a tenant already (at {first})", tenant.name.value);
                        checker.error(&tenant.name.origin, "tenant.name", message);
                    }
                    None => tenant_users.push((uid, &tenant.name.origin)),
                },
            }
        }
        for tenant in self.volumes.iter().filter_map(|v| v.tenant.as_ref()) {
            if let Err(m) = tenant.name.value.resolve_user(ids) {
                checker.error(&tenant.name.origin, "volume.tenant", m);
            }
        }
        checker.errors
    }
}

impl Layers {
    fn validate(self, c: &mut Checker) -> Config {
        let docker = self.docker.map(|d| validate_docker(d, c));
        let sockets = validate_sockets(self.sockets, c);
        let dmi = self.dmi.and_then(|d| validate_dmi(d, c));
        let count_is_builtin = self.subids.count.is_none();
        let subids = validate_subids(self.subids, c);
        let tenants = validate_tenants(self.tenants, &subids, count_is_builtin, c);
        let volumes = validate_volumes(self.volumes, docker.as_ref(), c);
        Config {
            docker,
            sockets,
            dmi,
            subids,
            tenants,
            volumes,
        }
    }
}

fn validate_docker(d: DockerLayer, c: &mut Checker) -> DockerConfig {
    let units = match d.units {
        Some(units) => {
            for unit in &units.value {
                if let Err(m) = check_unit_name(&unit.value) {
                    c.error(&unit.origin, "docker.units", m);
                }
            }
            units.value.into_iter().map(|u| u.value).collect()
        }
        None => DEFAULT_UNITS.iter().map(|u| u.to_string()).collect(),
    };
    let data_root = d.data_root.map(|v| Located {
        value: c.absolute("docker.data_root", &v),
        origin: v.origin,
    });
    let image_dirs = match d.image_dirs {
        Some(dirs) => {
            for dir in &dirs.value {
                if let Err(m) = check_relative(&dir.value) {
                    c.error(&dir.origin, "docker.image_dirs", m);
                }
            }
            dirs.value.iter().map(|d| PathBuf::from(&d.value)).collect()
        }
        None => DEFAULT_IMAGE_DIRS.iter().map(PathBuf::from).collect(),
    };
    let image_dir_mode = match d.image_dir_mode {
        Some(mode) => Mode::parse(&mode.value)
            .and_then(|parsed| check_image_dir_mode(&mode.value, parsed).map(|()| parsed))
            .unwrap_or_else(|m| {
                c.error(&mode.origin, "docker.image_dir_mode", m);
                Mode::from_st_mode(0)
            }),
        None => Mode::parse(DEFAULT_IMAGE_DIR_MODE).expect("default mode parses"),
    };
    DockerConfig {
        units,
        data_root,
        image_dirs,
        image_dir_mode,
    }
}

fn validate_sockets(layers: Vec<SocketLayer>, c: &mut Checker) -> Vec<SocketConfig> {
    let mut sockets: Vec<SocketConfig> = Vec::new();
    for s in layers {
        let path = c.file("socket.path", &s.path);
        if let Some(first) = sockets.iter().find(|other| other.path == path) {
            let message = format!("{} is configured twice (first at {})", path.display(), first.origin);
            c.error(&s.path.origin, "socket.path", message);
            continue;
        }
        if s.users.is_empty() && s.groups.is_empty() {
            c.error(&s.path.origin, "socket", "grants nothing: give users or groups");
        }
        let access = match s.access.as_ref().map(|a| a.value.as_str()) {
            None | Some("rw") => Perm::RW,
            Some("r") => Perm::R,
            Some(other) => {
                let origin = &s.access.as_ref().expect("access is set").origin;
                c.error(
                    origin,
                    "socket.access",
                    format!("{other:?} is not an access: use \"rw\" or \"r\""),
                );
                Perm::RW
            }
        };
        sockets.push(SocketConfig {
            path,
            users: s.users,
            groups: s.groups,
            access,
            origin: s.path.origin,
        });
    }
    sockets
}

fn validate_dmi(d: DmiLayer, c: &mut Checker) -> Option<DmiConfig> {
    let tables_dir = c.absolute_or("dmi.tables_dir", &d.tables_dir, DEFAULT_DMI_TABLES_DIR);
    let declared = d.declared.expect("a [dmi] layer comes from a table");
    let tables_dir_origin = d.tables_dir.map_or_else(|| declared.clone(), |t| t.origin);
    let world = d.world_readable.filter(|w| w.value);
    let access = match (d.group, world) {
        (Some(group), None) => DmiAccess::Group(group),
        (None, Some(_)) => DmiAccess::WorldReadable,
        (Some(group), Some(world)) => {
            let message = format!(
                "both group and world_readable (at {}) are set: choose one",
                world.origin
            );
            c.error(&group.origin, "dmi.group", message);
            return None;
        }
        (None, None) => {
            let message = "say who may read the tables: group = \"NAME\" (preferred) or world_readable = true";
            c.error(&declared, "dmi", message);
            return None;
        }
    };
    Some(DmiConfig {
        tables_dir,
        tables_dir_origin,
        access,
    })
}

/// Why two subids file paths are refused.
pub const SUBID_FILES_CLASH: &str = "subuid_file and subgid_file must be different files, neither named like one that replacing the other makes (<file>+, <file>-, <file>.lock, <file>.<pid>)";

fn validate_subids(s: SubidsLayer, c: &mut Checker) -> SubidsConfig {
    let subuid_file = c.file_or("subids.subuid_file", &s.subuid_file, DEFAULT_SUBUID_FILE);
    let subgid_file = c.file_or("subids.subgid_file", &s.subgid_file, DEFAULT_SUBGID_FILE);
    // Only paths accepted above (`/etc//subgid` is refused there, and not reported twice). The
    // files are compared again at run time, through links.
    let accepted = |value: &Option<Located<String>>| value.as_ref().is_none_or(|v| check_absolute(&v.value).is_ok());
    let clash = subuid_file.parent() == subgid_file.parent()
        && crate::subids::names_clash(
            subuid_file.file_name().unwrap_or_default().as_encoded_bytes(),
            subgid_file.file_name().unwrap_or_default().as_encoded_bytes(),
        );
    if accepted(&s.subuid_file) && accepted(&s.subgid_file) && clash {
        let (key, named) = match (&s.subgid_file, &s.subuid_file) {
            (Some(named), _) => ("subids.subgid_file", named),
            (None, Some(named)) => ("subids.subuid_file", named),
            (None, None) => unreachable!("the defaults differ"),
        };
        let message = format!("{}: {SUBID_FILES_CLASH}", named.value);
        c.error(&named.origin, key, message);
    }
    if let (Some(min), Some(max)) = (&s.min, &s.max)
        && min.value > max.value
    {
        c.error(
            &max.origin,
            "subids.max",
            format!("{} is below min {}", max.value, min.value),
        );
    }
    if let Some(min) = &s.min
        && min.value == 0
    {
        c.error(
            &min.origin,
            "subids.min",
            "0 would hand out id 0, which maps the host's root: the lowest is 1",
        );
    }
    if let Some(max) = &s.max
        && max.value == u32::MAX
    {
        c.error(
            &max.origin,
            "subids.max",
            "4294967295 is the invalid id (-1) and can never be handed out",
        );
    }
    if let Some(count) = s.count.as_ref().filter(|n| n.value == 0) {
        c.error(&count.origin, "subids.count", "must be at least 1");
    }
    let config = SubidsConfig {
        subuid_file,
        subgid_file,
        subuid_file_origin: s.subuid_file.map(|f| f.origin),
        subgid_file_origin: s.subgid_file.map(|f| f.origin),
        min: s.min.as_ref().map(|m| m.value),
        max: s.max.as_ref().map(|m| m.value),
        min_origin: s.min.map(|m| m.origin),
        max_origin: s.max.map(|m| m.origin),
        count: s.count.as_ref().map_or(DEFAULT_SUBID_COUNT, |n| n.value),
        count_origin: s.count.as_ref().map(|n| n.origin.clone()),
        quarantine_days: s.quarantine_days.map_or(DEFAULT_QUARANTINE_DAYS, |n| n.value),
    };
    if let Some(count) = &s.count
        && let Err(m) = check_fits(count.value, &config)
    {
        c.error(&count.origin, "subids.count", m);
    }
    config
}

/// Refuses a range size that never fits between `min` and `max` when the config sets both in
/// order (an unset one comes from login.defs at run time; `min` above `max` is refused apart).
fn check_fits(count: u32, subids: &SubidsConfig) -> Result<(), String> {
    let (Some(min), Some(max)) = (subids.min, subids.max) else {
        return Ok(());
    };
    let room = (u64::from(max) + 1).saturating_sub(u64::from(min));
    if min > max || u64::from(count) <= room {
        return Ok(());
    }
    Err(format!(
        "{count} ids never fit between min {min} and max {max} ({room} ids)"
    ))
}

/// Checks the tenants; `count_is_builtin` says `[subids] count` is unset, so its default was
/// not checked against `min` and `max` yet.
fn validate_tenants(
    layers: Vec<TenantLayer>,
    subids: &SubidsConfig,
    count_is_builtin: bool,
    c: &mut Checker,
) -> Vec<TenantConfig> {
    let mut tenants: Vec<TenantConfig> = Vec::new();
    for t in layers {
        if let IdRef::Name(name) = &t.name.value
            && let Err(m) = check_user_name(name)
        {
            c.error(&t.name.origin, "tenant.name", m);
            continue;
        }
        if let Some(first) = tenants.iter().find(|other| other.name.value == t.name.value) {
            let message = format!(
                "tenant {} is configured twice (first at {})",
                t.name.value, first.name.origin
            );
            c.error(&t.name.origin, "tenant.name", message);
            continue;
        }
        match &t.count {
            Some(count) if count.value == 0 => c.error(&count.origin, "tenant.count", "must be at least 1"),
            Some(count) => {
                if let Err(m) = check_fits(count.value, subids) {
                    c.error(&count.origin, "tenant.count", m);
                }
            }
            None if count_is_builtin => {
                if let Err(m) = check_fits(subids.count, subids) {
                    let message = format!("not given, so [subids] count applies: {m}");
                    c.error(&t.name.origin, "tenant.count", message);
                }
            }
            None => {}
        }
        tenants.push(TenantConfig {
            name: t.name,
            count: t.count.map(|n| n.value),
        });
    }
    tenants
}

/// The largest id the kernel accepts (`u32::MAX` is `(uid_t)-1`).
const MAX_ID: u32 = u32::MAX - 1;

/// Directories that are never a volume themselves, only directories below them.
const SYSTEM_TREES: [&str; 22] = [
    "/", "/etc", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/boot", "/dev", "/proc", "/sys",
    "/run", "/var", "/var/lib", "/home", "/root", "/opt", "/srv", "/tmp", "/var/tmp",
];

/// Trees that hold the system's (or nonrootd's) own files: no volume lies inside them.
const NO_VOLUMES_IN: [&str; 16] = [
    "/etc",
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/boot",
    "/dev",
    "/proc",
    "/sys",
    // Runtime state of the system's services (containerd's, systemd's sockets), under either
    // spelling, and root's home.
    "/run",
    "/var/run",
    "/root",
    "/var/lib/nonrootd",
];

/// Docker's data root unless the config names another; `data-root` of daemon.json is read
/// only at run time.
pub const DOCKER_DATA_ROOT: &str = "/var/lib/docker";

/// Why `path` may not be a volume: a system directory itself, inside a system tree, or inside
/// one of Docker's `data_roots` other than a named volume's data, or holding a data root.
pub fn volume_refusal(path: &Path, data_roots: &[&Path]) -> Option<String> {
    let shown = path.display();
    if SYSTEM_TREES.iter().any(|tree| path == Path::new(tree)) {
        return Some(format!(
            "{shown} is a system directory: its walk would re-own the whole tree (a directory below it can be a volume)"
        ));
    }
    if let Some(tree) = NO_VOLUMES_IN.iter().find(|tree| path.starts_with(tree)) {
        return Some(format!(
            "{shown} is inside {tree}, which holds the system's own files: its walk would hand them to a container's user"
        ));
    }
    if let Some(root) = data_roots.iter().find(|root| root.starts_with(path)) {
        return Some(format!(
            "{shown} holds Docker's data root {}: its walk would hand Docker's own files to a container's user",
            root.display()
        ));
    }
    let root = data_roots.iter().find(|root| {
        path.strip_prefix(root)
            .is_ok_and(|inside| !is_named_volume_data(inside))
    })?;
    Some(format!(
        "{shown} is inside Docker's data root {}: only a named volume's data (volumes/NAME/_data, or UID.GID/volumes/NAME/_data with userns-remap) may be walked; volumes/ and volumes/NAME hold Docker's records of them",
        root.display()
    ))
}

/// Whether a path inside Docker's data root is (or is below) a named volume's `_data`:
/// `volumes/NAME/_data`, or `UID.GID/volumes/NAME/_data` under userns-remap.
fn is_named_volume_data(inside: &Path) -> bool {
    let parts: Vec<&str> = inside.iter().map(|c| c.to_str().unwrap_or("")).collect();
    let remap_root = |c: &str| {
        c.split_once('.')
            .is_some_and(|(uid, gid)| [uid, gid].iter().all(|id| id.parse::<u32>().is_ok()))
    };
    let volume = match parts.as_slice() {
        [first, rest @ ..] if remap_root(first) => rest,
        all => all,
    };
    matches!(volume, ["volumes", _, "_data", ..])
}

fn validate_volumes(layers: Vec<VolumeLayer>, docker: Option<&DockerConfig>, c: &mut Checker) -> Vec<VolumeConfig> {
    let configured = docker
        .and_then(|d| d.data_root.as_ref())
        .map(|root| root.value.as_path());
    let data_roots: Vec<&Path> = [Some(Path::new(DOCKER_DATA_ROOT)), configured]
        .into_iter()
        .flatten()
        .collect();
    let mut volumes: Vec<VolumeConfig> = Vec::new();
    for v in layers {
        let path = c.absolute("volume.path", &v.path);
        if let Some(message) = volume_refusal(&path, &data_roots) {
            c.error(&v.path.origin, "volume.path", message);
            continue;
        }
        if let Some(first) = volumes.iter().find(|other| other.path == path) {
            let message = format!("{} is configured twice (first at {})", path.display(), first.origin);
            c.error(&v.path.origin, "volume.path", message);
            continue;
        }
        let nested = volumes
            .iter()
            .find(|other| path.starts_with(&other.path) || other.path.starts_with(&path));
        if let Some(other) = nested {
            let message = format!(
                "{} and the volume {} (at {}) are nested: one walk would re-own the other's files",
                path.display(),
                other.path.display(),
                other.origin
            );
            c.error(&v.path.origin, "volume.path", message);
            continue;
        }
        let mut id = |key: &str, value: &Option<Located<u32>>| match value {
            Some(id) if id.value > MAX_ID => {
                c.error(
                    &id.origin,
                    &format!("volume.{key}"),
                    format!("{} is not a valid id", id.value),
                );
                0
            }
            Some(id) => id.value,
            None => {
                c.error(
                    &v.path.origin,
                    "volume",
                    format!("{key} is missing: say who must own the files"),
                );
                0
            }
        };
        let uid = id("uid", &v.uid);
        let gid = id("gid", &v.gid);
        let mode = v.mode.as_ref().map(|mode| {
            let parsed = Mode::parse(&mode.value).and_then(|parsed| match parsed.bits() & 0o6000 {
                0 => Ok(parsed),
                _ => Err(format!(
                    "{:?} has set-uid or set-gid bits, which the daemon's sandbox (RestrictSUIDSGID=yes) cannot set",
                    mode.value
                )),
            });
            parsed.unwrap_or_else(|m| {
                c.error(&mode.origin, "volume.mode", m);
                Mode::from_st_mode(0)
            })
        });
        let mapping = v.mapping.as_ref().map(|m| {
            Mapping::parse(&m.value).unwrap_or_else(|message| {
                c.error(&m.origin, "volume.mapping", message);
                Mapping::Remap
            })
        });
        let tenant = match (v.tenant, mapping) {
            (Some(name), Some(mapping)) => {
                if let IdRef::Name(n) = &name.value
                    && let Err(m) = check_user_name(n)
                {
                    c.error(&name.origin, "volume.tenant", m);
                }
                Some(VolumeTenant { name, mapping })
            }
            (Some(name), None) => {
                let message = "needs mapping = \"remap\" (dockerd userns-remap) or \"rootless\"";
                c.error(&name.origin, "volume.tenant", message);
                None
            }
            (None, Some(_)) => {
                let origin = &v.mapping.as_ref().expect("mapping is set").origin;
                c.error(origin, "volume.mapping", "only means something with tenant");
                None
            }
            (None, None) => None,
        };
        volumes.push(VolumeConfig {
            path,
            uid,
            gid,
            mode,
            tenant,
            origin: v.path.origin,
        });
    }
    volumes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::tests::TableIds;

    fn parse(files: &[(&str, &str)]) -> Result<Config, Vec<String>> {
        let sources: Vec<_> = files.iter().map(|(p, t)| (PathBuf::from(p), t.to_string())).collect();
        Config::from_sources(&sources).map_err(|errs| errs.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn empty_config_has_no_duties() {
        let config = parse(&[("/etc/n.toml", "")]).unwrap();
        assert_eq!(config.docker, None);
        assert!(config.sockets.is_empty());
        assert_eq!(config.dmi, None);
    }

    #[test]
    fn docker_section_gets_defaults() {
        let config = parse(&[("/etc/n.toml", "[docker]\n")]).unwrap();
        let docker = config.docker.unwrap();
        assert_eq!(docker.units, ["docker.socket", "docker.service"]);
        assert_eq!(docker.data_root, None);
        assert_eq!(docker.image_dirs.len(), 3);
        assert_eq!(docker.image_dir_mode.bits(), 0o750);
    }

    #[test]
    fn unknown_keys_name_file_and_line() {
        let errs = parse(&[("/etc/n.toml", "[docker]\nimage_dir_mode = \"0750\"\nimage_dir = []\n")]).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].starts_with("/etc/n.toml:3: docker.image_dir: unknown field `image_dir`"),
            "{errs:?}"
        );
    }

    #[test]
    fn type_errors_name_the_key() {
        let error = |text: &str| parse(&[("/etc/n.toml", text)]).unwrap_err();
        assert_eq!(
            error("[subids]\ncount = \"many\"\n"),
            [
                "/etc/n.toml:2: subids.count: invalid type: string \"many\", expected a whole number from 0 to 4294967295"
            ]
        );
        assert_eq!(
            error("# sockets\n[[socket]] # the first\npath = 5\n"),
            ["/etc/n.toml:3: socket.path: invalid type: integer `5`, expected a string"]
        );
        assert_eq!(
            error("[subids]\ncount = -5\n"),
            ["/etc/n.toml:2: subids.count: invalid value: integer `-5`, expected a whole number from 0 to 4294967295"]
        );
        assert_eq!(
            error("[[volume]]\npath = \"/srv/v\"\nuid = -1\ngid = 1\n"),
            ["/etc/n.toml:3: volume.uid: invalid value: integer `-1`, expected a numeric id from 0 to 4294967294"]
        );
        assert_eq!(
            error("[[tenant]]\nname = \"a\"\ncount = 4294967296\n"),
            [
                "/etc/n.toml:3: tenant.count: invalid value: integer `4294967296`, expected a whole number from 0 to 4294967295"
            ]
        );
        assert_eq!(
            error("[subids]\nmin = 1.5\n"),
            [
                "/etc/n.toml:2: subids.min: invalid type: floating point `1.5`, expected a numeric id from 0 to 4294967294"
            ]
        );
        // Keys as the parser reads them: elements of arrays, inline tables over several lines,
        // dotted and quoted keys, headers inside multi-line strings.
        assert_eq!(
            error("[[socket]]\npath = \"/run/a.sock\"\nusers = [\n  1,\n  -2,\n]\n"),
            [
                "/etc/n.toml:5: socket.users: invalid value: integer `-2`, expected a name or a numeric id from 0 to 4294967294"
            ]
        );
        assert_eq!(
            error("subids = {\n  count = \"many\",\n}\n"),
            [
                "/etc/n.toml:2: subids.count: invalid type: string \"many\", expected a whole number from 0 to 4294967295"
            ]
        );
        assert_eq!(
            error("tenant = [\n  { name = \"alice\",\n    count = \"lots\" },\n]\n"),
            [
                "/etc/n.toml:3: tenant.count: invalid type: string \"lots\", expected a whole number from 0 to 4294967295"
            ]
        );
        assert_eq!(
            error("subids.\"count\" = true\n"),
            ["/etc/n.toml:1: subids.count: invalid type: boolean `true`, expected a whole number from 0 to 4294967295"]
        );
        assert_eq!(
            error("[docker]\ndata_root = \'\'\'\n[dmi]\n\'\'\'\nunits = 5\n"),
            ["/etc/n.toml:5: docker.units: invalid type: integer `5`, expected a sequence"]
        );
        assert_eq!(
            error("[[socket]]\npath = \"/run/a.sock\"\ngroups = [1.5]\n"),
            [
                "/etc/n.toml:3: socket.groups: invalid type: floating point `1.5`, expected a name or a numeric id from 0 to 4294967294"
            ]
        );
    }

    #[test]
    fn semantic_errors_name_file_line_and_key() {
        let text = "[docker]\nimage_dir_mode = \"0758\"\ndata_root = \"var/lib/docker\"\n\
                    image_dirs = [\"../etc\"]\n\n[[socket]]\npath = \"/run/../etc/shadow\"\nusers = [1]\naccess = \"rwx\"\n";
        let errs = parse(&[("/etc/n.toml", text)]).unwrap_err();
        assert_eq!(
            errs,
            [
                "/etc/n.toml:2: docker.image_dir_mode: \"0758\" is not a mode: write 3 or 4 octal digits, like \"0750\"",
                "/etc/n.toml:3: docker.data_root: \"var/lib/docker\" must be an absolute path",
                "/etc/n.toml:4: docker.image_dirs: \"../etc\" must be a relative path below the data root, without \"..\"",
                "/etc/n.toml:7: socket.path: \"/run/../etc/shadow\" must be a normalized path (no \".\", \"..\" or \"//\")",
                "/etc/n.toml:9: socket.access: \"rwx\" is not an access: use \"rw\" or \"r\"",
            ]
        );
    }

    #[test]
    fn a_nul_byte_in_a_path_is_named() {
        let text =
            "[docker]\nimage_dirs = [\"ima\\u0000ge\"]\n\n[[socket]]\npath = \"/run/d\\u0000.sock\"\nusers = [1]\n";
        let errs = parse(&[("/etc/n.toml", text)]).unwrap_err();
        assert_eq!(
            errs,
            [
                "/etc/n.toml:2: docker.image_dirs: \"ima\\0ge\" contains a NUL byte, which no path can",
                "/etc/n.toml:5: socket.path: \"/run/d\\0.sock\" contains a NUL byte, which no path can",
            ]
        );
    }

    #[test]
    fn drop_ins_replace_values_and_append_tables() {
        let main = "[docker]\nimage_dir_mode = \"0700\"\n[[socket]]\npath = \"/run/a.sock\"\nusers = [1]\n";
        let drop_in = "[docker]\nimage_dir_mode = \"0750\"\n[[socket]]\npath = \"/run/b.sock\"\ngroups = [\"monitoring\"]\naccess = \"r\"\n";
        let config = parse(&[("/etc/n.toml", main), ("/etc/n.d/10.toml", drop_in)]).unwrap();
        assert_eq!(config.docker.unwrap().image_dir_mode.bits(), 0o750);
        let paths: Vec<_> = config.sockets.iter().map(|s| s.path.to_str().unwrap()).collect();
        assert_eq!(paths, ["/run/a.sock", "/run/b.sock"]);
        assert_eq!(config.sockets[1].access, Perm::R);
        assert_eq!(config.sockets[1].groups[0].origin.to_string(), "/etc/n.d/10.toml:5");
    }

    #[test]
    fn the_same_socket_twice_names_both_files() {
        let main = "[[socket]]\npath = \"/run/docker.sock\"\nusers = [1]\n";
        let drop_in = "\n[[socket]]\npath = \"/run/docker.sock\"\nusers = [2]\n";
        let errs = parse(&[("/etc/n.toml", main), ("/etc/n.d/a.toml", drop_in)]).unwrap_err();
        assert_eq!(
            errs,
            ["/etc/n.d/a.toml:3: socket.path: /run/docker.sock is configured twice (first at /etc/n.toml:2)"]
        );
    }

    #[test]
    fn dmi_needs_exactly_one_reader() {
        let both = "[dmi]\ngroup = \"dmi\"\nworld_readable = true\n";
        let errs = parse(&[("/etc/n.toml", both)]).unwrap_err();
        assert_eq!(
            errs,
            ["/etc/n.toml:2: dmi.group: both group and world_readable (at /etc/n.toml:3) are set: choose one"]
        );
        let merged = parse(&[
            ("/etc/n.toml", "[dmi]\ngroup = \"dmi\"\n"),
            ("/etc/d.toml", "[dmi]\nworld_readable = true\n"),
        ]);
        assert!(merged.unwrap_err()[0].contains("choose one"));
        let neither = parse(&[("/etc/n.toml", "\n[dmi]\ntables_dir = \"/x\"\n")]).unwrap_err();
        assert!(
            neither[0].starts_with("/etc/n.toml:2: dmi: say who may read"),
            "{neither:?}"
        );
        let empty = parse(&[("/etc/n.toml", "[docker]\n[dmi]\n")]).unwrap_err();
        assert!(
            empty[0].starts_with("/etc/n.toml:2: dmi: say who may read"),
            "{empty:?}"
        );
        let world = parse(&[("/etc/n.toml", "[dmi]\nworld_readable = true\n")]).unwrap();
        assert_eq!(world.dmi.unwrap().access, DmiAccess::WorldReadable);
    }

    #[test]
    fn a_duplicate_key_is_named() {
        let errors = |text: &str| parse(&[("/etc/n.toml", text)]).unwrap_err();
        assert_eq!(
            errors("[docker]\nunits = []\nunits = []\n"),
            ["/etc/n.toml:3: docker.units: duplicate key"]
        );
        assert_eq!(
            errors("[[socket]]\npath = \"/run/a.sock\"\nusers = []\nusers = []\n"),
            ["/etc/n.toml:4: socket.users: duplicate key"]
        );
        assert_eq!(errors("a = 1\na = 2\n")[0], "/etc/n.toml:2: a: duplicate key");
        // A header inside a string or an array is no section.
        assert_eq!(
            errors("[docker]\nimage_dirs = \"\"\"\n[fake]\n\"\"\"\nimage_dirs = []\n")[0],
            "/etc/n.toml:5: docker.image_dirs: duplicate key"
        );
        assert_eq!(
            errors("[docker]\nunits = [\n  [1],\n]\nunits = 2\n")[0],
            "/etc/n.toml:5: docker.units: duplicate key"
        );
        assert_eq!(errors("[docker]\n[docker]\n"), ["/etc/n.toml:2: docker: duplicate key"]);
    }

    #[test]
    fn a_section_in_the_wrong_brackets_says_which_to_use() {
        let errors = |text: &str| parse(&[("/etc/n.toml", text)]).unwrap_err();
        assert!(errors("[[docker]]\nunits = []\n")[0].ends_with("(write [docker], one table)"));
        assert!(errors("[socket]\npath = \"/run/x.sock\"\n")[0].ends_with("(write [[socket]], one table per socket)"));
    }

    #[test]
    fn unresolved_names_are_reported_with_their_lines() {
        let text = "[[socket]]\npath = \"/run/docker.sock\"\nusers = [4321, \"cadvisor\",\n  \"ghost\"]\ngroups = [\"nogroup\"]\n";
        let config = parse(&[("/etc/n.toml", text)]).unwrap();
        let errs: Vec<_> = config
            .unresolved(&TableIds(&[("cadvisor", 4321)]))
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(
            errs,
            [
                "/etc/n.toml:4: socket.users: no such user \"ghost\"",
                "/etc/n.toml:5: socket.groups: no such group \"nogroup\"",
            ]
        );
        // One user under two spellings is one tenant.
        let text = "[[tenant]]\nname = \"cadvisor\"\n[[tenant]]\nname = 4321\ncount = 1000\n";
        let config = parse(&[("/etc/n.toml", text)]).unwrap();
        let errs: Vec<_> = config
            .unresolved(&TableIds(&[("cadvisor", 4321)]))
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(
            errs,
            ["/etc/n.toml:4: tenant.name: 4321 is user 4321, a tenant already (at /etc/n.toml:2)"]
        );
    }

    #[test]
    fn tenant_names_are_checked() {
        for bad in ["evil:0:1", "a\nb", "../x", "Root", "", "x".repeat(33).as_str()] {
            let text = format!("[[tenant]]\nname = {}\n", toml::Value::String(bad.to_string()));
            let errs = parse(&[("/etc/n.toml", &text)]).unwrap_err();
            assert!(errs[0].contains("is not a valid user name"), "{bad:?}: {errs:?}");
        }
        let ok = parse(&[(
            "/etc/n.toml",
            "[[tenant]]\nname = \"acme\"\ncount = 131072\n[[tenant]]\nname = 1001\n",
        )])
        .unwrap();
        assert_eq!(ok.tenants.len(), 2);
        assert_eq!(ok.tenants[0].count, Some(131072));
    }

    #[test]
    fn volumes_are_validated_with_file_and_line() {
        let ok = parse(&[(
            "/etc/n.toml",
            "[[volume]]\npath = \"/srv/redis-data\"\nuid = 999\ngid = 999\nmode = \"0750\"\n\
             [[volume]]\npath = \"/srv/t\"\nuid = 0\ngid = 0\ntenant = \"acme\"\nmapping = \"rootless\"\n",
        )])
        .unwrap();
        assert_eq!(ok.volumes.len(), 2);
        assert_eq!(ok.volumes[0].mode.unwrap().bits(), 0o750);
        assert_eq!(ok.volumes[1].tenant.as_ref().unwrap().mapping, Mapping::Rootless);
        assert_eq!(ok.volumes[1].origin.to_string(), "/etc/n.toml:7");

        let bad = "[[volume]]\npath = \"srv\"\nuid = 4294967295\ngid = 1\nmode = \"0778\"\n\
                   [[volume]]\npath = \"/srv/x\"\ngid = 1\ntenant = \"acme\"\n\
                   [[volume]]\npath = \"/srv/y\"\nuid = 1\ngid = 1\nmapping = \"userns\"\n\
                   [[volume]]\npath = \"/\"\nuid = 1\ngid = 1\n\
                   [[volume]]\npath = \"/srv/z\"\nuid = 1\ngid = 1\nmode = \"2770\"\n";
        assert_eq!(
            parse(&[("/etc/n.toml", bad)]).unwrap_err(),
            [
                "/etc/n.toml:2: volume.path: \"srv\" must be an absolute path",
                "/etc/n.toml:3: volume.uid: 4294967295 is not a valid id",
                "/etc/n.toml:5: volume.mode: \"0778\" is not a mode: write 3 or 4 octal digits, like \"0750\"",
                "/etc/n.toml:7: volume: uid is missing: say who must own the files",
                "/etc/n.toml:9: volume.tenant: needs mapping = \"remap\" (dockerd userns-remap) or \"rootless\"",
                "/etc/n.toml:14: volume.mapping: \"userns\" is not a mapping: use \"remap\" or \"rootless\"",
                "/etc/n.toml:14: volume.mapping: only means something with tenant",
                "/etc/n.toml:16: volume.path: / is a system directory: its walk would re-own the whole tree (a directory below it can be a volume)",
                "/etc/n.toml:23: volume.mode: \"2770\" has set-uid or set-gid bits, which the daemon's sandbox (RestrictSUIDSGID=yes) cannot set",
            ]
        );
    }

    #[test]
    fn system_trees_are_not_volumes_but_directories_below_them_are() {
        let volume = |path: &str| {
            parse(&[(
                "/etc/n.toml",
                &format!("[[volume]]\npath = {path:?}\nuid = 1\ngid = 1\n"),
            )])
        };
        for tree in [
            "/etc",
            "/usr",
            "/var/lib",
            "/var/lib/",
            "/home",
            "/tmp",
            "/var/tmp",
            "/libx32",
            "/srv",
        ] {
            let errs = volume(tree).unwrap_err();
            assert_eq!(
                errs,
                [format!(
                    "/etc/n.toml:2: volume.path: {tree} is a system directory: its walk would re-own the whole tree (a directory below it can be a volume)"
                )]
            );
        }
        for below in [
            "/srv/redis-data",
            "/var/lib/app",
            "/home/app/data",
            "/etcetera",
            "/var/lib/docker/volumes/redis/_data",
        ] {
            assert!(volume(below).is_ok(), "{below}");
        }
        assert_eq!(
            volume("/usr/lib").unwrap_err(),
            [
                "/etc/n.toml:2: volume.path: /usr/lib is inside /usr, which holds the system's own files: its walk would hand them to a container's user"
            ]
        );
        for inside in ["/etc/systemd/system", "/boot/efi", "/var/lib/nonrootd/x"] {
            assert!(
                volume(inside).unwrap_err()[0].contains("which holds the system's own files"),
                "{inside}"
            );
        }
        assert_eq!(
            volume("/var/lib/docker/image").unwrap_err(),
            [
                "/etc/n.toml:2: volume.path: /var/lib/docker/image is inside Docker's data root /var/lib/docker: only a named volume's data (volumes/NAME/_data, or UID.GID/volumes/NAME/_data with userns-remap) may be walked; volumes/ and volumes/NAME hold Docker's records of them"
            ]
        );
        let with_root = |path: &str| {
            let text =
                format!("[docker]\ndata_root = \"/srv/docker\"\n[[volume]]\npath = {path:?}\nuid = 1\ngid = 1\n");
            parse(&[("/etc/n.toml", &text)])
        };
        assert!(with_root("/srv/docker/overlay2").unwrap_err()[0].contains("inside Docker's data root /srv/docker"));
        for data in [
            "/srv/docker/volumes/db/_data",
            "/srv/docker/volumes/db/_data/sub",
            "/srv/docker/100000.100000/volumes/db/_data",
        ] {
            assert!(with_root(data).is_ok(), "{data}");
        }
        // Docker's records of the volumes (metadata.db, each volume's opts.json, which can
        // make Docker mount any host path) are not a volume's data.
        for records in [
            "/srv/docker/volumes",
            "/srv/docker/volumes/db",
            "/var/lib/docker/volumes/db",
            "/srv/docker/100000.100000/volumes/db",
            "/srv/docker/100000.100000",
            "/srv/docker/x.1/volumes/db/_data",
        ] {
            let errs = with_root(records).unwrap_err();
            assert!(
                errs[0].contains("only a named volume's data (volumes/NAME/_data"),
                "{records}: {errs:?}"
            );
        }
        assert_eq!(
            with_root("/srv/dockerdata").map(|_| ()),
            Ok(()),
            "a sibling with the same prefix is not inside"
        );
        let text = "[docker]\ndata_root = \"/srv/apps/docker\"\n[[volume]]\npath = \"/srv/apps\"\nuid = 1\ngid = 1\n";
        assert_eq!(
            parse(&[("/etc/n.toml", text)]).unwrap_err(),
            [
                "/etc/n.toml:4: volume.path: /srv/apps holds Docker's data root /srv/apps/docker: its walk would hand Docker's own files to a container's user"
            ]
        );
    }

    #[test]
    fn image_dir_modes_give_no_write_to_others_and_no_special_bits() {
        let mode = |mode: &str| parse(&[("/etc/n.toml", &format!("[docker]\nimage_dir_mode = {mode:?}\n"))]);
        assert_eq!(
            mode("0757").unwrap_err(),
            [
                "/etc/n.toml:2: docker.image_dir_mode: \"0757\" gives write for others: the directories need only read access for a group, like \"0750\""
            ]
        );
        assert_eq!(
            mode("7777").unwrap_err(),
            [
                "/etc/n.toml:2: docker.image_dir_mode: \"7777\" gives set-uid, set-gid or sticky bits and write for the group and others: the directories need only read access for a group, like \"0750\""
            ]
        );
        for special in ["4750", "2750", "1750"] {
            assert!(
                mode(special).unwrap_err()[0].contains("gives set-uid, set-gid or sticky bits:"),
                "{special}"
            );
        }
        assert_eq!(
            mode("0775").unwrap_err(),
            [
                "/etc/n.toml:2: docker.image_dir_mode: \"0775\" gives write for the group: the directories need only read access for a group, like \"0750\""
            ]
        );
        for good in ["0750", "755", "0700", "0710"] {
            assert!(mode(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn units_must_be_unit_names() {
        let units = |units: &str| parse(&[("/etc/n.toml", &format!("[docker]\nunits = {units}\n"))]);
        let refused = |unit: &str| units(&format!("[{unit:?}]")).unwrap_err();
        assert_eq!(
            refused("."),
            [
                "/etc/n.toml:2: docker.units: \".\" is not a unit name: it needs a type suffix, like \".service\" or \".socket\""
            ]
        );
        for (unit, why) in [
            ("", "it needs a type suffix"),
            ("docker", "it needs a type suffix"),
            ("docker.conf", "it needs a type suffix"),
            (".service", "nothing comes before \".service\""),
            (
                "a/b.service",
                "only ASCII letters, digits and \":-_.\\@\" may appear in one",
            ),
            ("a b.service", "only ASCII letters"),
            ("getty@.service", "write NAME@INSTANCE.TYPE"),
            ("@tty1.service", "write NAME@INSTANCE.TYPE"),
            ("a@b@c.service", "write NAME@INSTANCE.TYPE"),
        ] {
            let errs = refused(unit);
            assert!(
                errs.len() == 1 && errs[0].contains(&format!("{unit:?} is not a unit name: {why}")),
                "{unit:?}: {errs:?}"
            );
        }
        assert!(refused(&format!("{}.service", "a".repeat(250)))[0].contains("longer than 255 bytes"));
        let ok = units("[\"docker.socket\", \"containerd.service\", \"getty@tty1.service\", \"x-y_z:1.target\"]");
        assert_eq!(ok.unwrap().docker.unwrap().units.len(), 4);
        assert!(units("[]").is_ok());
    }

    #[test]
    fn a_count_that_never_fits_between_min_and_max_is_refused() {
        let subids = |text: &str| parse(&[("/etc/n.toml", text)]);
        assert_eq!(
            subids("[subids]\nmin = 1000\nmax = 2000\ncount = 1002\n").unwrap_err(),
            ["/etc/n.toml:4: subids.count: 1002 ids never fit between min 1000 and max 2000 (1001 ids)"]
        );
        assert!(subids("[subids]\nmin = 1000\nmax = 2000\ncount = 1001\n").is_ok());
        let tenants = "[subids]\nmin = 1000\nmax = 2000\n\
                       [[tenant]]\nname = \"acme\"\ncount = 500\n\
                       [[tenant]]\nname = \"big\"\ncount = 4000\n\
                       [[tenant]]\nname = \"plain\"\n";
        assert_eq!(
            subids(tenants).unwrap_err(),
            [
                "/etc/n.toml:9: tenant.count: 4000 ids never fit between min 1000 and max 2000 (1001 ids)",
                "/etc/n.toml:11: tenant.count: not given, so [subids] count applies: 65536 ids never fit between min 1000 and max 2000 (1001 ids)",
            ]
        );
        // A range left to login.defs is checked at run time; the default count alone is no
        // error while no tenant takes it (`subids allocate --count` may fit).
        assert!(subids("[subids]\nmax = 2000\n[[tenant]]\nname = \"plain\"\n").is_ok());
        assert!(subids("[subids]\nmin = 1000\nmax = 2000\n").is_ok());
        // A count that is too large is reported once, not again for each tenant taking it.
        assert_eq!(
            subids("[subids]\nmin = 1\nmax = 10\ncount = 11\n[[tenant]]\nname = \"plain\"\n").unwrap_err(),
            ["/etc/n.toml:4: subids.count: 11 ids never fit between min 1 and max 10 (10 ids)"]
        );
    }

    /// A socket or subids file named with a trailing "/", a mode written as a number, and a
    /// volume in the system's runtime state or root's home are refused, said so.
    #[test]
    fn files_modes_and_runtime_volumes_are_refused_with_the_way_to_write_them() {
        let errors = |text: &str| parse(&[("/etc/n.toml", text)]).unwrap_err();
        assert_eq!(
            errors("[[socket]]\npath = \"/run/x.sock/\"\nusers = [1]\n"),
            ["/etc/n.toml:2: socket.path: \"/run/x.sock/\" ends in \"/\": name the file itself"]
        );
        let quoted = errors("[[volume]]\npath = \"/srv/v\"\nuid = 1\ngid = 1\n\"mode\" = 0750\n");
        assert!(quoted[0].ends_with("like mode = \"0750\")"), "{quoted:?}");
        let other_zero = errors("[[volume]]\npath = \"/srv/v\"\nuid = 0999\ngid = 1\n");
        assert!(
            other_zero[0].ends_with("(write the number without it)"),
            "{other_zero:?}"
        );
        let leading_zero = errors("[[volume]]\npath = \"/srv/v\"\nuid = 1\ngid = 1\nmode = 0750\n");
        assert!(
            leading_zero[0].starts_with("/etc/n.toml:5: ")
                && leading_zero[0].ends_with("(write a mode as a string, like mode = \"0750\")"),
            "{leading_zero:?}"
        );
        assert_eq!(
            errors("[docker]\nimage_dir_mode = 0o750\n"),
            [
                "/etc/n.toml:2: docker.image_dir_mode: invalid type: integer `488`, expected a string (write a mode as a string, like mode = \"0750\")"
            ]
        );
        for path in ["/run/containerd", "/var/run/x", "/root/data"] {
            let refused = errors(&format!("[[volume]]\npath = \"{path}\"\nuid = 1\ngid = 1\n"));
            assert!(refused[0].contains("which holds the system's own files"), "{refused:?}");
        }
    }

    /// A bad element of a multi-line array is named at its own line.
    #[test]
    fn array_elements_are_named_at_their_lines() {
        let errors = parse(&[(
            "/etc/n.toml",
            "[docker]\nunits = [\n  \"docker.service\",\n  \"bad\",\n]\nimage_dirs = [\n  \"image\",\n  \"../x\",\n]\n",
        )])
        .unwrap_err();
        assert!(
            errors[0].starts_with("/etc/n.toml:4: docker.units: \"bad\""),
            "{errors:?}"
        );
        assert!(
            errors[1].starts_with("/etc/n.toml:8: docker.image_dirs: \"../x\""),
            "{errors:?}"
        );
    }

    /// The parser's own type names never reach a message.
    #[test]
    fn messages_name_tables_not_the_parser_s_types() {
        for text in ["dmi = []\n", "socket = [5]\n", "[docker]\ndata_root = 1979-05-27\n"] {
            let errors = parse(&[("/etc/n.toml", text)]).unwrap_err();
            assert!(!errors[0].contains("Raw"), "{errors:?}");
        }
        assert_eq!(
            without_type_names("invalid type: sequence, expected struct RawDmi with 3 elements (x)"),
            "invalid type: sequence, expected a table (x)"
        );
    }

    /// Line numbers come from one table of line starts (a search per value, not a count from
    /// the start of the file).
    #[test]
    fn line_numbers_are_right_in_a_long_file() {
        let mut text = String::new();
        for i in 0..3000 {
            text.push_str(&format!("[[volume]]\npath = \"/srv/v{i}\"\nuid = 1\ngid = 1\n"));
        }
        text.push_str("[[volume]]\npath = \"/srv/v0\"\nuid = 1\ngid = 1\n");
        let errors = parse(&[("/etc/n.toml", &text)]).unwrap_err();
        assert_eq!(
            errors,
            ["/etc/n.toml:12002: volume.path: /srv/v0 is configured twice (first at /etc/n.toml:2)"]
        );
    }

    #[test]
    fn subuid_and_subgid_must_be_different_files() {
        let subids = |text: &str| parse(&[("/etc/n.toml", text)]);
        assert_eq!(
            subids("[subids]\nsubuid_file = \"/srv/ids\"\nsubgid_file = \"/srv/ids\"\n").unwrap_err(),
            [format!(
                "/etc/n.toml:3: subids.subgid_file: /srv/ids: {SUBID_FILES_CLASH}"
            )]
        );
        assert_eq!(
            subids("[subids]\nsubuid_file = \"/etc/subgid\"\n").unwrap_err(),
            [format!(
                "/etc/n.toml:2: subids.subuid_file: /etc/subgid: {SUBID_FILES_CLASH}"
            )]
        );
        assert_eq!(
            subids("[subids]\nsubuid_file = \"/etc/subgid/\"\n").unwrap_err(),
            [
                "/etc/n.toml:2: subids.subuid_file: \"/etc/subgid/\" ends in \"/\": name the file itself".to_string(),
                format!("/etc/n.toml:2: subids.subuid_file: /etc/subgid/: {SUBID_FILES_CLASH}")
            ]
        );
        assert_eq!(
            subids("[subids]\nsubgid_file = \"/etc//subuid\"\n").unwrap_err().len(),
            1
        );
        assert!(subids("[subids]\nsubuid_file = \"/srv/subuid\"\nsubgid_file = \"/srv/subgid\"\n").is_ok());
        // A name that replacing the other file makes or removes.
        for helper in [
            "subuid+",
            "subuid-",
            "subuid.lock",
            "subuid.4242",
            "subuid.nonrootd-old",
        ] {
            let text = format!("[subids]\nsubgid_file = \"/etc/{helper}\"\n");
            assert_eq!(
                subids(&text).unwrap_err(),
                [format!(
                    "/etc/n.toml:2: subids.subgid_file: /etc/{helper}: {SUBID_FILES_CLASH}"
                )]
            );
        }
        assert!(subids("[subids]\nsubuid_file = \"/etc/subgid+x\"\nsubgid_file = \"/etc/subgidx\"\n").is_ok());
    }

    #[test]
    fn the_same_volume_twice_or_nested_names_both_places() {
        let main = "[[volume]]\npath = \"/srv/data\"\nuid = 1\ngid = 1\n";
        let drop_in = "[[volume]]\npath = \"/srv/data\"\nuid = 2\ngid = 2\n\n\
                       [[volume]]\npath = \"/srv/data/inner\"\nuid = 2\ngid = 2\n\
                       [[volume]]\npath = \"/srv/d\"\nuid = 2\ngid = 2\nmapping = \"remap\"\n";
        assert_eq!(
            parse(&[("/etc/n.toml", main), ("/etc/n.d/a.toml", drop_in)]).unwrap_err(),
            [
                "/etc/n.d/a.toml:2: volume.path: /srv/data is configured twice (first at /etc/n.toml:2)",
                "/etc/n.d/a.toml:7: volume.path: /srv/data/inner and the volume /srv/data (at /etc/n.toml:2) are nested: one walk would re-own the other's files",
                "/etc/n.d/a.toml:14: volume.mapping: only means something with tenant",
            ]
        );
    }

    #[test]
    fn user_names_follow_shadow() {
        for good in ["acme", "_svc", "a-b_c9", "machine$"] {
            assert!(check_user_name(good).is_ok(), "{good}");
        }
    }
}
