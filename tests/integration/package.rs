//! The systemd unit and the Debian package (issue 16): `scripts/rtmpd.service`
//! passes `systemd-analyze verify` and stays hardened, and `scripts/package.sh`
//! builds a .deb (from the binary under test, so no release build is needed here)
//! whose files, permissions, control fields, conffiles and maintainer scripts are
//! what the README promises; installed into a scratch root and purged, it leaves
//! nothing behind. `scripts/test.sh` installs systemd (for systemd-analyze).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::TempDir;

const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/rtmpd.service");

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{program} {args:?}: {e} (scripts/test.sh installs what the tests need: \
                 systemd for systemd-analyze, dpkg for dpkg-deb)"
            )
        })
}

fn stdout_of(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// A copy of `unit` in `dir` whose ExecStart runs `binary`: verify insists that
/// the program exists, and /usr/bin/rtmpd is not installed here.
fn unit_running(unit: &Path, binary: &Path, dir: &Path) -> PathBuf {
    let text = fs::read_to_string(unit).unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("ExecStart=/usr/bin/rtmpd")),
        "the unit runs /usr/bin/rtmpd, where the package puts it"
    );
    let copy = dir.join("rtmpd.service");
    fs::write(
        &copy,
        text.replace(
            "ExecStart=/usr/bin/rtmpd",
            &format!("ExecStart={}", binary.display()),
        ),
    )
    .unwrap();
    copy
}

/// `systemd-analyze verify` says nothing (warnings leave its status 0, so its
/// output must be empty), and the offline security review rates the unit's
/// exposure at most 2.0 ("OK"; 10 is unprotected).
fn assert_unit_verifies(unit: &Path) {
    let unit = unit.to_str().unwrap();
    let out = run("systemd-analyze", &["verify", unit]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify {unit}: {}\n{said}",
        out.status
    );
    let out = run(
        "systemd-analyze",
        &["security", "--offline=yes", "--threshold=20", unit],
    );
    assert!(
        out.status.success(),
        "the unit's exposure rose above 2.0:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The unit's `KEY=VALUE` settings, the last value of each key.
fn unit_settings(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

#[test]
fn the_unit_verifies_and_is_a_hardened_notify_service() {
    let dir = TempDir::new("unit");
    let unit = unit_running(
        Path::new(UNIT),
        Path::new(env!("CARGO_BIN_EXE_rtmpd")),
        dir.path(),
    );
    assert_unit_verifies(&unit);

    let settings = unit_settings(&fs::read_to_string(UNIT).unwrap());
    for (key, want) in [
        ("Type", "notify"),
        ("ExecStart", "/usr/bin/rtmpd --config /etc/rtmpd/rtmpd.toml"),
        ("Restart", "on-failure"),
        ("ExecReload", "kill -HUP $MAINPID"),
        ("DynamicUser", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("NoNewPrivileges", "yes"),
        ("PrivateTmp", "yes"),
        ("StateDirectory", "rtmpd"),
        ("WantedBy", "multi-user.target"),
    ] {
        assert_eq!(settings.get(key).map(String::as_str), Some(want), "{key}=");
    }
    // Room for every socket the default budgets allow, plus files.
    let nofile: usize = settings["LimitNOFILE"].parse().unwrap();
    let defaults = rtmpd::config::Config::rtmpd_defaults();
    assert!(nofile >= 2 * (defaults.max_connections + defaults.max_pending));
}

/// The .deb's member list: path → (mode and owner, as `dpkg-deb -c` prints them).
fn members(deb: &str) -> BTreeMap<String, String> {
    stdout_of("dpkg-deb", &["-c", deb])
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[5].trim_start_matches('.').to_owned(),
                format!("{} {}", f[0], f[1]),
            )
        })
        .collect()
}

#[test]
fn the_deb_holds_binary_unit_config_and_docs_and_creates_nothing() {
    let dir = TempDir::new("deb");
    let out = dir.path().to_str().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/package.sh");
    let built = stdout_of(
        script,
        &["--binary", env!("CARGO_BIN_EXE_rtmpd"), "--out", out],
    );
    let deb = built.trim();
    let arch = stdout_of("dpkg", &["--print-architecture"]);
    assert_eq!(
        Path::new(deb).file_name().unwrap().to_str().unwrap(),
        format!("rtmpd_{}_{}.deb", env!("CARGO_PKG_VERSION"), arch.trim())
    );

    let (dir_mode, file, program) = (
        "drwxr-xr-x root/root",
        "-rw-r--r-- root/root",
        "-rwxr-xr-x root/root",
    );
    let want: BTreeMap<String, String> = [
        ("/", dir_mode),
        ("/etc/", dir_mode),
        ("/etc/rtmpd/", dir_mode),
        ("/etc/rtmpd/rtmpd.toml", file),
        ("/usr/", dir_mode),
        ("/usr/bin/", dir_mode),
        ("/usr/bin/rtmpd", program),
        ("/usr/lib/", dir_mode),
        ("/usr/lib/systemd/", dir_mode),
        ("/usr/lib/systemd/system/", dir_mode),
        ("/usr/lib/systemd/system/rtmpd.service", file),
        ("/usr/share/", dir_mode),
        ("/usr/share/doc/", dir_mode),
        ("/usr/share/doc/rtmpd/", dir_mode),
        ("/usr/share/doc/rtmpd/README.md", file),
        ("/usr/share/doc/rtmpd/copyright", file),
    ]
    .into_iter()
    .map(|(p, m)| (p.to_owned(), m.to_owned()))
    .collect();
    assert_eq!(members(deb), want, "files, modes and owners");

    let field = |name: &str| stdout_of("dpkg-deb", &["-f", deb, name]).trim().to_owned();
    assert_eq!(field("Package"), "rtmpd");
    assert_eq!(field("Version"), env!("CARGO_PKG_VERSION"));
    assert_eq!(field("Architecture"), arch.trim());
    let depends = field("Depends");
    assert!(depends.starts_with("libc6 (>= 2."), "{depends}");
    assert!(depends.contains("procps"), "kill for ExecReload: {depends}");

    // The control part: conffiles, and maintainer scripts that touch systemd
    // only on the running system and never create a user or a directory.
    let control = dir.join("control");
    stdout_of("dpkg-deb", &["-e", deb, control.to_str().unwrap()]);
    let mut names: Vec<String> = fs::read_dir(&control)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "conffiles",
            "control",
            "md5sums",
            "postinst",
            "postrm",
            "prerm"
        ]
    );
    assert_eq!(
        fs::read_to_string(control.join("conffiles")).unwrap(),
        "/etc/rtmpd/rtmpd.toml\n"
    );
    for script in ["postinst", "prerm", "postrm"] {
        let path = control.join(script);
        let mode = fs::metadata(&path).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o755,
            "{script}"
        );
        stdout_of("sh", &["-n", path.to_str().unwrap()]);
        let text = fs::read_to_string(&path).unwrap();
        let code: Vec<&str> = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .collect();
        for creates in ["useradd", "adduser", "mkdir", "install "] {
            assert!(
                !code.iter().any(|l| l.contains(creates)),
                "{script} runs {creates}"
            );
        }
        if text.contains("systemctl") {
            assert!(
                text.contains("-z \"${DPKG_ROOT:-}\"") || text.contains("-z \"$root\""),
                "{script} calls systemctl even when installing into another root"
            );
        }
    }

    // The unit as packaged verifies, running the packaged binary.
    let data = dir.join("data");
    stdout_of("dpkg-deb", &["-x", deb, data.to_str().unwrap()]);
    let unit = unit_running(
        &data.join("usr/lib/systemd/system/rtmpd.service"),
        &data.join("usr/bin/rtmpd"),
        dir.path(),
    );
    assert_unit_verifies(&unit);
    let packaged = data.join("usr/bin/rtmpd");
    let packaged = packaged.to_str().unwrap();
    let version = stdout_of(packaged, &["--version"]);
    assert!(version.starts_with(&format!("rtmpd {} (", env!("CARGO_PKG_VERSION"))));
    // The config file the unit starts the server with is one it accepts.
    let config = data.join("etc/rtmpd/rtmpd.toml");
    stdout_of(packaged, &["--check-config", config.to_str().unwrap()]);

    install_and_purge_in_a_scratch_root(deb, &dir.join("root"));
}

/// `dpkg --root` installs the package into `root` (maintainer scripts run
/// outside it, with DPKG_ROOT set, so they leave the host's systemd alone), the
/// state systemd would make is faked, and a purge leaves only dpkg's database
/// and the directories systemd shares with other units.
fn install_and_purge_in_a_scratch_root(deb: &str, root: &Path) {
    if stdout_of("id", &["-u"]).trim() != "0" {
        eprintln!("NOT TESTED: installing and purging the .deb needs root (dpkg --root)");
        return;
    }
    fs::create_dir_all(root.join("var/lib/dpkg/info")).unwrap();
    fs::create_dir_all(root.join("var/lib/dpkg/updates")).unwrap();
    fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    let root_arg = format!("--root={}", root.display());
    let dpkg = |args: &[&str]| {
        let mut all = vec![
            root_arg.as_str(),
            "--force-script-chrootless",
            "--force-depends",
        ];
        all.extend_from_slice(args);
        stdout_of("dpkg", &all)
    };
    dpkg(&["-i", deb]);
    assert!(root.join("usr/bin/rtmpd").is_file());
    assert!(root.join("etc/rtmpd/rtmpd.toml").is_file());
    assert_eq!(
        files_outside_dpkg(root),
        Vec::<String>::new(),
        "installing created something besides the package's files"
    );

    // What systemd makes when the service starts and is enabled.
    let shared = [
        "var/lib/private",
        "etc/systemd/system/multi-user.target.wants",
    ];
    for dir in shared {
        fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::os::unix::fs::symlink("private/rtmpd", root.join("var/lib/rtmpd")).unwrap();
    fs::create_dir(root.join("var/lib/private/rtmpd")).unwrap();
    std::os::unix::fs::symlink(
        "/usr/lib/systemd/system/rtmpd.service",
        root.join("etc/systemd/system/multi-user.target.wants/rtmpd.service"),
    )
    .unwrap();
    dpkg(&["--purge", "rtmpd"]);
    let mut left = files_outside_dpkg(root);
    left.retain(|p| !shared.iter().any(|s| s.starts_with(p.as_str())));
    assert_eq!(left, Vec::<String>::new(), "left behind by a purge");
}

/// Every path under `root` that is not a directory, outside dpkg's database,
/// and not a package file (for after an install: nothing).
fn files_outside_dpkg(root: &Path) -> Vec<String> {
    let packaged = [
        "usr/bin/rtmpd",
        "usr/lib/systemd/system/rtmpd.service",
        "etc/rtmpd/rtmpd.toml",
        "usr/share/doc/rtmpd/README.md",
        "usr/share/doc/rtmpd/copyright",
    ];
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            if rel.starts_with("var/lib/dpkg") {
                continue;
            }
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                // An empty directory that is not the package's says something too.
                if fs::read_dir(&path).unwrap().next().is_none() {
                    found.push(rel);
                }
                stack.push(path);
            } else if !packaged.contains(&rel.as_str()) {
                found.push(rel);
            }
        }
    }
    found.sort();
    found
}
