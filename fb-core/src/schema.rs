//! The cluster schema (`GET /schema`, the archive's `schema` entry): a typed view of what a
//! backup needs (which indexes and fields exist, which are keyed), and upstream's encoding of
//! the `schema` file (the server's JSON re-encoded with tab indentation, keys in the order the
//! server sent them).

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::layout::{is_valid_name, EntryPath, PARTITION_N};

/// A field as far as a backup cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldInfo {
    /// Field name.
    pub name: String,
    /// `set`, `mutex`, `int`, `time`, `bool`, `decimal`, `timestamp`.
    pub field_type: String,
    /// Whether row keys are translated (the field has a key store).
    pub keys: bool,
}

/// An index as far as a backup cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexInfo {
    /// Index name.
    pub name: String,
    /// Whether column keys are translated (the index has key partitions).
    pub keys: bool,
    /// Its fields, in the server's order.
    pub fields: Vec<FieldInfo>,
}

/// A parsed schema: the raw JSON (order kept) and the typed view.
#[derive(Debug, Clone)]
pub struct Schema {
    raw: Value,
    /// The indexes, in the server's order.
    pub indexes: Vec<IndexInfo>,
}

impl Schema {
    /// Parse a schema document as the server or the `schema` entry has it. Index and field
    /// names must be valid FeatureBase names (they become archive paths).
    pub fn parse(bytes: &[u8]) -> Result<Schema> {
        let raw: Value =
            serde_json::from_slice(bytes).map_err(|e| Error::protocol("schema is not valid JSON").with_source(e))?;
        Schema::from_value(raw)
    }

    /// As [`Schema::parse`], from parsed JSON.
    pub fn from_value(raw: Value) -> Result<Schema> {
        let bad = |why: String| Error::protocol(format!("schema: {why}"));
        let list = match raw.get("indexes") {
            Some(Value::Array(a)) => a.clone(),
            Some(Value::Null) | None => Vec::new(),
            Some(_) => return Err(bad("\"indexes\" is not a list".into())),
        };
        let mut indexes = Vec::new();
        for idx in &list {
            let name = idx.get("name").and_then(Value::as_str).ok_or_else(|| bad("an index without a name".into()))?;
            if !is_valid_name(name) {
                return Err(bad(format!("invalid index name {name:?}")));
            }
            let keys = idx.pointer("/options/keys").and_then(Value::as_bool).unwrap_or(false);
            let mut fields = Vec::new();
            if let Some(Value::Array(fs)) = idx.get("fields") {
                for f in fs {
                    let fname = f
                        .get("name")
                        .and_then(Value::as_str)
                        .ok_or_else(|| bad(format!("a field of index {name:?} without a name")))?;
                    if !is_valid_name(fname) {
                        return Err(bad(format!("invalid field name {fname:?} in index {name:?}")));
                    }
                    fields.push(FieldInfo {
                        name: fname.to_string(),
                        field_type: f.pointer("/options/type").and_then(Value::as_str).unwrap_or("set").to_string(),
                        keys: f.pointer("/options/keys").and_then(Value::as_bool).unwrap_or(false),
                    });
                }
            }
            indexes.push(IndexInfo { name: name.to_string(), keys, fields });
        }
        Ok(Schema { raw, indexes })
    }

    /// The index called `name`.
    pub fn index(&self, name: &str) -> Option<&IndexInfo> {
        self.indexes.iter().find(|i| i.name == name)
    }

    /// The raw JSON.
    pub fn raw(&self) -> &Value {
        &self.raw
    }

    /// The schema limited to the named indexes (for `--index`), keeping the server's order.
    pub fn select(&self, names: &[String]) -> Schema {
        let mut raw = self.raw.clone();
        if let Some(Value::Array(list)) = raw.get_mut("indexes") {
            list.retain(|i| i.get("name").and_then(Value::as_str).is_some_and(|n| names.iter().any(|w| w == n)));
        }
        let indexes = self.indexes.iter().filter(|i| names.contains(&i.name)).cloned().collect();
        Schema { raw, indexes }
    }

    /// The bytes of the archive's `schema` entry: `{"indexes": [...]}` with tab indentation,
    /// as upstream's backup writes it.
    pub fn backup_bytes(&self) -> Vec<u8> {
        let mut doc = Map::new();
        doc.insert("indexes".into(), self.raw.get("indexes").cloned().unwrap_or(Value::Array(Vec::new())));
        let mut out = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
        serde::Serialize::serialize(&Value::Object(doc), &mut ser).expect("JSON values always serialise");
        out
    }
}

/// Field types `POST /schema` accepts (upstream's `FieldOptions` type switch; an empty type
/// is a set field).
const FIELD_TYPES: &[&str] = &["", "set", "mutex", "int", "decimal", "timestamp", "time", "bool"];
/// Cache types upstream accepts (`isValidCacheType`; empty means the default).
const CACHE_TYPES: &[&str] = &["", "ranked", "lru", "none"];
/// Time quanta upstream accepts (`TimeQuantum.Valid`).
const TIME_QUANTA: &[&str] = &["", "Y", "YM", "YMD", "YMDH", "M", "MD", "MDH", "D", "DH", "H"];

impl Schema {
    /// The entries a complete backup of this schema must hold besides shards, dataframes and
    /// idalloc: upstream opens a key store for each of the 256 partitions of a keyed index on
    /// every node, and one for every field (`Index.open`, `Field.Open`), so each keyed index
    /// has all 256 key partitions and each keyed field its key store (contract §5).
    pub fn required_key_entries(&self) -> Vec<EntryPath> {
        let mut out = Vec::new();
        for index in &self.indexes {
            if index.keys {
                for partition in 0..PARTITION_N {
                    out.push(EntryPath::IndexKeys { index: index.name.clone(), partition });
                }
            }
            for field in index.fields.iter().filter(|f| f.keys) {
                out.push(EntryPath::FieldKeys { index: index.name.clone(), field: field.name.clone() });
            }
        }
        out
    }

    /// What upstream's `POST /schema` would refuse in this document, decoded by its rules
    /// (typed `IndexInfo`/`FieldOptions`, `pql.ParseDecimal` bounds, field and cache types,
    /// time quanta, foreign indexes), one line each naming the index and field. A schema with
    /// such a problem cannot be restored by any restorer.
    pub fn upstream_problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let names: Vec<&str> = self.indexes.iter().map(|i| i.name.as_str()).collect();
        let Some(Value::Array(list)) = self.raw.get("indexes") else { return out };
        for idx in list {
            let iname = idx.get("name").and_then(Value::as_str).unwrap_or("");
            if let Some(opts) = idx.get("options") {
                check_typed(&mut out, &format!("index {iname:?}"), opts, INDEX_OPTIONS);
            }
            let Some(Value::Array(fields)) = idx.get("fields") else { continue };
            for f in fields {
                let fname = f.get("name").and_then(Value::as_str).unwrap_or("");
                let at = format!("field {fname:?} of index {iname:?}");
                let Some(opts) = f.get("options") else { continue };
                check_typed(&mut out, &at, opts, FIELD_OPTIONS);
                let text = |k: &str| opts.get(k).and_then(Value::as_str).unwrap_or("");
                if !FIELD_TYPES.contains(&text("type")) {
                    out.push(format!("{at}: invalid field type {:?}", text("type")));
                }
                if !CACHE_TYPES.contains(&text("cacheType")) {
                    out.push(format!("{at}: invalid cache type {:?}", text("cacheType")));
                }
                if !TIME_QUANTA.contains(&text("timeQuantum")) {
                    out.push(format!("{at}: invalid time quantum {:?}", text("timeQuantum")));
                }
                let foreign = text("foreignIndex");
                if !foreign.is_empty() && !names.contains(&foreign) {
                    out.push(format!("{at}: foreign index {foreign:?} is not in the schema"));
                }
                for key in ["min", "max"] {
                    if let Some(v) = opts.get(key) {
                        if let Err(why) = check_decimal(v) {
                            out.push(format!("{at}: {key} {v}: {why} (upstream parses bounds as decimals)"));
                        }
                    }
                }
            }
        }
        out
    }
}

/// A field to create through `POST /index/{index}/field/{field}` rather than `POST /schema`.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldToCreate {
    /// Index name.
    pub index: String,
    /// Field name.
    pub field: String,
    /// The `options` object the field API takes.
    pub options: Value,
}

/// A schema prepared for a restore: see [`split_zero_bound_fields`].
#[derive(Debug, Clone, Default)]
pub struct SchemaSplit {
    /// The document to post, when it differs from the backup's bytes.
    pub posted: Option<Vec<u8>>,
    /// Fields left out of it, to create one by one afterwards.
    pub fields: Vec<FieldToCreate>,
}

/// Options the field API decodes (upstream's `fieldOptions`, unknown keys refused), in the
/// order they are sent; `base` is accepted there but ignored, `bitDepth` is derived, and
/// `ttl` is a duration string there (see [`field_api_options`]).
const FIELD_API_OPTIONS: &[&str] = &[
    "type",
    "cacheType",
    "cacheSize",
    "min",
    "max",
    "scale",
    "epoch",
    "timeUnit",
    "timeQuantum",
    "keys",
    "noStandardView",
    "foreignIndex",
];

/// A field's options as a schema holds them, turned into the `options` object of
/// `POST /index/{i}/field/{f}`: the keys that endpoint decodes, and a non-zero `ttl` (integer
/// nanoseconds in a schema) as the duration string it wants.
pub fn field_api_options(opts: &Map<String, Value>) -> Value {
    let mut out = Map::new();
    for key in FIELD_API_OPTIONS {
        if let Some(v) = opts.get(*key) {
            out.insert((*key).to_string(), v.clone());
        }
    }
    if let Some(ttl) = opts.get("ttl").and_then(Value::as_u64).filter(|&n| n > 0) {
        out.insert("ttl".into(), format!("{ttl}ns").into());
    }
    Value::Object(out)
}

/// Whether a bound is zero by its JSON text (`0`, `-0`, `0.00`): numbers are compared as
/// written, never through a float.
pub(crate) fn is_zero_bound(v: &Value) -> bool {
    matches!(v, Value::Number(n) if n.to_string().trim_start_matches(['-', '+']).bytes().all(|b| b == b'0' || b == b'.'))
}

/// Take out of a schema document the fields `POST /schema` would not restore as they were,
/// to be created through `POST /index/{i}/field/{f}`, which keeps their options:
/// - int and decimal fields with a `min` or `max` of 0 (upstream's `POST /schema` stores such
///   a bound as -2^63 or 2^63-1);
/// - timestamp fields whose `epoch` is not the Unix epoch (`POST /schema` does not decode
///   `epoch`, so the field would come back counting from 1970 and answer every value shifted).
///
/// Every other byte of the document is kept; numbers keep their text.
pub fn split_zero_bound_fields(bytes: &[u8]) -> Result<SchemaSplit> {
    let mut doc: Value = serde_json::from_slice(bytes)
        .map_err(|e| Error::invalid("the schema entry is not valid JSON").with_source(e))?;
    let mut fields = Vec::new();
    if let Some(Value::Array(indexes)) = doc.get_mut("indexes") {
        for idx in indexes.iter_mut() {
            let iname = idx.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
            let Some(Value::Array(list)) = idx.get_mut("fields") else { continue };
            list.retain(|f| {
                let opts = f.get("options");
                let ty = opts.and_then(|o| o.get("type")).and_then(Value::as_str).unwrap_or("");
                let zero = ["min", "max"].iter().any(|k| opts.and_then(|o| o.get(*k)).is_some_and(is_zero_bound));
                let epoch = opts.and_then(|o| o.get("epoch")).and_then(Value::as_str);
                let own_epoch = epoch.is_some_and(|t| crate::census::parse_timestamp(t, 1) != Some(0));
                if !((matches!(ty, "int" | "decimal") && zero) || (ty == "timestamp" && own_epoch)) {
                    return true;
                }
                fields.push(FieldToCreate {
                    index: iname.clone(),
                    field: f.get("name").and_then(Value::as_str).unwrap_or_default().to_string(),
                    options: opts.and_then(Value::as_object).map(field_api_options).unwrap_or_default(),
                });
                false
            });
        }
    }
    let posted = if fields.is_empty() {
        None
    } else {
        Some(serde_json::to_vec(&doc).map_err(|e| Error::invalid("re-encoding the schema").with_source(e))?)
    };
    Ok(SchemaSplit { posted, fields })
}

/// How upstream decodes an option: the Go type of its struct field.
#[derive(Clone, Copy)]
enum GoType {
    Bool,
    Str,
    Int {
        min: i128,
        max: i128,
    },
    /// `pql.Decimal`, checked by [`check_decimal`].
    Decimal,
}

const I64: GoType = GoType::Int { min: i64::MIN as i128, max: i64::MAX as i128 };

/// Index options upstream decodes (`IndexOptions`); others are ignored by Go's decoder.
const INDEX_OPTIONS: &[(&str, GoType)] =
    &[("keys", GoType::Bool), ("trackExistence", GoType::Bool), ("partitionN", I64), ("description", GoType::Str)];

/// Field options upstream decodes (`FieldOptions`); `epoch` is not among them and is ignored.
const FIELD_OPTIONS: &[(&str, GoType)] = &[
    ("base", I64),
    ("bitDepth", GoType::Int { min: 0, max: u64::MAX as i128 }),
    ("min", GoType::Decimal),
    ("max", GoType::Decimal),
    ("scale", I64),
    ("keys", GoType::Bool),
    ("noStandardView", GoType::Bool),
    ("trackExistence", GoType::Bool),
    ("cacheSize", GoType::Int { min: 0, max: u32::MAX as i128 }),
    ("cacheType", GoType::Str),
    ("type", GoType::Str),
    ("timeUnit", GoType::Str),
    ("timeQuantum", GoType::Str),
    ("foreignIndex", GoType::Str),
    ("ttl", I64),
];

/// Go's JSON decoder into a typed struct: each known option must have its field's type (an
/// integer field takes only an integer literal in range).
fn check_typed(out: &mut Vec<String>, at: &str, opts: &Value, known: &[(&str, GoType)]) {
    let Some(map) = opts.as_object() else {
        out.push(format!("{at}: options is not an object"));
        return;
    };
    for (key, ty) in known {
        let Some(v) = map.get(*key) else { continue };
        let ok = match ty {
            GoType::Bool => v.is_boolean() || v.is_null(),
            GoType::Str => v.is_string() || v.is_null(),
            GoType::Int { min, max } => match v {
                Value::Null => true,
                Value::Number(n) => n.to_string().parse::<i128>().is_ok_and(|x| (*min..=*max).contains(&x)),
                _ => false,
            },
            GoType::Decimal => true,
        };
        if !ok {
            out.push(format!("{at}: option {key} = {v} does not decode as upstream's type"));
        }
    }
}

/// `pql.ParseDecimal` on a JSON token: an optional sign, digits and at most one decimal
/// point; no exponent (Go hands the raw token to the parser); the integer part must fit in
/// 64 bits (fraction digits beyond that are truncated upstream, so they are allowed).
pub fn check_decimal(v: &Value) -> std::result::Result<(), String> {
    let Value::Number(n) = v else { return Err("not a number".into()) };
    let text = n.to_string();
    let digits = text.strip_prefix(['-', '+']).unwrap_or(&text);
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err("not a plain decimal (upstream refuses exponents: invalid syntax)".into());
    }
    let int = int.trim_start_matches('0');
    let limit: u128 = if text.starts_with('-') { 1 << 63 } else { (1 << 63) - 1 };
    if int.len() > 19 || int.parse::<u128>().unwrap_or(0) > limit {
        return Err("value out of range".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_reencodes_in_server_order() {
        let text = br#"{"indexes":[{"name":"users","options":{"keys":true,"trackExistence":true},"fields":[{"name":"color","options":{"type":"set","keys":true}},{"name":"age","options":{"type":"int"}}],"shardWidth":1048576},{"name":"events","options":{}}]}"#;
        let s = Schema::parse(text).unwrap();
        assert_eq!(s.indexes.len(), 2);
        assert!(s.indexes[0].keys);
        assert_eq!(s.indexes[0].fields[1].field_type, "int");
        let out = String::from_utf8(s.select(&["users".into()]).backup_bytes()).unwrap();
        assert!(out.starts_with("{\n\t\"indexes\": [\n\t\t{\n\t\t\t\"name\": \"users\",\n\t\t\t\"options\""));
        assert!(!out.contains("events"));
        assert!(Schema::parse(br#"{"indexes":[{"name":"../x"}]}"#).is_err());
    }

    #[test]
    fn upstream_rules_refuse_what_post_schema_refuses() {
        let doc = |opts: &str| {
            Schema::parse(format!(r#"{{"indexes":[{{"name":"i","options":{{"keys":true}},"fields":[{{"name":"f","options":{opts}}}]}}]}}"#).as_bytes()).unwrap()
        };
        assert!(doc(r#"{"type":"decimal","scale":2,"min":-92233720368547758.08,"max":92233720368547758.07}"#)
            .upstream_problems()
            .is_empty());
        assert!(doc(r#"{"type":"int","min":-9223372036854775808,"max":9223372036854775807}"#)
            .upstream_problems()
            .is_empty());
        let p = doc(r#"{"type":"decimal","scale":2,"min":-9.223372036854776e+16,"max":1}"#).upstream_problems();
        assert!(p.len() == 1 && p[0].contains("min") && p[0].contains("exponent"), "{p:?}");
        assert!(!doc(r#"{"type":"int","min":-99999999999999999999}"#).upstream_problems().is_empty());
        assert!(!doc(r#"{"type":"sets"}"#).upstream_problems().is_empty());
        assert!(!doc(r#"{"type":"set","cacheType":"big"}"#).upstream_problems().is_empty());
        assert!(!doc(r#"{"type":"time","timeQuantum":"DY"}"#).upstream_problems().is_empty());
        assert!(!doc(r#"{"type":"set","cacheSize":1.5}"#).upstream_problems().is_empty());
        assert!(!doc(r#"{"type":"set","keys":"yes"}"#).upstream_problems().is_empty());
        assert!(!doc(r#"{"type":"int","foreignIndex":"nope"}"#).upstream_problems().is_empty());
    }

    #[test]
    fn numbers_keep_their_text() {
        let text = br#"{"indexes":[{"name":"i","fields":[{"name":"d","options":{"type":"decimal","scale":2,"min":-92233720368547758.08,"max":1234567890123456.78}}]}]}"#;
        let out = String::from_utf8(Schema::parse(text).unwrap().backup_bytes()).unwrap();
        assert!(out.contains("-92233720368547758.08") && out.contains("1234567890123456.78"), "{out}");
    }

    #[test]
    fn keyed_indexes_and_fields_require_their_key_stores() {
        let s = Schema::parse(br#"{"indexes":[{"name":"a","options":{"keys":true},"fields":[{"name":"c","options":{"type":"set","keys":true}},{"name":"n","options":{"type":"int"}}]},{"name":"b","options":{"keys":false}}]}"#).unwrap();
        let req = s.required_key_entries();
        assert_eq!(req.len(), 257);
        assert!(req.contains(&EntryPath::IndexKeys { index: "a".into(), partition: 255 }));
        assert!(req.contains(&EntryPath::FieldKeys { index: "a".into(), field: "c".into() }));
    }

    #[test]
    fn zero_bound_fields_go_through_the_field_api() {
        let text = br#"{"indexes":[{"name":"u","options":{"keys":true},"fields":[{"name":"age","options":{"type":"int","base":0,"bitDepth":7,"min":0,"max":150,"keys":false,"foreignIndex":""}},{"name":"p","options":{"type":"decimal","base":0,"scale":2,"bitDepth":0,"min":-1.50,"max":0.00,"keys":false}},{"name":"n","options":{"type":"int","min":-5,"max":5}},{"name":"c","options":{"type":"set"}}]}]}"#;
        let split = split_zero_bound_fields(text).unwrap();
        assert_eq!(split.fields.len(), 2);
        assert_eq!(split.fields[0].field, "age");
        assert_eq!(
            split.fields[0].options.to_string(),
            r#"{"type":"int","min":0,"max":150,"keys":false,"foreignIndex":""}"#
        );
        assert_eq!(
            split.fields[1].options.to_string(),
            r#"{"type":"decimal","min":-1.50,"max":0.00,"scale":2,"keys":false}"#
        );
        let posted = String::from_utf8(split.posted.unwrap()).unwrap();
        assert!(
            posted.contains(r#""name":"n""#) && posted.contains(r#""name":"c""#) && !posted.contains("age"),
            "{posted}"
        );
        let epochs = br#"{"indexes":[{"name":"u","fields":[{"name":"t0","options":{"type":"timestamp","epoch":"1970-01-01T00:00:00Z","timeUnit":"s"}},{"name":"t1","options":{"type":"timestamp","epoch":"2000-01-01T00:00:00Z","bitDepth":0,"min":-1,"max":1,"timeUnit":"ms"}}]}]}"#;
        let split = split_zero_bound_fields(epochs).unwrap();
        assert_eq!(split.fields.len(), 1, "only the field with its own epoch");
        assert_eq!(
            split.fields[0].options.to_string(),
            r#"{"type":"timestamp","min":-1,"max":1,"epoch":"2000-01-01T00:00:00Z","timeUnit":"ms"}"#
        );
        let none = br#"{"indexes":[{"name":"u","fields":[{"name":"n","options":{"type":"int","min":-5,"max":5}}]}]}"#;
        assert!(split_zero_bound_fields(none).unwrap().posted.is_none());
    }
}
