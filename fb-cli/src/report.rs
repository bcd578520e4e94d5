//! Turning events into lines on stderr: `-v` lines, the progress line on a terminal,
//! `--progress json` objects, and the one-line summary.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fb_core::events::{Event, EventSink, Events};

use crate::args::{Progress, ReportArgs};

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
