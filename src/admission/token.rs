//! Secrets and signed tokens. A client shows `secret=<the secret>` in the query
//! of its stream name, or a token:
//! `expires=<unix seconds>&sig=<lowercase hex of HMAC-SHA256(secret, "<verb>:<app>/<key>:<expires>")>`,
//! so a token names what it allows (publish or play, one stream) and until when.
//! Comparisons are constant-time (hmac's `verify_slice`). [`sign_url`] is
//! `rtmpd sign`.

use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::policy::Secret;
use crate::config::Verb;
use crate::stream_key::{percent_decode, StreamKey};

type HmacSha256 = Hmac<Sha256>;

/// Seconds since the Unix epoch now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `a=1&b=x%20y` as (name, value) pairs, `%XX` decoded (`+` stays a plus, as in a
/// stream name); pairs that do not decode are kept as sent.
pub fn query_args(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| percent_decode(s).unwrap_or_else(|_| s.to_owned());
            (decode(name), decode(value))
        })
        .collect()
}

fn arg<'a>(args: &'a [(String, String)], name: &str) -> Option<&'a str> {
    args.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn mac(secret: &Secret) -> HmacSha256 {
    HmacSha256::new_from_slice(secret.expose().as_bytes()).expect("HMAC takes any key length")
}

/// What a token signs.
fn message(verb: Verb, key: &StreamKey, expires: u64) -> String {
    format!("{}:{}/{}:{expires}", verb.as_str(), key.app, key.name)
}

/// The `sig` for `verb` of `key` until `expires`: lowercase hex.
pub fn signature(secret: &Secret, verb: Verb, key: &StreamKey, expires: u64) -> String {
    let mut mac = mac(secret);
    mac.update(message(verb, key, expires).as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `given` is the secret, in constant time: both are run through the
/// same MAC and the MACs compared with `verify_slice`.
pub fn same_secret(secret: &Secret, given: &str) -> bool {
    let mut expected = mac(secret);
    expected.update(b"rtmpd secret comparison");
    let expected = expected.finalize().into_bytes();
    match Secret::new(given) {
        Ok(given) => {
            let mut m = mac(&given);
            m.update(b"rtmpd secret comparison");
            m.verify_slice(&expected).is_ok()
        }
        Err(_) => false,
    }
}

/// Admits the query `args` for `verb` of `key` if they carry the secret or a
/// valid token; `Err` says what is wrong, for the client and the log.
pub fn check(
    secret: &Secret,
    verb: Verb,
    key: &StreamKey,
    args: &[(String, String)],
    now: u64,
) -> Result<(), &'static str> {
    if let Some(given) = arg(args, "secret") {
        return if same_secret(secret, given) {
            Ok(())
        } else {
            Err("wrong secret")
        };
    }
    let (Some(expires), Some(sig)) = (arg(args, "expires"), arg(args, "sig")) else {
        return Err("no secret or signed token in the stream name's query");
    };
    // Digits only: `parse` would also take a sign.
    let expires: u64 = Some(expires)
        .filter(|e| e.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|e| e.parse().ok())
        .ok_or("expires is not a number")?;
    let sig = decode_hex(sig).ok_or("sig is not hex")?;
    let mut mac = mac(secret);
    mac.update(message(verb, key, expires).as_bytes());
    mac.verify_slice(&sig)
        .map_err(|_| "the token's signature does not match")?;
    if expires < now {
        return Err("the token has expired");
    }
    Ok(())
}

/// Hex digits (we write lowercase; uppercase is the same bytes) to bytes; a sign
/// or anything else is not hex, whatever `from_str_radix` would take.
fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

/// What a URL to sign names: the stream, and whether it can only play (HTTP).
#[derive(Debug, PartialEq, Eq)]
pub struct Target {
    pub key: StreamKey,
    pub play_only: bool,
}

/// The stream `url` names: `rtmp[s]://HOST/APP/KEY`, or
/// `http[s]://HOST/APP/KEY.flv`, `ws[s]://…` and the HLS playlist
/// `http[s]://HOST/APP/KEY/index.m3u8` (which only play). The key is named as
/// the server names it ([`StreamKey::from_request`]: the query is not part of
/// it, %-escapes are decoded, the name rules apply).
pub fn target(url: &str) -> Result<Target, String> {
    let bad = |why: &str| format!("{url}: {why}");
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| {
            bad("not a URL (rtmp://HOST/APP/KEY, http://HOST/APP/KEY.flv or http://HOST/APP/KEY/index.m3u8)")
        })?;
    let play_only = match scheme {
        "rtmp" | "rtmps" => false,
        "http" | "https" | "ws" | "wss" => true,
        _ => {
            return Err(bad(
                "the scheme must be rtmp, rtmps, http, https, ws or wss",
            ))
        }
    };
    let path = rest.split_once('/').map_or("", |(_, p)| p);
    let (path, _) = crate::stream_key::split_query(path);
    let (app, name) = path
        .split_once('/')
        .ok_or_else(|| bad("the path must be /APP/KEY"))?;
    let name = if play_only {
        name.strip_suffix(".flv")
            .or_else(|| name.strip_suffix("/index.m3u8"))
            .ok_or_else(|| bad("an HTTP or WebSocket URL ends in .flv (or /index.m3u8 for HLS)"))?
    } else {
        name
    };
    // The length limit is the server's (--max-name-length), not ours to guess.
    let key = StreamKey::from_request(app, name, usize::MAX).map_err(|e| bad(&e.to_string()))?;
    Ok(Target { key, play_only })
}

/// `url` with `expires` and `sig` appended (`?` or `&`). HTTP and WebSocket URLs
/// are signed for play whatever `verb` says: they cannot publish.
pub fn sign_url(url: &str, secret: &Secret, verb: Verb, expires: u64) -> Result<String, String> {
    let target = target(url)?;
    let verb = if target.play_only { Verb::Play } else { verb };
    let sig = signature(secret, verb, &target.key, expires);
    let joiner = if url.contains('?') { '&' } else { '?' };
    Ok(format!("{url}{joiner}expires={expires}&sig={sig}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> Secret {
        Secret::new("s3cret").unwrap()
    }

    fn key(name: &str) -> StreamKey {
        StreamKey::new("live", name).unwrap()
    }

    #[test]
    fn signature_matches_an_independent_hmac() {
        // printf 'publish:live/cam:1700000000' | openssl dgst -sha256 -hmac s3cret
        assert_eq!(
            signature(&secret(), Verb::Publish, &key("cam"), 1_700_000_000),
            "b4aef7400071cfadc283d32b93042d10a9b62735e56d712e60338945f136d219"
        );
    }

    #[test]
    fn secrets_and_tokens() {
        let s = secret();
        let now = 1_000_000;
        let args = |q: &str| query_args(q);
        let ok = |q: &str, verb, name| check(&s, verb, &key(name), &args(q), now);
        assert!(ok("secret=s3cret", Verb::Publish, "cam").is_ok());
        assert_eq!(ok("secret=nope", Verb::Publish, "cam"), Err("wrong secret"));
        assert!(ok("", Verb::Publish, "cam").is_err());
        let sig = signature(&s, Verb::Play, &key("cam"), now + 10);
        let token = format!("expires={}&sig={sig}", now + 10);
        assert!(ok(&token, Verb::Play, "cam").is_ok());
        assert!(
            ok(&token, Verb::Publish, "cam").is_err(),
            "a play token never publishes"
        );
        assert!(ok(&token, Verb::Play, "other").is_err(), "another key");
        let tampered = format!("expires={}&sig={sig}", now + 1000);
        assert!(ok(&tampered, Verb::Play, "cam").is_err());
        let old = signature(&s, Verb::Play, &key("cam"), now - 1);
        assert_eq!(
            ok(&format!("expires={}&sig={old}", now - 1), Verb::Play, "cam"),
            Err("the token has expired")
        );
        assert!(ok("expires=x&sig=00", Verb::Play, "cam").is_err());
        assert!(ok(&format!("expires={}&sig=zz", now + 10), Verb::Play, "cam").is_err());
        // One spelling of a number and of the signature's bytes: no signs.
        assert_eq!(
            ok(
                &format!("expires=+{}&sig={sig}", now + 10),
                Verb::Play,
                "cam"
            ),
            Err("expires is not a number")
        );
        assert_eq!(decode_hex("+f0f"), None);
        assert_eq!(decode_hex("0F0f"), Some(vec![15, 15]));
        let upper = format!("expires={}&sig={}", now + 10, sig.to_uppercase());
        assert!(ok(&upper, Verb::Play, "cam").is_ok());
    }

    #[test]
    fn query_args_are_decoded() {
        assert_eq!(
            query_args("secret=a%20b&x&y=1+2&&"),
            vec![
                ("secret".into(), "a b".into()),
                ("x".into(), String::new()),
                ("y".into(), "1+2".into())
            ]
        );
    }

    #[test]
    fn urls_are_signed_for_their_stream() {
        let s = secret();
        let url = sign_url("rtmp://h:1935/live/cam", &s, Verb::Publish, 99).unwrap();
        let sig = signature(&s, Verb::Publish, &key("cam"), 99);
        assert_eq!(url, format!("rtmp://h:1935/live/cam?expires=99&sig={sig}"));
        let url = sign_url("http://h:8080/live/my%20cam.flv?x=1", &s, Verb::Publish, 5).unwrap();
        let sig = signature(&s, Verb::Play, &key("my cam"), 5);
        assert_eq!(
            url,
            format!("http://h:8080/live/my%20cam.flv?x=1&expires=5&sig={sig}")
        );
        assert!(target("ws://h/live/cam.flv").unwrap().play_only);
        // The HLS playlist: signed for play of the stream it belongs to.
        let hls = target("https://h/live/cam/index.m3u8").unwrap();
        assert_eq!((hls.key, hls.play_only), (key("cam"), true));
        for bad in [
            "h/live/cam",
            "ftp://h/a/b",
            "rtmp://h/live",
            "http://h/live/cam",
            "rtmp://h/a/b/c",
        ] {
            assert!(target(bad).is_err(), "{bad}");
        }
    }
}
