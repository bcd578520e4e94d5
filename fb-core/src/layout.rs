//! The archive layout: the entry names that `featurebase backup -o DIR` writes, parsed into
//! typed paths. Anything outside this layout is refused, which is also what keeps a reader
//! from ever writing outside its target (contract §5): a valid name has no `..`, no leading
//! `/`, no empty component, and only FeatureBase's name characters in index and field names.

use std::fmt;

use crate::error::{Error, Result};

/// Name of the manifest entry, always the last entry of an fbkit archive.
pub const MANIFEST_NAME: &str = "MANIFEST.json";

/// Number of key partitions of a keyed index (FeatureBase's `DefaultPartitionN`).
pub const PARTITION_N: u32 = 256;

/// What an archive entry holds; the `kind` field of a manifest entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EntryKind {
    /// The cluster schema (indexes and fields).
    Schema,
    /// The ID allocator's bbolt file.
    Idalloc,
    /// One shard's RBF snapshot.
    Shard,
    /// One shard's dataframe file.
    Dataframe,
    /// One key partition of a keyed index (bbolt).
    IndexKeys,
    /// The key store of a keyed field (bbolt).
    FieldKeys,
}

impl EntryKind {
    /// Every kind, in the order totals are reported.
    pub const ALL: [EntryKind; 6] = [
        EntryKind::Schema,
        EntryKind::Idalloc,
        EntryKind::Shard,
        EntryKind::Dataframe,
        EntryKind::IndexKeys,
        EntryKind::FieldKeys,
    ];

    /// The manifest spelling of the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Schema => "schema",
            EntryKind::Idalloc => "idalloc",
            EntryKind::Shard => "shard",
            EntryKind::Dataframe => "dataframe",
            EntryKind::IndexKeys => "index-keys",
            EntryKind::FieldKeys => "field-keys",
        }
    }

    /// Parse the manifest spelling of a kind.
    pub fn parse(s: &str) -> Option<EntryKind> {
        EntryKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for EntryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A typed archive entry path. `Display` gives the exact entry name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EntryPath {
    /// `schema`
    Schema,
    /// `idalloc`
    Idalloc,
    /// `indexes/<index>/shards/<%04d shard>`
    Shard {
        /// Index name.
        index: String,
        /// Shard number.
        shard: u64,
    },
    /// `indexes/<index>/dataframe/<%04d shard>`
    Dataframe {
        /// Index name.
        index: String,
        /// Shard number.
        shard: u64,
    },
    /// `indexes/<index>/translate/<%04d partition>`
    IndexKeys {
        /// Index name.
        index: String,
        /// Key partition (0 to 255).
        partition: u32,
    },
    /// `indexes/<index>/fields/<field>/translate`
    FieldKeys {
        /// Index name.
        index: String,
        /// Field name.
        field: String,
    },
}

impl EntryPath {
    /// The kind of data at this path.
    pub fn kind(&self) -> EntryKind {
        match self {
            EntryPath::Schema => EntryKind::Schema,
            EntryPath::Idalloc => EntryKind::Idalloc,
            EntryPath::Shard { .. } => EntryKind::Shard,
            EntryPath::Dataframe { .. } => EntryKind::Dataframe,
            EntryPath::IndexKeys { .. } => EntryKind::IndexKeys,
            EntryPath::FieldKeys { .. } => EntryKind::FieldKeys,
        }
    }

    /// The index this entry belongs to, if any.
    pub fn index(&self) -> Option<&str> {
        match self {
            EntryPath::Schema | EntryPath::Idalloc => None,
            EntryPath::Shard { index, .. }
            | EntryPath::Dataframe { index, .. }
            | EntryPath::IndexKeys { index, .. }
            | EntryPath::FieldKeys { index, .. } => Some(index),
        }
    }

    /// The field this entry belongs to, if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            EntryPath::FieldKeys { field, .. } => Some(field),
            _ => None,
        }
    }

    /// The shard number, for shard and dataframe entries.
    pub fn shard(&self) -> Option<u64> {
        match self {
            EntryPath::Shard { shard, .. } | EntryPath::Dataframe { shard, .. } => Some(*shard),
            _ => None,
        }
    }

    /// The key partition, for index key entries.
    pub fn partition(&self) -> Option<u32> {
        match self {
            EntryPath::IndexKeys { partition, .. } => Some(*partition),
            _ => None,
        }
    }

    /// Parse an entry name. Anything that is not exactly a name of the backup layout (in its
    /// canonical spelling) is refused as [`crate::ErrorKind::InvalidBackup`], so that a
    /// reader never creates a file outside its target directory.
    pub fn parse(name: &str) -> Result<EntryPath> {
        let bad = |why: &str| Error::invalid(format!("entry {:?}: {why}", name));
        match name {
            "schema" => return Ok(EntryPath::Schema),
            "idalloc" => return Ok(EntryPath::Idalloc),
            _ => {}
        }
        if name.starts_with('/') {
            return Err(bad("absolute path"));
        }
        let parts: Vec<&str> = name.split('/').collect();
        if parts.iter().any(|p| *p == ".." || *p == "." || p.is_empty()) {
            return Err(bad("path with '..', '.' or an empty component"));
        }
        let entry = match parts.as_slice() {
            ["indexes", index, "shards", n] => EntryPath::Shard {
                index: checked_name(index).ok_or_else(|| bad("invalid index name"))?,
                shard: number(n).ok_or_else(|| bad("invalid shard number"))?,
            },
            ["indexes", index, "dataframe", n] => EntryPath::Dataframe {
                index: checked_name(index).ok_or_else(|| bad("invalid index name"))?,
                shard: number(n).ok_or_else(|| bad("invalid shard number"))?,
            },
            ["indexes", index, "translate", n] => {
                let partition = number(n)
                    .filter(|p| *p < u64::from(PARTITION_N))
                    .ok_or_else(|| bad("invalid key partition number"))?;
                EntryPath::IndexKeys {
                    index: checked_name(index).ok_or_else(|| bad("invalid index name"))?,
                    partition: partition as u32,
                }
            }
            ["indexes", index, "fields", field, "translate"] => EntryPath::FieldKeys {
                index: checked_name(index).ok_or_else(|| bad("invalid index name"))?,
                field: checked_name(field).ok_or_else(|| bad("invalid field name"))?,
            },
            _ => return Err(bad("not a name of the FeatureBase backup layout")),
        };
        Ok(entry)
    }

    /// Sort key of the archive order fb-export writes: `schema`; then per index (by name) each
    /// shard followed by its dataframe, the key partitions, the field key stores (by field
    /// name); then `idalloc`. Used to order the entries of a directory the same way.
    pub fn archive_order(&self) -> (u8, &str, u8, u64, u8, &str) {
        match self {
            EntryPath::Schema => (0, "", 0, 0, 0, ""),
            EntryPath::Shard { index, shard } => (1, index, 0, *shard, 0, ""),
            EntryPath::Dataframe { index, shard } => (1, index, 0, *shard, 1, ""),
            EntryPath::IndexKeys { index, partition } => (1, index, 1, u64::from(*partition), 0, ""),
            EntryPath::FieldKeys { index, field } => (1, index, 2, 0, 0, field),
            EntryPath::Idalloc => (2, "", 0, 0, 0, ""),
        }
    }

    /// Whether this entry holds key translation (written after the data it covers).
    pub fn is_keys(&self) -> bool {
        matches!(self, EntryPath::IndexKeys { .. } | EntryPath::FieldKeys { .. })
    }
}

impl fmt::Display for EntryPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntryPath::Schema => f.write_str("schema"),
            EntryPath::Idalloc => f.write_str("idalloc"),
            EntryPath::Shard { index, shard } => write!(f, "indexes/{index}/shards/{shard:04}"),
            EntryPath::Dataframe { index, shard } => {
                write!(f, "indexes/{index}/dataframe/{shard:04}")
            }
            EntryPath::IndexKeys { index, partition } => {
                write!(f, "indexes/{index}/translate/{partition:04}")
            }
            EntryPath::FieldKeys { index, field } => {
                write!(f, "indexes/{index}/fields/{field}/translate")
            }
        }
    }
}

/// FeatureBase's rule for index and field names: a lower-case letter, then up to 229 of
/// lower-case letters, digits, `_` and `-`.
pub fn is_valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 230
        && b[0].is_ascii_lowercase()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
}

fn checked_name(s: &str) -> Option<String> {
    is_valid_name(s).then(|| s.to_string())
}

/// A `%04d` number in its canonical spelling only ("0007", "12345"; not "7", "00012345").
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let n: u64 = s.parse().ok()?;
    (format!("{n:04}") == s).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let cases = [
            "schema",
            "idalloc",
            "indexes/users/shards/0000",
            "indexes/users/shards/12345",
            "indexes/ev-2/dataframe/0007",
            "indexes/users/translate/0255",
            "indexes/users/fields/color/translate",
        ];
        for name in cases {
            let p = EntryPath::parse(name).unwrap();
            assert_eq!(p.to_string(), name);
        }
    }

    #[test]
    fn hostile_and_foreign_names_are_refused() {
        let cases = [
            "../schema",
            "/etc/passwd",
            "indexes/../../x/shards/0000",
            "indexes/users/shards/../../../tmp/x",
            "indexes/users/shards/7",
            "indexes/users/shards/00007",
            "indexes/Users/shards/0000",
            "indexes/users/translate/0256",
            "indexes/users/shards/0000/",
            "indexes//shards/0000",
            "./schema",
            "MANIFEST.json",
            "indexes/users/fields/a b/translate",
            "schema/x",
            "",
        ];
        for name in cases {
            let e = EntryPath::parse(name).unwrap_err();
            assert_eq!(e.exit_code(), 65, "{name}");
        }
    }
}
