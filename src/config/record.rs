//! The recording keys' values (`record_dir`, `record_path`, the byte sizes) and
//! what one app's keys resolve to: [`RecordSettings`]. A `record_path` is a
//! template checked once, when the file is read: relative, no `..`, only the
//! placeholders `{app}`, `{key}` and `{start}`, so a file name built from it and a
//! validated stream key can never leave `record_dir`. The same template reads a
//! path back into its app and key for `/api/recordings`.

use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::Deserialize;

/// `{app}/{key}/{start}.flv`: one folder per stream, a file per recording named by
/// its start time.
pub const DEFAULT_RECORD_PATH: &str = "{app}/{key}/{start}.flv";
/// How often a recording's buffered tags go to the file and the disk.
pub const DEFAULT_RECORD_FLUSH: Duration = Duration::from_secs(1);
/// How soon a publisher must come back for `record_append` to continue its file.
pub const DEFAULT_RECONNECT_GAP: Duration = Duration::from_secs(5);
/// How much of a stream may wait in memory for a slow disk before the recording
/// stops: about 50 s of a 2.5 Mbit/s stream.
pub const DEFAULT_RECORD_BUFFER: u64 = 16 << 20;

/// A place in a `record_path` template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    App,
    Key,
    Start,
}

impl Field {
    const ALL: [(Field, &'static str); 3] = [
        (Field::App, "{app}"),
        (Field::Key, "{key}"),
        (Field::Start, "{start}"),
    ];
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Field(Field),
}

/// A validated `record_path` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordPath {
    text: String,
    pieces: Vec<Piece>,
}

impl Default for RecordPath {
    fn default() -> Self {
        RecordPath::parse(DEFAULT_RECORD_PATH).expect("the default record_path is valid")
    }
}

impl RecordPath {
    pub fn parse(text: &str) -> Result<RecordPath, String> {
        let bad = |why: &str| Err(format!("record_path {text:?}: {why}"));
        if text.is_empty() {
            return bad("is empty");
        }
        let path = Path::new(text);
        if path.is_absolute() || text.starts_with('/') {
            return bad("must be relative to record_dir");
        }
        if path
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
        {
            return bad("may not contain `.` or `..` parts");
        }
        if text.ends_with('/') || text.chars().any(char::is_control) {
            return bad("must name a file");
        }
        let mut pieces = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let next = rest.find('{').unwrap_or(rest.len());
            if next > 0 {
                pieces.push(Piece::Text(rest[..next].to_owned()));
                rest = &rest[next..];
                continue;
            }
            let Some((field, name)) = Field::ALL.iter().find(|(_, n)| rest.starts_with(n)) else {
                let end = rest.find('}').map_or(rest.len(), |i| i + 1);
                return bad(&format!(
                    "unknown placeholder {:?} (use {{app}}, {{key}} and {{start}})",
                    &rest[..end]
                ));
            };
            if matches!(pieces.last(), Some(Piece::Field(_))) {
                // `{app}{key}` could not be read back into app and key.
                return bad("placeholders must be separated by some text");
            }
            pieces.push(Piece::Field(*field));
            rest = &rest[name.len()..];
        }
        if pieces
            .iter()
            .any(|p| matches!(p, Piece::Text(t) if t.contains('}')))
        {
            return bad("has a `}` without its `{`");
        }
        Ok(RecordPath {
            text: text.to_owned(),
            pieces,
        })
    }

    /// The relative path of a recording of `app`/`key` started at `start`. The
    /// names are validated stream-key parts (no `/`, no `..`), so the result stays
    /// below `record_dir`.
    pub fn expand(&self, app: &str, key: &str, start: &str) -> PathBuf {
        let mut out = String::with_capacity(self.text.len() + app.len() + key.len());
        for piece in &self.pieces {
            out.push_str(match piece {
                Piece::Text(t) => t,
                Piece::Field(Field::App) => app,
                Piece::Field(Field::Key) => key,
                Piece::Field(Field::Start) => start,
            });
        }
        PathBuf::from(out)
    }

    /// The app and key a relative path was made from, if it fits the template
    /// (`None` where the template has no `{app}` or `{key}`). A name that got a
    /// counter because it existed already (`...-006-1.flv`) fits too. Where a
    /// separator also appears in a name, the first reading wins; `{start}` only
    /// matches a start time, which settles the common cases.
    pub fn read_back(&self, path: &str) -> Option<(Option<String>, Option<String>)> {
        let mut found = (None, None);
        if read_pieces(&self.pieces, path, &mut found) {
            return Some(found);
        }
        let without = strip_counter(path)?;
        let mut found = (None, None);
        read_pieces(&self.pieces, &without, &mut found).then_some(found)
    }

    /// How many folders deep the template's files are below `record_dir`.
    pub fn depth(&self) -> usize {
        self.text.matches('/').count()
    }
}

/// Matches `pieces` against all of `rest`, trying each field's shortest reading
/// first and backtracking.
fn read_pieces(pieces: &[Piece], rest: &str, found: &mut (Option<String>, Option<String>)) -> bool {
    let Some((piece, more)) = pieces.split_first() else {
        return rest.is_empty();
    };
    match piece {
        Piece::Text(t) => rest
            .strip_prefix(t.as_str())
            .is_some_and(|rest| read_pieces(more, rest, found)),
        Piece::Field(field) => {
            let component = rest.find('/').unwrap_or(rest.len());
            for end in (1..=component).filter(|&i| rest.is_char_boundary(i)) {
                let value = &rest[..end];
                if *field == Field::Start && !is_start_time(value) {
                    continue;
                }
                if read_pieces(more, &rest[end..], found) {
                    let value = Some(value.to_owned());
                    match field {
                        Field::App => found.0 = value,
                        Field::Key => found.1 = value,
                        Field::Start => {}
                    }
                    return true;
                }
            }
            false
        }
    }
}

/// `YYYYMMDD-HHMMSS-mmm`, as recordings are named.
fn is_start_time(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 19
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 15 => *c == b'-',
            _ => c.is_ascii_digit(),
        })
}

/// `name-N.ext` (a counter added to a name that existed) as `name.ext`.
fn strip_counter(path: &str) -> Option<String> {
    let file_start = path.rfind('/').map_or(0, |i| i + 1);
    let dot = path[file_start..]
        .rfind('.')
        .map_or(path.len(), |i| file_start + i);
    let dash = path[file_start..dot].rfind('-')? + file_start;
    let counter = &path[dash + 1..dot];
    if counter.is_empty() || !counter.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some(format!("{}{}", &path[..dash], &path[dot..]))
}

impl fmt::Display for RecordPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for RecordPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RecordPath, D::Error> {
        let text = String::deserialize(d)?;
        RecordPath::parse(&text).map_err(de::Error::custom)
    }
}

/// `record_dir`: a directory, created when the first recording needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordDir(pub PathBuf);

impl RecordDir {
    pub fn new(text: &str) -> Result<RecordDir, String> {
        if text.is_empty() || text.chars().any(char::is_control) {
            return Err(format!("record_dir {text:?} is not a directory name"));
        }
        Ok(RecordDir(PathBuf::from(text)))
    }
}

impl<'de> Deserialize<'de> for RecordDir {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RecordDir, D::Error> {
        let text = String::deserialize(d)?;
        RecordDir::new(&text).map_err(de::Error::custom)
    }
}

/// A size in bytes from 64 KiB to 1 TiB (`record_segment_bytes`,
/// `record_buffer_bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub const MIN: u64 = 64 << 10;
    pub const MAX: u64 = 1 << 40;
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ByteSize, D::Error> {
        let n = u64::deserialize(d)?;
        if !(ByteSize::MIN..=ByteSize::MAX).contains(&n) {
            return Err(de::Error::custom(format!(
                "must be a number of bytes from {} to {}",
                ByteSize::MIN,
                ByteSize::MAX
            )));
        }
        Ok(ByteSize(n))
    }
}

/// How one app's streams are recorded: its recording keys with their defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordSettings {
    pub dir: PathBuf,
    pub path: RecordPath,
    /// Buffered tags go to the file, and the file to the disk, this often.
    pub flush: Duration,
    /// A new file at the first keyframe past this much of the stream...
    pub segment_duration: Option<Duration>,
    /// ... or past this many bytes in the file.
    pub segment_bytes: Option<u64>,
    /// A publisher back within `reconnect_gap` continues the previous file.
    pub append: bool,
    pub reconnect_gap: Duration,
    /// Bytes of stream waiting for the disk before the recording stops.
    pub buffer_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_relative_and_know_three_placeholders() {
        let p = RecordPath::default();
        assert_eq!(
            p.expand("live", "cam", "20260102-030405-006"),
            PathBuf::from("live/cam/20260102-030405-006.flv")
        );
        assert_eq!(p.depth(), 2);
        for bad in [
            "",
            "/abs/{key}.flv",
            "../{key}.flv",
            "a/../{key}.flv",
            "./{key}.flv",
            "{app}{key}.flv",
            "{app}/{nope}.flv",
            "{app}/",
            "{key}}.flv",
            "a\nb",
        ] {
            assert!(RecordPath::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(RecordPath::parse("{app}/{nope}.flv")
            .unwrap_err()
            .contains("unknown placeholder \"{nope}\""));
        let flat = RecordPath::parse("rec-{key}-{start}.flv").unwrap();
        assert_eq!(
            flat.expand("a", "k", "s"),
            PathBuf::from("rec-k-s.flv"),
            "app not used"
        );
        assert_eq!(flat.depth(), 0);
    }

    #[test]
    fn paths_read_back_into_app_and_key() {
        let p = RecordPath::default();
        assert_eq!(
            p.read_back("live/cam.1/20260102-030405-006.flv"),
            Some((Some("live".into()), Some("cam.1".into())))
        );
        assert_eq!(
            p.read_back("live/cam/20260102-030405-006-1.flv"),
            Some((Some("live".into()), Some("cam".into())))
        );
        assert_eq!(p.read_back("live/cam/x.mp4"), None);
        assert_eq!(p.read_back("live/x.flv"), None);
        assert_eq!(p.read_back("a/b/c/d.flv"), None);
        let flat = RecordPath::parse("{app}-{key}-{start}.flv").unwrap();
        let (app, key) = flat
            .read_back("live-my-cam-20260102-030405-006-12.flv")
            .unwrap();
        assert_eq!(app.as_deref(), Some("live"));
        assert_eq!(key.as_deref(), Some("my-cam"));
        let no_app = RecordPath::parse("{key}/{start}.flv").unwrap();
        assert_eq!(
            no_app.read_back("cam/20260102-030405-006.flv"),
            Some((None, Some("cam".into())))
        );
        assert_eq!(no_app.read_back("cam/1.flv"), None);
    }

    #[test]
    fn sizes_and_dirs() {
        let size =
            |n: u64| ByteSize::deserialize(de::value::U64Deserializer::<de::value::Error>::new(n));
        assert!(size(ByteSize::MIN).is_ok());
        assert!(size(1000).is_err());
        assert!(RecordDir::new("").is_err());
        assert_eq!(RecordDir::new("rec").unwrap().0, PathBuf::from("rec"));
    }
}
