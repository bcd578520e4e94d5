//! FeatureBase's on-disk file formats, as far as fbkit needs them:
//! - the length a file declares in its first bytes, so a streamed body can be written into a
//!   tar entry without buffering and a short or long body is caught ([`declared_len`]);
//! - streaming structural checks for `fb-verify --deep` ([`checker_for`]);
//! - writers and readers used by fb-devcluster (to serve structurally real files) and by
//!   tests (to check what an archive holds).
//!
//! Submodules: [`rbf`] (shard snapshots), [`bolt`] (bbolt files), [`translate`] (key stores
//! on top of bbolt), [`idalloc`] (the ID allocator on top of bbolt).

pub mod bolt;
pub mod idalloc;
pub mod rbf;
pub mod translate;

use crate::layout::EntryKind;

/// A problem at `offset`.
fn problem(offset: u64, message: impl Into<String>) -> FormatProblem {
    FormatProblem { offset, message: message.into() }
}

// Fixed-width integer readers. Callers check bounds first; RBF mixes both byte orders.
fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// A structural problem found in a file, with the byte offset where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatProblem {
    /// Byte offset inside the file.
    pub offset: u64,
    /// What is wrong, in words.
    pub message: String,
}

impl std::fmt::Display for FormatProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at offset {}: {}", self.offset, self.message)
    }
}

/// Bytes needed from the start of a file before [`declared_len`] can answer.
pub const DECLARED_LEN_PREFIX: usize = 4096;

/// The exact length a file of `kind` declares in its first bytes (RBF: page count × page
/// size; bbolt: high-water page id × page size), or `Ok(None)` for kinds whose length is
/// not declared inside the file (schema, dataframe). `prefix` holds the first bytes of the
/// file: at least [`DECLARED_LEN_PREFIX`] bytes, or the whole file if it is shorter.
pub fn declared_len(kind: EntryKind, prefix: &[u8]) -> Result<Option<u64>, FormatProblem> {
    match kind {
        EntryKind::Shard => rbf::declared_len(prefix).map(Some),
        EntryKind::Idalloc | EntryKind::IndexKeys | EntryKind::FieldKeys => bolt::declared_len(prefix).map(Some),
        EntryKind::Schema | EntryKind::Dataframe => Ok(None),
    }
}

/// Whether a dataframe file starts like one: an Arrow IPC file (`ARROW1`) or Parquet
/// (`PAR1`). Upstream's backup saves the 22-byte text "Dataframe is disabled" as a dataframe
/// when the feature is off; that is not data and must never be saved or restored as such.
pub fn is_dataframe(prefix: &[u8]) -> bool {
    prefix.starts_with(b"ARROW1") || prefix.starts_with(b"PAR1")
}

/// Whether a whole dataframe entry is upstream's placeholder: the text "Dataframe is
/// disabled" (with its newline) that `featurebase backup` saves when dataframes are off.
/// Anything else that is not Arrow or Parquet is a damaged file, not a placeholder.
pub fn is_dataframe_placeholder(data: &[u8]) -> bool {
    data.trim_ascii() == b"Dataframe is disabled"
}

/// A streaming structural check: feed the file's bytes in order, then ask for the verdict.
/// Memory stays bounded whatever the file size.
pub trait Checker: Send {
    /// Feed the next bytes of the file.
    fn update(&mut self, data: &[u8]);
    /// The first problem found, if any, once the whole file was fed.
    fn finish(self: Box<Self>) -> Result<(), FormatProblem>;
}

/// The deep checker for an entry kind (schema JSON is checked by the caller against the
/// other entries; dataframes are only checked for being non-empty).
pub fn checker_for(kind: EntryKind) -> Box<dyn Checker> {
    match kind {
        EntryKind::Shard => Box::new(rbf::RbfChecker::default()),
        EntryKind::Idalloc | EntryKind::IndexKeys | EntryKind::FieldKeys => Box::new(bolt::BoltChecker::default()),
        EntryKind::Schema | EntryKind::Dataframe => Box::new(NoCheck),
    }
}

struct NoCheck;

impl Checker for NoCheck {
    fn update(&mut self, _: &[u8]) {}
    fn finish(self: Box<Self>) -> Result<(), FormatProblem> {
        Ok(())
    }
}
