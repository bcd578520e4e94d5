//! `cargo xtask bench-upstream`: fbkit against FeatureBase's own tools on the same real
//! cluster in the same run: `featurebase backuptar` vs `fb-export` (--concurrency 1 and 4),
//! and `featurebase restoretar` vs `fb-import` into fresh clusters. Needs a `featurebase`
//! binary you built yourself (`--featurebase PATH` or `FEATUREBASE_BIN`); nothing here
//! fetches or builds it. Every server listens on 127.0.0.1 only and is killed at the end.
//!
//! Data: the fb-devcluster demo set with padded shards, exported with fb-export and loaded
//! into a real 3-node replicas-2 cluster with fb-import.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Result};
use fb_devcluster::upstream::{Config, RealCluster};

use crate::clusters::DevCluster;
use crate::process::{release_binaries, Runner};

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

/// A real `nodes`-node cluster with `replicas` replicas, its directory in `root`.
fn real_cluster(fb: &Path, root: &Path, name: &str, nodes: usize, replicas: usize) -> Result<RealCluster> {
    let mut config = Config::new(name, nodes, replicas);
    config.parent_dir = Some(root.to_path_buf());
    RealCluster::start(fb, &config)
}

/// The wall time of one command run to completion.
fn timed(runner: &mut Runner, cmd: Command) -> Result<f64> {
    Ok(runner.run_to_null(cmd)?.secs)
}

fn best(times: &[f64]) -> f64 {
    times.iter().copied().fold(f64::INFINITY, f64::min)
}

/// One row of the table: fbkit's best time against upstream's for the same work.
struct Versus {
    figure: &'static str,
    fbkit: f64,
    upstream: f64,
}

/// Run the side-by-side benchmark.
pub fn run(root: &Path, args: UpstreamArgs) -> Result<()> {
    let fb = match args.featurebase.or_else(|| std::env::var_os("FEATUREBASE_BIN").map(PathBuf::from)) {
        Some(p) => p,
        None => bail!("give --featurebase PATH or set FEATUREBASE_BIN to a featurebase binary you built"),
    };
    ensure!(fb.is_file(), "{}: no such file", fb.display());
    let bin = release_binaries(root, !args.no_build)?;
    let tmp = tempfile::Builder::new().prefix("fbkit-bench-upstream.").tempdir()?;
    let t = tmp.path();
    let mut runner = Runner::new(t.join("logs"), LIMIT)?;
    let started = Instant::now();
    let note = |what: &str| eprintln!("bench-upstream [{:5.1}s]: {what}", started.elapsed().as_secs_f64());

    note(&format!("demo data: 12 shards of {} MiB from fb-devcluster", args.shard_mib));
    let demo = t.join("demo.tar");
    {
        let log = runner.log_path("demo-cluster");
        let dev = DevCluster::start(&bin.join("fb-devcluster"), t.join("demo"), log, 1, 1, Some(args.shard_mib << 20))?;
        let mut export = Command::new(bin.join("fb-export"));
        export.args(["--host", dev.host(), "-q", "-o"]).arg(&demo);
        timed(&mut runner, export)?;
    }

    note("starting a real 3-node replicas-2 cluster and loading it with fb-import");
    let src = real_cluster(&fb, t, "src", 3, 2)?;
    let mut load = Command::new(bin.join("fb-import"));
    load.args(["--host", src.url(), "-q", "--concurrency", "4", "-s"]).arg(&demo);
    timed(&mut runner, load)?;

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
        cmd.args(["backuptar", "--host", src.url(), "-o"]).arg(&theirs);
        backuptar.push(timed(&mut runner, cmd)?);
        for (c, sync, times) in [(1, false, &mut export1), (4, false, &mut export4), (1, true, &mut export_sync)] {
            let mut cmd = Command::new(bin.join("fb-export"));
            cmd.args(["--host", src.url(), "-q", "--concurrency", &c.to_string()]);
            if !sync {
                cmd.arg("--no-sync");
            }
            cmd.arg("-o").arg(&ours);
            times.push(timed(&mut runner, cmd)?);
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
            let dst = real_cluster(&fb, t, "dst", 3, 2)?;
            let cmd = match what {
                "restoretar" => {
                    let mut cmd = Command::new(&fb);
                    cmd.args(["restoretar", "--host", dst.url(), "-s"]).arg(&theirs);
                    cmd
                }
                _ => {
                    let c = if what == "import1" { "1" } else { "4" };
                    let mut cmd = Command::new(bin.join("fb-import"));
                    cmd.args(["--host", dst.url(), "-q", "--concurrency", c, "-s"]).arg(&ours);
                    cmd
                }
            };
            times.push(timed(&mut runner, cmd)?);
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
    let rows = [
        Versus { figure: "fb-export -c 1 --no-sync vs backuptar", fbkit: e1, upstream: b },
        Versus { figure: "fb-export -c 4 --no-sync vs backuptar", fbkit: e4, upstream: b },
        Versus { figure: "fb-export -c 1 (fsync, the default) vs backuptar (no fsync)", fbkit: es, upstream: b },
        Versus { figure: "fb-import -c 1 vs restoretar", fbkit: i1, upstream: r },
        Versus { figure: "fb-import -c 4 vs restoretar", fbkit: i4, upstream: r },
    ];
    println!("| figure | fbkit | upstream | ratio |");
    println!("|---|---|---|---|");
    for row in &rows {
        println!(
            "| {} | {:.2} s, {:.0} MB/s | {:.2} s | {:.2}x |",
            row.figure,
            row.fbkit,
            mb(row.fbkit),
            row.upstream,
            row.upstream / row.fbkit
        );
    }
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
