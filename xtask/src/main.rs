//! Developer tasks (not shipped):
//!
//!   cargo xtask gen     write man/nonrootd.8, man/nonrootctl.1, man/nonrootctl-*.1 and
//!                       completions/nonrootctl.{bash,zsh,fish} from the clap definitions
//!   cargo xtask check   fail if any generated file is stale, or if a config key is not
//!                       documented in man/nonrootd.toml.5 and packaging/nonrootd.toml

mod docs;
mod generate;

use std::path::PathBuf;
use std::process::ExitCode;

/// The repository root (this crate lives in `xtask/` below it).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the repository")
        .to_path_buf()
}

fn usage() -> ExitCode {
    eprintln!("usage: cargo xtask gen | check");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = root();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["gen"] => match generate::write_all(&root) {
            Ok(written) => {
                for path in written {
                    println!("wrote {path}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("xtask gen: {e}");
                ExitCode::FAILURE
            }
        },
        ["check"] => {
            let mut problems = generate::stale(&root);
            if !problems.is_empty() {
                problems.push("run `cargo xtask gen` and commit the result".into());
            }
            problems.extend(docs::check(&root));
            for p in &problems {
                eprintln!("xtask check: {p}");
            }
            if problems.is_empty() {
                println!("xtask check: generated files are current; every config key is documented");
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        _ => usage(),
    }
}
