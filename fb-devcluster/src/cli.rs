//! The command line of the fb-devcluster binary; in the library so that the man page and
//! completions are generated from the same definition (`cargo xtask man`).
//!
//! Layer: leaf (imports only `config`, `fault` and `tls`); the crate root imports it for
//! `cli_command`.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

use crate::config::{ActiveQuery, ClusterConfig, Dataframes, ReadToken};
use crate::fault::FaultSpec;
use crate::tls::TlsFiles;

/// The fault grammar and examples, shown after the options.
pub const AFTER_HELP: &str = "\
FAULT SPECS (--fault, repeatable; also POST /_fbkit/fault with one SPEC as the body on any
node, DELETE /_fbkit/fault to clear every fault, GET /_fbkit/fault to list them):

  KIND[@NODE][:ARG...]     NODE is a node index from 0; without it, every node.
                           PREFIX is a request path prefix (default: every path).

  down@N                   node N stops listening (connections refused, open connections
                           dropped); the others list it STARTED (and redirect to it) for
                           --degraded-after, then UNKNOWN with /status DEGRADED or DOWN; it
                           listens again on the same port when the faults are cleared
  hang[@N][:PREFIX]        requests are read but never answered; without PREFIX the node is
                           frozen, and the cluster notices it like a down node
  error[@N]:STATUS[:COUNT[:PREFIX]]
                           the next COUNT matching requests (all when COUNT is * or absent)
                           answer STATUS, e.g. error@1:503:5:/internal/
  cut[@N]:BYTES[:PREFIX]   response bodies end after BYTES bytes while the headers promise
                           the whole body: a Content-Length response is cut and the
                           connection closed; a chunked one ends cleanly (the file's own
                           header still declares its full length)
  slow[@N]:BYTES_PER_SEC[:PREFIX]
                           response bodies are sent at that rate
  churn[:STEPS[:INTERVAL_MS]]
                           keeps adding keys, ID allocations and shard bits (default 2000
                           steps, 2 ms apart); each step commits the ID first (key
                           translation or ID allocator), then writes the shard bits

The /_fbkit/fault and /_fbkit/query routes need a token when auth is on (401 otherwise)
and are exempt from every fault except down (send them to another node).
POST /_fbkit/query?index=INDEX[&node=N] with a PQL body reports it in GET /queries (on node
N, or on every node); DELETE /_fbkit/query clears them.

EXAMPLES:
  fb-devcluster --nodes 3 --replicas 2 --port 10101 --demo
  fb-devcluster --nodes 3 --replicas 2 --port 0 --seed-from extracted-backup/
  fb-devcluster --nodes 3 --replicas 2 --port 0 --demo --degraded-after 0 --fault down@1
  fb-devcluster --demo --auth-token ADMIN --read-token R=users --expired-token OLD
  fb-devcluster --nodes 1 --port 0 --data-dir /tmp/c1 --auth-token T \\
      --tls-cert c.pem --tls-key k.pem --tls-client-ca ca.pem
  curl -X POST --data 'down@1' http://127.0.0.1:10101/_fbkit/fault";

/// A FeatureBase-compatible N-node test cluster on 127.0.0.1, in one process.
///
/// Node i listens on 127.0.0.1:(PORT+i). When every node serves, one line per node with its
/// URL is printed to stdout; the cluster then runs until SIGINT or SIGTERM.
#[derive(Debug, Parser)]
#[command(name = "fb-devcluster", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// Number of nodes.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub nodes: u16,
    /// Copies of each partition (capped at the node count).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub replicas: u16,
    /// Port of node 0 (node i uses PORT+i); 0 picks free ports.
    #[arg(long, default_value_t = 10101)]
    pub port: u16,
    /// Keep node data in DIR/node<i>/ (default: a temporary directory removed on exit).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Seed a small demo data set (keyed and unkeyed indexes, key translation, ID
    /// allocation, one dataframe) unless the data directory already holds a schema.
    #[arg(long)]
    pub demo: bool,
    /// Load an extracted backup (`featurebase backup -o DIR`, or `tar -xf` of an fb-export or
    /// backuptar stream) into the nodes, placed as a restore would place it, unless the data
    /// directory already holds a schema. The files are served byte for byte.
    #[arg(long, value_name = "DIR", conflicts_with = "demo")]
    pub seed_from: Option<PathBuf>,
    /// Pad each demo shard file to about N bytes (streamed to disk).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub demo_shard_bytes: u64,
    /// Dataframe GETs: served, or 400 "Dataframe is disabled" like a default upstream.
    #[arg(long, value_enum, default_value_t = DataframeArg::Enabled)]
    pub dataframes: DataframeArg,
    /// Require "Authorization: Bearer TOKEN" (401/403 like upstream otherwise); this token
    /// has admin rights.
    #[arg(long, value_name = "TOKEN", env = "FB_DEVCLUSTER_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,
    /// Also accept TOKEN for a user without admin rights who may read only the listed
    /// indexes (repeatable): GET /schema shows only those, their shards and key stores are
    /// served, other indexes and admin routes (/info, /queries, POST /schema, restores)
    /// answer 403 like upstream.
    #[arg(long, value_name = "TOKEN=INDEX[,INDEX...]")]
    pub read_token: Vec<ReadToken>,
    /// Treat TOKEN as well-formed but expired (repeatable): 403 (401 on internal routes)
    /// "authenticating: token is expired: ...", like upstream when the refresh fails.
    #[arg(long, value_name = "TOKEN")]
    pub expired_token: Vec<String>,
    /// How long the other nodes keep listing a dead node (down@N, or hang@N on every path)
    /// as STARTED and redirecting to it, before /status says DEGRADED (or DOWN) and key
    /// stores are refused (404 "... not allowed in state DEGRADED"). Upstream takes about
    /// 20s; 0 notices at once. Units: ms, s, m.
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = parse_duration)]
    pub degraded_after: std::time::Duration,
    /// Report a query as running on every node in GET /queries (repeatable), e.g.
    /// 'users=Delete(Row(color="red"))'. Also POST /_fbkit/query?index=INDEX with the PQL as
    /// the body, DELETE /_fbkit/query to clear.
    #[arg(long, value_name = "INDEX=PQL")]
    pub active_query: Vec<ActiveQuery>,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key).
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates signed by this PEM CA (mTLS).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// Install a fault at start (repeatable; see FAULT SPECS below).
    #[arg(long, value_name = "SPEC")]
    pub fault: Vec<FaultSpec>,
    /// Cluster name reported by /status.
    #[arg(long, default_value = "cluster0")]
    pub cluster_name: String,
    /// Keep the createdAt/updatedAt stamps a POST /schema carries (default: stamp indexes
    /// and fields with the current time, as upstream does, so a restored cluster serves
    /// another schema than its backup's; `fb-manifest diff --content` sees through that)
    #[arg(long)]
    pub keep_schema_timestamps: bool,
}

/// `--dataframes`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DataframeArg {
    /// Serve dataframe files.
    Enabled,
    /// Answer 400 "Dataframe is disabled".
    Disabled,
}

impl Cli {
    /// The cluster configuration these flags describe; a fault naming a node that does not
    /// exist is a usage error.
    pub fn config(self) -> Result<ClusterConfig, clap::Error> {
        if let Some(bad) = self.fault.iter().find_map(|f| f.check_node(usize::from(self.nodes)).err()) {
            return Err(clap::Error::raw(clap::error::ErrorKind::ValueValidation, format!("{bad}\n")));
        }
        Ok(ClusterConfig {
            nodes: usize::from(self.nodes),
            replicas: usize::from(self.replicas),
            port: self.port,
            data_dir: self.data_dir,
            demo: self.demo,
            demo_shard_bytes: self.demo_shard_bytes,
            seed_from: self.seed_from,
            dataframes: match self.dataframes {
                DataframeArg::Enabled => Dataframes::Enabled,
                DataframeArg::Disabled => Dataframes::Disabled,
            },
            auth_token: self.auth_token,
            read_tokens: self.read_token,
            expired_tokens: self.expired_token,
            tls: self.tls_cert.zip(self.tls_key).map(|(cert, key)| TlsFiles {
                cert,
                key,
                client_ca: self.tls_client_ca,
            }),
            faults: self.fault,
            cluster_name: self.cluster_name,
            reset_schema_timestamps: !self.keep_schema_timestamps,
            degraded_after: self.degraded_after,
            active_queries: self.active_query,
        })
    }
}

/// `--degraded-after`: a whole number with a unit (`ms`, `s`, `m`), or `0`.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n: u64 = s[..split].parse().map_err(|_| format!("{s:?}: expected a number and a unit, e.g. 3s or 500ms"))?;
    match &s[split..] {
        "ms" => Ok(std::time::Duration::from_millis(n)),
        "s" => Ok(std::time::Duration::from_secs(n)),
        "m" => Ok(std::time::Duration::from_secs(n.saturating_mul(60))),
        _ => Err(format!("{s:?}: expected a number and a unit (ms, s or m), e.g. 3s")),
    }
}
