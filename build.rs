//! Build facts for `rtmpd --version`, `/api/server` and `/metrics`: the git commit
//! the binary was built from and the build date, baked in as compile-time
//! environment variables (`RTMPD_COMMIT`, `RTMPD_BUILD_DATE`), so reading them costs
//! nothing at run time.
//!
//! Outside a git checkout (a release tarball, `cargo install` from crates.io) or
//! without git, the commit is "unknown". The date honours `SOURCE_DATE_EPOCH`, as
//! reproducible builds (Debian's among them) expect; otherwise it is today's (UTC).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

// The crate's calendar arithmetic (std only), shared rather than copied.
#[allow(dead_code)]
#[path = "src/utc.rs"]
mod utc;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/utc.rs");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let commit = git_commit().unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=RTMPD_COMMIT={commit}");
    println!("cargo:rustc-env=RTMPD_BUILD_DATE={}", build_date());
}

/// The abbreviated hash of HEAD, with cargo told to rerun when HEAD moves. Only
/// when this package is the top of its git checkout: a tarball unpacked inside some
/// other repository must not report that repository's commit.
fn git_commit() -> Option<String> {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?);
    let top = git_path(&dir, &["rev-parse", "--show-toplevel"])?;
    if top.canonicalize().ok()? != dir.canonicalize().ok()? {
        return None;
    }
    let hash = git(&dir, &["rev-parse", "--short=12", "HEAD"])?;
    // HEAD names the branch; the branch's ref file (or packed-refs) moves on commit.
    // In a worktree these live in two places: the worktree's own git dir holds
    // HEAD, the common dir the refs.
    let git_dir = git_path(&dir, &["rev-parse", "--git-dir"])?;
    let common_dir = git_path(&dir, &["rev-parse", "--git-common-dir"])?;
    rerun_if_changed(&git_dir.join("HEAD"));
    rerun_if_changed(&common_dir.join("packed-refs"));
    if let Some(branch) = git(&dir, &["symbolic-ref", "-q", "HEAD"]) {
        rerun_if_changed(&common_dir.join(branch));
    }
    Some(hash)
}

fn rerun_if_changed(path: &Path) {
    // Watching a path that does not exist (packed-refs before the first gc) would
    // make cargo rerun this script on every build; watch only what is there.
    if path.exists() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// The output of `git ARGS` run in `dir`; `None` if git is missing or fails (no
/// repository there).
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}

/// A path git prints, which may be relative to the directory it ran in.
fn git_path(dir: &Path, args: &[&str]) -> Option<PathBuf> {
    Some(dir.join(git(dir, args)?))
}

/// `YYYY-MM-DD` (UTC) of `SOURCE_DATE_EPOCH`, or of now.
fn build_date() -> String {
    let t = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map_or_else(SystemTime::now, |secs| {
            UNIX_EPOCH + Duration::from_secs(secs)
        });
    let t = utc::UtcTime::from_system(t);
    format!("{:04}-{:02}-{:02}", t.year, t.month, t.day)
}
