//! The recorder's files: where they are made ([`Storage`]: the disk, or a test's
//! stand-in for a slow or failing one) and one file being written ([`FlvFile`]).
//!
//! Tags are buffered in memory and reach the file at each checkpoint (every
//! `record_flush`, default 1 s) or when the buffer fills, never one write per tag.
//! A checkpoint writes the buffer out, rewrites `duration` and `filesize` in the
//! head to what the file now holds, and asks the disk to keep it (`fdatasync`).
//! So a `kill -9` loses at most what arrived since the last checkpoint (the
//! kernel has the rest), and a power cut at most that plus the sync in flight;
//! either way the file is a valid FLV up to its last whole tag, with a duration
//! that players can seek by. One sync per second per recording costs a busy disk
//! little, and it runs on the recording's own thread, never the publisher's.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::metadata::{duration_bytes, filesize_bytes, FieldOffsets};
use super::naming::with_counter;
use crate::media::flv;

/// Tags waiting for the next checkpoint, at most; a fuller buffer is written out
/// at once.
const BUFFER_BYTES: usize = 128 * 1024;
/// Names tried for a new file before giving up (`name`, `name-1`, ...).
const MAX_COUNTER: u32 = 1000;

/// A file the recorder writes: the file itself, or a test's stand-in.
pub trait RecordFile: io::Write + io::Seek + Send {
    /// Asks the disk to keep what was written (`fdatasync`).
    fn sync_data(&mut self) -> io::Result<()>;
}

impl RecordFile for File {
    fn sync_data(&mut self) -> io::Result<()> {
        File::sync_data(self)
    }
}

/// Where recording files are made.
pub trait Storage: Send + Sync {
    /// Creates `path`, and the folders it is in; an existing file is an
    /// `AlreadyExists` error, never overwritten.
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn RecordFile>>;
    /// Opens `path`, a recording file, to add to it.
    fn reopen(&self, path: &Path) -> io::Result<Box<dyn RecordFile>>;
}

/// The file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct Disk;

impl Storage for Disk {
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn RecordFile>> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| {
                // A file in the way is EEXIST too; that is not "name taken".
                let kind = match e.kind() {
                    io::ErrorKind::AlreadyExists => io::ErrorKind::Other,
                    kind => kind,
                };
                io::Error::new(kind, format!("making the folder {}: {e}", parent.display()))
            })?;
        }
        let file = OpenOptions::new().write(true).create_new(true).open(path)?;
        Ok(Box::new(file))
    }

    fn reopen(&self, path: &Path) -> io::Result<Box<dyn RecordFile>> {
        Ok(Box::new(OpenOptions::new().write(true).open(path)?))
    }
}

/// What went wrong with a recording file, and which.
#[derive(Debug)]
pub struct FileError {
    pub path: PathBuf,
    /// "create", "write", "sync", ...
    pub action: &'static str,
    pub source: io::Error,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot {} {}: {}",
            self.action,
            self.path.display(),
            self.source
        )
    }
}

impl std::error::Error for FileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// One recording file open for writing.
pub struct FlvFile {
    path: PathBuf,
    out: BufWriter<Box<dyn RecordFile>>,
    fields: FieldOffsets,
    /// Bytes written, buffered or not: where the next tag goes.
    len: u64,
}

impl FlvFile {
    /// Creates a new file at `path`, or with a counter if that name is taken,
    /// and writes `head`.
    pub fn create(
        storage: &dyn Storage,
        path: &Path,
        head: &[u8],
        fields: FieldOffsets,
    ) -> Result<FlvFile, FileError> {
        let mut n = 0;
        let (path, file) = loop {
            let candidate = with_counter(path, n);
            match storage.create_new(&candidate) {
                Ok(file) => break (candidate, file),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < MAX_COUNTER => n += 1,
                Err(source) => {
                    return Err(FileError {
                        path: candidate,
                        action: "create",
                        source,
                    })
                }
            }
        };
        let mut file = FlvFile {
            path,
            out: BufWriter::with_capacity(BUFFER_BYTES, file),
            fields,
            len: 0,
        };
        file.write(head)?;
        Ok(file)
    }

    /// Opens `path` again to continue it; it must be `len` bytes long, as the
    /// recording left it.
    pub fn reopen(
        storage: &dyn Storage,
        path: &Path,
        len: u64,
        fields: FieldOffsets,
    ) -> Result<FlvFile, FileError> {
        let fail = |action, source| FileError {
            path: path.to_owned(),
            action,
            source,
        };
        let mut file = storage.reopen(path).map_err(|e| fail("reopen", e))?;
        let end = file.seek(SeekFrom::End(0)).map_err(|e| fail("reopen", e))?;
        if end != len {
            let why = format!("it is {end} bytes long, not the {len} bytes recorded");
            return Err(fail("continue", io::Error::other(why)));
        }
        Ok(FlvFile {
            path: path.to_owned(),
            out: BufWriter::with_capacity(BUFFER_BYTES, file),
            fields,
            len,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where `duration` and `filesize` are in it.
    pub fn fields(&self) -> FieldOffsets {
        self.fields
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends one tag (to the buffer, or the file when the buffer is full).
    pub fn write_tag(
        &mut self,
        tag_type: u8,
        timestamp: u32,
        data: &[u8],
    ) -> Result<(), FileError> {
        self.write(&flv::tag_header(tag_type, timestamp, data.len()))?;
        self.write(data)?;
        self.write(&flv::previous_tag_size(data.len()).to_be_bytes())
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), FileError> {
        self.out
            .write_all(bytes)
            .map_err(|e| self.error("write", e))?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Writes out what is buffered, sets `duration` and `filesize` to what the
    /// file holds, and syncs it to the disk.
    pub fn checkpoint(&mut self, duration_ms: u64) -> Result<(), FileError> {
        self.out.flush().map_err(|e| self.error("write", e))?;
        let (fields, len) = (self.fields, self.len);
        let file = self.out.get_mut();
        let rewrite = (|| {
            file.seek(SeekFrom::Start(fields.duration))?;
            file.write_all(&duration_bytes(duration_ms))?;
            file.seek(SeekFrom::Start(fields.filesize))?;
            file.write_all(&filesize_bytes(len))?;
            file.seek(SeekFrom::Start(len)).map(drop)
        })();
        rewrite.map_err(|e| self.error("update the metadata of", e))?;
        self.out
            .get_mut()
            .sync_data()
            .map_err(|e| self.error("sync", e))
    }

    /// The last checkpoint, then the file is closed; its length.
    pub fn close(mut self, duration_ms: u64) -> Result<u64, FileError> {
        self.checkpoint(duration_ms)?;
        Ok(self.len)
    }

    fn error(&self, action: &'static str, source: io::Error) -> FileError {
        FileError {
            path: self.path.clone(),
            action,
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amf::amf0;
    use crate::media::flv::{FlvHeader, TAG_SCRIPT, TAG_VIDEO};
    use crate::record::metadata::{self, Metadata};

    fn temp_dir(label: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "rtmpd-record-{label}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn head() -> (Vec<u8>, FieldOffsets) {
        let meta = Metadata::new(None);
        let mut head = Vec::new();
        flv::write_header(
            &mut head,
            FlvHeader {
                has_audio: false,
                has_video: true,
            },
        );
        flv::write_tag(&mut head, TAG_SCRIPT, 0, &meta.body);
        (head, meta.offsets())
    }

    fn duration_and_size(bytes: &[u8]) -> (f64, f64) {
        let (_, tags) = flv::parse(bytes).unwrap();
        let meta = amf0::decode_all(&tags[0].data).unwrap();
        let num = |k| meta[1].get(k).unwrap().as_f64().unwrap();
        (num("duration"), num("filesize"))
    }

    #[test]
    fn checkpoints_make_the_file_whole_and_names_get_counters() {
        let dir = temp_dir("file");
        let path = dir.join("live/cam/a.flv");
        let (head, fields) = head();
        let mut file = FlvFile::create(&Disk, &path, &head, fields).unwrap();
        file.write_tag(TAG_VIDEO, 0, &[0x17, 1, 0, 0, 0]).unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap().len(),
            0,
            "nothing is written before a checkpoint"
        );
        file.checkpoint(0).unwrap();
        file.write_tag(TAG_VIDEO, 40, &[0x27, 1, 0, 0, 0]).unwrap();
        file.checkpoint(40).unwrap();
        let on_disk = std::fs::read(&path).unwrap();
        assert_eq!(on_disk.len() as u64, file.len());
        assert_eq!(duration_and_size(&on_disk), (0.04, on_disk.len() as f64));
        assert_eq!(metadata::read_duration(&on_disk), Some(0.04));

        // The name is taken: a counter.
        let second = FlvFile::create(&Disk, &path, &head, fields).unwrap();
        assert_eq!(second.path(), dir.join("live/cam/a-1.flv"));
        drop(second);

        // Continued: only at the length it was left with.
        let len = file.close(40).unwrap();
        assert!(FlvFile::reopen(&Disk, &path, len + 1, fields).is_err());
        let mut again = FlvFile::reopen(&Disk, &path, len, fields).unwrap();
        again.write_tag(TAG_VIDEO, 80, &[0x27, 1, 0, 0, 0]).unwrap();
        again.close(80).unwrap();
        let on_disk = std::fs::read(&path).unwrap();
        assert_eq!(flv::parse(&on_disk).unwrap().1.len(), 4);
        assert_eq!(duration_and_size(&on_disk), (0.08, on_disk.len() as f64));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn errors_name_the_file_and_what_failed() {
        let dir = temp_dir("err");
        std::fs::create_dir_all(&dir).unwrap();
        // A file where a folder should be.
        std::fs::write(dir.join("live"), b"").unwrap();
        let (head, fields) = head();
        let err = FlvFile::create(&Disk, &dir.join("live/cam.flv"), &head, fields)
            .err()
            .unwrap();
        assert_eq!(err.action, "create");
        assert!(
            err.to_string().starts_with(&format!(
                "cannot create {}",
                dir.join("live/cam.flv").display()
            )),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
