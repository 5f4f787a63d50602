//! The per-app keys of the config file and everything else a reload may change:
//! [`Policy`]. A key set at the top of the file is every app's default; an
//! `[app.NAME]` section replaces it for that app, key by key, so one server can
//! have an open app and a protected one. [`Policy::app`] resolves the keys of
//! one app once per request ([`AppPolicy`]).
//!
//! A later feature adds a per-app key by adding one line to the `app_keys!` list
//! below (name, type, doc): the file format, the unknown-key check, the per-app
//! override and the example's check all follow from it.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::Deserialize;

use super::record::{
    ByteSize, RecordDir, RecordPath, RecordSettings, DEFAULT_RECONNECT_GAP, DEFAULT_RECORD_BUFFER,
    DEFAULT_RECORD_FLUSH,
};
use super::relay::{Origin, PullEntry, PushEntry};
use super::settings::{MAX_SECONDS, MIN_SECONDS};
use crate::stream_key::StreamKey;

/// Declares [`AppKeys`] from one list: each key is an `Option` (unset: the
/// global value, or the default), and `or` fills the unset ones from a base.
macro_rules! app_keys {
    ($($(#[$doc:meta])* $name:ident: $ty:ty,)*) => {
        /// The keys that may be set at the top of the file (every app) and in
        /// `[app.NAME]` (that app).
        #[derive(Debug, Clone, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct AppKeys {
            $($(#[$doc])* pub $name: Option<$ty>,)*
        }

        impl AppKeys {
            /// Every key's name, as written in the file.
            pub const KEYS: &'static [&'static str] = &[$(stringify!($name)),*];

            /// These keys, with the unset ones taken from `base`.
            fn or(mut self, base: &AppKeys) -> AppKeys {
                $(if self.$name.is_none() {
                    self.$name = base.$name.clone();
                })*
                self
            }
        }
    };
}

app_keys! {
    /// Publishers must show this secret (`?secret=`) or a token signed with it.
    publish_secret: Secret,
    /// Players must show this secret or a token signed with it; unset: play is open.
    play_secret: Secret,
    /// Asked before a publish (nginx-rtmp's `on_publish`).
    on_publish: HookUrl,
    /// Asked before a play.
    on_play: HookUrl,
    /// Told when a publish ends.
    on_publish_done: HookUrl,
    /// Told when a play ends.
    on_play_done: HookUrl,
    /// How long a hook may take to answer (default 3 s).
    hook_timeout: Seconds,
    /// A hook that fails (timeout, unreachable, bad answer) admits instead of
    /// refusing.
    hook_fail_open: bool,
    /// Addresses that may publish; set: only these (the most specific entry of
    /// the allow and deny lists decides, see `IpRules`).
    allow_publish: Vec<IpRange>,
    /// Addresses that may not publish.
    deny_publish: Vec<IpRange>,
    allow_play: Vec<IpRange>,
    deny_play: Vec<IpRange>,

    // Recording (`config::record`, `crate::record`).
    /// Record every stream published in the app.
    record: bool,
    /// Where recordings go (`--record DIR` sets it and `record`).
    record_dir: RecordDir,
    /// A recording's file under `record_dir` (default `{app}/{key}/{start}.flv`).
    record_path: RecordPath,
    /// How often buffered tags go to the file and the disk (default 1 s).
    record_flush: Seconds,
    /// A new file at the first keyframe past this many seconds of stream.
    record_segment_seconds: Seconds,
    /// A new file at the first keyframe past this many bytes.
    record_segment_bytes: ByteSize,
    /// A publisher back within `record_reconnect_gap` continues its last file.
    record_append: bool,
    /// How soon, for `record_append` (default 5 s).
    record_reconnect_gap: Seconds,
    /// Stream bytes that may wait for a slow disk before the recording stops.
    record_buffer_bytes: ByteSize,
    /// Told when a recording's file is closed (nginx-rtmp's `on_record_done`).
    on_record_done: HookUrl,
    // Relay (push, edge pull, static pull): `crate::relay`.
    /// Where every stream of the app is also published (restream): URLs with
    /// `{app}`/`{key}`, or tables `{ url, keys, tls_verify }`.
    push: Vec<PushEntry>,
    /// How far (seconds of media) a push destination may fall behind before it
    /// is reconnected (default 10).
    push_buffer: Seconds,
    /// The first wait before reconnecting a destination or a pull (default 1 s);
    /// it doubles on each failure up to `push_backoff_max` (default 30 s).
    push_backoff_min: Seconds,
    push_backoff_max: Seconds,
    /// An edge: keys that are not live here are pulled from this server (a URL,
    /// or `{ url, tls_verify }`).
    origin: Origin,
    /// How long a pull from the origin outlives its last player (default 10 s).
    origin_idle: Seconds,
    /// How long players wait for the origin's stream before they are told it is
    /// not found (default 10 s).
    origin_timeout: Seconds,
    /// Streams pulled as long as the server runs: `{ from = URL, as = "app/key" }`.
    pull: Vec<PullEntry>,
    /// Serve the app's streams as HLS (default true).
    hls: bool,
    /// Complete HLS segments kept per stream (default 7).
    hls_segments: SegmentCount,
    /// Longest Low-Latency HLS part (default 0.5 s).
    hls_part_seconds: Seconds,
    /// Shortest HLS segment; segments end at the first keyframe after it (default 2 s).
    hls_segment_seconds: Seconds,
}

/// What a client asks to do with a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Publish,
    Play,
}

impl Verb {
    /// As in tokens and hook calls: `publish`, `play`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Publish => "publish",
            Verb::Play => "play",
        }
    }
}

/// Every rule a reload may change: the per-app keys and the API token.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// The keys at the top of the file: every app's defaults.
    pub global: AppKeys,
    /// `[app.NAME]` sections.
    pub apps: BTreeMap<String, AppKeys>,
    /// `/api/*` and `/metrics` need `Authorization: Bearer <token>` when set.
    pub api_token: Option<Secret>,
}

impl Policy {
    /// What no single key can say is wrong: `record = true` (at the top or in a
    /// section) for an app that has no `record_dir`.
    pub fn check(&self) -> Result<(), String> {
        let global = std::iter::once((None, self.app("")));
        let sections = self
            .apps
            .keys()
            .map(|name| (Some(name.as_str()), self.app(name)));
        for (name, app) in global.chain(sections) {
            if app.0.record == Some(true) && app.0.record_dir.is_none() {
                let place = name.map_or("at the top".to_owned(), |n| format!("in [app.{n}]"));
                return Err(format!(
                    "record = true {place} needs record_dir (or --record DIR)"
                ));
            }
        }
        self.static_pulls()?;
        Ok(())
    }

    /// Turns recording on (into `dir`) or off for every app, as `--record`
    /// does: `record` everywhere, and the top-level `record_dir`.
    pub fn set_record_everywhere(&mut self, dir: Option<RecordDir>) {
        let on = dir.is_some();
        if let Some(dir) = dir {
            self.global.record_dir = Some(dir);
        }
        self.global.record = Some(on);
        for keys in self.apps.values_mut() {
            keys.record = Some(on);
        }
    }

    /// The keys in force for `app`.
    pub fn app(&self, app: &str) -> AppPolicy {
        let keys = match self.apps.get(app) {
            Some(own) => own.clone().or(&self.global),
            None => self.global.clone(),
        };
        AppPolicy(keys)
    }
}

/// The keys in force for one app, with the defaults of the unset ones.
#[derive(Debug, Clone)]
pub struct AppPolicy(pub AppKeys);

/// How long a hook may take by default.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(3);

impl AppPolicy {
    pub fn secret(&self, verb: Verb) -> Option<&Secret> {
        match verb {
            Verb::Publish => self.0.publish_secret.as_ref(),
            Verb::Play => self.0.play_secret.as_ref(),
        }
    }

    /// The hook asked before `verb`, and its key's name for the log.
    pub fn hook(&self, verb: Verb) -> Option<(&'static str, &HookUrl)> {
        match verb {
            Verb::Publish => self.0.on_publish.as_ref().map(|u| ("on_publish", u)),
            Verb::Play => self.0.on_play.as_ref().map(|u| ("on_play", u)),
        }
    }

    /// The hook told when `verb` ends, and its key's name.
    pub fn done_hook(&self, verb: Verb) -> Option<(&'static str, &HookUrl)> {
        match verb {
            Verb::Publish => self
                .0
                .on_publish_done
                .as_ref()
                .map(|u| ("on_publish_done", u)),
            Verb::Play => self.0.on_play_done.as_ref().map(|u| ("on_play_done", u)),
        }
    }

    pub fn hook_timeout(&self) -> Duration {
        self.0.hook_timeout.map_or(DEFAULT_HOOK_TIMEOUT, |s| s.0)
    }

    pub fn hook_fail_open(&self) -> bool {
        self.0.hook_fail_open.unwrap_or(false)
    }

    /// How this app's streams are recorded; `None`: they are not. `record = true`
    /// without a `record_dir` is refused when the config is loaded
    /// ([`Policy::check`]).
    pub fn record(&self) -> Option<RecordSettings> {
        let keys = &self.0;
        if keys.record != Some(true) {
            return None;
        }
        Some(RecordSettings {
            dir: keys.record_dir.clone()?.0,
            path: keys.record_path.clone().unwrap_or_default(),
            flush: keys.record_flush.map_or(DEFAULT_RECORD_FLUSH, |s| s.0),
            segment_duration: keys.record_segment_seconds.map(|s| s.0),
            segment_bytes: keys.record_segment_bytes.map(|b| b.0),
            append: keys.record_append.unwrap_or(false),
            reconnect_gap: keys
                .record_reconnect_gap
                .map_or(DEFAULT_RECONNECT_GAP, |s| s.0),
            buffer_bytes: keys
                .record_buffer_bytes
                .map_or(DEFAULT_RECORD_BUFFER, |b| b.0),
        })
    }

    /// Where this app's recordings are, recording or not (`/api/recordings`
    /// lists them): `record_dir` and the `record_path` template.
    pub fn record_files(&self) -> Option<(std::path::PathBuf, RecordPath)> {
        let dir = self.0.record_dir.clone()?.0;
        Some((dir, self.0.record_path.clone().unwrap_or_default()))
    }

    /// The hook told when a recording's file is closed.
    pub fn record_done_hook(&self) -> Option<(&'static str, &HookUrl)> {
        self.0
            .on_record_done
            .as_ref()
            .map(|u| ("on_record_done", u))
    }

    /// How the app's streams are cut for HLS; `None` when HLS is off for it.
    /// Parts are 0.1 s to 5 s and at most a segment; segments 0.5 s to 30 s.
    pub fn hls(&self) -> Option<crate::hls::SegmenterConfig> {
        if !self.0.hls.unwrap_or(true) {
            return None;
        }
        let ms = |s: &Option<Seconds>, default: f64, min: f64, max: f64| {
            let secs = s.as_ref().map_or(default, |s| s.0.as_secs_f64());
            (secs.clamp(min, max) * 1000.0).round() as u32
        };
        let segment_target_ms = ms(&self.0.hls_segment_seconds, 2.0, 0.5, 30.0);
        let part_target_ms = ms(&self.0.hls_part_seconds, 0.5, 0.1, 5.0).min(segment_target_ms);
        Some(crate::hls::SegmenterConfig {
            part_target_ms,
            segment_target_ms,
            segments: self.0.hls_segments.map_or(7, |c| c.0),
        })
    }

    /// The allow and deny lists of `verb` (empty when unset).
    pub fn ip_rules(&self, verb: Verb) -> IpRules<'_> {
        let (allow, deny) = match verb {
            Verb::Publish => (&self.0.allow_publish, &self.0.deny_publish),
            Verb::Play => (&self.0.allow_play, &self.0.deny_play),
        };
        IpRules {
            verb,
            allow: allow.as_deref().unwrap_or_default(),
            deny: deny.as_deref().unwrap_or_default(),
        }
    }
}

/// Relay defaults; see `app_keys!`.
pub const DEFAULT_PUSH_BUFFER: Duration = Duration::from_secs(10);
pub const DEFAULT_BACKOFF_MIN: Duration = Duration::from_secs(1);
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(30);
pub const DEFAULT_ORIGIN_IDLE: Duration = Duration::from_secs(10);
pub const DEFAULT_ORIGIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The relay's keys of one app, with defaults.
impl AppPolicy {
    /// The push destinations of the app (of every key; see `PushEntry::applies_to`).
    pub fn pushes(&self) -> &[PushEntry] {
        self.0.push.as_deref().unwrap_or_default()
    }

    pub fn push_buffer(&self) -> Duration {
        self.0.push_buffer.map_or(DEFAULT_PUSH_BUFFER, |s| s.0)
    }

    /// The first and the longest wait before a reconnect, as set (the relay's
    /// `Backoff` takes a longest below the first as the first).
    pub fn backoff(&self) -> (Duration, Duration) {
        let min = self.0.push_backoff_min.map_or(DEFAULT_BACKOFF_MIN, |s| s.0);
        let max = self.0.push_backoff_max.map_or(DEFAULT_BACKOFF_MAX, |s| s.0);
        (min, max)
    }

    /// The server an edge app pulls missing keys from.
    pub fn origin(&self) -> Option<&Origin> {
        self.0.origin.as_ref()
    }

    pub fn origin_idle(&self) -> Duration {
        self.0.origin_idle.map_or(DEFAULT_ORIGIN_IDLE, |s| s.0)
    }

    pub fn origin_timeout(&self) -> Duration {
        self.0
            .origin_timeout
            .map_or(DEFAULT_ORIGIN_TIMEOUT, |s| s.0)
    }
}

impl Policy {
    /// Every static pull of the file, with the local key each publishes: those
    /// at the top of the file and those of each `[app.NAME]` section (a section
    /// does not inherit the top's list: each pull runs once). Errors name the
    /// entry at fault.
    pub fn static_pulls(&self) -> Result<Vec<(PullEntry, StreamKey)>, String> {
        let top = self.global.pull.iter().flatten().map(|p| (None, p));
        let sections = self.apps.iter().flat_map(|(app, keys)| {
            keys.pull
                .iter()
                .flatten()
                .map(move |p| (Some(app.as_str()), p))
        });
        let mut pulls: Vec<(PullEntry, StreamKey)> = Vec::new();
        for (section, entry) in top.chain(sections) {
            let key = entry.local_key(section)?;
            if let Some((other, _)) = pulls.iter().find(|(_, k)| *k == key) {
                return Err(format!(
                    "two pulls publish {key}: from {} and from {}",
                    other.from, entry.from
                ));
            }
            pulls.push((entry.clone(), key));
        }
        Ok(pulls)
    }
}

/// A secret from the config file. Never printed: `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: &str) -> Result<Secret, &'static str> {
        if text.is_empty() {
            Err("a secret may not be empty")
        } else {
            Ok(Secret(text.to_owned()))
        }
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        let text = String::deserialize(d)?;
        Secret::new(&text).map_err(de::Error::custom)
    }
}

/// A hook's URL: `http://HOST[:PORT]/PATH` or `https://...` (the server's
/// certificate verified against the system's roots, `crate::tls::client`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookUrl(pub String);

impl HookUrl {
    pub fn new(text: &str) -> Result<HookUrl, String> {
        let rest = text
            .strip_prefix("http://")
            .or_else(|| text.strip_prefix("https://"))
            .ok_or_else(|| format!("{text:?} is not an http:// or https:// URL"))?;
        let host = rest.split(['/', '?']).next().unwrap_or_default();
        if host.is_empty() || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("{text:?} is not an http(s)://HOST/PATH URL"));
        }
        Ok(HookUrl(text.to_owned()))
    }
}

impl fmt::Display for HookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for HookUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<HookUrl, D::Error> {
        let text = String::deserialize(d)?;
        HookUrl::new(&text).map_err(de::Error::custom)
    }
}

/// A duration written as a number of seconds (`2.5`), in the flags' range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seconds(pub Duration);

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Seconds, D::Error> {
        let secs = f64::deserialize(d)?;
        if !(MIN_SECONDS..=MAX_SECONDS).contains(&secs) {
            return Err(de::Error::custom(format!(
                "must be a number of seconds from {MIN_SECONDS} to {MAX_SECONDS}"
            )));
        }
        Ok(Seconds(Duration::from_secs_f64(secs)))
    }
}

/// A number of HLS segments: 2 to 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentCount(pub usize);

impl<'de> Deserialize<'de> for SegmentCount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SegmentCount, D::Error> {
        let n = u64::deserialize(d)?;
        if !(2..=100).contains(&n) {
            return Err(de::Error::custom(
                "must be a number of segments from 2 to 100",
            ));
        }
        Ok(SegmentCount(n as usize))
    }
}

/// An address or a CIDR range (`192.168.1.0/24`, `::1`, `fd00::/8`), or `all`.
/// An IPv4 range also matches IPv4-mapped IPv6 peers (`::ffff:10.0.0.1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    addr: IpAddr,
    prefix: u8,
    all: bool,
}

impl IpRange {
    pub fn parse(text: &str) -> Result<IpRange, String> {
        if text == "all" {
            return Ok(IpRange {
                addr: IpAddr::from([0, 0, 0, 0]),
                prefix: 0,
                all: true,
            });
        }
        let bad = || format!("{text:?} is not an address, a range like 10.0.0.0/8, or all");
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
            None => max,
        };
        // Peers are matched as plain IPv4 when they arrive mapped, so a mapped
        // range (`::ffff:10.0.0.0/104`) is the IPv4 range it names.
        let (addr, prefix) = match addr {
            IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), prefix - 96),
                None => (addr, prefix),
            },
            _ => (addr, prefix),
        };
        Ok(IpRange {
            addr,
            prefix,
            all: false,
        })
    }

    /// How many leading bits it fixes: 32 or 128 for one address, 0 for `all`.
    /// Of two ranges that hold an address, the one with more is more specific.
    fn specificity(&self) -> u8 {
        self.prefix
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        if self.all {
            return true;
        }
        let ip = canonical(ip);
        let bits = |a: u128, b: u128, width: u32| {
            let shift = width - u32::from(self.prefix);
            shift >= width || (a >> shift) == (b >> shift)
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                bits(u32::from(net).into(), u32::from(ip).into(), 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => bits(net.into(), ip.into(), 128),
            _ => false,
        }
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.all {
            f.write_str("all")
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

impl<'de> Deserialize<'de> for IpRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<IpRange, D::Error> {
        let text = String::deserialize(d)?;
        IpRange::parse(&text).map_err(de::Error::custom)
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The allow and deny lists of one verb. The most specific entry that holds the
/// address decides (the longest prefix: one address beats any range, `all` is
/// the least specific); equally specific entries in both lists: deny. An address
/// in neither list is refused when there is an allow list (it names the only
/// ones) and admitted otherwise; nothing listed: everyone.
///
/// nginx-rtmp's `allow`/`deny` go by order, first match wins, and an address no
/// rule matches is admitted. Two TOML lists have no order between them, so the
/// order is the one nginx-rtmp users write anyway, most specific first, and an
/// allow list ends with nginx-rtmp's usual `deny all`: `allow_publish =
/// ["10.0.0.0/8"]` with `deny_publish = ["10.0.0.9"]` is `deny publish 10.0.0.9;
/// allow publish 10.0.0.0/8; deny publish all;`.
pub struct IpRules<'a> {
    verb: Verb,
    allow: &'a [IpRange],
    deny: &'a [IpRange],
}

impl IpRules<'_> {
    /// `Err` names the rule that refused `ip`, for the log.
    pub fn check(&self, ip: IpAddr) -> Result<(), String> {
        let verb = self.verb.as_str();
        let most_specific = |list: &[IpRange]| {
            list.iter()
                .filter(|r| r.contains(ip))
                .max_by_key(|r| r.specificity())
                .copied()
        };
        match (most_specific(self.allow), most_specific(self.deny)) {
            (Some(allow), Some(deny)) if allow.specificity() > deny.specificity() => Ok(()),
            (_, Some(deny)) => Err(format!("deny_{verb} {deny}")),
            (Some(_), None) => Ok(()),
            (None, None) if self.allow.is_empty() => Ok(()),
            (None, None) => Err(format!("allow_{verb} (not listed)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(s: &str) -> IpRange {
        IpRange::parse(s).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_match_v4_v6_and_mapped_v4() {
        assert!(range("10.0.0.0/8").contains(ip("10.200.1.1")));
        assert!(!range("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(range("127.0.0.1").contains(ip("::ffff:127.0.0.1")));
        assert!(!range("127.0.0.1").contains(ip("127.0.0.2")));
        assert!(range("fd00::/8").contains(ip("fd12::1")));
        assert!(!range("fd00::/8").contains(ip("fe80::1")));
        assert!(range("::1").contains(ip("::1")));
        assert!(!range("::1").contains(ip("127.0.0.1")));
        assert!(range("0.0.0.0/0").contains(ip("8.8.8.8")));
        assert!(range("all").contains(ip("2001:db8::1")));
        for bad in ["10.0.0.0/33", "::/129", "10.0.0", "host", "10.0.0.0/x", ""] {
            assert!(IpRange::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn mapped_ranges_are_the_ipv4_ranges_they_name() {
        assert_eq!(range("::ffff:127.0.0.1"), range("127.0.0.1"));
        assert_eq!(range("::ffff:10.0.0.0/104"), range("10.0.0.0/8"));
        assert!(range("::ffff:127.0.0.1").contains(ip("127.0.0.1")));
        assert!(range("::ffff:127.0.0.1").contains(ip("::ffff:127.0.0.1")));
        assert!(!range("::ffff:127.0.0.1").contains(ip("::1")));
        assert_eq!(range("::ffff:10.0.0.0/104").to_string(), "10.0.0.0/8");
    }

    fn rules<'a>(allow: &'a [IpRange], deny: &'a [IpRange]) -> IpRules<'a> {
        IpRules {
            verb: Verb::Publish,
            allow,
            deny,
        }
    }

    /// What nginx-rtmp users write, most specific first, means what it means
    /// there; the lists' order does not matter.
    #[test]
    fn the_most_specific_entry_decides_and_ties_deny() {
        let ok = |allow: &[&str], deny: &[&str], who: &str| {
            let allow: Vec<IpRange> = allow.iter().map(|r| range(r)).collect();
            let deny: Vec<IpRange> = deny.iter().map(|r| range(r)).collect();
            rules(&allow, &deny).check(ip(who))
        };
        // deny publish 10.0.0.9; allow publish 10.0.0.0/8; deny publish all;
        assert!(ok(&["10.0.0.0/8"], &["10.0.0.9"], "10.1.2.3").is_ok());
        assert_eq!(
            ok(&["10.0.0.0/8"], &["10.0.0.9"], "10.0.0.9").unwrap_err(),
            "deny_publish 10.0.0.9/32"
        );
        assert_eq!(
            ok(&["10.0.0.0/8"], &["10.0.0.9"], "8.8.8.8").unwrap_err(),
            "allow_publish (not listed)"
        );
        // Everyone but one address (and its neighbours).
        assert!(ok(&["all"], &["198.51.100.0/24"], "8.8.8.8").is_ok());
        assert!(ok(&["all"], &["198.51.100.0/24"], "198.51.100.7").is_err());
        assert!(ok(&[], &["198.51.100.0/24"], "198.51.100.7").is_err());
        // One address let through a denied range.
        assert!(ok(&["192.168.1.5"], &["192.168.0.0/16"], "192.168.1.5").is_ok());
        assert!(ok(&["192.168.1.5"], &["192.168.0.0/16"], "192.168.1.6").is_err());
        // Equally specific: deny.
        assert!(ok(&["10.0.0.0/8"], &["10.0.0.0/8"], "10.0.0.1").is_err());
        assert!(ok(&["all"], &["all"], "10.0.0.1").is_err());
        // IPv6 and mapped peers.
        assert!(ok(&["fd00::/8"], &["fd00:1::/32"], "fd00:2::1").is_ok());
        assert!(ok(&["fd00::/8"], &["fd00:1::/32"], "fd00:1::1").is_err());
        assert!(ok(&["127.0.0.1"], &["all"], "::ffff:127.0.0.1").is_ok());
        assert!(ok(&["::ffff:127.0.0.1"], &[], "127.0.0.1").is_ok());
    }

    #[test]
    fn an_allow_list_names_the_only_ones_and_nothing_listed_is_everyone() {
        let allow = [range("127.0.0.1"), range("192.168.0.0/16")];
        let deny = [range("all")];
        let rules = IpRules {
            verb: Verb::Publish,
            allow: &allow,
            deny: &deny,
        };
        assert!(rules.check(ip("127.0.0.1")).is_ok());
        assert!(rules.check(ip("192.168.4.4")).is_ok());
        assert_eq!(rules.check(ip("8.8.8.8")).unwrap_err(), "deny_publish all");
        let only = IpRules {
            verb: Verb::Play,
            allow: &allow,
            deny: &[],
        };
        assert_eq!(
            only.check(ip("8.8.8.8")).unwrap_err(),
            "allow_play (not listed)"
        );
        let deny = [range("10.0.0.0/8")];
        let deny_only = IpRules {
            verb: Verb::Play,
            allow: &[],
            deny: &deny,
        };
        assert!(deny_only.check(ip("10.1.1.1")).is_err());
        assert!(deny_only.check(ip("8.8.8.8")).is_ok());
    }

    #[test]
    fn an_app_section_replaces_global_keys_one_by_one() {
        let policy = Policy {
            global: AppKeys {
                publish_secret: Some(Secret::new("g").unwrap()),
                hook_fail_open: Some(true),
                ..AppKeys::default()
            },
            apps: [(
                "vip".to_owned(),
                AppKeys {
                    publish_secret: Some(Secret::new("v").unwrap()),
                    ..AppKeys::default()
                },
            )]
            .into(),
            api_token: None,
        };
        let vip = policy.app("vip");
        assert_eq!(vip.secret(Verb::Publish).unwrap().expose(), "v");
        assert!(
            vip.hook_fail_open(),
            "unset in the section: the global value"
        );
        assert_eq!(
            policy.app("live").secret(Verb::Publish).unwrap().expose(),
            "g"
        );
        assert!(policy.app("live").secret(Verb::Play).is_none());
        assert_eq!(policy.app("live").hook_timeout(), DEFAULT_HOOK_TIMEOUT);
    }

    #[test]
    fn hook_urls_are_http_or_https() {
        assert!(HookUrl::new("http://127.0.0.1:8000/on_publish").is_ok());
        assert!(HookUrl::new("https://example.com/x").is_ok());
        for bad in ["ftp://x", "http://", "http:///x", "http://a b/", "https://"] {
            assert!(HookUrl::new(bad).is_err(), "{bad}");
        }
        assert_eq!(
            format!("{:?}", Secret::new("hunter2").unwrap()),
            "Secret(..)"
        );
    }
}
