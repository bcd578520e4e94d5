//! One node's data directory. It mirrors the backup layout for what the node holds:
//! `schema`, `idalloc`, `indexes/<i>/shards/<NNNN>`, `indexes/<i>/dataframe/<NNNN>`,
//! `indexes/<i>/translate/<NNNN>` and `indexes/<i>/fields/<f>/translate`.
//!
//! Every file is replaced atomically (a temporary file in the same directory, then a
//! rename), so a reader that opened the old file keeps reading a whole old file.
//!
//! Layer: leaf (imports no other module of this crate).

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use fb_core::layout::EntryPath;

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A node's directory.
#[derive(Debug, Clone)]
pub struct NodeStore {
    root: PathBuf,
}

impl NodeStore {
    /// The store rooted at `root` (created if missing).
    pub fn open(root: PathBuf) -> io::Result<NodeStore> {
        fs::create_dir_all(root.join("indexes"))?;
        Ok(NodeStore { root })
    }

    /// The node's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the file of a backup entry lives on this node.
    pub fn path(&self, entry: &EntryPath) -> PathBuf {
        self.root.join(entry.to_string())
    }

    /// The directory of an index.
    pub fn index_dir(&self, index: &str) -> PathBuf {
        self.root.join("indexes").join(index)
    }

    /// Shard numbers this node holds a snapshot of.
    pub fn shards(&self, index: &str) -> Vec<u64> {
        numbered_files(&self.index_dir(index).join("shards"))
    }

    /// Key partitions this node holds a store of.
    pub fn partitions(&self, index: &str) -> Vec<u64> {
        numbered_files(&self.index_dir(index).join("translate"))
    }

    /// Total size of the files under the node's directory, or under one index.
    pub fn usage(&self, index: Option<&str>) -> io::Result<u64> {
        match index {
            Some(i) => tree_size(&self.index_dir(i)),
            None => tree_size(&self.root),
        }
    }

    /// Replace the file at `path` with what `fill` writes.
    pub fn write_with<F>(&self, path: &Path, fill: F) -> io::Result<u64>
    where
        F: FnOnce(&mut BufWriter<File>) -> io::Result<()>,
    {
        let (tmp, file) = temp_beside(path)?;
        let result = (|| {
            let mut w = BufWriter::with_capacity(1 << 20, file);
            fill(&mut w)?;
            let file = w.into_inner().map_err(|e| e.into_error())?;
            let len = file.metadata()?.len();
            drop(file);
            fs::rename(&tmp, path)?;
            Ok(len)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Replace the file at `path` with `bytes`.
    pub fn write_bytes(&self, path: &Path, bytes: &[u8]) -> io::Result<u64> {
        self.write_with(path, |w| w.write_all(bytes))
    }
}

/// A new, empty temporary file beside `path` (whose directory is created if needed).
pub fn temp_beside(path: &Path) -> io::Result<(PathBuf, File)> {
    let dir = path.parent().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path without a directory"))?;
    fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    loop {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{name}.tmp.{}.{n}", std::process::id()));
        match fs::OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Numbers of the files in `dir` whose names are canonical `%04d` numbers (temporary
/// files start with a dot and are skipped), ascending.
fn numbered_files(dir: &Path) -> Vec<u64> {
    let mut out: Vec<u64> = match fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(|e| e.ok()).filter_map(|e| e.file_name().to_str().and_then(parse_number)).collect(),
        Err(_) => Vec::new(),
    };
    out.sort_unstable();
    out.dedup();
    out
}

/// A `%04d` number in its canonical spelling.
pub fn parse_number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let n: u64 = s.parse().ok()?;
    (format!("{n:04}") == s).then_some(n)
}

fn tree_size(dir: &Path) -> io::Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            total += tree_size(&entry.path())?;
        } else {
            total += meta.len();
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_and_listing() {
        let dir = tempfile::tempdir().unwrap();
        let store = NodeStore::open(dir.path().join("node0")).unwrap();
        for shard in [3u64, 0, 12345] {
            let p = store.path(&EntryPath::Shard { index: "i".into(), shard });
            store.write_bytes(&p, b"abc").unwrap();
        }
        // A stray temporary file is not a shard.
        fs::write(store.index_dir("i").join("shards").join(".0007.tmp.1.2"), b"x").unwrap();
        assert_eq!(store.shards("i"), vec![0, 3, 12345]);
        assert_eq!(store.usage(Some("i")).unwrap(), 10);
        assert!(store.usage(Some("nope")).is_err());
        assert_eq!(parse_number("0007"), Some(7));
        assert_eq!(parse_number("7"), None);
    }
}
