//! `fb-manifest diff A B`: what each side is, how it is read, and which entries differ
//! (contract §3). The binary only turns a cluster URL into an export it scans, renders the
//! [`Comparison`] and picks the exit code.
//!
//! The rules kept here:
//! - a side is a live cluster (an `http://` or `https://` URL), an extracted backup
//!   directory, a manifest stored apart (a file starting with `{`), a backup stream, or `-`
//!   for stdin ([`Source`]);
//! - entries are compared by path, size and SHA-256; in content mode ([`ContentRules`]) a
//!   changed entry whose content digests agree is *same*, with the reason said, and upstream's
//!   "Dataframe is disabled" placeholder on one side only is *ignored*, never a difference;
//! - an entry that could not be compared by content says why on its `changed` line.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::content::{self, Content};
use crate::error::{Error, Result};
use crate::events::Events;
use crate::manifest::{diff, Diff, Manifest};
use crate::verify::{manifest_of_scan, open_input, scan_dir, scan_file, scan_stdin, scan_stream, Scan, ScanMode};

/// Where one side of a comparison comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A live cluster, by the URL given.
    Cluster(String),
    /// An extracted backup directory (fbkit's or `featurebase backup`'s).
    Directory(PathBuf),
    /// Standard input: a backup stream or a manifest.
    Stdin,
    /// A file: a backup stream (plain, zstd, gzip) or a manifest stored apart.
    File(PathBuf),
}

impl Source {
    /// Tell what a command-line side names (directories are told by looking at the path).
    pub fn parse(side: &str) -> Source {
        if side.starts_with("http://") || side.starts_with("https://") {
            Source::Cluster(side.to_string())
        } else if side == "-" {
            Source::Stdin
        } else if Path::new(side).is_dir() {
            Source::Directory(PathBuf::from(side))
        } else {
            Source::File(PathBuf::from(side))
        }
    }
}

/// One side as read: its manifest and, in content mode, each entry's content digest and the
/// schema's bytes (for saying why two schemas are the same).
#[derive(Debug)]
pub struct Side {
    /// The side's manifest (computed from its data, or the stored one).
    pub manifest: Manifest,
    /// Content digests by path; `None` for a manifest file.
    pub contents: Option<BTreeMap<String, Content>>,
    /// The `schema` entry's bytes, when read.
    pub schema: Option<Vec<u8>>,
}

impl Side {
    /// A side from a finished scan; `fallback` is the manifest `source` when the data has none.
    pub fn of_scan(mut scan: Scan, fallback: Map<String, Value>) -> Result<Side> {
        let contents: BTreeMap<String, Content> =
            scan.entries.iter_mut().filter_map(|e| Some((e.path.to_string(), e.content.take()?))).collect();
        let schema = scan.schema_bytes.take();
        let manifest = manifest_of_scan(scan, fallback)?;
        Ok(Side { manifest, contents: Some(contents), schema })
    }

    /// A side known only by its manifest.
    pub fn manifest_only(manifest: Manifest) -> Side {
        Side { manifest, contents: None, schema: None }
    }
}

/// Read a side that is not a cluster. `label` is the side as given (for messages and the
/// manifest's source); `allow_manifest` lets a manifest file stand for a side; `content`
/// computes every entry's content digest (which a manifest file cannot give: usage error).
pub fn load_side(source: &Source, label: &str, allow_manifest: bool, content: bool, events: &Events) -> Result<Side> {
    let mode = ScanMode { deep: false, content, ..ScanMode::default() };
    let mut fallback = Map::new();
    let input: Box<dyn Read> = match source {
        Source::Cluster(url) => return Err(Error::internal(format!("{url}: a cluster side is read by exporting it"))),
        Source::Directory(dir) => {
            fallback.insert("directory".into(), Value::from(label));
            return Side::of_scan(scan_dir(dir, mode, events)?, fallback);
        }
        Source::Stdin if !allow_manifest => {
            // Only an archive: a file redirected to stdin is read at offsets (scan_stdin).
            fallback.insert("archive".into(), Value::from(label));
            return Side::of_scan(scan_stdin(mode, events), fallback).map_err(|e| e.context(label));
        }
        Source::Stdin => Box::new(std::io::stdin().lock()),
        Source::File(path) => {
            let file = open_input(path)?;
            if !(allow_manifest && may_be_manifest(&file)) {
                // An archive file: read at offsets, several entries at once (scan_file).
                fallback.insert("archive".into(), Value::from(label));
                return Side::of_scan(scan_file(file, mode, events), fallback).map_err(|e| e.context(label));
            }
            Box::new(file)
        }
    };
    fallback.insert("archive".into(), Value::from(label));
    load_stream(input, label, allow_manifest, content, fallback, events)
}

/// Whether a file may be a manifest stored apart: a regular file that starts with `{`, or
/// a file that is not regular (a pipe given by name), whose first byte the stream side reads.
fn may_be_manifest(file: &std::fs::File) -> bool {
    !file.metadata().is_ok_and(|m| m.is_file()) || starts_like_manifest(file)
}

/// Whether a file's first byte is `{`: a manifest's, never a tar, zstd or gzip stream's.
pub(crate) fn starts_like_manifest(file: &std::fs::File) -> bool {
    use std::os::unix::fs::FileExt;
    let mut first = [0u8; 1];
    file.read_at(&mut first, 0).ok() == Some(1) && first[0] == b'{'
}

/// A stream side: a manifest stored apart starts with `{`, which no tar, zstd or gzip
/// stream does.
fn load_stream(
    mut input: Box<dyn Read>,
    label: &str,
    allow_manifest: bool,
    content: bool,
    fallback: Map<String, Value>,
    events: &Events,
) -> Result<Side> {
    let mut first = [0u8; 1];
    let n = input.read(&mut first).map_err(|e| Error::io(format!("reading {label}"), e))?;
    let chained = std::io::Cursor::new(first[..n].to_vec()).chain(input);
    if allow_manifest && n == 1 && first[0] == b'{' {
        if content {
            return Err(Error::usage(format!(
                "{label} is a manifest: --content needs the data (an archive, a directory or a cluster URL)"
            )));
        }
        let mut bytes = Vec::new();
        chained.take(256 << 20).read_to_end(&mut bytes).map_err(|e| Error::io(format!("reading {label}"), e))?;
        return Manifest::parse(&bytes).map(Side::manifest_only).map_err(|e| e.context(label));
    }
    let mode = ScanMode { deep: false, content, ..ScanMode::default() };
    Side::of_scan(scan_stream(chained, mode, events), fallback).map_err(|e| e.context(label))
}

/// A changed entry whose content is the same on both sides: why the bytes differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SameContent {
    /// Entry path.
    pub path: String,
    /// Why the bytes differ although the content is the same (never empty).
    pub notes: Vec<String>,
}

/// The outcome of comparing two sides.
#[derive(Debug)]
pub struct Comparison {
    /// Entries that differ (after the content rules, when they applied).
    pub diff: Diff,
    /// Changed entries whose content is the same.
    pub same: Vec<SameContent>,
    /// Upstream placeholder dataframes present on one side only.
    pub ignored: Vec<String>,
    /// Why a changed entry could not be compared by content, by path.
    pub not_compared: BTreeMap<String, String>,
}

impl Comparison {
    /// No entry differs.
    pub fn identical(&self) -> bool {
        self.diff.is_empty()
    }
}

/// Compare two sides by path, size and SHA-256, then apply the content rules where both
/// sides carry content digests (see the module docs).
pub fn compare(a: &Side, b: &Side) -> Comparison {
    let mut cmp = Comparison {
        diff: diff(&a.manifest, &b.manifest),
        same: Vec::new(),
        ignored: Vec::new(),
        not_compared: BTreeMap::new(),
    };
    for (side, list) in [(&a.contents, &mut cmp.diff.removed), (&b.contents, &mut cmp.diff.added)] {
        if let Some(contents) = side {
            list.retain(|e| {
                let placeholder = contents.get(&e.path) == Some(&Content::Placeholder);
                if placeholder {
                    cmp.ignored.push(e.path.clone());
                }
                !placeholder
            });
        }
    }
    let (Some(ca), Some(cb)) = (&a.contents, &b.contents) else { return cmp };
    let (same, not_compared) = (&mut cmp.same, &mut cmp.not_compared);
    cmp.diff.changed.retain(|(x, _)| {
        let (Some(p), Some(q)) = (ca.get(&x.path), cb.get(&x.path)) else { return true };
        if p.same_as(q) {
            // Only the schema and the bbolt files (key stores, idalloc) have content digests
            // that can agree with other bytes.
            let notes = match (x.path.as_str(), &a.schema, &b.schema) {
                ("schema", Some(sa), Some(sb)) => content::schema_notes(sa, sb),
                ("schema", _, _) => vec!["the same indexes, fields and options".to_string()],
                _ => vec!["same buckets, keys and values; the bbolt pages differ".to_string()],
            };
            same.push(SameContent { path: x.path.clone(), notes });
            return false;
        }
        for c in [p, q] {
            if let Content::Unknown(why) = c {
                not_compared.insert(x.path.clone(), format!("not compared by content: {why}"));
            }
        }
        true
    });
    cmp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::EntryPath;
    use crate::manifest::ManifestEntry;

    fn side(entries: &[(&str, &[u8])], content: bool) -> Side {
        let listed = entries
            .iter()
            .map(|(p, d)| {
                let path = EntryPath::parse(p).unwrap();
                ManifestEntry::new(&path, d.len() as u64, &<sha2::Sha256 as sha2::Digest>::digest(d).into())
            })
            .collect();
        let contents = content.then(|| {
            entries
                .iter()
                .map(|(p, d)| (p.to_string(), content::digest(EntryPath::parse(p).unwrap().kind(), d)))
                .collect()
        });
        let schema = entries.iter().find(|(p, _)| *p == "schema").map(|(_, d)| d.to_vec());
        Side { manifest: Manifest::new(Map::new(), listed), contents, schema }
    }

    const SCHEMA_A: &[u8] = br#"{"indexes":[{"name":"u","createdAt":1,"fields":[]}]}"#;
    const SCHEMA_B: &[u8] = br#"{"indexes":[{"name":"u","createdAt":2,"fields":[]}]}"#;
    const PLACEHOLDER: &[u8] = b"Dataframe is disabled\n";

    #[test]
    fn a_placeholder_dataframe_on_one_side_is_ignored_only_by_content() {
        let a = side(&[("schema", SCHEMA_A), ("indexes/u/dataframe/0000", PLACEHOLDER)], true);
        let b = side(&[("schema", SCHEMA_A)], true);
        let cmp = compare(&a, &b);
        assert!(cmp.identical(), "{:?}", cmp.diff.removed);
        assert_eq!(cmp.ignored, ["indexes/u/dataframe/0000"]);
        let by_bytes = compare(&side(&[("indexes/u/dataframe/0000", PLACEHOLDER)], false), &side(&[], false));
        assert_eq!(by_bytes.diff.removed.len(), 1, "without content it is an entry like any other");
    }

    #[test]
    fn same_content_says_why_and_a_real_change_stays_one() {
        let cmp = compare(&side(&[("schema", SCHEMA_A)], true), &side(&[("schema", SCHEMA_B)], true));
        assert!(cmp.identical());
        assert_eq!(cmp.same.len(), 1);
        assert!(cmp.same[0].notes[0].contains("createdAt"), "{:?}", cmp.same);
        let other = br#"{"indexes":[{"name":"v","fields":[]}]}"#;
        let cmp = compare(&side(&[("schema", SCHEMA_A)], true), &side(&[("schema", other)], true));
        assert_eq!(cmp.diff.changed.len(), 1);
        let shard = |b: u8| vec![b; 8192];
        let (x, y) = (shard(1), shard(2));
        let cmp = compare(
            &side(&[("indexes/u/shards/0000", &x[..])], true),
            &side(&[("indexes/u/shards/0000", &y[..])], true),
        );
        assert!(cmp.not_compared["indexes/u/shards/0000"].contains("compared by bytes"), "{:?}", cmp.not_compared);
    }

    #[test]
    fn sources_are_told_apart() {
        assert_eq!(Source::parse("https://db1:10101"), Source::Cluster("https://db1:10101".into()));
        assert_eq!(Source::parse("-"), Source::Stdin);
        assert_eq!(Source::parse("/"), Source::Directory("/".into()));
        assert_eq!(Source::parse("no/such/file.tar"), Source::File("no/such/file.tar".into()));
    }
}
