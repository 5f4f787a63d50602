//! The recorder's files: where they are made ([`Storage`]: the disk, or a test's
//! stand-in for a slow or failing one) and one file being written ([`FlvFile`]).
//!
//! Tags are batched in memory and reach the file at each checkpoint (every
//! `record_flush`, default 1 s) or when the batch holds a write's worth, never one
//! write per tag.
//! A checkpoint writes the buffer out, rewrites `duration` and `filesize` in the
//! head to what the file now holds, and asks the disk to keep it (`fdatasync`).
//! So a `kill -9` loses at most what arrived since the last checkpoint (the
//! kernel has the rest), and a power cut at most that plus the sync in flight;
//! either way the file is a valid FLV up to its last whole tag, with a duration
//! that players can seek by. One sync per second per recording costs a busy disk
//! little, and it runs on the recording's own thread, never the publisher's.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::metadata::{duration_bytes, filesize_bytes, FieldOffsets};
use super::naming::with_counter;
use crate::media::frame::Frame;
use crate::net::transport::in_groups;
use crate::player::flv::FlvFraming;
use crate::player::{Batch, WritePieces};

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

/// A recording file as the place a batch goes: its pieces in vectored writes.
struct FileOut<'a>(&'a mut dyn RecordFile);

impl WritePieces for FileOut<'_> {
    fn write_pieces(&mut self, parts: &mut dyn Iterator<Item = &[u8]>) -> io::Result<()> {
        in_groups(parts, |mut slices| {
            while !slices.is_empty() {
                match self.0.write_vectored(slices) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => IoSlice::advance_slices(&mut slices, n),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        })
    }
}

impl std::error::Error for FileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// One recording file open for writing. Tags gather in a batch of the player
/// engine, in its FLV framing (header and trailer of our own, the payload shared
/// with the publisher's frame, never copied), and go to the file in one vectored
/// write when the batch holds a write's worth, and at each checkpoint.
pub struct FlvFile {
    path: PathBuf,
    file: Box<dyn RecordFile>,
    batch: Batch,
    framing: FlvFraming,
    fields: FieldOffsets,
    /// Bytes written, batched or not: where the next tag goes.
    len: u64,
}

impl FlvFile {
    /// Creates a new file at `path`, or with a counter if that name is taken,
    /// and writes `head`. `peer` (the publisher) names the recording in log lines.
    pub fn create(
        storage: &dyn Storage,
        path: &Path,
        head: &[u8],
        fields: FieldOffsets,
        peer: SocketAddr,
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
        let mut file = FlvFile::new(path, file, fields, 0, peer);
        file.batch.own().extend_from_slice(head);
        file.len = head.len() as u64;
        Ok(file)
    }

    /// Opens `path` again to continue it; it must be `len` bytes long, as the
    /// recording left it.
    pub fn reopen(
        storage: &dyn Storage,
        path: &Path,
        len: u64,
        fields: FieldOffsets,
        peer: SocketAddr,
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
        Ok(FlvFile::new(path.to_owned(), file, fields, len, peer))
    }

    fn new(
        path: PathBuf,
        file: Box<dyn RecordFile>,
        fields: FieldOffsets,
        len: u64,
        peer: SocketAddr,
    ) -> FlvFile {
        FlvFile {
            path,
            file,
            batch: Batch::new(),
            framing: FlvFraming::new(peer),
            fields,
            len,
        }
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

    /// Appends `frame` as a tag at `timestamp` (to the batch, and the batch to
    /// the file once it holds a write's worth).
    pub fn write_tag(&mut self, frame: &Arc<Frame>, timestamp: u32) -> Result<(), FileError> {
        let before = self.batch.len();
        self.framing.tag(&mut self.batch, frame.clone(), timestamp);
        self.len += (self.batch.len() - before) as u64;
        if self.batch.is_full() {
            self.write_batch()?;
        }
        Ok(())
    }

    fn write_batch(&mut self) -> Result<(), FileError> {
        let result = self.batch.write(&mut FileOut(&mut *self.file));
        result.map(drop).map_err(|e| self.error("write", e))
    }

    /// Writes out what is batched, sets `duration` and `filesize` to what the
    /// file holds, and syncs it to the disk.
    pub fn checkpoint(&mut self, duration_ms: u64) -> Result<(), FileError> {
        self.write_batch()?;
        let (fields, len) = (self.fields, self.len);
        let file = &mut self.file;
        let rewrite = (|| {
            file.seek(SeekFrom::Start(fields.duration))?;
            file.write_all(&duration_bytes(duration_ms))?;
            file.seek(SeekFrom::Start(fields.filesize))?;
            file.write_all(&filesize_bytes(len))?;
            file.seek(SeekFrom::Start(len)).map(drop)
        })();
        rewrite.map_err(|e| self.error("update the metadata of", e))?;
        self.file.sync_data().map_err(|e| self.error("sync", e))
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
    use crate::media::flv::{self, FlvHeader, TAG_SCRIPT};
    use crate::media::frame::FrameKind;
    use crate::record::metadata::{self, Metadata};

    const PEER: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9);

    fn video(flags: u8) -> Arc<Frame> {
        Arc::new(Frame::media(FrameKind::Video, 0, vec![flags, 1, 0, 0, 0]))
    }

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
        let mut file = FlvFile::create(&Disk, &path, &head, fields, PEER).unwrap();
        file.write_tag(&video(0x17), 0).unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap().len(),
            0,
            "nothing is written before a checkpoint"
        );
        file.checkpoint(0).unwrap();
        file.write_tag(&video(0x27), 40).unwrap();
        file.checkpoint(40).unwrap();
        let on_disk = std::fs::read(&path).unwrap();
        assert_eq!(on_disk.len() as u64, file.len());
        assert_eq!(duration_and_size(&on_disk), (0.04, on_disk.len() as f64));
        assert_eq!(metadata::read_duration(&on_disk), Some(0.04));

        // The name is taken: a counter.
        let second = FlvFile::create(&Disk, &path, &head, fields, PEER).unwrap();
        assert_eq!(second.path(), dir.join("live/cam/a-1.flv"));
        drop(second);

        // Continued: only at the length it was left with.
        let len = file.close(40).unwrap();
        assert!(FlvFile::reopen(&Disk, &path, len + 1, fields, PEER).is_err());
        let mut again = FlvFile::reopen(&Disk, &path, len, fields, PEER).unwrap();
        again.write_tag(&video(0x27), 80).unwrap();
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
        let err = FlvFile::create(&Disk, &dir.join("live/cam.flv"), &head, fields, PEER)
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
