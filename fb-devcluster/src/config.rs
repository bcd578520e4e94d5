//! How to build a cluster: [`ClusterConfig`] and the values it is made of (tokens, active
//! queries, the dataframe switch). Re-exported at the crate root.
//!
//! Layer: leaf (imports only `fault` and `tls`, which are leaves too).

use std::path::PathBuf;
use std::time::Duration;

use crate::fault::FaultSpec;
use crate::tls::TlsFiles;

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
    /// Load this extracted backup (see [`crate::seed`]) into nodes that hold no schema yet.
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
