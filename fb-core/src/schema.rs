//! The cluster schema (`GET /schema`, the archive's `schema` entry): a typed view of what a
//! backup needs (which indexes and fields exist, which are keyed), and upstream's encoding of
//! the `schema` file (the server's JSON re-encoded with tab indentation, keys in the order the
//! server sent them).

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::layout::is_valid_name;

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
}
