//! `cargo xtask bench`: throughput, memory and no-spill figures of the release binaries
//! against baselines measured in the same run on the same data (curl, cat, sha256sum,
//! `openssl speed`), because absolute numbers on a shared 2-core machine move from run to run.
//!
//! Every measured command is a child process timed from spawn to exit; its peak RSS and the
//! bytes it caused to be written to storage come from its own `wait4(2)` rusage (Linux
//! counts `ru_oublock` in 512-byte units of `write_bytes`). Each figure is the best of
//! `--reps` runs, ours and the baseline alternating, so drift hits both alike.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use fb_core::format::rbf;
use fb_core::layout::EntryPath;

/// `cargo xtask bench` flags.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Small sizes and one run per figure (4 MiB shards; 16 and 128 MiB memory runs): for
    /// trying the command, not for figures
    #[arg(long)]
    quick: bool,
    /// Size of each of the 12 demo shards of the 3-node throughput cluster [default: 64, --quick: 4]
    #[arg(long, value_name = "MIB")]
    shard_mib: Option<u64>,
    /// Shard sizes of the small and the large memory run [default: 256,2048, --quick: 16,128]
    #[arg(long, value_name = "SMALL,LARGE", value_delimiter = ',')]
    mem_mib: Option<Vec<u64>>,
    /// Runs per figure; the fastest is reported [default: 3, --quick: 1]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=20))]
    reps: Option<u32>,
    /// Do not run `cargo build --release --bins` first (use what is in target/release)
    #[arg(long)]
    no_build: bool,
}

/// Longest any one measured command may run before it is killed and the bench fails.
const COMMAND_LIMIT: Duration = Duration::from_secs(300);
/// Longest wait for a cluster to print its URLs (seeding large shards takes a while).
const CLUSTER_LIMIT: Duration = Duration::from_secs(300);
/// The demo data set has 12 shards (4 keyed, 8 unkeyed).
const DEMO_SHARDS: u64 = 12;
/// Nodes and replicas of the throughput clusters.
const NODES: u16 = 3;
const REPLICAS: u16 = 2;
const MIB: u64 = 1 << 20;

struct Config {
    shard_bytes: u64,
    mem_bytes: [u64; 2],
    reps: u32,
    build: bool,
}

impl Config {
    fn new(a: BenchArgs) -> Result<Config> {
        let (shard, mem, reps) = if a.quick { (4, vec![16, 128], 1) } else { (64, vec![256, 2048], 3) };
        let mem = a.mem_mib.unwrap_or(mem);
        ensure!(mem.len() == 2 && mem[0] < mem[1], "--mem-mib takes two sizes, the smaller first");
        let shard = a.shard_mib.unwrap_or(shard);
        ensure!(shard >= 1, "--shard-mib must be at least 1");
        Ok(Config {
            shard_bytes: shard * MIB,
            mem_bytes: [mem[0] * MIB, mem[1] * MIB],
            reps: a.reps.unwrap_or(reps),
            build: !a.no_build,
        })
    }
}

/// What `wait4(2)` reports about one finished child.
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    /// Peak resident set, KiB.
    max_rss_kib: u64,
    /// Bytes the process caused to be written to storage (not to pipes or /dev/null).
    write_bytes: u64,
    /// CPU time, user plus system, seconds.
    cpu_secs: f64,
}

/// A child process that is killed and reaped when dropped, unless it was reaped already.
struct Guarded {
    child: Child,
    name: String,
    log: Option<PathBuf>,
    reaped: bool,
}

impl Guarded {
    fn spawn(cmd: &mut Command, name: &str, log: Option<PathBuf>) -> Result<Guarded> {
        let child = cmd.spawn().with_context(|| format!("starting {name}"))?;
        Ok(Guarded { child, name: name.to_string(), log, reaped: false })
    }

    /// Wait until the child exits (killing it after `limit`), reap it, and return its usage;
    /// fails when it did not exit with status 0.
    fn wait(&mut self, limit: Duration) -> Result<Usage> {
        let pid = libc::pid_t::try_from(self.child.id()).context("pid out of range")?;
        // Wait without reaping, so that a late SIGKILL from the watchdog can only hit this
        // (zombie) process, never another one that reused the pid.
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let watchdog = std::thread::spawn(move || {
            if done_rx.recv_timeout(limit) == Err(mpsc::RecvTimeoutError::Timeout) {
                // SAFETY: kill(2) with a pid we own and have not reaped yet.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                return true;
            }
            false
        });
        let waited = retry_eintr(|| {
            // SAFETY: a zeroed siginfo_t is a valid out-parameter for waitid(2).
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: waitid on our own child with a valid out-pointer.
            unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOWAIT) }
        });
        let _ = done_tx.send(());
        let timed_out = watchdog.join().unwrap_or(false);
        waited.with_context(|| format!("waiting for {}", self.name))?;
        let mut status: libc::c_int = 0;
        // SAFETY: a zeroed rusage is a valid out-parameter for wait4(2).
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: wait4 on our own exited child with valid out-pointers.
        retry_eintr(|| unsafe { libc::wait4(pid, &mut status, 0, &mut ru) })
            .with_context(|| format!("reaping {}", self.name))?;
        self.reaped = true;
        let usage = Usage {
            max_rss_kib: u64::try_from(ru.ru_maxrss).unwrap_or(0),
            write_bytes: u64::try_from(ru.ru_oublock).unwrap_or(0) * 512,
            cpu_secs: [ru.ru_utime, ru.ru_stime].iter().map(|t| t.tv_sec as f64 + t.tv_usec as f64 / 1e6).sum(),
        };
        if timed_out {
            bail!("{} did not finish within {:?}{}", self.name, limit, self.log_tail());
        }
        if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
            let how = if libc::WIFEXITED(status) {
                format!("exit status {}", libc::WEXITSTATUS(status))
            } else {
                format!("signal {}", libc::WTERMSIG(status))
            };
            bail!("{} failed ({how}){}", self.name, self.log_tail());
        }
        Ok(usage)
    }

    fn log_tail(&self) -> String {
        let Some(text) = self.log.as_ref().and_then(|p| fs::read_to_string(p).ok()) else {
            return String::new();
        };
        let start = text.len().saturating_sub(2000);
        let start = (start..text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(text.len());
        format!(":\n{}", &text[start..])
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn retry_eintr(mut call: impl FnMut() -> libc::c_int) -> io::Result<()> {
    for _ in 0..1000 {
        if call() >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Err(io::Error::other("interrupted 1000 times"))
}

/// One finished measured run.
#[derive(Debug, Clone, Default)]
struct Run {
    secs: f64,
    /// One per command, in pipeline order.
    usage: Vec<Usage>,
}

impl Run {
    fn max_rss_kib(&self) -> u64 {
        self.usage.iter().map(|u| u.max_rss_kib).max().unwrap_or(0)
    }
}

/// Runs commands and clusters inside one temporary directory.
struct Bench {
    cfg: Config,
    bin: PathBuf,
    tmp: PathBuf,
    /// Empty directory given as TMPDIR to every fbkit tool: it must stay empty.
    spill_dir: PathBuf,
    logs: u32,
}

impl Bench {
    fn tool(&self, name: &str) -> Command {
        let mut c = Command::new(self.bin.join(name));
        c.env("TMPDIR", &self.spill_dir);
        c
    }

    fn log_path(&mut self, name: &str) -> PathBuf {
        self.logs += 1;
        self.tmp.join("logs").join(format!("{:03}-{name}.err", self.logs))
    }

    /// Run `cmds` as a pipeline (stdin of the first, stdout of the last as given), timed
    /// from the first spawn until every process has exited.
    fn pipeline(&mut self, mut cmds: Vec<Command>, stdin: Stdio, stdout: Stdio) -> Result<Run> {
        let n = cmds.len();
        let mut stdin = Some(stdin);
        let mut stdout = Some(stdout);
        let mut procs: Vec<Guarded> = Vec::with_capacity(n);
        let started = Instant::now();
        for (i, cmd) in cmds.iter_mut().enumerate() {
            let name = cmd.get_program().to_string_lossy().rsplit('/').next().unwrap_or("child").to_string();
            let log = self.log_path(&name);
            cmd.stderr(File::create(&log).with_context(|| format!("creating {}", log.display()))?);
            match procs.last_mut().and_then(|p| p.child.stdout.take()) {
                Some(pipe) => cmd.stdin(pipe),
                None => cmd.stdin(stdin.take().unwrap_or(Stdio::null())),
            };
            if i + 1 == n {
                cmd.stdout(stdout.take().unwrap_or(Stdio::null()));
            } else {
                cmd.stdout(Stdio::piped());
            }
            procs.push(Guarded::spawn(cmd, &name, Some(log))?);
        }
        let mut usage = Vec::with_capacity(n);
        for p in &mut procs {
            usage.push(p.wait(COMMAND_LIMIT)?);
        }
        Ok(Run { secs: started.elapsed().as_secs_f64(), usage })
    }

    fn run_to_null(&mut self, cmd: Command) -> Result<Run> {
        self.pipeline(vec![cmd], Stdio::null(), Stdio::null())
    }

    fn start_cluster(&mut self, name: &str, nodes: u16, replicas: u16, demo_bytes: Option<u64>) -> Result<Cluster> {
        let dir = self.tmp.join(name);
        let log = self.log_path(name);
        let mut cmd = Command::new(self.bin.join("fb-devcluster"));
        cmd.args(["--nodes", &nodes.to_string(), "--replicas", &replicas.to_string(), "--port", "0", "--data-dir"])
            .arg(&dir);
        if let Some(bytes) = demo_bytes {
            cmd.args(["--demo", "--demo-shard-bytes", &bytes.to_string()]);
        }
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
        let deadline = Instant::now() + CLUSTER_LIMIT;
        let mut urls = Vec::new();
        while urls.len() < usize::from(nodes) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.starts_with("http://") => urls.push(line.trim().to_string()),
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!("fb-devcluster printed no URLs within {CLUSTER_LIMIT:?}{}", proc.log_tail())
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    bail!("fb-devcluster exited before serving{}", proc.log_tail())
                }
            }
        }
        Ok(Cluster { proc, urls, dir })
    }
}

/// A running fb-devcluster; killed and its data removed when dropped.
struct Cluster {
    proc: Guarded,
    urls: Vec<String>,
    dir: PathBuf,
}

impl Cluster {
    fn host(&self) -> &str {
        &self.urls[0]
    }

    /// CPU seconds (user + system) the cluster process has used so far, from
    /// `/proc/PID/stat`; 0 where that cannot be read.
    fn cpu_secs(&self) -> f64 {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.proc.child.id())).unwrap_or_default();
        // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let ticks: Vec<f64> = rest.split_whitespace().skip(11).take(2).filter_map(|t| t.parse().ok()).collect();
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        ticks.iter().sum::<f64>() / hz
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.proc.child.kill();
        let _ = self.proc.child.wait();
        self.proc.reaped = true;
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Best (fastest) and peak RSS over repeated runs.
#[derive(Debug, Clone, Default)]
struct Best {
    secs: f64,
    rss_kib: u64,
    write_bytes: u64,
    /// CPU seconds (all commands of the pipeline) of the fastest run.
    cpu_secs: f64,
}

impl Best {
    fn add(&mut self, run: &Run) {
        if self.secs == 0.0 || run.secs < self.secs {
            self.secs = run.secs;
            self.cpu_secs = run.usage.iter().map(|u| u.cpu_secs).sum();
        }
        self.rss_kib = self.rss_kib.max(run.max_rss_kib());
        self.write_bytes = self.write_bytes.max(run.usage.iter().map(|u| u.write_bytes).sum());
    }

    fn mbps(&self, bytes: u64) -> f64 {
        bytes as f64 / self.secs / 1e6
    }
}

enum Goal {
    None,
    AtLeast(f64),
    Text(String, bool),
}

struct Row {
    figure: String,
    ours: String,
    base: String,
    ratio: Option<f64>,
    goal: Goal,
    rss: String,
}

impl Row {
    fn throughput(figure: &str, bytes: u64, ours: &Best, base: &Best, base_name: &str, goal: Goal) -> Row {
        Row {
            figure: figure.to_string(),
            ours: format!("{:.0} MB/s", ours.mbps(bytes)),
            base: format!("{:.0} MB/s {base_name}", base.mbps(bytes)),
            ratio: Some(base.secs / ours.secs),
            goal,
            rss: mib(ours.rss_kib * 1024),
        }
    }

    fn met(&self) -> Option<bool> {
        match &self.goal {
            Goal::None => None,
            Goal::AtLeast(g) => Some(self.ratio.is_some_and(|r| r >= *g)),
            Goal::Text(_, met) => Some(*met),
        }
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB as f64)
}

/// Run the benchmark; `root` is the workspace root.
pub fn run(root: &Path, args: BenchArgs) -> Result<()> {
    let started = Instant::now();
    let cfg = Config::new(args)?;
    for (tool, why) in [("curl", "the HTTP baselines"), ("tar", "extracting the archive"), ("sha256sum", "a baseline")]
    {
        let found = Command::new(tool).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
        ensure!(found.is_ok(), "`{tool}` is needed for {why}; install it first");
    }
    if cfg.build {
        note(started, "cargo build --release --bins");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let ok = Command::new(cargo)
            .current_dir(root)
            .args(["build", "--release", "--bins", "--quiet"])
            .status()
            .context("running cargo build")?;
        ensure!(ok.success(), "cargo build --release --bins failed");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    let target = if target.is_absolute() { target } else { root.join(target) };
    let tmp = tempfile::Builder::new().prefix("fbkit-bench.").tempdir().context("creating a temporary directory")?;
    let mut b = Bench {
        bin: target.join("release"),
        tmp: tmp.path().to_path_buf(),
        spill_dir: tmp.path().join("spill"),
        logs: 0,
        cfg,
    };
    fs::create_dir_all(tmp.path().join("logs"))?;
    fs::create_dir_all(&b.spill_dir)?;
    for tool in ["fb-export", "fb-import", "fb-verify", "fb-manifest", "fb-devcluster"] {
        ensure!(b.bin.join(tool).is_file(), "{} is missing (build the release binaries)", b.bin.join(tool).display());
    }
    let report = measure(&mut b, started)?;
    print_report(&b, &report, started, root);
    drop(tmp);
    Ok(())
}

fn note(started: Instant, what: &str) {
    eprintln!("bench [{:>5.1}s]: {what}", started.elapsed().as_secs_f64());
}

struct Report {
    rows: Vec<Row>,
    archive_bytes: u64,
    scaling: Vec<String>,
    export_ratio: f64,
    /// Export against a fetch that also hashes every byte once (curl | openssl dgst).
    export_hash_ratio: Option<f64>,
    verify_ratio: f64,
    core_source: String,
    /// How the CPU time of the export compares with its least possible work.
    cpu: Vec<String>,
}

const LEVELS: [usize; 3] = [1, 2, 4];

fn measure(b: &mut Bench, started: Instant) -> Result<Report> {
    let reps = b.cfg.reps;
    let mut rows = Vec::new();
    let mut scaling = Vec::new();

    note(
        started,
        &format!(
            "seeding a {NODES}-node replicas-{REPLICAS} cluster, {DEMO_SHARDS} shards of {}",
            mib(b.cfg.shard_bytes)
        ),
    );
    let src = b.start_cluster("source", NODES, REPLICAS, Some(b.cfg.shard_bytes))?;
    let host = src.host().to_string();

    // The plan: every GET fb-export makes, in its order (also warms the nodes' page cache).
    note(started, "fb-export -vv once: the archive and the list of requests");
    let archive = b.tmp.join("a.tar");
    let mut cmd = b.tool("fb-export");
    cmd.args(["--host", &host, "-vv", "--progress", "never"]);
    let plan_log = b.log_path("fb-export-plan");
    cmd.stderr(File::create(&plan_log)?).stdout(File::create(&archive)?);
    Guarded::spawn(&mut cmd, "fb-export -vv", Some(plan_log.clone()))?.wait(COMMAND_LIMIT)?;
    let gets = logged_requests(&plan_log, "fb-export")?;
    ensure!(gets.iter().all(|(m, _)| m == "GET"), "fb-export -vv logged a request that is not a GET");
    let archive_bytes = fs::metadata(&archive)?.len();
    let get_cfg = b.tmp.join("export-gets.curl");
    fs::write(&get_cfg, gets.iter().map(|(_, u)| format!("url = \"{u}\"\n")).collect::<String>())?;

    // Export and its scaling.
    let mut export_c1 = (Best::default(), Best::default());
    // The cluster's CPU seconds per fb-export run (mean), for the 2-core bound below.
    let mut export_server_cpu = 0.0;
    let mut export_writes = 0u64;
    for c in LEVELS {
        note(started, &format!("export --concurrency {c}: fb-export > /dev/null vs curl, {reps} runs each"));
        let (mut ours, mut base) = (Best::default(), Best::default());
        for _ in 0..reps {
            let mut cmd = b.tool("fb-export");
            cmd.args(["--host", &host, "-q", "--concurrency", &c.to_string()]);
            let server_before = src.cpu_secs();
            let run = b.run_to_null(cmd)?;
            if c == 1 {
                export_server_cpu += (src.cpu_secs() - server_before) / f64::from(reps);
            }
            export_writes = export_writes.max(run.usage[0].write_bytes);
            ours.add(&run);
            base.add(&b.run_to_null(curl_get(&get_cfg, c))?);
        }
        let figure =
            if c == 1 { "export (fb-export > /dev/null)".to_string() } else { format!("export --concurrency {c}") };
        let goal = if c == 1 { Goal::AtLeast(0.9) } else { Goal::None };
        rows.push(Row::throughput(&figure, archive_bytes, &ours, &base, "curl", goal));
        scaling.push(format!(
            "export c={c}: fbkit {:.0} MB/s, curl {:.0} MB/s",
            ours.mbps(archive_bytes),
            base.mbps(archive_bytes)
        ));
        if c == 1 {
            export_c1 = (ours, base);
        }
    }
    let export_ratio = export_c1.1.secs / export_c1.0.secs;

    // The same fetch plus the one SHA-256 pass over every byte that the manifest needs:
    // what fb-export must do at the least, done by curl and openssl in two processes.
    let have_openssl = Command::new("openssl").arg("version").output().is_ok_and(|o| o.status.success());
    let (sha_bps, sha_source) = one_core_sha256()?;
    let mut export_hash_ratio = None;
    let mut cpu = Vec::new();
    if have_openssl {
        note(started, &format!("export vs curl | openssl dgst -sha256 (fetch and hash once), {reps} runs each"));
        let (mut ours, mut base) = (Best::default(), Best::default());
        for _ in 0..reps {
            let mut cmd = b.tool("fb-export");
            cmd.args(["--host", &host, "-q"]);
            ours.add(&b.run_to_null(cmd)?);
            let mut dgst = Command::new("openssl");
            dgst.args(["dgst", "-sha256"]);
            base.add(&b.pipeline(vec![curl_get(&get_cfg, 1), dgst], Stdio::null(), Stdio::null())?);
        }
        rows.push(Row::throughput(
            "export vs fetch + hash once",
            archive_bytes,
            &ours,
            &base,
            "curl|openssl dgst",
            Goal::None,
        ));
        export_hash_ratio = Some(base.secs / ours.secs);
        cpu.push(format!(
            "export c=1 CPU time (user+sys): fb-export {:.2} s, curl {:.2} s, curl|openssl dgst {:.2} s; \
             SHA-256 of the archive alone takes {:.2} s of one core ({} at {:.0} MB/s), so one stream \
             that hashes every byte cannot pass {:.2}x curl here",
            ours.cpu_secs,
            export_c1.1.cpu_secs,
            base.cpu_secs,
            archive_bytes as f64 / sha_bps,
            sha_source,
            sha_bps / 1e6,
            (archive_bytes as f64 / sha_bps).recip() * export_c1.1.secs,
        ));
    } else {
        eprintln!("bench: openssl not found; the fetch-and-hash baseline is not measured");
    }

    note(started, &format!("pipeline: fb-export | fb-verify vs curl | cat, {reps} runs each"));
    let (mut ours, mut base) = (Best::default(), Best::default());
    let mut pipeline_server_cpu = 0.0;
    for _ in 0..reps {
        let mut export = b.tool("fb-export");
        export.args(["--host", &host, "-q"]);
        let mut verify = b.tool("fb-verify");
        verify.arg("-q");
        let server_before = src.cpu_secs();
        ours.add(&b.pipeline(vec![export, verify], Stdio::null(), Stdio::null())?);
        pipeline_server_cpu += (src.cpu_secs() - server_before) / f64::from(reps);
        base.add(&b.pipeline(vec![curl_get(&get_cfg, 1), Command::new("cat")], Stdio::null(), Stdio::null())?);
    }
    rows.push(Row::throughput(
        "pipeline (fb-export | fb-verify)",
        archive_bytes,
        &ours,
        &base,
        "curl|cat",
        Goal::AtLeast(0.85),
    ));
    cpu.push(two_core_bound("export c=1", &export_c1.0, export_server_cpu));
    cpu.push(two_core_bound("pipeline", &ours, pipeline_server_cpu));
    drop(src);

    // Verify, warm cache.
    note(started, &format!("verify: fb-verify FILE vs sha256sum FILE vs one SHA-256 core, {reps} runs each"));
    io::copy(&mut File::open(&archive)?, &mut io::sink())?;
    let (mut ours, mut sum) = (Best::default(), Best::default());
    let mut core_bps: f64 = 0.0;
    let mut core_source = String::new();
    for _ in 0..reps {
        let mut verify = b.tool("fb-verify");
        verify.arg("-q").arg(&archive);
        ours.add(&b.run_to_null(verify)?);
        let mut sha = Command::new("sha256sum");
        sha.arg(&archive);
        sum.add(&b.run_to_null(sha)?);
        let (bps, source) = one_core_sha256()?;
        if bps > core_bps {
            core_bps = bps;
            core_source = source;
        }
    }
    rows.push(Row::throughput("verify FILE, warm cache", archive_bytes, &ours, &sum, "sha256sum", Goal::None));
    let verify_ratio = ours.mbps(archive_bytes) * 1e6 / core_bps;
    rows.push(Row {
        figure: "verify FILE vs one SHA-256 core".into(),
        ours: format!("{:.0} MB/s", ours.mbps(archive_bytes)),
        base: format!("{:.0} MB/s {core_source}", core_bps / 1e6),
        ratio: Some(verify_ratio),
        goal: Goal::AtLeast(0.8),
        rss: mib(ours.rss_kib * 1024),
    });

    // Import: ours from the archive on stdin; curl replays the same requests from the
    // extracted files into a fresh empty cluster of the same shape.
    let extracted = b.tmp.join("extracted");
    fs::create_dir_all(&extracted)?;
    let mut tar = Command::new("tar");
    tar.arg("-xf").arg(&archive).arg("-C").arg(&extracted);
    b.run_to_null(tar)?;
    note(started, "fb-import -vv once: the list of requests");
    let replay = {
        let target = b.start_cluster("import-plan", NODES, REPLICAS, None)?;
        let log = b.log_path("fb-import-plan");
        let mut cmd = b.tool("fb-import");
        cmd.args(["--host", target.host(), "-vv", "--progress", "never"]);
        cmd.stdin(File::open(&archive)?).stdout(Stdio::null()).stderr(File::create(&log)?);
        Guarded::spawn(&mut cmd, "fb-import -vv", Some(log.clone()))?.wait(COMMAND_LIMIT)?;
        Replay::from_log(&logged_requests(&log, "fb-import")?, &target.urls, &extracted)?
    };
    for c in LEVELS {
        note(started, &format!("import --concurrency {c}: fb-import < a.tar vs curl, {reps} runs each"));
        let (mut ours, mut base) = (Best::default(), Best::default());
        let mut import_server_cpu = 0.0;
        for rep in 0..reps {
            let target = b.start_cluster("import-ours", NODES, REPLICAS, None)?;
            let mut cmd = b.tool("fb-import");
            cmd.args(["--host", target.host(), "-q", "--concurrency", &c.to_string()]);
            let server_before = target.cpu_secs();
            ours.add(&b.pipeline(vec![cmd], Stdio::from(File::open(&archive)?), Stdio::null())?);
            import_server_cpu += (target.cpu_secs() - server_before) / f64::from(reps);
            drop(target);
            let target = b.start_cluster("import-curl", NODES, REPLICAS, None)?;
            base.add(&replay.run(b, &target.urls, c * usize::from(REPLICAS))?);
            if c == 1 && rep == 0 {
                // The baseline must have restored the same thing fb-import restores.
                let mut diff = b.tool("fb-manifest");
                diff.arg("diff").arg("--content").arg(&archive).arg(target.host());
                b.run_to_null(diff).context("the curl replay did not restore the archive")?;
            }
        }
        let figure =
            if c == 1 { "import (fb-import < a.tar)".to_string() } else { format!("import --concurrency {c}") };
        let goal = if c == 1 { Goal::AtLeast(0.9) } else { Goal::None };
        rows.push(Row::throughput(&figure, archive_bytes, &ours, &base, "curl", goal));
        if c == 1 {
            cpu.push(two_core_bound("import c=1", &ours, import_server_cpu));
        }
        scaling.push(format!(
            "import c={c}: fbkit {:.0} MB/s, curl {:.0} MB/s (curl runs {} uploads at once: {c} files x {REPLICAS} owners)",
            ours.mbps(archive_bytes),
            base.mbps(archive_bytes),
            c * usize::from(REPLICAS)
        ));
    }
    fs::remove_dir_all(&extracted)?;
    fs::remove_file(&archive)?;

    // Memory with one large shard, at two sizes.
    let mut mem: Vec<[u64; 3]> = Vec::new();
    for size in b.cfg.mem_bytes {
        note(started, &format!("memory: export, verify and import of a 1-node cluster with a {} shard", mib(size)));
        let src = b.start_cluster("mem-source", 1, 1, Some(0))?;
        pad_shard(&src.dir, size)?;
        let mut export = b.tool("fb-export");
        export.args(["--host", src.host(), "-q"]);
        let run = b.run_to_null(export)?;
        export_writes = export_writes.max(run.usage[0].write_bytes);
        let export_rss = run.max_rss_kib();
        let big = b.tmp.join("big.tar");
        let mut export = b.tool("fb-export");
        export.args(["--host", src.host(), "-q"]);
        b.pipeline(vec![export], Stdio::null(), Stdio::from(File::create(&big)?))?;
        drop(src);
        let mut verify = b.tool("fb-verify");
        verify.arg("-q").arg(&big);
        let verify_rss = b.run_to_null(verify)?.max_rss_kib();
        let target = b.start_cluster("mem-target", 1, 1, None)?;
        let mut import = b.tool("fb-import");
        import.args(["--host", target.host(), "-q"]);
        let import_rss = b.pipeline(vec![import], Stdio::from(File::open(&big)?), Stdio::null())?.max_rss_kib();
        drop(target);
        fs::remove_file(&big)?;
        mem.push([export_rss, import_rss, verify_rss]);
    }
    for (i, tool) in ["fb-export", "fb-import", "fb-verify"].iter().enumerate() {
        let (small, large) = (mem[0][i] * 1024, mem[1][i] * 1024);
        let growth = large as f64 / small as f64;
        // Buffering a file would add most of its size; allocator noise is a few MiB.
        let met = large < 64 * MIB && large.saturating_sub(small) < 16 * MIB;
        rows.push(Row {
            figure: format!("memory: {tool}, {} vs {} shard", mib(b.cfg.mem_bytes[1]), mib(b.cfg.mem_bytes[0])),
            ours: mib(large),
            base: mib(small),
            ratio: Some(growth),
            goal: Goal::Text("< 64 MiB, +< 16 MiB".into(), met),
            rss: mib(large),
        });
    }

    // No spill: nothing written to storage by any export to /dev/null, TMPDIR still empty.
    let spilled: Vec<String> = fs::read_dir(&b.spill_dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    rows.push(Row {
        figure: "no spill: fb-export to /dev/null".into(),
        ours: format!("{export_writes} B written"),
        base: format!("TMPDIR: {} entries", spilled.len()),
        ratio: None,
        goal: Goal::Text("0 B, 0 entries".into(), export_writes == 0 && spilled.is_empty()),
        rss: String::new(),
    });

    Ok(Report { rows, archive_bytes, scaling, export_ratio, export_hash_ratio, verify_ratio, core_source, cpu })
}

/// `curl` fetching the URLs of `cfg` to stdout, `c` at a time, in list order.
fn curl_get(cfg: &Path, c: usize) -> Command {
    let mut curl = Command::new("curl");
    curl.arg("-s").arg("-K").arg(cfg);
    if c > 1 {
        curl.args(["--parallel", "--parallel-max", &c.to_string()]);
    }
    curl
}

/// The `METHOD URL` lines a tool logs with -vv (`fb-x: GET http://...`).
fn logged_requests(log: &Path, tool: &str) -> Result<Vec<(String, String)>> {
    let text = fs::read_to_string(log)?;
    let prefix = format!("{tool}: ");
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(&prefix) else { continue };
        if let Some((method @ ("GET" | "POST"), url)) = rest.split_once(' ') {
            if url.starts_with("http://") {
                out.push((method.to_string(), url.to_string()));
            }
        }
    }
    ensure!(!out.is_empty(), "{tool} -vv logged no requests; did its log format change?");
    Ok(out)
}

/// fb-import's requests, replayable with curl against another cluster of the same shape.
struct Replay {
    /// (method, node index, path and query, file to upload)
    requests: Vec<(String, usize, String, Option<PathBuf>)>,
}

impl Replay {
    fn from_log(logged: &[(String, String)], nodes: &[String], extracted: &Path) -> Result<Replay> {
        let mut requests = Vec::new();
        for (method, url) in logged {
            let (node, path) = nodes
                .iter()
                .enumerate()
                .find_map(|(i, n)| url.strip_prefix(n.as_str()).filter(|p| p.starts_with('/')).map(|p| (i, p)))
                .with_context(|| format!("{url} is not on a node of the target"))?;
            let file = if method == "POST" {
                let entry = entry_for_route(path).with_context(|| format!("unknown restore route {path}"))?;
                let file = extracted.join(entry.to_string());
                ensure!(file.is_file(), "{} is not in the extracted archive", file.display());
                Some(file)
            } else {
                None
            };
            requests.push((method.clone(), node, path.to_string(), file));
        }
        ensure!(requests.iter().any(|r| r.2 == "/schema" && r.0 == "POST"), "fb-import posted no schema");
        Ok(Replay { requests })
    }

    /// Everything up to the schema POST one at a time (nothing else can go before the
    /// indexes exist, as in fb-import), then the rest `parallel` at a time.
    fn run(&self, b: &mut Bench, nodes: &[String], parallel: usize) -> Result<Run> {
        let split = self.requests.iter().position(|r| r.0 == "POST" && r.2 == "/schema").map_or(0, |i| i + 1);
        let mut total = Run::default();
        for (part, (reqs, par)) in
            [(&self.requests[..split], 1), (&self.requests[split..], parallel)].into_iter().enumerate()
        {
            if reqs.is_empty() {
                continue;
            }
            let mut cfg = String::new();
            for (i, (method, node, path, file)) in reqs.iter().enumerate() {
                if i > 0 {
                    cfg.push_str("next\n");
                }
                cfg.push_str(&format!("url = \"{}{path}\"\n", nodes[*node]));
                if let Some(file) = file {
                    let ct = if path == "/schema" { "application/json" } else { "application/octet-stream" };
                    cfg.push_str(&format!(
                        "request = \"{method}\"\nupload-file = \"{}\"\nheader = \"Expect:\"\nheader = \"Content-Type: {ct}\"\nfail\n",
                        file.display()
                    ));
                }
            }
            let path = b.tmp.join(format!("import-{part}.curl"));
            fs::write(&path, cfg)?;
            let mut curl = Command::new("curl");
            curl.arg("-s").arg("-S").arg("-K").arg(&path);
            if par > 1 {
                curl.args(["--parallel", "--parallel-max", &par.to_string()]);
            }
            let run = b.run_to_null(curl)?;
            total.secs += run.secs;
            total.usage.extend(run.usage);
        }
        Ok(total)
    }
}

/// The archive entry a restore route receives.
fn entry_for_route(path: &str) -> Option<EntryPath> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    Some(match segs[..] {
        ["schema"] => EntryPath::Schema,
        ["internal", "idalloc", "restore"] => EntryPath::Idalloc,
        ["internal", "restore", i, s] => EntryPath::Shard { index: i.into(), shard: s.parse().ok()? },
        ["internal", "dataframe", "restore", i, s] => EntryPath::Dataframe { index: i.into(), shard: s.parse().ok()? },
        ["internal", "translate", "index", i, p] => {
            EntryPath::IndexKeys { index: i.into(), partition: p.parse().ok()? }
        }
        ["internal", "translate", "field", i, f] => EntryPath::FieldKeys { index: i.into(), field: f.into() },
        _ => return None,
    })
}

/// Rewrite shard 0 of the demo's unkeyed index on node 0 with the same bitmaps, padded to
/// `bytes` (atomically: a dot-file beside it, then a rename, so the node never serves half).
fn pad_shard(cluster_dir: &Path, bytes: u64) -> Result<()> {
    let entry = EntryPath::Shard { index: "events".into(), shard: 0 };
    let path = cluster_dir.join("node0").join(entry.to_string());
    let small = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let bitmaps = rbf::read_bitmaps(&small).map_err(|p| anyhow::anyhow!("{}: {p}", path.display()))?;
    let tmp = path.with_file_name(".0000.bench");
    let mut w = io::BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
    rbf::write_shard(&mut w, &bitmaps, bytes)?;
    w.into_inner().map_err(|e| e.into_error())?.sync_data()?;
    fs::rename(&tmp, &path)?;
    Ok(())
}

/// SHA-256 bytes per second of one core: `openssl speed -evp sha256` on 1 MiB blocks, or a
/// sha2 loop when openssl is missing.
/// How close a run came to what the machine's cores allow: fbkit's CPU seconds plus the
/// serving cluster's, spread over every core, is the least wall time possible.
fn two_core_bound(what: &str, ours: &Best, server_cpu: f64) -> String {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let least = (ours.cpu_secs + server_cpu) / cores;
    format!(
        "{what}: fbkit {:.2} CPU-s + cluster {:.2} CPU-s over {cores} cores = at least {:.2} s; took {:.2} s ({:.0}% of that bound)",
        ours.cpu_secs,
        server_cpu,
        least,
        ours.secs,
        100.0 * least / ours.secs
    )
}

fn one_core_sha256() -> Result<(f64, String)> {
    let out =
        Command::new("openssl").args(["speed", "-evp", "sha256", "-bytes", "1048576", "-seconds", "1", "-mr"]).output();
    if let Ok(out) = out {
        let text = String::from_utf8_lossy(&out.stdout);
        // `+F:<n>:sha256:<bytes per second>`
        if let Some(bps) = text
            .lines()
            .filter(|l| l.starts_with("+F:"))
            .filter_map(|l| l.rsplit(':').next()?.trim().parse::<f64>().ok())
            .next()
        {
            return Ok((bps, "openssl".into()));
        }
    }
    use sha2::Digest;
    let buf = vec![0x5au8; 1 << 20];
    let started = Instant::now();
    let mut n = 0u64;
    let mut h = sha2::Sha256::new();
    while started.elapsed() < Duration::from_secs(1) {
        h.update(&buf);
        n += buf.len() as u64;
    }
    std::hint::black_box(h.finalize());
    Ok((n as f64 / started.elapsed().as_secs_f64(), "sha2 crate".into()))
}

fn print_report(b: &Bench, r: &Report, started: Instant, root: &Path) {
    let header = ["figure", "ours", "baseline", "ratio", "goal", "peak RSS"];
    let cells: Vec<[String; 6]> = r
        .rows
        .iter()
        .map(|row| {
            let goal = match &row.goal {
                Goal::None => "-".to_string(),
                Goal::AtLeast(g) => format!(">= {g:.2}x"),
                Goal::Text(t, _) => t.clone(),
            };
            let goal = match row.met() {
                Some(true) => format!("{goal} ok"),
                Some(false) => format!("{goal} MISSED"),
                None => goal,
            };
            [
                row.figure.clone(),
                row.ours.clone(),
                row.base.clone(),
                row.ratio.map_or("-".into(), |x| format!("{x:.2}x")),
                goal,
                if row.rss.is_empty() { "-".into() } else { row.rss.clone() },
            ]
        })
        .collect();
    let mut width = header.map(str::len);
    for row in &cells {
        for (w, c) in width.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cols: &[String]| {
        let parts: Vec<String> = cols.iter().zip(width).map(|(c, w)| format!("{c:<w$}")).collect();
        format!("| {} |", parts.join(" | "))
    };
    let mut out = io::stdout().lock();
    let _ = writeln!(
        out,
        "fbkit bench: {} demo shards of {} on a {NODES}-node replicas-{REPLICAS} fb-devcluster (archive {}); \
         best of {} run(s) per figure; ratio > 1 means fbkit is faster",
        DEMO_SHARDS,
        mib(b.cfg.shard_bytes),
        mib(r.archive_bytes),
        b.cfg.reps
    );
    let _ = writeln!(out, "{}", line(&header.map(String::from)));
    let _ = writeln!(out, "|{}|", width.iter().map(|w| "-".repeat(w + 2)).collect::<Vec<_>>().join("|"));
    for row in &cells {
        let _ = writeln!(out, "{}", line(row));
    }
    for s in &r.scaling {
        let _ = writeln!(out, "scaling: {s}");
    }
    for s in &r.cpu {
        let _ = writeln!(out, "cpu: {s}");
    }
    let _ = writeln!(
        out,
        "one-core SHA-256 from {}; peak RSS is fbkit's (max over its runs, from wait4); bench took {:.0} s",
        r.core_source,
        started.elapsed().as_secs_f64()
    );
    let _ = writeln!(
        out,
        "summary: export {:.2}\u{d7} curl{}, verify {:.2}\u{d7} of one SHA-256 core (commit {})",
        r.export_ratio,
        r.export_hash_ratio.map(|x| format!(" ({x:.2}\u{d7} curl|openssl dgst)")).unwrap_or_default(),
        r.verify_ratio,
        commit(root)
    );
}

/// Short hash of HEAD (read-only git commands), with `-dirty` when the tree differs from it.
fn commit(root: &Path) -> String {
    let git = |args: &[&str]| Command::new("git").current_dir(root).args(args).stderr(Stdio::null()).output();
    let Ok(out) = git(&["rev-parse", "--short", "HEAD"]) else { return "unknown".into() };
    let hash = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if hash.is_empty() {
        return "unknown".into();
    }
    let dirty = git(&["diff-index", "--quiet", "HEAD", "--"]).map(|o| !o.status.success()).unwrap_or(false);
    if dirty {
        format!("{hash}-dirty")
    } else {
        hash
    }
}
