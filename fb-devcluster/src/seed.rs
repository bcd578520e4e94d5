//! `--seed-from DIR`: load an extracted backup (what `featurebase backup -o DIR` writes, or
//! `tar -xf` of an fb-export or `featurebase backuptar` stream) into the nodes as a restore
//! would place it, so that the cluster serves real FeatureBase files byte for byte.
//!
//! Placement: a shard and its dataframe go to the shard's owners, an index key partition to
//! the partition's owners, field key stores and the ID allocator to every node (upstream's
//! restore copies them everywhere; the primary serves them). The schema is applied as
//! stored, timestamps included. Upstream's placeholder dataframes (a body of "Dataframe is
//! disabled" that `featurebase backup` writes when dataframes are off) are skipped.
//!
//! Layer: leaf (imports only `schema_doc` and `store`, which are leaves too).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use fb_core::format::{is_dataframe, is_dataframe_placeholder};
use fb_core::layout::{EntryPath, MANIFEST_NAME};
use fb_core::topology::Placement;
use serde_json::Value;

use crate::schema_doc::SchemaDoc;
use crate::store::NodeStore;

/// What a seed loaded.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Seeded {
    /// Files placed (each counted once, whatever its number of copies).
    pub files: usize,
    /// Placeholder dataframes skipped.
    pub skipped_dataframes: usize,
}

/// Load `dir` into `stores`. Every file must be a backup layout path; anything else (and a
/// data file of an index the schema does not have) is refused, naming the file.
pub fn seed_from(dir: &Path, stores: &[NodeStore], placement: &Placement) -> Result<(SchemaDoc, Seeded)> {
    let schema_path = dir.join("schema");
    let bytes = fs::read(&schema_path).with_context(|| format!("--seed-from: reading {}", schema_path.display()))?;
    let posted: Value = serde_json::from_slice(&bytes)
        .map_err(|e| anyhow!("--seed-from: {} is not a schema: {e}", schema_path.display()))?;
    let mut schema = SchemaDoc::default();
    schema.apply(&posted, None).map_err(|(_, e)| anyhow!("--seed-from: {}: {}", schema_path.display(), e.0))?;

    let mut files = Vec::new();
    walk(dir, dir, &mut files)?;
    files.sort();
    let mut seeded = Seeded::default();
    let all: Vec<usize> = (0..stores.len()).collect();
    for (name, file) in files {
        if name == "schema" || name == MANIFEST_NAME {
            continue;
        }
        let entry = EntryPath::parse(&name).map_err(|e| anyhow!("--seed-from: {}: {e}", file.display()))?;
        if let Some(index) = entry.index() {
            if schema.index(index).is_none() {
                bail!("--seed-from: {}: the schema has no index {index:?}", file.display());
            }
        }
        let owners = match &entry {
            EntryPath::Shard { index, shard } | EntryPath::Dataframe { index, shard } => {
                placement.shard_owners(index, *shard)
            }
            EntryPath::IndexKeys { partition, .. } => placement.partition_owners(*partition),
            EntryPath::FieldKeys { .. } | EntryPath::Idalloc => all.clone(),
            EntryPath::Schema => continue,
        };
        if matches!(entry, EntryPath::Dataframe { .. }) {
            let head = head_of(&file)?;
            if is_dataframe_placeholder(&head) {
                seeded.skipped_dataframes += 1;
                continue;
            }
            if !is_dataframe(&head) {
                bail!("--seed-from: {}: not an Arrow or Parquet file, nor upstream's placeholder", file.display());
            }
        }
        for o in owners {
            let dst = stores[o].path(&entry);
            stores[o]
                .write_with(&dst, |w| io::copy(&mut fs::File::open(&file)?, w).map(|_| ()))
                .with_context(|| format!("--seed-from: copying {} to node {o}", file.display()))?;
        }
        seeded.files += 1;
    }
    Ok((schema, seeded))
}

/// The first 64 bytes of a file (a placeholder is 22).
fn head_of(file: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut head = Vec::new();
    fs::File::open(file)
        .and_then(|f| f.take(64).read_to_end(&mut head))
        .with_context(|| format!("--seed-from: reading {}", file.display()))?;
    Ok(head)
}

/// Regular files under `dir` as (path relative to `root` with `/`, full path). Links and
/// special files are refused.
fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> Result<()> {
    let rd = fs::read_dir(dir).with_context(|| format!("--seed-from: reading {}", dir.display()))?;
    for e in rd {
        let e = e.with_context(|| format!("--seed-from: reading {}", dir.display()))?;
        let path = e.path();
        let ty = e.file_type().with_context(|| format!("--seed-from: {}", path.display()))?;
        if ty.is_dir() {
            walk(root, &path, out)?;
        } else if ty.is_file() {
            let rel = path.strip_prefix(root).expect("under root");
            let name = rel
                .components()
                .map(|c| c.as_os_str().to_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| anyhow!("--seed-from: {}: not a UTF-8 name", path.display()))?
                .join("/");
            out.push((name, path));
        } else {
            bail!("--seed-from: {}: not a regular file or directory", path.display());
        }
    }
    Ok(())
}
