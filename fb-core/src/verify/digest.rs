//! One entry's bytes as they pass: size, SHA-256, the streaming format check (`--deep`), the
//! first bytes (for the declared length) and, when wanted, the bytes a content digest or the
//! schema checks need.

use std::fs::File;
use std::io::Write;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::{declared_length_problem, ScanMode, ScannedEntry};
use crate::census::assemble::{decode_entry, wants, EntryCensus};
use crate::content::{self, Content, CONTENT_LIMIT};
use crate::format::{checker_for, DECLARED_LEN_PREFIX};
use crate::layout::{EntryKind, EntryPath};

/// Hashes (and optionally checks) one entry's bytes as they pass.
pub(super) struct EntryDigest {
    path: EntryPath,
    hasher: Sha256,
    size: u64,
    checker: Option<Box<dyn crate::format::Checker>>,
    prefix: Vec<u8>,
    /// The whole content, kept for the schema (small, and bounded below) and, in content
    /// mode, for the kinds decoded for their digest up to [`CONTENT_LIMIT`]; dropped (None)
    /// once such an entry outgrows it.
    content: Option<Vec<u8>>,
    /// Content mode: the digest is wanted.
    want_content: bool,
    /// Census mode: where the entry's bytes can be read again for decoding.
    census: Option<CensusSource>,
}

/// Where the census decodes an entry from: the source itself when it can be read at an
/// offset (a directory's file, an entry of a plain tar file), else a private temporary
/// copy written as the bytes pass (memory stays one buffer; disk, the entry's size).
enum CensusSource {
    /// Nothing read yet, and no place to read it again: a copy is made on the first bytes.
    Pending,
    At(Arc<File>, u64),
    Spool(File),
    Failed(String),
}

/// Bytes taken at a time by [`EntryDigest::update`]: small enough to stay in the first-level
/// cache between the hash and the checks that read them again.
const PIECE: usize = 32 << 10;

/// Largest schema kept for the deep checks.
const MAX_SCHEMA: usize = 64 << 20;

impl EntryDigest {
    pub(super) fn new(path: EntryPath, mode: ScanMode) -> Self {
        let kind = path.kind();
        let checker = mode.deep.then(|| checker_for(path.kind()));
        let content =
            (path.kind() == EntryKind::Schema || (mode.content && content::needs_bytes(path.kind()))).then(Vec::new);
        EntryDigest {
            path,
            hasher: Sha256::new(),
            size: 0,
            checker,
            prefix: Vec::new(),
            content,
            want_content: mode.content,
            census: (mode.census && wants(kind)).then_some(CensusSource::Pending),
        }
    }

    /// The entry's bytes are also at `offset` of `file`: the census reads them there instead
    /// of keeping a copy.
    pub(super) fn readable_at(mut self, file: Arc<File>, offset: u64) -> Self {
        if self.census.is_some() {
            self.census = Some(CensusSource::At(file, offset));
        }
        self
    }

    /// Pass the next bytes. They are taken a [`PIECE`] at a time, each hashed (reading
    /// ahead, see [`crate::sha::hash_ahead`]) and then, while it is still in the core's cache, given to
    /// the format checker, the prefix, the content and the census copy: the bytes come
    /// from memory once, however many of those want them.
    pub(super) fn update(&mut self, data: &[u8]) {
        for piece in data.chunks(PIECE) {
            self.update_piece(piece);
        }
    }

    fn update_piece(&mut self, data: &[u8]) {
        crate::sha::hash_ahead(&mut self.hasher, data);
        self.size += data.len() as u64;
        if let Some(c) = self.checker.as_mut() {
            c.update(data);
        }
        if self.prefix.len() < DECLARED_LEN_PREFIX {
            let take = (DECLARED_LEN_PREFIX - self.prefix.len()).min(data.len());
            self.prefix.extend_from_slice(&data[..take]);
        }
        if let Some(c) = self.content.as_mut() {
            let limit = if self.want_content { CONTENT_LIMIT as usize } else { MAX_SCHEMA };
            if c.len() + data.len() <= limit {
                c.extend_from_slice(data);
            } else {
                // Too large to keep: dropped whole, never kept with a piece missing.
                self.content = None;
            }
        }
        if let Some(CensusSource::Pending) = self.census {
            self.census = Some(match tempfile::tempfile() {
                Ok(f) => CensusSource::Spool(f),
                Err(e) => CensusSource::Failed(format!("cannot create a temporary file for the census: {e}")),
            });
        }
        if let Some(CensusSource::Spool(f)) = self.census.as_mut() {
            if let Err(e) = f.write_all(data) {
                self.census = Some(CensusSource::Failed(format!("cannot write the census's temporary copy: {e}")));
            }
        }
    }

    pub(super) fn finish(self, schema: &mut Option<Vec<u8>>) -> ScannedEntry {
        let deep = self.checker.is_some();
        let mut problem = self.checker.and_then(|c| c.finish().err());
        if deep && problem.is_none() {
            problem = declared_length_problem(self.path.kind(), &self.prefix, self.size);
        }
        let kind = self.path.kind();
        let sha256: [u8; 32] = self.hasher.finalize().into();
        let content = match (&self.content, self.want_content) {
            (_, false) => None,
            (_, true) if !content::needs_bytes(kind) => {
                Some(content::digest_from_hash(kind, sha256, self.size, &self.prefix))
            }
            (Some(bytes), true) => Some(content::digest(kind, bytes)),
            (None, true) => Some(Content::Unknown(format!("larger than {} MiB", CONTENT_LIMIT >> 20))),
        };
        if let Some(c) = self.content {
            if kind == EntryKind::Schema && c.len() <= MAX_SCHEMA {
                *schema = Some(c);
            }
        }
        let census = self.census.map(|src| match src {
            CensusSource::At(f, offset) => decode_entry(kind, &f, offset, self.size),
            CensusSource::Spool(f) => decode_entry(kind, &f, 0, self.size),
            CensusSource::Pending => EntryCensus::Unreadable("the entry is empty".into()),
            CensusSource::Failed(why) => EntryCensus::Unreadable(why),
        });
        ScannedEntry { path: self.path, size: self.size, sha256, problem, content, census }
    }
}
