//! What a run reports while it works. The library never prints; the binaries turn these
//! events into `-v` lines, a progress bar, or `--progress json` objects.

use std::sync::Arc;

/// Something a run did that a user may want to see.
#[derive(Debug, Clone)]
pub enum Event {
    /// A run started.
    Started {
        /// Entries that will be moved, every one of them or the run fails: for an export the
        /// schema, shards, key stores and idalloc; for an import every entry of the manifest.
        /// `MANIFEST.json` itself is never counted.
        files: u64,
        /// Entries moved only where they exist (an export's dataframes): at most this many
        /// more than `files`.
        optional_files: u64,
        /// Bytes known up front, if any (an export's is an estimate).
        planned_bytes: Option<u64>,
    },
    /// An HTTP request is about to be sent (shown with `-v`).
    Request {
        /// `GET` or `POST`.
        method: &'static str,
        /// The URL.
        url: String,
    },
    /// A request is tried again after a transient failure.
    Retry {
        /// What is retried: a URL, or an entry whose owners are asked again.
        url: String,
        /// The attempt that failed (from 1).
        attempt: u32,
        /// Why, with causes.
        reason: String,
    },
    /// A file moves to the next replica.
    Failover {
        /// The entry.
        entry: String,
        /// The node that failed (`host:port`).
        from: String,
        /// The node tried next, if any.
        to: Option<String>,
        /// Why, with causes.
        reason: String,
    },
    /// Bytes moved (for progress).
    Bytes(u64),
    /// A file is complete.
    FileDone {
        /// Entry path.
        path: String,
        /// Its size.
        size: u64,
    },
    /// A warning that does not stop the run.
    Warning(String),
    /// The run's work finished successfully (the tool may still fail after it, e.g. when
    /// renaming its output into place; the binaries report the outcome).
    Finished {
        /// Entries moved (`MANIFEST.json` not counted).
        files: u64,
        /// Of `files`, those that had to be there: the `files` of [`Event::Started`]. The
        /// rest are optional entries found (an export's dataframes).
        required_files: u64,
        /// Bytes of entry data moved.
        bytes: u64,
        /// Wall-clock seconds.
        seconds: f64,
        /// `manifest_sha256` of the manifest written (export) or checked (import), if any.
        manifest_sha256: Option<String>,
        /// That manifest's totals.
        totals: Option<crate::manifest::Totals>,
    },
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
