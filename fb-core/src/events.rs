//! What a run reports while it works. The library never prints; the binaries turn these
//! events into `-v` lines, a progress bar, or `--progress json` objects.

use std::sync::Arc;

/// Something a run did that a user may want to see.
#[derive(Debug, Clone)]
pub enum Event {
    /// A run started; `planned_bytes` is what is known up front (may be `None`).
    Started { files: u64, planned_bytes: Option<u64> },
    /// An HTTP request is about to be sent (shown with `-v`).
    Request { method: &'static str, url: String },
    /// A request is tried again after a transient failure.
    Retry { url: String, attempt: u32, reason: String },
    /// A file moves to the next replica.
    Failover { entry: String, from: String, to: Option<String>, reason: String },
    /// Bytes moved (for progress).
    Bytes(u64),
    /// A file is complete.
    FileDone { path: String, size: u64 },
    /// A warning that does not stop the run.
    Warning(String),
    /// The run finished successfully.
    Finished { files: u64, bytes: u64, seconds: f64 },
}

/// Receives events; must be cheap (it is called on hot paths with [`Event::Bytes`]).
pub trait EventSink: Send + Sync {
    /// Handle one event.
    fn event(&self, event: Event);
}

/// A sink that ignores everything.
pub struct Silent;

impl EventSink for Silent {
    fn event(&self, _: Event) {}
}

/// Shared handle to a sink.
pub type Events = Arc<dyn EventSink>;

/// A sink that ignores everything, as a shared handle.
pub fn silent() -> Events {
    Arc::new(Silent)
}
