//! `cargo xtask bench-upstream`: fbkit against FeatureBase's own tools, and against what the
//! real server can serve and accept, on the same real 3-node replicas-2 cluster in the same
//! run. Needs a `featurebase` binary you built yourself (`--featurebase PATH` or
//! `FEATUREBASE_BIN`); nothing here fetches or builds it. Every server listens on 127.0.0.1
//! only and is killed at the end.
//!
//! Two cases:
//! - large shards: the fb-devcluster demo set with padded shards;
//! - small shards: the benchmarks' small-shard set (`smallset`: two unkeyed indexes with
//!   many tiny shards, a keyed index with its 256 key partitions), where a backup or restore
//!   is mostly per-request cost.
//!
//! Each is exported with fb-export from fb-devcluster and loaded into a real cluster with
//! fb-import. Then, at each concurrency:
//! - export: `fb-export --no-sync -o FILE` against `featurebase backuptar` (which has no
//!   concurrency), `featurebase backup --concurrency N` (small shards), and the bound: curl
//!   fetching the same URLs fb-export fetched, N at a time, through one SHA-256 pass into a
//!   file (`curl | tee FILE | sha256sum`), the least work an export does;
//! - import, each into a fresh cluster: `fb-import -s FILE` against `featurebase restoretar`
//!   and the bound: curl replaying the same requests, N files × 2 owners at a time.
//!
//! The small-shard import is also measured into fb-devcluster against the same curl replay.
//! Ratios are the other side's time over fbkit's: > 1 means fbkit is faster.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Result};
use fb_devcluster::upstream::{Config, RealCluster};

use crate::bench::replay::{curl_get, logged_requests, Replay};
use crate::bench::report::commit;
use crate::clusters::DevCluster;
use crate::process::{release_binaries, Runner};

/// `cargo xtask bench-upstream` flags.
#[derive(Debug, clap::Args)]
pub struct UpstreamArgs {
    /// The featurebase binary [default: $FEATUREBASE_BIN]
    #[arg(long, value_name = "PATH")]
    featurebase: Option<PathBuf>,
    /// Size of each of the 12 demo shards of the large-shard case (0: skip the case)
    #[arg(long, value_name = "MIB", default_value_t = 16)]
    shard_mib: u64,
    /// Shards in each of the two unkeyed indexes of the small-shard case; the keyed index
    /// adds 256 (0: skip the case)
    #[arg(long, value_name = "N", default_value_t = 640)]
    small_shards: u64,
    /// Runs per figure; the fastest is reported
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=10))]
    reps: u32,
    /// Do not run `cargo build --release --bins` first
    #[arg(long)]
    no_build: bool,
}

/// Longest any one command may run.
const LIMIT: Duration = Duration::from_secs(600);
/// Nodes and replicas of every cluster.
const NODES: usize = 3;
const REPLICAS: usize = 2;

/// One row of the table: fbkit's best time against another's for the same work.
struct Versus {
    case: &'static str,
    figure: String,
    fbkit: f64,
    other: String,
    other_secs: f64,
    /// The other side is a bound (curl), not a peer tool.
    bound: bool,
    bytes: u64,
}

impl Versus {
    fn ratio(&self) -> f64 {
        self.other_secs / self.fbkit
    }
}

/// Best (least) of each series of times.
#[derive(Default)]
struct Times(Vec<f64>);

impl Times {
    fn best(&self) -> f64 {
        self.0.iter().copied().fold(f64::INFINITY, f64::min)
    }
}

struct Bench {
    fb: PathBuf,
    bin: PathBuf,
    tmp: PathBuf,
    runner: Runner,
    reps: u32,
    started: Instant,
    rows: Vec<Versus>,
}

/// Run the side-by-side benchmark.
pub fn run(root: &Path, args: UpstreamArgs) -> Result<()> {
    let fb = match args.featurebase.or_else(|| std::env::var_os("FEATUREBASE_BIN").map(PathBuf::from)) {
        Some(p) => p,
        None => bail!("give --featurebase PATH or set FEATUREBASE_BIN to a featurebase binary you built"),
    };
    ensure!(fb.is_file(), "{}: no such file", fb.display());
    for tool in ["curl", "tar", "tee", "sha256sum"] {
        let found = Command::new(tool).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
        ensure!(found.is_ok(), "`{tool}` is needed for the bounds; install it first");
    }
    let bin = release_binaries(root, !args.no_build)?;
    let tmp = tempfile::Builder::new().prefix("fbkit-bench-upstream.").tempdir()?;
    let mut b = Bench {
        fb: fb.clone(),
        bin,
        tmp: tmp.path().to_path_buf(),
        runner: Runner::new(tmp.path().join("logs"), LIMIT)?,
        reps: args.reps,
        started: Instant::now(),
        rows: Vec::new(),
    };
    if args.shard_mib > 0 {
        b.large_case(args.shard_mib)?;
    }
    if args.small_shards > 0 {
        b.small_case(args.small_shards)?;
    }
    b.print(&fb, root);
    Ok(())
}

impl Bench {
    fn note(&self, what: &str) {
        eprintln!("bench-upstream [{:5.1}s]: {what}", self.started.elapsed().as_secs_f64());
    }

    fn real_cluster(&self, name: &str) -> Result<RealCluster> {
        let mut config = Config::new(name, NODES, REPLICAS);
        config.parent_dir = Some(self.tmp.clone());
        RealCluster::start(&self.fb, &config)
    }

    fn tool(&self, name: &str) -> Command {
        Command::new(self.bin.join(name))
    }

    fn timed(&mut self, cmd: Command) -> Result<f64> {
        Ok(self.runner.run_to_null(cmd)?.secs)
    }

    /// Seconds of one `featurebase backuptar` of `src` into `out` (replaced).
    fn backuptar(&mut self, src: &RealCluster, out: &Path) -> Result<f64> {
        let _ = fs::remove_file(out);
        let mut cmd = Command::new(&self.fb);
        cmd.args(["backuptar", "--host", src.url(), "-o"]).arg(out);
        self.timed(cmd)
    }

    /// fb-export of a fb-devcluster (`--seed-from DIR` or the demo set with shards of
    /// `demo_bytes`) into `archive`.
    fn archive_from_devcluster(
        &mut self,
        name: &str,
        seed: Option<&Path>,
        demo_bytes: u64,
        archive: &Path,
    ) -> Result<()> {
        let log = self.runner.log_path(name);
        let dev = match seed {
            Some(dir) => {
                DevCluster::start_seeded(&self.bin.join("fb-devcluster"), self.tmp.join(name), log, 1, 1, dir)?
            }
            None => {
                DevCluster::start(&self.bin.join("fb-devcluster"), self.tmp.join(name), log, 1, 1, Some(demo_bytes))?
            }
        };
        let mut export = self.tool("fb-export");
        export.args(["--host", dev.host(), "-q", "-o"]).arg(archive);
        self.timed(export)?;
        Ok(())
    }

    /// fb-export -vv once: the URLs it fetches, as a curl config.
    /// A real source cluster (`cluster`) loaded from `archive` by fb-import at `concurrency`,
    /// and the GETs fb-export makes of it (named `gets`, see [`Self::export_gets`]).
    fn loaded_source(
        &mut self,
        case: &str,
        cluster: &str,
        archive: &Path,
        concurrency: usize,
        gets: &str,
    ) -> Result<(RealCluster, PathBuf)> {
        self.note(&format!("{case}: a real {NODES}-node replicas-{REPLICAS} cluster loaded with fb-import"));
        let src = self.real_cluster(cluster)?;
        let mut load = self.tool("fb-import");
        load.args(["--host", src.url(), "-q", "--concurrency", &concurrency.to_string(), "-s"]).arg(archive);
        self.timed(load)?;
        let gets = self.export_gets(&src, gets)?;
        Ok((src, gets))
    }

    fn export_gets(&mut self, src: &RealCluster, name: &str) -> Result<PathBuf> {
        let log = self.runner.log_path(&format!("{name}-export-plan"));
        let mut cmd = self.tool("fb-export");
        cmd.args(["--host", src.url(), "-vv", "--progress", "never", "--no-sync", "-o"])
            .arg(self.tmp.join(format!("{name}-plan.tar")));
        self.runner.run_logged(cmd, "fb-export -vv", log.clone())?;
        fs::remove_file(self.tmp.join(format!("{name}-plan.tar")))?;
        let gets = logged_requests(&log, "fb-export")?;
        ensure!(gets.iter().all(|(m, _)| m == "GET"), "fb-export -vv logged a request that is not a GET");
        let cfg = self.tmp.join(format!("{name}-gets.curl"));
        fs::write(&cfg, gets.iter().map(|(_, u)| format!("url = \"{u}\"\n")).collect::<String>())?;
        Ok(cfg)
    }

    /// The bound of an export at concurrency `c`: curl fetching `gets` `c` at a time through
    /// one SHA-256 pass into `file`.
    fn fetch_and_hash(&mut self, gets: &Path, c: usize, file: &Path) -> Result<f64> {
        let mut tee = Command::new("tee");
        tee.arg(file);
        let cmds = vec![curl_get(gets, c), tee, Command::new("sha256sum")];
        Ok(self.runner.pipeline(cmds, Stdio::null(), Stdio::null())?.secs)
    }

    /// fb-import -vv of `archive` into the empty cluster of `target_urls` (`host` is one of
    /// them): its requests, replayable by curl from the archive extracted beside it.
    fn import_plan(&mut self, name: &str, archive: &Path, target_urls: &[String], host: &str) -> Result<Replay> {
        let extracted = archive.with_extension("extracted");
        if !extracted.exists() {
            fs::create_dir_all(&extracted)?;
            let mut tar = Command::new("tar");
            tar.arg("-xf").arg(archive).arg("-C").arg(&extracted);
            self.runner.run_to_null(tar)?;
        }
        let log = self.runner.log_path(&format!("{name}-import-plan"));
        let mut cmd = self.tool("fb-import");
        cmd.args(["--host", host, "-vv", "--progress", "never", "-s"]).arg(archive).stdout(Stdio::null());
        self.runner.run_logged(cmd, "fb-import -vv", log.clone())?;
        Replay::from_log(
            &logged_requests(&log, "fb-import")?,
            target_urls,
            &extracted,
            &self.tmp.join(format!("{name}-bodies")),
        )
    }

    /// The large-shard case: fb-export and fb-import at concurrency 1 and 4.
    fn large_case(&mut self, shard_mib: u64) -> Result<()> {
        const CASE: &str = "large shards";
        let levels = [1, 4];
        self.note(&format!("{CASE}: 12 demo shards of {shard_mib} MiB from fb-devcluster"));
        let demo = self.tmp.join("demo.tar");
        self.archive_from_devcluster("demo", None, shard_mib << 20, &demo)?;
        let (ours, theirs) = (self.tmp.join("large-fb-export.tar"), self.tmp.join("large-backuptar.tar"));

        let (src, gets) = self.loaded_source(CASE, "src", &demo, 4, "large")?;
        // backuptar does not fsync its output: fb-export runs with --no-sync to do the same
        // work, and once more with its default (file and directory fsynced).
        let mut backuptar = Times::default();
        let mut export: Vec<Times> = levels.iter().map(|_| Times::default()).collect();
        let mut bound: Vec<Times> = levels.iter().map(|_| Times::default()).collect();
        let mut export_sync = Times::default();
        let fetched = self.tmp.join("large-curl.out");
        for rep in 0..self.reps {
            self.note(&format!("{CASE}: backup run {}/{}", rep + 1, self.reps));
            backuptar.0.push(self.backuptar(&src, &theirs)?);
            for (i, c) in levels.into_iter().enumerate() {
                export[i].0.push(self.fb_export(&src, c, false, &ours)?);
                bound[i].0.push(self.fetch_and_hash(&gets, c, &fetched)?);
            }
            export_sync.0.push(self.fb_export(&src, 1, true, &ours)?);
        }
        let archive_bytes = fs::metadata(&ours)?.len();
        drop(src);
        for (i, c) in levels.into_iter().enumerate() {
            self.push(
                CASE,
                format!("fb-export -c {c} --no-sync"),
                &export[i],
                "backuptar",
                &backuptar,
                false,
                archive_bytes,
            );
            self.push(
                CASE,
                format!("fb-export -c {c} --no-sync"),
                &export[i],
                &format!("curl -c {c} + sha256sum"),
                &bound[i],
                true,
                archive_bytes,
            );
        }
        self.push(
            CASE,
            "fb-export -c 1 (fsync, the default)".into(),
            &export_sync,
            "backuptar (no fsync)",
            &backuptar,
            false,
            archive_bytes,
        );

        let plan_target = self.real_cluster("plan")?;
        let replay = self.import_plan("large", &ours, plan_target.urls(), plan_target.url())?;
        drop(plan_target);
        self.imports(CASE, &levels, &ours, Some(&theirs), &replay, archive_bytes)?;
        fs::remove_dir_all(ours.with_extension("extracted"))?;
        Ok(())
    }

    /// The small-shard case: export and import at concurrency 1, 4 and 16, against
    /// backuptar, `featurebase backup --concurrency N`, restoretar and the curl bounds; the
    /// import also into fb-devcluster.
    fn small_case(&mut self, shards: u64) -> Result<()> {
        const CASE: &str = "small shards";
        let levels = [1, 4, 16];
        let dir = self.tmp.join("small-set");
        let set = crate::smallset::write(&dir, shards)?;
        self.note(&format!(
            "{CASE}: {} files, {} tiny shards over 2 indexes plus a keyed index, served by fb-devcluster",
            set.files, set.shards
        ));
        let seed_archive = self.tmp.join("small-seed.tar");
        self.archive_from_devcluster("small-dev", Some(&dir), 0, &seed_archive)?;
        fs::remove_dir_all(&dir)?;
        let (ours, theirs) = (self.tmp.join("small-fb-export.tar"), self.tmp.join("small-backuptar.tar"));
        let backup_dir = self.tmp.join("small-backup");

        let (src, gets) = self.loaded_source(CASE, "ssrc", &seed_archive, 16, "small")?;
        let mut backuptar = Times::default();
        let mut export: Vec<Times> = levels.iter().map(|_| Times::default()).collect();
        let mut backup: Vec<Times> = levels.iter().map(|_| Times::default()).collect();
        let mut bound: Vec<Times> = levels.iter().map(|_| Times::default()).collect();
        let fetched = self.tmp.join("small-curl.out");
        for rep in 0..self.reps {
            self.note(&format!("{CASE}: backup run {}/{}", rep + 1, self.reps));
            backuptar.0.push(self.backuptar(&src, &theirs)?);
            for (i, c) in levels.into_iter().enumerate() {
                let _ = fs::remove_dir_all(&backup_dir);
                let mut cmd = Command::new(&self.fb);
                cmd.args(["backup", "--host", src.url(), "--no-sync", "--concurrency", &c.to_string(), "-o"])
                    .arg(&backup_dir);
                backup[i].0.push(self.timed(cmd)?);
                export[i].0.push(self.fb_export(&src, c, false, &ours)?);
                bound[i].0.push(self.fetch_and_hash(&gets, c, &fetched)?);
            }
        }
        let _ = fs::remove_dir_all(&backup_dir);
        let archive_bytes = fs::metadata(&ours)?.len();
        drop(src);
        for (i, c) in levels.into_iter().enumerate() {
            let figure = format!("fb-export -c {c} --no-sync");
            self.push(CASE, figure.clone(), &export[i], "backuptar", &backuptar, false, archive_bytes);
            self.push(
                CASE,
                figure.clone(),
                &export[i],
                &format!("featurebase backup -c {c} --no-sync"),
                &backup[i],
                false,
                archive_bytes,
            );
            self.push(CASE, figure, &export[i], &format!("curl -c {c} + sha256sum"), &bound[i], true, archive_bytes);
        }

        let plan_target = self.real_cluster("splan")?;
        let replay = self.import_plan("small", &ours, plan_target.urls(), plan_target.url())?;
        drop(plan_target);
        self.imports(CASE, &levels, &ours, Some(&theirs), &replay, archive_bytes)?;

        // The same restore into fb-devcluster: fb-import against the curl replay.
        let dev = self.devcluster("dplan")?;
        let dev_replay = self.import_plan("small-dev", &ours, &dev.urls, dev.host())?;
        drop(dev);
        let mut import: Vec<Times> = levels.iter().map(|_| Times::default()).collect();
        let mut curl: Vec<Times> = levels.iter().map(|_| Times::default()).collect();
        for rep in 0..self.reps {
            self.note(&format!("{CASE}: fb-devcluster restore run {}/{}", rep + 1, self.reps));
            for (i, c) in levels.into_iter().enumerate() {
                let dst = self.devcluster("ddst")?;
                import[i].0.push(self.fb_import(dst.host(), c, &ours)?);
                drop(dst);
                let dst = self.devcluster("dcurl")?;
                curl[i].0.push(dev_replay.run(&mut self.runner, &self.tmp, &dst.urls, c * REPLICAS)?.secs);
            }
        }
        for (i, c) in levels.into_iter().enumerate() {
            let other = format!("curl replay, {} at once", c * REPLICAS);
            self.push(
                "small shards, fb-devcluster",
                format!("fb-import -c {c}"),
                &import[i],
                &other,
                &curl[i],
                true,
                archive_bytes,
            );
        }
        fs::remove_dir_all(ours.with_extension("extracted"))?;
        Ok(())
    }

    fn devcluster(&mut self, name: &str) -> Result<DevCluster> {
        let log = self.runner.log_path(name);
        let nodes = u16::try_from(NODES)?;
        let replicas = u16::try_from(REPLICAS)?;
        DevCluster::start(&self.bin.join("fb-devcluster"), self.tmp.join(name), log, nodes, replicas, None)
    }

    fn fb_export(&mut self, src: &RealCluster, c: usize, sync: bool, out: &Path) -> Result<f64> {
        let mut cmd = self.tool("fb-export");
        cmd.args(["--host", src.url(), "-q", "--concurrency", &c.to_string()]);
        if !sync {
            cmd.arg("--no-sync");
        }
        cmd.arg("-o").arg(out);
        self.timed(cmd)
    }

    fn fb_import(&mut self, host: &str, c: usize, archive: &Path) -> Result<f64> {
        let mut cmd = self.tool("fb-import");
        cmd.args(["--host", host, "-q", "--concurrency", &c.to_string(), "-s"]).arg(archive);
        self.timed(cmd)
    }

    /// Restores into fresh real clusters: restoretar of `theirs` once per run, and at each
    /// concurrency fb-import of `ours` and the curl replay of its requests.
    fn imports(
        &mut self,
        case: &'static str,
        levels: &[usize],
        ours: &Path,
        theirs: Option<&Path>,
        replay: &Replay,
        bytes: u64,
    ) -> Result<()> {
        let mut restoretar = Times::default();
        let mut import: Vec<Times> = levels.iter().map(|_| Times::default()).collect();
        let mut curl: Vec<Times> = levels.iter().map(|_| Times::default()).collect();
        for rep in 0..self.reps {
            self.note(&format!("{case}: restore run {}/{} into fresh real clusters", rep + 1, self.reps));
            if let Some(theirs) = theirs {
                let dst = self.real_cluster("dst")?;
                let mut cmd = Command::new(&self.fb);
                cmd.args(["restoretar", "--host", dst.url(), "-s"]).arg(theirs);
                restoretar.0.push(self.timed(cmd)?);
            }
            for (i, &c) in levels.iter().enumerate() {
                let dst = self.real_cluster("dst")?;
                import[i].0.push(self.fb_import(dst.url(), c, ours)?);
                drop(dst);
                let dst = self.real_cluster("dst")?;
                curl[i].0.push(replay.run(&mut self.runner, &self.tmp, dst.urls(), c * REPLICAS)?.secs);
            }
        }
        for (i, &c) in levels.iter().enumerate() {
            let figure = format!("fb-import -c {c}");
            if theirs.is_some() {
                self.push(case, figure.clone(), &import[i], "restoretar", &restoretar, false, bytes);
            }
            let other = format!("curl replay, {} at once", c * REPLICAS);
            self.push(case, figure, &import[i], &other, &curl[i], true, bytes);
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        case: &'static str,
        figure: String,
        fbkit: &Times,
        other: &str,
        other_times: &Times,
        bound: bool,
        bytes: u64,
    ) {
        self.rows.push(Versus {
            case,
            figure,
            fbkit: fbkit.best(),
            other: other.to_string(),
            other_secs: other_times.best(),
            bound,
            bytes,
        });
    }

    fn print(&self, fb: &Path, root: &Path) {
        println!(
            "fbkit vs FeatureBase's own tools and vs curl bounds ({}), real {NODES}-node replicas-{REPLICAS} clusters on 127.0.0.1 \
             (fb-devcluster where named), best of {}; ratio = other's time / fbkit's, > 1 means fbkit is faster",
            fb.display(),
            self.reps
        );
        println!("| case | fbkit | s | MB/s | against | s | ratio |");
        println!("|---|---|---|---|---|---|---|");
        for r in &self.rows {
            println!(
                "| {} ({:.1} MiB) | {} | {:.2} | {:.0} | {}{} | {:.2} | {:.2}x |",
                r.case,
                r.bytes as f64 / (1 << 20) as f64,
                r.figure,
                r.fbkit,
                r.bytes as f64 / r.fbkit / 1e6,
                r.other,
                if r.bound { " (bound)" } else { "" },
                r.other_secs,
                r.ratio()
            );
        }
        let worst = |bound: bool| {
            self.rows
                .iter()
                .filter(|r| r.bound == bound)
                .min_by(|a, b| a.ratio().total_cmp(&b.ratio()))
                .map(|r| format!("{:.2}x ({}: {} vs {})", r.ratio(), r.case, r.figure, r.other))
                .unwrap_or_else(|| "-".into())
        };
        println!(
            "summary: worst against FeatureBase's tools {}; worst against a curl bound {}; bench took {:.0} s (commit {})",
            worst(false),
            worst(true),
            self.started.elapsed().as_secs_f64(),
            commit(root)
        );
    }
}
