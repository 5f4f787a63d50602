//! The config file (`--config rtmpd.toml`): TOML read with serde onto the same
//! `Config` the flags fill. A top-level key is either a setting of the flag table
//! (`max_connections = 500` is `--max-connections 500`), a per-app key
//! (`policy::AppKeys`: every app's default), `api_token`, or the `[app.NAME]`
//! sections. Anything else is an error, reported with its line and column (toml's
//! errors carry the span of the key or value at fault).
//!
//! [`Source`] remembers where a running server's config came from (the file and
//! the flags that override it), so a reload reads it again the same way.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::value::MapAccessDeserializer;
use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::policy::{AppKeys, Policy, Secret};
use super::settings::{self, Setting, SETTINGS};
use super::Config;

/// A config file that could not be read or is wrong; `Display` names the file
/// and, for a mistake in it, the line and column.
#[derive(Debug)]
pub struct FileError {
    pub path: PathBuf,
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message.trim_end())
    }
}

impl std::error::Error for FileError {}

/// Where a config comes from: the defaults, then the file (if any), then the
/// flags given on the command line, which win.
#[derive(Debug, Clone, Default)]
pub struct Source {
    pub file: Option<PathBuf>,
    /// Command-line settings as given: (long name, value).
    pub flags: Vec<(&'static str, String)>,
}

impl Source {
    /// Reads the file (if any) and applies the flags: a complete `Config`.
    pub fn load(&self) -> Result<Config, FileError> {
        let mut config = Config::rtmpd_defaults();
        if let Some(path) = &self.file {
            let text = std::fs::read_to_string(path).map_err(|e| FileError {
                path: path.clone(),
                message: format!("cannot read it: {e}"),
            })?;
            apply(&text, &mut config).map_err(|message| FileError {
                path: path.clone(),
                message,
            })?;
            // The file's own paths are relative to it, not to where rtmpd runs.
            let dir = path.parent().unwrap_or(Path::new(""));
            for file in [&mut config.tls_cert, &mut config.tls_key]
                .into_iter()
                .flatten()
            {
                if file.is_relative() {
                    *file = dir.join(&*file);
                }
            }
        }
        settings::apply_flags(&mut config, &self.flags).map_err(|e| FileError {
            path: "command line".into(),
            message: e.to_string(),
        })?;
        let whole = |message| FileError {
            path: self.file.clone().unwrap_or_else(|| "command line".into()),
            message,
        };
        config.policy.check().map_err(whole)?;
        config.check_tls().map_err(whole)?;
        config.source = self.clone();
        Ok(config)
    }
}

/// Checks a config file as `--check-config` does: reads and applies it to the
/// defaults.
pub fn check(path: &Path) -> Result<Config, FileError> {
    Source {
        file: Some(path.to_owned()),
        flags: Vec::new(),
    }
    .load()
}

/// Applies the TOML document `text` to `config`: its settings, and its policy
/// (which replaces `config.policy`). `Err` is toml's message, with the line.
pub fn apply(text: &str, config: &mut Config) -> Result<(), String> {
    let policy = toml::Deserializer::parse(text)
        .and_then(|d| Document { config }.deserialize(d))
        .map_err(|e| e.to_string())?;
    config.policy = Arc::new(policy);
    Ok(())
}

/// The whole document: settings go straight into the config; the rest becomes
/// the policy.
struct Document<'a> {
    config: &'a mut Config,
}

impl<'de> DeserializeSeed<'de> for Document<'_> {
    type Value = Policy;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Policy, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Document<'_> {
    type Value = Policy;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a table of settings")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Policy, A::Error> {
        let mut top = TopLevel {
            inner: map,
            config: self.config,
            apps: BTreeMap::new(),
            api_token: None,
        };
        // The per-app keys at the top level are read by AppKeys' own derive
        // (types, ranges); `TopLevel` takes every other key out of its way.
        let global = AppKeys::deserialize(MapAccessDeserializer::new(&mut top))?;
        Ok(Policy {
            global,
            apps: top.apps,
            api_token: top.api_token,
        })
    }
}

/// The top-level table as `AppKeys` sees it: settings, `app` and `api_token`
/// are consumed here; unknown keys are refused here with a message that fits the
/// whole file.
struct TopLevel<'a, A> {
    inner: A,
    config: &'a mut Config,
    apps: BTreeMap<String, AppKeys>,
    api_token: Option<Secret>,
}

/// A top-level key: one of ours, or one for `AppKeys` (already passed on).
enum Key<K> {
    Setting(&'static Setting),
    App,
    ApiToken,
    Passed(K),
}

/// Reads a key inside toml's key deserializer, so an error carries its span.
/// The seed of `AppKeys`' derive is used only for a key that goes to it.
struct KeySeed<'s, K>(&'s mut Option<K>);

impl<'de, K: DeserializeSeed<'de>> DeserializeSeed<'de> for KeySeed<'_, K> {
    type Value = Key<K::Value>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        let key = String::deserialize(d)?;
        if let Some(setting) = SETTINGS.iter().find(|s| !s.is_policy() && s.key() == key) {
            return Ok(Key::Setting(setting));
        }
        match key.as_str() {
            "app" => Ok(Key::App),
            "api_token" => Ok(Key::ApiToken),
            k if AppKeys::KEYS.contains(&k) => {
                let seed = self
                    .0
                    .take()
                    .ok_or_else(|| de::Error::custom("internal: key seed used twice"))?;
                let de: de::value::StringDeserializer<D::Error> = key.into_deserializer();
                seed.deserialize(de).map(Key::Passed)
            }
            _ => Err(de::Error::custom(format!(
                "unknown key `{key}` (every key is listed in scripts/rtmpd.example.toml)"
            ))),
        }
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for &mut TopLevel<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let mut seed = Some(seed);
        loop {
            let Some(key) = self.inner.next_key_seed(KeySeed(&mut seed))? else {
                return Ok(None);
            };
            match key {
                Key::Passed(value) => return Ok(Some(value)),
                Key::Setting(setting) => self.inner.next_value_seed(SettingValue {
                    setting,
                    config: self.config,
                })?,
                Key::App => self.apps = self.inner.next_value()?,
                Key::ApiToken => self.api_token = Some(self.inner.next_value()?),
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.inner.next_value_seed(seed)
    }
}

/// A setting's value, applied through the flag table's checks.
struct SettingValue<'a> {
    setting: &'static Setting,
    config: &'a mut Config,
}

impl<'de> DeserializeSeed<'de> for SettingValue<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// A refused value as a serde error that names the key.
fn done<E: de::Error>(
    setting: &Setting,
    result: Result<(), super::settings::Problem>,
) -> Result<(), E> {
    result.map_err(|problem| E::custom(format!("{}: {problem}", setting.key())))
}

impl<'de> Visitor<'de> for SettingValue<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a value for {}", self.setting.key())
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        done(self.setting, self.setting.store_bool(self.config, v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => done(
                self.setting,
                self.setting.set_text(self.config, &v.to_string()),
            ),
        }
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        let result = if self.setting.takes_addresses() {
            self.setting.set_text(self.config, &v.to_string())
        } else if self.setting.takes_seconds() {
            self.setting.store_seconds(self.config, v as f64)
        } else {
            self.setting.store_integer(self.config, v)
        };
        done(self.setting, result)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        done(self.setting, self.setting.store_seconds(self.config, v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        done(self.setting, self.setting.set_text(self.config, v))
    }

    /// A list: the addresses of a listener (`listen = ["1935", "[::1]:1936"]`).
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let key = self.setting.key();
        if !self.setting.repeatable() {
            return Err(de::Error::custom(format!(
                "{key}: takes one value, not a list"
            )));
        }
        let mut texts = Vec::new();
        while let Some(ListEntry(text)) = seq.next_element()? {
            texts.push(text);
        }
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        if texts.is_empty() {
            return Err(de::Error::custom(format!("{key}: an empty list")));
        }
        let result = self.setting.set_texts(self.config, &texts);
        done(
            self.setting,
            result.map_err(|(text, problem)| settings::Problem(format!("'{text}' {problem}"))),
        )
    }
}

/// An entry of a listener's or a push list, as the flag's text: a string, or
/// a bare port written as a number (`listen = [1935, "[::1]:1936"]`).
struct ListEntry(String);

impl<'de> Deserialize<'de> for ListEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ListEntryVisitor)
    }
}

struct ListEntryVisitor;

impl Visitor<'_> for ListEntryVisitor {
    type Value = ListEntry;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or a port number")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<ListEntry, E> {
        Ok(ListEntry(v.to_owned()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<ListEntry, E> {
        Ok(ListEntry(v.to_string()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<ListEntry, E> {
        Ok(ListEntry(v.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::config::policy::Verb;
    use crate::config::ListenAddr;

    fn load(text: &str) -> Result<Config, String> {
        let mut config = Config::rtmpd_defaults();
        apply(text, &mut config).map(|()| config)
    }

    #[test]
    fn settings_are_the_flags_with_underscores() {
        let c = load(
            "max_connections = 500\nhttp = \"off\"\ngop_cache = false\n\
             handshake_timeout = 2.5\npublish_timeout = 3\nlisten = \"127.0.0.1:1999\"\n\
             merge_writes_ms = 0\nmerge_mode = \"fixed\"\n",
        )
        .unwrap();
        assert_eq!(c.max_connections, 500);
        assert_eq!(c.http, []);
        assert!(!c.gop_cache);
        assert_eq!(c.setup_timeout, Duration::from_millis(2500));
        assert_eq!(c.publish_timeout, Duration::from_secs(3));
        assert_eq!(
            c.listen,
            [ListenAddr::Addr("127.0.0.1:1999".parse().unwrap())]
        );
        assert_eq!(c.merge_writes, Duration::ZERO);
        assert_eq!(c.merge_mode, crate::player::MergeMode::Fixed);
        assert_eq!(
            load("merge_mode = \"slow\"\n").unwrap_err().lines().last(),
            Some("merge_mode: must be adaptive or fixed")
        );
    }

    #[test]
    fn listeners_take_a_list() {
        let c = load("listen = [\"1935\", \"[::1]:1936\"]\nhttp = [\"127.0.0.1:8080\"]\n").unwrap();
        assert_eq!(
            c.listen,
            [
                ListenAddr::AnyInterface(1935),
                ListenAddr::Addr("[::1]:1936".parse().unwrap())
            ]
        );
        assert_eq!(
            c.http,
            [ListenAddr::Addr("127.0.0.1:8080".parse().unwrap())]
        );
        // A port is a number in TOML, as `-l 1935` is a bare port on the command
        // line: alone, in a list, and out of range with the same message.
        let c = load("listen = 1936\nhttp = [8081, \"[::1]:8082\"]\n").unwrap();
        assert_eq!(c.listen, [ListenAddr::AnyInterface(1936)]);
        assert_eq!(
            c.http,
            [
                ListenAddr::AnyInterface(8081),
                ListenAddr::Addr("[::1]:8082".parse().unwrap())
            ]
        );
        for text in ["listen = 70000\n", "listen = [70000]\n", "listen = -1\n"] {
            let e = load(text).unwrap_err();
            assert!(
                e.contains("listen: ") && e.contains("must be a port"),
                "{e}"
            );
        }
        let e = load("listen = []\n").unwrap_err();
        assert!(e.contains("listen: an empty list"), "{e}");
        let e = load("max_connections = [1]\n").unwrap_err();
        assert!(
            e.contains("max_connections: takes one value, not a list"),
            "{e}"
        );
        let e = load("http = [\"8080\", \"nowhere\"]\n").unwrap_err();
        assert!(
            e.contains("http: 'nowhere' must be a port (1-65535)"),
            "{e}"
        );
    }

    #[test]
    fn app_sections_and_global_keys() {
        let c = load(
            "publish_secret = \"g\"\nhook_timeout = 1.5\napi_token = \"t\"\n\
             [app.open]\n\n[app.vip]\npublish_secret = \"v\"\nplay_secret = \"p\"\n\
             allow_publish = [\"127.0.0.1\", \"10.0.0.0/8\"]\n",
        )
        .unwrap();
        let p = &c.policy;
        assert_eq!(p.api_token.as_ref().unwrap().expose(), "t");
        let vip = p.app("vip");
        assert_eq!(vip.secret(Verb::Publish).unwrap().expose(), "v");
        assert_eq!(vip.secret(Verb::Play).unwrap().expose(), "p");
        assert_eq!(vip.hook_timeout(), Duration::from_millis(1500));
        assert!(vip
            .ip_rules(Verb::Publish)
            .check("10.1.2.3".parse().unwrap())
            .is_ok());
        assert_eq!(
            p.app("open").secret(Verb::Publish).unwrap().expose(),
            "g",
            "an empty section keeps the global keys"
        );
    }

    /// The line of the first error, as toml reports it.
    fn error_line(text: &str) -> String {
        let e = load(text).unwrap_err();
        e.lines().next().unwrap_or_default().to_owned()
    }

    #[test]
    fn errors_name_the_line_and_what_is_wrong() {
        let e = load("gop_cache = true\nbogus = 1\n").unwrap_err();
        assert!(e.contains("line 2"), "{e}");
        assert!(e.contains("unknown key `bogus`"), "{e}");
        let e = load("[app.live]\nmax_connections = 5\n").unwrap_err();
        assert!(e.contains("line 2") && e.contains("unknown field"), "{e}");
        let e = load("\n\nmax_connections = 0\n").unwrap_err();
        assert!(e.contains("line 3"), "{e}");
        assert!(
            e.contains("max_connections: must be a whole number from 1"),
            "{e}"
        );
        assert!(error_line("hook_timeout = 0\n").contains("line 1"));
        assert!(load("allow_play = [\"10.0.0.0/99\"]\n")
            .unwrap_err()
            .contains("not an address"));
        assert!(load("on_publish = \"https://x/y\"\n").is_ok());
        assert!(load("on_publish = \"ftp://x/y\"\n")
            .unwrap_err()
            .contains("not an http:// or https:// URL"));
        assert!(load("publish_secret = \"\"\n")
            .unwrap_err()
            .contains("empty"));
        assert!(load("gop_cache = \n").is_err());
        assert!(load("gop_cache = 1\n").is_err(), "on/off is a boolean");
    }

    #[test]
    fn recording_keys_global_and_per_app() {
        let c = load(
            "record = true\nrecord_dir = \"/srv/rec\"\nrecord_flush = 0.5\n\
             [app.cams]\nrecord_segment_seconds = 600\nrecord_segment_bytes = 1048576\n\
             record_path = \"{key}/{start}.flv\"\nrecord_append = true\n\
             record_buffer_bytes = 65536\non_record_done = \"http://127.0.0.1:8000/done\"\n\
             [app.talk]\nrecord = false\n",
        )
        .unwrap();
        c.policy.check().unwrap();
        let live = c.policy.app("live").record().unwrap();
        assert_eq!(live.dir, std::path::Path::new("/srv/rec"));
        assert_eq!(live.path.to_string(), "{app}/{key}/{start}.flv");
        assert_eq!(live.flush, Duration::from_millis(500));
        assert_eq!((live.segment_duration, live.segment_bytes), (None, None));
        assert!(!live.append);
        assert_eq!(live.reconnect_gap, Duration::from_secs(5));
        let cams = c.policy.app("cams").record().unwrap();
        assert_eq!(cams.segment_duration, Some(Duration::from_secs(600)));
        assert_eq!(cams.segment_bytes, Some(1 << 20));
        assert_eq!(cams.path.to_string(), "{key}/{start}.flv");
        assert_eq!(cams.buffer_bytes, 65536);
        assert!(cams.append);
        assert!(c.policy.app("cams").record_done_hook().is_some());
        assert!(c.policy.app("talk").record().is_none());

        let e = load("\nrecord_path = \"../{key}.flv\"\n").unwrap_err();
        assert!(e.contains("line 2") && e.contains("`..`"), "{e}");
        let e = load("record_segment_bytes = 10\n").unwrap_err();
        assert!(e.contains("from 65536"), "{e}");
        let e = load("[app.x]\nrecord = true\n")
            .unwrap()
            .policy
            .check()
            .unwrap_err();
        assert_eq!(
            e,
            "record = true in [app.x] needs record_dir (or --record DIR)"
        );
    }

    #[test]
    fn the_record_flag_turns_recording_on_everywhere() {
        let dir = std::env::temp_dir().join(format!("rtmpd-config-rec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.toml");
        std::fs::write(&path, "record = true\n[app.quiet]\nrecord = false\n").unwrap();
        let source = |flags: Vec<(&'static str, String)>| Source {
            file: Some(path.clone()),
            flags,
        };
        let e = source(vec![]).load().unwrap_err().to_string();
        assert!(e.contains("needs record_dir"), "{e}");
        let c = source(vec![("record", "/srv/rec".into())]).load().unwrap();
        for app in ["live", "quiet"] {
            let rec = c.policy.app(app).record().unwrap();
            assert_eq!(rec.dir, std::path::Path::new("/srv/rec"), "{app}");
        }
        let c = source(vec![("record", "off".into())]).load().unwrap();
        assert!(c.policy.app("live").record().is_none());
        // The flag has no key of its own in the file: `record` is the per-app
        // switch there.
        assert!(load("record = \"/srv/rec\"\n").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn flags_override_the_file_and_reload_reads_it_again() {
        let dir = std::env::temp_dir().join(format!("rtmpd-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.toml");
        std::fs::write(
            &path,
            "max_connections = 500\nchunk_size = 8192\nlisten = [\"1935\", \"1936\"]\n",
        )
        .unwrap();
        let source = Source {
            file: Some(path.clone()),
            flags: vec![
                ("max-connections", "7".into()),
                ("listen", "127.0.0.1:1".into()),
                ("listen", "127.0.0.1:2".into()),
            ],
        };
        let c = source.load().unwrap();
        assert_eq!((c.max_connections, c.chunk_size), (7, 8192));
        assert_eq!(
            c.listen,
            ["127.0.0.1:1", "127.0.0.1:2"].map(|a| ListenAddr::Addr(a.parse().unwrap())),
            "repeated flags add up, and replace the file's list"
        );
        std::fs::write(&path, "chunk_size = 100\n").unwrap();
        let e = source.load().unwrap_err().to_string();
        assert!(e.starts_with(&path.display().to_string()), "{e}");
        assert!(e.contains("line 1"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
