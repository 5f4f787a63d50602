//! What this binary is: its version, the git commit it was built from and the
//! build date. `build.rs` bakes the last two in at compile time, so they cost
//! nothing at run time; `--version`, the startup log line, `/api/server` and
//! `/metrics` report them.

/// The crate's version, `0.1.0`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The abbreviated git commit, or `unknown` when built outside a git checkout
/// (a release tarball) or without git.
pub const COMMIT: &str = env!("RTMPD_COMMIT");

/// `YYYY-MM-DD` (UTC); `SOURCE_DATE_EPOCH` when set, for reproducible builds.
pub const BUILD_DATE: &str = env!("RTMPD_BUILD_DATE");

/// `rtmpd 0.1.0 (commit 0123456789ab, built 2026-11-25)`, or `(unknown commit, ...)`.
pub fn describe() -> String {
    let commit = match COMMIT {
        "unknown" => "unknown commit".to_owned(),
        hash => format!("commit {hash}"),
    };
    format!("rtmpd {VERSION} ({commit}, built {BUILD_DATE})")
}
