//! Running rtmpd for good (issue 16): what `--version` says.

use std::path::Path;
use std::process::Command;

fn rtmpd_output(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_rtmpd"))
        .args(args)
        .output()
        .expect("running rtmpd");
    assert!(out.status.success(), "rtmpd {args:?}: {out:?}");
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// `git ARGS` in the source tree, if it is a git checkout of its own.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}

#[test]
fn version_names_the_git_commit_and_the_build_date() {
    let line = rtmpd_output(&["--version"]);
    assert_eq!(rtmpd_output(&["-V"]), line, "-V is --version");
    let line = line.trim_end();
    let rest = line
        .strip_prefix(&format!("rtmpd {} (", env!("CARGO_PKG_VERSION")))
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not `rtmpd VERSION (...)`: {line:?}"));
    let (commit, date) = rest
        .split_once(", built ")
        .unwrap_or_else(|| panic!("no build date: {line:?}"));

    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
        .canonicalize()
        .unwrap();
    let checkout = git(&["rev-parse", "--show-toplevel"])
        .is_some_and(|top| Path::new(&top).canonicalize().ok() == Some(manifest.clone()));
    if checkout {
        let head = git(&["rev-parse", "HEAD"]).expect("HEAD of the checkout");
        let hash = commit
            .strip_prefix("commit ")
            .unwrap_or_else(|| panic!("a checkout's build names its commit: {line:?}"));
        assert!(
            hash.len() >= 7 && head.starts_with(hash),
            "{hash} is not HEAD ({head})"
        );
    } else {
        eprintln!("not a git checkout: expecting an unknown commit");
        assert_eq!(commit, "unknown commit", "{line:?}");
    }

    let fields: Vec<u32> = date.split('-').filter_map(|f| f.parse().ok()).collect();
    assert!(
        date.len() == 10 && matches!(fields[..], [_, 1..=12, 1..=31]),
        "not YYYY-MM-DD: {date:?}"
    );
    // Built at some point since this project began, and not in the future.
    let out = Command::new("date").args(["-u", "+%F"]).output().unwrap();
    let today = String::from_utf8(out.stdout).unwrap();
    assert!(
        ("2024-01-01"..=today.trim()).contains(&date),
        "build date {date} is not between 2024-01-01 and today ({})",
        today.trim()
    );
}
