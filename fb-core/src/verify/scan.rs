//! Reading a backup's entries in archive order and handing their bytes to [`EntryDigest`]:
//! from a stream (plain, zstd or gzip) or from an extracted directory.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use super::digest::EntryDigest;
use super::{Scan, ScanMode, ScannedEntry, BUF};
use crate::archive::{decompress, BackupItem, BackupReader};
use crate::error::{Error, ErrorKind, Result};
use crate::events::{Event, Events};
use crate::layout::{EntryPath, MANIFEST_NAME};

/// Scan a backup stream (plain, zstd or gzip). Never fails: a stream that stops early is
/// recorded in [`Scan::stopped`] with what was read before.
///
/// Reading (a copy out of the page cache or a pipe) and hashing take one core each: this
/// thread reads the next buffer while a second one hashes the previous, so they overlap
/// instead of adding up. Memory stays [`BUFFERS`] × [`BUF`].
pub fn scan_stream<R: Read>(input: R, mode: impl Into<ScanMode>, events: &Events) -> Scan {
    let mode = mode.into();
    let mut scan = Scan::default();
    let (_, reader) = match decompress(input) {
        Ok(r) => r,
        Err(e) => {
            scan.stopped = Some(e);
            return scan;
        }
    };
    let mut reader = BackupReader::new(reader);
    std::thread::scope(|s| {
        let (work_tx, work_rx) = mpsc::sync_channel::<Work>(BUFFERS);
        let (back_tx, back_rx) = mpsc::channel::<Back>();
        if let Err(e) = std::thread::Builder::new()
            .name("fb-verify-hash".into())
            .spawn_scoped(s, move || hash_entries(work_rx, back_tx, mode))
        {
            scan.stopped = Some(Error::io("starting the hashing thread", e));
            return;
        }
        read_entries(&mut reader, &mut scan, work_tx, back_rx, events);
    });
    scan
}

/// Buffers in flight between the reading and the hashing thread.
const BUFFERS: usize = 3;

/// From the reading to the hashing thread.
enum Work {
    Begin(EntryPath),
    Data(Vec<u8>, usize),
    End,
}

/// From the hashing thread back: a buffer to reuse, or the finished entry (and the schema
/// bytes when it was the schema).
enum Back {
    Buffer(Vec<u8>),
    Done(ScannedEntry, Option<Vec<u8>>),
}

fn hash_entries(work: mpsc::Receiver<Work>, back: mpsc::Sender<Back>, mode: ScanMode) {
    let mut current: Option<EntryDigest> = None;
    while let Ok(w) = work.recv() {
        match w {
            Work::Begin(path) => current = Some(EntryDigest::new(path, mode)),
            Work::Data(buf, n) => {
                if let Some(d) = current.as_mut() {
                    d.update(&buf[..n]);
                }
                if back.send(Back::Buffer(buf)).is_err() {
                    return;
                }
            }
            Work::End => {
                let Some(d) = current.take() else { return };
                let mut schema = None;
                let entry = d.finish(&mut schema);
                if back.send(Back::Done(entry, schema)).is_err() {
                    return;
                }
            }
        }
    }
}

fn read_entries<R: Read>(
    reader: &mut BackupReader<R>,
    scan: &mut Scan,
    work: mpsc::SyncSender<Work>,
    back: mpsc::Receiver<Back>,
    events: &Events,
) {
    let hasher_gone = || Error::io("hashing", std::io::Error::other("the hashing thread stopped"));
    let mut spare: Vec<Vec<u8>> = Vec::new();
    let mut allocated = 0;
    loop {
        match reader.next_item() {
            Err(e) => {
                scan.stopped = Some(e);
                return;
            }
            Ok(BackupItem::Manifest(bytes)) => {
                scan.embedded_manifest = Some(bytes);
                return;
            }
            Ok(BackupItem::EndWithoutManifest) => return,
            Ok(BackupItem::Entry { path, size: _ }) => {
                let name = path.to_string();
                if work.send(Work::Begin(path)).is_err() {
                    scan.stopped = Some(hasher_gone());
                    return;
                }
                loop {
                    let mut buf = match spare.pop() {
                        Some(b) => b,
                        None if allocated < BUFFERS => {
                            allocated += 1;
                            vec![0u8; BUF]
                        }
                        None => match back.recv() {
                            Ok(Back::Buffer(b)) => b,
                            _ => {
                                scan.stopped = Some(hasher_gone());
                                return;
                            }
                        },
                    };
                    match reader.read(&mut buf) {
                        Ok(0) => {
                            spare.push(buf);
                            break;
                        }
                        Ok(n) => {
                            if work.send(Work::Data(buf, n)).is_err() {
                                scan.stopped = Some(hasher_gone());
                                return;
                            }
                            events.event(Event::Bytes(n as u64));
                        }
                        Err(e) => {
                            scan.stopped_in = Some(name);
                            scan.stopped = Some(e);
                            return;
                        }
                    }
                }
                if work.send(Work::End).is_err() {
                    scan.stopped = Some(hasher_gone());
                    return;
                }
                // Buffers come back before the entry they carried is done.
                let entry = loop {
                    match back.recv() {
                        Ok(Back::Buffer(b)) => spare.push(b),
                        Ok(Back::Done(entry, schema)) => {
                            if schema.is_some() {
                                scan.schema_bytes = schema;
                            }
                            break entry;
                        }
                        Err(_) => {
                            scan.stopped = Some(hasher_gone());
                            return;
                        }
                    }
                };
                events.event(Event::FileDone { path: entry.path.to_string(), size: entry.size });
                scan.entries.push(entry);
            }
        }
    }
}

/// Scan an extracted backup directory (fbkit's or `featurebase backup`'s). Files are read
/// in archive order; a file outside the backup layout, a link or a special file is refused
/// (exit 65) before anything is read.
pub fn scan_dir(dir: &Path, mode: impl Into<ScanMode>, events: &Events) -> Result<Scan> {
    let mode = mode.into();
    let mut files: Vec<(EntryPath, PathBuf)> = Vec::new();
    let mut embedded = None;
    walk(dir, dir, &mut files, &mut embedded)?;
    files.sort_by(|a, b| a.0.archive_order().cmp(&b.0.archive_order()));
    let mut scan = Scan::default();
    let mut buf = vec![0u8; BUF];
    for (path, file) in files {
        let mut f = std::fs::File::open(&file)
            .map_err(|e| Error::new(ErrorKind::Truncated, format!("cannot read {}", file.display())).with_source(e))?;
        let mut digest = EntryDigest::new(path, mode);
        loop {
            let n = f.read(&mut buf).map_err(|e| Error::io(format!("reading {}", file.display()), e))?;
            if n == 0 {
                break;
            }
            digest.update(&buf[..n]);
            events.event(Event::Bytes(n as u64));
        }
        scan.entries.push(digest.finish(&mut scan.schema_bytes));
    }
    if let Some(p) = embedded {
        scan.embedded_manifest = Some(std::fs::read(&p).map_err(|e| Error::io(format!("reading {}", p.display()), e))?);
    }
    Ok(scan)
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(EntryPath, PathBuf)>, manifest: &mut Option<PathBuf>) -> Result<()> {
    let rd = std::fs::read_dir(dir).map_err(|e| {
        Error::new(ErrorKind::Truncated, format!("cannot read directory {}", dir.display())).with_source(e)
    })?;
    let mut children: Vec<_> =
        rd.collect::<std::io::Result<_>>().map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
    children.sort_by_key(|e| e.file_name());
    for child in children {
        let path = child.path();
        let ft = child.file_type().map_err(|e| Error::io(format!("inspecting {}", path.display()), e))?;
        let rel = path.strip_prefix(root).expect("walk stays below root");
        let rel_text = rel.to_str().ok_or_else(|| Error::invalid(format!("{}: name is not UTF-8", path.display())))?;
        if ft.is_symlink() {
            return Err(Error::invalid(format!("{}: links are refused in a backup directory", path.display())));
        }
        if ft.is_dir() {
            walk(root, &path, out, manifest)?;
        } else if ft.is_file() {
            if rel_text == MANIFEST_NAME {
                *manifest = Some(path.clone());
                continue;
            }
            let entry = EntryPath::parse(rel_text).map_err(|e| e.context(format!("in {}", root.display())))?;
            out.push((entry, path.clone()));
        } else {
            return Err(Error::invalid(format!("{}: not a regular file", path.display())));
        }
    }
    Ok(())
}
