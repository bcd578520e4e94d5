//! The one way xtask starts fb-devcluster: the release binary as a child process, on free
//! loopback ports, ready once it has printed every node's URL (waited for with a deadline;
//! seeding large demo shards takes a while). Killed and its data removed when dropped.

use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::process::Guarded;

/// Longest wait for a cluster to print its URLs.
const READY_WITHIN: Duration = Duration::from_secs(300);

/// A running fb-devcluster.
pub struct DevCluster {
    proc: Guarded,
    pub urls: Vec<String>,
    /// Its data directory (one `nodeN` directory per node).
    pub dir: PathBuf,
}

impl DevCluster {
    /// Start `bin` (the fb-devcluster binary) with `nodes` nodes and `replicas` replicas,
    /// its data in `dir` and its stderr in `log`; the demo data set with shards of
    /// `demo_bytes` when given, empty otherwise.
    pub fn start(
        bin: &Path,
        dir: PathBuf,
        log: PathBuf,
        nodes: u16,
        replicas: u16,
        demo_bytes: Option<u64>,
    ) -> Result<DevCluster> {
        let mut cmd = Command::new(bin);
        if let Some(bytes) = demo_bytes {
            cmd.args(["--demo", "--demo-shard-bytes", &bytes.to_string()]);
        }
        Self::spawn(cmd, dir, log, nodes, replicas)
    }

    /// Like [`DevCluster::start`], serving the extracted backup in `seed` (`--seed-from`).
    pub fn start_seeded(
        bin: &Path,
        dir: PathBuf,
        log: PathBuf,
        nodes: u16,
        replicas: u16,
        seed: &Path,
    ) -> Result<DevCluster> {
        let mut cmd = Command::new(bin);
        cmd.arg("--seed-from").arg(seed);
        Self::spawn(cmd, dir, log, nodes, replicas)
    }

    fn spawn(mut cmd: Command, dir: PathBuf, log: PathBuf, nodes: u16, replicas: u16) -> Result<DevCluster> {
        cmd.args(["--nodes", &nodes.to_string(), "--replicas", &replicas.to_string(), "--port", "0", "--data-dir"])
            .arg(&dir);
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(File::create(&log)?);
        let mut proc = Guarded::spawn(&mut cmd, "fb-devcluster", Some(log))?;
        let out = proc.child.stdout.take().context("fb-devcluster stdout")?;
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + READY_WITHIN;
        let mut urls = Vec::new();
        while urls.len() < usize::from(nodes) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.starts_with("http://") => urls.push(line.trim().to_string()),
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!("fb-devcluster printed no URLs within {READY_WITHIN:?}{}", proc.log_tail())
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    bail!("fb-devcluster exited before serving{}", proc.log_tail())
                }
            }
        }
        Ok(DevCluster { proc, urls, dir })
    }

    /// The first node's URL.
    pub fn host(&self) -> &str {
        &self.urls[0]
    }

    /// CPU seconds (user + system) the cluster process has used so far, from
    /// `/proc/PID/stat`; 0 where that cannot be read.
    pub fn cpu_secs(&self) -> f64 {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.proc.child.id())).unwrap_or_default();
        // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let ticks: Vec<f64> = rest.split_whitespace().skip(11).take(2).filter_map(|t| t.parse().ok()).collect();
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        ticks.iter().sum::<f64>() / hz
    }
}

impl Drop for DevCluster {
    fn drop(&mut self) {
        self.proc.kill();
        let _ = fs::remove_dir_all(&self.dir);
    }
}
