//! The running cluster's shared state: its nodes, topology, settings, schema, fault table,
//! the queries it reports and the state `/status` derives from them. No I/O beyond the
//! nodes' stores; serving is `server`'s, answering `http`'s, the churn job `churn`'s.
//!
//! Layer: cluster, above the leaves (`config`, `fault`, `schema_doc`, `store`,
//! `churn_control`); imports no `churn`, `http` or `server`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use fb_core::topology::{ClusterStatus, Node, NodeUri, Placement};
use tokio::sync::watch;

use crate::churn_control::ChurnControl;
use crate::config::{ActiveQuery, ReadToken};
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
    /// Record whether the node's port is open (the node's serving loop calls this).
    pub(crate) fn set(&self, on: bool) {
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
    pub read_tokens: Vec<ReadToken>,
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
    pub churn: ChurnControl,
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

    /// Put a fault in the fault table. Churn is no table entry but a job, which
    /// `churn::add_fault` starts; that function is the one to install any fault with.
    pub(crate) fn install_fault(&self, spec: FaultSpec) -> Result<(), FaultSpecError> {
        spec.check_node(self.nodes.len())?;
        debug_assert!(!matches!(spec.kind, FaultKind::Churn { .. }), "churn is started by churn::add_fault");
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
    pub(crate) fn add_query(&self, node: Option<usize>, q: ActiveQuery) {
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
