//! The cluster schema as FeatureBase encodes it: `IndexInfo` and `FieldInfo` objects with
//! upstream's key order, and field options written per field type (the server encodes only
//! the options that belong to the type).
//!
//! Layer: leaf (imports no other module of this crate).

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

    /// Create one index as upstream's `POST /index/{index}` does (stamped `created_at`, no
    /// fields). Fails with upstream's conflict when it exists.
    pub fn create_index(&mut self, name: &str, options: &Value, created_at: i64) -> Result<(), ApplyError> {
        if self.index(name).is_some() {
            return Err(ApplyError("creating index: index already exists".into()));
        }
        let idx = json!({ "name": name, "createdAt": created_at, "options": options, "fields": [] });
        self.apply(&json!({ "indexes": [idx] }), Some(created_at)).map(|_| ()).map_err(|(_, e)| e)
    }

    /// Add a field with `options` (already in upstream's encoding, see
    /// [`field_from_request`]) to an existing index, as upstream's
    /// `POST /index/{index}/field/{field}` does; the index's `updatedAt` becomes the
    /// field's `createdAt`.
    pub fn create_field(
        &mut self,
        index: &str,
        name: &str,
        options: &Value,
        created_at: i64,
    ) -> Result<(), ApplyError> {
        let field = normalize_field(&json!({ "name": name, "options": options }), Some(created_at))?;
        let Some(idx) = self.indexes.iter_mut().find(|i| name_of(i) == index) else {
            return Err(ApplyError(format!("{index}: index not found")));
        };
        let Some(Value::Array(fields)) = idx.get_mut("fields") else {
            return Err(ApplyError(format!("{index}: index not found")));
        };
        if fields.iter().any(|f| name_of(f) == name) {
            return Err(ApplyError("creating field: field already exists".into()));
        }
        fields.push(field);
        fields.sort_by(|a, b| name_of(a).cmp(name_of(b)));
        if let Value::Object(m) = idx {
            if int(m.get("updatedAt")) < created_at {
                m.insert("updatedAt".into(), created_at.into());
                m.insert("lastUpdatedUser".into(), "".into());
            }
        }
        Ok(())
    }

    /// The body of `GET /schema` for a caller that may read only some indexes (upstream
    /// `filterSchema`): the others are left out, and no index at all is `null`.
    pub fn response_body_filtered(&self, with_views: bool, readable: impl Fn(&str) -> bool) -> Vec<u8> {
        let mut doc = self.document(with_views);
        if let Some(Value::Array(list)) = doc.get_mut("indexes") {
            list.retain(|i| readable(name_of(i)));
            if list.is_empty() {
                doc["indexes"] = Value::Null;
            }
        }
        let mut out = serde_json::to_vec(&doc).expect("JSON values serialise");
        out.push(b'\n');
        out
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

/// A decimal as upstream's `pql.Decimal` holds it: an int64 `value` and a `scale` (the
/// number is `value × 10^-scale`). Kept as text by the caller; this type only checks and
/// re-spells bounds exactly, never through a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decimal {
    /// The unscaled value.
    pub value: i64,
    /// Digits after the decimal point (negative: trailing zeros before it).
    pub scale: i64,
}

impl Decimal {
    /// Upstream `pql.MinMax(scale)`: the widest bounds of a field of that scale.
    pub fn min_max(scale: i64) -> (Decimal, Decimal) {
        (Decimal { value: i64::MIN, scale }, Decimal { value: i64::MAX, scale })
    }

    /// Upstream `pql.ParseDecimal`, error texts included. Like upstream it does not check
    /// that the characters are digits until the mantissa is converted, so `1e5` or a quoted
    /// string fail there (`strconv.ParseUint: parsing "...": invalid syntax`).
    pub fn parse(s: &str) -> Result<Decimal, String> {
        #[derive(PartialEq)]
        enum State {
            Sign,
            Zeros,
            Mantissa,
        }
        let b = s.as_bytes();
        let (mut negative, mut state, mut found_zero) = (false, State::Sign, false);
        let mut decimal_pos: Option<usize> = None;
        let mut mantissa: Vec<u8> = Vec::with_capacity(b.len());
        for &c in b {
            if state == State::Sign {
                state = State::Zeros;
                if c == b'-' || c == b'+' {
                    negative = c == b'-';
                    continue;
                }
            }
            if state == State::Zeros {
                if c == b'0' {
                    found_zero = true;
                    continue;
                }
                state = State::Mantissa;
            }
            if c == b'.' {
                if decimal_pos.is_some() {
                    return Err(format!("invalid decimal string: {s}"));
                }
                decimal_pos = Some(mantissa.len());
            } else {
                mantissa.push(c);
            }
        }
        if state == State::Sign || (state == State::Zeros && !found_zero) {
            return Err("decimal string is empty".into());
        }
        let trimmed = mantissa.iter().rev().take_while(|&&c| c == b'0').count();
        mantissa.truncate(mantissa.len() - trimmed);
        let mut scale = match decimal_pos {
            None => -(trimmed as i64),
            Some(pos) => mantissa.len() as i64 - pos as i64,
        };
        if mantissa.is_empty() {
            mantissa.push(b'0');
            negative = false;
            scale = 0;
        }
        // Upstream `reducePrecision`: drop digits after the point until the mantissa fits
        // an int64 (compared as text, as upstream does).
        let first = mantissa.iter().position(|&c| c != b'0').unwrap_or(mantissa.len());
        let mut digits: &[u8] = &mantissa[first..];
        if digits.is_empty() {
            digits = b"0";
        }
        let max: &[u8] = if negative { b"9223372036854775808" } else { b"9223372036854775807" };
        loop {
            if digits.len() <= 18 || (digits.len() == 19 && digits <= max) {
                break;
            }
            if scale <= 0 {
                return Err(format!("value out of range: {}", String::from_utf8_lossy(&mantissa)));
            }
            digits = &digits[..digits.len() - 1];
            scale -= 1;
        }
        let text = String::from_utf8_lossy(digits).into_owned();
        let magnitude: u64 = match go_parse_uint(&text) {
            Ok(v) => v,
            Err(e) => return Err(format!("converting mantissa string to uint64: {e}")),
        };
        let value = if negative {
            if magnitude > 1u64 << 63 {
                return Err("value out of range".into());
            }
            (magnitude as i64).wrapping_neg()
        } else {
            i64::try_from(magnitude).map_err(|_| "value out of range".to_string())?
        };
        Ok(Decimal { value, scale })
    }

    /// Upstream `Decimal.String()`: how `GET /schema` spells the number.
    pub fn to_text(self) -> String {
        let neg = self.value < 0;
        let digits = self.value.unsigned_abs().to_string();
        let body = if self.scale == 0 {
            digits
        } else if self.scale < 0 {
            format!("{digits}{}", "0".repeat(self.scale.unsigned_abs() as usize))
        } else {
            let scale = self.scale as usize;
            if scale < digits.len() {
                format!("{}.{}", &digits[..digits.len() - scale], &digits[digits.len() - scale..])
            } else {
                format!("0.{}{digits}", "0".repeat(scale - digits.len()))
            }
        };
        if neg {
            format!("-{body}")
        } else {
            body
        }
    }

    /// Compare exactly (any scales).
    pub fn cmp_exact(self, other: Decimal) -> std::cmp::Ordering {
        // value × 10^-scale; bring both to the larger scale in i128 when that fits, else
        // compare signs and integer-digit counts first.
        let s = self.scale.max(other.scale);
        let up = |d: Decimal| -> Option<i128> {
            let shift = u32::try_from(s - d.scale).ok()?;
            10i128.checked_pow(shift)?.checked_mul(i128::from(d.value))
        };
        match (up(self), up(other)) {
            (Some(a), Some(b)) => a.cmp(&b),
            // Only when the scales differ by more than 19: the one with the smaller scale
            // has far more integer digits unless it is 0.
            _ => {
                let sign = |d: Decimal| d.value.signum();
                match sign(self).cmp(&sign(other)) {
                    std::cmp::Ordering::Equal => {
                        let bigger_mag = self.scale < other.scale;
                        let ord = if bigger_mag { std::cmp::Ordering::Greater } else { std::cmp::Ordering::Less };
                        if sign(self) < 0 {
                            ord.reverse()
                        } else {
                            ord
                        }
                    }
                    o => o,
                }
            }
        }
    }
}

/// Go's `strconv.ParseUint(s, 10, 64)` and its error texts.
fn go_parse_uint(s: &str) -> Result<u64, String> {
    let quoted = go_quote(s);
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return Err(format!("strconv.ParseUint: parsing {quoted}: invalid syntax"));
    }
    s.parse::<u64>().map_err(|_| format!("strconv.ParseUint: parsing {quoted}: value out of range"))
}

/// Go's `strconv.Quote` for the texts that appear in upstream's messages.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The JSON text of a value (what a Go `UnmarshalJSON` method receives).
fn raw_json(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// A JSON number with exactly this spelling (serde_json keeps it with `arbitrary_precision`).
fn number_text(text: &str) -> Value {
    text.parse::<serde_json::Number>().map(Value::Number).unwrap_or(Value::Null)
}

/// What decoding a posted schema into upstream's types does before anything is created
/// (`handlePostSchema`: `json.Decoder.Decode` into `pilosa.Schema`):
///
/// - every field's `min` and `max` is a `pql.Decimal` whatever the field type, parsed by
///   `ParseDecimal` from the JSON text: a number in exponent form, a string or `null` is
///   refused with upstream's message (the caller adds "decoding request as JSON Pilosa
///   schema: "); accepted ones are re-spelt as upstream prints them (`1.50` → `1.5`);
/// - a timestamp field's `epoch` is not an option upstream decodes: the epoch it shows
///   afterwards comes from the posted `base` (absent: 0) in the field's time unit.
pub fn decode_posted(posted: &mut Value) -> Result<(), String> {
    let Some(indexes) = posted.get_mut("indexes").and_then(Value::as_array_mut) else { return Ok(()) };
    for idx in indexes {
        let Some(fields) = idx.get_mut("fields").and_then(Value::as_array_mut) else { continue };
        for f in fields {
            let Some(o) = f.get_mut("options").and_then(Value::as_object_mut) else { continue };
            for key in ["min", "max"] {
                if let Some(v) = o.get_mut(key) {
                    let raw = raw_json(v);
                    let d = Decimal::parse(&raw).map_err(|e| format!("parsing decimal: {raw}: {e}"))?;
                    *v = number_text(&d.to_text());
                }
            }
            if o.get("type").and_then(Value::as_str) == Some("timestamp") {
                let base = o.get("base").and_then(Value::as_i64).unwrap_or(0);
                let unit = o.get("timeUnit").and_then(Value::as_str).unwrap_or_default();
                o.insert("epoch".into(), Value::String(epoch_text(unit, base)));
            }
        }
    }
    Ok(())
}

/// Upstream `ValToTimestamp(unit, base)` printed as Go prints a `time.Time` in JSON
/// (RFC 3339 with nanoseconds, trailing zeros dropped); an unknown unit gives the Unix epoch.
pub fn epoch_text(unit: &str, base: i64) -> String {
    let (secs, nanos) = match unit {
        "s" => (i128::from(base), 0),
        "ms" => (i128::from(base).div_euclid(1000), i128::from(base).rem_euclid(1000) * 1_000_000),
        "us" | "µs" => (i128::from(base).div_euclid(1_000_000), i128::from(base).rem_euclid(1_000_000) * 1000),
        "ns" => (i128::from(base).div_euclid(1_000_000_000), i128::from(base).rem_euclid(1_000_000_000)),
        _ => (0, 0),
    };
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil(days as i64);
    let mut out = format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}", rem / 3600, rem / 60 % 60, rem % 60);
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// What upstream's `POST /schema` does to field owners: `holder.applySchema` creates every
/// field with an empty owner (`CreateFieldIfNotExistsWithOptions(f.Name, "", ...)`); an index
/// keeps the owner it was posted with.
pub fn clear_field_owners(posted: &mut Value) {
    let Some(indexes) = posted.get_mut("indexes").and_then(Value::as_array_mut) else { return };
    for idx in indexes {
        if let Some(Value::Array(fields)) = idx.get_mut("fields") {
            for f in fields.iter_mut().filter_map(Value::as_object_mut) {
                f.insert("owner".into(), "".into());
            }
        }
    }
}

/// What upstream's `POST /schema` does to field bounds before creating a field
/// (`Index.CreateFieldIfNotExistsWithOptions`, index.go): for int and timestamp fields a
/// `min` or `max` of 0 (or absent) is read as "unset" and replaced by -2^63 or 2^63-1, and a
/// bound beyond those is clamped; decimal fields get the same with `pql.MinMax(scale)`
/// (e.g. `-92233720368547758.08` for scale 2). A backed-up field created with `min: 0`
/// thus comes back from a restore with no lower bound. Bounds are compared exactly as
/// decimals, never as floats. Call after [`decode_posted`]. Returns the `index/field`
/// names changed.
pub fn widen_zero_bounds(posted: &mut Value) -> Vec<String> {
    let mut changed = Vec::new();
    let Some(indexes) = posted.get_mut("indexes").and_then(Value::as_array_mut) else { return changed };
    for idx in indexes {
        let iname = name_of(idx).to_string();
        let Some(fields) = idx.get_mut("fields").and_then(Value::as_array_mut) else { continue };
        for f in fields {
            let fname = name_of(f).to_string();
            let Some(o) = f.get_mut("options").and_then(Value::as_object_mut) else { continue };
            let scale = match o.get("type").and_then(Value::as_str) {
                Some("int" | "timestamp") => 0,
                Some("decimal") => o.get("scale").and_then(Value::as_i64).unwrap_or(0),
                _ => continue,
            };
            let (lo, hi) = Decimal::min_max(scale);
            for (key, widest) in [("min", lo), ("max", hi)] {
                let given = match o.get(key) {
                    None | Some(Value::Null) => None,
                    Some(v) => Decimal::parse(&raw_json(v)).ok(),
                };
                let replace = match given {
                    None => true,
                    Some(d) if d.value == 0 => true,
                    Some(d) if key == "min" => d.cmp_exact(widest).is_lt(),
                    Some(d) => d.cmp_exact(widest).is_gt(),
                };
                if replace {
                    o.insert(key.into(), number_text(&widest.to_text()));
                    changed.push(format!("{iname}/{fname}"));
                }
            }
        }
    }
    changed.dedup();
    changed
}

/// Why a `POST /index/{i}/field/{f}` body was refused, by how upstream answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldRequestError {
    /// Decoding failed: the JSON success response with status 500 (the error has no type).
    Decode(String),
    /// `fieldOptions.validate` refused an option: the JSON success response with 400.
    Invalid(String),
    /// An invalid field type: the JSON success response with 500.
    BadType(String),
    /// A functional option refused the values ("applying option: ..."): plain text 400.
    Apply(String),
}

/// The options keys upstream's `fieldOptions` decodes (`DisallowUnknownFields`).
const FIELD_REQUEST_KEYS: &[&str] = &[
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
    "ttl",
    "base",
];

/// The field options `POST /index/{index}/field/{field}` creates from a request body's
/// `options` (upstream `handlePostField`: `fieldOptions.validate`, then
/// `fieldOptionsToFunctionalOpts` and the `OptFieldType*` options of field.go), in the
/// encoding `GET /schema` shows. Unlike `POST /schema`, an int bound of 0 is kept: only an
/// absent bound gets the widest value. A timestamp field's `min`/`max` are not taken from
/// the request: they follow from the epoch and time unit.
pub fn field_from_request(body: &Value) -> Result<Value, FieldRequestError> {
    use FieldRequestError::*;
    let empty = Map::new();
    let top = match body {
        Value::Null => &empty,
        Value::Object(m) => m,
        _ => return Err(Decode("json: cannot unmarshal into Go value of type pilosa.postFieldRequest".into())),
    };
    if let Some(k) = top.keys().find(|k| k.as_str() != "options") {
        return Err(Decode(format!("json: unknown field {}", go_quote(k))));
    }
    let o = match top.get("options") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(m)) => m,
        Some(_) => {
            return Err(Decode(
                "json: cannot unmarshal into Go struct field postFieldRequest.options of type pilosa.fieldOptions"
                    .into(),
            ))
        }
    };
    if let Some(k) = o.keys().find(|k| !FIELD_REQUEST_KEYS.contains(&k.as_str())) {
        return Err(Decode(format!("json: unknown field {}", go_quote(k))));
    }
    let present = |k: &str| o.get(k).is_some_and(|v| !v.is_null());
    let dec = |k: &str| -> Result<Option<Decimal>, FieldRequestError> {
        match o.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => {
                let raw = raw_json(v);
                Decimal::parse(&raw).map(Some).map_err(|e| Decode(format!("parsing decimal: {raw}: {e}")))
            }
        }
    };
    let (min, max) = (dec("min")?, dec("max")?);
    let ty = o.get("type").and_then(Value::as_str).unwrap_or_default();
    let ty = if ty.is_empty() { "set" } else { ty };
    let not_for = |what: &str, t: &str| Invalid(format!("{what} does not apply to field type {t}"));
    let cache = |o: &Map<String, Value>| {
        (
            o.get("cacheType").and_then(Value::as_str).unwrap_or("ranked").to_string(),
            o.get("cacheSize").and_then(Value::as_u64).unwrap_or(50000),
        )
    };
    let keys = o.get("keys").and_then(Value::as_bool).unwrap_or(false);
    let foreign = o.get("foreignIndex").and_then(Value::as_str).unwrap_or_default().to_string();
    let options = match ty {
        "set" | "mutex" => {
            for k in ["min", "max", "timeQuantum", "ttl"] {
                if present(k) {
                    return Err(not_for(k, ty));
                }
            }
            let (ct, cs) = cache(o);
            json!({"type": ty, "cacheType": ct, "cacheSize": cs, "keys": keys})
        }
        "int" => {
            for k in ["cacheType", "cacheSize", "timeQuantum", "ttl"] {
                if present(k) {
                    return Err(not_for(k, "int"));
                }
            }
            let (lo, hi) = Decimal::min_max(0);
            let min = min.map_or(lo, |m| if m.cmp_exact(lo).is_lt() { lo } else { m }).to_int64(0);
            let max = max.map_or(hi, |m| if m.cmp_exact(hi).is_gt() { hi } else { m }).to_int64(0);
            if min > max {
                return Err(Apply("applying option: int field min cannot be greater than max".into()));
            }
            json!({"type": "int", "base": bsi_base(min, max), "bitDepth": 0, "min": min, "max": max,
                   "keys": keys, "foreignIndex": foreign})
        }
        "decimal" => {
            let Some(scale) = o.get("scale").filter(|v| !v.is_null()) else {
                return Err(Invalid("decimal field requires a scale argument".into()));
            };
            for k in ["cacheType", "cacheSize", "timeQuantum", "ttl"] {
                if present(k) {
                    return Err(not_for(k, "int"));
                }
            }
            if present("foreignIndex") {
                return Err(Invalid("decimal field cannot be a foreign key".into()));
            }
            let scale = scale.as_i64().unwrap_or(0);
            if !(0..=19).contains(&scale) {
                return Err(Apply(format!(
                    "applying option: scale values outside the range [0,19] are not supported: {scale}"
                )));
            }
            let (lo, hi) = Decimal::min_max(scale);
            let min = min.map_or(lo, |m| if m.cmp_exact(lo).is_lt() { lo } else { m });
            let max = max.map_or(hi, |m| if m.cmp_exact(hi).is_gt() { hi } else { m });
            if min.cmp_exact(max).is_gt() {
                return Err(Apply(format!(
                    "applying option: decimal field min cannot be greater than max, got {}, {}",
                    min.to_text(),
                    max.to_text()
                )));
            }
            json!({"type": "decimal", "base": bsi_base(min.to_int64(scale), max.to_int64(scale)), "scale": scale,
                   "bitDepth": 0, "min": number_text(&min.to_text()), "max": number_text(&max.to_text()), "keys": keys})
        }
        "timestamp" => {
            let Some(unit) = o.get("timeUnit").and_then(Value::as_str) else {
                return Err(Invalid("timestamp field requires a timeUnit argument".into()));
            };
            if !matches!(unit, "s" | "ms" | "us" | "µs" | "ns") {
                return Err(Invalid("invalid timeUnit argument".into()));
            }
            for k in ["cacheType", "cacheSize", "timeQuantum", "ttl"] {
                if present(k) {
                    return Err(not_for(k, "timestamp"));
                }
            }
            if present("foreignIndex") {
                return Err(Invalid("timestamp field cannot be a foreign key".into()));
            }
            let (secs, nanos) = match o.get("epoch").and_then(Value::as_str) {
                None => (0, 0),
                Some(t) => parse_rfc3339(t).ok_or_else(|| {
                    Decode(format!("parsing time {} as \"2006-01-02T15:04:05Z07:00\": cannot parse", go_quote(t)))
                })?,
            };
            let (base, min, max) = timestamp_bounds(unit, secs, nanos)?;
            json!({"type": "timestamp", "epoch": epoch_text(unit, base), "bitDepth": 0, "min": min, "max": max,
                   "timeUnit": unit})
        }
        "time" => {
            for k in ["cacheType", "cacheSize", "min", "max"] {
                if present(k) {
                    return Err(not_for(k, "time"));
                }
            }
            let Some(q) = o.get("timeQuantum").and_then(Value::as_str) else {
                return Err(Invalid("timeQuantum is required for field type time".into()));
            };
            if !matches!(q, "Y" | "YM" | "YMD" | "YMDH" | "M" | "MD" | "MDH" | "D" | "DH" | "H" | "") {
                return Err(Apply("applying option: invalid time quantum".into()));
            }
            let ttl_text = o.get("ttl").and_then(Value::as_str).unwrap_or("0");
            let ttl = go_parse_duration(ttl_text)
                .ok_or_else(|| Apply(format!("applying option: cannot parse ttl: {ttl_text}")))?;
            if ttl < 0 {
                return Err(Apply(format!("applying option: ttl can't be negative: {ttl_text}")));
            }
            let nsv = o.get("noStandardView").and_then(Value::as_bool).unwrap_or(false);
            json!({"type": "time", "timeQuantum": q, "keys": keys, "noStandardView": nsv, "ttl": ttl})
        }
        "bool" => {
            for k in ["cacheType", "cacheSize", "min", "max", "timeQuantum", "keys", "ttl"] {
                if present(k) {
                    return Err(not_for(k, "bool"));
                }
            }
            if present("foreignIndex") {
                return Err(Invalid("bool field cannot be a foreign key".into()));
            }
            json!({"type": "bool"})
        }
        other => return Err(BadType(format!("invalid field type: {other}"))),
    };
    Ok(options)
}

/// Upstream `bsiBase`: the base of an int or decimal field.
fn bsi_base(min: i64, max: i64) -> i64 {
    if min > 0 {
        min
    } else if max < 0 {
        max
    } else {
        0
    }
}

impl Decimal {
    /// Upstream `Decimal.ToInt64(scale)`: the value at that scale, truncated.
    pub fn to_int64(self, scale: i64) -> i64 {
        let shift = scale - self.scale;
        let v = i128::from(self.value);
        let r = if shift >= 0 {
            10i128.checked_pow(shift as u32).and_then(|p| v.checked_mul(p)).unwrap_or(if v < 0 {
                i128::MIN
            } else {
                i128::MAX
            })
        } else {
            10i128.checked_pow((-shift) as u32).map_or(0, |p| v / p)
        };
        r.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }
}

/// Upstream `OptFieldTypeTimestamp`: the base and the bounds of a timestamp field with this
/// epoch (seconds and nanoseconds since 1970) and unit.
fn timestamp_bounds(unit: &str, secs: i64, nanos: i64) -> Result<(i64, i64, i64), FieldRequestError> {
    // MinTimestamp and MaxTimestamp (0001-01-01T00:00:01Z, 9999-12-31T23:59:59Z), and the
    // nanosecond range (±2^32 s).
    const MIN_S: i64 = -62_135_596_799;
    const MAX_S: i64 = 253_402_300_799;
    const NANO_S: i64 = 1 << 32;
    let in_unit = |s: i64, n: i64, per_s: i64| s * per_s + n / (1_000_000_000 / per_s);
    let out_of_range = |lo: i64, hi: i64| secs > hi || secs < lo || (secs == hi && nanos > 0);
    let epoch = epoch_text("ns", secs.saturating_mul(1_000_000_000).saturating_add(nanos));
    let too_far =
        || FieldRequestError::Apply(format!("applying option: custom epoch too far from Unix epoch: {epoch}"));
    let per_s = match unit {
        "s" => 1,
        "ms" => 1000,
        "us" | "µs" => 1_000_000,
        _ => 1_000_000_000,
    };
    if per_s == 1_000_000_000 {
        if out_of_range(-NANO_S, NANO_S) {
            return Err(too_far());
        }
        let base = in_unit(secs, nanos, per_s);
        let (lo, hi) = (-NANO_S * per_s, NANO_S * per_s);
        return Ok(if base > 0 { (base, lo, hi - base) } else { (base, lo - base, hi) });
    }
    if out_of_range(MIN_S, MAX_S) {
        return Err(too_far());
    }
    let base = in_unit(secs, nanos, per_s);
    Ok((base, MIN_S * per_s - base, MAX_S * per_s - base))
}

/// Seconds and nanoseconds since 1970 of an RFC 3339 time (`2006-01-02T15:04:05[.frac](Z|±hh:mm)`).
pub fn parse_rfc3339(t: &str) -> Option<(i64, i64)> {
    let b = t.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = t.get(r)?;
        if s.bytes().all(|c| c.is_ascii_digit()) {
            s.parse().ok()
        } else {
            None
        }
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || (b[10] != b'T' && b[10] != b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (y, mo, d, h, mi, s) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 59 {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0i64;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let frac = t.get(start..i)?;
        if frac.is_empty() || frac.len() > 9 {
            return None;
        }
        nanos = format!("{frac:0<9}").parse().ok()?;
    }
    let offset = match t.get(i..)? {
        "Z" | "z" => 0,
        z if z.len() == 6 && (z.starts_with('+') || z.starts_with('-')) && z.as_bytes()[3] == b':' => {
            let v = num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60;
            if z.starts_with('-') {
                -v
            } else {
                v
            }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo as u32, d as u32);
    Some((days * 86_400 + h * 3600 + mi * 60 + s - offset, nanos))
}

/// Go's `time.ParseDuration`, in nanoseconds (`None` when Go refuses the text). Integer
/// arithmetic only.
pub fn go_parse_duration(s: &str) -> Option<i64> {
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let n = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (int_part, frac_part) = rest[..n].split_once('.').unwrap_or((&rest[..n], ""));
        if int_part.is_empty() && frac_part.is_empty() {
            return None;
        }
        rest = &rest[n..];
        let u = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let per: i128 = match &rest[..u] {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        rest = &rest[u..];
        let whole: i128 = if int_part.is_empty() { 0 } else { int_part.parse().ok()? };
        let frac_digits = &frac_part[..frac_part.len().min(18)];
        let frac: i128 = if frac_digits.is_empty() { 0 } else { frac_digits.parse().ok()? };
        let scale = 10i128.pow(frac_digits.len() as u32);
        total = total.checked_add(whole.checked_mul(per)?.checked_add(frac * per / scale)?)?;
        if total > i128::from(i64::MAX) {
            return None;
        }
    }
    let v = total as i64;
    Some(if neg { -v } else { v })
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

/// Day number since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Civil date of a day number since 1970-01-01 (Howard Hinnant's algorithm).
pub(crate) fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_parse_and_print_like_pql_decimal() {
        let d = |s: &str| Decimal::parse(s).map(Decimal::to_text);
        assert_eq!(d("-92233720368547758.08").unwrap(), "-92233720368547758.08");
        assert_eq!(d("1.50").unwrap(), "1.5");
        assert_eq!(d("100.0").unwrap(), "100");
        assert_eq!(d("-0").unwrap(), "0");
        assert_eq!(d("0.005").unwrap(), "0.005");
        assert_eq!(d("-1000").unwrap(), "-1000");
        assert_eq!(Decimal::min_max(2).1.to_text(), "92233720368547758.07");
        assert_eq!(Decimal::min_max(0).0.to_text(), "-9223372036854775808");
        // Too many digits: precision after the point is dropped, as upstream does.
        assert_eq!(d("1.23456789012345678901").unwrap(), "1.234567890123456789");
        assert_eq!(d("").unwrap_err(), "decimal string is empty");
        assert_eq!(d("-").unwrap_err(), "decimal string is empty");
        assert_eq!(d("1.2.3").unwrap_err(), "invalid decimal string: 1.2.3");
        assert_eq!(d("99999999999999999999").unwrap_err(), "value out of range: 99999999999999999999");
        assert_eq!(
            d("1e5").unwrap_err(),
            "converting mantissa string to uint64: strconv.ParseUint: parsing \"1e5\": invalid syntax"
        );
        assert_eq!(
            d("\"1\"").unwrap_err(),
            "converting mantissa string to uint64: strconv.ParseUint: parsing \"\\\"1\\\"\": invalid syntax"
        );
        let (a, b) = (Decimal::parse("-0.5").unwrap(), Decimal::parse("-1").unwrap());
        assert!(a.cmp_exact(b).is_gt() && b.cmp_exact(a).is_lt());
        assert_eq!(Decimal::parse("1.99").unwrap().to_int64(0), 1);
        assert_eq!(epoch_text("ms", 1_500), "1970-01-01T00:00:01.5Z");
        assert_eq!(parse_rfc3339("2000-01-01T00:00:00Z"), Some((946_684_800, 0)));
        assert_eq!(go_parse_duration("1h30m"), Some(5_400_000_000_000));
        assert_eq!(go_parse_duration("1.5s"), Some(1_500_000_000));
        assert_eq!(go_parse_duration("5"), None);
    }

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

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(19_783), (2024, 3, 1));
        assert_eq!(civil(19_783 + 91), (2024, 5, 31));
        assert_eq!(days_from_civil(2024, 3, 1), 19_783);
    }
}
