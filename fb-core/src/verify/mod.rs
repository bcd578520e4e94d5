//! Reading a backup without restoring it: scan a stream or an extracted directory, hash every
//! entry (and with `deep`, check its inner format), then compare with a manifest (contract
//! §2–§3). The same scan computes the manifest that `fb-manifest` prints.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;

use serde::Serialize;

use crate::content::Content;
use crate::error::{Error, ErrorKind, Result};
use crate::events::Events;
use crate::format::{declared_len, FormatProblem};
use crate::layout::{EntryKind, EntryPath};
use crate::manifest::{hex, Manifest, ManifestEntry};
use crate::schema::Schema;

mod digest;
mod scan;

pub use scan::{scan_dir, scan_file, scan_stdin, scan_stream};

/// Read buffer: large enough that hashing, not system calls, is the cost.
pub(crate) const BUF: usize = 1 << 20;

/// What a scan computes besides sizes and SHA-256s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanMode {
    /// Check each file's inner format (`--deep`).
    pub deep: bool,
    /// Compute each entry's content digest ([`crate::content`]); keeps a schema, key store or
    /// idalloc in memory while it is read, up to [`crate::content::CONTENT_LIMIT`].
    pub content: bool,
    /// Decode shards and key stores for the census ([`crate::census`]).
    pub census: bool,
}

impl From<bool> for ScanMode {
    /// `deep` alone.
    fn from(deep: bool) -> Self {
        ScanMode { deep, content: false, census: false }
    }
}

/// What the scan found for one entry.
#[derive(Debug, Clone)]
pub struct ScannedEntry {
    /// Its path.
    pub path: EntryPath,
    /// Bytes read.
    pub size: u64,
    /// SHA-256 of the bytes read.
    pub sha256: [u8; 32],
    /// The first format problem found (only with `deep`).
    pub problem: Option<FormatProblem>,
    /// The content digest (only with [`ScanMode::content`]).
    pub content: Option<Content>,
    /// What the census took from it (only with [`ScanMode::census`], for shards and key stores).
    pub census: Option<crate::census::EntryCensus>,
}

/// The result of scanning a backup.
#[derive(Debug, Default)]
pub struct Scan {
    /// Entries completely read, in the order read.
    pub entries: Vec<ScannedEntry>,
    /// The bytes of the embedded `MANIFEST.json`, if the source had one.
    pub embedded_manifest: Option<Vec<u8>>,
    /// Why the scan stopped early (truncated or malformed input), if it did.
    pub stopped: Option<Error>,
    /// The entry being read when the scan stopped, if any.
    pub stopped_in: Option<String>,
    /// The `schema` entry's bytes (bounded), for the deep reference checks.
    pub schema_bytes: Option<Vec<u8>>,
}

impl Scan {
    /// The manifest of what was read, with the given source description.
    pub fn manifest(&self, source: serde_json::Map<String, serde_json::Value>) -> Manifest {
        Manifest::new(source, self.entries.iter().map(|e| ManifestEntry::new(&e.path, e.size, &e.sha256)).collect())
    }
}

/// The state of one entry after comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryStatus {
    /// Size and SHA-256 match (and the format checks passed).
    Ok,
    /// Listed in the manifest, not in the backup.
    Missing,
    /// In the backup, not listed in the manifest.
    Extra,
    /// Size or SHA-256 differ.
    Changed,
    /// The stream ended inside this entry.
    Truncated,
    /// The bytes match, but the file's inner format is broken (`--deep`).
    Malformed,
}

/// Size and digest of one side of a comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Fingerprint {
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
}

/// The verdict on one entry.
#[derive(Debug, Clone, Serialize)]
pub struct EntryReport {
    /// Entry path.
    pub path: String,
    /// The verdict.
    pub status: EntryStatus,
    /// What the manifest says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<Fingerprint>,
    /// What was read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual: Option<Fingerprint>,
    /// Details (the format problem and its offset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The outcome of a verification.
#[derive(Debug)]
pub struct Verification {
    /// One line per entry, in manifest order, then extras.
    pub entries: Vec<EntryReport>,
    /// `None` when everything checked out; else the error whose code is the exit status.
    pub failure: Option<Error>,
}

/// Compare a scan with a manifest (the embedded one unless `external` is given; then the
/// embedded one, if present, must agree with it). With `deep`, format problems and schema
/// references are checked too.
pub fn verify(scan: Scan, external: Option<&Manifest>, deep: bool) -> Verification {
    let mut reports = Vec::new();
    let scanned: BTreeMap<String, &ScannedEntry> = scan.entries.iter().map(|e| (e.path.to_string(), e)).collect();
    let fp = |e: &ScannedEntry| Fingerprint { size: e.size, sha256: hex(&e.sha256) };

    let embedded = scan.embedded_manifest.as_deref().map(Manifest::parse);
    let manifest: Option<Manifest> = match (external, embedded) {
        (Some(m), Some(Ok(own))) => {
            if own.entries_sha256 != m.entries_sha256 {
                return Verification {
                    entries: reports,
                    failure: Some(Error::verification(
                        "the archive's own MANIFEST.json differs from the manifest given with --manifest",
                    )),
                };
            }
            Some(m.clone())
        }
        (Some(m), _) => Some(m.clone()),
        (None, Some(Ok(own))) => Some(own),
        (None, Some(Err(e))) => return Verification { entries: reports, failure: Some(e) },
        (None, None) => None,
    };

    let mut failure = scan.stopped;
    if let Some(m) = &manifest {
        let listed: BTreeSet<&str> = m.entries.iter().map(|e| e.path.as_str()).collect();
        for e in &m.entries {
            let expected = Some(Fingerprint { size: e.size, sha256: e.sha256.clone() });
            let (status, actual, detail) = match scanned.get(&e.path) {
                Some(s) if s.size == e.size && hex(&s.sha256) == e.sha256 => match &s.problem {
                    Some(p) => (EntryStatus::Malformed, Some(fp(s)), Some(p.to_string())),
                    None => (EntryStatus::Ok, Some(fp(s)), None),
                },
                Some(s) => (EntryStatus::Changed, Some(fp(s)), None),
                None if scan_stopped_in(&scan.stopped_in, &e.path) => (EntryStatus::Truncated, None, None),
                None => (EntryStatus::Missing, None, None),
            };
            reports.push(EntryReport { path: e.path.clone(), status, expected, actual, detail });
        }
        for s in &scan.entries {
            let p = s.path.to_string();
            if !listed.contains(p.as_str()) {
                reports.push(EntryReport {
                    path: p,
                    status: EntryStatus::Extra,
                    expected: None,
                    actual: Some(fp(s)),
                    detail: None,
                });
            }
        }
    } else {
        for s in &scan.entries {
            let (status, detail) = match &s.problem {
                Some(p) => (EntryStatus::Malformed, Some(p.to_string())),
                None => (EntryStatus::Ok, None),
            };
            reports.push(EntryReport { path: s.path.to_string(), status, expected: None, actual: Some(fp(s)), detail });
        }
        if failure.is_none() {
            failure = Some(Error::truncated(
                "the backup has no MANIFEST.json: it is incomplete, or was not written by fb-export (give one with --manifest)",
            ));
        }
    }
    if deep {
        let paths: Vec<EntryPath> = scan.entries.iter().map(|e| e.path.clone()).collect();
        let problems = match &scan.schema_bytes {
            Some(bytes) => check_schema_references(bytes, &paths),
            None if !paths.is_empty() => vec![(paths[0].to_string(), "the backup has no schema entry".to_string())],
            None => Vec::new(),
        };
        for (path, message) in problems {
            match reports.iter_mut().find(|r| r.path == path) {
                Some(r) if r.status == EntryStatus::Ok => {
                    r.status = EntryStatus::Malformed;
                    r.detail = Some(message);
                }
                Some(_) => {}
                // An entry the schema requires and the archive lacks.
                None => reports.push(EntryReport {
                    path,
                    status: EntryStatus::Missing,
                    expected: None,
                    actual: None,
                    detail: Some(message),
                }),
            }
        }
    }
    if failure.is_none() {
        let bad: Vec<&EntryReport> = reports.iter().filter(|r| r.status != EntryStatus::Ok).collect();
        if let Some(first) = bad.first() {
            let more = if bad.len() > 1 { format!(" (and {} more)", bad.len() - 1) } else { String::new() };
            let what = match first.status {
                EntryStatus::Malformed => format!("{}: {}", first.path, first.detail.clone().unwrap_or_default()),
                s => format!("{}: {}", first.path, format!("{s:?}").to_lowercase()),
            };
            failure = Some(Error::verification(format!("verification failed: {what}{more}")));
        }
    }
    Verification { entries: reports, failure }
}

fn scan_stopped_in(stopped_in: &Option<String>, path: &str) -> bool {
    stopped_in.as_deref() == Some(path)
}

/// The deep checks that need the file's bytes beyond the streaming checker: the length the
/// file declares must be its length.
pub fn declared_length_problem(kind: EntryKind, prefix: &[u8], actual: u64) -> Option<FormatProblem> {
    match declared_len(kind, prefix) {
        Ok(Some(d)) if d != actual => Some(FormatProblem {
            offset: d.min(actual),
            message: format!("the file declares {d} bytes but has {actual}"),
        }),
        Ok(_) => None,
        Err(p) => Some(p),
    }
}

/// Check the `schema` entry against the other entries: it parses, upstream's `POST /schema`
/// would accept it, each index and field that an entry names exists in it, and every key
/// store it requires is there ([`Schema::required_key_entries`]). Each problem comes with the
/// path it concerns (a required entry that is absent is named by its own path).
pub fn check_schema_references(schema_bytes: &[u8], paths: &[EntryPath]) -> Vec<(String, String)> {
    let schema = match Schema::parse(schema_bytes) {
        Ok(s) => s,
        Err(e) => return vec![("schema".into(), e.chain())],
    };
    let mut out = Vec::new();
    let refused = schema.upstream_problems();
    if !refused.is_empty() {
        out.push(("schema".into(), format!("FeatureBase would refuse this schema: {}", refused.join("; "))));
    }
    let present: BTreeSet<&EntryPath> = paths.iter().collect();
    for required in schema.required_key_entries() {
        if !present.contains(&required) {
            let why = match &required {
                EntryPath::FieldKeys { index, field } => format!("field {field:?} of index {index:?} is keyed"),
                other => format!("index {:?} is keyed", other.index().unwrap_or_default()),
            };
            out.push((required.to_string(), format!("missing: {why}, so the backup must hold this key store")));
        }
    }
    for p in paths {
        if let Some(index) = p.index() {
            match schema.index(index) {
                None => out.push((p.to_string(), format!("index {index:?} is not in the schema"))),
                Some(info) => {
                    if let Some(field) = p.field() {
                        if !info.fields.iter().any(|f| f.name == field) {
                            out.push((
                                p.to_string(),
                                format!("field {field:?} of index {index:?} is not in the schema"),
                            ));
                        }
                    }
                }
            }
        }
    }
    out
}

/// Open a backup file or manifest named on the command line; one that cannot be opened is a
/// missing input (exit 66), named.
pub fn open_input(path: &Path) -> Result<std::fs::File> {
    std::fs::File::open(path)
        .map_err(|e| Error::new(ErrorKind::Truncated, format!("cannot open {}", path.display())).with_source(e))
}

/// Scan a source as the tools name it: `None` or `-` is stdin, a directory is an extracted
/// backup, anything else a stream file (plain, zstd or gzip).
pub fn scan_source(source: Option<&Path>, mode: impl Into<ScanMode>, events: &Events) -> Result<Scan> {
    let mode = mode.into();
    match source {
        None => Ok(scan_stdin(mode, events)),
        Some(p) if p.as_os_str() == "-" => Ok(scan_stdin(mode, events)),
        Some(p) if p.is_dir() => scan_dir(p, mode, events),
        Some(p) => Ok(scan_file(open_input(p)?, mode, events)),
    }
}

/// Read a manifest stored apart (`--manifest FILE`).
pub fn read_manifest_file(path: &Path) -> Result<Manifest> {
    const MAX: u64 = 256 << 20;
    let file = open_input(path)?;
    let len = file.metadata().map_err(|e| Error::io(format!("reading {}", path.display()), e))?.len();
    if len > MAX {
        return Err(Error::invalid(format!("{}: {len} bytes is too large for a manifest", path.display())));
    }
    let mut bytes = Vec::new();
    file.take(MAX + 1).read_to_end(&mut bytes).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    Manifest::parse(&bytes).map_err(|e| e.context(path.display()))
}

/// The manifest of a scanned source. The `source` object is the embedded manifest's when
/// there is one (so `fb-manifest < a.tar` reproduces the archive's MANIFEST.json byte for
/// byte), else `fallback`. A source that stopped early is an error; so is content that
/// disagrees with its embedded manifest (exit 1).
pub fn manifest_of_scan(scan: Scan, fallback: serde_json::Map<String, serde_json::Value>) -> Result<Manifest> {
    if let Some(e) = scan.stopped {
        return Err(e);
    }
    let embedded = scan.embedded_manifest.as_deref().map(Manifest::parse).transpose()?;
    let source = embedded.as_ref().map(|m| m.source.clone()).unwrap_or(fallback);
    let computed =
        Manifest::new(source, scan.entries.iter().map(|e| ManifestEntry::new(&e.path, e.size, &e.sha256)).collect());
    if let Some(own) = embedded {
        if own.entries_sha256 != computed.entries_sha256 {
            let d = crate::manifest::diff(&own, &computed);
            let mut names: Vec<&str> = d.changed.iter().map(|(a, _)| a.path.as_str()).collect();
            names.extend(d.added.iter().map(|e| e.path.as_str()));
            names.extend(d.removed.iter().map(|e| e.path.as_str()));
            let shown: Vec<&str> = names.iter().take(5).copied().collect();
            return Err(Error::verification(format!(
                "the content disagrees with its own MANIFEST.json: {}{}",
                if shown.is_empty() { "entry order differs".to_string() } else { shown.join(", ") },
                if names.len() > 5 { format!(" and {} more", names.len() - 5) } else { String::new() }
            )));
        }
    }
    Ok(computed)
}
