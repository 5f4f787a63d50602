//! What a person sees when `rtmpd` will not start: a bad command line is one error
//! line and a pointer to `--help` (exit 2), not fifty lines of usage that scroll
//! the error away; an address that is taken says which listener and which flag
//! moves it (exit 1). The real binary, its stderr and its exit status.

use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// A refusal is immediate; a server that started anyway is killed after this.
const EXIT_WITHIN: Duration = Duration::from_secs(60);

/// Runs `rtmpd ARGS` to its exit (killing it after [`EXIT_WITHIN`]).
fn rtmpd(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rtmpd"))
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting rtmpd");
    let started = Instant::now();
    while child.try_wait().expect("polling rtmpd").is_none() {
        if started.elapsed() > EXIT_WITHIN {
            let _ = child.kill();
            break;
        }
        thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("reading rtmpd's output")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_flags_print_the_error_and_a_pointer_to_help_and_exit_2() {
    for (args, error) in [
        (
            &["--http", "99999"][..],
            "--http: '99999' must be a port (1-65535), an address like 0.0.0.0:8080, or off",
        ),
        (
            &["-l", "nowhere"],
            "--listen: 'nowhere' must be a port (1-65535) or an address like 0.0.0.0:1935",
        ),
        (&["--bogus"], "unknown option '--bogus'"),
        (&["--http"], "--http needs a value"),
        (
            &["--max-connections", "0"],
            "--max-connections: '0' must be a whole number from 1 to 1048576",
        ),
        (
            &["--gop-cache", "maybe"],
            "--gop-cache: 'maybe' must be on or off",
        ),
        (&["stray"], "unexpected argument 'stray'"),
    ] {
        let out = rtmpd(args);
        assert_eq!(out.status.code(), Some(2), "rtmpd {args:?}: {out:?}");
        assert_eq!(
            stderr(&out),
            format!("rtmpd: {error}\ntry 'rtmpd --help'\n"),
            "rtmpd {args:?}"
        );
        assert!(out.stdout.is_empty(), "rtmpd {args:?} printed on stdout");
    }
    // The usage is still there when asked for.
    let out = rtmpd(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let usage = String::from_utf8_lossy(&out.stdout);
    assert!(
        usage.starts_with("Usage: rtmpd [options]") && usage.contains("--max-name-length"),
        "{usage}"
    );
}

#[test]
fn a_taken_address_says_which_flag_moves_the_listener() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("binding a port to take");
    let addr = taken.local_addr().unwrap().to_string();

    let out = rtmpd(&["-l", &addr, "--http", "off"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        stderr(&out),
        format!(
            "rtmpd: cannot listen for RTMP on {addr}: address already in use (another rtmpd or \
             nginx-rtmp running? choose another address with -l/--listen)\n"
        )
    );

    let out = rtmpd(&["-l", "127.0.0.1:0", "--http", &addr]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        stderr(&out),
        format!(
            "rtmpd: cannot listen for HTTP on {addr}: address already in use (another rtmpd or \
             a web server running? choose another address with --http)\n"
        )
    );
}
