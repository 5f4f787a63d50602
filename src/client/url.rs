//! `rtmp://host[:port]/app/name` and `rtmps://` URLs, split the way RTMP needs
//! them: TLS or not, the host and port to dial, the application for `connect`
//! (and its tcUrl), and the stream name for `publish`/`play`, query string
//! included because servers read tokens from it.

use std::fmt;
use std::str::FromStr;

/// The port RTMP servers listen on when a URL names none.
pub const DEFAULT_PORT: u16 = 1935;
/// The port of an `rtmps://` URL that names none, as ffmpeg, OBS and librtmp
/// take it.
pub const DEFAULT_TLS_PORT: u16 = 443;

/// A parsed `rtmp://` or `rtmps://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtmpUrl {
    /// `rtmps://`: RTMP over TLS.
    pub tls: bool,
    /// Host name or IP address; IPv6 addresses without brackets.
    pub host: String,
    pub port: u16,
    /// First path segment: the application passed to `connect`.
    pub app: String,
    /// The rest of the path (may be empty, may contain `?query`).
    pub name: String,
}

/// Why a string is not an `rtmp://host[:port]/app[/name]` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlError {
    /// Does not start with `rtmp://` or `rtmps://` (rtmpe and rtmpt are not
    /// spoken).
    Scheme(String),
    MissingHost,
    /// The part after the host's colon is not a port number from 1 to 65535.
    BadPort(String),
    /// An IPv6 literal without its closing bracket, or user info (`user@host`).
    BadHost(String),
    /// No application in the path: `rtmp://host` or `rtmp://host/`.
    MissingApp,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlError::Scheme(url) => write!(f, "{url:?} is not an rtmp:// or rtmps:// URL"),
            UrlError::MissingHost => f.write_str("the URL names no host"),
            UrlError::BadPort(port) => write!(f, "{port:?} is not a port number (1-65535)"),
            UrlError::BadHost(host) => write!(f, "{host:?} is not a host name or address"),
            UrlError::MissingApp => f.write_str("the URL names no application (rtmp://host/app)"),
        }
    }
}

impl std::error::Error for UrlError {}

impl RtmpUrl {
    /// Parses `rtmp[s]://host[:port]/app[/name]`. The scheme is matched
    /// without regard to case; everything after the application's slash is the
    /// name.
    pub fn parse(url: &str) -> Result<RtmpUrl, UrlError> {
        let scheme = |s: &str| {
            url.get(..s.len())
                .filter(|head| head.eq_ignore_ascii_case(s))
                .map(|_| &url[s.len()..])
        };
        let (tls, rest) = match (scheme("rtmp://"), scheme("rtmps://")) {
            (Some(rest), _) => (false, rest),
            (_, Some(rest)) => (true, rest),
            _ => return Err(UrlError::Scheme(url.to_owned())),
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let default_port = if tls { DEFAULT_TLS_PORT } else { DEFAULT_PORT };
        let (host, port) = split_authority(authority, default_port)?;
        let (app, name) = path.split_once('/').unwrap_or((path, ""));
        if app.is_empty() {
            return Err(UrlError::MissingApp);
        }
        Ok(RtmpUrl {
            tls,
            host: host.to_owned(),
            port,
            app: app.to_owned(),
            name: name.to_owned(),
        })
    }

    /// `rtmp[s]://host:port/app`, what `connect` sends as tcUrl.
    pub fn tc_url(&self) -> String {
        let scheme = if self.tls { "rtmps" } else { "rtmp" };
        if self.host.contains(':') {
            format!("{scheme}://[{}]:{}/{}", self.host, self.port, self.app)
        } else {
            format!("{scheme}://{}:{}/{}", self.host, self.port, self.app)
        }
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`; `default_port` where none is given.
fn split_authority(authority: &str, default_port: u16) -> Result<(&str, u16), UrlError> {
    if authority.is_empty() {
        return Err(UrlError::MissingHost);
    }
    if authority.contains('@') {
        return Err(UrlError::BadHost(authority.to_owned()));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| UrlError::BadHost(authority.to_owned()))?;
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(UrlError::BadHost(authority.to_owned())),
            },
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(UrlError::MissingHost);
    }
    let port = match port {
        None => default_port,
        Some(text) => text
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| UrlError::BadPort(text.to_owned()))?,
    };
    Ok((host, port))
}

impl FromStr for RtmpUrl {
    type Err = UrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RtmpUrl::parse(s)
    }
}

/// The full URL back, with the port always spelled out.
impl fmt::Display for RtmpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.tc_url())?;
        if !self.name.is_empty() {
            write!(f, "/{}", self.name)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(host: &str, port: u16, app: &str, name: &str) -> RtmpUrl {
        RtmpUrl {
            tls: false,
            host: host.into(),
            port,
            app: app.into(),
            name: name.into(),
        }
    }

    #[test]
    fn parses_the_usual_shapes() {
        assert_eq!(
            RtmpUrl::parse("rtmp://example.com/live/key").unwrap(),
            url("example.com", 1935, "live", "key")
        );
        assert_eq!(
            RtmpUrl::parse("RTMP://127.0.0.1:19350/live/key?token=a/b").unwrap(),
            url("127.0.0.1", 19350, "live", "key?token=a/b"),
            "the name keeps its query, slashes included"
        );
        assert_eq!(
            RtmpUrl::parse("rtmp://host/app").unwrap(),
            url("host", 1935, "app", "")
        );
        assert_eq!(
            RtmpUrl::parse("rtmp://host/app/").unwrap(),
            url("host", 1935, "app", "")
        );
        assert_eq!(
            RtmpUrl::parse("rtmp://[::1]:1940/live/x").unwrap(),
            url("::1", 1940, "live", "x")
        );
        assert_eq!(
            RtmpUrl::parse("rtmp://[fe80::1]/live/x").unwrap(),
            url("fe80::1", 1935, "live", "x")
        );
        assert_eq!(
            "rtmp://h:1/a/b".parse::<RtmpUrl>().unwrap(),
            url("h", 1, "a", "b")
        );
    }

    #[test]
    fn refuses_what_it_cannot_dial() {
        for (text, err) in [
            (
                "http://host/live/x",
                UrlError::Scheme("http://host/live/x".into()),
            ),
            (
                "rtmpe://host/live/x",
                UrlError::Scheme("rtmpe://host/live/x".into()),
            ),
            ("rtmp:/", UrlError::Scheme("rtmp:/".into())),
            ("", UrlError::Scheme("".into())),
            ("rtmp://", UrlError::MissingHost),
            ("rtmp:///live/x", UrlError::MissingHost),
            ("rtmp://:1935/live/x", UrlError::MissingHost),
            ("rtmp://host:0/live", UrlError::BadPort("0".into())),
            ("rtmp://host:65536/live", UrlError::BadPort("65536".into())),
            ("rtmp://host:/live", UrlError::BadPort("".into())),
            ("rtmp://host:x/live", UrlError::BadPort("x".into())),
            ("rtmp://::1/live", UrlError::MissingHost),
            ("rtmp://[::1/live", UrlError::BadHost("[::1".into())),
            ("rtmp://[::1]x/live", UrlError::BadHost("[::1]x".into())),
            ("rtmp://[]/live", UrlError::MissingHost),
            ("rtmp://u@host/live", UrlError::BadHost("u@host".into())),
            ("rtmp://host", UrlError::MissingApp),
            ("rtmp://host/", UrlError::MissingApp),
            ("rtmp://host//x", UrlError::MissingApp),
        ] {
            assert_eq!(RtmpUrl::parse(text), Err(err), "{text}");
        }
        // Multi-byte input must not trip the scheme check.
        assert!(RtmpUrl::parse("rtmp:/é/x").is_err());
        assert_eq!(
            UrlError::BadPort("x".into()).to_string(),
            "\"x\" is not a port number (1-65535)"
        );
    }

    #[test]
    fn rtmps_urls_default_to_port_443_and_say_so_in_tc_url() {
        let u = RtmpUrl::parse("RTMPS://live-api-s.facebook.com/rtmp/K?s=1").unwrap();
        assert_eq!(
            u,
            RtmpUrl {
                tls: true,
                ..url("live-api-s.facebook.com", 443, "rtmp", "K?s=1")
            }
        );
        assert_eq!(u.tc_url(), "rtmps://live-api-s.facebook.com:443/rtmp");
        assert_eq!(RtmpUrl::parse(&u.to_string()).unwrap(), u);
        let explicit = RtmpUrl::parse("rtmps://[::1]:1936/live/x").unwrap();
        assert_eq!((explicit.tls, explicit.port), (true, 1936));
        assert_eq!(
            UrlError::Scheme("x".into()).to_string(),
            "\"x\" is not an rtmp:// or rtmps:// URL"
        );
    }

    #[test]
    fn tc_url_and_display() {
        let u = RtmpUrl::parse("rtmp://host/live/key?t=1").unwrap();
        assert_eq!(u.tc_url(), "rtmp://host:1935/live");
        assert_eq!(u.to_string(), "rtmp://host:1935/live/key?t=1");
        let v6 = RtmpUrl::parse("rtmp://[::1]:2000/app").unwrap();
        assert_eq!(v6.tc_url(), "rtmp://[::1]:2000/app");
        assert_eq!(v6.to_string(), "rtmp://[::1]:2000/app");
        assert_eq!(RtmpUrl::parse(&u.to_string()).unwrap(), u);
    }
}
