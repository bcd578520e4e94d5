//! Reading a backup's entries in archive order and handing their bytes to [`EntryDigest`]s,
//! several entries at once: from a stream (plain, zstd or gzip), from a plain tar file read
//! at offsets, or from an extracted directory.
//!
//! SHA-256 of one entry is sequential, so the unit of parallel work is the entry: each one
//! is hashed wholly by one worker, up to one entry per core at once, and the results are put
//! back in archive order ([`InOrder`]) before anything sees them. Memory is a fixed amount
//! per worker, whatever the entries' sizes.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use super::digest::EntryDigest;
use super::{Scan, ScanMode, ScannedEntry, BUF};
use crate::archive::{compression_of, decompress, BackupItem, BackupReader, Compression};
use crate::error::{Error, ErrorKind, Result};
use crate::events::{Event, Events};
use crate::layout::{EntryPath, MANIFEST_NAME};
use crate::mapped::{BusGuard, Mapped};

/// Most entries hashed at once. More workers than cores only add memory.
const MAX_WORKERS: usize = 4;

/// Read buffers per stream worker. One entry's worker can use all of them: while the reader
/// is already in the next entry, they hold the bytes the previous one has still to hash.
/// With entries of size S and a pool of P bytes, a stream goes about S / (S - P) times one
/// core's speed, so the pool (2 × 16 MiB on two cores) lets 64 MiB shards use both cores
/// while the peak RSS stays well below the 64 MiB the contract allows.
const STREAM_BUFFERS_PER_WORKER: usize = 16;

/// The pool's bound whatever the number of workers: more than two workers add no reading
/// speed to a stream (one thread reads it), and 4 × 16 MiB would pass the 64 MiB bound.
const STREAM_BUFFERS_MAX: usize = 32;

/// Buffer of a worker that reads its entries itself: small enough to stay in the core's
/// cache between the copy out of the page cache and the hash that reads it back.
const IN_PLACE_BUF: usize = 256 << 10;

/// Bytes of a file mapped at once by a worker that reads its entries itself (they count in
/// its resident memory while they are mapped).
const MAP_WINDOW: u64 = 8 << 20;

/// Workers for this machine: one per core, at most [`MAX_WORKERS`].
fn workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, MAX_WORKERS)
}

/// One entry's result as a worker hands it back: the entry and, for the schema, its bytes;
/// or why its bytes could not be read (with the entry's name).
type Outcome = std::result::Result<(ScannedEntry, Option<Vec<u8>>), (Error, String)>;

/// Results put back in archive order: entry `n` reaches the scan (and [`Event::FileDone`]
/// is sent) only after entries `0..n`. The first failure ends the scan there; results of
/// later entries are dropped.
#[derive(Default)]
struct InOrder {
    next: u64,
    waiting: BTreeMap<u64, Outcome>,
    failed: bool,
}

impl InOrder {
    fn done(&mut self, seq: u64, outcome: Outcome, scan: &mut Scan, events: &Events) {
        if self.failed {
            return;
        }
        self.waiting.insert(seq, outcome);
        while let Some(outcome) = self.waiting.remove(&self.next) {
            self.next += 1;
            match outcome {
                Ok((entry, schema)) => {
                    if schema.is_some() {
                        scan.schema_bytes = schema;
                    }
                    events.event(Event::FileDone { path: entry.path.to_string(), size: entry.size });
                    scan.entries.push(entry);
                }
                Err((e, name)) => {
                    scan.stopped = Some(e);
                    scan.stopped_in = Some(name);
                    self.failed = true;
                    self.waiting.clear();
                    return;
                }
            }
        }
    }
}

fn worker_panicked() -> Error {
    Error::internal("a hashing worker panicked")
}

/// Scan a backup stream (plain, zstd or gzip). Never fails: a stream that stops early is
/// recorded in [`Scan::stopped`] with what was read before.
///
/// This thread reads (a copy out of a pipe or the page cache, after decompression) and
/// splits the stream by entry; each entry goes whole to the least busy of the hashing
/// threads (one per core). Memory stays a fixed number of 1 MiB buffers per worker.
pub fn scan_stream<R: Read>(input: R, mode: impl Into<ScanMode>, events: &Events) -> Scan {
    scan_stream_with(input, mode.into(), events, workers())
}

fn scan_stream_with<R: Read>(input: R, mode: ScanMode, events: &Events, workers: usize) -> Scan {
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
        let (back_tx, back_rx) = mpsc::channel::<Back>();
        let mut lanes = Vec::new();
        for lane in 0..workers.max(1) {
            let (work_tx, work_rx) = mpsc::channel::<Work>();
            let back = back_tx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("fb-verify-hash-{lane}"))
                .spawn_scoped(s, move || hash_entries(lane, work_rx, back, mode));
            match spawned {
                Ok(_) => lanes.push(Lane { work: work_tx, entries: 0 }),
                Err(e) if lanes.is_empty() => {
                    scan.stopped = Some(Error::io("starting the hashing thread", e));
                    return;
                }
                Err(_) => break,
            }
        }
        drop(back_tx);
        let limit = (lanes.len() * STREAM_BUFFERS_PER_WORKER).min(STREAM_BUFFERS_MAX);
        let mut feed = Feed {
            lanes,
            back: back_rx,
            spare: Vec::new(),
            allocated: 0,
            limit,
            order: InOrder::default(),
            broken: None,
        };
        read_entries(&mut reader, &mut scan, &mut feed, events);
        // Workers finish what they were given, then hang up; their last results come in.
        let Feed { lanes, back, mut order, mut broken, .. } = feed;
        drop(lanes);
        for b in back {
            match b {
                Back::Done { seq, entry, schema, .. } => order.done(seq, Ok((*entry, schema)), &mut scan, events),
                Back::Panicked => broken = Some(worker_panicked()),
                Back::Buffer(_) => {}
            }
        }
        if let Some(e) = broken {
            // The entries already in order stay; a worker's panic is the reason the scan stopped.
            scan.stopped = Some(e);
        }
    });
    scan
}

/// From the reading thread to one worker.
enum Work {
    Begin(u64, EntryPath),
    Data(Vec<u8>, usize),
    End,
}

/// From a worker back: a buffer to reuse, or a finished entry (and the schema bytes when it
/// was the schema).
enum Back {
    Buffer(Vec<u8>),
    Done { lane: usize, seq: u64, entry: Box<ScannedEntry>, schema: Option<Vec<u8>> },
    Panicked,
}

/// One worker as the reading thread sees it: where to send, and how many entries it holds.
struct Lane {
    work: mpsc::Sender<Work>,
    entries: usize,
}

/// The reading thread's side: workers, the buffer pool and the results in order.
struct Feed {
    lanes: Vec<Lane>,
    back: mpsc::Receiver<Back>,
    spare: Vec<Vec<u8>>,
    allocated: usize,
    limit: usize,
    order: InOrder,
    /// Set when a worker panicked or hung up: the scan ends with it.
    broken: Option<Error>,
}

impl Feed {
    fn take(&mut self, b: Back, scan: &mut Scan, events: &Events) {
        match b {
            Back::Buffer(buf) => self.spare.push(buf),
            Back::Done { lane, seq, entry, schema } => {
                self.lanes[lane].entries -= 1;
                self.order.done(seq, Ok((*entry, schema)), scan, events);
            }
            Back::Panicked => self.broken = Some(worker_panicked()),
        }
    }

    /// A free buffer: a returned one, a new one while the pool is below its limit, or the
    /// next one a worker hands back.
    fn buffer(&mut self, scan: &mut Scan, events: &Events) -> Option<Vec<u8>> {
        loop {
            if self.broken.is_some() {
                return None;
            }
            if let Some(b) = self.spare.pop() {
                return Some(b);
            }
            if self.allocated < self.limit {
                self.allocated += 1;
                return Some(vec![0u8; BUF]);
            }
            match self.back.recv() {
                Ok(b) => self.take(b, scan, events),
                Err(_) => self.broken = Some(worker_panicked()),
            }
        }
    }

    /// The worker with the fewest entries in hand (results that came back counted first).
    fn least_busy(&mut self, scan: &mut Scan, events: &Events) -> usize {
        while let Ok(b) = self.back.try_recv() {
            self.take(b, scan, events);
        }
        (0..self.lanes.len()).min_by_key(|&i| self.lanes[i].entries).unwrap_or(0)
    }

    fn send(&mut self, lane: usize, w: Work) -> bool {
        if self.lanes[lane].work.send(w).is_err() {
            self.broken.get_or_insert_with(worker_panicked);
            return false;
        }
        true
    }
}

fn hash_entries(lane: usize, work: mpsc::Receiver<Work>, back: mpsc::Sender<Back>, mode: ScanMode) {
    let hashed = catch_unwind(AssertUnwindSafe(|| {
        let mut current: Option<(u64, EntryDigest)> = None;
        while let Ok(w) = work.recv() {
            match w {
                Work::Begin(seq, path) => current = Some((seq, EntryDigest::new(path, mode))),
                Work::Data(buf, n) => {
                    if let Some((_, d)) = current.as_mut() {
                        d.update(&buf[..n]);
                    }
                    if back.send(Back::Buffer(buf)).is_err() {
                        return;
                    }
                }
                Work::End => {
                    let Some((seq, d)) = current.take() else { continue };
                    let mut schema = None;
                    let entry = Box::new(d.finish(&mut schema));
                    if back.send(Back::Done { lane, seq, entry, schema }).is_err() {
                        return;
                    }
                }
            }
        }
    }));
    if hashed.is_err() {
        let _ = back.send(Back::Panicked);
    }
}

/// Fill `buf` from the current entry: a full buffer, or less at the entry's end.
fn fill<R: Read>(reader: &mut BackupReader<R>, buf: &mut [u8], events: &Events) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let k = reader.read(&mut buf[n..])?;
        if k == 0 {
            break;
        }
        events.event(Event::Bytes(k as u64));
        n += k;
    }
    Ok(n)
}

fn read_entries<R: Read>(reader: &mut BackupReader<R>, scan: &mut Scan, feed: &mut Feed, events: &Events) {
    let mut seq = 0u64;
    loop {
        if feed.broken.is_some() {
            return;
        }
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
                let lane = feed.least_busy(scan, events);
                feed.lanes[lane].entries += 1;
                if !feed.send(lane, Work::Begin(seq, path)) {
                    return;
                }
                seq += 1;
                loop {
                    let Some(mut buf) = feed.buffer(scan, events) else { return };
                    match fill(reader, &mut buf, events) {
                        Ok(0) => {
                            feed.spare.push(buf);
                            break;
                        }
                        Ok(n) => {
                            if !feed.send(lane, Work::Data(buf, n)) {
                                return;
                            }
                            if n < BUF {
                                break;
                            }
                        }
                        Err(e) => {
                            // The worker drops this entry's digest when its channel closes.
                            scan.stopped_in = Some(name);
                            scan.stopped = Some(e);
                            return;
                        }
                    }
                }
                if !feed.send(lane, Work::End) {
                    return;
                }
            }
        }
    }
}

/// Scan a backup file. A plain tar file is read at offsets: this thread walks the headers
/// (every check of a stream read, the data skipped by seeking) and hashing threads (one per core)
/// each read and hash whole entries, one [`BUF`] each. A compressed file, or one that is not a
/// regular file (a pipe given by name), is read as a stream ([`scan_stream`]). Never fails,
/// like [`scan_stream`].
pub fn scan_file(file: File, mode: impl Into<ScanMode>, events: &Events) -> Scan {
    scan_file_with(file, mode.into(), events, workers())
}

fn scan_file_with(file: File, mode: ScanMode, events: &Events, workers: usize) -> Scan {
    // The whole file is the backup, whatever its position.
    scan_file_from(file, 0, mode, events, workers)
}

/// Scan stdin: a regular file redirected to it (`fb-verify < backup.tar`) is read at
/// offsets from its current position, like a named file ([`scan_file`]); anything else (a
/// pipe) as a stream ([`scan_stream`]). Never fails, like [`scan_stream`].
pub fn scan_stdin(mode: impl Into<ScanMode>, events: &Events) -> Scan {
    let mode = mode.into();
    let stdin = std::io::stdin();
    if let Ok(fd) = stdin.as_fd().try_clone_to_owned() {
        let file = File::from(fd);
        if file.metadata().is_ok_and(|m| m.is_file()) {
            if let Ok(start) = (&file).stream_position() {
                return scan_file_from(file, start, mode, events, workers());
            }
        }
    }
    scan_stream(stdin.lock(), mode, events)
}

/// A file whose backup starts at `start`.
fn scan_file_from(file: File, start: u64, mode: ScanMode, events: &Events, workers: usize) -> Scan {
    let len = match file.metadata() {
        Ok(m) if m.is_file() => m.len().saturating_sub(start),
        _ => return scan_stream_with(file, mode, events, workers),
    };
    if (&file).seek(SeekFrom::Start(start)).is_err() {
        return scan_stream_with(file, mode, events, workers);
    }
    let mut head = [0u8; 4];
    let n = file.read_at(&mut head, start).unwrap_or(0);
    if compression_of(&head[..n]) != Compression::None {
        return scan_stream_with(file, mode, events, workers);
    }
    let file = Arc::new(file);
    let mut scan = Scan::default();
    let mut walk = BackupReader::new(BufReader::with_capacity(64 << 10, &*file));
    let mut embedded = None;
    let walked = hash_in_place(
        workers,
        mode,
        events,
        &mut scan,
        |submit| loop {
            match walk.next_item() {
                Err(e) => return Some((e, None)),
                Ok(BackupItem::Manifest(bytes)) => {
                    embedded = Some(bytes);
                    return None;
                }
                Ok(BackupItem::EndWithoutManifest) => return None,
                Ok(BackupItem::Entry { path, size }) => {
                    let at = start + walk.offset();
                    let name = path.to_string();
                    if let Err(e) = walk.skip_data(len) {
                        return Some((e, Some(name)));
                    }
                    if !submit(path, (at, size)) {
                        return None;
                    }
                }
            }
        },
        |path, &(at, size), digest, buf| {
            let mut digest = digest.readable_at(Arc::clone(&file), at);
            let name = path.to_string();
            let mut done = feed_mapped(&file, at, size, &mut digest, events, || MappedFile {
                shrank: format!(
                    "the backup file shrank while entry {name:?} was read from it (it was changed during the check)"
                ),
                failed: format!("reading entry {name:?} of the backup file failed (an I/O error of its file system)"),
            })?;
            while done < size {
                let want = (size - done).min(buf.len() as u64) as usize;
                let n = match file.read_at(&mut buf[..want], at + done) {
                    Ok(0) => {
                        // The file shrank after its headers were walked.
                        return Err(Error::truncated(format!(
                            "the stream ends inside entry {:?} with {} of its bytes missing",
                            name,
                            size - done
                        )));
                    }
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(Error::io(format!("reading entry {name:?}"), e)),
                };
                digest.update(&buf[..n]);
                events.event(Event::Bytes(n as u64));
                done += n as u64;
            }
            Ok(digest)
        },
    );
    if scan.stopped.is_none() {
        if let Some((e, name)) = walked {
            scan.stopped = Some(e);
            scan.stopped_in = name;
        }
    }
    if scan.stopped.is_none() {
        scan.embedded_manifest = embedded;
    }
    scan
}

/// What a mapped read says when its file changes under it: `shrank` when the file is now
/// shorter than the bytes being read (exit 66), `failed` when a mapped read failed and the
/// file is not shorter (exit 74, an I/O error of the file system).
struct MappedFile {
    shrank: String,
    failed: String,
}

/// Pass `len` bytes of `file` from `at` to `digest` through read-only mappings of
/// [`MAP_WINDOW`] bytes (no copy; see [`crate::mapped`]), and return how many were passed:
/// `len`, or fewer when a window cannot be mapped or the file is already shorter than the
/// bytes it should hold, for the caller to read the rest (and report what is missing) with
/// `read`. The file's length is looked at again after each window: one cut inside a page
/// while it was read (those bytes read as zeros, with no signal) is an error (exit 66). A
/// file shortened by whole pages while a window is read ends the process (see
/// [`crate::mapped`]).
fn feed_mapped(
    file: &File,
    at: u64,
    len: u64,
    digest: &mut EntryDigest,
    events: &Events,
    what: impl FnOnce() -> MappedFile,
) -> Result<u64> {
    if len == 0 {
        return Ok(0);
    }
    let what = what();
    let guard = BusGuard::new(file, &what.shrank, &what.failed);
    let holds = |end: u64| file.metadata().is_ok_and(|m| m.len() >= end);
    let mut done = 0u64;
    while done < len {
        let want = (len - done).min(MAP_WINDOW);
        let end = at + done + want;
        if !holds(end) {
            return Ok(done);
        }
        let Ok(window) = Mapped::new(file, at + done, want as usize) else { return Ok(done) };
        guard.read(&window, |bytes| digest.update(bytes));
        if !holds(end) {
            return Err(Error::truncated(what.shrank));
        }
        events.event(Event::Bytes(want));
        done += want;
    }
    Ok(done)
}

/// Hash entries whose bytes each worker reads itself. `walk` is called once on this thread
/// with `submit(path, job)` for each entry in archive order (`false`: stop, an earlier
/// entry failed) and returns why it stopped early, if it did (with the entry it stopped in).
/// `read(path, job, digest, buffer)` passes one entry's bytes to `digest` (and may tell it
/// where they lie, for the census to read them again) and returns it. Results reach
/// `scan` in archive order; the first entry that cannot be read ends it.
fn hash_in_place<J: Send>(
    workers: usize,
    mode: ScanMode,
    events: &Events,
    scan: &mut Scan,
    walk: impl FnOnce(&mut dyn FnMut(EntryPath, J) -> bool) -> Option<(Error, Option<String>)>,
    read: impl Fn(&EntryPath, &J, EntryDigest, &mut [u8]) -> Result<EntryDigest> + Sync,
) -> Option<(Error, Option<String>)> {
    // The first entry that failed: later ones are not read, earlier ones still are.
    let failed_at = AtomicU64::new(u64::MAX);
    let mut order = InOrder::default();
    let (job_tx, job_rx) = mpsc::sync_channel::<(u64, EntryPath, J)>(workers.max(1) * 4);
    let job_rx = Mutex::new(job_rx);
    let (done_tx, done_rx) = mpsc::channel::<(u64, Outcome)>();
    std::thread::scope(|s| {
        let mut started = 0;
        for i in 0..workers.max(1) {
            let (job_rx, done, read, failed_at) = (&job_rx, done_tx.clone(), &read, &failed_at);
            let spawned = std::thread::Builder::new().name(format!("fb-verify-hash-{i}")).spawn_scoped(s, move || {
                let mut buf = vec![0u8; IN_PLACE_BUF];
                loop {
                    let next = match job_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok((seq, path, job)) = next else { return };
                    if seq > failed_at.load(Ordering::Relaxed) {
                        continue;
                    }
                    let name = path.to_string();
                    let outcome = catch_unwind(AssertUnwindSafe(|| {
                        let digest = read(&path, &job, EntryDigest::new(path.clone(), mode), &mut buf)?;
                        let mut schema = None;
                        Ok((digest.finish(&mut schema), schema))
                    }))
                    .unwrap_or_else(|_| Err(worker_panicked()))
                    .map_err(|e| (e, name));
                    if outcome.is_err() {
                        failed_at.fetch_min(seq, Ordering::Relaxed);
                    }
                    if done.send((seq, outcome)).is_err() {
                        return;
                    }
                }
            });
            if spawned.is_ok() {
                started += 1;
            }
        }
        drop(done_tx);
        if started == 0 {
            return Some((Error::internal("no hashing thread could be started"), None));
        }
        let mut seq = 0u64;
        let walked = {
            let (order, scan) = (&mut order, &mut *scan);
            let mut submit = |path: EntryPath, job: J| {
                while let Ok((n, outcome)) = done_rx.try_recv() {
                    order.done(n, outcome, scan, events);
                }
                if failed_at.load(Ordering::Relaxed) != u64::MAX || job_tx.send((seq, path, job)).is_err() {
                    return false;
                }
                seq += 1;
                true
            };
            walk(&mut submit)
        };
        drop(job_tx);
        for (n, outcome) in done_rx {
            order.done(n, outcome, scan, events);
        }
        walked
    })
}

/// Scan an extracted backup directory (fbkit's or `featurebase backup`'s). Files are listed
/// and sorted in archive order, then read and hashed one per core at a time; a file outside
/// the backup layout, a link or a special file is refused (exit 65) before anything is read.
pub fn scan_dir(dir: &Path, mode: impl Into<ScanMode>, events: &Events) -> Result<Scan> {
    scan_dir_with(dir, mode.into(), events, workers())
}

fn scan_dir_with(dir: &Path, mode: ScanMode, events: &Events, workers: usize) -> Result<Scan> {
    let mut files: Vec<(EntryPath, PathBuf)> = Vec::new();
    let mut embedded = None;
    walk(dir, dir, &mut files, &mut embedded)?;
    files.sort_by(|a, b| a.0.archive_order().cmp(&b.0.archive_order()));
    let mut scan = Scan::default();
    hash_in_place(
        workers,
        mode,
        events,
        &mut scan,
        |submit| {
            for (path, file) in files {
                if !submit(path, file) {
                    break;
                }
            }
            None
        },
        |_, file, digest, buf| {
            let f = File::open(file).map_err(|e| {
                Error::new(ErrorKind::Truncated, format!("cannot read {}", file.display())).with_source(e)
            })?;
            let f = Arc::new(f);
            let mut digest = digest.readable_at(Arc::clone(&f), 0);
            let len = f.metadata().map_or(0, |m| m.len());
            let mapped = feed_mapped(&f, 0, len, &mut digest, events, || MappedFile {
                shrank: format!("{} shrank while it was read (it was changed during the check)", file.display()),
                failed: format!("reading {} failed (an I/O error of its file system)", file.display()),
            })?;
            // What the mapping did not cover (all of it if the file system cannot be
            // mapped; bytes appended since its length was taken) is read to the end.
            let mut at = mapped;
            loop {
                let n = match f.read_at(buf, at) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(Error::io(format!("reading {}", file.display()), e)),
                };
                if n == 0 {
                    return Ok(digest);
                }
                digest.update(&buf[..n]);
                events.event(Event::Bytes(n as u64));
                at += n as u64;
            }
        },
    );
    if let Some(e) = scan.stopped.take() {
        return Err(e);
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

#[cfg(test)]
mod tests {
    use std::io::Write;

    use sha2::{Digest, Sha256};

    use super::*;
    use crate::archive::TarWriter;
    use crate::events::{silent, EventSink};

    /// Entries of every size that matters: empty, a few bytes, a whole number of buffers,
    /// more than one buffer, and data past the size the walker seeks over.
    fn entries() -> Vec<(String, Vec<u8>)> {
        let sizes = [0, BUF + 17, 100_000, 5, 70_000, BUF, 1];
        let mut out = vec![("schema".to_string(), b"{}".to_vec())];
        for (i, size) in sizes.into_iter().enumerate() {
            let bytes = (0..size).map(|j| (j as u8).wrapping_mul(31).wrapping_add(i as u8)).collect();
            out.push((format!("indexes/users/shards/{i:04}"), bytes));
        }
        out
    }

    fn archive(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
        let mut w = TarWriter::new(Vec::new(), 0);
        for (name, data) in entries {
            w.append(name, data).unwrap();
        }
        w.append(MANIFEST_NAME, b"{}").unwrap();
        w.finish().unwrap()
    }

    fn as_file(bytes: &[u8]) -> File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        f
    }

    fn summary(scan: &Scan) -> Vec<(String, u64, [u8; 32])> {
        scan.entries.iter().map(|e| (e.path.to_string(), e.size, e.sha256)).collect()
    }

    fn expected(entries: &[(String, Vec<u8>)]) -> Vec<(String, u64, [u8; 32])> {
        entries.iter().map(|(n, d)| (n.clone(), d.len() as u64, Sha256::digest(d).into())).collect()
    }

    #[test]
    fn every_source_gives_every_entry_in_archive_order_with_any_number_of_workers() {
        let entries = entries();
        let bytes = archive(&entries);
        let zstd = zstd::encode_all(&bytes[..], 1).unwrap();
        let dir = tempfile::tempdir().unwrap();
        tar::Archive::new(&bytes[..]).unpack(dir.path()).unwrap();
        let mode = ScanMode::default();
        for workers in [1, 2, 3, 8] {
            let scans = [
                scan_stream_with(&bytes[..], mode, &silent(), workers),
                scan_file_with(as_file(&bytes), mode, &silent(), workers),
                scan_file_with(as_file(&zstd), mode, &silent(), workers),
                scan_dir_with(dir.path(), mode, &silent(), workers).unwrap(),
                // As stdin redirected from a file whose position is not 0.
                scan_file_from(as_file(&[b"junk".repeat(300), bytes.clone()].concat()), 1200, mode, &silent(), workers),
            ];
            for (i, scan) in scans.iter().enumerate() {
                assert!(scan.stopped.is_none(), "source {i}, {workers} workers: {:?}", scan.stopped);
                assert_eq!(summary(scan), expected(&entries), "source {i}, {workers} workers");
                assert_eq!(scan.embedded_manifest.as_deref(), Some(&b"{}"[..]));
                assert_eq!(scan.schema_bytes.as_deref(), Some(&b"{}"[..]));
            }
        }
    }

    #[test]
    fn an_entry_larger_than_a_mapped_window_is_read_whole_from_a_file_and_a_directory() {
        let big: Vec<u8> = (0..MAP_WINDOW as usize * 2 + 4097).map(|j| (j % 251) as u8).collect();
        let entries = vec![
            ("schema".to_string(), b"{}".to_vec()),
            ("indexes/users/shards/0000".to_string(), big),
            ("indexes/users/shards/0001".to_string(), vec![9; 3]),
        ];
        let bytes = archive(&entries);
        let dir = tempfile::tempdir().unwrap();
        tar::Archive::new(&bytes[..]).unpack(dir.path()).unwrap();
        let mode = ScanMode::default();
        let scans = [
            scan_file_with(as_file(&bytes), mode, &silent(), 2),
            scan_dir_with(dir.path(), mode, &silent(), 2).unwrap(),
        ];
        for (i, scan) in scans.iter().enumerate() {
            assert!(scan.stopped.is_none(), "source {i}: {:?}", scan.stopped);
            assert_eq!(summary(scan), expected(&entries), "source {i}");
        }
    }

    /// Reading a file at offsets must end exactly as reading it as a stream does: the same
    /// entries, the same entry it stopped in, the same error.
    #[test]
    fn a_cut_file_stops_where_the_same_cut_stream_stops() {
        let entries = entries();
        let bytes = archive(&entries);
        let mut cuts: Vec<usize> = (0..bytes.len()).step_by(7919).collect();
        // Around each entry's header, data and padding.
        let mut at = 0;
        for (_, d) in &entries {
            let data_end = at + 512 + d.len();
            for c in [at, at + 1, at + 511, at + 512, at + 513, data_end - 1, data_end, data_end + 1] {
                cuts.push(c.min(bytes.len()));
            }
            at = data_end.next_multiple_of(512);
        }
        for cut in cuts {
            let part = &bytes[..cut];
            let stream = scan_stream_with(part, ScanMode::default(), &silent(), 3);
            let file = scan_file_with(as_file(part), ScanMode::default(), &silent(), 3);
            assert_eq!(summary(&file), summary(&stream), "cut at {cut}");
            assert_eq!(file.stopped_in, stream.stopped_in, "cut at {cut}");
            let err = |s: &Scan| s.stopped.as_ref().map(|e| (e.exit_code(), e.chain()));
            assert_eq!(err(&file), err(&stream), "cut at {cut}");
            assert!(stream.stopped.is_some(), "cut at {cut}");
        }
    }

    struct Done(Mutex<Vec<String>>);
    impl EventSink for Done {
        fn event(&self, e: Event) {
            if let Event::FileDone { path, .. } = e {
                self.0.lock().unwrap().push(path);
            }
        }
    }

    #[test]
    fn files_are_reported_done_in_archive_order() {
        let entries = entries();
        let bytes = archive(&entries);
        let names: Vec<String> = entries.iter().map(|(n, _)| n.clone()).collect();
        for file in [false, true] {
            let done = Arc::new(Done(Mutex::new(Vec::new())));
            let events: Events = done.clone();
            let scan = if file {
                scan_file_with(as_file(&bytes), ScanMode::default(), &events, 3)
            } else {
                scan_stream_with(&bytes[..], ScanMode::default(), &events, 3)
            };
            assert!(scan.stopped.is_none());
            assert_eq!(*done.0.lock().unwrap(), names);
        }
    }
}
