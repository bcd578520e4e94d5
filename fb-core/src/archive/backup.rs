//! The backup layer over the tar reader: entries must be backup paths, each once, and the
//! stream ends with `MANIFEST.json` (contract §1, §5).

use std::collections::HashSet;
use std::io::{Read, Seek};

use super::read::TarReader;
use crate::error::{Error, Result};
use crate::layout::{EntryPath, MANIFEST_NAME};

/// One item of a backup stream.
#[derive(Debug)]
pub enum BackupItem {
    /// A data entry; its bytes follow through [`BackupReader::read`].
    Entry {
        /// The typed path.
        path: EntryPath,
        /// Declared size.
        size: u64,
    },
    /// `MANIFEST.json`, read whole (it is bounded), and the stream ended properly after it.
    Manifest(Vec<u8>),
    /// The stream ended properly without a manifest (e.g. `featurebase backuptar` output).
    EndWithoutManifest,
}

/// Largest `MANIFEST.json` accepted: about 40 000 entries' worth per MiB.
const MAX_MANIFEST: u64 = 256 * 1024 * 1024;

/// Reads a backup stream: the tar layer plus the layout rules (names inside the backup
/// layout, no duplicates, `MANIFEST.json` last and followed only by the end marker).
/// Directory entries that name a layout directory (as `tar -C dir .` writes) and a leading
/// `./` are accepted and skipped.
pub struct BackupReader<R: Read> {
    tar: TarReader<R>,
    seen: HashSet<String>,
    done: bool,
}

impl<R: Read> BackupReader<R> {
    /// A reader over an uncompressed stream (see [`decompress`]).
    pub fn new(inner: R) -> Self {
        BackupReader { tar: TarReader::new(inner), seen: HashSet::new(), done: false }
    }

    /// The next item. After [`BackupItem::Manifest`] or [`BackupItem::EndWithoutManifest`]
    /// the stream has been read to its end-of-archive marker.
    pub fn next_item(&mut self) -> Result<BackupItem> {
        if self.done {
            return Err(Error::invalid("read past the end of the backup"));
        }
        loop {
            let Some(raw) = self.tar.next_entry()? else {
                self.done = true;
                return Ok(BackupItem::EndWithoutManifest);
            };
            let name = raw.name.strip_prefix("./").unwrap_or(&raw.name).to_string();
            if raw.typeflag == b'5' {
                if is_layout_dir(name.trim_end_matches('/')) {
                    continue;
                }
                return Err(Error::invalid(format!("directory entry {:?} is outside the backup layout", raw.name)));
            }
            if !self.seen.insert(name.clone()) {
                return Err(Error::invalid(format!("entry {name:?} appears twice (at offset {})", raw.offset)));
            }
            if name == MANIFEST_NAME {
                if raw.size > MAX_MANIFEST {
                    return Err(Error::invalid(format!("MANIFEST.json claims {} bytes", raw.size)));
                }
                let mut data = Vec::new();
                let mut buf = [0u8; 65536];
                loop {
                    let n = self.tar.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    data.extend_from_slice(&buf[..n]);
                }
                match self.tar.next_entry()? {
                    None => {}
                    Some(after) => {
                        return Err(Error::invalid(format!(
                            "entry {:?} follows MANIFEST.json, which must be the last entry",
                            after.name
                        )))
                    }
                }
                self.done = true;
                return Ok(BackupItem::Manifest(data));
            }
            let path = EntryPath::parse(&name)?;
            return Ok(BackupItem::Entry { path, size: raw.size });
        }
    }

    /// Read the current entry's data; `Ok(0)` at its end.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        self.tar.read(buf)
    }

    /// Bytes consumed from the (decompressed) stream.
    pub fn offset(&self) -> u64 {
        self.tar.offset()
    }
}

impl<R: Read + Seek> BackupReader<R> {
    /// Skip the current entry's data on a seekable plain input of `input_len` bytes (see
    /// [`TarReader::skip_data`]); its data starts at the [`BackupReader::offset`] that
    /// [`BackupReader::next_item`] left.
    pub fn skip_data(&mut self, input_len: u64) -> Result<()> {
        self.tar.skip_data(input_len)
    }
}

/// Whether `dir` (no trailing slash) is a directory of the backup layout.
fn is_layout_dir(dir: &str) -> bool {
    let parts: Vec<&str> = dir.split('/').collect();
    match parts.as_slice() {
        [""] | ["."] | ["indexes"] => true,
        ["indexes", i] => crate::layout::is_valid_name(i),
        ["indexes", i, "shards" | "dataframe" | "translate" | "fields"] => crate::layout::is_valid_name(i),
        ["indexes", i, "fields", f] => crate::layout::is_valid_name(i) && crate::layout::is_valid_name(f),
        _ => false,
    }
}
