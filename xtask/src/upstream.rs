//! `cargo xtask bench-upstream`: fbkit against FeatureBase's own tools on the same real
//! cluster in the same run: `featurebase backuptar` vs `fb-export` (--concurrency 1 and 4),
//! and `featurebase restoretar` vs `fb-import` into fresh clusters. Needs a `featurebase`
//! binary you built yourself (`--featurebase PATH` or `FEATUREBASE_BIN`); nothing here
//! fetches or builds it. Every server listens on 127.0.0.1 only and is killed at the end.
//!
//! Data: the fb-devcluster demo set with padded shards, exported with fb-export and loaded
//! into a real 3-node replicas-2 cluster with fb-import.

use std::fs::{self, File};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

/// `cargo xtask bench-upstream` flags.
#[derive(Debug, clap::Args)]
pub struct UpstreamArgs {
    /// The featurebase binary [default: $FEATUREBASE_BIN]
    #[arg(long, value_name = "PATH")]
    featurebase: Option<PathBuf>,
    /// Size of each of the 12 demo shards
    #[arg(long, value_name = "MIB", default_value_t = 16)]
    shard_mib: u64,
    /// Runs per figure; the fastest is reported
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=10))]
    reps: u32,
    /// Do not run `cargo build --release --bins` first
    #[arg(long)]
    no_build: bool,
}

/// Longest any one command may run.
const LIMIT: Duration = Duration::from_secs(600);

/// A real FeatureBase cluster on loopback; every server is killed on drop.
struct RealCluster {
    servers: Vec<Child>,
    url: String,
    dir: PathBuf,
}

impl RealCluster {
    fn start(bin: &Path, root: &Path, name: &str, nodes: usize, replicas: usize) -> Result<RealCluster> {
        let dir = root.join(name);
        fs::create_dir_all(&dir)?;
        // Hold every port at once while choosing, so none is handed out twice.
        let held: Vec<TcpListener> =
            (0..4 * nodes).map(|_| TcpListener::bind("127.0.0.1:0")).collect::<Result<_, _>>()?;
        let ports: Vec<u16> = held.iter().map(|l| l.local_addr().map(|a| a.port())).collect::<Result<_, _>>()?;
        drop(held);
        let url = |n: usize, k: usize| format!("http://127.0.0.1:{}", ports[4 * n + k]);
        let addr = |n: usize, k: usize| format!("127.0.0.1:{}", ports[4 * n + k]);
        let initial = (0..nodes).map(|n| format!("{name}{n}={}", url(n, 3))).collect::<Vec<_>>().join(",");
        let mut cluster = RealCluster { servers: Vec::new(), url: url(0, 0), dir: dir.clone() };
        for n in 0..nodes {
            let home = dir.join(format!("n{n}"));
            let log = File::create(dir.join(format!("n{n}.log")))?;
            let child = Command::new(bin)
                .arg("server")
                .args(["--name", &format!("{name}{n}"), "--bind", &addr(n, 0), "--bind-grpc", &addr(n, 1)])
                .arg("--data-dir")
                .arg(home.join("data"))
                .arg("--etcd.dir")
                .arg(home.join("etcd"))
                .args(["--etcd.listen-client-address", &url(n, 2), "--etcd.advertise-client-address", &url(n, 2)])
                .args(["--etcd.listen-peer-address", &url(n, 3), "--etcd.advertise-peer-address", &url(n, 3)])
                .args(["--etcd.initial-cluster", &initial, "--cluster.replicas", &replicas.to_string()])
                // Keep upstream's start-up "version check-in" on the machine (a closed port).
                .args(["--verchk-address", "http://127.0.0.1:9/verchk"])
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting {}", bin.display()))?;
            cluster.servers.push(child);
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        for n in 0..nodes {
            loop {
                let out = Command::new("curl")
                    .args(["-s", "-m", "5", "-H", "Accept: application/json", &format!("{}/status", url(n, 0))])
                    .output()?;
                let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
                if doc["state"] == "NORMAL" && doc["nodes"].as_array().map_or(0, Vec::len) == nodes {
                    break;
                }
                if let Some(status) = cluster.servers[n].try_wait()? {
                    bail!("featurebase node {n} of {name} exited ({status}); see {}", dir.display());
                }
                ensure!(Instant::now() < deadline, "{name} was not NORMAL within 120 s; see {}", dir.display());
                std::thread::sleep(Duration::from_millis(300));
            }
        }
        Ok(cluster)
    }

    fn host(&self) -> &str {
        &self.url
    }
}

impl Drop for RealCluster {
    fn drop(&mut self) {
        for s in &mut self.servers {
            let _ = s.kill();
            let _ = s.wait();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Run `cmd` to completion (stdout discarded unless redirected by the caller); its wall time.
fn timed(mut cmd: Command, what: &str) -> Result<f64> {
    let started = Instant::now();
    let mut child = cmd.stdin(Stdio::null()).spawn().with_context(|| format!("starting {what}"))?;
    loop {
        if let Some(status) = child.try_wait()? {
            ensure!(status.success(), "{what} failed ({status})");
            return Ok(started.elapsed().as_secs_f64());
        }
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{what} did not finish within {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn best(times: &[f64]) -> f64 {
    times.iter().copied().fold(f64::INFINITY, f64::min)
}

/// Run the side-by-side benchmark.
pub fn run(root: &Path, args: UpstreamArgs) -> Result<()> {
    let fb = match args.featurebase.or_else(|| std::env::var_os("FEATUREBASE_BIN").map(PathBuf::from)) {
        Some(p) => p,
        None => bail!("give --featurebase PATH or set FEATUREBASE_BIN to a featurebase binary you built"),
    };
    ensure!(fb.is_file(), "{}: no such file", fb.display());
    if !args.no_build {
        let status =
            Command::new(env!("CARGO")).args(["build", "--release", "--bins", "--quiet"]).current_dir(root).status()?;
        ensure!(status.success(), "cargo build --release failed");
    }
    let bin = root.join("target/release");
    let tmp = tempfile::Builder::new().prefix("fbkit-bench-upstream.").tempdir()?;
    let t = tmp.path();
    let started = Instant::now();
    let note = |what: &str| eprintln!("bench-upstream [{:5.1}s]: {what}", started.elapsed().as_secs_f64());

    note(&format!("demo data: 12 shards of {} MiB from fb-devcluster", args.shard_mib));
    let demo = t.join("demo.tar");
    {
        let mut dev = Command::new(bin.join("fb-devcluster"))
            .args(["--nodes", "1", "--port", "0", "--demo", "--demo-shard-bytes", &(args.shard_mib << 20).to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(dev.stdout.take().context("stdout")?), &mut line)?;
        let mut export = Command::new(bin.join("fb-export"));
        export.args(["--host", line.trim(), "-q", "-o"]).arg(&demo);
        let result = timed(export, "fb-export of the demo cluster");
        let _ = dev.kill();
        let _ = dev.wait();
        result?;
    }

    note("starting a real 3-node replicas-2 cluster and loading it with fb-import");
    let src = RealCluster::start(&fb, t, "src", 3, 2)?;
    let mut load = Command::new(bin.join("fb-import"));
    load.args(["--host", src.host(), "-q", "--concurrency", "4", "-s"]).arg(&demo);
    timed(load, "fb-import into the real cluster")?;

    // backuptar does not fsync its output: fb-export runs with --no-sync to do the same work,
    // and once more with its default (file and directory fsynced) for the price of that.
    let (mut backuptar, mut export1, mut export4, mut export_sync) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (theirs, ours) = (t.join("backuptar.tar"), t.join("fb-export.tar"));
    for rep in 0..args.reps {
        note(&format!(
            "backup run {}/{}: featurebase backuptar; fb-export -c 1, -c 4, -c 1 with fsync",
            rep + 1,
            args.reps
        ));
        let _ = fs::remove_file(&theirs);
        let mut cmd = Command::new(&fb);
        cmd.args(["backuptar", "--host", src.host(), "-o"]).arg(&theirs).stdout(Stdio::null()).stderr(Stdio::null());
        backuptar.push(timed(cmd, "featurebase backuptar")?);
        for (c, sync, times) in [(1, false, &mut export1), (4, false, &mut export4), (1, true, &mut export_sync)] {
            let mut cmd = Command::new(bin.join("fb-export"));
            cmd.args(["--host", src.host(), "-q", "--concurrency", &c.to_string()]);
            if !sync {
                cmd.arg("--no-sync");
            }
            cmd.arg("-o").arg(&ours);
            times.push(timed(cmd, "fb-export")?);
        }
    }
    let archive_bytes = fs::metadata(&ours)?.len();
    drop(src);

    let (mut restoretar, mut import1, mut import4) = (Vec::new(), Vec::new(), Vec::new());
    for rep in 0..args.reps {
        note(&format!(
            "restore run {}/{}: restoretar, fb-import -c 1, fb-import -c 4 into fresh clusters",
            rep + 1,
            args.reps
        ));
        for (what, times) in [("restoretar", &mut restoretar), ("import1", &mut import1), ("import4", &mut import4)] {
            let dst = RealCluster::start(&fb, t, "dst", 3, 2)?;
            let cmd = match what {
                "restoretar" => {
                    let mut cmd = Command::new(&fb);
                    cmd.args(["restoretar", "--host", dst.host(), "-s"]).arg(&theirs);
                    cmd.stdout(Stdio::null()).stderr(Stdio::null());
                    cmd
                }
                _ => {
                    let c = if what == "import1" { "1" } else { "4" };
                    let mut cmd = Command::new(bin.join("fb-import"));
                    cmd.args(["--host", dst.host(), "-q", "--concurrency", c, "-s"]).arg(&ours);
                    cmd
                }
            };
            times.push(timed(cmd, what)?);
        }
    }

    let mb = |secs: f64| archive_bytes as f64 / secs / 1e6;
    let (b, e1, e4, es) = (best(&backuptar), best(&export1), best(&export4), best(&export_sync));
    let (r, i1, i4) = (best(&restoretar), best(&import1), best(&import4));
    println!(
        "fbkit vs FeatureBase's own tools ({}), same real 3-node replicas-2 cluster on 127.0.0.1, {:.1} MiB archive, best of {}; ratio > 1 means fbkit is faster",
        fb.display(),
        archive_bytes as f64 / (1 << 20) as f64,
        args.reps
    );
    println!("| figure | fbkit | upstream | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| fb-export -c 1 --no-sync vs backuptar | {:.2} s, {:.0} MB/s | {:.2} s | {:.2}x |",
        e1,
        mb(e1),
        b,
        b / e1
    );
    println!(
        "| fb-export -c 4 --no-sync vs backuptar | {:.2} s, {:.0} MB/s | {:.2} s | {:.2}x |",
        e4,
        mb(e4),
        b,
        b / e4
    );
    println!(
        "| fb-export -c 1 (fsync, the default) vs backuptar (no fsync) | {:.2} s, {:.0} MB/s | {:.2} s | {:.2}x |",
        es,
        mb(es),
        b,
        b / es
    );
    println!("| fb-import -c 1 vs restoretar | {:.2} s, {:.0} MB/s | {:.2} s | {:.2}x |", i1, mb(i1), r, r / i1);
    println!("| fb-import -c 4 vs restoretar | {:.2} s, {:.0} MB/s | {:.2} s | {:.2}x |", i4, mb(i4), r, r / i4);
    println!(
        "summary: fb-export {:.2}x/{:.2}x backuptar (c=1/c=4), fb-import {:.2}x/{:.2}x restoretar; bench took {:.0} s",
        b / e1,
        b / e4,
        r / i1,
        r / i4,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
