//! What every fbkit tool shares on the command line: the cluster, TLS and reporting flags
//! (defined once, flattened into each tool), turning events into `-v` lines, a progress line
//! or `--progress json`, and the one place where an error becomes `tool: message` on stderr
//! and an exit code.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use fb_core::client::{ClusterOptions, TlsOptions};
use fb_core::events::{Event, EventSink, Events};
use fb_core::{Error, Result};

/// The shared cluster flags of contract §3, named as upstream names them.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Cluster")]
pub struct ClusterArgs {
    /// Any node of the cluster: host[:port], with http:// (default) or https://
    #[arg(long, default_value = "localhost:10101", value_name = "HOST[:PORT]")]
    pub host: String,
    /// Bearer token for a cluster with auth on (prefer FBKIT_AUTH_TOKEN or --auth-token-file: argv is visible in ps)
    #[arg(long, env = "FBKIT_AUTH_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub auth_token: Option<String>,
    /// Read the bearer token from this file (surrounding whitespace ignored)
    #[arg(long, value_name = "FILE", conflicts_with = "auth_token")]
    pub auth_token_file: Option<PathBuf>,
    /// Files moved at once; output order and bytes do not depend on it
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    /// How long one idempotent request is retried (5xx, resets) before the next replica, and how long
    /// the owners of a file are asked again while the cluster still lists one as up (frozen, just died)
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = parse_duration)]
    pub retry_period: Duration,
    /// Longest wait for a node's response headers, and between two pieces of a body
    #[arg(long, default_value = "60s", value_name = "DURATION", value_parser = parse_duration)]
    pub header_timeout: Duration,
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// The TLS flags, named as upstream names them.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "TLS")]
pub struct TlsArgs {
    /// PEM file of the CA certificate(s) that signed the cluster's certificates
    #[arg(long = "tls.ca-certificate", value_name = "FILE")]
    pub ca_certificate: Option<PathBuf>,
    /// PEM client certificate, for clusters that require one (mTLS)
    #[arg(long = "tls.certificate", value_name = "FILE", requires = "key")]
    pub certificate: Option<PathBuf>,
    /// PEM private key of the client certificate
    #[arg(long = "tls.key", value_name = "FILE", requires = "certificate")]
    pub key: Option<PathBuf>,
    /// Do not verify the server's certificate (unsafe; off by default)
    #[arg(long = "tls.skip-verify")]
    pub skip_verify: bool,
}

impl ClusterArgs {
    /// The core's options; reads the token file.
    pub fn options(&self) -> Result<ClusterOptions> {
        let auth_token = match (&self.auth_token, &self.auth_token_file) {
            (_, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    Error::precondition(format!("cannot read --auth-token-file {}", path.display())).with_source(e)
                })?;
                Some(text.trim().to_string())
            }
            (Some(t), None) => Some(t.trim().to_string()),
            (None, None) => None,
        };
        Ok(ClusterOptions {
            host: self.host.clone(),
            auth_token,
            tls: TlsOptions {
                ca_certificate: self.tls.ca_certificate.clone(),
                certificate: self.tls.certificate.clone(),
                key: self.tls.key.clone(),
                skip_verify: self.tls.skip_verify,
            },
            retry_period: self.retry_period,
            header_timeout: self.header_timeout,
            concurrency: usize::from(self.concurrency),
        })
    }
}

/// Export options for these indexes, stamped from `SOURCE_DATE_EPOCH` (entry mtimes and the
/// manifest's source) when it is set, else mtime 0. Shared by fb-export and
/// `fb-manifest --host`, whose manifests must be the same bytes.
pub fn export_options(indexes: Vec<String>) -> Result<fb_core::export::ExportOptions> {
    let epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.trim().is_empty() => Some(
            v.trim()
                .parse::<u64>()
                .map_err(|_| Error::usage(format!("SOURCE_DATE_EPOCH={v:?} is not a whole number of seconds")))?,
        ),
        _ => None,
    };
    Ok(fb_core::export::ExportOptions { indexes, mtime: epoch.unwrap_or(0), source_date_epoch: epoch })
}

/// `30s`, `500ms`, `2m`, `1h`, or plain seconds.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.find(|c: char| !c.is_ascii_digit() && c != '.').map(|i| s.split_at(i)).unwrap_or((s, "s"));
    let n: f64 = num.parse().map_err(|_| format!("{s:?} is not a duration like 30s, 500ms, 2m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use ms, s, m or h)")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("{s:?} is not a valid duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// When to show progress.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// A progress line when stderr is a terminal
    Auto,
    /// Always a progress line on stderr
    Always,
    /// No progress
    Never,
    /// One JSON object per line on stderr per event (started, file, retry, failover, finished)
    Json,
}

/// The reporting flags every tool has.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Reporting")]
pub struct ReportArgs {
    /// Progress on stderr
    #[arg(long, value_enum, default_value = "auto", value_name = "WHEN")]
    pub progress: Progress,
    /// No progress and no summary line; errors are still printed
    #[arg(short, long)]
    pub quiet: bool,
    /// More detail on stderr: -v retries and failovers, -vv every request
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// Turns events into lines on stderr. Never prints a token: events carry none.
pub struct Reporter {
    tool: &'static str,
    verbose: u8,
    progress: Progress,
    quiet: bool,
    bytes: AtomicU64,
    files: AtomicU64,
    planned: AtomicU64,
    started: Instant,
    last_draw: Mutex<Option<Instant>>,
    drawn: Mutex<bool>,
}

impl Reporter {
    /// A reporter for `tool` with the given flags.
    pub fn new(tool: &'static str, args: &ReportArgs) -> Arc<Reporter> {
        let progress = match args.progress {
            Progress::Auto if !std::io::stderr().is_terminal() || args.quiet => Progress::Never,
            Progress::Auto => Progress::Always,
            p => p,
        };
        Arc::new(Reporter {
            tool,
            verbose: args.verbose,
            progress,
            quiet: args.quiet,
            bytes: AtomicU64::new(0),
            files: AtomicU64::new(0),
            planned: AtomicU64::new(0),
            started: Instant::now(),
            last_draw: Mutex::new(None),
            drawn: Mutex::new(false),
        })
    }

    /// As a shared event sink.
    pub fn events(self: &Arc<Self>) -> Events {
        self.clone()
    }

    /// Files reported done so far (sent, for an import).
    pub fn files_done(&self) -> u64 {
        self.files.load(Ordering::Relaxed)
    }

    /// Print a line on stderr (clearing a progress line first).
    pub fn line(&self, text: &str) {
        let mut drawn = self.drawn.lock().expect("lock");
        let mut err = std::io::stderr().lock();
        if *drawn {
            let _ = write!(err, "\r\x1b[K");
            *drawn = false;
        }
        let _ = writeln!(err, "{}: {text}", self.tool);
    }

    /// The one-line summary on success, unless `--quiet` (or JSON progress, which has its own).
    pub fn summary(&self, text: &str) {
        if !self.quiet && self.progress != Progress::Json {
            self.line(text);
        }
    }

    fn json(&self, value: serde_json::Value) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{value}");
    }

    fn draw(&self, force: bool) {
        let now = Instant::now();
        {
            let mut last = self.last_draw.lock().expect("lock");
            if !force && last.is_some_and(|t| now.duration_since(t) < Duration::from_millis(200)) {
                return;
            }
            *last = Some(now);
        }
        let bytes = self.bytes.load(Ordering::Relaxed);
        let secs = self.started.elapsed().as_secs_f64().max(1e-6);
        let rate = bytes as f64 / secs;
        let planned = self.planned.load(Ordering::Relaxed);
        let eta = if planned > bytes && rate > 0.0 {
            format!(", about {:.0} s left", (planned - bytes) as f64 / rate)
        } else {
            String::new()
        };
        let text = format!(
            "{} files, {}, {}/s{eta}",
            self.files.load(Ordering::Relaxed),
            human_bytes(bytes),
            human_bytes(rate as u64)
        );
        let mut drawn = self.drawn.lock().expect("lock");
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[K{}: {text}", self.tool);
        let _ = err.flush();
        *drawn = true;
    }
}

impl EventSink for Reporter {
    fn event(&self, event: Event) {
        match &event {
            Event::Bytes(n) => {
                self.bytes.fetch_add(*n, Ordering::Relaxed);
                if self.progress == Progress::Always {
                    self.draw(false);
                }
                return;
            }
            Event::FileDone { .. } => {
                self.files.fetch_add(1, Ordering::Relaxed);
            }
            Event::Started { planned_bytes: Some(n), .. } => {
                self.planned.store(*n, Ordering::Relaxed);
            }
            _ => {}
        }
        if self.progress == Progress::Json {
            let v = match event {
                Event::Started { files, planned_bytes } => {
                    serde_json::json!({"event": "started", "files": files, "planned_bytes": planned_bytes})
                }
                Event::Request { method, url } if self.verbose >= 2 => {
                    serde_json::json!({"event": "request", "method": method, "url": url})
                }
                Event::Request { .. } | Event::Bytes(_) => return,
                Event::Retry { url, attempt, reason } => {
                    serde_json::json!({"event": "retry", "url": url, "attempt": attempt, "reason": reason})
                }
                Event::Failover { entry, from, to, reason } => {
                    serde_json::json!({"event": "failover", "path": entry, "from": from, "to": to, "reason": reason})
                }
                Event::FileDone { path, size } => serde_json::json!({"event": "file", "path": path, "size": size}),
                Event::Warning(w) => serde_json::json!({"event": "warning", "message": w}),
                Event::Finished { files, bytes, seconds } => {
                    serde_json::json!({"event": "finished", "files": files, "bytes": bytes, "seconds": seconds})
                }
            };
            self.json(v);
            return;
        }
        match event {
            Event::Request { method, url } if self.verbose >= 2 => self.line(&format!("{method} {url}")),
            Event::Retry { url, attempt, reason } if self.verbose >= 1 => {
                self.line(&format!("retry {attempt} of {url}: {reason}"))
            }
            Event::Failover { entry, from, to, reason } if self.verbose >= 1 || to.is_some() => {
                let to = to.map(|t| format!(", trying {t}")).unwrap_or_default();
                self.line(&format!("{entry}: {from} failed ({reason}){to}"))
            }
            Event::Warning(w) => self.line(&format!("warning: {w}")),
            Event::FileDone { path, size } if self.verbose >= 1 => self.line(&format!("{path} ({size} bytes)")),
            Event::Finished { .. } if self.progress == Progress::Always => self.draw(true),
            _ => {}
        }
    }
}

/// `1.5 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The summary of a transfer: `N files, SIZE in S s (R MB/s)`.
pub fn transfer_summary(files: u64, bytes: u64, seconds: f64) -> String {
    let rate = bytes as f64 / seconds.max(1e-6) / 1e6;
    format!("{files} files, {} in {seconds:.2} s ({rate:.1} MB/s)", human_bytes(bytes))
}

/// Print `tool: message: cause` and return the error's exit code.
pub fn fail(tool: &str, err: &Error) -> ExitCode {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{tool}: {}", err.chain());
    ExitCode::from(err.exit_code())
}

/// A multi-threaded runtime sized for the machine (fbkit is I/O bound; two workers suffice).
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    keep_freed_memory();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the async runtime", e))
}

/// Keep freed memory in the process instead of returning it to the kernel at once.
///
/// HTTP bodies arrive in buffers of a few hundred KiB, allocated on the runtime's threads
/// and freed on the writer's. glibc serves allocations that large with `mmap` and gives them
/// back with `munmap`, so every chunk cost fresh zeroed pages and page faults: 15% of
/// fb-export's CPU time in a profile. With fixed thresholds the heap keeps and reuses them;
/// peak memory is unchanged (it is bounded by the buffers in flight).
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use nix::libc::{mallopt, M_MMAP_THRESHOLD, M_TRIM_THRESHOLD};
        // SAFETY: mallopt only sets allocator parameters; it is called before the runtime's
        // threads start and is safe to call at any time.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 16 << 20);
            mallopt(M_TRIM_THRESHOLD, 64 << 20);
        }
    }
}

/// Run `fb_core::export::export` into `out` on `rt`, or stop on SIGINT/SIGTERM with an
/// interruption error saying `interrupted` (what became of the output).
pub fn export_until_interrupted<W: std::io::Write + Send + 'static>(
    rt: &tokio::runtime::Runtime,
    client: &std::sync::Arc<fb_core::client::ClusterClient>,
    opts: &fb_core::export::ExportOptions,
    out: W,
    interrupted: &'static str,
) -> Result<(W, fb_core::export::ExportSummary)> {
    rt.block_on(async {
        tokio::select! {
            r = fb_core::export::export(client.clone(), opts, out) => r,
            _ = self::interrupted() => Err(Error::interrupted(interrupted)),
        }
    })
}

/// Resolves when SIGINT or SIGTERM arrives.
pub async fn interrupted() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Give stdin and stdout, where they are pipes, a 1 MiB kernel buffer instead of 64 KiB, so
/// that the two ends of a pipeline (`fb-export | fb-verify`) trade fewer, larger writes and
/// reads and wake each other less often. Best effort: a non-pipe, or a size above the
/// system's `pipe-max-size`, is left as it is.
pub fn grow_pipes() {
    #[cfg(target_os = "linux")]
    for fd in [0, 1] {
        // SAFETY: fcntl(F_SETPIPE_SZ) on the standard descriptors only changes a pipe's
        // buffer size; it fails harmlessly (EBADF, EINVAL, EPERM) on anything else.
        unsafe {
            nix::libc::fcntl(fd, nix::libc::F_SETPIPE_SZ, 1 << 20);
        }
    }
}

/// Standard output as an unbuffered file handle (archive bytes go through a large buffer
/// of the caller's, not Rust's line buffer).
pub fn stdout_file() -> Result<std::fs::File> {
    use std::os::fd::AsFd;
    let fd = std::io::stdout().as_fd().try_clone_to_owned().map_err(|e| Error::io("opening stdout", e))?;
    Ok(std::fs::File::from(fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}

/// A documented example pipeline: listed by `--help`, rendered into the man page's EXAMPLES,
/// and run against fb-devcluster by the test suite, so documentation cannot drift.
#[derive(Debug, Clone, Copy)]
pub struct Example {
    /// What it does, one line.
    pub about: &'static str,
    /// The shell command, exactly as a user types it.
    pub command: &'static str,
}

/// The `--help` epilogue: the examples, then the exit codes in one line.
pub fn help_epilogue(examples: &[Example], exit_status: &str) -> String {
    let mut s = String::from("Examples:\n");
    for e in examples {
        s.push_str(&format!("  # {}\n  {}\n", e.about, e.command));
    }
    s.push_str(&format!("\nExit status: {exit_status}"));
    s
}

/// A tool's clap command with its examples and exit codes in the `--help` epilogue.
pub fn command_for<C: clap::CommandFactory>(examples: &[Example], exit_status: &str) -> clap::Command {
    C::command().after_help(help_epilogue(examples, exit_status))
}

/// Parse the process arguments with [`command_for`]'s command (exits on a usage error).
pub fn parse_for<C: clap::CommandFactory + clap::FromArgMatches>(examples: &[Example], exit_status: &str) -> C {
    let matches = command_for::<C>(examples, exit_status).get_matches();
    C::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}
