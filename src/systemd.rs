//! Telling systemd how the server is doing (the `sd_notify` protocol, for a unit
//! with `Type=notify`): `READY=1` once every listener accepts connections, so
//! `systemctl start` returns, and units ordered after rtmpd start, only when
//! clients can connect; `RELOADING=1` (with `MONOTONIC_USEC=`) before a
//! configuration reload and `READY=1` after it, so `systemctl reload` waits for the
//! reload to finish; `STOPPING=1` when the graceful stop begins. `STATUS=` lines say
//! what `systemctl status` shows.
//!
//! Outside systemd (`NOTIFY_SOCKET` unset) every call does nothing. A failed send
//! is logged, never fatal: systemd then times the start out on its own, and says so.

use log::error;
use sd_notify::NotifyState;

/// The server accepts connections (again, after a reload). `status`, if any,
/// replaces the line `systemctl status` shows.
pub fn ready(status: Option<&str>) {
    let mut states = vec![NotifyState::Ready];
    states.extend(status.map(NotifyState::Status));
    notify("READY=1", &states);
}

/// A configuration reload begins; call [`ready`] when it is done, whatever its
/// outcome (a reload that keeps the old configuration has finished too).
pub fn reloading() {
    let mut states = vec![NotifyState::Reloading];
    // systemd 253 and later pair the reload with this message by the timestamp.
    match NotifyState::monotonic_usec_now() {
        Ok(now) => states.push(now),
        Err(e) => error!("reading CLOCK_MONOTONIC for systemd's MONOTONIC_USEC: {e}"),
    }
    notify("RELOADING=1", &states);
}

/// The graceful stop has begun.
pub fn stopping() {
    notify(
        "STOPPING=1",
        &[NotifyState::Stopping, NotifyState::Status("stopping")],
    );
}

fn notify(what: &str, states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        let socket = std::env::var_os("NOTIFY_SOCKET").unwrap_or_default();
        error!(
            "cannot tell systemd {what} on NOTIFY_SOCKET {}: {e}",
            socket.to_string_lossy()
        );
    }
}
