//! The one way xtask runs a measured command: a child process timed from spawn to exit,
//! killed (and the task failed) past a time limit, its stderr kept in a log whose tail goes
//! into the error, and its own `wait4(2)` rusage for peak RSS, bytes written to storage and
//! CPU time (Linux counts `ru_oublock` in 512-byte units of `write_bytes`).

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

/// What `wait4(2)` reports about one finished child.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// Peak resident set, KiB.
    pub max_rss_kib: u64,
    /// Bytes the process caused to be written to storage (not to pipes or /dev/null).
    pub write_bytes: u64,
    /// CPU time, user plus system, seconds.
    pub cpu_secs: f64,
    /// System CPU time alone, seconds.
    pub sys_secs: f64,
}

fn secs(t: &libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

/// A child process that is killed and reaped when dropped, unless it was reaped already.
pub struct Guarded {
    pub child: Child,
    name: String,
    log: Option<PathBuf>,
    reaped: bool,
}

impl Guarded {
    /// Spawn `cmd`; `log` is where its stderr goes, quoted when it fails.
    pub fn spawn(cmd: &mut Command, name: &str, log: Option<PathBuf>) -> Result<Guarded> {
        let child = cmd.spawn().with_context(|| format!("starting {name}"))?;
        Ok(Guarded { child, name: name.to_string(), log, reaped: false })
    }

    /// Wait until the child exits (killing it after `limit`), reap it, and return its usage;
    /// fails when it did not exit with status 0.
    pub fn wait(&mut self, limit: Duration) -> Result<Usage> {
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
            cpu_secs: [ru.ru_utime, ru.ru_stime].iter().map(secs).sum(),
            sys_secs: secs(&ru.ru_stime),
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

    /// The end of the child's log (the last 2000 bytes), after a colon and a newline.
    pub fn log_tail(&self) -> String {
        let Some(text) = self.log.as_ref().and_then(|p| fs::read_to_string(p).ok()) else {
            return String::new();
        };
        let start = text.len().saturating_sub(2000);
        let start = (start..text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(text.len());
        format!(":\n{}", &text[start..])
    }

    /// Kill and reap the child now (a server that is no longer needed).
    pub fn kill(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.reaped = true;
        }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.kill();
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
pub struct Run {
    pub secs: f64,
    /// One per command, in pipeline order.
    pub usage: Vec<Usage>,
}

impl Run {
    pub fn max_rss_kib(&self) -> u64 {
        self.usage.iter().map(|u| u.max_rss_kib).max().unwrap_or(0)
    }
}

/// Runs commands one pipeline at a time, each process's stderr in its own numbered log.
pub struct Runner {
    log_dir: PathBuf,
    logs: u32,
    limit: Duration,
}

impl Runner {
    /// Logs go to `log_dir` (created); every command is killed after `limit`.
    pub fn new(log_dir: PathBuf, limit: Duration) -> Result<Runner> {
        fs::create_dir_all(&log_dir).with_context(|| format!("creating {}", log_dir.display()))?;
        Ok(Runner { log_dir, logs: 0, limit })
    }

    /// A fresh log file name for `name`.
    pub fn log_path(&mut self, name: &str) -> PathBuf {
        self.logs += 1;
        self.log_dir.join(format!("{:03}-{name}.err", self.logs))
    }

    /// Run `cmds` as a pipeline (stdin of the first, stdout of the last as given), timed
    /// from the first spawn until every process has exited.
    pub fn pipeline(&mut self, mut cmds: Vec<Command>, stdin: Stdio, stdout: Stdio) -> Result<Run> {
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
            usage.push(p.wait(self.limit)?);
        }
        Ok(Run { secs: started.elapsed().as_secs_f64(), usage })
    }

    /// Run one command with stdin and stdout on /dev/null.
    pub fn run_to_null(&mut self, cmd: Command) -> Result<Run> {
        self.pipeline(vec![cmd], Stdio::null(), Stdio::null())
    }

    /// Run one command with its stdin and stdout as `cmd` has them and its stderr in `log`
    /// (for a command whose log is read afterwards: the `-vv` request plans).
    pub fn run_logged(&mut self, mut cmd: Command, name: &str, log: PathBuf) -> Result<Usage> {
        cmd.stderr(File::create(&log).with_context(|| format!("creating {}", log.display()))?);
        Guarded::spawn(&mut cmd, name, Some(log))?.wait(self.limit)
    }
}

/// The directory of the workspace's release binaries (`$CARGO_TARGET_DIR/release`,
/// `target/release` by default), built first with `cargo build --release --bins` when
/// `build`; `root` is the workspace root.
pub fn release_binaries(root: &Path, build: bool) -> Result<PathBuf> {
    if build {
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
    Ok(target.join("release"))
}
