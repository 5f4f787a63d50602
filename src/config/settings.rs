//! Every setting the server takes, once. An entry knows its long name (the flag
//! `--NAME`; a config file's key is NAME with `-` turned into `_`), the kind
//! of value it takes with the range that value must be in, its help text and the
//! `Config` field it sets. Its default is what [`Config::rtmpd_defaults`] holds.
//!
//! The command line (`crate::cli`) reads values as text through [`Setting::set_text`]
//! (a repeatable flag's values together through [`Setting::set_texts`]); a reader
//! of typed values (a config file's integers, floats, booleans, strings and lists)
//! goes through the same `store_*` checks, so both refuse the same values with the
//! same words.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::record::RecordDir;
use super::relay::{PushEntry, UpstreamUrl};
use super::{Config, ListenAddr, LogFormat};
use crate::player::MergeMode;
use crate::rtmp::chunk::{MAX_CHUNK_SIZE, MAX_MESSAGE_LEN};

/// One setting: a flag, and a config file key (`config::file`).
pub struct Setting {
    /// The long name: `--NAME` on the command line.
    pub name: &'static str,
    /// A one-letter alias (`-l`), if any.
    pub short: Option<&'static str>,
    /// What the value looks like in the usage text (`ADDR`, `SECS`).
    pub hint: &'static str,
    /// What the setting does; the usage text adds the default.
    pub help: &'static str,
    pub kind: Kind,
}

/// Where a setting's value lives in a `Config`.
pub type Field<T> = fn(&mut Config) -> &mut T;

/// The kind of value a setting takes, its valid range, and the field it sets.
pub enum Kind {
    /// Listen addresses: each `HOST:PORT`, or a bare port for every interface
    /// (IPv4 and IPv6). The flag may be repeated, and one value may list several,
    /// comma-separated; a config file gives a string or a list of strings. With
    /// `off`, also `off` alone for none.
    Listen {
        off: bool,
        field: Field<Vec<ListenAddr>>,
    },
    /// A file's path, or `off` for none.
    File(Field<Option<PathBuf>>),
    /// `on` or `off` (also `true`/`false`, `yes`/`no`, `1`/`0`).
    OnOff(Field<bool>),
    /// A whole number from `min` to `max`.
    Integer {
        min: u64,
        max: u64,
        field: IntegerField,
    },
    /// A number of seconds, fractions allowed, from [`MIN_SECONDS`] to [`MAX_SECONDS`].
    Seconds(Field<Duration>),
    /// A whole number of milliseconds from `min` to `max`.
    Millis {
        min: u64,
        max: u64,
        field: Field<Duration>,
    },
    /// A whole number of seconds from `min` to `max`, for what the kernel counts in
    /// seconds.
    WholeSeconds {
        min: u64,
        max: u64,
        field: Field<Duration>,
    },
    /// One of a few names (`text`, `json`).
    Choice(ChoiceField),
    /// `--record DIR|off`: recording for every app, which is policy (the
    /// file's `record` and `record_dir` keys), so it has no file key of its own
    /// and a reload applies it.
    Record,
    /// `--push URL` (repeatable) or `--push off`: every app's push list, policy
    /// like `Record` (the file's top-level `push`, which it replaces).
    Push,
}

/// The enumerations `Config` chooses from; each knows its names.
#[derive(Clone, Copy)]
pub enum ChoiceField {
    LogFormat(Field<LogFormat>),
    MergeMode(Field<MergeMode>),
}

impl ChoiceField {
    /// Every name the setting takes, in the order the usage text lists them.
    pub fn names(self) -> Vec<&'static str> {
        match self {
            ChoiceField::LogFormat(_) => LogFormat::ALL.map(LogFormat::as_str).to_vec(),
            ChoiceField::MergeMode(_) => MergeMode::ALL.map(MergeMode::as_str).to_vec(),
        }
    }

    fn get(self, config: &mut Config) -> &'static str {
        match self {
            ChoiceField::LogFormat(field) => field(config).as_str(),
            ChoiceField::MergeMode(field) => field(config).as_str(),
        }
    }

    /// Sets the choice called `name`; false if there is none.
    fn set(self, config: &mut Config, name: &str) -> bool {
        match self {
            ChoiceField::LogFormat(field) => {
                choose(field(config), LogFormat::ALL, LogFormat::as_str, name)
            }
            ChoiceField::MergeMode(field) => {
                choose(field(config), MergeMode::ALL, MergeMode::as_str, name)
            }
        }
    }
}

/// Sets `slot` to the one of `all` called `name`; false if none is.
fn choose<T: Copy, const N: usize>(
    slot: &mut T,
    all: [T; N],
    name_of: fn(T) -> &'static str,
    name: &str,
) -> bool {
    match all.into_iter().find(|&v| name_of(v) == name) {
        Some(value) => {
            *slot = value;
            true
        }
        None => false,
    }
}

/// The integer types `Config` counts in.
#[derive(Clone, Copy)]
pub enum IntegerField {
    U32(Field<u32>),
    Usize(Field<usize>),
}

/// Durations in seconds, as flags and config files give them.
pub const MIN_SECONDS: f64 = 0.1;
pub const MAX_SECONDS: f64 = 86_400.0;

/// Why a value is refused, said of the value: `--NAME: 'VALUE' <this>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem(pub String);

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Every setting, in the order the usage text lists them.
pub const SETTINGS: &[Setting] = &[
    Setting {
        name: "listen",
        short: Some("l"),
        hint: "ADDR",
        help: "address to accept RTMP clients on; repeat for more; a bare port means every interface, IPv4 and IPv6",
        kind: Kind::Listen {
            off: false,
            field: |c| &mut c.listen,
        },
    },
    Setting {
        name: "http",
        short: None,
        hint: "ADDR|off",
        help: "address for HTTP-FLV, WebSocket-FLV, /api and /metrics, or off; repeat for more; a bare port means every interface",
        kind: Kind::Listen {
            off: true,
            field: |c| &mut c.http,
        },
    },
    Setting {
        name: "api-listen",
        short: None,
        hint: "ADDR|off",
        help: "serve /api and /metrics on this address instead of the --http one (e.g. 127.0.0.1:8081); repeat for more",
        kind: Kind::Listen {
            off: true,
            field: |c| &mut c.api_listen,
        },
    },
    Setting {
        name: "rtmps-listen",
        short: None,
        hint: "ADDR|off",
        help: "address to accept RTMPS (RTMP over TLS) clients on, or off; repeat for more; a bare port means every interface; needs --tls-cert and --tls-key",
        kind: Kind::Listen {
            off: true,
            field: |c| &mut c.rtmps_listen,
        },
    },
    Setting {
        name: "https",
        short: None,
        hint: "ADDR|off",
        help: "address for HTTPS and WSS (what --http serves, over TLS), or off; repeat for more; a bare port means every interface; needs --tls-cert and --tls-key",
        kind: Kind::Listen {
            off: true,
            field: |c| &mut c.https,
        },
    },
    Setting {
        name: "tls-cert",
        short: None,
        hint: "FILE",
        help: "certificate chain for RTMPS and HTTPS, PEM, the server's own first (certbot's fullchain.pem), or off; SIGHUP or a change of the file reloads it",
        kind: Kind::File(|c| &mut c.tls_cert),
    },
    Setting {
        name: "tls-key",
        short: None,
        hint: "FILE",
        help: "private key of --tls-cert, PEM: PKCS#8, RSA or EC, unencrypted (certbot's privkey.pem), or off",
        kind: Kind::File(|c| &mut c.tls_key),
    },
    Setting {
        name: "listen-backlog",
        short: None,
        hint: "N",
        help: "connections the kernel queues on each listener until they are accepted",
        kind: Kind::Integer {
            min: 1,
            max: 65535,
            field: IntegerField::U32(|c| &mut c.listen_backlog),
        },
    },
    Setting {
        name: "gop-cache",
        short: None,
        hint: "on|off",
        help: "cache the current GOP for fast start",
        kind: Kind::OnOff(|c| &mut c.gop_cache),
    },
    Setting {
        name: "chunk-size",
        short: None,
        hint: "N",
        help: "outgoing RTMP chunk size, 128..=2147483647",
        kind: Kind::Integer {
            min: 128,
            max: MAX_CHUNK_SIZE as u64,
            field: IntegerField::U32(|c| &mut c.chunk_size),
        },
    },
    Setting {
        name: "player-queue",
        short: None,
        hint: "FRAMES",
        help: "frames a player may fall behind before skipping to the next keyframe",
        kind: Kind::Integer {
            min: 16,
            max: 1 << 20,
            field: IntegerField::Usize(|c| &mut c.player_queue_frames),
        },
    },
    Setting {
        name: "max-connections",
        short: None,
        hint: "N",
        help: "connections publishing, playing or being answered at once; more are refused",
        kind: Kind::Integer {
            min: 1,
            max: 1 << 20,
            field: IntegerField::Usize(|c| &mut c.max_connections),
        },
    },
    Setting {
        name: "max-pending",
        short: None,
        hint: "N",
        help: "connections not yet publishing, playing or with a whole request; at the limit the oldest gives way",
        kind: Kind::Integer {
            min: 1,
            max: 1 << 20,
            field: IntegerField::Usize(|c| &mut c.max_pending),
        },
    },
    Setting {
        name: "max-message-size",
        short: None,
        hint: "BYTES",
        help: "longest RTMP message a client may send",
        kind: Kind::Integer {
            min: 1024,
            max: MAX_MESSAGE_LEN as u64,
            field: IntegerField::U32(|c| &mut c.chunk_limits.max_message_len),
        },
    },
    Setting {
        name: "max-chunk-streams",
        short: None,
        hint: "N",
        help: "chunk streams one client may open",
        kind: Kind::Integer {
            min: 2,
            max: 65600,
            field: IntegerField::Usize(|c| &mut c.chunk_limits.max_chunk_streams),
        },
    },
    Setting {
        name: "amf-max-depth",
        short: None,
        hint: "N",
        help: "deepest AMF nesting accepted",
        kind: Kind::Integer {
            min: 1,
            max: 1024,
            field: IntegerField::Usize(|c| &mut c.amf_limits.max_depth),
        },
    },
    Setting {
        name: "amf-max-values",
        short: None,
        hint: "N",
        help: "most AMF values in one message",
        kind: Kind::Integer {
            min: 16,
            max: 1 << 24,
            field: IntegerField::Usize(|c| &mut c.amf_limits.max_elements),
        },
    },
    Setting {
        name: "max-name-length",
        short: None,
        hint: "BYTES",
        help: "longest app or stream name",
        kind: Kind::Integer {
            min: 1,
            max: 4096,
            field: IntegerField::Usize(|c| &mut c.max_name_len),
        },
    },
    Setting {
        name: "merge-writes-ms",
        short: None,
        hint: "MS",
        help: "send a busy player's queued frames at most once per MS milliseconds (the most the adaptive window grows to; the fixed window); 0 writes each frame at once",
        kind: Kind::Millis {
            min: 0,
            max: 1000,
            field: |c| &mut c.merge_writes,
        },
    },
    Setting {
        name: "merge-mode",
        short: None,
        hint: "adaptive|fixed",
        help: "adaptive: no merge window while the server has 64 players or fewer, then one that grows by 1 ms per 5 players, from 20 ms up to --merge-writes-ms; fixed: always --merge-writes-ms",
        kind: Kind::Choice(ChoiceField::MergeMode(|c| &mut c.merge_mode)),
    },
    Setting {
        name: "handshake-timeout",
        short: None,
        hint: "SECS",
        help: "time allowed from accept (or the end of a stream) to publish/play, and for a whole HTTP request",
        kind: Kind::Seconds(|c| &mut c.setup_timeout),
    },
    Setting {
        name: "publish-timeout",
        short: None,
        hint: "SECS",
        help: "silence after which a publisher is dropped",
        kind: Kind::Seconds(|c| &mut c.publish_timeout),
    },
    Setting {
        name: "play-timeout",
        short: None,
        hint: "SECS",
        help: "time any client's socket may accept nothing we send before it is dropped",
        kind: Kind::Seconds(|c| &mut c.write_stall_timeout),
    },
    Setting {
        name: "shutdown-timeout",
        short: None,
        hint: "SECS",
        help: "on SIGINT/SIGTERM, time connections get to end before they are cut",
        kind: Kind::Seconds(|c| &mut c.shutdown_timeout),
    },
    Setting {
        name: "tcp-keepalive",
        short: None,
        hint: "SECS",
        help: "idle time before TCP keepalive probes check that a client is still there (one that answers none is dropped about 30 s later); 0 sends none",
        kind: Kind::WholeSeconds {
            min: 0,
            // Linux's limit for TCP_KEEPIDLE.
            max: 32767,
            field: |c| &mut c.tcp_keepalive,
        },
    },
    Setting {
        name: "record",
        short: None,
        hint: "DIR|off",
        help: "record every app's streams under DIR (record = true, record_dir = DIR), or off for none",
        kind: Kind::Record,
    },
    Setting {
        name: "push",
        short: None,
        hint: "URL|off",
        help: "also publish every app's streams to URL ({app} and {key} are replaced); repeat for more; off for none",
        kind: Kind::Push,
    },
    Setting {
        name: "log-format",
        short: None,
        hint: "text|json",
        help: "log lines for people, or one JSON object per line (time, level, target, message) for log shippers",
        kind: Kind::Choice(ChoiceField::LogFormat(|c| &mut c.log_format)),
    },
];

/// A command-line flag refused: `--NAME: 'TEXT' PROBLEM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagError {
    pub name: &'static str,
    pub text: String,
    pub problem: Problem,
}

impl fmt::Display for FlagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "--{}: '{}' {}", self.name, self.text, self.problem)
    }
}

impl std::error::Error for FlagError {}

/// Applies command-line flags, `(long name, text)` as given, over `config`: each
/// setting takes all of its texts at once, so a repeated flag's values add up
/// (and replace what a config file said) while another flag's last one wins.
pub fn apply_flags(config: &mut Config, flags: &[(&'static str, String)]) -> Result<(), FlagError> {
    for s in SETTINGS {
        let texts: Vec<&str> = flags
            .iter()
            .filter(|(name, _)| *name == s.name)
            .map(|(_, text)| text.as_str())
            .collect();
        s.set_texts(config, &texts)
            .map_err(|(text, problem)| FlagError {
                name: s.name,
                text: text.to_owned(),
                problem,
            })?;
    }
    Ok(())
}

impl Setting {
    /// The key of this setting in a config file: the long name with `-` as `_`.
    pub fn key(&self) -> String {
        self.name.replace('-', "_")
    }

    /// Sets the value given as text (a command-line argument).
    pub fn set_text(&self, config: &mut Config, text: &str) -> Result<(), Problem> {
        self.set_texts(config, &[text])
            .map_err(|(_, problem)| problem)
    }

    /// Whether the flag may be given more than once (its values add up).
    pub fn repeatable(&self) -> bool {
        matches!(self.kind, Kind::Listen { .. } | Kind::Push)
    }

    /// Sets the value from every time the flag was given: a repeatable setting
    /// takes them all, any other the last. A refusal says which text it was.
    pub fn set_texts<'t>(
        &self,
        config: &mut Config,
        texts: &[&'t str],
    ) -> Result<(), (&'t str, Problem)> {
        if let Kind::Push = self.kind {
            return set_pushes(config, texts);
        }
        let Kind::Listen { off, field } = self.kind else {
            return match texts.last() {
                Some(text) => self.set_one(config, text).map_err(|p| (*text, p)),
                None => Ok(()),
            };
        };
        let parts: Vec<(&'t str, &'t str)> = texts
            .iter()
            .flat_map(|text| text.split(',').map(move |part| (*text, part.trim())))
            .collect();
        if off && matches!(parts[..], [(_, "off")]) {
            field(config).clear();
            return Ok(());
        }
        let mut addrs = Vec::new();
        for (text, part) in parts {
            if off && part == "off" {
                return Err((text, Problem("cannot be combined with addresses".into())));
            }
            addrs.push(parse_listen(part).ok_or_else(|| (text, self.range_problem()))?);
        }
        if !addrs.is_empty() {
            *field(config) = addrs;
        }
        Ok(())
    }

    /// Sets a setting that takes one value, from text.
    fn set_one(&self, config: &mut Config, text: &str) -> Result<(), Problem> {
        match self.kind {
            Kind::Listen { .. } => return Err(self.range_problem()),
            Kind::File(field) => {
                *field(config) = match text {
                    "off" => None,
                    "" => return Err(self.range_problem()),
                    path => Some(PathBuf::from(path)),
                }
            }
            Kind::OnOff(_) => {
                let on = match text {
                    "on" | "true" | "yes" | "1" => true,
                    "off" | "false" | "no" | "0" => false,
                    _ => return Err(self.range_problem()),
                };
                self.store_bool(config, on)?;
            }
            Kind::Integer { .. } | Kind::Millis { .. } | Kind::WholeSeconds { .. } => {
                let n = text.parse::<u64>().map_err(|_| self.range_problem())?;
                self.store_integer(config, n)?;
            }
            Kind::Seconds(_) => {
                let secs = text.parse::<f64>().map_err(|_| self.range_problem())?;
                self.store_seconds(config, secs)?;
            }
            Kind::Choice(field) => {
                if !field.set(config, text) {
                    return Err(self.range_problem());
                }
            }
            Kind::Record => {
                let dir = match text {
                    "off" => None,
                    _ => Some(RecordDir::new(text).map_err(Problem)?),
                };
                Arc::make_mut(&mut config.policy).set_record_everywhere(dir);
            }
            Kind::Push => set_pushes(config, &[text]).map_err(|(_, problem)| problem)?,
        }
        Ok(())
    }

    /// Whether the setting is per-app policy rather than a `Config` field: it has
    /// no config file key of its own (the file says the same with per-app keys)
    /// and a reload applies it instead of asking for a restart.
    pub fn is_policy(&self) -> bool {
        matches!(self.kind, Kind::Record | Kind::Push)
    }

    /// Whether the value is a listener's addresses, of which a bare port is one
    /// (`listen = 1935` in a file is `-l 1935`).
    pub fn takes_addresses(&self) -> bool {
        matches!(self.kind, Kind::Listen { .. })
    }

    /// Whether the value is a number of seconds (fractions allowed).
    pub fn takes_seconds(&self) -> bool {
        matches!(self.kind, Kind::Seconds(_))
    }

    /// Sets an on/off setting.
    pub fn store_bool(&self, config: &mut Config, on: bool) -> Result<(), Problem> {
        match self.kind {
            Kind::OnOff(field) => *field(config) = on,
            _ => return Err(self.range_problem()),
        }
        Ok(())
    }

    /// Sets a whole-number setting (milliseconds for [`Kind::Millis`]) if `n` is
    /// in its range.
    pub fn store_integer(&self, config: &mut Config, n: u64) -> Result<(), Problem> {
        match self.kind {
            Kind::Integer { min, max, field } if (min..=max).contains(&n) => match field {
                IntegerField::U32(field) => {
                    *field(config) = u32::try_from(n).map_err(|_| self.range_problem())?
                }
                IntegerField::Usize(field) => {
                    *field(config) = usize::try_from(n).map_err(|_| self.range_problem())?
                }
            },
            Kind::Millis { min, max, field } if (min..=max).contains(&n) => {
                *field(config) = Duration::from_millis(n)
            }
            Kind::WholeSeconds { min, max, field } if (min..=max).contains(&n) => {
                *field(config) = Duration::from_secs(n)
            }
            _ => return Err(self.range_problem()),
        }
        Ok(())
    }

    /// Sets a duration given in seconds if it is in range.
    pub fn store_seconds(&self, config: &mut Config, secs: f64) -> Result<(), Problem> {
        match self.kind {
            Kind::Seconds(field) if (MIN_SECONDS..=MAX_SECONDS).contains(&secs) => {
                *field(config) = Duration::from_secs_f64(secs)
            }
            _ => return Err(self.range_problem()),
        }
        Ok(())
    }

    /// The value `config` holds, written as a flag takes it (`0.0.0.0:1935`, `on`,
    /// `10`).
    pub fn value_text(&self, config: &Config) -> String {
        let mut config = config.clone();
        let c = &mut config;
        match self.kind {
            Kind::Listen { field, .. } => match &field(c)[..] {
                [] => "off".into(),
                addrs => addrs
                    .iter()
                    .map(ListenAddr::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            },
            Kind::File(field) => match field(c) {
                Some(path) => path.display().to_string(),
                None => "off".into(),
            },
            Kind::OnOff(field) => if *field(c) { "on" } else { "off" }.into(),
            Kind::Integer { field, .. } => match field {
                IntegerField::U32(field) => field(c).to_string(),
                IntegerField::Usize(field) => field(c).to_string(),
            },
            Kind::Seconds(field) => field(c).as_secs_f64().to_string(),
            Kind::Millis { field, .. } => field(c).as_millis().to_string(),
            Kind::WholeSeconds { field, .. } => field(c).as_secs().to_string(),
            Kind::Choice(field) => field.get(c).into(),
            Kind::Record => {
                let global = &config.policy.global;
                match (&global.record, &global.record_dir) {
                    (Some(true), Some(dir)) => dir.0.display().to_string(),
                    _ => "off".into(),
                }
            }
            Kind::Push => {
                let pushes = config.policy.global.push.as_deref().unwrap_or_default();
                match pushes {
                    [] => "off".into(),
                    _ => {
                        let urls: Vec<&str> = pushes.iter().map(|p| p.url.as_str()).collect();
                        urls.join(" ")
                    }
                }
            }
        }
    }

    /// What a value of this kind must be, for an error message. An address's
    /// example is the setting's own default, so each listener suggests its port.
    fn range_problem(&self) -> Problem {
        Problem(match self.kind {
            Kind::Listen { off: false, field } => format!(
                "must be a port (1-65535) or an address like {}",
                example_address(self.name, field)
            ),
            Kind::Listen { off: true, field } => format!(
                "must be a port (1-65535), an address like {}, or off",
                example_address(self.name, field)
            ),
            Kind::File(_) => "must be a file's path, or off".into(),
            Kind::OnOff(_) => "must be on or off".into(),
            Kind::Integer { min, max, .. }
            | Kind::Millis { min, max, .. }
            | Kind::WholeSeconds { min, max, .. } => {
                format!("must be a whole number from {min} to {max}")
            }
            Kind::Seconds(_) => {
                format!("must be a number of seconds from {MIN_SECONDS} to {MAX_SECONDS}")
            }
            Kind::Choice(field) => format!("must be {}", field.names().join(" or ")),
            Kind::Record => "must be a directory or off".into(),
            Kind::Push => "must be an rtmp:// URL or off".into(),
        })
    }
}

/// `--push`: the URLs replace the top-level push list (the file's); `off` alone
/// empties it.
fn set_pushes<'t>(config: &mut Config, texts: &[&'t str]) -> Result<(), (&'t str, Problem)> {
    if texts.is_empty() {
        return Ok(());
    }
    let mut pushes = Vec::new();
    if texts != ["off"] {
        for text in texts {
            let url = UpstreamUrl::parse(text).map_err(|e| {
                // The message quotes the URL, which the flag's error shows already.
                let quoted = format!("{text:?}");
                let why = e.strip_prefix(&quoted).unwrap_or(&e);
                (
                    *text,
                    Problem(why.trim_start_matches(':').trim_start().to_owned()),
                )
            })?;
            pushes.push(PushEntry::new(url));
        }
    }
    Arc::make_mut(&mut config.policy).global.push = Some(pushes);
    Ok(())
}

/// An address for a listener's error message: its default's first, as IPv4
/// (`0.0.0.0:8080`), so each listener suggests its own port; the TLS listeners,
/// off by default, their usual ports (443 is where rtmps:// URLs without a port
/// go); the API's own listener a loopback one.
fn example_address(name: &str, field: Field<Vec<ListenAddr>>) -> String {
    match field(&mut Config::rtmpd_defaults()).first() {
        Some(ListenAddr::AnyInterface(port)) => format!("0.0.0.0:{port}"),
        Some(ListenAddr::Addr(addr)) => addr.to_string(),
        None => match name {
            "rtmps-listen" => "0.0.0.0:443".into(),
            "https" => "0.0.0.0:8443".into(),
            _ => "127.0.0.1:8081".into(),
        },
    }
}

/// `HOST:PORT` (the host's first address if it is a name), or a bare port (the
/// common shorthand, `-l 1936`) for every interface.
fn parse_listen(text: &str) -> Option<ListenAddr> {
    if let Ok(port) = text.parse::<u16>() {
        return Some(ListenAddr::AnyInterface(port));
    }
    let addr: SocketAddr = text.to_socket_addrs().ok()?.next()?;
    Some(ListenAddr::Addr(addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_keys_are_snake_case() {
        for (i, s) in SETTINGS.iter().enumerate() {
            assert!(
                SETTINGS[..i].iter().all(|t| t.name != s.name),
                "{} twice",
                s.name
            );
            assert!(!s.key().contains('-'), "{}", s.key());
        }
        let keys: Vec<_> = SETTINGS.iter().map(Setting::key).collect();
        assert!(keys.contains(&"max_connections".to_string()));
        assert!(keys.contains(&"gop_cache".to_string()));
    }

    /// Every entry takes its own default back, and the ends of its range: the
    /// table's kinds fit the fields they set.
    #[test]
    fn every_setting_takes_its_default_and_range_ends() {
        let defaults = Config::rtmpd_defaults();
        for s in SETTINGS {
            let mut c = Config::rtmpd_defaults();
            let text = s.value_text(&defaults);
            s.set_text(&mut c, &text)
                .unwrap_or_else(|e| panic!("--{} {text}: {e}", s.name));
            assert_eq!(s.value_text(&c), text, "--{}", s.name);
            let ends: Vec<String> = match s.kind {
                Kind::Integer { min, max, .. }
                | Kind::Millis { min, max, .. }
                | Kind::WholeSeconds { min, max, .. } => {
                    vec![min.to_string(), max.to_string()]
                }
                Kind::Seconds(_) => vec![MIN_SECONDS.to_string(), MAX_SECONDS.to_string()],
                Kind::Choice(field) => field.names().iter().map(|n| n.to_string()).collect(),
                _ => vec![],
            };
            for end in ends {
                s.set_text(&mut c, &end)
                    .unwrap_or_else(|e| panic!("--{} {end}: {e}", s.name));
                assert_eq!(s.value_text(&c), end, "--{}", s.name);
            }
        }
    }

    /// Each listener's error suggests an address of its own kind, not another's.
    #[test]
    fn address_problems_suggest_the_settings_own_default() {
        let find = |name| SETTINGS.iter().find(|s| s.name == name).unwrap();
        let mut c = Config::rtmpd_defaults();
        assert_eq!(
            find("http").set_text(&mut c, "99999").unwrap_err().0,
            "must be a port (1-65535), an address like 0.0.0.0:8080, or off"
        );
        assert_eq!(
            find("listen").set_text(&mut c, "99999").unwrap_err().0,
            "must be a port (1-65535) or an address like 0.0.0.0:1935"
        );
        assert_eq!(
            find("gop-cache").set_text(&mut c, "maybe").unwrap_err().0,
            "must be on or off"
        );
    }

    #[test]
    fn typed_values_pass_the_same_checks() {
        let find = |name| SETTINGS.iter().find(|s| s.name == name).unwrap();
        let mut c = Config::rtmpd_defaults();
        find("max-connections").store_integer(&mut c, 500).unwrap();
        assert_eq!(c.max_connections, 500);
        assert_eq!(
            find("max-connections")
                .store_integer(&mut c, 0)
                .unwrap_err()
                .to_string(),
            "must be a whole number from 1 to 1048576"
        );
        find("gop-cache").store_bool(&mut c, false).unwrap();
        assert!(!c.gop_cache);
        find("handshake-timeout")
            .store_seconds(&mut c, 2.5)
            .unwrap();
        assert_eq!(c.setup_timeout, Duration::from_millis(2500));
        assert!(find("handshake-timeout")
            .store_seconds(&mut c, 0.0)
            .is_err());
        assert!(find("gop-cache").store_integer(&mut c, 1).is_err());
    }
}
