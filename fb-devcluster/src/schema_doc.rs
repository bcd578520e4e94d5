//! The cluster schema as FeatureBase encodes it: `IndexInfo` and `FieldInfo` objects with
//! upstream's key order, and field options written per field type (the server encodes only
//! the options that belong to the type).

use serde_json::{json, Map, Value};

/// FeatureBase's shard width (2^20 columns).
pub const SHARD_WIDTH: u64 = 1 << 20;

/// The schema a cluster holds: indexes sorted by name, each in upstream's encoding, with
/// fields sorted by name. Field views are kept and shown only when asked for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SchemaDoc {
    indexes: Vec<Value>,
}

/// Why a posted schema was refused (the text after "apply schema to Pilosa: ").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyError(pub String);

impl SchemaDoc {
    /// Parse a stored or posted `{"indexes": [...]}` document without applying any rule.
    pub fn from_stored(bytes: &[u8]) -> Result<SchemaDoc, String> {
        let v: Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let mut doc = SchemaDoc::default();
        if let Some(Value::Array(list)) = v.get("indexes") {
            for idx in list {
                doc.indexes.push(normalize_index(idx, None).map_err(|e| e.0)?);
            }
        }
        doc.indexes.sort_by(|a, b| name_of(a).cmp(name_of(b)));
        Ok(doc)
    }

    /// The indexes, sorted by name.
    pub fn indexes(&self) -> &[Value] {
        &self.indexes
    }

    /// Whether the cluster has no index.
    pub fn is_empty(&self) -> bool {
        self.indexes.is_empty()
    }

    /// The index called `name`.
    pub fn index(&self, name: &str) -> Option<&Value> {
        self.indexes.iter().find(|i| name_of(i) == name)
    }

    /// The field `field` of index `index`.
    pub fn field(&self, index: &str, field: &str) -> Option<&Value> {
        self.index(index)?.get("fields")?.as_array()?.iter().find(|f| name_of(f) == field)
    }

    /// Whether an index translates column keys.
    pub fn index_keyed(&self, index: &str) -> bool {
        self.index(index).and_then(|i| i.pointer("/options/keys")).and_then(Value::as_bool).unwrap_or(false)
    }

    /// Whether a field translates row keys.
    pub fn field_keyed(&self, index: &str, field: &str) -> bool {
        self.field(index, field).and_then(|f| f.pointer("/options/keys")).and_then(Value::as_bool).unwrap_or(false)
    }

    /// Apply a posted schema like FeatureBase's `POST /schema`: indexes are created in the
    /// order given; an existing index stops the apply (indexes created before it stay).
    /// `created_at` replaces the posted timestamps when given (upstream's behaviour).
    /// Returns the names of the indexes created.
    pub fn apply(&mut self, posted: &Value, created_at: Option<i64>) -> Result<Vec<String>, (Vec<String>, ApplyError)> {
        let mut created = Vec::new();
        let list = match posted.get("indexes") {
            Some(Value::Array(list)) => list.clone(),
            Some(Value::Null) | None => Vec::new(),
            Some(_) => return Err((created, ApplyError("\"indexes\" is not a list".into()))),
        };
        for idx in &list {
            let norm = match normalize_index(idx, created_at) {
                Ok(n) => n,
                Err(e) => return Err((created, e)),
            };
            let name = name_of(&norm).to_string();
            if self.index(&name).is_some() {
                return Err((created, ApplyError("applying schema: creating index: index already exists".into())));
            }
            self.indexes.push(norm);
            self.indexes.sort_by(|a, b| name_of(a).cmp(name_of(b)));
            created.push(name);
        }
        Ok(created)
    }

    /// The body of `GET /schema`: compact JSON and a newline, views only when asked for.
    pub fn response_body(&self, with_views: bool) -> Vec<u8> {
        let mut out = serde_json::to_vec(&self.document(with_views)).expect("JSON values serialise");
        out.push(b'\n');
        out
    }

    /// The schema as kept on disk (views included), tab-indented like a backup's `schema`.
    pub fn stored_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
        serde::Serialize::serialize(&self.document(true), &mut ser).expect("JSON values serialise");
        out
    }

    fn document(&self, with_views: bool) -> Value {
        let mut list = self.indexes.clone();
        if !with_views {
            for idx in &mut list {
                if let Some(Value::Array(fields)) = idx.get_mut("fields") {
                    for f in fields {
                        if let Value::Object(m) = f {
                            m.remove("views");
                        }
                    }
                }
            }
        }
        json!({ "indexes": list })
    }
}

/// What upstream's `POST /schema` does to int and timestamp field bounds before creating a
/// field (`Index.CreateFieldIfNotExistsWithOptions`): a `min` or `max` of 0 is read as
/// "unset" and replaced by -2^63 or 2^63-1. A backed-up field created with `min: 0` thus
/// comes back from a restore with no lower bound. Returns the `index/field` names changed.
pub fn widen_zero_bounds(posted: &mut Value) -> Vec<String> {
    let mut changed = Vec::new();
    let Some(indexes) = posted.get_mut("indexes").and_then(Value::as_array_mut) else { return changed };
    for idx in indexes {
        let iname = name_of(idx).to_string();
        let Some(fields) = idx.get_mut("fields").and_then(Value::as_array_mut) else { continue };
        for f in fields {
            let fname = name_of(f).to_string();
            let Some(o) = f.get_mut("options").and_then(Value::as_object_mut) else { continue };
            if !matches!(o.get("type").and_then(Value::as_str), Some("int" | "timestamp")) {
                continue;
            }
            for (key, unset) in [("min", i64::MIN), ("max", i64::MAX)] {
                let zero = match o.get(key) {
                    None | Some(Value::Null) => true,
                    Some(v) => v.as_f64() == Some(0.0),
                };
                if zero {
                    o.insert(key.into(), unset.into());
                    changed.push(format!("{iname}/{fname}"));
                }
            }
        }
    }
    changed.dedup();
    changed
}

fn name_of(v: &Value) -> &str {
    v.get("name").and_then(Value::as_str).unwrap_or_default()
}

fn int(v: Option<&Value>) -> i64 {
    v.and_then(Value::as_i64).unwrap_or(0)
}

fn text(v: Option<&Value>) -> String {
    v.and_then(Value::as_str).unwrap_or_default().to_string()
}

fn flag(v: Option<&Value>) -> bool {
    v.and_then(Value::as_bool).unwrap_or(false)
}

/// A number kept as the client wrote it (min/max are decimals upstream), 0 when absent.
fn number(v: Option<&Value>) -> Value {
    match v {
        Some(n @ Value::Number(_)) => n.clone(),
        _ => Value::from(0),
    }
}

/// One index in upstream's encoding.
fn normalize_index(idx: &Value, created_at: Option<i64>) -> Result<Value, ApplyError> {
    let name = idx
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| ApplyError("creating index: index name is required".into()))?;
    if !fb_core::layout::is_valid_name(name) {
        return Err(ApplyError(format!("creating index: invalid index name: {name:?}")));
    }
    let idx_created = created_at.unwrap_or_else(|| int(idx.get("createdAt")));
    let owner = text(idx.get("owner"));
    let opts = idx.get("options");
    let mut fields = Vec::new();
    let (mut updated_at, mut last_user) = (idx_created, owner.clone());
    if let Some(Value::Array(list)) = idx.get("fields") {
        for f in list {
            let field = normalize_field(f, created_at)?;
            if name_of(&field) == "_exists" {
                continue;
            }
            if fields.iter().any(|g: &Value| name_of(g) == name_of(&field)) {
                continue;
            }
            let fc = int(field.get("createdAt"));
            if fc > updated_at {
                updated_at = fc;
                last_user = text(field.get("owner"));
            }
            fields.push(field);
        }
    }
    fields.sort_by(|a, b| name_of(a).cmp(name_of(b)));
    if created_at.is_none() {
        // A stored or restored schema keeps the updatedAt it was given.
        if let Some(u) = idx.get("updatedAt").and_then(Value::as_i64) {
            updated_at = u;
        }
        if let Some(u) = idx.get("lastUpdatedUser").and_then(Value::as_str) {
            last_user = u.to_string();
        }
    }
    let mut m = Map::new();
    m.insert("name".into(), name.into());
    if idx_created != 0 {
        m.insert("createdAt".into(), idx_created.into());
    }
    m.insert("updatedAt".into(), updated_at.into());
    m.insert("owner".into(), owner.into());
    m.insert("lastUpdatedUser".into(), last_user.into());
    m.insert(
        "options".into(),
        json!({
            "keys": flag(opts.and_then(|o| o.get("keys"))),
            "trackExistence": flag(opts.and_then(|o| o.get("trackExistence"))),
            "partitionN": int(opts.and_then(|o| o.get("partitionN"))),
            "description": text(opts.and_then(|o| o.get("description"))),
        }),
    );
    m.insert("fields".into(), Value::Array(fields));
    m.insert("shardWidth".into(), SHARD_WIDTH.into());
    Ok(Value::Object(m))
}

/// One field in upstream's encoding; options are written per type.
fn normalize_field(f: &Value, created_at: Option<i64>) -> Result<Value, ApplyError> {
    let name = f
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| ApplyError("creating field: field name is required".into()))?;
    if name != "_exists" && !fb_core::layout::is_valid_name(name) {
        return Err(ApplyError(format!("creating field: invalid field name: {name:?}")));
    }
    let o = f.get("options").cloned().unwrap_or(Value::Null);
    let g = |k: &str| o.get(k);
    let ty = text(g("type"));
    let options = match ty.as_str() {
        "set" | "" | "mutex" => json!({
            "type": ty,
            "cacheType": text(g("cacheType")),
            "cacheSize": int(g("cacheSize")),
            "keys": flag(g("keys")),
        }),
        "int" => json!({
            "type": ty,
            "base": int(g("base")),
            "bitDepth": int(g("bitDepth")),
            "min": number(g("min")),
            "max": number(g("max")),
            "keys": flag(g("keys")),
            "foreignIndex": text(g("foreignIndex")),
        }),
        "decimal" => json!({
            "type": ty,
            "base": int(g("base")),
            "scale": int(g("scale")),
            "bitDepth": int(g("bitDepth")),
            "min": number(g("min")),
            "max": number(g("max")),
            "keys": flag(g("keys")),
        }),
        "timestamp" => json!({
            "type": ty,
            "epoch": g("epoch").and_then(Value::as_str).unwrap_or("1970-01-01T00:00:00Z"),
            "bitDepth": int(g("bitDepth")),
            "min": number(g("min")),
            "max": number(g("max")),
            "timeUnit": text(g("timeUnit")),
        }),
        "time" => json!({
            "type": ty,
            "timeQuantum": text(g("timeQuantum")),
            "keys": flag(g("keys")),
            "noStandardView": flag(g("noStandardView")),
            "ttl": int(g("ttl")),
        }),
        "bool" => json!({ "type": ty }),
        other => return Err(ApplyError(format!("creating field: invalid field type: '{other}'"))),
    };
    let created = created_at.unwrap_or_else(|| int(f.get("createdAt")));
    let mut m = Map::new();
    m.insert("name".into(), name.into());
    if created != 0 {
        m.insert("createdAt".into(), created.into());
    }
    m.insert("owner".into(), text(f.get("owner")).into());
    m.insert("options".into(), options);
    if let Some(c) = f.get("cardinality").filter(|c| c.is_u64()) {
        m.insert("cardinality".into(), c.clone());
    }
    if let Some(Value::Array(views)) = f.get("views") {
        let mut names: Vec<String> = views.iter().map(|v| text(v.get("name"))).filter(|n| !n.is_empty()).collect();
        names.sort();
        names.dedup();
        if !names.is_empty() {
            let list: Vec<Value> = names.into_iter().map(|n| json!({ "name": n })).collect();
            m.insert("views".into(), Value::Array(list));
        }
    }
    Ok(Value::Object(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posted_schema_gets_upstream_encoding() {
        let posted = json!({"indexes": [
            {"name": "zeta", "options": {"keys": false}, "fields": []},
            {"name": "alpha", "createdAt": 5, "owner": "me", "options": {"keys": true, "trackExistence": true},
             "fields": [
                {"name": "n", "createdAt": 9, "options": {"type": "int", "min": -10, "max": 10, "bitDepth": 4}},
                {"name": "b", "createdAt": 7, "options": {"type": "bool", "keys": true}},
                {"name": "_exists", "options": {"type": "set"}}
             ]}
        ]});
        let mut doc = SchemaDoc::default();
        assert_eq!(doc.apply(&posted, None).unwrap(), vec!["zeta", "alpha"]);
        let body = String::from_utf8(doc.response_body(false)).unwrap();
        assert_eq!(
            body,
            concat!(
                r#"{"indexes":[{"name":"alpha","createdAt":5,"updatedAt":9,"owner":"me","lastUpdatedUser":"","#,
                r#""options":{"keys":true,"trackExistence":true,"partitionN":0,"description":""},"fields":["#,
                r#"{"name":"b","createdAt":7,"owner":"","options":{"type":"bool"}},"#,
                r#"{"name":"n","createdAt":9,"owner":"","options":{"type":"int","base":0,"bitDepth":4,"min":-10,"max":10,"keys":false,"foreignIndex":""}}],"#,
                r#""shardWidth":1048576},"#,
                r#"{"name":"zeta","updatedAt":0,"owner":"","lastUpdatedUser":"","options":{"keys":false,"trackExistence":false,"partitionN":0,"description":""},"fields":[],"shardWidth":1048576}]}"#,
                "\n"
            )
        );
        assert!(doc.index_keyed("alpha") && !doc.index_keyed("zeta"));
        // Re-applying an existing index fails; the stored form reads back the same.
        assert!(doc.apply(&posted, None).is_err());
        assert_eq!(SchemaDoc::from_stored(&doc.stored_bytes()).unwrap(), doc);
        assert!(doc
            .apply(&json!({"indexes":[{"name":"x","fields":[{"name":"f","options":{"type":"blob"}}]}]}), None)
            .is_err());
    }
}
