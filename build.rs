//! Build script: the git revision `--version` reports (`AAREGURU_GIT_REV` overrides it, for
//! builds outside a checkout such as a container's).

// A build script talks to cargo on stdout.
#![allow(clippy::disallowed_macros)]

use std::{path::Path, process::Command};

fn main() {
    println!("cargo:rerun-if-env-changed=AAREGURU_GIT_REV");
    let rev = std::env::var("AAREGURU_GIT_REV")
        .ok()
        .filter(|r| !r.trim().is_empty())
        .or_else(git_rev)
        .unwrap_or_else(|| "unknown revision".into());
    println!("cargo:rustc-env=AAREGURU_GIT_REV={}", rev.trim());
    // Rebuild when HEAD moves: the file, and the branch file it names.
    let git = Path::new(".git");
    if git.join("HEAD").is_file() {
        println!("cargo:rerun-if-changed=.git/HEAD");
        if let Ok(head) = std::fs::read_to_string(git.join("HEAD"))
            && let Some(reference) = head.strip_prefix("ref: ")
            && git.join(reference.trim()).is_file()
        {
            println!("cargo:rerun-if-changed=.git/{}", reference.trim());
        }
    } else {
        println!("cargo:rerun-if-changed=build.rs");
    }
}

fn git_rev() -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()?;
    let rev = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !rev.trim().is_empty()).then(|| rev.trim().to_string())
}
