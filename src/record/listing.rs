//! `/api/recordings`: the finished files under every `record_dir` of the policy.
//! A file counts when its path below the directory fits the `record_path`
//! template, which also gives back its app and key; its size is the file's, its
//! duration the one its head says (`metadata`). Files still being written are
//! left out, and so is anything else in the directory.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use super::metadata;
use crate::config::record::RecordPath;
use crate::config::Policy;
use crate::media::flv::TAG_HEADER_LEN;

/// Files listed at most, so that a huge directory cannot make the API slow.
pub const MAX_FILES: usize = 10_000;
/// A head longer than this is not one of ours.
const MAX_HEAD: usize = 1 << 20;

/// One finished recording file.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedFile {
    /// `None` when the template has no `{app}` and the directory serves several.
    pub app: Option<String>,
    pub key: Option<String>,
    pub path: PathBuf,
    pub size: u64,
    /// Seconds, as the file's `onMetaData` says.
    pub duration: Option<f64>,
}

/// Where one app's (or every app's) recordings are.
#[derive(Debug, Clone)]
struct Place {
    dir: PathBuf,
    template: RecordPath,
    /// The app whose section names this place, if only one does.
    app: Option<String>,
}

/// Every finished recording file, sorted by path, and whether the list was cut
/// at [`MAX_FILES`].
pub fn list(policy: &Policy, in_progress: &[PathBuf]) -> (Vec<RecordedFile>, bool) {
    let mut files = Vec::new();
    let mut truncated = false;
    for place in places(policy) {
        let mut found = |rel: &str, path: &Path| {
            if files.len() >= MAX_FILES {
                truncated = true;
                return false;
            }
            if in_progress.iter().any(|p| p == path) {
                return true;
            }
            let Some((app, key)) = place.template.read_back(rel) else {
                return true;
            };
            if let Ok(meta) = fs::metadata(path) {
                files.push(RecordedFile {
                    app: app.or_else(|| place.app.clone()),
                    key,
                    path: path.to_owned(),
                    size: meta.len(),
                    duration: read_head(path).as_deref().and_then(metadata::read_duration),
                });
            }
            true
        };
        walk(
            &place.dir,
            String::new(),
            place.template.depth(),
            &mut found,
        );
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files.dedup_by(|a, b| a.path == b.path);
    (files, truncated)
}

/// The distinct (directory, template) pairs of the policy.
fn places(policy: &Policy) -> Vec<Place> {
    let global = std::iter::once((None, policy.app("")));
    let sections = policy
        .apps
        .keys()
        .map(|name| (Some(name.clone()), policy.app(name)));
    let mut places: Vec<Place> = Vec::new();
    for (app, keys) in global.chain(sections) {
        let Some((dir, template)) = keys.record_files() else {
            continue;
        };
        match places
            .iter_mut()
            .find(|p| p.dir == dir && p.template == template)
        {
            // Shared by several apps: only the template can tell them apart.
            Some(place) => {
                if place.app != app {
                    place.app = None;
                }
            }
            None => places.push(Place { dir, template, app }),
        }
    }
    places
}

/// Calls `found` with each regular file `depth` folders below `dir`, and its
/// path relative to the place's directory with `/` between the parts, until it
/// returns false; false if it did.
fn walk(
    dir: &Path,
    rel: String,
    depth: usize,
    found: &mut impl FnMut(&str, &Path) -> bool,
) -> bool {
    let Ok(entries) = fs::read_dir(dir) else {
        return true;
    };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let rel = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        // Symbolic links are not followed: no loops, no leaving the directory.
        let more = if depth == 0 && kind.is_file() {
            found(&rel, &entry.path())
        } else if depth > 0 && kind.is_dir() {
            walk(&entry.path(), rel, depth - 1, found)
        } else {
            true
        };
        if !more {
            return false;
        }
    }
    true
}

/// The FLV header and first tag of `path`, if it has them.
fn read_head(path: &Path) -> Option<Vec<u8>> {
    let mut file = File::open(path).ok()?;
    let tag_at = metadata::TAG_OFFSET as usize;
    let mut head = vec![0; tag_at + TAG_HEADER_LEN];
    file.read_exact(&mut head).ok()?;
    let size = u32::from_be_bytes([0, head[tag_at + 1], head[tag_at + 2], head[tag_at + 3]]);
    let size = size as usize;
    if size > MAX_HEAD {
        return None;
    }
    let start = head.len();
    head.resize(start + size, 0);
    file.read_exact(&mut head[start..]).ok()?;
    Some(head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::policy::AppKeys;
    use crate::config::record::RecordDir;
    use crate::media::flv::{self, FlvHeader, TAG_SCRIPT};
    use crate::record::metadata::{duration_bytes, Metadata};

    fn write_recording(path: &Path, duration_ms: u64) {
        let meta = Metadata::new(None);
        let mut file = Vec::new();
        flv::write_header(
            &mut file,
            FlvHeader {
                has_audio: true,
                has_video: false,
            },
        );
        flv::write_tag(&mut file, TAG_SCRIPT, 0, &meta.body);
        let at = meta.offsets().duration as usize;
        file[at..at + 8].copy_from_slice(&duration_bytes(duration_ms));
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, file).unwrap();
    }

    #[test]
    fn lists_what_fits_the_templates_with_app_key_size_and_duration() {
        let dir = std::env::temp_dir().join(format!("rtmpd-listing-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let flat = dir.join("flat");
        let mut policy = Policy::default();
        policy.set_record_everywhere(Some(RecordDir(dir.clone())));
        policy.apps.insert(
            "cams".into(),
            AppKeys {
                record_dir: Some(RecordDir(flat.clone())),
                record_path: Some(RecordPath::parse("{key}-{start}.flv").unwrap()),
                ..AppKeys::default()
            },
        );
        let a = dir.join("live/cam/20260102-030405-006.flv");
        let b = dir.join("live/cam/20260102-030405-006-1.flv");
        let busy = dir.join("live/other/20260102-030405-007.flv");
        let c = flat.join("door-20260102-030405-008.flv");
        for (path, ms) in [(&a, 1500), (&b, 2000), (&busy, 10), (&c, 250)] {
            write_recording(path, ms);
        }
        fs::write(dir.join("live/cam/notes.txt"), b"x").unwrap();
        fs::write(dir.join("live/cam/20260102-030405-009.flv"), b"FLV").unwrap();
        let (files, truncated) = list(&policy, std::slice::from_ref(&busy));
        assert!(!truncated);
        let seen: Vec<_> = files
            .iter()
            .map(|f| {
                (
                    f.app.as_deref(),
                    f.key.as_deref(),
                    f.path.strip_prefix(&dir).unwrap().to_str().unwrap(),
                    f.duration,
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                (
                    Some("cams"),
                    Some("door"),
                    "flat/door-20260102-030405-008.flv",
                    Some(0.25)
                ),
                (
                    Some("live"),
                    Some("cam"),
                    "live/cam/20260102-030405-006-1.flv",
                    Some(2.0)
                ),
                (
                    Some("live"),
                    Some("cam"),
                    "live/cam/20260102-030405-006.flv",
                    Some(1.5)
                ),
                (
                    Some("live"),
                    Some("cam"),
                    "live/cam/20260102-030405-009.flv",
                    None
                ),
            ]
        );
        assert_eq!(files[2].size, fs::metadata(&a).unwrap().len());
        fs::remove_dir_all(&dir).unwrap();
    }
}
