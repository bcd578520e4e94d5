//! An archive's census from its entries: each shard's figures, each key partition's key
//! count and each keyed field's row keys, put together by what the schema says.

use std::collections::BTreeMap;
use std::fs::File;

use super::decode::{shard_figures, RbfSource, ShardFigures, StoredValues, ViewFigures, BSI_VIEW_PREFIX};
use super::{Census, FieldCensus, IndexCensus, IndexPlan, Row, RowsCensus, ValuesCensus, STANDARD_VIEW};
use crate::error::{Error, Result};
use crate::format::bolt::visit_bucket;
use crate::format::translate::EMPTY_KEY_SENTINEL;
use crate::format::FormatProblem;
use crate::layout::{EntryKind, EntryPath};

/// The field upstream keeps existence in (row 0 of its standard view).
pub const EXISTENCE_FIELD: &str = "_exists";

/// The view in which a set, mutex or time field marks, in row 0, every column that has a
/// row (upstream `viewExistence`, used for `f == null` queries).
pub const FIELD_EXISTENCE_VIEW: &str = "existence";

/// What the census takes from one entry.
#[derive(Debug, Clone)]
pub enum EntryCensus {
    /// A shard's figures.
    Shard(ShardFigures),
    /// The number of keys in an index key partition.
    IndexKeys(u64),
    /// A keyed field's row keys by ID.
    FieldKeys(BTreeMap<u64, String>),
    /// The entry could not be decoded: why.
    Unreadable(String),
}

/// Whether the census reads this kind of entry.
pub fn wants(kind: EntryKind) -> bool {
    matches!(kind, EntryKind::Shard | EntryKind::IndexKeys | EntryKind::FieldKeys)
}

/// Decode one entry whose bytes are `len` bytes at `offset` of `file`. Key stores are
/// bbolt files read one node at a time: an index partition gives the size of its `keys`
/// bucket, a field's store the key of every row ID from its `ids` bucket.
pub fn decode_entry(kind: EntryKind, file: &File, offset: u64, len: u64) -> EntryCensus {
    let result = match kind {
        EntryKind::Shard => shard_figures(&RbfSource::new(file, offset, len)).map(EntryCensus::Shard),
        EntryKind::IndexKeys => {
            let mut n = 0u64;
            visit_bucket(file, offset, len, b"keys", &mut |_, _| {
                n += 1;
                Ok(())
            })
            .and_then(|found| if found { Ok(EntryCensus::IndexKeys(n)) } else { Err(no_bucket("keys")) })
        }
        EntryKind::FieldKeys => {
            let mut ids = BTreeMap::new();
            visit_bucket(file, offset, len, b"ids", &mut |id, key| {
                let id = <[u8; 8]>::try_from(id).map(u64::from_be_bytes).map_err(|_| FormatProblem {
                    offset: 0,
                    message: format!("a row ID of {} bytes, want 8", id.len()),
                })?;
                let key =
                    if key == EMPTY_KEY_SENTINEL { String::new() } else { String::from_utf8_lossy(key).into_owned() };
                ids.insert(id, key);
                Ok(())
            })
            .and_then(|found| if found { Ok(EntryCensus::FieldKeys(ids)) } else { Err(no_bucket("ids")) })
        }
        _ => return EntryCensus::Unreadable("not an entry the census reads".into()),
    };
    result.unwrap_or_else(|p| EntryCensus::Unreadable(p.to_string()))
}

fn no_bucket(name: &str) -> FormatProblem {
    FormatProblem { offset: 0, message: format!("key store has no {name:?} bucket") }
}

/// Puts entries' figures together. Memory: the rows and keys of the census itself, never
/// a shard's bytes.
#[derive(Debug, Default)]
pub struct Assembler {
    /// (index, field, view) → row ID → bits.
    rows: BTreeMap<(String, String, String), BTreeMap<u64, u64>>,
    /// (index, field) → stored values.
    values: BTreeMap<(String, String), StoredValues>,
    /// index → keys counted, partitions seen.
    keys: BTreeMap<String, u64>,
    /// (index, field) → ID → key.
    field_keys: BTreeMap<(String, String), BTreeMap<u64, String>>,
    /// Entries that could not be decoded, by path.
    problems: Vec<String>,
}

impl Assembler {
    /// Take one entry's figures.
    pub fn add(&mut self, path: &EntryPath, c: EntryCensus) {
        let index = path.index().unwrap_or_default().to_string();
        match c {
            EntryCensus::Unreadable(why) => self.problems.push(format!("{path}: {why}")),
            EntryCensus::IndexKeys(n) => *self.keys.entry(index).or_default() += n,
            EntryCensus::FieldKeys(ids) => {
                self.field_keys.insert((index, path.field().unwrap_or_default().to_string()), ids);
            }
            EntryCensus::Shard(fields) => {
                for (field, views) in fields {
                    for (view, figures) in views {
                        match figures {
                            ViewFigures::Rows(rows) => {
                                let all = self.rows.entry((index.clone(), field.clone(), view)).or_default();
                                for (r, n) in rows {
                                    *all.entry(r).or_default() += n;
                                }
                            }
                            ViewFigures::Values(v) => {
                                self.values.entry((index.clone(), field.clone())).or_default().merge(&v);
                            }
                        }
                    }
                }
            }
        }
    }

    /// The census, by the schema's plan. An entry that could not be decoded, a shard bitmap
    /// for a field the schema does not have, or a keyed row without a key is an error naming it.
    pub fn finish(mut self, plans: &[IndexPlan]) -> Result<Census> {
        if !self.problems.is_empty() {
            let n = self.problems.len();
            let shown: Vec<String> = self.problems.into_iter().take(5).collect();
            return Err(Error::invalid(format!(
                "the census cannot read {n} entr{}: {}",
                if n == 1 { "y" } else { "ies" },
                shown.join("; ")
            )));
        }
        let mut census = Census::default();
        for plan in plans {
            let mut idx = IndexCensus::default();
            if plan.track_existence {
                let ex = self.rows.remove(&(plan.name.clone(), EXISTENCE_FIELD.into(), STANDARD_VIEW.into()));
                idx.records = Some(ex.and_then(|r| r.get(&0).copied()).unwrap_or(0));
            }
            if plan.keys {
                idx.keys = Some(self.keys.remove(&plan.name).unwrap_or(0));
            }
            for f in &plan.fields {
                let key = (plan.name.clone(), f.name.clone());
                let census = match f.values {
                    Some((unit, base)) => {
                        let v = self.values.remove(&key).unwrap_or_default();
                        FieldCensus::Values(ValuesCensus {
                            field_type: f.field_type.clone(),
                            unit,
                            count: v.count,
                            sum: v.sum + base * i128::from(v.count),
                            min: v.min.map(|m| m + base),
                            max: v.max.map(|m| m + base),
                            sum_unknown: None,
                        })
                    }
                    None => {
                        let ids = self.field_keys.remove(&key);
                        let mut rc = RowsCensus { field_type: f.field_type.clone(), views: BTreeMap::new() };
                        let views: Vec<(String, String, String)> = self
                            .rows
                            .range((plan.name.clone(), f.name.clone(), String::new())..)
                            .take_while(|((i, fi, _), _)| *i == plan.name && *fi == f.name)
                            .map(|(k, _)| k.clone())
                            .collect();
                        for k in views {
                            let rows = self.rows.remove(&k).unwrap_or_default();
                            if k.2 == FIELD_EXISTENCE_VIEW {
                                // Upstream's own bookkeeping (row 0: columns with any row),
                                // not a row of the field.
                                continue;
                            }
                            let mut named = BTreeMap::new();
                            for (id, n) in rows {
                                let row = match (&ids, f.keys) {
                                    (_, false) => Row::Id(id),
                                    (Some(ids), true) => match ids.get(&id) {
                                        Some(key) => Row::Key(key.clone()),
                                        None => {
                                            return Err(Error::invalid(format!(
                                                "index {} field {} view {}: row {id} has bits but no key in the field's key store",
                                                plan.name, f.name, k.2
                                            )))
                                        }
                                    },
                                    (None, true) => {
                                        return Err(Error::invalid(format!(
                                            "index {} field {}: the field is keyed but the backup has no key store for it",
                                            plan.name, f.name
                                        )))
                                    }
                                };
                                named.insert(row, n);
                            }
                            rc.views.insert(k.2, named);
                        }
                        FieldCensus::Rows(rc)
                    }
                };
                idx.fields.insert(f.name.clone(), census);
            }
            census.indexes.insert(plan.name.clone(), idx);
        }
        // What is left is in no field of the schema.
        let stray: Vec<String> = self
            .rows
            .keys()
            .map(|(i, f, v)| format!("{i}/{f} view {v}"))
            .chain(self.values.keys().map(|(i, f)| format!("{i}/{f} view {BSI_VIEW_PREFIX}{f}")))
            .collect();
        if !stray.is_empty() {
            return Err(Error::invalid(format!(
                "shard files hold bitmaps for fields the schema does not have: {}",
                stray.into_iter().take(5).collect::<Vec<_>>().join(", ")
            )));
        }
        Ok(census)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::translate::{read_store, write_store};
    use std::io::Write;

    #[test]
    fn key_stores_are_read_node_by_node_as_the_whole_file_reader_reads_them() {
        for n in [0usize, 3, 5000] {
            let keys: Vec<(String, u64)> =
                (0..n).map(|i| (if i == 1 { String::new() } else { format!("key-{i:06}") }, i as u64 + 1)).collect();
            let mut f = tempfile::tempfile().unwrap();
            let mut bytes = Vec::new();
            let len = write_store(&mut bytes, &keys).unwrap();
            f.write_all(&bytes).unwrap();
            let whole = read_store(&bytes).unwrap();
            match decode_entry(EntryKind::IndexKeys, &f, 0, len) {
                EntryCensus::IndexKeys(k) => assert_eq!(k as usize, whole.len(), "{n} keys"),
                other => panic!("{other:?}"),
            }
            match decode_entry(EntryKind::FieldKeys, &f, 0, len) {
                EntryCensus::FieldKeys(ids) => {
                    assert_eq!(ids.into_iter().map(|(id, k)| (k, id)).collect::<Vec<_>>(), whole, "{n} keys")
                }
                other => panic!("{other:?}"),
            }
        }
        // Cut short: named, never a smaller count.
        let mut bytes = Vec::new();
        write_store(&mut bytes, &[("a".to_string(), 1)]).unwrap();
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&bytes[..bytes.len() - 4096]).unwrap();
        assert!(matches!(
            decode_entry(EntryKind::IndexKeys, &f, 0, bytes.len() as u64 - 4096),
            EntryCensus::Unreadable(_)
        ));
    }
}
