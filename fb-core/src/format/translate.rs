//! FeatureBase's key translation stores (an index's key partitions and a keyed field's key
//! store), which are bbolt files (upstream `translate_boltdb.go`):
//! - bucket `keys`: key bytes → ID as u64 big-endian;
//! - bucket `ids`: ID as u64 big-endian → key bytes;
//! - bucket `free`: under the key `free`, a serialized roaring bitmap of IDs freed by
//!   deletes and available for reuse (absent until something is deleted).
//!
//! bbolt cannot store an empty key, so upstream stores the empty string as a fixed sentinel
//! ([`EMPTY_KEY_SENTINEL`]) in both directions.

use std::io::{self, Write};

use super::{bolt, FormatProblem};

/// The bytes upstream stores in place of the empty string key.
pub const EMPTY_KEY_SENTINEL: &[u8] = &[0x00, 0x00, 0x00, 0x4d, 0x54, 0x4d, 0x54, 0x00, 0xc2, 0xa0, 0x00];

const KEYS: &[u8] = b"keys";
const IDS: &[u8] = b"ids";
const FREE: &[u8] = b"free";

fn stored_key(key: &str) -> Vec<u8> {
    if key.is_empty() {
        EMPTY_KEY_SENTINEL.to_vec()
    } else {
        key.as_bytes().to_vec()
    }
}

/// Writes a key store holding `keys` (key, ID) in both directions plus an empty `free`
/// bucket, as upstream creates them. IDs must be non-zero (upstream reads ID 0 as "no such
/// key") and keys and IDs unique. Returns the number of bytes written.
pub fn write_store<W: Write>(out: W, keys: &[(String, u64)]) -> io::Result<u64> {
    if keys.iter().any(|(_, id)| *id == 0) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "key store IDs must be non-zero"));
    }
    let by_key: Vec<_> = keys.iter().map(|(k, id)| (stored_key(k), id.to_be_bytes().to_vec())).collect();
    let by_id: Vec<_> = keys.iter().map(|(k, id)| (id.to_be_bytes().to_vec(), stored_key(k))).collect();
    // Duplicates are rejected by the bbolt writer.
    bolt::write_db(out, &[(KEYS.to_vec(), by_key), (IDS.to_vec(), by_id), (FREE.to_vec(), Vec::new())])
}

/// Reads a key store: every (key, ID), sorted by ID. Checks that the `keys` and `ids`
/// buckets exist, that every ID is 8 bytes and non-zero, and that the two directions agree
/// entry for entry; any disagreement is reported at the offending value's offset.
pub fn read_store(data: &[u8]) -> Result<Vec<(String, u64)>, FormatProblem> {
    let buckets = bolt::read_entries(data)?;
    let missing = |name: &str| FormatProblem { offset: 0, message: format!("key store has no {name:?} bucket") };
    let keys = buckets.get(KEYS).ok_or_else(|| missing("keys"))?;
    let ids = buckets.get(IDS).ok_or_else(|| missing("ids"))?;
    let decode_id = |bytes: &[u8], offset: u64| -> Result<u64, FormatProblem> {
        let id = <[u8; 8]>::try_from(bytes)
            .map(u64::from_be_bytes)
            .map_err(|_| FormatProblem { offset, message: format!("ID of {} bytes, want 8", bytes.len()) })?;
        if id == 0 {
            return Err(FormatProblem { offset, message: "ID 0 is never assigned".into() });
        }
        Ok(id)
    };
    let decode_key = |bytes: &[u8], offset: u64| -> Result<String, FormatProblem> {
        if bytes == EMPTY_KEY_SENTINEL {
            return Ok(String::new());
        }
        String::from_utf8(bytes.to_vec()).map_err(|_| FormatProblem { offset, message: "key is not UTF-8".into() })
    };
    let mut out = Vec::with_capacity(ids.len());
    for e in ids {
        let id = decode_id(&e.key, e.offset)?;
        out.push((decode_key(&e.value, e.offset)?, id));
    }
    // `ids` is in big-endian ID order, which is numeric order: `out` is sorted by ID.
    if keys.len() != ids.len() {
        let offset = keys.get(ids.len()).or_else(|| keys.last()).map_or(0, |e| e.offset);
        return Err(FormatProblem {
            offset,
            message: format!("{} keys but {} IDs: the two directions disagree", keys.len(), ids.len()),
        });
    }
    let mut forward = Vec::with_capacity(keys.len());
    for e in keys {
        forward.push((decode_key(&e.key, e.offset)?, decode_id(&e.value, e.offset)?, e.offset));
    }
    forward.sort_by_key(|f| f.1);
    for ((k, id, offset), (k2, id2)) in forward.iter().zip(&out) {
        if k != k2 || id != id2 {
            return Err(FormatProblem {
                offset: *offset,
                message: format!("key {k:?} maps to ID {id}, but ID {id2} maps to key {k2:?}"),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn write(keys: &[(String, u64)]) -> Vec<u8> {
        let mut out = Vec::new();
        write_store(&mut out, keys).expect("write");
        out
    }

    #[test]
    fn buckets_and_encodings_match_upstream() {
        let data = write(&[("a".into(), 1), (String::new(), 2)]);
        let db = bolt::read_db(&data).expect("read");
        let names: Vec<_> = db.keys().cloned().collect();
        assert_eq!(names, vec![b"free".to_vec(), b"ids".to_vec(), b"keys".to_vec()]);
        assert_eq!(db[&b"keys".to_vec()][1], (b"a".to_vec(), 1u64.to_be_bytes().to_vec()));
        assert_eq!(db[&b"ids".to_vec()][1], (2u64.to_be_bytes().to_vec(), EMPTY_KEY_SENTINEL.to_vec()));
        assert_eq!(read_store(&data), Ok(vec![("a".into(), 1), (String::new(), 2)]));
    }

    #[test]
    fn disagreeing_directions_are_reported() {
        let by_key = vec![(b"a".to_vec(), 1u64.to_be_bytes().to_vec())];
        let by_id = vec![(1u64.to_be_bytes().to_vec(), b"b".to_vec())];
        let mut data = Vec::new();
        bolt::write_db(&mut data, &[(b"keys".to_vec(), by_key), (b"ids".to_vec(), by_id)]).expect("write");
        let p = read_store(&data).expect_err("must disagree");
        assert!(p.message.contains("disagree") || p.message.contains("maps to"), "{p}");
        assert!(write_store(Vec::new(), &[("a".into(), 0)]).is_err());
    }

    proptest! {
        #[test]
        fn round_trip(m in prop::collection::btree_map(".{0,20}", 1u64.., 0..3000)) {
            // Unique IDs: keep the first key per ID.
            let mut seen = std::collections::BTreeMap::new();
            for (k, id) in m { seen.entry(id).or_insert(k); }
            let keys: Vec<(String, u64)> = seen.into_iter().map(|(id, k)| (k, id)).collect();
            let data = write(&keys);
            prop_assert_eq!(read_store(&data), Ok(keys));
        }

        #[test]
        fn garbage_never_panics(data in prop::collection::vec(any::<u8>(), 0..20000)) {
            let _ = read_store(&data);
        }
    }
}
