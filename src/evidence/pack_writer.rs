//! Writing the pack's zip: each file's bytes go, in chunks, to a second thread that hashes
//! them (for the manifest) and compresses them into the archive, while the caller's thread
//! reads the database and formats rows. Two cores, two halves of the work; at most
//! `QUEUED_CHUNKS` chunks wait between them, so memory stays bounded whatever the pack's size.
//! A file written alongside another (`items.jsonl` beside `items.csv`) is compressed ahead
//! (`compress_ahead`) and its compressed bytes copied when its turn comes.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::Instant;

use serde::Serialize;
use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;

use crate::error::{Error, Result};

/// Bytes handed over at a time.
const CHUNK: usize = 256 * 1024;
/// Chunks waiting for the pack's writer: enough to keep it busy, few enough that a file written
/// faster than it compresses (`summary.json` at 20,000 reviewers) holds little memory.
const QUEUED_CHUNKS: usize = 4;

pub type Archive = zip::ZipWriter<BufWriter<File>>;
/// The archive with every file written, and the manifest's entry of each.
pub type Written = (Archive, Vec<ManifestEntry>);

/// One file of the pack as the manifest lists it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ManifestEntry {
    pub name: String,
    pub sha256: String,
    pub bytes: u64,
}

enum Piece {
    Start(String),
    Bytes(Vec<u8>),
    End,
    /// A file compressed ahead, whole: its compressed bytes are copied into the pack.
    Compressed(Box<Compressed>),
}

/// A file compressed ahead of its turn, as its own one-entry archive in a temporary file.
struct Compressed {
    name: String,
    archive: File,
    sha256: String,
    bytes: u64,
}

/// A file of the pack written and compressed ahead of its turn, on whichever thread writes
/// it (the row formatter, which has time to spare while the database is read), into a
/// temporary archive of its own. When its turn comes the pack copies the compressed bytes
/// as they are, instead of compressing the file then while everything else waits. Small
/// writes are gathered a chunk at a time.
pub type CompressedAhead = BufWriter<HashedEntry>;

/// The one entry of a temporary archive, hashed (for the manifest) as it is written.
pub struct HashedEntry {
    zip: zip::ZipWriter<BufWriter<File>>,
    hasher: Sha256,
    bytes: u64,
}

impl Write for HashedEntry {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.zip.write(buf)?;
        self.hasher.update(&buf[..written]);
        self.bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.zip.flush()
    }
}

/// Starts a file compressed ahead with `options`, in a temporary file in `scratch`.
pub fn compress_ahead(scratch: &Path, options: SimpleFileOptions) -> Result<CompressedAhead> {
    let file = tempfile::tempfile_in(scratch).map_err(|e| {
        Error::Io(format!(
            "cannot create a temporary file in {}: {e}",
            scratch.display()
        ))
    })?;
    let mut zip = zip::ZipWriter::new(BufWriter::new(file));
    zip.start_file("ahead", options).map_err(zip_error)?;
    Ok(BufWriter::with_capacity(
        CHUNK,
        HashedEntry {
            zip,
            hasher: Sha256::new(),
            bytes: 0,
        },
    ))
}

/// The temporary archive of `ahead`, complete, with the file's SHA-256 (hex) and size.
fn finish_ahead(ahead: CompressedAhead) -> Result<(File, String, u64)> {
    let temporary = |e: String| Error::Io(format!("cannot write a temporary file: {e}"));
    let entry = ahead
        .into_inner()
        .map_err(|e| temporary(e.error().to_string()))?;
    let archive = entry
        .zip
        .finish()
        .map_err(zip_error)?
        .into_inner()
        .map_err(|e| temporary(e.error().to_string()))?;
    Ok((archive, hex::encode(entry.hasher.finalize()), entry.bytes))
}

fn zip_error(e: zip::result::ZipError) -> Error {
    Error::Io(format!("cannot write evidence pack: {e}"))
}

/// The pack being written.
pub struct PackWriter {
    pieces: Option<SyncSender<Piece>>,
    worker: Option<JoinHandle<Result<Written>>>,
    /// The files added so far, in order.
    pub names: Vec<String>,
}

/// The file being added: what is written here reaches the archive in chunks.
pub struct Entry<'a> {
    pieces: &'a SyncSender<Piece>,
    buffer: Vec<u8>,
}

impl Entry<'_> {
    fn hand_over(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK));
        self.pieces
            .send(Piece::Bytes(chunk))
            .map_err(|_| std::io::Error::other("the evidence pack's writer stopped"))
    }
}

impl Write for Entry<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(buf);
        if self.buffer.len() >= CHUNK {
            self.hand_over()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl PackWriter {
    /// Starts writing the archive to `file`, with `options` for every entry.
    pub fn start(file: File, options: SimpleFileOptions) -> Result<PackWriter> {
        let (pieces, received) = sync_channel(QUEUED_CHUNKS);
        let zip = zip::ZipWriter::new(BufWriter::new(file));
        let worker = std::thread::Builder::new()
            .name("evidence-pack".into())
            .spawn(move || hash_and_compress(zip, options, received))
            .map_err(|e| Error::Internal(format!("cannot start the pack's writer: {e}")))?;
        Ok(PackWriter {
            pieces: Some(pieces),
            worker: Some(worker),
            names: Vec::new(),
        })
    }

    /// Adds the file `name`, written by `write`.
    pub fn add<T>(&mut self, name: &str, write: impl FnOnce(&mut Entry) -> Result<T>) -> Result<T> {
        let Some(pieces) = self.pieces.as_ref() else {
            return Err(Error::Internal("the pack is already finished".into()));
        };
        let sent = pieces.send(Piece::Start(name.to_string())).is_ok();
        let mut entry = Entry {
            pieces,
            buffer: Vec::with_capacity(CHUNK),
        };
        let written = if sent {
            write(&mut entry).and_then(|value| {
                entry.hand_over()?;
                Ok(value)
            })
        } else {
            Err(Error::Io("the evidence pack's writer stopped".into()))
        };
        let ended = written.is_ok() && pieces.send(Piece::End).is_ok();
        match written {
            Ok(value) if ended => {
                self.names.push(name.to_string());
                Ok(value)
            }
            // The writer thread stopped: its error says why (a full disk, say).
            other => Err(self
                .stop()
                .err()
                .or(other.err())
                .unwrap_or_else(|| Error::Io("the evidence pack's writer stopped".into()))),
        }
    }

    /// Adds the file `name` compressed ahead in `ahead`.
    pub fn add_compressed(&mut self, name: &str, ahead: CompressedAhead) -> Result<()> {
        let Some(pieces) = self.pieces.as_ref() else {
            return Err(Error::Internal("the pack is already finished".into()));
        };
        let (archive, sha256, bytes) = finish_ahead(ahead)?;
        let piece = Piece::Compressed(Box::new(Compressed {
            name: name.to_string(),
            archive,
            sha256,
            bytes,
        }));
        if pieces.send(piece).is_err() {
            return Err(self
                .stop()
                .err()
                .unwrap_or_else(|| Error::Io("the evidence pack's writer stopped".into())));
        }
        self.names.push(name.to_string());
        Ok(())
    }

    /// Adds one JSON document.
    pub fn add_json(&mut self, name: &str, value: &impl Serialize) -> Result<()> {
        self.add(name, |out| Ok(serde_json::to_writer_pretty(out, value)?))
    }

    /// Adds one line of JSON per value.
    pub fn add_lines<T: Serialize>(&mut self, name: &str, values: &[T]) -> Result<()> {
        self.add(name, |out| {
            for value in values {
                serde_json::to_writer(&mut *out, value)?;
                out.write_all(b"\n")?;
            }
            Ok(())
        })
    }

    fn stop(&mut self) -> Result<Written> {
        self.pieces = None;
        let worker = self
            .worker
            .take()
            .ok_or_else(|| Error::Internal("the pack's writer is gone".into()))?;
        worker
            .join()
            .map_err(|_| Error::Internal("the pack's writer panicked".into()))?
    }

    /// Waits for every file to be written; returns the archive (to add the manifest) and the
    /// manifest's entries.
    pub fn finish(mut self) -> Result<Written> {
        self.stop()
    }
}

impl Drop for PackWriter {
    /// A pack abandoned midway (an error between files): its thread is stopped and joined.
    fn drop(&mut self) {
        self.pieces = None;
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

fn hash_and_compress(
    mut zip: Archive,
    options: SimpleFileOptions,
    pieces: Receiver<Piece>,
) -> Result<Written> {
    let mut files = Vec::new();
    let mut current: Option<(String, Sha256, u64, Instant)> = None;
    for piece in pieces {
        match piece {
            Piece::Start(name) => {
                zip.start_file(name.as_str(), options).map_err(zip_error)?;
                current = Some((name, Sha256::new(), 0, Instant::now()));
            }
            Piece::Bytes(bytes) => {
                let (_, hasher, written, _) = current
                    .as_mut()
                    .ok_or_else(|| Error::Internal("pack bytes outside a file".into()))?;
                hasher.update(&bytes);
                *written += bytes.len() as u64;
                zip.write_all(&bytes)?;
            }
            Piece::Compressed(ahead) => {
                let started = Instant::now();
                let Compressed {
                    name,
                    archive,
                    sha256,
                    bytes,
                } = *ahead;
                let mut archive = zip::ZipArchive::new(archive).map_err(zip_error)?;
                let entry = archive.by_index_raw(0).map_err(zip_error)?;
                zip.raw_copy_file_rename(entry, name.as_str())
                    .map_err(zip_error)?;
                files.push(listed(
                    name,
                    sha256,
                    bytes,
                    started,
                    "copied, compressed ahead",
                ));
            }
            Piece::End => {
                let (name, hasher, bytes, started) = current
                    .take()
                    .ok_or_else(|| Error::Internal("a pack file ended twice".into()))?;
                let sha256 = hex::encode(hasher.finalize());
                files.push(listed(name, sha256, bytes, started, "written"));
            }
        }
    }
    Ok((zip, files))
}

/// The manifest's entry of a file that is now in the pack, logged with its size and time.
fn listed(name: String, sha256: String, bytes: u64, started: Instant, how: &str) -> ManifestEntry {
    tracing::info!(
        file = name.as_str(),
        bytes,
        ms = started.elapsed().as_millis() as u64,
        how,
        "evidence pack file added"
    );
    ManifestEntry {
        name,
        sha256,
        bytes,
    }
}
