//! `fb-export`: read a whole cluster through one node and write it as one deterministic tar
//! stream (contract §1), `MANIFEST.json` last and only after everything before it succeeded.
//!
//! Files move from HTTP bodies to the output without being held whole: the length of each
//! file is known before its body ends (the RBF or bbolt header in the first bytes, or
//! Content-Length), so the tar header is written first and the body streamed behind it.
//! With `--concurrency N`, N files are fetched at once while a single writer emits entries in
//! the planned order, so the bytes do not depend on N or on which node answered first.
//!
//! Failover: a file is read from its first live owner; connection refused, 5xx, a short or
//! long body move to the next owner. When bytes of the file were already written, the next
//! owner's copy is read from the start and its first bytes must hash to exactly what was
//! written before the rest is appended; otherwise the export fails.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, Semaphore};

use crate::archive::TarWriter;
use crate::client::{ClusterClient, Fetched};
use crate::error::{Error, ErrorKind, Result};
use crate::events::Event;
use crate::format::{declared_len, DECLARED_LEN_PREFIX};
use crate::layout::{EntryKind, EntryPath, MANIFEST_NAME, PARTITION_N};
use crate::manifest::{Manifest, ManifestEntry, SourceInfo};
use crate::preflight;
use crate::schema::Schema;
use crate::topology::{ClusterStatus, Node};

/// What to export and how to stamp it.
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// `--index`: only these indexes (each must exist). Empty: all.
    pub indexes: Vec<String>,
    /// mtime of every entry (`SOURCE_DATE_EPOCH`, else 0).
    pub mtime: u64,
    /// `SOURCE_DATE_EPOCH`, recorded in the manifest's source when set.
    pub source_date_epoch: Option<u64>,
}

/// What a successful export moved.
#[derive(Debug, Clone)]
pub struct ExportSummary {
    /// Entries written (without the manifest).
    pub files: u64,
    /// Bytes of entry data written.
    pub bytes: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// The manifest written last.
    pub manifest: Manifest,
}

/// One file of the plan: its archive path and where it can be read.
#[derive(Debug, Clone)]
pub struct PlannedEntry {
    /// Archive path.
    pub path: EntryPath,
    /// Nodes to try, in order.
    pub owners: Vec<Node>,
    /// Request path and query.
    pub request: String,
    /// Whether a 404 means "there is no such file" rather than a failure. Only dataframes:
    /// every shard the cluster lists, every key partition of a keyed index and every keyed
    /// field's key store must be in the backup (contract §5).
    pub optional: bool,
}

/// The whole plan of an export.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The cluster's status at the start.
    pub status: ClusterStatus,
    /// The schema entry's bytes.
    pub schema_bytes: Vec<u8>,
    /// Every other entry, in archive order.
    pub entries: Vec<PlannedEntry>,
    /// The manifest's `source`.
    pub source: SourceInfo,
    /// Bytes the cluster reports on disk divided by the replica count: an estimate of the
    /// archive size for progress (never used for correctness).
    pub estimated_bytes: Option<u64>,
}

/// Read status, schema, shard lists and owners, and lay out the archive (see [`layout`]).
/// Refused before anything is fetched: a cluster that does not serve its schema, a token
/// without admin rights, key translation the cluster does not serve, a running `Delete`.
pub async fn plan(client: &ClusterClient, opts: &ExportOptions) -> Result<Plan> {
    let status = client.status().await?;
    check_serves_schema(&status)?;
    let info = preflight::require_admin(client).await?;
    let schema = selected_schema(client, opts).await?;
    // Key translation is served only while the cluster is NORMAL; a backup without it would
    // leave keyed columns and rows without their keys.
    if status.state != "NORMAL" && schema.indexes.iter().any(|i| i.keys || i.fields.iter().any(|f| f.keys)) {
        return Err(preflight::key_translation_refused(&status, "cannot back up the key translation"));
    }
    preflight::refuse_active_deletes(client, &status, "before the export").await?;
    let owners = Owners::discover(client, &schema).await?;
    let entries = layout(&schema, &owners, &status);
    let source = describe_source(client, &status, &info, &owners, opts, &schema).await;
    let estimated_bytes = estimate_bytes(client, &status.nodes, owners.replicas).await;
    Ok(Plan { status, schema_bytes: schema.backup_bytes(), entries, source, estimated_bytes })
}

/// A cluster with nodes, in a state that serves its schema: outside NORMAL and DEGRADED,
/// FeatureBase answers `GET /schema` with no index at all, and a backup would be empty and
/// look complete.
fn check_serves_schema(status: &ClusterStatus) -> Result<()> {
    if status.nodes.is_empty() {
        return Err(Error::protocol("/status lists no nodes"));
    }
    if status.state != "NORMAL" && status.state != "DEGRADED" {
        return Err(Error::unavailable(format!(
            "{}: FeatureBase does not serve the schema in that state; bring the nodes back and run the export again",
            preflight::describe_state(status)
        )));
    }
    Ok(())
}

/// The schema to back up: the cluster's, limited to `--index` (each must exist), indexes and
/// fields in name order as upstream's backup walks them, so that the archive order is a
/// function of the content whatever order the server listed them in.
async fn selected_schema(client: &ClusterClient, opts: &ExportOptions) -> Result<Schema> {
    let schema_json: Value = client.get_json(client.entry_node(), "/schema").await?;
    let mut schema = Schema::from_value(schema_json)?;
    if !opts.indexes.is_empty() {
        let known: Vec<&str> = schema.indexes.iter().map(|i| i.name.as_str()).collect();
        if let Some(want) = opts.indexes.iter().find(|w| !known.contains(&w.as_str())) {
            return Err(Error::usage(format!(
                "--index {want:?}: no such index in the cluster (it has: {})",
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            )));
        }
        schema = schema.select(&opts.indexes);
    }
    schema.indexes.sort_by(|a, b| a.name.cmp(&b.name));
    for index in &mut schema.indexes {
        index.fields.sort_by(|a, b| a.name.cmp(&b.name));
    }
    Ok(schema)
}

/// Who holds what, as the cluster says: the owners of every key partition (when an index is
/// keyed) and of every shard the cluster lists for each index.
#[derive(Debug, Clone, Default)]
pub struct Owners {
    /// Owners of key partition `p` at index `p` (empty when no index is keyed).
    pub partitions: Vec<Vec<Node>>,
    /// Per index, its shards in order with their owners, primary owner first.
    pub shards: BTreeMap<String, Vec<(u64, Vec<Node>)>>,
    /// The most owners any shard has.
    pub replicas: usize,
}

impl Owners {
    /// Ask the entry node (`--concurrency` × 4 requests at once); every node named becomes a
    /// node the token may go to.
    async fn discover(client: &ClusterClient, schema: &Schema) -> Result<Owners> {
        let entry_node = client.entry_node();
        let concurrency = client.options().concurrency.max(1) * 4;
        let ask = |paths: Vec<String>| async move {
            futures_util::stream::iter(paths)
                .map(|path| async move { client.get_json::<Vec<Node>>(entry_node, &path).await })
                .buffered(concurrency)
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect::<Result<Vec<Vec<Node>>>>()
        };
        let mut owners = Owners { replicas: 1, ..Owners::default() };
        if schema.indexes.iter().any(|i| i.keys) {
            owners.partitions =
                ask((0..PARTITION_N).map(|p| format!("/internal/partition/nodes?partition={p}")).collect()).await?;
            owners.partitions.iter().for_each(|o| client.trust_nodes(o));
        }
        for index in &schema.indexes {
            let name = &index.name;
            #[derive(serde::Deserialize)]
            struct Shards {
                shards: Option<Vec<u64>>,
            }
            let listed: Shards = client.get_json(entry_node, &format!("/internal/index/{name}/shards")).await?;
            let shards: BTreeSet<u64> = listed.shards.unwrap_or_default().into_iter().collect();
            let lists =
                ask(shards.iter().map(|s| format!("/internal/fragment/nodes?index={name}&shard={s}")).collect())
                    .await?;
            let mut per_shard = Vec::new();
            for (shard, nodes) in shards.into_iter().zip(lists) {
                if nodes.is_empty() {
                    return Err(Error::protocol(format!(
                        "the cluster names no owner for index {name:?} shard {shard}"
                    )));
                }
                owners.replicas = owners.replicas.max(nodes.len());
                client.trust_nodes(&nodes);
                per_shard.push((shard, nodes));
            }
            owners.shards.insert(name.clone(), per_shard);
        }
        Ok(owners)
    }
}

/// The archive's entries after the schema, in order: per index its shards (each followed by
/// its dataframe), then its key partitions and field key stores (key translation after the
/// data it covers); then idalloc (after all data, so every ID the data uses is committed in
/// the allocator state that is restored: no ID is handed out twice). Every entry but a
/// dataframe must be there (contract §5).
pub fn layout(schema: &Schema, owners: &Owners, status: &ClusterStatus) -> Vec<PlannedEntry> {
    let primary = status.nodes.iter().find(|n| n.is_primary).cloned().unwrap_or_else(|| status.nodes[0].clone());
    let mut entries = Vec::new();
    let mut push = |path: EntryPath, owners: Vec<Node>, request: String, optional: bool| {
        entries.push(PlannedEntry { path, owners, request, optional })
    };
    for index in &schema.indexes {
        let name = &index.name;
        for (shard, nodes) in owners.shards.get(name).into_iter().flatten() {
            let shard = *shard;
            push(
                EntryPath::Shard { index: name.clone(), shard },
                nodes.clone(),
                format!("/internal/index/{name}/shard/{shard}/snapshot"),
                false,
            );
            push(
                EntryPath::Dataframe { index: name.clone(), shard },
                nodes.clone(),
                format!("/index/{name}/dataframe/{shard}"),
                true,
            );
        }
        if index.keys {
            for (p, nodes) in owners.partitions.iter().enumerate() {
                push(
                    EntryPath::IndexKeys { index: name.clone(), partition: p as u32 },
                    nodes.clone(),
                    format!("/internal/translate/data?index={name}&partition={p}"),
                    false,
                );
            }
        }
        for field in index.fields.iter().filter(|f| f.keys) {
            // A field's keys are written on the primary only (the owner of partition 0; it
            // does not move when a node stops answering). Other nodes keep a copy fed by a
            // stream from the primary that stops for good on a read error, and answer this
            // request from that copy without asking the primary: it can be stale or empty
            // and still a valid bbolt file (measured: 0 of 7 keys after a 5 s SIGSTOP of the
            // primary, exit 0). So the primary is the only node asked, as upstream's
            // `featurebase backup` does; if it cannot answer within --retry-period the
            // export fails (69) rather than take another node's copy.
            let nodes = vec![primary.clone()];
            push(
                EntryPath::FieldKeys { index: name.clone(), field: field.name.clone() },
                nodes,
                format!("/internal/translate/data?index={name}&field={}", field.name),
                false,
            );
        }
    }
    push(EntryPath::Idalloc, vec![primary], "/internal/idalloc/data".into(), false);
    entries
}

/// The manifest's `source` (contract §2).
async fn describe_source(
    client: &ClusterClient,
    status: &ClusterStatus,
    info: &preflight::ServerInfo,
    owners: &Owners,
    opts: &ExportOptions,
    schema: &Schema,
) -> SourceInfo {
    let mut version = None;
    if let Ok(Fetched::Found(resp)) = client.get(client.entry_node(), "/version", "application/json").await {
        let v: Option<Value> = resp.bytes().await.ok().and_then(|b| serde_json::from_slice(&b).ok());
        version = v.as_ref().and_then(|v| v.get("version")).and_then(Value::as_str).map(str::to_string);
    }
    SourceInfo {
        host: client.options().host.clone(),
        cluster_name: Some(status.cluster_name.clone()).filter(|n| !n.is_empty()),
        nodes: status.nodes.len(),
        // The replica count as the cluster is configured (`/info`), not as observed: a
        // shard whose other owners are down still has that many copies.
        replicas: info.replica_n.filter(|&n| n > 0).unwrap_or(owners.replicas),
        featurebase_version: version.filter(|v| !v.is_empty()),
        indexes: (!opts.indexes.is_empty()).then(|| schema.indexes.iter().map(|i| i.name.clone()).collect()),
        source_date_epoch: opts.source_date_epoch,
        dataframes_disabled: false,
    }
}

/// Sum of `/internal/disk-usage` over the nodes, divided by the replica count; `None` when a
/// node does not answer (progress then shows no ETA).
async fn estimate_bytes(client: &ClusterClient, nodes: &[Node], replicas: usize) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Usage {
        usage: u64,
    }
    let mut total = 0u64;
    for node in nodes {
        match client.get(&node.uri, "/internal/disk-usage", "application/json").await {
            Ok(Fetched::Found(resp)) => {
                let body = resp.bytes().await.ok()?;
                total += serde_json::from_slice::<Usage>(&body).ok()?.usage;
            }
            _ => return None,
        }
    }
    Some(total / replicas.max(1) as u64)
}

/// A message from a fetch task to the writer, for one entry.
enum Piece {
    /// The file exists and holds exactly this many bytes.
    Begin(u64),
    /// The next bytes, holding their share of the file's in-flight budget until written.
    Data(Bytes, BudgetPermit),
    /// The source changed after `written` bytes were sent: the next `written` bytes repeat
    /// them and must match before the rest follows.
    Restart { written: u64, node: String },
    /// The file is complete.
    End,
    /// There is no such file (optional entries only); the reason is recorded.
    Absent(AbsentReason),
    /// The file could not be read from any owner.
    Failed(Error),
}

/// Why an optional entry is not in the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AbsentReason {
    NotFound,
    DataframesDisabled,
}

/// Pieces buffered per file in flight (a bound on the channel; bytes are bounded below).
const PIECES_PER_FILE: usize = 64;

/// Bytes fetched but not yet written, per file in flight, whatever the chunk sizes the HTTP
/// stack hands over. Files in flight are the `--concurrency` being fetched plus those fetched
/// and queued for the writer (the order channel holds `--concurrency` + 1), so buffered
/// bytes stay below (2 × `--concurrency` + 2) × this.
const BYTES_PER_FILE: usize = 4 << 20;
/// The budget is counted in units of this many bytes (a semaphore permit each).
const BUDGET_UNIT: usize = 4096;

/// A chunk's share of its file's in-flight budget; returned when dropped.
type BudgetPermit = tokio::sync::OwnedSemaphorePermit;

/// Wait until the file's budget has room for `chunk`, then send it to the writer. A chunk
/// larger than the whole budget waits for all of it.
async fn send_data(tx: &mpsc::Sender<Piece>, budget: &Arc<Semaphore>, chunk: Bytes) -> std::result::Result<(), ()> {
    let units = chunk.len().div_ceil(BUDGET_UNIT).clamp(1, BYTES_PER_FILE / BUDGET_UNIT) as u32;
    let permit = budget.clone().acquire_many_owned(units).await.map_err(|_| ())?;
    tx.send(Piece::Data(chunk, permit)).await.map_err(|_| ())
}

/// Run the export into `out` (a tar stream); `out` is returned on success, after the
/// manifest and the end-of-archive marker were written and flushed. On failure nothing more
/// is written: no manifest, no trailer, so the output can never look complete.
pub async fn export<W: Write + Send + 'static>(
    client: Arc<ClusterClient>,
    opts: &ExportOptions,
    out: W,
) -> Result<(W, ExportSummary)> {
    let started = Instant::now();
    let plan = plan(&client, opts).await?;
    // Dataframes are written only where the cluster has one: counted apart, so that what
    // `files` promises is exactly what a successful run writes besides them.
    let optional = plan.entries.iter().filter(|e| e.optional).count() as u64;
    let required = plan.entries.len() as u64 - optional + 1; // + the schema
    client.events().event(Event::Started {
        files: required,
        optional_files: optional,
        planned_bytes: plan.estimated_bytes,
    });
    let mtime = opts.mtime;
    let (order_tx, order_rx) =
        mpsc::channel::<(PlannedEntry, mpsc::Receiver<Piece>)>(client.options().concurrency.max(1) + 1);
    let events = client.events().clone();
    let schema_bytes = plan.schema_bytes.clone();
    let source = plan.source.clone();
    // The manifest is written only after the checks at the end (see `final_checks`) passed.
    let (verdict_tx, verdict_rx) = std::sync::mpsc::sync_channel::<Result<()>>(1);
    let writer = std::thread::Builder::new()
        .name("fb-export-writer".into())
        .spawn(move || write_archive(out, mtime, schema_bytes, source, order_rx, verdict_rx, events))
        .map_err(|e| Error::io("starting the writer thread", e))?;

    let sem = Arc::new(Semaphore::new(client.options().concurrency.max(1)));
    let mut tasks = Vec::new();
    // Data fetches not yet known to be complete. Key translation and idalloc must be read
    // after the data they cover has been read completely (contract §1: key translation after the data it covers, idalloc after all data), also
    // with --concurrency > 1: before the first such fetch, wait for every data fetch so far.
    let mut data_in_flight: Vec<tokio::sync::oneshot::Receiver<()>> = Vec::new();
    for entry in plan.entries {
        let barrier = entry.path.is_keys() || entry.path == EntryPath::Idalloc;
        if barrier {
            for done in data_in_flight.drain(..) {
                // An error only means the task ended without signalling; it reports its own.
                let _ = done.await;
            }
        }
        let permit = sem.clone().acquire_owned().await.expect("semaphore never closed");
        let (tx, rx) = mpsc::channel(PIECES_PER_FILE);
        let c = client.clone();
        let e = entry.clone();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        tasks.push(tokio::spawn(async move {
            fetch_entry(&c, &e, &tx, Arc::new(Semaphore::new(BYTES_PER_FILE / BUDGET_UNIT))).await;
            drop(permit);
            let _ = done_tx.send(());
        }));
        if !barrier {
            data_in_flight.push(done_rx);
        }
        if order_tx.send((entry, rx)).await.is_err() {
            break; // the writer stopped; its error is reported below
        }
    }
    drop(order_tx);
    // Every fetch has ended (sent its file, or failed and told the writer) before the cluster
    // is asked again; a writer that already stopped does not wait for the verdict.
    for t in tasks.iter_mut() {
        let _ = t.await;
    }
    let _ = verdict_tx.send(final_checks(&client, &plan.status).await);
    let result = tokio::task::spawn_blocking(move || writer.join())
        .await
        .map_err(|_| Error::internal("the writer thread could not be joined"))?
        .map_err(|_| Error::internal("the writer thread panicked"))?;
    let (out, files, bytes, manifest) = result?;
    let seconds = started.elapsed().as_secs_f64();
    client.events().event(Event::Finished {
        files,
        required_files: required,
        bytes,
        seconds,
        manifest_sha256: Some(manifest.manifest_sha256.clone()),
        totals: Some(manifest.totals.clone()),
    });
    Ok((out, ExportSummary { files, bytes, seconds, manifest }))
}

type WriterResult<W> = Result<(W, u64, u64, Manifest)>;

/// What is checked after the last file was read and before the manifest may vouch for the
/// archive: the cluster still has the nodes it had at the start (owners and shard lists were
/// read from that topology), and no `Delete` is running. A node that went down during the
/// export is only a warning: every entry was read whole from an owner that had it.
async fn final_checks(client: &ClusterClient, start: &ClusterStatus) -> Result<()> {
    let status = client.status().await.map_err(|e| e.context("checking the cluster before writing the manifest"))?;
    let ids = |s: &ClusterStatus| s.nodes.iter().map(|n| n.id.clone()).collect::<BTreeSet<_>>();
    if ids(&status) != ids(start) {
        return Err(Error::unavailable(format!(
            "the cluster's nodes changed during the export (at the start: {}; now: {}); the backup may miss data moved between them; run it again",
            ids(start).into_iter().collect::<Vec<_>>().join(", "),
            ids(&status).into_iter().collect::<Vec<_>>().join(", ")
        )));
    }
    if status.state != "NORMAL" {
        client.events().event(Event::Warning(format!(
            "{} at the end of the export; every entry was read whole from a live owner",
            preflight::describe_state(&status)
        )));
    }
    preflight::refuse_active_deletes(client, &status, "at the end of the export").await
}

fn write_archive<W: Write>(
    out: W,
    mtime: u64,
    schema_bytes: Vec<u8>,
    mut source: SourceInfo,
    mut order_rx: mpsc::Receiver<(PlannedEntry, mpsc::Receiver<Piece>)>,
    verdict: std::sync::mpsc::Receiver<Result<()>>,
    events: crate::events::Events,
) -> WriterResult<W> {
    let out_err = |what: &str, e: std::io::Error| Error::io(format!("writing the archive ({what})"), e);
    let mut tar = TarWriter::new(out, mtime);
    let mut entries = Vec::new();
    let mut bytes = 0u64;
    tar.append("schema", &schema_bytes).map_err(|e| out_err("schema", e))?;
    entries.push(ManifestEntry::new(
        &EntryPath::Schema,
        schema_bytes.len() as u64,
        &Sha256::digest(&schema_bytes).into(),
    ));
    bytes += schema_bytes.len() as u64;
    events.event(Event::FileDone { path: "schema".into(), size: schema_bytes.len() as u64 });
    let mut dataframes_disabled = false;
    while let Some((entry, mut rx)) = order_rx.blocking_recv() {
        let name = entry.path.to_string();
        let mut hasher = Sha256::new();
        let mut size: Option<u64> = None;
        let mut written = 0u64;
        // While verifying a restarted source: (bytes still to compare, hasher of the new copy).
        let mut verify: Option<(u64, Sha256, String)> = None;
        loop {
            let piece = rx.blocking_recv().unwrap_or_else(|| {
                Piece::Failed(Error::internal(format!("fetching {name}: the fetch task ended early")))
            });
            match piece {
                Piece::Absent(reason) => {
                    if reason == AbsentReason::DataframesDisabled {
                        dataframes_disabled = true;
                    }
                    break;
                }
                Piece::Failed(e) => return Err(e),
                Piece::Begin(n) => {
                    tar.begin_entry(&name, n).map_err(|e| out_err(&name, e))?;
                    size = Some(n);
                }
                Piece::Restart { written: w, node } => {
                    debug_assert_eq!(w, written);
                    verify = Some((written, Sha256::new(), node));
                }
                Piece::Data(mut data, _budget) => {
                    if let Some((left, h, node)) = verify.as_mut() {
                        let take = (*left).min(data.len() as u64) as usize;
                        h.update(&data[..take]);
                        *left -= take as u64;
                        data = data.slice(take..);
                        if *left == 0 {
                            let node = node.clone();
                            let (_, h, _) = verify.take().expect("verify state present");
                            if h.finalize() != hasher.clone().finalize() {
                                return Err(Error::unavailable(format!(
                                    "{name}: the copy on {node} differs from the {written} bytes already written from another replica; cannot resume"
                                )));
                            }
                        }
                        if data.is_empty() {
                            continue;
                        }
                    }
                    // Hashed first, reading ahead (the bytes came in on another thread
                    // and may have left the cache), so the write finds them in the cache.
                    crate::sha::hash_ahead(&mut hasher, &data);
                    tar.write_data(&data).map_err(|e| out_err(&name, e))?;
                    written += data.len() as u64;
                    events.event(Event::Bytes(data.len() as u64));
                }
                Piece::End => {
                    let size = size.expect("End follows Begin");
                    if written != size || verify.is_some() {
                        return Err(Error::internal(format!(
                            "{name}: the entry ended after {written} of {size} bytes"
                        )));
                    }
                    entries.push(ManifestEntry::new(&entry.path, size, &hasher.finalize().into()));
                    bytes += size;
                    events.event(Event::FileDone { path: name.clone(), size });
                    break;
                }
            }
        }
    }
    verdict.recv().map_err(|_| Error::internal("no verdict on the cluster before the manifest"))??;
    source.dataframes_disabled = dataframes_disabled;
    let files = entries.len() as u64;
    let manifest = Manifest::new(source.to_map(), entries);
    tar.append(MANIFEST_NAME, &manifest.to_bytes()).map_err(|e| out_err(MANIFEST_NAME, e))?;
    let out = tar.finish().map_err(|e| out_err("end of archive", e))?;
    Ok((out, files, bytes, manifest))
}

/// Why one owner could not serve a file, and whether the next owner should be tried.
struct OwnerFailure {
    error: Error,
    next: bool,
    /// The owner answered 404.
    not_found: bool,
}

impl OwnerFailure {
    /// This owner failed; the next may serve the file.
    fn next(error: Error) -> OwnerFailure {
        OwnerFailure { error, next: true, not_found: false }
    }

    /// No other owner can mend this.
    fn last(error: Error) -> OwnerFailure {
        OwnerFailure { error, next: false, not_found: false }
    }
}

/// How one round over a file's owners ended without the file.
struct RoundFailure {
    /// The last owner's failure.
    error: Error,
    /// Every owner answered 404.
    all_not_found: bool,
    /// Every owner failed as an unavailable node does (refused, no answer, 5xx, 404): only
    /// then may asking again help.
    all_unavailable: bool,
    /// `host:port` of the owners tried.
    tried: Vec<String>,
}

/// An answer whose first bytes told the file's length.
struct Opened {
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<Bytes>> + Send>>,
    prefix: Vec<u8>,
    ended: bool,
    size: u64,
}

/// One file on its way from its owners to the writer. What was announced (`begun`) and
/// written survives a failover: the next owner's copy must have the same length, and its
/// first bytes must hash to what was written before the rest is appended.
struct Transfer<'a> {
    client: &'a ClusterClient,
    entry: &'a PlannedEntry,
    name: String,
    tx: &'a mpsc::Sender<Piece>,
    budget: Arc<Semaphore>,
    begun: Option<u64>,
    written: u64,
}

/// Fetch one file, failing over between its owners, and send it to the writer.
async fn fetch_entry(client: &ClusterClient, entry: &PlannedEntry, tx: &mpsc::Sender<Piece>, budget: Arc<Semaphore>) {
    let transfer = Transfer { client, entry, name: entry.path.to_string(), tx, budget, begun: None, written: 0 };
    transfer.run().await
}

impl Transfer<'_> {
    /// Rounds over the owners. When no owner could serve the file, the cluster's `/status`
    /// decides what follows: while an owner is still listed as up (a node that just died or
    /// froze, before the cluster noticed), or while key translation is refused because the
    /// cluster is not NORMAL (a frozen node may come back), the owners are asked again until
    /// `--retry-period` runs out; then key translation fails with a message naming the
    /// state and the nodes down.
    async fn run(mut self) {
        let started = Instant::now();
        for round in 1u32.. {
            let failure = match self.round().await {
                Ok(()) => return,
                Err(Ok(fatal)) => return self.fail(fatal).await,
                Err(Err(f)) => f,
            };
            let status = match self.client.status().await {
                Ok(s) => s,
                Err(e) => return self.fail(self.give_up(failure, format!("; /status: {}", e.chain()))).await,
            };
            // Key translation while the cluster is not NORMAL: refused until the node is back.
            let refused_by_state = status.state != "NORMAL" && self.entry.path.is_keys();
            let owner_listed_up =
                self.entry.owners.iter().any(|o| status.nodes.iter().any(|n| n.id == o.id && n.state == "STARTED"));
            let pause = crate::client::backoff(round);
            // A 404 from owners that are up is an answer, not an outage: asked once more (the
            // state may have changed between the answers and /status), then final.
            let again = (owner_listed_up || refused_by_state)
                && failure.all_unavailable
                && !(failure.all_not_found && round >= 2)
                && started.elapsed() + pause < self.client.options().retry_period;
            if !again {
                let error = if refused_by_state {
                    preflight::key_translation_refused(&status, &self.name).with_source(failure.error)
                } else if status.state == "NORMAL" {
                    self.give_up(failure, String::new())
                } else {
                    self.give_up(failure, format!(" ({})", preflight::describe_state(&status)))
                };
                return self.fail(error).await;
            }
            self.client.events().event(Event::Retry {
                url: self.name.clone(),
                attempt: round,
                reason: format!("every owner failed, and the cluster still lists one as up: {}", failure.error.chain()),
            });
            tokio::time::sleep(pause).await;
        }
    }

    async fn fail(&self, error: Error) {
        let _ = self.tx.send(Piece::Failed(error)).await;
    }

    fn give_up(&self, failure: RoundFailure, note: String) -> Error {
        let what = if failure.all_not_found { "no owner has it" } else { "no owner could serve it" };
        Error::unavailable(format!("{}: {what}; tried {}{note}", self.name, failure.tried.join(", ")))
            .with_source(failure.error)
    }

    /// Try each owner once. Ok: the file was sent whole (or proved absent). Err(Ok): a
    /// failure no other owner can mend (auth, the writer gone, a copy that differs from bytes
    /// already written). Err(Err): every owner failed.
    async fn round(&mut self) -> std::result::Result<(), std::result::Result<Error, RoundFailure>> {
        let entry = self.entry;
        let owners = self.client.prefer_live(&entry.owners);
        let (mut tried, mut not_found, mut all_unavailable, mut last) = (Vec::new(), 0, true, None);
        for (i, node) in owners.iter().enumerate() {
            tried.push(node.uri.authority());
            let failure = match self.read_from(node).await {
                Ok(Some(reason)) => {
                    let _ = self.tx.send(Piece::Absent(reason)).await;
                    return Ok(());
                }
                Ok(None) => return Ok(()),
                Err(f) => f,
            };
            not_found += usize::from(failure.not_found);
            all_unavailable &= failure.error.kind() == ErrorKind::Unavailable;
            if !failure.next || failure.error.kind() == ErrorKind::Auth {
                return Err(Ok(failure.error));
            }
            self.client.events().event(Event::Failover {
                entry: self.name.clone(),
                from: node.uri.authority(),
                to: owners.get(i + 1).map(|n| n.uri.authority()),
                reason: failure.error.chain(),
            });
            last = Some(failure.error);
        }
        match last {
            Some(error) => {
                Err(Err(RoundFailure { error, all_not_found: not_found == owners.len(), all_unavailable, tried }))
            }
            None => Err(Ok(Error::unavailable(format!("{}: the cluster lists no owner", self.name)))),
        }
    }

    /// Read the file from one node. Ok(None): sent completely. Ok(Some(reason)): the node
    /// proved there is no such file (dataframes only). Err: this node failed (maybe after
    /// sending part of the file), or answered 404 for a file that must exist.
    async fn read_from(&mut self, node: &Node) -> std::result::Result<Option<AbsentReason>, OwnerFailure> {
        let opened = match self.open(node).await? {
            Ok(opened) => opened,
            Err(absent) => return Ok(Some(absent)),
        };
        self.announce(node, opened.size).await?;
        self.stream(node, opened).await?;
        Ok(None)
    }

    /// Ask one node for the file and read its first bytes, which declare the file's length.
    /// Ok(Err(reason)): the node proved there is no such file.
    async fn open(&self, node: &Node) -> std::result::Result<std::result::Result<Opened, AbsentReason>, OwnerFailure> {
        let (name, at, kind) = (&self.name, node.uri.authority(), self.entry.path.kind());
        let resp = match self.client.get(&node.uri, &self.entry.request, "application/octet-stream").await {
            Ok(Fetched::Found(r)) => r,
            // Only a dataframe can be absent, and only with the body of Go's file server for a
            // missing file (upstream serves dataframes with http.ServeFile once the index was
            // found); "Index I Not Found" is also how a refusing cluster state answers.
            Ok(Fetched::NotFound(body)) if kind == EntryKind::Dataframe && body.trim() == "404 page not found" => {
                return Ok(Err(AbsentReason::NotFound))
            }
            // Upstream answers a method its cluster state does not allow with 404 and "api
            // method ... not allowed in state DEGRADED": a refusal for now, not an absent
            // file. A node's view of the state can differ from /status around a frozen node.
            Ok(Fetched::NotFound(body)) if body.contains("not allowed in state") => {
                return Err(OwnerFailure::next(Error::unavailable(format!(
                    "{name} on {at}: refused in the node's cluster state: {}",
                    body.trim()
                ))))
            }
            Ok(Fetched::NotFound(body)) => {
                return Err(OwnerFailure {
                    error: Error::unavailable(format!("{name} on {at}: 404 Not Found: {}", body.trim())),
                    next: true,
                    not_found: true,
                })
            }
            Ok(Fetched::BadRequest(body)) => {
                if kind == EntryKind::Dataframe && body.to_ascii_lowercase().contains("disabled") {
                    return Ok(Err(AbsentReason::DataframesDisabled));
                }
                return Err(OwnerFailure::next(Error::protocol(format!(
                    "{name} on {at}: 400 Bad Request: {}",
                    body.trim()
                ))));
            }
            Err(e) => {
                let next = e.kind() != ErrorKind::Auth;
                return Err(OwnerFailure { error: e.context(format!("{name} on {at}")), next, not_found: false });
            }
        };
        let content_length = resp.content_length();
        let mut body: Opened =
            Opened { body: Box::pin(resp.bytes_stream()), prefix: Vec::new(), ended: false, size: 0 };
        while body.prefix.len() < DECLARED_LEN_PREFIX {
            match body.body.next().await {
                Some(Ok(chunk)) => body.prefix.extend_from_slice(&chunk),
                Some(Err(e)) => {
                    return Err(OwnerFailure::next(
                        Error::unavailable(format!("{name} on {at}: the body broke off")).with_source(e),
                    ))
                }
                None => {
                    body.ended = true;
                    break;
                }
            }
        }
        let prefix = &body.prefix;
        if kind == EntryKind::Dataframe && !crate::format::is_dataframe(prefix) {
            return Err(OwnerFailure::next(Error::protocol(format!(
                "{name} on {at}: the answer is not an Arrow or Parquet file ({:?}...)",
                String::from_utf8_lossy(&prefix[..prefix.len().min(40)])
            ))));
        }
        let declared = declared_len(kind, prefix).map_err(|p| {
            let msg = if body.ended {
                format!("{name} on {at}: the body ended after {} bytes, before a valid file header ({p})", prefix.len())
            } else {
                format!("{name} on {at}: not a valid file: {p}")
            };
            OwnerFailure::next(Error::unavailable(msg))
        })?;
        body.size = match (declared, content_length) {
            (Some(d), Some(c)) if d != c => {
                return Err(OwnerFailure::next(Error::unavailable(format!(
                    "{name} on {at}: Content-Length {c} disagrees with the {d} bytes the file declares"
                ))))
            }
            (Some(d), _) => d,
            (None, Some(c)) => c,
            (None, None) if body.ended => prefix.len() as u64,
            (None, None) => {
                return Err(OwnerFailure::last(Error::protocol(format!(
                    "{name} on {at}: no Content-Length and no length in the file"
                ))))
            }
        };
        Ok(Ok(body))
    }

    fn writer_gone(&self) -> OwnerFailure {
        OwnerFailure::last(Error::io(format!("{}: writer stopped", self.name), std::io::Error::other("writer stopped")))
    }

    /// Tell the writer the file's length the first time; after a failover, check the new
    /// copy has the same length and have the writer verify the bytes already written.
    async fn announce(&mut self, node: &Node, size: u64) -> std::result::Result<(), OwnerFailure> {
        match self.begun {
            None => {
                self.tx.send(Piece::Begin(size)).await.map_err(|_| self.writer_gone())?;
                self.begun = Some(size);
            }
            Some(prev) if prev != size => {
                return Err(OwnerFailure::last(Error::unavailable(format!(
                    "{}: {} has a copy of {size} bytes, but {prev} were announced from another replica; cannot resume",
                    self.name,
                    node.uri.authority()
                ))))
            }
            Some(_) if self.written > 0 => {
                let restart = Piece::Restart { written: self.written, node: node.uri.authority() };
                self.tx.send(restart).await.map_err(|_| self.writer_gone())?;
            }
            Some(_) => {}
        }
        Ok(())
    }

    /// Send the node's copy to the writer, checking it is exactly as long as declared. When
    /// this is a restart, the writer compares the first `written` bytes with what it wrote.
    async fn stream(&mut self, node: &Node, mut opened: Opened) -> std::result::Result<(), OwnerFailure> {
        let (at, size, already) = (node.uri.authority(), opened.size, self.written);
        let too_long = |name: &str| {
            OwnerFailure::next(Error::unavailable(format!(
                "{name} on {at}: body longer than the {size} bytes declared"
            )))
        };
        let mut received = 0u64;
        let mut chunk = Some(Bytes::from(std::mem::take(&mut opened.prefix))).filter(|c| !c.is_empty());
        loop {
            if let Some(data) = chunk.take() {
                if received + data.len() as u64 > size {
                    return Err(too_long(&self.name));
                }
                received += data.len() as u64;
                if received > already {
                    self.written = received;
                }
                // --max-rate: the body is read no faster than the limit, so the node's sends
                // are held back by TCP flow control, not buffered here.
                self.client.pace(data.len()).await;
                send_data(self.tx, &self.budget, data).await.map_err(|_| self.writer_gone())?;
            }
            if opened.ended {
                break;
            }
            match opened.body.next().await {
                Some(Ok(data)) => chunk = Some(data),
                Some(Err(e)) => {
                    return Err(OwnerFailure::next(
                        Error::unavailable(format!(
                            "{} on {at}: the body broke off after {received} of {size} bytes",
                            self.name
                        ))
                        .with_source(e),
                    ))
                }
                None => opened.ended = true,
            }
        }
        if received < size {
            return Err(OwnerFailure::next(Error::unavailable(format!(
                "{} on {at}: the body ended after {received} of the {size} bytes the file declares",
                self.name
            ))));
        }
        self.tx.send(Piece::End).await.map_err(|_| self.writer_gone())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::NodeUri;

    fn node(id: &str, primary: bool) -> Node {
        Node {
            id: id.into(),
            uri: NodeUri { scheme: "http".into(), host: "127.0.0.1".into(), port: 1 },
            grpc_uri: None,
            is_primary: primary,
            state: "STARTED".into(),
        }
    }

    #[test]
    fn layout_puts_keys_after_their_data_and_idalloc_last() {
        let schema = Schema::parse(
            br#"{"indexes":[{"name":"a","options":{"keys":true},"fields":[{"name":"c","options":{"type":"set","keys":true}}]},{"name":"b","options":{}}]}"#,
        )
        .unwrap();
        let (n0, n1) = (node("n0", false), node("n1", true));
        let status = ClusterStatus {
            state: "NORMAL".into(),
            nodes: vec![n0.clone(), n1.clone()],
            local_id: "n0".into(),
            cluster_name: String::new(),
        };
        let mut owners =
            Owners { partitions: vec![vec![n0.clone()]; PARTITION_N as usize], replicas: 1, ..Default::default() };
        owners.shards.insert("a".into(), vec![(0, vec![n0.clone()]), (3, vec![n1.clone()])]);
        owners.shards.insert("b".into(), vec![(1, vec![n1.clone()])]);
        let entries = layout(&schema, &owners, &status);
        let names: Vec<String> = entries.iter().map(|e| e.path.to_string()).collect();
        assert_eq!(
            &names[..4],
            ["indexes/a/shards/0000", "indexes/a/dataframe/0000", "indexes/a/shards/0003", "indexes/a/dataframe/0003"]
        );
        assert_eq!(names[4], "indexes/a/translate/0000");
        assert_eq!(names[4 + 255], "indexes/a/translate/0255");
        assert_eq!(names[4 + 256], "indexes/a/fields/c/translate");
        assert_eq!(&names[261..], ["indexes/b/shards/0001", "indexes/b/dataframe/0001", "idalloc"]);
        assert!(
            entries.iter().all(|e| e.optional == (e.path.kind() == EntryKind::Dataframe)),
            "only dataframes may be absent"
        );
        let field_keys = &entries[4 + 256];
        let asked: Vec<&str> = field_keys.owners.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(asked, ["n1"], "field key stores are asked of the primary only: other nodes' copies may be stale");
        assert_eq!(entries.last().unwrap().owners[0].id, "n1");
    }
}
