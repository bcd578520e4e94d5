//! The running cluster: its nodes, topology, schema and fault table, and the loop that
//! serves one node (accepting connections, going down and coming back for `down` faults).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use fb_core::topology::{ClusterStatus, Node, NodeUri, Placement};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::fault::{FaultKind, FaultSpec, FaultSpecError, FaultTable};
use crate::schema_doc::SchemaDoc;
use crate::store::NodeStore;

/// One node of the cluster.
pub(crate) struct NodeInfo {
    /// Node ID; sorting IDs gives node index order.
    pub id: String,
    /// TCP port on 127.0.0.1.
    pub port: u16,
    /// Data directory.
    pub store: NodeStore,
    /// Set while a `down` fault applies to the node.
    pub down: Arc<AtomicBool>,
    /// Whether the node's port is open, as the node's loop last set it.
    pub listening: Listening,
    /// Since when the node is dead (`down`, or frozen by a `hang` on every path), as the
    /// fault table last said; `None` while it lives.
    pub dead_since: Mutex<Option<Instant>>,
}

/// A node's listening state, waitable from threads outside the runtime.
#[derive(Default)]
pub(crate) struct Listening {
    state: Mutex<bool>,
    changed: std::sync::Condvar,
}

impl Listening {
    fn set(&self, on: bool) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = on;
        self.changed.notify_all();
    }

    /// Block until the state is `want` or `timeout` passed; returns whether it is `want`.
    pub(crate) fn wait_for(&self, want: bool, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while *state != want {
            let now = std::time::Instant::now();
            if now >= deadline {
                return false;
            }
            state = self.changed.wait_timeout(state, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
        true
    }
}

/// Fixed settings of a running cluster.
pub(crate) struct Settings {
    pub scheme: &'static str,
    pub cluster_name: String,
    pub auth_token: Option<String>,
    pub read_tokens: Vec<crate::ReadToken>,
    pub expired_tokens: Vec<String>,
    pub dataframes_enabled: bool,
    pub reset_schema_timestamps: bool,
    pub degraded_after: Duration,
}

/// The cluster state `/status` reports (upstream `disco.ClusterState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Normal,
    Degraded,
    Down,
}

impl State {
    /// The name upstream prints.
    pub(crate) fn name(self) -> &'static str {
        match self {
            State::Normal => "NORMAL",
            State::Degraded => "DEGRADED",
            State::Down => "DOWN",
        }
    }
}

/// A query a node reports as running (`GET /queries`), injected by tests.
#[derive(Debug, Clone)]
pub(crate) struct RunningQuery {
    /// The node running it; `None`: every node (a query fans out to every shard owner).
    pub node: Option<usize>,
    pub index: String,
    pub pql: String,
    pub started: Instant,
}

/// State shared by every node's server.
pub(crate) struct Cluster {
    pub nodes: Vec<NodeInfo>,
    pub placement: Placement,
    pub settings: Settings,
    pub schema: RwLock<SchemaDoc>,
    faults: Mutex<FaultTable>,
    /// Bumped on every fault change; hanging requests and node loops wait on it.
    pub fault_gen: watch::Sender<u64>,
    pub churn: crate::churn::ChurnControl,
    /// Queries reported as running by `GET /queries`.
    pub queries: Mutex<Vec<RunningQuery>>,
}

impl Cluster {
    pub(crate) fn new(nodes: Vec<NodeInfo>, placement: Placement, settings: Settings, schema: SchemaDoc) -> Cluster {
        Cluster {
            nodes,
            placement,
            settings,
            schema: RwLock::new(schema),
            faults: Mutex::new(FaultTable::default()),
            fault_gen: watch::channel(0).0,
            churn: Default::default(),
            queries: Mutex::new(Vec::new()),
        }
    }

    /// The fault table (poisoning is ignored: the table is always consistent).
    pub(crate) fn faults(&self) -> std::sync::MutexGuard<'_, FaultTable> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Schema, read access.
    pub(crate) fn schema(&self) -> std::sync::RwLockReadGuard<'_, SchemaDoc> {
        self.schema.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Install a fault; churn starts its background job.
    pub(crate) fn add_fault(self: &Arc<Self>, spec: FaultSpec) -> Result<(), FaultSpecError> {
        spec.check_node(self.nodes.len())?;
        if let FaultKind::Churn { steps, interval_ms } = spec.kind {
            crate::churn::start(self, steps, interval_ms);
            return Ok(());
        }
        self.faults().add(spec);
        self.faults_changed();
        Ok(())
    }

    /// Block until every node listens or not as its `down` flag says (bounded wait), so that
    /// a fault change is in effect when the call that made it returns.
    pub(crate) fn settle(&self) {
        for n in &self.nodes {
            let want = !n.down.load(Ordering::SeqCst);
            n.listening.wait_for(want, std::time::Duration::from_secs(10));
        }
    }

    /// Remove every fault and stop churn.
    pub(crate) fn clear_faults(&self) {
        self.faults().clear();
        self.churn.stop();
        self.faults_changed();
    }

    fn faults_changed(&self) {
        {
            let table = self.faults();
            let now = Instant::now();
            for (i, n) in self.nodes.iter().enumerate() {
                n.down.store(table.is_down(i), Ordering::SeqCst);
                let dead = table.is_down(i) || table.is_frozen(i);
                let mut since = n.dead_since.lock().unwrap_or_else(|e| e.into_inner());
                match (dead, *since) {
                    (true, None) => *since = Some(now),
                    (false, Some(_)) => *since = None,
                    _ => {}
                }
            }
        }
        self.fault_gen.send_modify(|g| *g += 1);
    }

    /// The active faults as SPEC strings (churn included while it runs).
    pub(crate) fn fault_specs(&self) -> Vec<String> {
        let mut out: Vec<String> = self.faults().specs().iter().map(|s| s.to_string()).collect();
        if let Some(spec) = self.churn.running_spec() {
            out.push(spec);
        }
        out
    }

    /// Report a query as running on `node` (`None`: every node) from now on.
    pub(crate) fn add_query(&self, node: Option<usize>, q: crate::ActiveQuery) {
        let mut list = self.queries.lock().unwrap_or_else(|e| e.into_inner());
        list.push(RunningQuery { node, index: q.index, pql: q.pql, started: Instant::now() });
    }

    /// Stop reporting every query.
    pub(crate) fn clear_queries(&self) {
        self.queries.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// The queries node `node` reports, oldest first (then by PQL), as upstream's
    /// `queryTracker.ActiveQueries` sorts them.
    pub(crate) fn queries_on(&self, node: usize) -> Vec<RunningQuery> {
        let mut out: Vec<RunningQuery> = self
            .queries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|q| q.node.is_none_or(|n| n == node))
            .cloned()
            .collect();
        out.sort_by(|a, b| a.started.cmp(&b.started).then_with(|| a.pql.cmp(&b.pql)));
        out
    }

    /// Node index of the cluster's primary.
    pub(crate) fn primary(&self) -> usize {
        self.placement.primary()
    }

    /// Whether the cluster has noticed that node `i` is dead. Upstream learns it when the
    /// node's etcd heartbeat lease expires (etcd/embed.go: the heartbeat key is deleted and
    /// the node's state becomes UNKNOWN), about 20 s after a kill or a SIGSTOP; until then
    /// the node is listed STARTED and requests are still sent or redirected to it. Here the
    /// delay is `degraded_after`; a node that comes back is STARTED again at once.
    pub(crate) fn noticed_dead(&self, i: usize) -> bool {
        let since = *self.nodes[i].dead_since.lock().unwrap_or_else(|e| e.into_inner());
        since.is_some_and(|t| t.elapsed() >= self.settings.degraded_after)
    }

    /// The cluster state, as upstream's `Etcd.ClusterState` (etcd/embed.go) computes it:
    /// NORMAL when every node is STARTED, DOWN when at least `replicas` are not, DEGRADED
    /// in between.
    pub(crate) fn state(&self) -> State {
        let missing = (0..self.nodes.len()).filter(|&i| self.noticed_dead(i)).count();
        if missing == 0 {
            State::Normal
        } else if missing >= self.placement.replicas() {
            State::Down
        } else {
            State::Degraded
        }
    }

    /// The node as `/status` and the node lists describe it.
    pub(crate) fn node_json(&self, i: usize) -> Node {
        let n = &self.nodes[i];
        Node {
            id: n.id.clone(),
            uri: NodeUri { scheme: self.settings.scheme.to_string(), host: "127.0.0.1".into(), port: n.port },
            // No gRPC is served; the HTTP port is reported so that the field is complete.
            grpc_uri: Some(NodeUri { scheme: "grpc".into(), host: "127.0.0.1".into(), port: n.port }),
            is_primary: i == self.primary(),
            state: if self.noticed_dead(i) { "UNKNOWN" } else { "STARTED" }.into(),
        }
    }

    /// `/status` as seen from node `local`.
    pub(crate) fn status(&self, local: usize) -> ClusterStatus {
        let nodes: Vec<Node> = (0..self.nodes.len()).map(|i| self.node_json(i)).collect();
        ClusterStatus {
            state: self.state().name().into(),
            nodes,
            local_id: self.nodes[local].id.clone(),
            cluster_name: self.settings.cluster_name.clone(),
        }
    }

    /// The base URL of node `i`.
    pub(crate) fn url(&self, i: usize) -> String {
        format!("{}://127.0.0.1:{}", self.settings.scheme, self.nodes[i].port)
    }

    /// The owners of a shard, primary owner first.
    pub(crate) fn shard_owners(&self, index: &str, shard: u64) -> Vec<usize> {
        self.placement.shard_owners(index, shard)
    }

    /// The owners of a key partition, primary owner first.
    pub(crate) fn partition_owners(&self, partition: u32) -> Vec<usize> {
        self.placement.partition_owners(partition)
    }

    /// Persist the schema on every node.
    pub(crate) fn save_schema(&self, doc: &SchemaDoc) -> std::io::Result<()> {
        let bytes = doc.stored_bytes();
        for n in &self.nodes {
            n.store.write_bytes(&n.store.root().join("schema"), &bytes)?;
            for idx in doc.indexes() {
                if let Some(name) = idx.get("name").and_then(|v| v.as_str()) {
                    std::fs::create_dir_all(n.store.index_dir(name))?;
                }
            }
        }
        Ok(())
    }
}

/// Bind node `i`'s port on 127.0.0.1.
pub(crate) async fn bind(port: u16) -> std::io::Result<TcpListener> {
    TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await
}

/// Serve node `i` until `shutdown` turns true. While the node is down its port is closed and
/// its connections are dropped; when it comes back it binds the same port again.
pub(crate) async fn run_node(
    cluster: Arc<Cluster>,
    i: usize,
    first: TcpListener,
    tls: Option<TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut listener = Some(first);
    let mut faults = cluster.fault_gen.subscribe();
    loop {
        if *shutdown.borrow() {
            return;
        }
        if cluster.nodes[i].down.load(Ordering::SeqCst) {
            listener = None;
            cluster.nodes[i].listening.set(false);
            tokio::select! {
                _ = faults.changed() => continue,
                _ = shutdown.changed() => return,
            }
        }
        let l = match listener.take() {
            Some(l) => l,
            None => match bind(cluster.nodes[i].port).await {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("fb-devcluster: node {i}: cannot listen on port {} again: {e}", cluster.nodes[i].port);
                    tokio::select! {
                        _ = faults.changed() => continue,
                        _ = shutdown.changed() => return,
                    }
                }
            },
        };
        cluster.nodes[i].listening.set(true);
        // Connections accepted in this listening period; told to stop when the node goes down.
        let (stop_conns, conns_stop) = watch::channel(false);
        loop {
            tokio::select! {
                accepted = l.accept() => {
                    if let Ok((stream, _)) = accepted {
                        let _ = stream.set_nodelay(true);
                        let c = cluster.clone();
                        let stop = conns_stop.clone();
                        let tls = tls.clone();
                        tokio::spawn(async move { serve_connection(c, i, stream, tls, stop).await });
                    }
                }
                _ = faults.changed() => {
                    if cluster.nodes[i].down.load(Ordering::SeqCst) {
                        let _ = stop_conns.send(true);
                        drop(l);
                        cluster.nodes[i].listening.set(false);
                        break;
                    }
                }
                _ = shutdown.changed() => {
                    let _ = stop_conns.send(true);
                    cluster.nodes[i].listening.set(false);
                    return;
                }
            }
        }
    }
}

async fn serve_connection(
    cluster: Arc<Cluster>,
    i: usize,
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    stop: watch::Receiver<bool>,
) {
    match tls {
        Some(acceptor) => {
            let mut stop_hs = stop.clone();
            let stream = tokio::select! {
                s = acceptor.accept(stream) => match s {
                    Ok(s) => s,
                    Err(_) => return,
                },
                _ = stop_hs.changed() => return,
            };
            serve_http(cluster, i, TokioIo::new(stream), stop).await
        }
        None => serve_http(cluster, i, TokioIo::new(stream), stop).await,
    }
}

async fn serve_http<IO>(cluster: Arc<Cluster>, i: usize, io: IO, mut stop: watch::Receiver<bool>)
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| {
        let c = cluster.clone();
        async move { crate::http::handle(c, i, req).await }
    });
    let conn = hyper::server::conn::http1::Builder::new().keep_alive(true).serve_connection(io, svc);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stop.changed() => {}
    }
    // Down or shutting down: let an answer in progress finish (bodies of a down node fail
    // on their own, hanging requests give up), then close.
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}
