//! `MANIFEST.json`, format version 1 (contract §2): what an archive holds, with the size and
//! SHA-256 of every entry, and a digest of the entry list so a manifest stored apart from its
//! archive can be checked too.
//!
//! The bytes are fixed: two-space pretty JSON, keys in declaration order, a final newline.
//! `entries_sha256` is the SHA-256 of the compact JSON serialisation (no whitespace, same key
//! order) of the `entries` array. `manifest_sha256`, the last key, is the SHA-256 of the
//! compact serialisation of every key before it, so no byte of the manifest (its `source`
//! included) can change unnoticed; a reader also requires the canonical bytes exactly, which
//! catches changes to white space.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::layout::{EntryKind, EntryPath};

/// The `format` value of an fbkit manifest.
pub const FORMAT: &str = "fbkit-manifest";
/// The manifest version this build writes and the newest it reads.
pub const VERSION: u64 = 1;

/// One entry of the archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestEntry {
    /// Entry name in the archive.
    pub path: String,
    /// `schema`, `idalloc`, `shard`, `index-keys`, `field-keys` or `dataframe`.
    pub kind: String,
    /// Index name, where the entry belongs to an index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    /// Field name, for field key stores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Shard number, for shards and dataframes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<u64>,
    /// Key partition, for index key partitions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<u32>,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the content, lower-case hex.
    pub sha256: String,
}

impl ManifestEntry {
    /// The entry for `path` with the given size and digest.
    pub fn new(path: &EntryPath, size: u64, sha256: &[u8; 32]) -> Self {
        ManifestEntry {
            path: path.to_string(),
            kind: path.kind().as_str().to_string(),
            index: path.index().map(str::to_string),
            field: path.field().map(str::to_string),
            shard: path.shard(),
            partition: path.partition(),
            size,
            sha256: hex(sha256),
        }
    }

    /// The typed path; only valid after [`Manifest::parse`] checked it.
    pub fn entry_path(&self) -> Result<EntryPath> {
        EntryPath::parse(&self.path)
    }
}

/// Entry count and bytes of one kind, or of all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Count {
    /// Number of entries.
    pub entries: u64,
    /// Sum of their sizes.
    pub bytes: u64,
}

/// Totals per kind and overall.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Totals {
    /// Every entry.
    pub entries: u64,
    /// Every byte.
    pub bytes: u64,
    /// Per kind, only kinds present, in a fixed order.
    pub by_kind: serde_json::Map<String, serde_json::Value>,
}

/// A whole manifest document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// Always [`VERSION`] when written by this build.
    pub version: u64,
    /// Where the content came from; informative, never part of a comparison.
    pub source: serde_json::Map<String, serde_json::Value>,
    /// One object per archive entry, in archive order.
    pub entries: Vec<ManifestEntry>,
    /// Totals per kind and overall.
    pub totals: Totals,
    /// SHA-256 of the compact serialisation of `entries`.
    pub entries_sha256: String,
    /// SHA-256 of the compact serialisation of all the keys above.
    pub manifest_sha256: String,
}

/// The keys covered by `manifest_sha256`, in order.
#[derive(Serialize)]
struct Covered<'a> {
    format: &'a str,
    version: u64,
    source: &'a serde_json::Map<String, serde_json::Value>,
    entries: &'a [ManifestEntry],
    totals: &'a Totals,
    entries_sha256: &'a str,
}

impl Manifest {
    fn self_digest(&self) -> String {
        let covered = Covered {
            format: &self.format,
            version: self.version,
            source: &self.source,
            entries: &self.entries,
            totals: &self.totals,
            entries_sha256: &self.entries_sha256,
        };
        hex(&Sha256::digest(serde_json::to_vec(&covered).expect("manifest serialises")))
    }
}

impl Manifest {
    /// A manifest over `entries` (in archive order) with the given `source` description.
    pub fn new(source: serde_json::Map<String, serde_json::Value>, entries: Vec<ManifestEntry>) -> Self {
        let totals = totals(&entries);
        let entries_sha256 = entries_digest(&entries);
        let mut m = Manifest {
            format: FORMAT.into(),
            version: VERSION,
            source,
            entries,
            totals,
            entries_sha256,
            manifest_sha256: String::new(),
        };
        m.manifest_sha256 = m.self_digest();
        m
    }

    /// The exact bytes of `MANIFEST.json`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("a manifest always serialises");
        out.push(b'\n');
        out
    }

    /// Parse and check a manifest: known format and version, every entry a valid layout path
    /// whose fields agree with the path, no duplicates, well-formed digests, and totals and
    /// `entries_sha256` that match the entries. A digest mismatch is a verification failure
    /// (exit 1); anything malformed is an invalid backup (exit 65).
    pub fn parse(bytes: &[u8]) -> Result<Manifest> {
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::invalid("MANIFEST.json is not valid JSON").with_source(e))?;
        match value.get("format").and_then(|v| v.as_str()) {
            Some(FORMAT) => {}
            Some(other) => {
                return Err(Error::invalid(format!("MANIFEST.json: unknown format {other:?} (expected {FORMAT:?})")))
            }
            None => return Err(Error::invalid("MANIFEST.json: no \"format\" field")),
        }
        match value.get("version").and_then(|v| v.as_u64()) {
            Some(VERSION) => {}
            Some(v) => {
                return Err(Error::invalid(format!(
                    "MANIFEST.json: version {v} is not supported by this fbkit (reads version {VERSION}); upgrade fbkit"
                )))
            }
            None => return Err(Error::invalid("MANIFEST.json: missing or invalid \"version\"")),
        }
        let m: Manifest = serde_json::from_value(value)
            .map_err(|e| Error::invalid("MANIFEST.json does not have the version 1 shape").with_source(e))?;
        let mut seen = std::collections::HashSet::new();
        for (i, e) in m.entries.iter().enumerate() {
            let path =
                EntryPath::parse(&e.path).map_err(|err| err.context(format!("MANIFEST.json entry #{}", i + 1)))?;
            let expect = ManifestEntry::new(&path, e.size, &[0; 32]);
            if e.kind != expect.kind
                || e.index != expect.index
                || e.field != expect.field
                || e.shard != expect.shard
                || e.partition != expect.partition
            {
                return Err(Error::invalid(format!(
                    "MANIFEST.json entry {:?}: kind/index/field/shard/partition do not match the path",
                    e.path
                )));
            }
            if e.sha256.len() != 64 || !e.sha256.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)) {
                return Err(Error::invalid(format!("MANIFEST.json entry {:?}: sha256 is not 64 hex digits", e.path)));
            }
            if !seen.insert(e.path.as_str()) {
                return Err(Error::invalid(format!("MANIFEST.json lists {:?} twice", e.path)));
            }
        }
        if m.entries_sha256 != entries_digest(&m.entries) {
            return Err(Error::verification(
                "MANIFEST.json: entries_sha256 does not match its entries; the manifest was altered or damaged",
            ));
        }
        if m.totals != totals(&m.entries) {
            return Err(Error::verification("MANIFEST.json: totals do not match its entries"));
        }
        if m.manifest_sha256 != m.self_digest() {
            return Err(Error::verification(
                "MANIFEST.json: manifest_sha256 does not match the manifest; it was altered or damaged",
            ));
        }
        if m.to_bytes() != bytes {
            return Err(Error::verification(
                "MANIFEST.json is not byte for byte in the form fbkit writes; it was altered or damaged",
            ));
        }
        Ok(m)
    }

    /// The entry for `path`, if listed.
    pub fn entry(&self, path: &str) -> Option<&ManifestEntry> {
        self.entries.iter().find(|e| e.path == path)
    }
}

/// SHA-256 of the compact JSON of `entries`, lower-case hex.
pub fn entries_digest(entries: &[ManifestEntry]) -> String {
    let compact = serde_json::to_vec(entries).expect("entries always serialise");
    hex(&Sha256::digest(&compact))
}

fn totals(entries: &[ManifestEntry]) -> Totals {
    let mut t = Totals::default();
    for kind in EntryKind::ALL {
        let mut c = Count::default();
        for e in entries.iter().filter(|e| e.kind == kind.as_str()) {
            c.entries += 1;
            c.bytes += e.size;
        }
        if c.entries > 0 {
            t.by_kind.insert(kind.as_str().into(), serde_json::to_value(c).expect("count serialises"));
        }
    }
    t.entries = entries.len() as u64;
    t.bytes = entries.iter().map(|e| e.size).sum();
    t
}

/// Lower-case hex of a byte string.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        let mut src = serde_json::Map::new();
        src.insert("host".into(), "localhost:10101".into());
        let entries = vec![
            ManifestEntry::new(&EntryPath::Schema, 10, &[1; 32]),
            ManifestEntry::new(&EntryPath::Shard { index: "users".into(), shard: 3 }, 8192, &[2; 32]),
            ManifestEntry::new(&EntryPath::IndexKeys { index: "users".into(), partition: 7 }, 32768, &[3; 32]),
        ];
        Manifest::new(src, entries)
    }

    #[test]
    fn round_trips_byte_for_byte() {
        let m = sample();
        let bytes = m.to_bytes();
        let back = Manifest::parse(&bytes).unwrap();
        assert_eq!(back.to_bytes(), bytes);
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("{\n  \"format\": \"fbkit-manifest\",\n  \"version\": 1,\n  \"source\""));
        assert!(text.contains("\"partition\": 7"));
        assert!(text.ends_with("}\n"));
    }

    #[test]
    fn refuses_unknown_format_newer_version_and_tampering() {
        let m = sample();
        let text = String::from_utf8(m.to_bytes()).unwrap();
        let e = Manifest::parse(text.replace("\"version\": 1", "\"version\": 2").as_bytes()).unwrap_err();
        assert_eq!(e.exit_code(), 65);
        assert!(e.message().contains("version 2"));
        let e = Manifest::parse(text.replace("fbkit-manifest", "other").as_bytes()).unwrap_err();
        assert_eq!(e.exit_code(), 65);
        let e = Manifest::parse(text.replace("\"size\": 8192", "\"size\": 8193").as_bytes()).unwrap_err();
        assert_eq!(e.exit_code(), 1);
        let e = Manifest::parse(text.replace("shards/0003", "shards/../../x").as_bytes()).unwrap_err();
        assert_eq!(e.exit_code(), 65);
        let e = Manifest::parse(text.replace("localhost", "localhosu").as_bytes()).unwrap_err();
        assert_eq!(e.exit_code(), 1);
        let e = Manifest::parse(text.replacen("  \"version\"", " \t\"version\"", 1).as_bytes()).unwrap_err();
        assert_eq!(e.exit_code(), 1);
    }

    #[test]
    fn every_single_byte_flip_is_refused() {
        let bytes = sample().to_bytes();
        for i in 0..bytes.len() {
            for bit in [0x01u8, 0x20, 0x80] {
                let mut b = bytes.clone();
                b[i] ^= bit;
                let e = Manifest::parse(&b).expect_err(&format!("flip at {i}"));
                assert!(matches!(e.exit_code(), 1 | 65), "flip at {i}: {e:?}");
            }
        }
    }
}

/// The manifest's `source` as fb-export writes it (contract §2): what the stream came from,
/// in a fixed key order. Readers keep any `source` object as they find it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceInfo {
    /// `--host` as given.
    pub host: String,
    /// The cluster's name, when it reports one.
    pub cluster_name: Option<String>,
    /// Nodes in the cluster.
    pub nodes: usize,
    /// The replica count the cluster reports.
    pub replicas: usize,
    /// The FeatureBase version the cluster reports.
    pub featurebase_version: Option<String>,
    /// The indexes backed up, when `--index` chose some.
    pub indexes: Option<Vec<String>>,
    /// `SOURCE_DATE_EPOCH`, when set.
    pub source_date_epoch: Option<u64>,
    /// The cluster answered that dataframes are disabled.
    pub dataframes_disabled: bool,
}

impl SourceInfo {
    /// The JSON object, keys in the manifest's order.
    pub fn to_map(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        m.insert("host".into(), self.host.clone().into());
        if let Some(name) = &self.cluster_name {
            m.insert("cluster_name".into(), name.clone().into());
        }
        m.insert("nodes".into(), self.nodes.into());
        m.insert("replicas".into(), self.replicas.into());
        if let Some(v) = &self.featurebase_version {
            m.insert("featurebase_version".into(), v.clone().into());
        }
        if let Some(list) = &self.indexes {
            m.insert("indexes".into(), list.clone().into());
        }
        if let Some(epoch) = self.source_date_epoch {
            m.insert("source_date_epoch".into(), epoch.into());
        }
        if self.dataframes_disabled {
            m.insert("dataframes".into(), "disabled".into());
        }
        m
    }
}

/// What differs between two manifests, by path (sources are not compared).
#[derive(Debug, Default)]
pub struct Diff {
    /// In B only.
    pub added: Vec<ManifestEntry>,
    /// In A only.
    pub removed: Vec<ManifestEntry>,
    /// In both, with a different size or SHA-256: (A's, B's).
    pub changed: Vec<(ManifestEntry, ManifestEntry)>,
}

impl Diff {
    /// True when no entry differs.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// Compare the entries of two manifests by path, size and SHA-256.
pub fn diff(a: &Manifest, b: &Manifest) -> Diff {
    use std::collections::BTreeMap;
    let am: BTreeMap<&str, &ManifestEntry> = a.entries.iter().map(|e| (e.path.as_str(), e)).collect();
    let bm: BTreeMap<&str, &ManifestEntry> = b.entries.iter().map(|e| (e.path.as_str(), e)).collect();
    let mut d = Diff::default();
    for e in &a.entries {
        match bm.get(e.path.as_str()) {
            None => d.removed.push(e.clone()),
            Some(other) if other.size != e.size || other.sha256 != e.sha256 => {
                d.changed.push((e.clone(), (*other).clone()))
            }
            Some(_) => {}
        }
    }
    for e in &b.entries {
        if !am.contains_key(e.path.as_str()) {
            d.added.push(e.clone());
        }
    }
    d
}
