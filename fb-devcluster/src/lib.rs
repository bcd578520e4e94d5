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
//!
//! # Modules, bottom up
//!
//! Each module imports only modules listed before it:
//!
//! - leaves: `fault`, `store`, `body`, `schema_doc`, `tls`, `placeholder` (the empty files
//!   upstream serves) and `churn_control`; built on them, `config` (this crate's
//!   [`ClusterConfig`]), `demo` and `seed` (the two data sets), [`data`] (the demo and
//!   placeholder items at their old paths) and [`cli`];
//! - `cluster`: the shared state: nodes, placement, settings, schema, fault table, queries;
//! - `churn`: the churn job, and `churn::add_fault`, the way every fault is installed;
//! - `http`: the API, routed in `http` and answered by its submodules;
//! - `server`: each node's accept loop, handing connections to `http`;
//! - this crate root: [`spawn`] and [`RunningCluster`].

mod body;
mod churn;
mod churn_control;
pub mod cli;
mod cluster;
mod config;
pub mod data;
mod demo;
pub mod fault;
mod http;
mod placeholder;
pub mod schema_doc;
pub mod seed;
mod server;
pub mod store;
pub mod tls;
pub mod upstream;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Context, Result};
use fb_core::topology::Placement;
use tokio::sync::watch;

pub use config::{ActiveQuery, ClusterConfig, Dataframes, ReadToken, DEFAULT_DEGRADED_AFTER};
pub use fault::{FaultKind, FaultSpec, FaultSpecError};
pub use http::VERSION;
pub use tls::TlsFiles;

use cluster::{Cluster, NodeInfo, Settings};
use schema_doc::SchemaDoc;
use store::NodeStore;

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
                    match server::bind(want).await {
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
                    if let Err(e) = churn::add_fault(&cluster, f) {
                        let _ = ready_tx.send(Err(e.into()));
                        return;
                    }
                }
                let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
                let mut tasks = Vec::new();
                for (i, l) in listeners.into_iter().enumerate() {
                    tasks.push(tokio::spawn(server::run_node(
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
        churn::add_fault(&self.cluster, spec)?;
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
