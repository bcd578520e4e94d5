//! Turning events into lines on stderr: `-v` lines, a progress bar on a terminal
//! (indicatif), `--progress json` objects, and the one-line summary.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytesize::ByteSize;
use fb_core::events::{Event, EventSink, Events};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle, WeakProgressBar};

use crate::args::{Progress, ReportArgs};

/// Redraws per second of the progress bar.
const REDRAW_HZ: u8 = 5;

/// Progress bars still on screen, so that [`clear_progress`] can take them away before an
/// error is printed (an error otherwise lands on the bar's line, and clearing the bar later
/// would erase it).
static ON_SCREEN: Mutex<Vec<WeakProgressBar>> = Mutex::new(Vec::new());

/// Take every progress bar off the screen for good (before an error message).
pub(crate) fn clear_progress() {
    let bars = std::mem::take(&mut *ON_SCREEN.lock().unwrap_or_else(|e| e.into_inner()));
    for bar in bars.iter().filter_map(WeakProgressBar::upgrade) {
        end(&bar);
    }
}

/// Clear `bar` once; a second clear would erase whatever was printed after the first.
fn end(bar: &ProgressBar) {
    if !bar.is_finished() {
        bar.finish_and_clear();
    }
}

/// The bar's line while the total is unknown: `fb-export: 12 files, 1.50 GiB, 310.20 MiB/s`.
fn style_open() -> ProgressStyle {
    ProgressStyle::with_template("{prefix}: {msg}, {binary_bytes}, {binary_bytes_per_sec}")
        .expect("a valid progress template")
}

/// The bar's line once the planned bytes are known.
fn style_planned() -> ProgressStyle {
    ProgressStyle::with_template(
        "{prefix}: [{bar:24}] {msg}, {binary_bytes} of {binary_total_bytes}, {binary_bytes_per_sec}, about {eta} left",
    )
    .expect("a valid progress template")
    .progress_chars("=> ")
}

/// The reporter of this run when it writes `--progress json`, so that [`json_failed`] (called
/// by [`crate::fail`], maybe after the tool dropped its reporter) ends the event stream with
/// `failed`.
static JSON_RUN: Mutex<Option<Arc<Reporter>>> = Mutex::new(None);

/// End a `--progress json` event stream with `failed` (exit code, error and what was done),
/// unless it ended already or no reporter writes JSON.
pub(crate) fn json_failed(err: &fb_core::Error) {
    let run = JSON_RUN.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if let Some(reporter) = run {
        reporter.failed(err);
    }
}

/// Turns events into lines on stderr. Never prints a token: events carry none.
///
/// With `--progress json` the stream of events ends with exactly one `finished` (exit code
/// 0, the totals, the manifest's digest) or `failed` (the exit code and the error) object, so
/// a monitoring job needs nothing else.
pub struct Reporter {
    tool: &'static str,
    verbose: u8,
    progress: Progress,
    quiet: bool,
    files: AtomicU64,
    bytes: AtomicU64,
    started: Instant,
    /// The core's `finished` event, held until the tool knows its outcome (an export can
    /// still fail renaming its file into place).
    finished: Mutex<Option<serde_json::Value>>,
    /// `finished` or `failed` was written.
    concluded: AtomicBool,
    /// The progress bar, when progress is shown (`--progress always`, or auto on a terminal).
    bar: Option<ProgressBar>,
}

impl Reporter {
    /// A reporter for `tool` with the given flags.
    pub fn new(tool: &'static str, args: &ReportArgs) -> Arc<Reporter> {
        let progress = match args.progress {
            Progress::Auto if !std::io::stderr().is_terminal() || args.quiet => Progress::Never,
            Progress::Auto => Progress::Always,
            p => p,
        };
        let bar = (progress == Progress::Always).then(|| {
            // A term-like target draws also when stderr is not a terminal: `--progress always`.
            let target = ProgressDrawTarget::term_like_with_hz(Box::new(console::Term::stderr()), REDRAW_HZ);
            let bar = ProgressBar::with_draw_target(None, target)
                .with_style(style_open())
                .with_prefix(tool)
                .with_message("0 files");
            ON_SCREEN.lock().unwrap_or_else(|e| e.into_inner()).push(bar.downgrade());
            bar
        });
        let reporter = Arc::new(Reporter {
            tool,
            verbose: args.verbose,
            progress,
            quiet: args.quiet,
            files: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            started: Instant::now(),
            finished: Mutex::new(None),
            concluded: AtomicBool::new(false),
            bar,
        });
        if progress == Progress::Json {
            *JSON_RUN.lock().unwrap_or_else(|e| e.into_inner()) = Some(reporter.clone());
        }
        reporter
    }

    /// As a shared event sink.
    pub fn events(self: &Arc<Self>) -> Events {
        self.clone()
    }

    /// Files reported done so far (sent, for an import).
    pub fn files_done(&self) -> u64 {
        self.files.load(Ordering::Relaxed)
    }

    /// Take the progress bar off the screen for good: the work is done, and what the tool
    /// prints now (on stdout or stderr) must not share the bar's line.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            end(bar);
        }
    }

    /// Print a line on stderr, once the work is done: ends the progress bar first.
    pub fn line(&self, text: &str) {
        self.finish();
        self.print(text);
    }

    /// Print a line on stderr while the work goes on: the bar steps aside and is redrawn.
    fn print(&self, text: &str) {
        let write = || {
            let _ = writeln!(std::io::stderr().lock(), "{}: {text}", self.tool);
        };
        match &self.bar {
            Some(bar) if !bar.is_finished() => bar.suspend(write),
            _ => write(),
        }
    }

    /// The one-line summary on success, unless `--quiet`; with JSON progress, the `finished`
    /// event instead (see [`Reporter::succeeded`]).
    pub fn summary(&self, text: &str) {
        self.finish();
        if self.progress == Progress::Json {
            self.succeeded();
        } else if !self.quiet {
            self.print(text);
        }
    }

    /// The run succeeded: with JSON progress, write the `finished` event (exit code 0, files,
    /// bytes, seconds and, where the run wrote or checked a manifest, its totals and
    /// `manifest_sha256`). Once per run; nothing without JSON progress.
    pub fn succeeded(&self) {
        if self.progress != Progress::Json || self.concluded.swap(true, Ordering::SeqCst) {
            return;
        }
        let held = self.finished.lock().unwrap_or_else(|e| e.into_inner()).take();
        let mut event = serde_json::json!({"event": "finished", "exit_code": 0});
        let fields = held.unwrap_or_else(|| self.so_far());
        if let (Some(event), serde_json::Value::Object(fields)) = (event.as_object_mut(), fields) {
            event.extend(fields);
        }
        self.json(event);
    }

    /// The run failed: with JSON progress, write the `failed` event (exit code, error, and
    /// the files and bytes done so far). Once per run.
    fn failed(&self, err: &fb_core::Error) {
        self.ended_with(err.exit_code(), &err.chain());
    }

    /// The run ran to its end with a verdict that is not success (a diff that found
    /// differences, exit 1): with JSON progress, the `failed` event with that exit code and
    /// `why`. Nothing is printed otherwise: the verdict is the tool's output. Once per run.
    pub fn ended_with(&self, exit_code: u8, why: &str) {
        if self.progress != Progress::Json || self.concluded.swap(true, Ordering::SeqCst) {
            return;
        }
        let mut event = serde_json::json!({"event": "failed", "exit_code": exit_code, "error": why});
        if let (Some(event), serde_json::Value::Object(fields)) = (event.as_object_mut(), self.so_far()) {
            event.extend(fields);
        }
        self.json(event);
    }

    /// Files, bytes and seconds counted by this reporter.
    fn so_far(&self) -> serde_json::Value {
        serde_json::json!({
            "files": self.files_done(),
            "bytes": self.bytes.load(Ordering::Relaxed),
            "seconds": self.started.elapsed().as_secs_f64(),
        })
    }

    fn json(&self, value: serde_json::Value) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{value}");
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.finish();
    }
}

impl EventSink for Reporter {
    fn event(&self, event: Event) {
        match &event {
            Event::Bytes(n) => {
                self.bytes.fetch_add(*n, Ordering::Relaxed);
                if let Some(bar) = &self.bar {
                    bar.inc(*n);
                }
                return;
            }
            Event::FileDone { .. } => {
                let files = self.files.fetch_add(1, Ordering::Relaxed) + 1;
                if let Some(bar) = &self.bar {
                    bar.set_message(format!("{files} files"));
                }
            }
            Event::Started { planned_bytes: Some(n), .. } => {
                if let Some(bar) = &self.bar {
                    bar.set_length(*n);
                    bar.set_style(style_planned());
                }
            }
            _ => {}
        }
        if self.progress == Progress::Json {
            let v = match event {
                Event::Started { files, optional_files, planned_bytes } => serde_json::json!({
                    "event": "started",
                    "files": files,
                    "optional_files": optional_files,
                    "planned_bytes": planned_bytes,
                }),
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
                Event::Finished { files, required_files, bytes, seconds, manifest_sha256, totals } => {
                    // Written by `succeeded` once the tool's outcome is known.
                    let held = serde_json::json!({
                        "files": files,
                        "required_files": required_files,
                        "optional_files": files - required_files.min(files),
                        "bytes": bytes,
                        "seconds": seconds,
                        "manifest_sha256": manifest_sha256,
                        "totals": totals,
                    });
                    *self.finished.lock().unwrap_or_else(|e| e.into_inner()) = Some(held);
                    return;
                }
            };
            self.json(v);
            return;
        }
        match event {
            Event::Request { method, url } if self.verbose >= 2 => self.print(&format!("{method} {url}")),
            Event::Retry { url, attempt, reason } if self.verbose >= 1 => {
                self.print(&format!("retry {attempt} of {url}: {reason}"))
            }
            Event::Failover { entry, from, to, reason } if self.verbose >= 1 || to.is_some() => {
                let to = to.map(|t| format!(", trying {t}")).unwrap_or_default();
                self.print(&format!("{entry}: {from} failed ({reason}){to}"))
            }
            Event::Warning(w) => self.print(&format!("warning: {w}")),
            Event::FileDone { path, size } if self.verbose >= 2 => self.print(&format!("{path} ({size} bytes)")),
            Event::Finished { .. } => self.finish(),
            _ => {}
        }
    }
}

/// `1.5 MiB` (binary units, one decimal; plain bytes below 1 KiB: `512 B`).
pub fn human_bytes(n: u64) -> String {
    ByteSize::b(n).display().iec().to_string()
}

/// The summary of a transfer: `N files, SIZE in S s (R MB/s)`.
pub fn transfer_summary(files: u64, bytes: u64, seconds: f64) -> String {
    let rate = bytes as f64 / seconds.max(1e-6) / 1e6;
    format!("{files} files, {} in {seconds:.2} s ({rate:.1} MB/s)", human_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_keeps_the_summary_format() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(2150), "2.1 KiB");
        assert_eq!(human_bytes(14_784_921), "14.1 MiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
        assert_eq!(transfer_summary(3, 1536, 2.0), "3 files, 1.5 KiB in 2.00 s (0.0 MB/s)");
    }

    #[test]
    fn a_reporter_without_a_bar_counts_files() {
        let args = ReportArgs { progress: Progress::Never, quiet: true, verbose: 0 };
        let reporter = Reporter::new("fb-test", &args);
        let events = reporter.events();
        events.event(Event::Bytes(10));
        events.event(Event::FileDone { path: "schema".into(), size: 10 });
        assert_eq!(reporter.files_done(), 1);
        assert!(reporter.bar.is_none());
    }
}
