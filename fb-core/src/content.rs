//! What an entry *means*, as opposed to its bytes, for `fb-manifest diff --content`.
//!
//! A real FeatureBase restore does not serve back the bytes it was sent (measured against
//! v3.35, see the interop fixture's README):
//! - `POST /schema` stamps every index and field with a new `createdAt`, and its
//!   `CreateFieldIfNotExistsWithOptions` reads an int field's `min: 0` or `max: 0` as "unset"
//!   and stores `-2^63` or `2^63-1` instead;
//! - every restored bbolt file (key stores, the ID allocator) is rewritten by a new
//!   transaction: a higher txid, other page numbers, often one page more.
//!
//! So a byte diff of a backup against an export of the cluster it was restored into
//! reports those entries as changed although the data is the same. The content digest of an
//! entry is the SHA-256 of a canonical form of what it holds:
//! - `schema`: the JSON with object keys sorted, indexes and fields sorted by name, the
//!   `createdAt`/`updatedAt` stamps removed, and an int field's `min: 0`/`max: 0` read as the
//!   bound upstream stores for it (see [`schema_notes`] for how such changes are shown);
//! - key stores and `idalloc` (bbolt): every bucket's key/value pairs in key order;
//! - dataframes: the bytes; upstream's placeholder text is [`Content::Placeholder`], which
//!   a content diff does not count as an entry (any other file that is not Arrow or Parquet
//!   is damaged, and [`Content::Unknown`]).
//!
//! Shards (RBF) are compared by their bytes only: a restore keeps them byte for byte
//! (measured), and decoding a shard into bit positions takes up to 64 times its size in
//! memory. Computing a digest needs the whole file in memory, and decoding a key store takes
//! several times its size, so files over [`CONTENT_LIMIT`] are not compared by content
//! either. Such entries are reported as not compared, never as equal.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::format::bolt;
use crate::layout::EntryKind;
use crate::schema::is_zero_bound;

/// Largest entry whose content digest is computed.
pub const CONTENT_LIMIT: u64 = 64 << 20;

/// Whether the content of an entry of `kind` is computed from its whole bytes (the others
/// need only their SHA-256 and first bytes, see [`digest_from_hash`]).
pub fn needs_bytes(kind: EntryKind) -> bool {
    matches!(kind, EntryKind::Schema | EntryKind::IndexKeys | EntryKind::FieldKeys | EntryKind::Idalloc)
}

/// The content of an entry that [`needs_bytes`] says is not decoded: a dataframe is its
/// bytes (or upstream's placeholder, told by the whole entry when it is short); a shard is
/// not compared by content.
pub fn digest_from_hash(kind: EntryKind, sha256: [u8; 32], size: u64, prefix: &[u8]) -> Content {
    match kind {
        EntryKind::Dataframe if size == prefix.len() as u64 && crate::format::is_dataframe_placeholder(prefix) => {
            Content::Placeholder
        }
        EntryKind::Dataframe if !crate::format::is_dataframe(prefix) => {
            Content::Unknown("not an Arrow or Parquet file (damaged)".into())
        }
        EntryKind::Dataframe => Content::Digest(sha256),
        _ => Content::Unknown("shards are compared by bytes (a restore keeps them byte for byte)".into()),
    }
}

/// The content digest of one entry, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// SHA-256 of the canonical form.
    Digest([u8; 32]),
    /// Not computed (too large, or the file does not decode); the reason in words.
    Unknown(String),
    /// Not data at all: upstream's placeholder dataframe (the text "Dataframe is disabled"
    /// that `featurebase backup` saves when dataframes are off).
    Placeholder,
}

impl Content {
    /// Whether both are digests and equal.
    pub fn same_as(&self, other: &Content) -> bool {
        matches!((self, other), (Content::Digest(a), Content::Digest(b)) if a == b)
    }
}

/// The bound upstream's `POST /schema` stores in place of a `min` or `max` of 0 of an int,
/// timestamp or decimal field (`CreateFieldIfNotExistsWithOptions` reads 0 as unset): the
/// widest 64-bit value, for a decimal at the field's scale (`pql.MinMax`), as upstream's
/// decimal text. `None` for other field types.
fn unset_bound(opts: &serde_json::Map<String, Value>, key: &str) -> Option<Value> {
    let mantissa: i128 = if key == "min" { i64::MIN as i128 } else { i64::MAX as i128 };
    match opts.get("type").and_then(Value::as_str) {
        Some("int" | "timestamp") => Some(Value::from(mantissa as i64)),
        Some("decimal") => {
            let scale = opts.get("scale").and_then(Value::as_u64).unwrap_or(0) as usize;
            let digits = mantissa.unsigned_abs().to_string();
            let digits = format!("{digits:0>width$}", width = scale + 1);
            let (int, frac) = digits.split_at(digits.len() - scale);
            let sign = if mantissa < 0 { "-" } else { "" };
            let text = if scale == 0 { format!("{sign}{int}") } else { format!("{sign}{int}.{frac}") };
            serde_json::from_str(&text).ok()
        }
        _ => None,
    }
}

/// The content digest of an entry of `kind` holding `data`.
pub fn digest(kind: EntryKind, data: &[u8]) -> Content {
    if data.len() as u64 > CONTENT_LIMIT {
        return Content::Unknown(format!("larger than {} MiB", CONTENT_LIMIT >> 20));
    }
    let mut h = Sha256::new();
    let result: Result<(), String> = match kind {
        EntryKind::Schema => canonical_schema(data).map(|v| h.update(canonical_json(&v).as_bytes())),
        EntryKind::IndexKeys | EntryKind::FieldKeys | EntryKind::Idalloc => {
            bolt::read_db(data).map_err(|p| format!("not a readable bbolt file ({p})")).map(|db| {
                for (bucket, pairs) in db {
                    h.update(b"bucket\0");
                    frame(&mut h, &bucket);
                    for (k, v) in pairs {
                        frame(&mut h, &k);
                        frame(&mut h, &v);
                    }
                }
            })
        }
        EntryKind::Shard | EntryKind::Dataframe => {
            return digest_from_hash(kind, Sha256::digest(data).into(), data.len() as u64, data)
        }
    };
    match result {
        Ok(()) => Content::Digest(h.finalize().into()),
        Err(why) => Content::Unknown(why),
    }
}

/// Length-prefixed bytes, so that concatenations cannot collide.
fn frame(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

/// The schema with what a restore rewrites made canonical (see the module docs).
fn canonical_schema(data: &[u8]) -> Result<Value, String> {
    let mut v: Value = serde_json::from_slice(data).map_err(|e| format!("schema is not JSON ({e})"))?;
    if let Some(indexes) = v.get_mut("indexes").and_then(Value::as_array_mut) {
        indexes.sort_by(|a, b| name_of(a).cmp(name_of(b)));
        for index in indexes.iter_mut() {
            strip_stamps(index, false);
            if let Some(fields) = index.get_mut("fields").and_then(Value::as_array_mut) {
                fields.sort_by(|a, b| name_of(a).cmp(name_of(b)));
                for field in fields.iter_mut() {
                    strip_stamps(field, true);
                    if let Some(opts) = field.get_mut("options").and_then(Value::as_object_mut) {
                        for key in ["min", "max"] {
                            if opts.get(key).is_some_and(is_zero_bound) {
                                if let Some(unset) = unset_bound(opts, key) {
                                    opts.insert(key.into(), unset);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(v)
}

fn name_of(v: &Value) -> &str {
    v.get("name").and_then(Value::as_str).unwrap_or("")
}

/// What a restore rewrites besides the stamps: who last changed an index, and who created a
/// field (upstream's `POST /schema` creates every field with an empty owner).
fn restore_metadata(is_field: bool) -> [&'static str; 3] {
    ["createdAt", "updatedAt", if is_field { "owner" } else { "lastUpdatedUser" }]
}

fn strip_stamps(v: &mut Value, is_field: bool) {
    if let Some(o) = v.as_object_mut() {
        for key in restore_metadata(is_field) {
            o.shift_remove(key);
        }
    }
}

/// JSON with object keys sorted at every level.
fn canonical_json(v: &Value) -> String {
    match v {
        Value::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::from(k.as_str()), canonical_json(&o[k.as_str()])))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(a) => format!("[{}]", a.iter().map(canonical_json).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

/// How two schemas with the same content digest differ, in words, one line per kind of
/// rewrite (for the diff report); never empty, so a report always says why they are the same.
pub fn schema_notes(a: &[u8], b: &[u8]) -> Vec<String> {
    let (stamps, bounds) = compare_schemas(a, b);
    let mut notes = Vec::new();
    if stamps > 0 {
        notes.push(format!(
            "{stamps} createdAt/updatedAt/owner value(s) differ (POST /schema stamps the restore time and creates fields without their owner)"
        ));
    }
    if !bounds.is_empty() {
        let bounds: Vec<String> = bounds.iter().map(BoundChange::to_string).collect();
        notes.push(format!(
            "bounds of 0 read as unset: {} (upstream's POST /schema stores 0 as the widest bound; the restored field accepts the wider range)",
            bounds.join(", ")
        ));
    }
    if notes.is_empty() {
        notes.push(
            "the same indexes, fields and options; the bytes differ only in layout (white space, key or list order)"
                .into(),
        );
    }
    notes
}

/// A field bound (`min` or `max`) that differs between two schemas.
#[derive(Debug, Clone, PartialEq)]
pub struct BoundChange {
    /// `index/field`.
    pub field: String,
    /// `min` or `max`.
    pub key: &'static str,
    /// The value in the first schema.
    pub from: Value,
    /// The value in the second.
    pub to: Value,
    /// Whether this is upstream's rewrite: a bound of 0 stored as the widest bound.
    zero_read_as_unset: bool,
}

impl BoundChange {
    /// Whether this is upstream's rewrite: a bound of 0 stored as the widest bound of the
    /// field's type (-2^63 or 2^63-1, at the field's scale for a decimal).
    pub fn is_zero_read_as_unset(&self) -> bool {
        self.zero_read_as_unset
    }
}

impl std::fmt::Display for BoundChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {} -> {}", self.field, self.key, self.from, self.to)
    }
}

/// The field bounds that differ between two schemas, for fields present in both.
pub fn bound_changes(a: &[u8], b: &[u8]) -> Vec<BoundChange> {
    compare_schemas(a, b).1
}

/// (stamps that differ, bound changes) between fields and indexes present in both.
fn compare_schemas(a: &[u8], b: &[u8]) -> (usize, Vec<BoundChange>) {
    let (Ok(a), Ok(b)) = (serde_json::from_slice::<Value>(a), serde_json::from_slice::<Value>(b)) else {
        return (0, Vec::new());
    };
    let mut stamps = 0usize;
    let mut bounds = Vec::new();
    let list = |v: &Value, key: &str| v.get(key).and_then(Value::as_array).cloned().unwrap_or_default();
    let stamp_diffs = |x: &Value, y: &Value, is_field: bool| {
        restore_metadata(is_field).iter().filter(|k| x.get(**k) != y.get(**k)).count()
    };
    let indexes_b = list(&b, "indexes");
    for ia in list(&a, "indexes") {
        let Some(ib) = indexes_b.iter().find(|x| name_of(x) == name_of(&ia)) else { continue };
        stamps += stamp_diffs(&ia, ib, false);
        let fields_b = list(ib, "fields");
        for fa in list(&ia, "fields") {
            let Some(fb) = fields_b.iter().find(|x| name_of(x) == name_of(&fa)) else { continue };
            stamps += stamp_diffs(&fa, fb, true);
            for key in ["min", "max"] {
                let (x, y) = (&fa["options"][key], &fb["options"][key]);
                if x != y {
                    let unset = fa["options"].as_object().and_then(|o| unset_bound(o, key));
                    bounds.push(BoundChange {
                        field: format!("{}/{}", name_of(&ia), name_of(&fa)),
                        key,
                        from: x.clone(),
                        to: y.clone(),
                        zero_read_as_unset: is_zero_bound(x) && unset.as_ref() == Some(y),
                    });
                }
            }
        }
    }
    (stamps, bounds)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str = r#"{"indexes":[{"name":"u","createdAt":1,"options":{"keys":true},"fields":[
        {"name":"b","createdAt":2,"options":{"type":"set","keys":false}},
        {"name":"age","createdAt":3,"options":{"type":"int","min":0,"max":150}}]}]}"#;

    #[test]
    fn schema_content_ignores_stamps_order_and_the_unset_bound_rewrite() {
        let restored = r#"{"indexes":[{"options":{"keys":true},"name":"u","createdAt":99,"updatedAt":7,"fields":[
            {"name":"age","createdAt":98,"options":{"max":150,"type":"int","min":-9223372036854775808}},
            {"name":"b","createdAt":97,"options":{"keys":false,"type":"set"}}]}]}"#;
        let a = digest(EntryKind::Schema, SCHEMA.as_bytes());
        let b = digest(EntryKind::Schema, restored.as_bytes());
        assert!(a.same_as(&b));
        let notes = schema_notes(SCHEMA.as_bytes(), restored.as_bytes());
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[1].contains("u/age min 0 -> -9223372036854775808"), "{notes:?}");
        let changes = bound_changes(SCHEMA.as_bytes(), restored.as_bytes());
        assert_eq!(changes.len(), 1);
        assert!(changes[0].is_zero_read_as_unset());
        // Other bound changes are not upstream's rewrite, even when the text ends alike.
        let ten = SCHEMA.replace("\"min\":0", "\"min\":10");
        let changes = bound_changes(ten.as_bytes(), restored.as_bytes());
        assert_eq!(changes[0].to_string(), "u/age min 10 -> -9223372036854775808");
        assert!(!changes[0].is_zero_read_as_unset());
    }

    #[test]
    fn real_schema_changes_change_the_digest() {
        let a = digest(EntryKind::Schema, SCHEMA.as_bytes());
        for changed in [
            SCHEMA.replace("\"max\":150", "\"max\":151"),
            SCHEMA.replace("\"keys\":true", "\"keys\":false"),
            SCHEMA.replace("\"name\":\"b\"", "\"name\":\"c\""),
            SCHEMA.replace("\"min\":0", "\"min\":-5"),
        ] {
            assert!(!a.same_as(&digest(EntryKind::Schema, changed.as_bytes())), "{changed}");
        }
        assert!(matches!(digest(EntryKind::Schema, b"{nope"), Content::Unknown(_)));
    }

    #[test]
    fn only_upstreams_placeholder_is_not_data() {
        assert_eq!(digest(EntryKind::Dataframe, b"Dataframe is disabled\n"), Content::Placeholder);
        assert!(matches!(digest(EntryKind::Dataframe, b"Dataframe is disab"), Content::Unknown(_)));
        assert!(matches!(digest(EntryKind::Dataframe, b""), Content::Unknown(_)));
        let arrow = digest(EntryKind::Dataframe, b"ARROW1\0\0data");
        assert!(arrow.same_as(&digest(EntryKind::Dataframe, b"ARROW1\0\0data")));
        // Shards are compared by bytes: never "same content" with other bytes.
        assert!(matches!(digest(EntryKind::Shard, b"whatever"), Content::Unknown(_)));
    }

    #[test]
    fn bbolt_content_is_the_key_values() {
        use crate::format::translate::write_store;
        let keys = vec![("a".to_string(), 1u64), ("b".to_string(), 2)];
        let mut one = Vec::new();
        write_store(&mut one, &keys).unwrap();
        // The key order given to the writer does not matter to the content.
        let mut two = Vec::new();
        write_store(&mut two, &[keys[1].clone(), keys[0].clone()]).unwrap();
        assert!(digest(EntryKind::IndexKeys, &one).same_as(&digest(EntryKind::IndexKeys, &two)));
        let mut other = Vec::new();
        write_store(&mut other, &[("a".to_string(), 1), ("c".to_string(), 2)]).unwrap();
        assert!(!digest(EntryKind::IndexKeys, &one).same_as(&digest(EntryKind::IndexKeys, &other)));
        assert!(matches!(digest(EntryKind::FieldKeys, b"junk"), Content::Unknown(_)));
    }

    #[test]
    fn numbers_are_compared_as_written_and_decimal_zero_bounds_widen_at_their_scale() {
        let exact = br#"{"indexes":[{"name":"u","fields":[{"name":"d","options":{"type":"decimal","scale":2,"min":-92233720368547758.08,"max":0}}]}]}"#;
        let floated = br#"{"indexes":[{"name":"u","fields":[{"name":"d","options":{"type":"decimal","scale":2,"min":-9.223372036854776e+16,"max":0}}]}]}"#;
        assert!(!digest(EntryKind::Schema, exact).same_as(&digest(EntryKind::Schema, floated)));
        let widened = br#"{"indexes":[{"name":"u","fields":[{"name":"d","options":{"type":"decimal","scale":2,"min":-92233720368547758.08,"max":92233720368547758.07}}]}]}"#;
        assert!(digest(EntryKind::Schema, exact).same_as(&digest(EntryKind::Schema, widened)));
        let changes = bound_changes(exact, widened);
        assert!(changes.len() == 1 && changes[0].is_zero_read_as_unset(), "{changes:?}");
        let spaced = br#"{ "indexes" : [{"fields":[{"options":{"type":"decimal","scale":2,"min":-92233720368547758.08,"max":0}, "name":"d"}], "name":"u"}]}"#;
        let notes = schema_notes(exact, spaced);
        assert!(notes.len() == 1 && notes[0].contains("layout"), "{notes:?}");
    }
}
