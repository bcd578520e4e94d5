//! A real FeatureBase cluster on loopback, from a `featurebase` binary the user built (the
//! interop tests and `cargo xtask bench-upstream` read its path from `FEATUREBASE_BIN`;
//! nothing here fetches or builds it).
//!
//! One server process per node, each with its own HTTP, gRPC, etcd client and etcd peer
//! ports on 127.0.0.1 and its own data and etcd directories, all named in one
//! `--etcd.initial-cluster`. With [`Tls`] every listener speaks https (upstream's embedded
//! etcd too); with [`Auth`] the servers run `--auth.enable` against a test identity
//! provider (upstream requires TLS for that). [`RealCluster::start`] returns once every node
//! says NORMAL and sees all the nodes, and every server is killed when the cluster is
//! dropped. The fault tests kill, stop and resume single nodes.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

/// How long [`RealCluster::start`] waits for NORMAL unless told otherwise: a cold start of
/// a 5-node cluster on a busy 2-core machine takes most of a minute.
pub const READY_WITHIN: Duration = Duration::from_secs(120);
/// Lines of a server's log quoted in an error.
const LOG_TAIL_LINES: usize = 20;
/// How long one `/status` probe may take: a frozen node must not hold up a caller.
const PROBE_TIMEOUT_SECS: &str = "5";
/// Pause between two `/status` probes while waiting for a cluster.
const PROBE_INTERVAL: Duration = Duration::from_millis(300);

/// The `[tls]` settings of every server (PEM files).
#[derive(Debug, Clone)]
pub struct Tls {
    /// `--tls.certificate`: the server certificate, valid for 127.0.0.1.
    pub certificate: PathBuf,
    /// `--tls.key`: its private key.
    pub key: PathBuf,
    /// `--tls.ca-certificate`: the CA that signed it (also what the readiness probe trusts).
    pub ca_certificate: PathBuf,
}

/// `--auth.enable` settings (protocol notes §8). The server parses bearer JWTs without
/// checking their signature and asks `identity_provider` for the token's groups.
#[derive(Debug, Clone)]
pub struct Auth {
    /// Base URL of the identity provider (`/authorize`, `/token`, `/groups`, `/logout`).
    pub identity_provider: String,
    /// `--auth.permissions`: the YAML file naming the admin group and the user groups.
    pub permissions: PathBuf,
    /// A token with admin rights, for the readiness probe (without one `/status` is 403).
    pub admin_token: String,
}

/// What to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Node names are `{name}1`, `{name}2`, ...; also the prefix of the cluster's directory.
    pub name: String,
    /// Number of servers.
    pub nodes: usize,
    /// `--cluster.replicas`.
    pub replicas: usize,
    /// https everywhere when set.
    pub tls: Option<Tls>,
    /// `--auth.enable` when set (needs `tls`).
    pub auth: Option<Auth>,
    /// Deadline for every node to say NORMAL with all the nodes.
    pub ready_within: Duration,
    /// Where the cluster's directory (data, etcd, logs) is made; the system's temporary
    /// directory when unset. The directory is removed on drop.
    pub parent_dir: Option<PathBuf>,
}

impl Config {
    /// `nodes` plain-HTTP servers with `replicas` replicas, no authentication.
    pub fn new(name: &str, nodes: usize, replicas: usize) -> Config {
        Config {
            name: name.to_string(),
            nodes,
            replicas,
            tls: None,
            auth: None,
            ready_within: READY_WITHIN,
            parent_dir: None,
        }
    }
}

/// A running real FeatureBase cluster; every server is killed (and reaped) on drop.
#[derive(Debug)]
pub struct RealCluster {
    /// One per node; `None` once the node was killed.
    servers: Vec<Option<Child>>,
    names: Vec<String>,
    urls: Vec<String>,
    ca_certificate: Option<PathBuf>,
    probe_token: Option<String>,
    dir: tempfile::TempDir,
}

/// `n` distinct free loopback ports, all held at once while they are chosen so that none is
/// handed out twice.
fn free_ports(n: usize) -> Result<Vec<u16>> {
    let held: Vec<TcpListener> =
        (0..n).map(|_| TcpListener::bind("127.0.0.1:0")).collect::<Result<_, _>>().context("choosing ports")?;
    held.iter().map(|l| Ok(l.local_addr()?.port())).collect()
}

/// `GET {url}/status` as JSON, through curl; `Null` when nothing answers within 5 s or the
/// answer is not JSON. `ca` is the CA to trust for https, `token` a bearer token.
pub fn status(url: &str, ca: Option<&Path>, token: Option<&str>) -> Value {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-m", PROBE_TIMEOUT_SECS, "-H", "Accept: application/json"]);
    if let Some(ca) = ca {
        cmd.arg("--cacert").arg(ca);
    }
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    match cmd.arg(format!("{url}/status")).stdin(Stdio::null()).stderr(Stdio::null()).output() {
        Ok(out) => serde_json::from_slice(&out.stdout).unwrap_or_default(),
        Err(_) => Value::Null,
    }
}

impl RealCluster {
    /// Start the servers of `config` from the `featurebase` binary `bin` and wait until every
    /// node says NORMAL and lists all the nodes. Fails, quoting the end of the node's log,
    /// when a server exits or the deadline passes.
    pub fn start(bin: &Path, config: &Config) -> Result<RealCluster> {
        if config.auth.is_some() && config.tls.is_none() {
            bail!("FeatureBase requires TLS when authentication is enabled");
        }
        let dir = match &config.parent_dir {
            Some(parent) => tempfile::Builder::new().prefix(&config.name).tempdir_in(parent),
            None => tempfile::Builder::new().prefix(&config.name).tempdir(),
        }
        .context("creating the cluster's directory")?;
        let scheme = if config.tls.is_some() { "https" } else { "http" };
        // Per node: HTTP, gRPC, etcd client, etcd peer.
        let ports = free_ports(4 * config.nodes)?;
        let addr = |node: usize, which: usize| format!("127.0.0.1:{}", ports[4 * node + which]);
        let url = |node: usize, which: usize| format!("{scheme}://{}", addr(node, which));
        let names: Vec<String> = (1..=config.nodes).map(|i| format!("{}{i}", config.name)).collect();
        let initial = names.iter().enumerate().map(|(i, n)| format!("{n}={}", url(i, 3))).collect::<Vec<_>>().join(",");
        let mut cluster = RealCluster {
            servers: Vec::new(),
            urls: (0..config.nodes).map(|i| url(i, 0)).collect(),
            names,
            ca_certificate: config.tls.as_ref().map(|t| t.ca_certificate.clone()),
            probe_token: config.auth.as_ref().map(|a| a.admin_token.clone()),
            dir,
        };
        for i in 0..config.nodes {
            let node = &cluster.names[i];
            let home = cluster.dir.path().join(node);
            let log = File::create(cluster.log_path(i)).context("creating a server log")?;
            let mut cmd = Command::new(bin);
            cmd.arg("server")
                .args(["--name", node, "--bind", &url(i, 0), "--bind-grpc", &addr(i, 1)])
                .arg("--data-dir")
                .arg(home.join("data"))
                .arg("--etcd.dir")
                .arg(home.join("etcd"))
                .args(["--etcd.listen-client-address", &url(i, 2), "--etcd.advertise-client-address", &url(i, 2)])
                .args(["--etcd.listen-peer-address", &url(i, 3), "--etcd.advertise-peer-address", &url(i, 3)])
                .args(["--etcd.initial-cluster", &initial, "--cluster.replicas", &config.replicas.to_string()])
                // Upstream posts a "version check-in" to analytics.featurebase.com at start;
                // a closed loopback port keeps it on the machine.
                .args(["--verchk-address", "http://127.0.0.1:9/verchk"]);
            if let Some(tls) = &config.tls {
                cmd.arg("--tls.certificate")
                    .arg(&tls.certificate)
                    .arg("--tls.key")
                    .arg(&tls.key)
                    .arg("--tls.ca-certificate")
                    .arg(&tls.ca_certificate);
            }
            if let Some(auth) = &config.auth {
                let idp = &auth.identity_provider;
                cmd.args(["--auth.enable", "--auth.client-id", "fbkit-test", "--auth.client-secret", "not-a-secret"])
                    .args(["--auth.authorize-url", &format!("{idp}/authorize")])
                    .args(["--auth.token-url", &format!("{idp}/token")])
                    .args(["--auth.group-endpoint-url", &format!("{idp}/groups")])
                    .args(["--auth.logout-url", &format!("{idp}/logout")])
                    .args(["--auth.redirect-base-url", &url(i, 0), "--auth.scopes", "openid"])
                    .args(["--auth.secret-key", &"5e".repeat(32)])
                    .arg("--auth.permissions")
                    .arg(&auth.permissions)
                    // Beside the logs: the server opens it before it makes its own directories.
                    // (With the node's directory made beforehand instead, a killed node stayed
                    // STARTED in /status for minutes in two runs of the fault tests.)
                    .arg("--auth.query-log-path")
                    .arg(cluster.dir.path().join(format!("{node}.query.log")));
            }
            let child = cmd
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting {}", bin.display()))?;
            cluster.servers.push(Some(child));
        }
        cluster.wait_until_normal(config.ready_within)?;
        Ok(cluster)
    }

    /// Poll every node's `/status` until it says NORMAL with all the nodes.
    fn wait_until_normal(&mut self, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        for i in 0..self.urls.len() {
            loop {
                let doc = self.status(i);
                let seen = doc["nodes"].as_array().map_or(0, Vec::len);
                if doc["state"] == "NORMAL" && seen == self.urls.len() {
                    break;
                }
                if let Some(Some(server)) = self.servers.get_mut(i) {
                    if let Some(exit) = server.try_wait()? {
                        bail!("featurebase {} exited ({exit}):\n{}", self.names[i], self.log_tail(i));
                    }
                }
                if Instant::now() >= deadline {
                    bail!(
                        "featurebase {} is not NORMAL with {} nodes after {within:?}: {doc}\n{}",
                        self.names[i],
                        self.urls.len(),
                        self.log_tail(i)
                    );
                }
                std::thread::sleep(PROBE_INTERVAL);
            }
        }
        Ok(())
    }

    /// The first node's URL.
    pub fn url(&self) -> &str {
        &self.urls[0]
    }

    /// Every node's URL, in node order.
    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// `/status` of one node (see [`status`]), with the cluster's CA and admin token.
    pub fn status(&self, node: usize) -> Value {
        status(&self.urls[node], self.ca_certificate.as_deref(), self.probe_token.as_deref())
    }

    fn log_path(&self, node: usize) -> PathBuf {
        self.dir.path().join(format!("{}.log", self.names[node]))
    }

    /// The last lines of one server's log (for failure messages).
    pub fn log_tail(&self, node: usize) -> String {
        let log = std::fs::read_to_string(self.log_path(node)).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }

    fn pid(&self, node: usize) -> Result<Pid> {
        match self.servers.get(node) {
            Some(Some(server)) => Ok(Pid::from_raw(i32::try_from(server.id()).context("pid out of range")?)),
            Some(None) => bail!("featurebase {} was killed already", self.names[node]),
            None => bail!("no node {node} in a cluster of {}", self.servers.len()),
        }
    }

    /// SIGKILL one server and reap it: the node is gone for good, as after a crash.
    pub fn kill_node(&mut self, node: usize) -> Result<()> {
        self.pid(node)?;
        if let Some(mut server) = self.servers[node].take() {
            server.kill().with_context(|| format!("killing featurebase {}", self.names[node]))?;
            server.wait()?;
        }
        Ok(())
    }

    /// SIGSTOP one server: it keeps its sockets but answers nothing until
    /// [`RealCluster::resume_node`] (or until the cluster is dropped, which kills it).
    pub fn freeze_node(&self, node: usize) -> Result<()> {
        kill(self.pid(node)?, Signal::SIGSTOP).with_context(|| format!("SIGSTOP to {}", self.names[node]))
    }

    /// SIGCONT one server stopped with [`RealCluster::freeze_node`].
    pub fn resume_node(&self, node: usize) -> Result<()> {
        kill(self.pid(node)?, Signal::SIGCONT).with_context(|| format!("SIGCONT to {}", self.names[node]))
    }
}

impl Drop for RealCluster {
    fn drop(&mut self) {
        // SIGKILL ends a stopped process too, so a frozen node goes with the rest.
        for server in self.servers.iter_mut().flatten() {
            let _ = server.kill();
            let _ = server.wait();
        }
    }
}
