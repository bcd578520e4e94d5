//! `fb-import`: restore a backup stream into an empty cluster of any size (contract §3, §5).
//!
//! A reader thread decompresses and parses the stream, hashing each entry as it passes. The
//! async side sends each entry to every node that owns it on the *target's* topology, as
//! streaming POST bodies fed from the one read (an entry for R replicas is read once). Each
//! body holds back its last chunk until the entry's digest is known: when the manifest is
//! known up front (`--manifest`, or the pre-scan of a seekable `-s FILE`), a wrong entry is
//! aborted before the node has the whole body, so it is never committed. When the manifest
//! only arrives at the end of a pipe, a mismatch is found after the data was sent; then the
//! error says that the target holds an incomplete restore and lists what was sent.
//! POSTs are never retried: their bodies come from a stream that cannot be replayed.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::archive::{decompress, BackupItem, BackupReader};
use crate::client::ClusterClient;
use crate::content::{self, Content};
use crate::error::{Error, ErrorKind, Result};
use crate::events::{Event, Events};
use crate::format::{declared_len, DECLARED_LEN_PREFIX};
use crate::layout::EntryPath;
use crate::manifest::{hex, Manifest};
use crate::schema::Schema;
use crate::topology::Node;

/// How to import.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Restore into a cluster that already holds data.
    pub force: bool,
    /// Read and check everything, send nothing.
    pub dry_run: bool,
    /// Accept a stream without MANIFEST.json (e.g. `featurebase backuptar` output).
    pub no_manifest: bool,
    /// The manifest, known before the stream is read.
    pub manifest: Option<Manifest>,
    /// The schema, known before the stream is read (pre-scan of a file): it is sent first,
    /// wherever the stream has it (a tar of a backup directory may list it last).
    pub schema: Option<Vec<u8>>,
    /// `--resume`: finish an interrupted restore, sending only what the target lacks or
    /// holds differently (needs the manifest up front).
    pub resume: bool,
    /// Content digests of the schema, key stores and idalloc, from the pre-scan (for
    /// `--resume`: the target rewrites those files, so they are compared by content).
    pub contents: BTreeMap<String, Content>,
}

/// What an import did.
#[derive(Debug, Clone, Default)]
pub struct ImportSummary {
    /// Entries restored (or checked, with dry-run).
    pub files: u64,
    /// Bytes of entry data read.
    pub bytes: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Whether sizes and checksums were checked against a manifest.
    pub checked: bool,
    /// Entries the target already held (`--resume`), not sent again.
    pub kept: u64,
    /// Bytes of the entries sent (each counted once, whatever the replica count).
    pub sent_bytes: u64,
}

/// Read buffer of the reader thread.
const CHUNK: usize = 256 * 1024;
/// Chunks queued per node body.
const BODY_QUEUE: usize = 8;

enum ReadMsg {
    Entry { path: EntryPath, size: u64 },
    Data(Bytes),
    EntryEnd { sha256: [u8; 32], size: u64 },
    Manifest(Vec<u8>),
    EndWithoutManifest,
    Failed(Error),
}

fn reader_thread<R: Read>(input: R, tx: mpsc::Sender<ReadMsg>) {
    let send = |m: ReadMsg| tx.blocking_send(m).is_ok();
    let reader = match decompress(input) {
        Ok((_, r)) => r,
        Err(e) => {
            send(ReadMsg::Failed(e));
            return;
        }
    };
    let mut reader = BackupReader::new(reader);
    loop {
        match reader.next_item() {
            Err(e) => {
                send(ReadMsg::Failed(e));
                return;
            }
            Ok(BackupItem::Manifest(m)) => {
                send(ReadMsg::Manifest(m));
                return;
            }
            Ok(BackupItem::EndWithoutManifest) => {
                send(ReadMsg::EndWithoutManifest);
                return;
            }
            Ok(BackupItem::Entry { path, size }) => {
                if !send(ReadMsg::Entry { path, size }) {
                    return;
                }
                let mut hasher = Sha256::new();
                let mut n = 0u64;
                loop {
                    // No bigger than what is left of the entry: a restore of many small
                    // files would otherwise zero and carry a whole CHUNK per file.
                    let left = size.saturating_sub(n).clamp(1, CHUNK as u64) as usize;
                    let mut buf = vec![0u8; left];
                    match reader.read(&mut buf) {
                        Ok(0) => break,
                        Ok(k) => {
                            buf.truncate(k);
                            hasher.update(&buf);
                            n += k as u64;
                            if !send(ReadMsg::Data(Bytes::from(buf))) {
                                return;
                            }
                        }
                        Err(e) => {
                            send(ReadMsg::Failed(e));
                            return;
                        }
                    }
                }
                if !send(ReadMsg::EntryEnd { sha256: hasher.finalize().into(), size: n }) {
                    return;
                }
            }
        }
    }
}

/// What the pre-scan of a backup file found.
#[derive(Debug, Default)]
pub struct Prescan {
    /// Its MANIFEST.json, if it has one.
    pub manifest: Option<Manifest>,
    /// Its schema entry's bytes, if it has one.
    pub schema: Option<Vec<u8>>,
    /// Content digests of the entries decoded for a content comparison (schema, key stores,
    /// idalloc), when asked for.
    pub contents: BTreeMap<String, Content>,
}

/// Largest schema entry the pre-scan keeps.
const MAX_SCHEMA: u64 = 64 << 20;

/// Read a backup file once before the restore: every header is checked and the manifest's
/// presence known before anything is sent (contract §5); the schema is kept so it can be
/// sent first.
pub fn prescan<R: Read>(input: R, with_contents: bool) -> Result<Prescan> {
    let (_, reader) = decompress(input)?;
    let mut reader = BackupReader::new(reader);
    let mut buf = vec![0u8; 1 << 20];
    let mut found = Prescan::default();
    loop {
        match reader.next_item()? {
            BackupItem::Entry { path, size } => {
                let decode = with_contents && content::needs_bytes(path.kind()) && size <= content::CONTENT_LIMIT;
                let keep = (path == EntryPath::Schema && size <= MAX_SCHEMA) || decode;
                let mut bytes = Vec::new();
                loop {
                    let n = reader.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    if keep {
                        bytes.extend_from_slice(&buf[..n]);
                    }
                }
                if decode {
                    found.contents.insert(path.to_string(), content::digest(path.kind(), &bytes));
                }
                if keep && path == EntryPath::Schema {
                    found.schema = Some(bytes);
                }
            }
            BackupItem::Manifest(m) => {
                found.manifest = Some(Manifest::parse(&m)?);
                return Ok(found);
            }
            BackupItem::EndWithoutManifest => return Ok(found),
        }
    }
}

/// Open the backup to restore: a file (`-s FILE`) or stdin (`None` or `-`). A file can be
/// read twice, so it is pre-scanned first: every entry header is checked and the manifest
/// and schema are found before anything is sent (contract §5); the schema and manifest it
/// finds go into `opts` (a manifest given with `--manifest` is kept). A file without a
/// manifest is refused unless `opts.no_manifest`. From stdin nothing is read ahead.
pub fn open_backup(source: Option<&std::path::Path>, opts: &mut ImportOptions) -> Result<Box<dyn Read + Send>> {
    let Some(path) = source.filter(|p| p.as_os_str() != "-") else {
        if opts.resume {
            return Err(Error::usage(
                "--resume reads the backup twice (what the target holds is compared first): give it as a file with -s FILE",
            ));
        }
        return Ok(Box::new(std::io::stdin()));
    };
    let found = prescan(std::io::BufReader::with_capacity(1 << 20, crate::verify::open_input(path)?), opts.resume)
        .map_err(|e| e.context(format!("{} (nothing was sent)", path.display())))?;
    opts.schema = found.schema;
    opts.contents = found.contents;
    match (&opts.manifest, found.manifest) {
        (None, Some(m)) => opts.manifest = Some(m),
        (None, None) if !opts.no_manifest => {
            return Err(Error::truncated(format!(
                "{} has no MANIFEST.json, so sizes and checksums cannot be checked; nothing was sent (use --no-manifest to restore it anyway)",
                path.display()
            )))
        }
        _ => {}
    }
    Ok(Box::new(crate::verify::open_input(path)?))
}

/// The target cluster: its nodes and primary, and where it wants each entry.
struct Targets {
    client: Arc<ClusterClient>,
    /// The target's schema when it already held indexes (`--force`, `--resume`).
    existing: Option<Vec<u8>>,
    /// What the target already holds (`--resume`).
    held: Option<crate::resume::TargetState>,
    nodes: Vec<Node>,
    primary: Node,
    /// Owners of shards and key partitions, asked as the entries come (shared by the send
    /// tasks, which ask it, so that a lookup never holds up the reading of the stream).
    owners: Arc<OwnerCache>,
}

impl Targets {
    /// Check the target before anything is sent (contract §3, §5): it is NORMAL (FeatureBase
    /// creates indexes and fields only then), the token is an admin's, no `Delete` runs,
    /// and it holds no index unless `--force`.
    async fn connect(client: Arc<ClusterClient>, opts: &ImportOptions, events: &Events) -> Result<Targets> {
        let c = client.as_ref();
        let status = c.status().await?;
        if status.nodes.is_empty() {
            return Err(Error::protocol("/status lists no nodes"));
        }
        if status.state != "NORMAL" {
            return Err(Error::unavailable(format!(
                "{}: FeatureBase creates indexes and fields only while the cluster is NORMAL; nothing was sent",
                crate::preflight::describe_state(&status)
            )));
        }
        crate::preflight::require_admin(c).await?;
        crate::preflight::refuse_active_deletes(c, &status, "before the import").await?;
        let schema_json: serde_json::Value = c.get_json(c.entry_node(), "/schema").await?;
        let schema = Schema::from_value(schema_json.clone())?;
        let mut existing = None;
        if !schema.indexes.is_empty() {
            let names: Vec<&str> = schema.indexes.iter().map(|i| i.name.as_str()).collect();
            existing = Some(
                serde_json::to_vec(&schema_json).map_err(|e| Error::internal("encoding a schema").with_source(e))?,
            );
            if opts.resume {
                events.event(Event::Warning(format!(
                    "--resume: the target holds {}; entries it already holds are not sent again",
                    names.join(", ")
                )));
            } else if !opts.force {
                return Err(Error::precondition(format!(
                    "the target cluster is not empty: it holds {} index(es): {}; refusing to restore into it (use --resume to finish an interrupted restore of this backup, --force to overwrite)",
                    names.len(),
                    names.join(", ")
                )));
            } else {
                events.event(Event::Warning(format!(
                    "--force: restoring over existing data; files of these indexes may be overwritten: {}",
                    names.join(", ")
                )));
            }
        }
        let held = if opts.resume { Some(crate::resume::TargetState::read(c).await?) } else { None };
        let primary = status.nodes.iter().find(|n| n.is_primary).cloned().unwrap_or_else(|| status.nodes[0].clone());
        Ok(Targets {
            existing,
            held,
            nodes: status.nodes,
            primary,
            owners: Arc::new(OwnerCache::new(Arc::clone(&client))),
            client,
        })
    }

    /// Where an entry goes: its owners (or how to find them) and the route.
    fn route(&self, path: &EntryPath) -> (Owners, String) {
        match path {
            EntryPath::Schema => (Owners::Known(vec![self.primary.clone()]), "/schema".into()),
            EntryPath::Idalloc => (Owners::Known(vec![self.primary.clone()]), "/internal/idalloc/restore".into()),
            EntryPath::Shard { index, shard } => {
                (Owners::Shard { index: index.clone(), shard: *shard }, format!("/internal/restore/{index}/{shard}"))
            }
            EntryPath::Dataframe { index, shard } => (
                Owners::Shard { index: index.clone(), shard: *shard },
                format!("/internal/dataframe/restore/{index}/{shard}"),
            ),
            EntryPath::IndexKeys { index, partition } => {
                (Owners::Partition(*partition), format!("/internal/translate/index/{index}/{partition}"))
            }
            // Upstream's restore sends field key stores to every node.
            EntryPath::FieldKeys { index, field } => {
                (Owners::Known(self.nodes.clone()), format!("/internal/translate/field/{index}/{field}"))
            }
        }
    }
}

/// The owners of one entry, or what to ask the target for them.
enum Owners {
    Known(Vec<Node>),
    Shard { index: String, shard: u64 },
    Partition(u32),
}

/// The target's answers about who owns what. FeatureBase places a shard on the owners of
/// its shard partition (`ShardNodes` is `PartitionNodes(ShardToShardPartition)` with 256
/// partitions, disco/snapshot.go), so a restore of many small shards need not ask once per
/// shard: after checking on the first shard that the target answers the same for the shard
/// and for its partition, shards are looked up by partition (at most 256 questions for the
/// whole restore). A target that answers otherwise is asked per shard, as before.
struct OwnerCache {
    client: Arc<ClusterClient>,
    by_partition: std::sync::Mutex<HashMap<u32, Vec<Node>>>,
    by_shard: std::sync::Mutex<HashMap<(String, u64), Vec<Node>>>,
    /// Whether shard owners are the owners of the shard's partition on this target.
    shards_by_partition: tokio::sync::OnceCell<bool>,
}

impl OwnerCache {
    fn new(client: Arc<ClusterClient>) -> OwnerCache {
        OwnerCache {
            client,
            by_partition: Default::default(),
            by_shard: Default::default(),
            shards_by_partition: tokio::sync::OnceCell::new(),
        }
    }

    async fn resolve(&self, owners: Owners) -> Result<Vec<Node>> {
        match owners {
            Owners::Known(nodes) => Ok(nodes),
            Owners::Partition(p) => self.partition(p).await,
            Owners::Shard { index, shard } => {
                let partition = crate::topology::shard_partition(&index, shard);
                let by_partition = *self
                    .shards_by_partition
                    .get_or_try_init(|| async {
                        let per_shard = self.shard(&index, shard).await?;
                        let per_partition = self.partition(partition).await?;
                        Ok::<bool, Error>(per_shard.iter().map(|n| &n.id).eq(per_partition.iter().map(|n| &n.id)))
                    })
                    .await?;
                if by_partition {
                    self.partition(partition).await
                } else {
                    self.shard(&index, shard).await
                }
            }
        }
    }

    async fn partition(&self, partition: u32) -> Result<Vec<Node>> {
        if let Some(nodes) = self.by_partition.lock().expect("lock").get(&partition) {
            return Ok(nodes.clone());
        }
        let nodes = self.ask(&format!("/internal/partition/nodes?partition={partition}")).await?;
        self.by_partition.lock().expect("lock").insert(partition, nodes.clone());
        Ok(nodes)
    }

    async fn shard(&self, index: &str, shard: u64) -> Result<Vec<Node>> {
        let key = (index.to_string(), shard);
        if let Some(nodes) = self.by_shard.lock().expect("lock").get(&key) {
            return Ok(nodes.clone());
        }
        let nodes = self.ask(&format!("/internal/fragment/nodes?index={index}&shard={shard}")).await?;
        self.by_shard.lock().expect("lock").insert(key, nodes.clone());
        Ok(nodes)
    }

    async fn ask(&self, path: &str) -> Result<Vec<Node>> {
        let nodes: Vec<Node> = self.client.get_json(self.client.entry_node(), path).await?;
        self.client.trust_nodes(&nodes);
        Ok(nodes)
    }
}

/// One entry on its way to its owners.
struct Outgoing {
    path: EntryPath,
    size: u64,
    bodies: Vec<mpsc::Sender<std::result::Result<Bytes, std::io::Error>>>,
    held: Option<Bytes>,
    prefix: Vec<u8>,
    started: bool,
    /// Not sent as it streams: upstream's "Dataframe is disabled" text (not data), or the
    /// schema (sent whole once read and checked).
    skip: bool,
}

impl Outgoing {
    fn new(path: EntryPath, size: u64) -> Outgoing {
        Outgoing { path, size, bodies: Vec::new(), held: None, prefix: Vec::new(), started: false, skip: false }
    }

    /// Append to the bytes held back (before the first bytes decided where the entry goes).
    fn hold(&mut self, chunk: Bytes) {
        self.held = Some(match self.held.take() {
            None => chunk,
            Some(h) => Bytes::from([&h[..], &chunk[..]].concat()),
        });
    }
}

/// A piece of an entry's body, or the error that ends it unfinished (so no node commits it).
type Chunk = std::result::Result<Bytes, std::io::Error>;

/// The sending of one entry to its owners.
struct EntrySend {
    client: Arc<ClusterClient>,
    owners: Arc<OwnerCache>,
    path: String,
    size: u64,
    route: String,
}

impl EntrySend {
    /// Find the owners, then POST the body from `rx` to each of them at once (each copy
    /// paced by --max-rate); the first failure, once every copy has ended.
    async fn run(self, owners: Owners, mut rx: mpsc::Receiver<Chunk>) -> Result<()> {
        let nodes = self.owners.resolve(owners).await?;
        if nodes.is_empty() {
            return Err(Error::protocol(format!("the target cluster names no owner for {}", self.path)));
        }
        let mut bodies = Vec::with_capacity(nodes.len());
        let mut posts = Vec::with_capacity(nodes.len());
        for node in nodes {
            let (tx, body_rx) = mpsc::channel::<Chunk>(BODY_QUEUE);
            // --max-rate counts every copy sent: an entry for three owners is three bodies.
            let pacer = Arc::clone(&self.client);
            let stream = futures_util::stream::unfold(body_rx, move |mut rx| {
                let pacer = Arc::clone(&pacer);
                async move {
                    let item = rx.recv().await?;
                    if let Ok(chunk) = &item {
                        pacer.pace(chunk.len()).await;
                    }
                    Some((item, rx))
                }
            });
            let body = reqwest::Body::wrap_stream(stream);
            let (client, path, route, size) = (Arc::clone(&self.client), &self.path, &self.route, self.size);
            posts.push(async move {
                client
                    .post(&node.uri, route, body, Some(size), "application/octet-stream")
                    .await
                    .map_err(|e| e.context(format!("sending {path} to {}", node.uri.authority())))
            });
            bodies.push(tx);
        }
        let forward = async move {
            while let Some(item) = rx.recv().await {
                let failed = match item {
                    Ok(chunk) => {
                        let mut stopped = false;
                        for tx in &bodies {
                            stopped |= tx.send(Ok(chunk.clone())).await.is_err();
                        }
                        // A copy that ended early reports why; the others must not end cleanly.
                        stopped.then(|| std::io::Error::other("another copy of this entry failed"))
                    }
                    Err(e) => Some(e),
                };
                if let Some(e) = failed {
                    for tx in &bodies {
                        let _ = tx.send(Err(std::io::Error::new(e.kind(), e.to_string()))).await;
                    }
                    return;
                }
            }
            // The stream's end closes every body: each node now has the whole entry.
        };
        let ((), results) = tokio::join!(forward, futures_util::future::join_all(posts));
        results.into_iter().collect()
    }
}

/// Run the import. `client` is `None` only for a dry run.
pub async fn import<R: Read + Send + 'static>(
    client: Option<Arc<ClusterClient>>,
    input: R,
    opts: &ImportOptions,
    events: Events,
) -> Result<ImportSummary> {
    let started_at = Instant::now();
    if let Some(m) = &opts.manifest {
        // Known up front (-s FILE, --manifest): every entry it lists must arrive.
        events.event(Event::Started {
            files: m.entries.len() as u64,
            optional_files: 0,
            planned_bytes: Some(m.totals.bytes),
        });
    }
    if opts.resume && opts.manifest.is_none() {
        return Err(Error::usage(
            "--resume needs the backup's manifest up front (-s FILE of an fb-export archive, or --manifest FILE) to tell which entries the target already holds",
        ));
    }
    let targets = match client {
        Some(_) if opts.dry_run => return Err(Error::internal("a dry run was given a cluster client")),
        Some(c) => Some(Targets::connect(c, opts, &events).await?),
        None => None,
    };
    if let Some(bytes) = &opts.schema {
        schema_up_front(bytes, opts, targets.as_ref()).await?;
    }
    let (tx, mut rx) = mpsc::channel::<ReadMsg>(16);
    let reader = std::thread::Builder::new()
        .name("fb-import-reader".into())
        .spawn(move || reader_thread(input, tx))
        .map_err(|e| Error::io("starting the reader thread", e))?;
    let mut restore = Restore::new(targets, opts, events.clone());
    let result = restore.run(&mut rx).await;
    // Wait for the last sends, whatever happened, so the report says what the nodes got.
    let send_error = restore.drain().await;
    drop(rx);
    let _ = reader.join();
    let manifest_bytes = match (result, send_error) {
        // A body the send task stopped reading: the task's own error says why.
        (Err(e), Some(why)) if e.kind() == ErrorKind::Io && e.chain().contains(BODY_CLOSED) => {
            return Err(why.context("import failed").with_suffix(&restore.incomplete()))
        }
        (Err(e), _) | (Ok(_), Some(e)) => return Err(e.context("import failed").with_suffix(&restore.incomplete())),
        (Ok(m), None) => m,
    };
    let manifest = restore.check_manifest(manifest_bytes).map_err(|e| e.with_suffix(&restore.incomplete()))?;
    restore.after_restore().await?;
    let seconds = started_at.elapsed().as_secs_f64();
    let (files, bytes) = (restore.seen.len() as u64, restore.bytes);
    let (kept, sent_bytes) = (restore.kept, restore.sent_bytes);
    events.event(Event::Finished {
        files,
        required_files: files,
        bytes,
        seconds,
        manifest_sha256: manifest.as_ref().map(|m| m.manifest_sha256.clone()),
        totals: manifest.as_ref().map(|m| m.totals.clone()),
    });
    Ok(ImportSummary { files, bytes, seconds, checked: manifest.is_some(), kept, sent_bytes })
}

/// The schema known before the stream is read (pre-scan of a file): checked against the
/// manifest and upstream's rules, then created on the target before any data.
async fn schema_up_front(bytes: &[u8], opts: &ImportOptions, targets: Option<&Targets>) -> Result<()> {
    if let Some(entry) = opts.manifest.as_ref().and_then(|m| m.entry("schema")) {
        if entry.sha256 != hex(&Sha256::digest(bytes)) || entry.size != bytes.len() as u64 {
            return Err(Error::verification("the schema does not match the manifest; nothing was sent"));
        }
    }
    let listed: Option<Vec<EntryPath>> =
        opts.manifest.as_ref().map(|m| m.entries.iter().filter_map(|e| EntryPath::parse(&e.path).ok()).collect());
    check_restorable(bytes, listed.as_deref()).map_err(|e| e.with_suffix("; nothing was sent"))?;
    if let Some(t) = targets {
        create_schema(t, bytes, opts.resume)
            .await
            .map_err(|e| e.context("sending the schema; nothing else was sent"))?;
    }
    Ok(())
}

/// The state of a restore while the stream is read: one entry at a time is being read, and
/// up to `--concurrency` entries are being sent.
struct Restore<'a> {
    targets: Option<Targets>,
    opts: &'a ImportOptions,
    events: Events,
    /// Size and SHA-256 of every entry, when the manifest is known up front.
    expected: Option<BTreeMap<String, (u64, String)>>,
    concurrency: usize,
    inflight: JoinSet<Result<()>>,
    /// Entries every owner has received whole.
    sent: Vec<String>,
    /// Every entry read: path, size, SHA-256.
    seen: Vec<(String, u64, String)>,
    current: Option<Outgoing>,
    bytes: u64,
    /// Entries the target already held (`--resume`).
    kept: u64,
    /// Bytes of the entries sent.
    sent_bytes: u64,
    /// The schema as read from the stream (when it was not known up front).
    schema_read: Vec<u8>,
}

impl<'a> Restore<'a> {
    fn new(targets: Option<Targets>, opts: &'a ImportOptions, events: Events) -> Restore<'a> {
        let expected = opts
            .manifest
            .as_ref()
            .map(|m| m.entries.iter().map(|e| (e.path.clone(), (e.size, e.sha256.clone()))).collect());
        let concurrency = targets.as_ref().map(|t| t.client.options().concurrency.max(1)).unwrap_or(1);
        Restore {
            targets,
            opts,
            events,
            expected,
            concurrency,
            inflight: JoinSet::new(),
            sent: Vec::new(),
            seen: Vec::new(),
            current: None,
            bytes: 0,
            kept: 0,
            sent_bytes: 0,
            schema_read: Vec::new(),
        }
    }

    /// What the target holds after a failure, for the end of the error message.
    fn incomplete(&self) -> String {
        if self.opts.dry_run {
            String::new()
        } else if self.sent.is_empty() {
            "; nothing was sent to the cluster".to_string()
        } else {
            let shown: Vec<&str> = self.sent.iter().rev().take(5).map(String::as_str).collect();
            format!(
                "; THE TARGET CLUSTER NOW HOLDS AN INCOMPLETE RESTORE: {} entries were sent (last: {})",
                self.sent.len(),
                shown.join(", ")
            )
        }
    }

    /// Read the stream to its end; the manifest's bytes, if the stream has one.
    async fn run(&mut self, rx: &mut mpsc::Receiver<ReadMsg>) -> Result<Option<Vec<u8>>> {
        loop {
            // Surface a failed send as soon as it happens.
            while let Some(done) = self.inflight.try_join_next() {
                sent(done)?;
            }
            let Some(msg) = rx.recv().await else {
                return Err(Error::io("reading the input", std::io::Error::other("reader stopped")));
            };
            match msg {
                ReadMsg::Failed(e) => return Err(self.on_failed(e).await),
                ReadMsg::Entry { path, size } => self.on_entry(path, size)?,
                ReadMsg::Data(chunk) => self.on_data(chunk).await?,
                ReadMsg::EntryEnd { sha256, size } => self.on_entry_end(sha256, size).await?,
                ReadMsg::Manifest(m) => return Ok(Some(m)),
                ReadMsg::EndWithoutManifest => return Ok(None),
            }
        }
    }

    /// The input broke: the entry being read is aborted on every owner (none commits it).
    async fn on_failed(&mut self, e: Error) -> Error {
        match self.current.take() {
            Some(cur) => {
                let e = e.context(format!("entry {}", cur.path));
                abort(cur).await;
                e
            }
            None => e,
        }
    }

    fn on_entry(&mut self, path: EntryPath, size: u64) -> Result<()> {
        if let Some(exp) = &self.expected {
            match exp.get(&path.to_string()) {
                None => return Err(Error::verification(format!("entry {path} is not listed in the manifest"))),
                Some((s, _)) if *s != size => {
                    return Err(Error::verification(format!(
                        "entry {path}: the archive holds {size} bytes, the manifest lists {s}"
                    )))
                }
                Some(_) => {}
            }
        }
        if self.opts.schema.is_none() && self.seen.is_empty() && path != EntryPath::Schema {
            return Err(Error::invalid(format!(
                "the first entry is {path}, not the schema: the indexes must exist before data is restored (give the backup with -s FILE, which sends the schema first wherever it is)"
            )));
        }
        self.current = Some(Outgoing::new(path, size));
        Ok(())
    }

    /// Bytes of the current entry: held until its first bytes decide where it goes, then
    /// streamed, always one chunk behind (the last one waits for the entry's digest).
    async fn on_data(&mut self, chunk: Bytes) -> Result<()> {
        let mut cur = self.current.take().expect("data follows an entry");
        let result = self.data_for(&mut cur, chunk).await;
        self.current = Some(cur);
        result
    }

    async fn data_for(&mut self, cur: &mut Outgoing, chunk: Bytes) -> Result<()> {
        self.bytes += chunk.len() as u64;
        if cur.path == EntryPath::Schema
            && self.opts.schema.is_none()
            && (self.schema_read.len() + chunk.len()) as u64 <= MAX_SCHEMA
        {
            self.schema_read.extend_from_slice(&chunk);
        }
        self.events.event(Event::Bytes(chunk.len() as u64));
        if cur.started {
            if let Some(prev) = cur.held.replace(chunk) {
                feed(cur, prev).await?;
            }
            return Ok(());
        }
        if cur.prefix.len() < DECLARED_LEN_PREFIX {
            let take = (DECLARED_LEN_PREFIX - cur.prefix.len()).min(chunk.len());
            cur.prefix.extend_from_slice(&chunk[..take]);
        }
        cur.hold(chunk);
        if cur.prefix.len() >= DECLARED_LEN_PREFIX || cur.prefix.len() as u64 >= cur.size {
            self.begin(cur).await?;
        }
        Ok(())
    }

    /// The current entry was read whole: check its digest, let the owners commit it, and
    /// create the schema when this was the schema.
    async fn on_entry_end(&mut self, sha256: [u8; 32], size: u64) -> Result<()> {
        let mut cur = self.current.take().expect("end follows an entry");
        if !cur.started {
            self.begin(&mut cur).await?;
        }
        let digest = hex(&sha256);
        if let Some(exp) = &self.expected {
            let (s, h) = &exp[&cur.path.to_string()];
            if *s != size || *h != digest {
                let path = cur.path.to_string();
                let h = h.clone();
                abort(cur).await;
                return Err(Error::verification(format!(
                    "entry {path}: SHA-256 {digest} does not match the manifest ({h}); it was not committed"
                )));
            }
        }
        if let Some(last) = cur.held.take() {
            feed(&mut cur, last).await?;
        }
        if cur.path == EntryPath::Schema && self.opts.schema.is_none() {
            self.schema_from_stream(size).await?;
        }
        let path = cur.path.to_string();
        let skipped = cur.skip;
        drop(cur); // closes the bodies: the nodes now have every byte
        if cur_is_schema(&path) {
            // Everything else needs the indexes to exist: wait for the schema.
            while let Some(done) = self.inflight.join_next().await {
                sent(done)?;
            }
        }
        while self.inflight.len() > self.concurrency {
            if let Some(done) = self.inflight.join_next().await {
                sent(done)?;
            }
        }
        self.events.event(Event::FileDone { path: path.clone(), size });
        if !skipped {
            self.sent.push(path.clone());
        }
        self.seen.push((path, size, digest));
        Ok(())
    }

    /// The schema read from the stream: whole (it is small), checked, then created.
    async fn schema_from_stream(&mut self, size: u64) -> Result<()> {
        if self.schema_read.len() as u64 != size {
            return Err(Error::invalid(format!(
                "the schema entry holds {size} bytes, more than the {MAX_SCHEMA} fb-import reads"
            )));
        }
        check_restorable(&self.schema_read, None)?;
        if let Some(t) = &self.targets {
            create_schema(t, &self.schema_read, self.opts.resume).await?;
            self.sent.push("schema".into());
        }
        Ok(())
    }

    /// Decide, from the entry's first bytes, whether and where it is sent, and open the sends.
    async fn begin(&mut self, cur: &mut Outgoing) -> Result<()> {
        check_declared(cur)?;
        let is_dataframe_entry = cur.path.kind() == crate::layout::EntryKind::Dataframe;
        let junk_dataframe = is_dataframe_entry
            && cur.prefix.len() as u64 == cur.size
            && crate::format::is_dataframe_placeholder(&cur.prefix);
        if is_dataframe_entry && !junk_dataframe && !crate::format::is_dataframe(&cur.prefix) {
            return Err(Error::invalid(format!(
                "entry {}: not an Arrow or Parquet file, nor upstream's \"Dataframe is disabled\" placeholder ({:?}...): a damaged dataframe",
                cur.path,
                String::from_utf8_lossy(&cur.prefix[..cur.prefix.len().min(40)])
            )));
        }
        cur.started = true;
        // The schema is never streamed: it was sent up front, or is sent when it has been
        // read whole and checked (see `restore_schema`).
        if junk_dataframe || cur.path == EntryPath::Schema {
            if junk_dataframe {
                self.events.event(Event::Warning(format!(
                    "{}: upstream's placeholder ({:?}), saved when dataframes are disabled; not data, not restored",
                    cur.path,
                    String::from_utf8_lossy(&cur.prefix[..cur.prefix.len().min(40)])
                )));
            }
            cur.skip = true;
            return Ok(());
        }
        let Some(targets) = self.targets.as_mut() else {
            return Ok(()); // dry run
        };
        // --resume: an entry the target already holds is read and checked, not sent.
        let path = cur.path.to_string();
        let listed = self.expected.as_ref().and_then(|e| e.get(&path));
        if let (Some(held), Some((_, sha))) = (&targets.held, listed) {
            if held.holds(&path, sha, self.opts.contents.get(&path)) {
                cur.skip = true;
                self.kept += 1;
                return Ok(());
            }
        }
        self.sent_bytes += cur.size;
        // One task per entry: it finds the owners (a lookup never holds up the stream), then
        // sends every copy at once, so --concurrency counts files, each with all its copies.
        let (owners, route) = targets.route(&cur.path);
        // The task hands each chunk on to the owners' bodies at once: a short queue keeps
        // the memory per entry what the bodies' queues hold.
        let (tx, rx) = mpsc::channel::<Chunk>(2);
        let send = EntrySend {
            client: Arc::clone(&targets.client),
            owners: Arc::clone(&targets.owners),
            path: cur.path.to_string(),
            size: cur.size,
            route,
        };
        self.inflight.spawn(send.run(owners, rx));
        cur.bodies.push(tx);
        Ok(())
    }

    /// Wait for every send still running; the first failure, if any.
    async fn drain(&mut self) -> Option<Error> {
        let mut first = None;
        while let Some(done) = self.inflight.join_next().await {
            let result = sent(done);
            if let Err(e) = result {
                first.get_or_insert(e);
            }
        }
        first
    }

    /// Check what was read against the manifest (the stream's own, or the one given); the
    /// manifest the sizes and checksums were checked against, if any.
    fn check_manifest(&self, stream_manifest: Option<Vec<u8>>) -> Result<Option<Manifest>> {
        let manifest = match (stream_manifest, &self.opts.manifest) {
            (Some(bytes), given) => {
                let own = Manifest::parse(&bytes)?;
                if given.as_ref().is_some_and(|g| g.entries_sha256 != own.entries_sha256) {
                    return Err(Error::verification(
                        "the stream's MANIFEST.json differs from the one given with --manifest",
                    ));
                }
                Some(own)
            }
            (None, Some(g)) => Some(g.clone()),
            (None, None) if self.opts.no_manifest => None,
            (None, None) => {
                return Err(Error::truncated(
                    "the stream has no MANIFEST.json: it is incomplete or not from fb-export, so sizes and checksums cannot be checked (use --no-manifest to accept such a stream)",
                ))
            }
        };
        match &manifest {
            Some(m) => check_entries(m, &self.seen)?,
            None => self.events.event(Event::Warning(
                "no manifest: sizes and checksums of the entries could not be checked (--no-manifest)".into(),
            )),
        }
        let schema = self.opts.schema.as_deref().unwrap_or(&self.schema_read);
        let paths: Vec<EntryPath> = self.seen.iter().filter_map(|(p, _, _)| EntryPath::parse(p).ok()).collect();
        check_restorable(schema, Some(&paths))?;
        Ok(manifest)
    }

    /// After a restore: say where the target did not keep the schema as sent, and refuse (78)
    /// when a `Delete` ran meanwhile.
    async fn after_restore(&self) -> Result<()> {
        let Some(t) = &self.targets else { return Ok(()) };
        let c = t.client.as_ref();
        let sent_schema = self.opts.schema.as_deref().unwrap_or(&self.schema_read);
        if let Ok(got) = c.get_json::<serde_json::Value>(c.entry_node(), "/schema").await {
            let got = serde_json::to_vec(&got).unwrap_or_default();
            for change in crate::content::bound_changes(sent_schema, &got) {
                self.events.event(Event::Warning(if change.is_zero_read_as_unset() {
                    format!(
                        "the target changed a field bound of the restored schema: {change} (FeatureBase's POST /schema reads a bound of 0 as unset); the data is restored, but the field accepts a wider range than in the backup"
                    )
                } else {
                    format!(
                        "the target's schema has another field bound than the backup's: {change} (the field existed on the target before); restored values outside it may be refused or clipped"
                    )
                }));
            }
        }
        let status = c.status().await.map_err(|e| e.context("checking the cluster at the end of the import"))?;
        crate::preflight::refuse_active_deletes(c, &status, "at the end of the import").await.map_err(|e| {
            e.with_suffix("; every entry was sent, but the Delete may have changed restored data: restore again into an empty cluster")
        })
    }
}

/// The outcome of one send task; a task that panicked or was cancelled is fbkit's bug (70).
fn sent(done: std::result::Result<Result<()>, tokio::task::JoinError>) -> Result<()> {
    done.map_err(|e| Error::internal(format!("a send task ended early: {e}")))?
}

/// Every entry the manifest lists was read with its size and SHA-256, and no other.
fn check_entries(m: &Manifest, seen: &[(String, u64, String)]) -> Result<()> {
    let got: BTreeMap<&str, (u64, &str)> = seen.iter().map(|(p, s, h)| (p.as_str(), (*s, h.as_str()))).collect();
    for e in &m.entries {
        match got.get(e.path.as_str()) {
            None => {
                return Err(Error::truncated(format!(
                    "entry {} listed in the manifest is missing from the stream",
                    e.path
                )))
            }
            Some((s, h)) if *s != e.size || *h != e.sha256 => {
                return Err(Error::verification(format!(
                    "entry {} does not match the manifest ({} bytes, sha256 {} read; {} bytes, {} listed)",
                    e.path,
                    s,
                    &h[..12],
                    e.size,
                    &e.sha256[..12]
                )))
            }
            Some(_) => {}
        }
    }
    if seen.len() != m.entries.len() {
        return Err(Error::verification("the stream holds entries that its manifest does not list"));
    }
    Ok(())
}

/// Refuse (exit 1, naming what is wrong) a schema upstream's `POST /schema` would refuse,
/// and, given the backup's entries, one whose keyed indexes or fields lack key stores
/// (the checks of `fb-verify --deep`).
fn check_restorable(schema: &[u8], entries: Option<&[EntryPath]>) -> Result<()> {
    let problems = match entries {
        Some(paths) => crate::verify::check_schema_references(schema, paths),
        None => crate::verify::check_schema_references(schema, &[])
            .into_iter()
            .filter(|(path, _)| path == "schema")
            .collect(),
    };
    if problems.is_empty() {
        return Ok(());
    }
    let shown: Vec<String> = problems.iter().take(3).map(|(p, m)| format!("{p}: {m}")).collect();
    let more = if problems.len() > 3 { format!(" (and {} more)", problems.len() - 3) } else { String::new() };
    Err(Error::verification(format!("the backup cannot be restored as it is: {}{more}", shown.join("; "))))
}

/// Create what the target lacks of the backup's schema. An empty target gets the whole
/// schema ([`restore_schema`]). A target that already holds indexes (`--force`,
/// `--resume`) gets the indexes and fields it lacks; one whose schema differs from the
/// backup's is refused (78), and with `strict` (`--resume`) so is one with indexes or fields
/// the backup does not have.
async fn create_schema(t: &Targets, bytes: &[u8], strict: bool) -> Result<()> {
    let Some(existing) = &t.existing else { return restore_schema(&t.client, &t.primary, bytes).await };
    let steps = crate::resume::schema_steps(bytes, existing, strict)?;
    if let Some(doc) = &steps.indexes {
        restore_schema(&t.client, &t.primary, doc).await?;
    }
    for field in &steps.fields {
        create_field(&t.client, &t.primary, field).await?;
    }
    Ok(())
}

/// `POST /index/{i}/field/{f}` with the field's options.
async fn create_field(client: &ClusterClient, primary: &Node, field: &crate::schema::FieldToCreate) -> Result<()> {
    let body = serde_json::to_vec(&serde_json::json!({ "options": field.options }))
        .map_err(|e| Error::internal("encoding field options").with_source(e))?;
    let route = format!("/index/{}/field/{}", field.index, field.field);
    client
        .post(&primary.uri, &route, reqwest::Body::from(body.clone()), Some(body.len() as u64), "application/json")
        .await
        .map_err(|e| e.context(format!("creating field {:?} of index {:?}", field.field, field.index)))
}

/// Create the backup's indexes and fields on the target (its primary). `POST /schema`
/// creates them all, but reads an int or decimal bound of 0 as unset and stores ±2^63
/// instead (upstream's `CreateFieldIfNotExistsWithOptions`); such fields are left out of
/// the posted document and created through `POST /index/{i}/field/{f}`, which keeps the
/// bound. The schema bytes are posted untouched when no field needs that.
async fn restore_schema(client: &ClusterClient, primary: &Node, bytes: &[u8]) -> Result<()> {
    let split = crate::schema::split_zero_bound_fields(bytes)?;
    let posted = split.posted.as_deref().unwrap_or(bytes);
    client
        .post(
            &primary.uri,
            "/schema",
            reqwest::Body::from(posted.to_vec()),
            Some(posted.len() as u64),
            "application/json",
        )
        .await?;
    for field in &split.fields {
        create_field(client, primary, field).await.map_err(|e| e.context("(a bound of 0)"))?;
    }
    Ok(())
}

fn cur_is_schema(path: &str) -> bool {
    path == "schema"
}

/// The first bytes of shard and key files declare their length: it must be the entry's.
fn check_declared(cur: &Outgoing) -> Result<()> {
    match declared_len(cur.path.kind(), &cur.prefix) {
        Ok(Some(d)) if d != cur.size => Err(Error::invalid(format!(
            "entry {}: the file declares {d} bytes but the archive entry holds {}; refusing to send it",
            cur.path, cur.size
        ))),
        Ok(_) => Ok(()),
        Err(p) => Err(Error::invalid(format!("entry {}: not a valid file ({p}); refusing to send it", cur.path))),
    }
}

/// Why a chunk could not be handed on: the entry's send task ended early.
const BODY_CLOSED: &str = "a node stopped reading the body";

/// Send a chunk to every owner's body.
async fn feed(cur: &mut Outgoing, chunk: Bytes) -> Result<()> {
    for tx in &cur.bodies {
        if tx.send(Ok(chunk.clone())).await.is_err() {
            // The send ended early; its task reports why (see `import`).
            return Err(Error::new(ErrorKind::Io, format!("sending {}: {BODY_CLOSED}", cur.path)));
        }
    }
    Ok(())
}

/// End every body with an error, so no node receives the whole entry (and none commits it).
async fn abort(cur: Outgoing) {
    for tx in cur.bodies {
        let _ = tx.send(Err(std::io::Error::other("entry refused by fb-import"))).await;
    }
}
