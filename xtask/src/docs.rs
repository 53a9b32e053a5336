//! Every config key is documented: in `man/nonrootd.toml.5` and as a commented-out example in
//! `packaging/nonrootd.toml`, whose examples are valid and show the defaults of the code.
//!
//! The list of keys is not written down here: it is asked from the config parser itself.
//! Its raw structs deny unknown fields, and serde's error for an unknown field lists the
//! fields the struct has ("unknown field `x`, expected one of `a`, `b`"), so a key added to
//! `core/src/config.rs` shows up here without anyone remembering to.

use std::fs;
use std::path::{Path, PathBuf};

use nonrootd_core::config::{self, Config};

/// A top-level section of the config file and its keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    /// `[[name]]` (an array of tables) rather than `[name]`.
    pub array: bool,
    pub keys: Vec<String>,
}

impl Section {
    pub fn header(&self) -> String {
        if self.array {
            format!("[[{}]]", self.name)
        } else {
            format!("[{}]", self.name)
        }
    }
}

const PROBE: &str = "xtask_probe_key";

/// The fields serde expected, from the error a probe key causes.
fn expected_fields(toml: &str) -> Result<Vec<String>, String> {
    let sources = [(PathBuf::from("probe.toml"), toml.to_string())];
    let errors = match Config::from_sources(&sources) {
        Ok(_) => return Err(format!("{toml:?} was accepted")),
        Err(errors) => errors,
    };
    let message = errors.iter().map(|e| e.message.as_str()).collect::<Vec<_>>().join("\n");
    let Some(expected) = message.split_once("expected").map(|(_, rest)| rest) else {
        return Err(message);
    };
    if !message.contains(&format!("unknown field `{PROBE}`")) {
        return Err(message);
    }
    // "expected one of `a`, `b`", "expected `a` or `b`", "expected `a`": the backticked words.
    Ok(expected.split('`').skip(1).step_by(2).map(str::to_string).collect())
}

/// Every section and key the config parser accepts.
pub fn config_schema() -> Result<Vec<Section>, String> {
    let mut sections = Vec::new();
    for name in expected_fields(&format!("{PROBE} = 1\n"))? {
        let (array, keys) = match expected_fields(&format!("[{name}]\n{PROBE} = 1\n")) {
            Ok(keys) => (false, keys),
            // An array of tables rejects a plain table ("invalid type: map, expected a sequence").
            Err(_) => (true, expected_fields(&format!("[[{name}]]\n{PROBE} = 1\n"))?),
        };
        sections.push(Section { name, array, keys });
    }
    Ok(sections)
}

/// The lines of `text` from `start` (exclusive) to the next line for which `is_end` holds.
fn block<'a>(lines: &[&'a str], start: usize, is_end: impl Fn(&str) -> bool) -> Vec<&'a str> {
    lines[start + 1..].iter().take_while(|l| !is_end(l)).copied().collect()
}

/// Problems with `packaging/nonrootd.toml`: a section or key without its commented-out example.
pub fn check_sample(schema: &[Section], text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let is_header = |l: &str| l.starts_with("#[");
    for section in schema {
        let header = format!("#{}", section.header());
        let Some(start) = lines.iter().position(|l| l.trim_end() == header) else {
            problems.push(format!("packaging/nonrootd.toml: no commented-out `{header}`"));
            continue;
        };
        let body = block(&lines, start, is_header);
        for key in &section.keys {
            if !body.iter().any(|l| l.starts_with(&format!("#{key} = "))) {
                problems.push(format!(
                    "packaging/nonrootd.toml: {}: no commented-out example `#{key} = ...`",
                    section.header()
                ));
            }
        }
    }
    problems
}

/// The sample with every example line (`#[section]`, `#key = value`) uncommented.
pub fn uncomment_sample(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let example = line.strip_prefix('#').filter(|rest| {
            rest.starts_with('[') || rest.starts_with(|c: char| c.is_ascii_lowercase()) && rest.contains(" = ")
        });
        out.push_str(example.unwrap_or(""));
        out.push('\n');
    }
    out
}

/// Problems with the sample's examples: they must parse, and where the code has a fixed default
/// the example must show it.
pub fn check_sample_values(text: &str) -> Vec<String> {
    let sources = [(
        PathBuf::from("packaging/nonrootd.toml (uncommented)"),
        uncomment_sample(text),
    )];
    let config = match Config::from_sources(&sources) {
        Ok(config) => config,
        Err(errors) => return errors.iter().map(|e| format!("example does not parse: {e}")).collect(),
    };
    let mut problems = Vec::new();
    let mut expect = |what: &str, ok: bool| {
        if !ok {
            problems.push(format!(
                "packaging/nonrootd.toml: the example of {what} is not the default of the code"
            ));
        }
    };
    if let Some(docker) = &config.docker {
        expect("docker.units", docker.units == config::DEFAULT_UNITS);
        expect(
            "docker.image_dirs",
            docker
                .image_dirs
                .iter()
                .map(|p| p.to_str().unwrap_or(""))
                .eq(config::DEFAULT_IMAGE_DIRS),
        );
        expect(
            "docker.image_dir_mode",
            docker.image_dir_mode.to_string() == config::DEFAULT_IMAGE_DIR_MODE,
        );
    }
    if let Some(dmi) = &config.dmi {
        expect(
            "dmi.tables_dir",
            dmi.tables_dir == Path::new(config::DEFAULT_DMI_TABLES_DIR),
        );
    }
    let s = &config.subids;
    expect(
        "subids.subuid_file",
        s.subuid_file == Path::new(config::DEFAULT_SUBUID_FILE),
    );
    expect(
        "subids.subgid_file",
        s.subgid_file == Path::new(config::DEFAULT_SUBGID_FILE),
    );
    expect("subids.count", s.count == config::DEFAULT_SUBID_COUNT);
    expect(
        "subids.quarantine_days",
        s.quarantine_days == config::DEFAULT_QUARANTINE_DAYS,
    );
    problems
}

/// Problems with `man/nonrootd.toml.5`: each section is a `.SS "[name]"` subsection, each key a
/// `.TP` paragraph whose tag starts with `\fBkey\fR`.
pub fn check_man(schema: &[Section], text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let is_heading = |l: &str| l.starts_with(".SS") || l.starts_with(".SH");
    for section in schema {
        let heading = format!(".SS \"{}\"", section.header());
        let Some(start) = lines.iter().position(|l| l.trim_end() == heading) else {
            problems.push(format!("man/nonrootd.toml.5: no subsection `{heading}`"));
            continue;
        };
        let body = block(&lines, start, is_heading);
        for key in &section.keys {
            let tag = format!("\\fB{key}\\fR");
            let documented = body.windows(2).any(|w| w[0] == ".TP" && w[1].starts_with(&tag));
            if !documented {
                problems.push(format!(
                    "man/nonrootd.toml.5: {}: key `{key}` is not documented (.TP then {tag} ...)",
                    section.header()
                ));
            }
        }
    }
    problems
}

/// All documentation problems under `root`.
pub fn check(root: &Path) -> Vec<String> {
    let schema = match config_schema() {
        Ok(schema) => schema,
        Err(e) => return vec![format!("cannot derive the config keys from the parser: {e}")],
    };
    let mut problems = Vec::new();
    match fs::read_to_string(root.join("packaging/nonrootd.toml")) {
        Ok(text) => {
            problems.extend(check_sample(&schema, &text));
            problems.extend(check_sample_values(&text));
        }
        Err(e) => problems.push(format!("packaging/nonrootd.toml: {e}")),
    }
    match fs::read_to_string(root.join("man/nonrootd.toml.5")) {
        Ok(text) => problems.extend(check_man(&schema, &text)),
        Err(e) => problems.push(format!("man/nonrootd.toml.5: {e}")),
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_comes_from_the_parser() {
        let schema = config_schema().unwrap();
        let names: Vec<_> = schema.iter().map(|s| s.header()).collect();
        assert_eq!(
            names,
            [
                "[docker]",
                "[[socket]]",
                "[dmi]",
                "[subids]",
                "[[tenant]]",
                "[[volume]]"
            ]
        );
        let socket = &schema[1];
        assert_eq!(socket.keys, ["path", "users", "groups", "access"]);
        let tenant = &schema[4];
        assert_eq!(tenant.keys, ["name", "count"]);
        let total: usize = schema.iter().map(|s| s.keys.len()).sum();
        assert_eq!(schema[5].keys, ["path", "uid", "gid", "mode", "tenant", "mapping"]);
        assert_eq!(total, 25, "{schema:#?}");
    }

    #[test]
    fn every_config_key_is_documented() {
        let problems = check(&crate::root());
        assert!(problems.is_empty(), "{problems:#?}");
    }

    #[test]
    fn a_missing_key_is_reported() {
        let schema = config_schema().unwrap();
        let sample = fs::read_to_string(crate::root().join("packaging/nonrootd.toml")).unwrap();
        let without = sample.replace("#quarantine_days = 30", "");
        assert_eq!(
            check_sample(&schema, &without),
            ["packaging/nonrootd.toml: [subids]: no commented-out example `#quarantine_days = ...`"]
        );
        let man = fs::read_to_string(crate::root().join("man/nonrootd.toml.5")).unwrap();
        let without = man.replace("\\fBworld_readable\\fR", "world_readable");
        assert_eq!(check_man(&schema, &without).len(), 1);
    }

    #[test]
    fn a_wrong_default_is_reported() {
        let sample = fs::read_to_string(crate::root().join("packaging/nonrootd.toml")).unwrap();
        let changed = sample.replace("#count = 65536", "#count = 65535");
        assert_eq!(check_sample_values(&changed).len(), 1);
    }
}
