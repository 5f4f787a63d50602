//! The relay's values in the config file: upstream URLs (push destinations, the
//! origin an edge pulls from, the source of a static pull), push entries (a URL,
//! or a table with `url`, `keys`, `tls_verify`), the origin (a URL, or a table
//! with `url`, `tls_verify`) and static pulls (`from`, `as`, `tls_verify`).
//! Checked when the file is read, so a typo is a line-numbered error at start or
//! at `--check-config`, never a relay that fails at 3 a.m.
//!
//! An upstream URL is a template: `{app}` and `{key}` stand for the local
//! stream's app and key; a URL without a stream name means `{key}`, one without
//! an app `{app}/{key}` (`rtmp://origin:1935` pulls the same app and key).
//! `rtmps://` upstreams are dialled over TLS; `tls_verify = false` takes any
//! certificate (a self-signed upstream), the default verifies it.

use std::fmt;

use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use crate::client::RtmpUrl;
use crate::stream_key::StreamKey;

/// The placeholders a template may use.
const PLACEHOLDERS: [&str; 2] = ["{app}", "{key}"];

/// An `rtmp://` or `rtmps://` URL of another server, possibly a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamUrl {
    text: String,
    tls: bool,
    /// `host[:port]`, as written.
    authority: String,
    /// The application, if the URL names one (may hold placeholders).
    app: Option<String>,
    /// The stream name with its query, if the URL names one.
    name: Option<String>,
}

impl UpstreamUrl {
    pub fn parse(text: &str) -> Result<UpstreamUrl, String> {
        let scheme_end = text.find("://").unwrap_or(0);
        let scheme = text[..scheme_end].to_ascii_lowercase();
        let tls = match scheme.as_str() {
            "rtmp" => false,
            "rtmps" => true,
            _ => return Err(format!("{text:?} is not an rtmp:// or rtmps:// URL")),
        };
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("{text:?} contains spaces or control characters"));
        }
        let rest = &text[scheme_end + 3..];
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        // The host and port by the client's own rules (IPv6 brackets, port range).
        RtmpUrl::parse(&format!("rtmp://{authority}/app")).map_err(|e| format!("{text:?}: {e}"))?;
        let (app, name) = match path.split_once('/') {
            Some((app, name)) => (app, name),
            None => (path, ""),
        };
        if app.contains('?') {
            return Err(format!(
                "{text:?}: a query belongs after the stream name (rtmp://host/app/key?...)"
            ));
        }
        let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        let url = UpstreamUrl {
            text: text.to_owned(),
            tls,
            authority: authority.to_owned(),
            app: nonempty(app),
            name: nonempty(name),
        };
        for part in [&url.app, &url.name].into_iter().flatten() {
            check_placeholders(part).map_err(|e| format!("{text:?}: {e}"))?;
        }
        Ok(url)
    }

    /// The URL as written in the config.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// `rtmps://`: needs TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Whether the URL names the app and the stream itself, without placeholders:
    /// a fixed source (a static pull's `from`).
    pub fn is_fixed(&self) -> bool {
        self.name.is_some()
            && [&self.app, &self.name]
                .into_iter()
                .flatten()
                .all(|p| !p.contains('{'))
    }

    /// The URL for the local stream `key`: placeholders replaced, a missing app or
    /// name filled in. Fails if the result is not a URL the client can dial (a
    /// key that makes the name empty, say).
    pub fn resolve(&self, key: &StreamKey) -> Result<RtmpUrl, String> {
        let fill = |part: &str| {
            part.replace("{app}", &escape(&key.app))
                .replace("{key}", &escape(&key.name))
        };
        let app = fill(self.app.as_deref().unwrap_or("{app}"));
        let name = fill(self.name.as_deref().unwrap_or("{key}"));
        let scheme = if self.tls { "rtmps" } else { "rtmp" };
        RtmpUrl::parse(&format!("{scheme}://{}/{app}/{name}", self.authority))
            .map_err(|e| e.to_string())
    }

    /// The URL for logs and the API: the stream name's literal text (a platform's
    /// stream key is its secret) and query values are hidden; host, port, app and
    /// placeholders stay, so the destination can be told apart from the others.
    pub fn redacted(&self) -> String {
        let scheme = if self.tls { "rtmps" } else { "rtmp" };
        let mut out = format!("{scheme}://{}", self.authority);
        if let Some(app) = &self.app {
            out.push('/');
            out.push_str(app);
        }
        if let Some(name) = &self.name {
            out.push('/');
            out.push_str(&redact_name(name));
        }
        out
    }
}

impl fmt::Display for UpstreamUrl {
    /// Redacted: this is what logs and the API print.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// A decoded app or stream name as a URL carries it: the two characters that
/// would change its meaning there (`%` starts an escape for servers that decode
/// names, as rtmpd does; `?` starts the query) are escaped, the rest is left as
/// it is, as encoders send it.
fn escape(name: &str) -> String {
    name.replace('%', "%25").replace('?', "%3F")
}

/// A stream name with its literal parts cut to their first characters and query
/// values hidden: `abcd-efgh-ijkl?token=x` is `abcd…?token=…`, `{key}` stays.
pub fn redact_name(name: &str) -> String {
    /// Literal characters kept: enough to recognise a key, far too few to use it.
    const KEPT: usize = 4;
    let (path, query) = match name.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (name, None),
    };
    let mut out = String::new();
    let mut rest = path;
    let mut literal = 0;
    let mut cut = false;
    while !rest.is_empty() {
        if let Some(p) = PLACEHOLDERS.iter().find(|p| rest.starts_with(**p)) {
            out.push_str(p);
            rest = &rest[p.len()..];
            cut = false;
            continue;
        }
        let c = rest.chars().next().unwrap_or_default();
        rest = &rest[c.len_utf8()..];
        literal += 1;
        if literal <= KEPT {
            out.push(c);
        } else if !cut {
            out.push('…');
            cut = true;
        }
    }
    if let Some(query) = query {
        out.push('?');
        let args: Vec<String> = query
            .split('&')
            .map(|arg| match arg.split_once('=') {
                Some((k, _)) => format!("{k}=…"),
                None => "…".to_owned(),
            })
            .collect();
        out.push_str(&args.join("&"));
    }
    out
}

fn check_placeholders(part: &str) -> Result<(), String> {
    let mut rest = part;
    while let Some(open) = rest.find('{') {
        let tail = &rest[open..];
        match PLACEHOLDERS.iter().find(|p| tail.starts_with(**p)) {
            Some(p) => rest = &tail[p.len()..],
            None => {
                let shown: String = tail.chars().take_while(|&c| c != '}').collect();
                return Err(format!(
                    "unknown placeholder {shown}}} (only {{app}} and {{key}})"
                ));
            }
        }
    }
    if rest.contains('}') {
        return Err("a '}' without its '{'".into());
    }
    Ok(())
}

impl<'de> Deserialize<'de> for UpstreamUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<UpstreamUrl, D::Error> {
        let text = String::deserialize(d)?;
        UpstreamUrl::parse(&text).map_err(de::Error::custom)
    }
}

/// One push destination: `push = ["rtmp://...", { url = "...", keys = [...] }]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushEntry {
    pub url: UpstreamUrl,
    /// Only these stream keys are pushed; `None`: every key of the app.
    pub keys: Option<Vec<String>>,
    /// `false`: an `rtmps://` destination's certificate is not checked (a
    /// self-signed one); unset or `true`: it is.
    pub tls_verify: Option<bool>,
}

impl PushEntry {
    pub fn new(url: UpstreamUrl) -> PushEntry {
        PushEntry {
            url,
            keys: None,
            tls_verify: None,
        }
    }

    /// Whether the local stream key `name` is pushed here.
    pub fn applies_to(&self, name: &str) -> bool {
        self.keys
            .as_ref()
            .is_none_or(|keys| keys.iter().any(|k| k == name))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PushTable {
    url: UpstreamUrl,
    keys: Option<Vec<String>>,
    tls_verify: Option<bool>,
}

impl<'de> Deserialize<'de> for PushEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PushEntry, D::Error> {
        struct Entry;
        impl<'de> Visitor<'de> for Entry {
            type Value = PushEntry;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a URL, or a table { url = \"...\", keys = [...], tls_verify = ... }")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<PushEntry, E> {
                UpstreamUrl::parse(v).map(PushEntry::new).map_err(E::custom)
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<PushEntry, A::Error> {
                let t = PushTable::deserialize(MapAccessDeserializer::new(map))?;
                Ok(PushEntry {
                    url: t.url,
                    keys: t.keys,
                    tls_verify: t.tls_verify,
                })
            }
        }
        d.deserialize_any(Entry)
    }
}

/// An edge's origin: `origin = "rtmps://origin:443"`, or a table
/// `origin = { url = "rtmps://origin:443", tls_verify = false }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub url: UpstreamUrl,
    /// `false`: an `rtmps://` origin's certificate is not checked.
    pub tls_verify: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OriginTable {
    url: UpstreamUrl,
    tls_verify: Option<bool>,
}

impl<'de> Deserialize<'de> for Origin {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Origin, D::Error> {
        struct Entry;
        impl<'de> Visitor<'de> for Entry {
            type Value = Origin;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a URL, or a table { url = \"...\", tls_verify = ... }")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Origin, E> {
                let url = UpstreamUrl::parse(v).map_err(E::custom)?;
                Ok(Origin {
                    url,
                    tls_verify: None,
                })
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Origin, A::Error> {
                let t = OriginTable::deserialize(MapAccessDeserializer::new(map))?;
                Ok(Origin {
                    url: t.url,
                    tls_verify: t.tls_verify,
                })
            }
        }
        d.deserialize_any(Entry)
    }
}

/// A static pull: `pull = [{ from = "rtmp://cam/live/1", as = "live/cam1" }]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullEntry {
    /// The stream to pull: a full URL naming app and key.
    #[serde(deserialize_with = "fixed_url")]
    pub from: UpstreamUrl,
    /// The local name: `app/key` at the top of the file, `key` (or `app/key`) in
    /// an `[app.NAME]` section; unset: the source's app and key.
    #[serde(rename = "as")]
    pub as_name: Option<String>,
    /// `false`: an `rtmps://` source's certificate is not checked.
    pub tls_verify: Option<bool>,
}

fn fixed_url<'de, D: Deserializer<'de>>(d: D) -> Result<UpstreamUrl, D::Error> {
    let url = UpstreamUrl::deserialize(d)?;
    if !url.is_fixed() {
        return Err(de::Error::custom(format!(
            "{:?}: a pull's source names its app and stream (rtmp://host/app/key), \
             without placeholders",
            url.as_str()
        )));
    }
    Ok(url)
}

impl PullEntry {
    /// The local stream this pull publishes: `as`, read in the section of
    /// `section_app` (`None`: the top of the file), or the source's app and key.
    pub fn local_key(&self, section_app: Option<&str>) -> Result<StreamKey, String> {
        let source = self.from.resolve(&StreamKey {
            app: String::new(),
            name: String::new(),
        });
        let (app, name) = match (&self.as_name, section_app) {
            (Some(as_name), section) => match as_name.split_once('/') {
                Some((app, name)) => (app.to_owned(), name.to_owned()),
                None => match section {
                    Some(app) => (app.to_owned(), as_name.clone()),
                    None => {
                        return Err(format!(
                            "pull as = {as_name:?}: at the top of the file `as` is app/key"
                        ))
                    }
                },
            },
            (None, section) => {
                // As the source's server names it: decoded, like any request.
                let url = source?;
                let (name, _) = crate::stream_key::split_query(&url.name);
                let named =
                    StreamKey::from_request(&url.app, name, crate::stream_key::MAX_NAME_LEN)
                        .map_err(|e| format!("pull from {}: {e}", self.from))?;
                (section.map_or(named.app, str::to_owned), named.name)
            }
        };
        if let Some(section) = section_app {
            if app != section {
                return Err(format!(
                    "pull as = {:?} in [app.{section}] names another app",
                    self.as_name.as_deref().unwrap_or_default()
                ));
            }
        }
        StreamKey::new(&app, &name).map_err(|e| format!("pull as {app}/{name}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(app: &str, name: &str) -> StreamKey {
        StreamKey::new(app, name).unwrap()
    }

    #[test]
    fn templates_resolve_for_the_local_stream() {
        let u = UpstreamUrl::parse("rtmp://backup:1936/live/{key}").unwrap();
        assert_eq!(
            u.resolve(&key("app1", "cam")).unwrap().to_string(),
            "rtmp://backup:1936/live/cam"
        );
        let u = UpstreamUrl::parse("rtmp://b/{app}_x/pre-{key}?t=1").unwrap();
        let r = u.resolve(&key("a", "k")).unwrap();
        assert_eq!((r.app.as_str(), r.name.as_str()), ("a_x", "pre-k?t=1"));
        // No name: the same key; no app: the same app and key.
        let r = UpstreamUrl::parse("rtmp://b/other")
            .unwrap()
            .resolve(&key("a", "k"))
            .unwrap();
        assert_eq!((r.app.as_str(), r.name.as_str()), ("other", "k"));
        let r = UpstreamUrl::parse("rtmp://origin:1935")
            .unwrap()
            .resolve(&key("a", "k"))
            .unwrap();
        // A decoded key goes out escaped where it would change the URL's meaning.
        let odd = UpstreamUrl::parse("rtmp://b/live/{key}")
            .unwrap()
            .resolve(&key("live", "50% off? yes"))
            .unwrap();
        assert_eq!(odd.name, "50%25 off%3F yes");
        assert_eq!((r.host.as_str(), r.port), ("origin", 1935));
        assert_eq!((r.app.as_str(), r.name.as_str()), ("a", "k"));
        let tls = UpstreamUrl::parse("rtmps://live-api-s.facebook.com/rtmp/{key}").unwrap();
        assert!(tls.is_tls());
        let r = tls.resolve(&key("a", "k")).unwrap();
        assert!(r.tls);
        assert_eq!(r.to_string(), "rtmps://live-api-s.facebook.com:443/rtmp/k");
    }

    #[test]
    fn bad_urls_are_refused_with_a_reason() {
        for (text, why) in [
            ("http://x/a", "not an rtmp://"),
            ("rtmp://", "names no host"),
            ("rtmp://h:99999/a", "port"),
            ("rtmp://h/a/{name}", "unknown placeholder {name}"),
            ("rtmp://h/a/x}", "without its"),
            ("rtmp://h/a?x=1", "query belongs after"),
            ("rtmp://h/a/b c", "spaces"),
        ] {
            let e = UpstreamUrl::parse(text).unwrap_err();
            assert!(e.contains(why), "{text}: {e}");
        }
    }

    #[test]
    fn redaction_hides_the_key_but_keeps_the_destination() {
        let r = |t: &str| UpstreamUrl::parse(t).unwrap().redacted();
        assert_eq!(
            r("rtmp://a.rtmp.youtube.com/live2/abcd-efgh-ijkl-mnop"),
            "rtmp://a.rtmp.youtube.com/live2/abcd…"
        );
        assert_eq!(r("rtmp://b:1936/live/{key}"), "rtmp://b:1936/live/{key}");
        assert_eq!(
            r("rtmp://b/live/{key}?secret=hunter2&x"),
            "rtmp://b/live/{key}?secret=…&…"
        );
        assert_eq!(r("rtmp://b/live/ab{key}"), "rtmp://b/live/ab{key}");
        assert_eq!(r("rtmp://origin:1935"), "rtmp://origin:1935");
        let shown = UpstreamUrl::parse("rtmp://h/app/supersecretkey").unwrap();
        assert!(!shown.to_string().contains("secretkey"));
    }

    #[test]
    fn push_entries_are_urls_or_tables() {
        #[derive(Deserialize)]
        struct Doc {
            push: Vec<PushEntry>,
        }
        let doc: Doc = toml::from_str(
            "push = [\"rtmp://a/live/x\", { url = \"rtmp://b/live/{key}\", keys = [\"main\"], \
             tls_verify = false }]",
        )
        .unwrap();
        assert_eq!(
            doc.push[0],
            PushEntry::new(UpstreamUrl::parse("rtmp://a/live/x").unwrap())
        );
        assert!(doc.push[0].applies_to("anything"));
        assert!(doc.push[1].applies_to("main") && !doc.push[1].applies_to("other"));
        assert_eq!(doc.push[1].tls_verify, Some(false));
        let e = toml::from_str::<Doc>("push = [{ url = \"rtmp://a/b\", key = [] }]")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("unknown field `key`"), "{e}");
        assert!(toml::from_str::<Doc>("push = [\"ftp://x\"]").is_err());
    }

    #[test]
    fn an_origin_is_a_url_or_a_table() {
        #[derive(Deserialize)]
        struct Doc {
            origin: Origin,
        }
        let doc: Doc = toml::from_str("origin = \"rtmps://o:443\"").unwrap();
        assert!(doc.origin.url.is_tls() && doc.origin.tls_verify.is_none());
        let doc: Doc =
            toml::from_str("origin = { url = \"rtmps://o:443\", tls_verify = false }").unwrap();
        assert_eq!(doc.origin.tls_verify, Some(false));
        let e = toml::from_str::<Doc>("origin = { url = \"rtmp://o\", verify = false }")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("unknown field `verify`"), "{e}");
    }

    #[test]
    fn pulls_name_their_local_stream() {
        #[derive(Deserialize)]
        struct Doc {
            pull: Vec<PullEntry>,
        }
        let doc: Doc = toml::from_str(
            "pull = [{ from = \"rtmp://cam/live/1?t=x\", as = \"live/cam1\" }, \
             { from = \"rtmp://cam/live/2?t=x\" }, { from = \"rtmp://cam/live/3\", as = \"c3\" }]",
        )
        .unwrap();
        assert_eq!(doc.pull[0].local_key(None).unwrap(), key("live", "cam1"));
        assert_eq!(doc.pull[1].local_key(None).unwrap(), key("live", "2"));
        assert_eq!(
            doc.pull[1].local_key(Some("cams")).unwrap(),
            key("cams", "2")
        );
        assert_eq!(
            doc.pull[2].local_key(Some("cams")).unwrap(),
            key("cams", "c3")
        );
        assert!(doc.pull[2].local_key(None).unwrap_err().contains("app/key"));
        assert!(doc.pull[0]
            .local_key(Some("cams"))
            .unwrap_err()
            .contains("another app"));
        let e = toml::from_str::<Doc>("pull = [{ from = \"rtmp://cam/live\" }]")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("names its app and stream"), "{e}");
    }
}
