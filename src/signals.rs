//! Process signals for the `rtmpd` binary. SIGINT and SIGTERM start the server's
//! graceful stop ([`ServerHandle::shutdown`]); a second one exits at once with
//! status 128 + the signal's number, as a shell reports a process killed by it.
//! SIGHUP reloads the config file ([`ServerHandle::reload`]).
//!
//! signal-hook's handler only records the signal; this module acts on it from an
//! ordinary thread, where logging and locking are allowed.

use std::io;
use std::thread;

use log::warn;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::server::ServerHandle;

/// Installs the handlers and starts the thread that acts on them.
pub fn handle_signals(server: ServerHandle) -> io::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                let name = match signal {
                    SIGINT => "SIGINT",
                    SIGTERM => "SIGTERM",
                    SIGHUP => {
                        // systemd (Type=notify) waits for READY=1 after RELOADING=1,
                        // whatever the reload's outcome.
                        crate::systemd::reloading();
                        server.reload("SIGHUP");
                        crate::systemd::ready(None);
                        continue;
                    }
                    _ => continue,
                };
                if !server.shutdown(name) {
                    let open = server.open_connections();
                    warn!("{name} again: exiting now, cutting {open} open connection(s)");
                    std::process::exit(128 + signal);
                }
            }
        })?;
    Ok(())
}
