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
use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
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
    let secs = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
        });
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

/// The proleptic Gregorian date of a day number counted from 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}
