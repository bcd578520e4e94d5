//! fb-devcluster: a FeatureBase-compatible N-node cluster on loopback, in one process, for
//! testing fbkit's tools without FeatureBase.
//!
//! Each node is an HTTP(S) server on `127.0.0.1` with its own data directory that mirrors the
//! backup layout for what the node holds. The API answers the routes a backup and a restore
//! use with upstream's status codes, bodies, redirects and topology (FNV-1a partitions, jump
//! hash, replica ring). Faults can be injected at start or at run time (see [`fault`]).
//!
//! ```no_run
//! let cluster = fb_devcluster::spawn(fb_devcluster::ClusterConfig {
//!     nodes: 3,
//!     replicas: 2,
//!     demo: true,
//!     ..Default::default()
//! })?;
//! let urls = cluster.urls();
//! cluster.add_fault("down@1")?;
//! cluster.clear_faults();
//! # Ok::<(), anyhow::Error>(())
//! ```

mod body;
mod churn;
pub mod cli;
mod cluster;
pub mod data;
mod demo;
pub mod fault;
mod http;
mod placeholder;
pub mod schema_doc;
pub mod seed;
pub mod store;
pub mod tls;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use fb_core::topology::Placement;
use tokio::sync::watch;

pub use fault::{FaultKind, FaultSpec, FaultSpecError};
pub use http::VERSION;
pub use tls::TlsFiles;

use cluster::{Cluster, NodeInfo, Settings};
use schema_doc::SchemaDoc;
use store::NodeStore;

/// What `GET /index/{i}/dataframe/{s}` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dataframes {
    /// Serve dataframe files (404 for shards without one).
    #[default]
    Enabled,
    /// Answer every dataframe GET with 400 "Dataframe is disabled", like a default upstream
    /// server.
    Disabled,
}

/// How to build a cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Number of nodes (at least 1).
    pub nodes: usize,
    /// Copies of each partition (capped at the node count).
    pub replicas: usize,
    /// Port of node 0; node i listens on `port + i`. 0 picks a free port for each node.
    pub port: u16,
    /// Keep node data here (`node<i>/` per node) instead of a temporary directory removed
    /// when the cluster stops.
    pub data_dir: Option<PathBuf>,
    /// Seed the demo data set (only into nodes that hold no schema yet).
    pub demo: bool,
    /// Pad each demo shard file to about this many bytes (0: natural size).
    pub demo_shard_bytes: u64,
    /// Load this extracted backup (see [`seed`]) into nodes that hold no schema yet.
    pub seed_from: Option<PathBuf>,
    /// Dataframe routes enabled or answering 400.
    pub dataframes: Dataframes,
    /// Require `Authorization: Bearer <token>`; this token has admin rights.
    pub auth_token: Option<String>,
    /// Tokens of users without admin rights, each with the indexes it may read (upstream's
    /// `user-groups` permissions). Any of these, or `auth_token`, turns auth on.
    pub read_tokens: Vec<ReadToken>,
    /// Tokens that are well-formed but expired (upstream: 403 "authenticating: token is
    /// expired: ..." on most routes, 401 on internal ones).
    pub expired_tokens: Vec<String>,
    /// Serve HTTPS (and require client certificates when `client_ca` is set).
    pub tls: Option<TlsFiles>,
    /// Faults installed at start.
    pub faults: Vec<FaultSpec>,
    /// `clusterName` in `/status`.
    pub cluster_name: String,
    /// Give indexes and fields created by `POST /schema` the current time as `createdAt`,
    /// as upstream does (the default). Off: a restored schema keeps its timestamps.
    pub reset_schema_timestamps: bool,
    /// How long after a node dies (`down`, or `hang` on every path) the others notice:
    /// until then they list it STARTED and redirect to it; afterwards `/status` says
    /// DEGRADED (or DOWN) and key-store downloads are refused. Upstream takes about 20 s.
    pub degraded_after: Duration,
    /// Queries every node reports as running in `GET /queries` from the start.
    pub active_queries: Vec<ActiveQuery>,
}

/// The default of [`ClusterConfig::degraded_after`]: shorter than upstream's ~20 s so that
/// a test sees both phases quickly, long enough that a tool started right after a node
/// died meets the first phase (STARTED, redirects to the dead node) as it would upstream.
pub const DEFAULT_DEGRADED_AFTER: Duration = Duration::from_secs(3);

/// A token without admin rights (`--read-token TOKEN=INDEX[,INDEX...]`). Upstream
/// identifies users by the token's claims; fb-devcluster calls the k-th read token's user
/// `reader<k>` (from 1) in its messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadToken {
    /// The bearer token.
    pub token: String,
    /// The indexes it may read (index names; others are refused 403).
    pub indexes: Vec<String>,
}

impl std::str::FromStr for ReadToken {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (token, list) = s.split_once('=').ok_or("expected TOKEN=INDEX[,INDEX...]")?;
        if token.is_empty() {
            return Err("the token is empty".into());
        }
        let indexes: Vec<String> = list.split(',').filter(|i| !i.is_empty()).map(str::to_string).collect();
        Ok(ReadToken { token: token.to_string(), indexes })
    }
}

/// A query reported as running (`--active-query INDEX=PQL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveQuery {
    /// The index it runs on.
    pub index: String,
    /// The PQL text, e.g. `Delete(Row(f=1))`.
    pub pql: String,
}

impl std::str::FromStr for ActiveQuery {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (index, pql) = s.split_once('=').ok_or("expected INDEX=PQL")?;
        if index.is_empty() || pql.is_empty() {
            return Err("expected INDEX=PQL".into());
        }
        Ok(ActiveQuery { index: index.to_string(), pql: pql.to_string() })
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            nodes: 1,
            replicas: 1,
            port: 0,
            data_dir: None,
            demo: false,
            demo_shard_bytes: 0,
            seed_from: None,
            dataframes: Dataframes::Enabled,
            auth_token: None,
            read_tokens: Vec::new(),
            expired_tokens: Vec::new(),
            tls: None,
            faults: Vec::new(),
            cluster_name: "cluster0".into(),
            reset_schema_timestamps: true,
            degraded_after: DEFAULT_DEGRADED_AFTER,
            active_queries: Vec::new(),
        }
    }
}

/// A cluster running on its own thread and tokio runtime. Dropping it stops the servers and
/// removes the temporary data directory (a `data_dir` given in the config is kept).
pub struct RunningCluster {
    cluster: Arc<Cluster>,
    urls: Vec<String>,
    data_dir: PathBuf,
    shutdown: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
    _temp: Option<tempfile::TempDir>,
}

/// Node IDs: fixed-width lowercase hex, so that sorting them gives node index order.
fn node_id(i: usize) -> String {
    format!("{:016x}", 0x5eed_0000_0000_0000u64 + (i as u64) * 0x0001_0203_0405)
}

/// Start a cluster. Returns once every node is listening.
pub fn spawn(cfg: ClusterConfig) -> Result<RunningCluster> {
    if cfg.nodes == 0 {
        bail!("a cluster needs at least one node");
    }
    if cfg.port != 0 && usize::from(cfg.port) + cfg.nodes - 1 > usize::from(u16::MAX) {
        bail!("ports {}..{} do not fit below 65536", cfg.port, usize::from(cfg.port) + cfg.nodes - 1);
    }
    for f in &cfg.faults {
        f.check_node(cfg.nodes)?;
    }
    let tls = match &cfg.tls {
        Some(files) => Some(tls::server_config(files)?),
        None => None,
    };
    let (temp, data_dir) = match &cfg.data_dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            (None, d.clone())
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("fb-devcluster.")
                .tempdir()
                .context("creating a temporary data directory")?;
            let p = t.path().to_path_buf();
            (Some(t), p)
        }
    };
    let placement = Placement::new(cfg.nodes, cfg.replicas);
    let stores: Vec<NodeStore> = (0..cfg.nodes)
        .map(|i| NodeStore::open(data_dir.join(format!("node{i}"))))
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("preparing node directories in {}", data_dir.display()))?;
    let schema = prepare_data(&cfg, &placement, &stores)?;

    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<Arc<Cluster>>>();
    let (shutdown, shutdown_rx) = watch::channel(false);
    let settings = Settings {
        scheme: if tls.is_some() { "https" } else { "http" },
        cluster_name: cfg.cluster_name.clone(),
        auth_token: cfg.auth_token.clone(),
        read_tokens: cfg.read_tokens.clone(),
        expired_tokens: cfg.expired_tokens.clone(),
        dataframes_enabled: cfg.dataframes == Dataframes::Enabled,
        reset_schema_timestamps: cfg.reset_schema_timestamps,
        degraded_after: cfg.degraded_after,
    };
    let queries = cfg.active_queries.clone();
    let faults = cfg.faults.clone();
    let (nodes, port) = (cfg.nodes, cfg.port);
    let thread = std::thread::Builder::new()
        .name("fb-devcluster".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("fb-devcluster-io")
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(anyhow!(e).context("starting the tokio runtime")));
                    return;
                }
            };
            rt.block_on(async move {
                let mut listeners = Vec::with_capacity(nodes);
                for i in 0..nodes {
                    let want = if port == 0 { 0 } else { port + i as u16 };
                    match cluster::bind(want).await {
                        Ok(l) => listeners.push(l),
                        Err(e) => {
                            let _ = ready_tx
                                .send(Err(anyhow!(e).context(format!("node {i}: listening on 127.0.0.1:{want}"))));
                            return;
                        }
                    }
                }
                let mut infos = Vec::with_capacity(nodes);
                for (i, (l, store)) in listeners.iter().zip(stores).enumerate() {
                    let port = match l.local_addr() {
                        Ok(a) => a.port(),
                        Err(e) => {
                            let _ = ready_tx.send(Err(anyhow!(e)));
                            return;
                        }
                    };
                    infos.push(NodeInfo {
                        id: node_id(i),
                        port,
                        store,
                        down: Arc::new(AtomicBool::new(false)),
                        listening: Default::default(),
                        dead_since: Mutex::new(None),
                    });
                }
                let cluster = Arc::new(Cluster::new(infos, placement, settings, schema));
                for q in queries {
                    cluster.add_query(None, q);
                }
                for f in faults {
                    if let Err(e) = cluster.add_fault(f) {
                        let _ = ready_tx.send(Err(e.into()));
                        return;
                    }
                }
                let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
                let mut tasks = Vec::new();
                for (i, l) in listeners.into_iter().enumerate() {
                    tasks.push(tokio::spawn(cluster::run_node(
                        cluster.clone(),
                        i,
                        l,
                        acceptor.clone(),
                        shutdown_rx.clone(),
                    )));
                }
                // Ready once every node that is not down listens.
                let c = cluster.clone();
                let _ = tokio::task::spawn_blocking(move || c.settle()).await;
                let _ = ready_tx.send(Ok(cluster.clone()));
                let mut stop = shutdown_rx;
                while !*stop.borrow() {
                    if stop.changed().await.is_err() {
                        break;
                    }
                }
                cluster.churn.stop();
                for t in tasks {
                    let _ = t.await;
                }
            });
            rt.shutdown_timeout(std::time::Duration::from_secs(2));
        })
        .context("starting the cluster thread")?;
    let cluster = match ready_rx.recv() {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            let _ = thread.join();
            return Err(e);
        }
        Err(_) => {
            let _ = thread.join();
            bail!("the cluster thread stopped before it was ready");
        }
    };
    let urls = (0..cluster.nodes.len()).map(|i| cluster.url(i)).collect();
    Ok(RunningCluster { cluster, urls, data_dir, shutdown, thread: Some(thread), _temp: temp })
}

/// Load the stored schema, seed the demo data set if asked and the nodes hold nothing, and
/// give every node an ID allocator file.
fn prepare_data(cfg: &ClusterConfig, placement: &Placement, stores: &[NodeStore]) -> Result<SchemaDoc> {
    let schema_file = stores[placement.primary()].root().join("schema");
    let mut schema = match std::fs::read(&schema_file) {
        Ok(bytes) => {
            SchemaDoc::from_stored(&bytes).map_err(|e| anyhow!("{}: not a schema: {e}", schema_file.display()))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => SchemaDoc::default(),
        Err(e) => return Err(anyhow!(e).context(format!("reading {}", schema_file.display()))),
    };
    if cfg.demo && cfg.seed_from.is_some() {
        bail!("seed either the demo data or a backup directory, not both");
    }
    if let (Some(dir), true) = (&cfg.seed_from, schema.is_empty()) {
        schema = seed::seed_from(dir, stores, placement)?.0;
    }
    if cfg.demo && schema.is_empty() {
        schema = demo::seed_demo(stores, placement, cfg.demo_shard_bytes).context("generating the demo data")?;
    }
    let bytes = schema.stored_bytes();
    for s in stores {
        s.write_bytes(&s.root().join("schema"), &bytes)?;
        for idx in schema.indexes() {
            if let Some(name) = idx.get("name").and_then(|v| v.as_str()) {
                std::fs::create_dir_all(s.index_dir(name))?;
            }
        }
        let ida = s.root().join("idalloc");
        if !ida.exists() {
            s.write_bytes(&ida, &placeholder::empty_idalloc()?)?;
        }
    }
    Ok(schema)
}

impl RunningCluster {
    /// Base URL of every node, in node index order.
    pub fn urls(&self) -> Vec<String> {
        self.urls.clone()
    }

    /// The directory holding `node<i>/` for every node.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The data directory of node `i`.
    pub fn node_dir(&self, i: usize) -> PathBuf {
        self.data_dir.join(format!("node{i}"))
    }

    /// Node IDs in node index order.
    pub fn node_ids(&self) -> Vec<String> {
        self.cluster.nodes.iter().map(|n| n.id.clone()).collect()
    }

    /// Install a fault given as a SPEC string (see [`fault`]). When it returns, the fault
    /// is in effect (a `down` node's port is closed).
    pub fn add_fault(&self, spec: &str) -> Result<()> {
        let spec: FaultSpec = spec.parse()?;
        self.cluster.add_fault(spec)?;
        self.cluster.settle();
        Ok(())
    }

    /// Remove every fault (a down node listens again before this returns; churn stops).
    pub fn clear_faults(&self) {
        self.cluster.clear_faults();
        self.cluster.settle();
    }

    /// Active faults as SPEC strings.
    pub fn faults(&self) -> Vec<String> {
        self.cluster.fault_specs()
    }

    /// Report `queries` as running on every node (`GET /queries`), replacing any reported
    /// before; an empty list clears them.
    pub fn set_active_queries(&self, queries: &[ActiveQuery]) {
        self.cluster.clear_queries();
        for q in queries {
            self.cluster.add_query(None, q.clone());
        }
    }

    /// The cluster state `/status` reports now (`NORMAL`, `DEGRADED` or `DOWN`).
    pub fn state(&self) -> &'static str {
        self.cluster.state().name()
    }

    /// Churn steps completed so far (by the current or last churn run).
    pub fn churn_steps(&self) -> u64 {
        self.cluster.churn.steps_done()
    }

    /// Block until the running churn job (if any) has finished its steps or was stopped.
    pub fn wait_churn(&self) {
        self.cluster.churn.wait();
    }

    /// Stop the cluster now (what dropping it does).
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for RunningCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The clap definition of the fb-devcluster binary (for man pages and completions).
pub fn cli_command() -> clap::Command {
    <cli::Cli as clap::CommandFactory>::command()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_sort_in_node_order() {
        let ids: Vec<String> = (0..40).map(node_id).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
    }
}
