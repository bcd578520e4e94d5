//! The census of a backup or a cluster: what its data answers, figure by figure (contract
//! §2 `--census`, §3 `diff --census`).
//!
//! - per index: the record count (`Count(All())`, where the index tracks existence) and the
//!   number of keys (keyed indexes, from the key partitions);
//! - per set, mutex, bool and time field and per view (`standard`, and each time view such as
//!   `standard_2023`, `standard_202301`): every row and the number of bits it sets;
//! - per int, decimal and timestamp field: the number of values, their sum, min and max.
//!
//! An archive's census is decoded from its files ([`decode`] for shard RBF files, the key
//! stores through [`crate::format::translate`]) and assembled here ([`Census::assemble`]); a
//! live cluster's census comes from its query engine ([`live`]), so comparing the two checks
//! a restore by what it answers and not by fbkit's own decoder.
//!
//! Numbers are kept exact: values are integers in the field's own scale ([`Unit`]): an int's
//! value, a decimal's value × 10^scale, a timestamp's count of its time unit since the Unix
//! epoch (what upstream stores plus the field's base, which for a timestamp is its epoch).

pub mod assemble;
pub mod decode;
pub mod live;

pub use assemble::{Assembler, EntryCensus};

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::schema::Schema;

/// The name of the view every non-time field and most time fields keep their rows in.
pub const STANDARD_VIEW: &str = "standard";

/// A row of a field: its ID, or its key where the field translates keys.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Row {
    /// Row ID (bool fields: 0 is false, 1 is true).
    Id(u64),
    /// Row key.
    Key(String),
}

impl fmt::Display for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Row::Id(id) => write!(f, "{id}"),
            Row::Key(k) => write!(f, "{k:?}"),
        }
    }
}

impl Serialize for Row {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Row::Id(id) => s.serialize_u64(*id),
            Row::Key(k) => s.serialize_str(k),
        }
    }
}

/// How a value field's integers read (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Unit {
    /// An int field.
    Int,
    /// A decimal field: the integer is the value × 10^scale.
    Decimal {
        /// Digits after the point.
        scale: u32,
    },
    /// A timestamp field: the integer counts `unit` since the Unix epoch.
    Timestamp {
        /// `s`, `ms`, `us` or `ns` as nanoseconds per unit.
        nanos_per_unit: u64,
    },
}

impl Unit {
    /// The unit of a value field, from its schema options; `None` for other field types.
    pub fn of_field(field_type: &str, options: &Map<String, Value>) -> Result<Option<Unit>> {
        Ok(match field_type {
            "int" => Some(Unit::Int),
            "decimal" => {
                let scale = options.get("scale").and_then(Value::as_u64).unwrap_or(0);
                if scale > 19 {
                    return Err(Error::invalid(format!("decimal scale {scale} is out of range")));
                }
                Some(Unit::Decimal { scale: scale as u32 })
            }
            "timestamp" => {
                let unit = options.get("timeUnit").and_then(Value::as_str).unwrap_or("s");
                let nanos_per_unit = match unit {
                    "s" => 1_000_000_000,
                    "ms" => 1_000_000,
                    "us" | "µs" => 1_000,
                    "ns" => 1,
                    other => return Err(Error::invalid(format!("unknown timestamp unit {other:?}"))),
                };
                Some(Unit::Timestamp { nanos_per_unit })
            }
            _ => None,
        })
    }

    /// A value in this unit as a person reads it: an integer, a decimal with exactly `scale`
    /// digits after the point, or an RFC 3339 UTC time.
    pub fn render(&self, v: i128) -> String {
        match *self {
            Unit::Int => v.to_string(),
            Unit::Decimal { scale } => format_scaled(v, scale),
            Unit::Timestamp { nanos_per_unit } => format_timestamp(v, nanos_per_unit),
        }
    }

    /// A sum in this unit: as a value, except a timestamp sum, which is a count of units.
    pub fn render_sum(&self, v: i128) -> String {
        match *self {
            Unit::Timestamp { nanos_per_unit } => format!("{v} {}", unit_name(nanos_per_unit)),
            _ => self.render(v),
        }
    }
}

fn unit_name(nanos_per_unit: u64) -> &'static str {
    match nanos_per_unit {
        1_000_000_000 => "s",
        1_000_000 => "ms",
        1_000 => "us",
        _ => "ns",
    }
}

/// `v / 10^scale` written out exactly, with `scale` digits after the point.
pub fn format_scaled(v: i128, scale: u32) -> String {
    if scale == 0 {
        return v.to_string();
    }
    let digits = v.unsigned_abs().to_string();
    let scale = scale as usize;
    let padded =
        if digits.len() <= scale { format!("{}{digits}", "0".repeat(scale + 1 - digits.len())) } else { digits };
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{}{int}.{frac}", if v < 0 { "-" } else { "" })
}

/// A decimal number's text (`-12.5`, `3`, `0.125`) as an integer × 10^scale; `None` when it
/// has more digits after the point than `scale` (other than trailing zeros), an exponent, or
/// does not fit.
pub fn parse_scaled(text: &str, scale: u32) -> Option<i128> {
    let (neg, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac = frac.trim_end_matches('0');
    if frac.len() > scale as usize {
        return None;
    }
    let mut v: i128 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        v = v.checked_mul(10)?.checked_add(i128::from(b - b'0'))?;
    }
    v = v.checked_mul(10i128.checked_pow(scale - frac.len() as u32)?)?;
    Some(if neg { -v } else { v })
}

/// Days since 1970-01-01 to a civil date (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// A count of `nanos_per_unit` since the Unix epoch as RFC 3339 UTC, with as many fraction
/// digits as the unit has (none for seconds).
pub fn format_timestamp(v: i128, nanos_per_unit: u64) -> String {
    let per_sec = i128::from(1_000_000_000 / nanos_per_unit.max(1));
    let secs = v.div_euclid(per_sec);
    let frac = v.rem_euclid(per_sec);
    let Ok(secs) = i64::try_from(secs) else { return format!("{v} {} since 1970", unit_name(nanos_per_unit)) };
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    let width = match nanos_per_unit {
        1_000_000_000 => 0,
        1_000_000 => 3,
        1_000 => 6,
        _ => 9,
    };
    let frac = if width == 0 { String::new() } else { format!(".{frac:0width$}") };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}{frac}Z", s / 3600, s / 60 % 60, s % 60)
}

/// The census of one index.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct IndexCensus {
    /// Records that exist (`Count(All())`); `None` where the index does not track existence.
    pub records: Option<u64>,
    /// Keys in the index's key partitions; `None` for an unkeyed index, or where the source
    /// cannot tell (a live cluster answers no query for it).
    pub keys: Option<u64>,
    /// Why `keys` is `None` on a keyed index.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys_unknown: Option<String>,
    /// Its fields by name.
    pub fields: BTreeMap<String, FieldCensus>,
}

/// The census of one field.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum FieldCensus {
    /// Set, mutex, bool and time fields.
    Rows(RowsCensus),
    /// Int, decimal and timestamp fields.
    Values(ValuesCensus),
}

/// Rows per view, and each row's bit count. Rows with no bits are not listed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RowsCensus {
    /// `set`, `mutex`, `bool` or `time`.
    #[serde(rename = "type")]
    pub field_type: String,
    /// View name → row → bits.
    pub views: BTreeMap<String, BTreeMap<Row, u64>>,
}

/// The values of an int, decimal or timestamp field.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValuesCensus {
    /// `int`, `decimal` or `timestamp`.
    #[serde(rename = "type")]
    pub field_type: String,
    /// How the integers below read.
    pub unit: Unit,
    /// Records with a value.
    pub count: u64,
    /// Their sum (see [`Unit`]).
    #[serde(serialize_with = "ser_i128")]
    pub sum: i128,
    /// The smallest value; `None` when there are none.
    #[serde(serialize_with = "ser_opt_i128")]
    pub min: Option<i128>,
    /// The largest value; `None` when there are none.
    #[serde(serialize_with = "ser_opt_i128")]
    pub max: Option<i128>,
    /// Why `sum` is not the exact sum, where the source cannot give it (a cluster adds in
    /// wrapping 64-bit integers); such a sum is not compared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sum_unknown: Option<String>,
}

fn ser_i128<S: serde::Serializer>(v: &i128, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&v.to_string())
}

fn ser_opt_i128<S: serde::Serializer>(v: &Option<i128>, s: S) -> std::result::Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.serialize_str(&v.to_string()),
        None => s.serialize_none(),
    }
}

impl ValuesCensus {
    /// No values yet, for a field of this type and unit.
    pub fn empty(field_type: &str, unit: Unit) -> ValuesCensus {
        ValuesCensus {
            field_type: field_type.to_string(),
            unit,
            count: 0,
            sum: 0,
            min: None,
            max: None,
            sum_unknown: None,
        }
    }
}

/// The census of a backup or a cluster: indexes by name.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Census {
    /// Indexes by name.
    pub indexes: BTreeMap<String, IndexCensus>,
}

/// One field of the schema as the census needs it.
#[derive(Debug, Clone)]
pub struct FieldPlan {
    /// Field name.
    pub name: String,
    /// Its type.
    pub field_type: String,
    /// Rows are keyed.
    pub keys: bool,
    /// For value fields: the unit and the base upstream subtracts before storing.
    pub values: Option<(Unit, i128)>,
}

/// One index of the schema as the census needs it.
#[derive(Debug, Clone)]
pub struct IndexPlan {
    /// Index name.
    pub name: String,
    /// Columns are keyed.
    pub keys: bool,
    /// The index keeps the existence field (`Count(All())` answers).
    pub track_existence: bool,
    /// Its fields, in schema order.
    pub fields: Vec<FieldPlan>,
}

/// What the schema says a census must hold: every index and field, typed.
pub fn plan(schema: &Schema) -> Result<Vec<IndexPlan>> {
    let raw_indexes = schema.raw().get("indexes").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut out = Vec::new();
    for info in &schema.indexes {
        let raw = raw_indexes.iter().find(|i| i.get("name").and_then(Value::as_str) == Some(info.name.as_str()));
        let opts = raw.and_then(|i| i.get("options")).and_then(Value::as_object);
        let track_existence = opts.and_then(|o| o.get("trackExistence")).and_then(Value::as_bool).unwrap_or(false);
        if let Some(w) = raw.and_then(|i| i.get("shardWidth")).and_then(Value::as_u64) {
            if w != decode::SHARD_WIDTH {
                return Err(Error::invalid(format!(
                    "index {}: shard width {w} is not FeatureBase's {}; its shards cannot be counted",
                    info.name,
                    decode::SHARD_WIDTH
                )));
            }
        }
        let raw_fields = raw.and_then(|i| i.get("fields")).and_then(Value::as_array);
        let mut fields = Vec::new();
        for f in &info.fields {
            let fopts = raw_fields
                .and_then(|l| l.iter().find(|x| x.get("name").and_then(Value::as_str) == Some(f.name.as_str())))
                .and_then(|x| x.get("options"))
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let unit = Unit::of_field(&f.field_type, &fopts)
                .map_err(|e| e.context(format!("index {} field {}", info.name, f.name)))?;
            let values = match unit {
                Some(u) => Some((
                    u,
                    base_of(u, &fopts).map_err(|e| e.context(format!("index {} field {}", info.name, f.name)))?,
                )),
                None => None,
            };
            fields.push(FieldPlan { name: f.name.clone(), field_type: f.field_type.clone(), keys: f.keys, values });
        }
        out.push(IndexPlan { name: info.name.clone(), keys: info.keys, track_existence, fields });
    }
    Ok(out)
}

/// What upstream subtracts before storing a value: the `base` option of int and decimal
/// fields (missing means 0); for a timestamp, its `epoch` in the field's unit.
fn base_of(unit: Unit, opts: &Map<String, Value>) -> Result<i128> {
    if let Unit::Timestamp { nanos_per_unit } = unit {
        return match opts.get("epoch") {
            None | Some(Value::Null) => Ok(0),
            Some(Value::String(t)) => parse_timestamp(t, nanos_per_unit)
                .ok_or_else(|| Error::invalid(format!("epoch {t:?} is not an RFC 3339 time in the field's unit"))),
            Some(other) => Err(Error::invalid(format!("epoch {other} is not an RFC 3339 time"))),
        };
    }
    match opts.get("base") {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Number(n)) => {
            n.to_string().parse::<i128>().map_err(|_| Error::invalid(format!("base {n} is not an integer")))
        }
        Some(other) => Err(Error::invalid(format!("base {other} is not an integer"))),
    }
}

/// Days from 1970-01-01 to a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// An RFC 3339 time (`2023-01-05T00:00:00Z`, `…T01:00:00.5+01:00`, as Go writes them) as a
/// count of `nanos_per_unit` since the Unix epoch; `None` if malformed or if it falls
/// between two units.
pub fn parse_timestamp(text: &str, nanos_per_unit: u64) -> Option<i128> {
    let b = text.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = text.get(r)?;
        s.bytes().all(|c| c.is_ascii_digit()).then(|| s.parse().ok())?
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)? as u32, num(8..10)? as u32);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut at = 19;
    let mut nanos: i128 = 0;
    if b.get(at) == Some(&b'.') {
        let start = at + 1;
        at = start;
        while at < b.len() && b[at].is_ascii_digit() {
            at += 1;
        }
        let digits = &text[start..at];
        if digits.is_empty() || digits.len() > 9 {
            return None;
        }
        nanos = digits.parse::<i128>().ok()? * 10i128.pow(9 - digits.len() as u32);
    }
    let offset: i64 = match b.get(at) {
        Some(b'Z' | b'z') if at + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) if at + 6 == b.len() && b[at + 3] == b':' => {
            let o = num(at + 1..at + 3)? * 3600 + num(at + 4..at + 6)? * 60;
            if sign == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset;
    let total = i128::from(secs) * 1_000_000_000 + nanos;
    let per = i128::from(nanos_per_unit.max(1));
    (total % per == 0).then_some(total / per)
}

/// One figure on which two censuses disagree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// Index name.
    pub index: String,
    /// Field name, where the figure is a field's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// View, for row figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub view: Option<String>,
    /// Row, for a row's bit count.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row: Option<String>,
    /// Which figure: `records`, `keys`, `bits`, `count`, `sum`, `min`, `max`, `type`, `index`, `field`.
    pub figure: String,
    /// The first side's figure, as a person reads it (`absent` where it has none).
    pub a: String,
    /// The second side's figure.
    pub b: String,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "index {}", self.index)?;
        if let Some(field) = &self.field {
            write!(f, " field {field}")?;
        }
        if let Some(view) = &self.view {
            write!(f, " view {view}")?;
        }
        if let Some(row) = &self.row {
            write!(f, " row {row}")?;
        }
        write!(f, ": {} {} != {}", self.figure, self.a, self.b)
    }
}

/// The outcome of comparing two censuses.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CensusDiff {
    /// Every figure that differs, in index, field, view, row order.
    pub differences: Vec<Difference>,
    /// Figures that could not be compared, and why.
    pub not_compared: Vec<String>,
    /// Figures compared (each row's bits in each view counts one).
    pub compared: usize,
}

/// Compare two censuses figure by figure.
pub fn compare(a: &Census, b: &Census) -> CensusDiff {
    let mut out = CensusDiff::default();
    let diff =
        |index: &str, field: Option<&str>, view: Option<&str>, row: Option<String>, figure: &str, x, y| Difference {
            index: index.to_string(),
            field: field.map(str::to_string),
            view: view.map(str::to_string),
            row,
            figure: figure.to_string(),
            a: x,
            b: y,
        };
    let names: std::collections::BTreeSet<&String> = a.indexes.keys().chain(b.indexes.keys()).collect();
    for name in names {
        let (ia, ib) = match (a.indexes.get(name), b.indexes.get(name)) {
            (Some(x), Some(y)) => (x, y),
            (x, _) => {
                let (pa, pb) = if x.is_some() { ("present", "absent") } else { ("absent", "present") };
                out.differences.push(diff(name, None, None, None, "index", pa.into(), pb.into()));
                continue;
            }
        };
        out.compared += usize::from(ia.records.is_some() && ib.records.is_some());
        out.compared += usize::from(ia.keys.is_some() && ib.keys.is_some());
        match (ia.records, ib.records) {
            (Some(x), Some(y)) if x != y => {
                out.differences.push(diff(name, None, None, None, "records", x.to_string(), y.to_string()))
            }
            (Some(_), None) | (None, Some(_)) => out.not_compared.push(format!(
                "index {name}: records: only one side tracks existence (Count(All()) answers only there)"
            )),
            _ => {}
        }
        match (ia.keys, ib.keys) {
            (Some(x), Some(y)) if x != y => {
                out.differences.push(diff(name, None, None, None, "keys", x.to_string(), y.to_string()))
            }
            (Some(_), None) | (None, Some(_)) => {
                let why = ia.keys_unknown.as_deref().or(ib.keys_unknown.as_deref()).unwrap_or("one side is not keyed");
                out.not_compared.push(format!("index {name}: keys: {why}"));
            }
            _ => {}
        }
        let fields: std::collections::BTreeSet<&String> = ia.fields.keys().chain(ib.fields.keys()).collect();
        for fname in fields {
            let f = Some(fname.as_str());
            let (fa, fb) = match (ia.fields.get(fname), ib.fields.get(fname)) {
                (Some(x), Some(y)) => (x, y),
                (x, _) => {
                    let (pa, pb) = if x.is_some() { ("present", "absent") } else { ("absent", "present") };
                    out.differences.push(diff(name, f, None, None, "field", pa.into(), pb.into()));
                    continue;
                }
            };
            match (fa, fb) {
                (FieldCensus::Rows(ra), FieldCensus::Rows(rb)) => {
                    let views: std::collections::BTreeSet<&String> = ra.views.keys().chain(rb.views.keys()).collect();
                    let empty = BTreeMap::new();
                    for view in views {
                        let va = ra.views.get(view).unwrap_or(&empty);
                        let vb = rb.views.get(view).unwrap_or(&empty);
                        let rows: std::collections::BTreeSet<&Row> = va.keys().chain(vb.keys()).collect();
                        out.compared += rows.len();
                        for row in rows {
                            let (x, y) = (va.get(row).copied().unwrap_or(0), vb.get(row).copied().unwrap_or(0));
                            if x != y {
                                out.differences.push(diff(
                                    name,
                                    f,
                                    Some(view),
                                    Some(row.to_string()),
                                    "bits",
                                    x.to_string(),
                                    y.to_string(),
                                ));
                            }
                        }
                    }
                }
                (FieldCensus::Values(xa), FieldCensus::Values(xb)) => {
                    if xa.unit != xb.unit {
                        out.differences.push(diff(
                            name,
                            f,
                            None,
                            None,
                            "unit",
                            format!("{:?}", xa.unit),
                            format!("{:?}", xb.unit),
                        ));
                        continue;
                    }
                    let u = xa.unit;
                    out.compared += 4;
                    if xa.count != xb.count {
                        out.differences.push(diff(
                            name,
                            f,
                            None,
                            None,
                            "count",
                            xa.count.to_string(),
                            xb.count.to_string(),
                        ));
                    }
                    if let Some(why) = xa.sum_unknown.as_ref().or(xb.sum_unknown.as_ref()) {
                        out.compared -= 1;
                        out.not_compared.push(format!("index {name} field {fname}: sum: {why}"));
                    } else if xa.sum != xb.sum {
                        out.differences.push(diff(
                            name,
                            f,
                            None,
                            None,
                            "sum",
                            u.render_sum(xa.sum),
                            u.render_sum(xb.sum),
                        ));
                    }
                    let show = |v: Option<i128>| v.map_or_else(|| "none".to_string(), |v| u.render(v));
                    if xa.min != xb.min {
                        out.differences.push(diff(name, f, None, None, "min", show(xa.min), show(xb.min)));
                    }
                    if xa.max != xb.max {
                        out.differences.push(diff(name, f, None, None, "max", show(xa.max), show(xb.max)));
                    }
                }
                _ => out.differences.push(diff(name, f, None, None, "type", type_of(fa), type_of(fb))),
            }
        }
    }
    out
}

fn type_of(f: &FieldCensus) -> String {
    match f {
        FieldCensus::Rows(r) => r.field_type.clone(),
        FieldCensus::Values(v) => v.field_type.clone(),
    }
}

impl Census {
    /// The census as text, for a person: per index its records and keys, per field its rows
    /// (the `top` largest of each view) or its values.
    pub fn render(&self, top: usize) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        for (name, idx) in &self.indexes {
            let records = idx.records.map_or_else(|| "existence not tracked".to_string(), |r| format!("{r} records"));
            let keys = match (idx.keys, &idx.keys_unknown) {
                (Some(k), _) => format!(", {k} keys"),
                (None, Some(why)) => format!(", keys unknown ({why})"),
                (None, None) => String::new(),
            };
            let _ = writeln!(s, "index {name}: {records}{keys}");
            for (fname, field) in &idx.fields {
                match field {
                    FieldCensus::Values(v) => {
                        let u = v.unit;
                        let show = |x: Option<i128>| x.map_or_else(|| "none".to_string(), |x| u.render(x));
                        let sum = match &v.sum_unknown {
                            Some(why) => format!("unknown ({why})"),
                            None => u.render_sum(v.sum),
                        };
                        let _ = writeln!(
                            s,
                            "  {fname} ({}): {} values, sum {}, min {}, max {}",
                            v.field_type,
                            v.count,
                            sum,
                            show(v.min),
                            show(v.max)
                        );
                    }
                    FieldCensus::Rows(r) => {
                        if r.views.is_empty() {
                            let _ = writeln!(s, "  {fname} ({}): no rows", r.field_type);
                        }
                        for (view, rows) in &r.views {
                            let mut sorted: Vec<(&Row, &u64)> = rows.iter().collect();
                            sorted.sort_by(|x, y| y.1.cmp(x.1).then_with(|| x.0.cmp(y.0)));
                            let shown: Vec<String> =
                                sorted.iter().take(top).map(|(r, n)| format!("{r}: {n}")).collect();
                            let more = if sorted.len() > top {
                                format!(", {} more", sorted.len() - top)
                            } else {
                                String::new()
                            };
                            let _ = writeln!(
                                s,
                                "  {fname} ({}) {view}: {} rows; {}{more}",
                                r.field_type,
                                rows.len(),
                                shown.join(", ")
                            );
                        }
                    }
                }
            }
        }
        s
    }
}

/// The census of a scanned backup (scanned with [`crate::verify::ScanMode::census`]): the
/// schema says what must be counted, the entries' figures fill it in. Takes the entries'
/// figures out of the scan. A backup without a schema, or one that stopped early, has no
/// census.
pub fn of_scan(scan: &mut crate::verify::Scan) -> Result<Census> {
    if let Some(e) = &scan.stopped {
        return Err(Error::new(e.kind(), format!("the backup could not be read to its end: {e}")));
    }
    let schema = scan
        .schema_bytes
        .as_deref()
        .ok_or_else(|| Error::invalid("the backup has no schema entry: nothing says what its files hold"))?;
    let plans = plan(&Schema::parse(schema).map_err(|e| e.context("the backup's schema"))?)?;
    let mut asm = Assembler::default();
    for e in &mut scan.entries {
        if let Some(c) = e.census.take() {
            asm.add(&e.path, c);
        }
    }
    asm.finish(&plans)
}

/// The census of a backup that is not a cluster: a stream file (plain, zstd or gzip), an
/// extracted directory, or stdin. A manifest stored apart has no data to count (usage error).
pub fn of_source(source: &crate::compare::Source, label: &str, events: &crate::events::Events) -> Result<Census> {
    use crate::compare::Source;
    use crate::verify::{scan_source, ScanMode};
    let mode = ScanMode { census: true, ..ScanMode::default() };
    let mut scan = match source {
        Source::Cluster(url) => {
            return Err(Error::internal(format!("{url}: a cluster's census comes from its queries")))
        }
        Source::Stdin => scan_source(None, mode, events)?,
        Source::Directory(p) => scan_source(Some(p), mode, events)?,
        Source::File(p) => {
            if crate::compare::starts_like_manifest(&crate::verify::open_input(p)?) {
                return Err(Error::usage(format!(
                    "{label} is a manifest: --census needs the data (an archive, a directory or a cluster URL)"
                )));
            }
            scan_source(Some(p), mode, events)?
        }
    };
    of_scan(&mut scan).map_err(|e| e.context(label))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaled_numbers_round_trip() {
        for (v, scale, text) in [
            (12345i128, 2u32, "123.45"),
            (-5, 2, "-0.05"),
            (7, 0, "7"),
            (-9223372036854775808, 2, "-92233720368547758.08"),
        ] {
            assert_eq!(format_scaled(v, scale), text);
            assert_eq!(parse_scaled(text, scale), Some(v));
        }
        assert_eq!(parse_scaled("1.5", 3), Some(1500));
        assert_eq!(parse_scaled("1.500", 1), Some(15));
        assert_eq!(parse_scaled("1.25", 1), None);
        assert_eq!(parse_scaled("1e5", 2), None);
    }

    #[test]
    fn timestamps_read_as_utc() {
        assert_eq!(format_timestamp(0, 1_000_000_000), "1970-01-01T00:00:00Z");
        assert_eq!(format_timestamp(1_672_876_800, 1_000_000_000), "2023-01-05T00:00:00Z");
        assert_eq!(format_timestamp(-1, 1_000_000), "1969-12-31T23:59:59.999Z");
        assert_eq!(format_timestamp(951_782_400_000_000, 1_000), "2000-02-29T00:00:00.000000Z");
        for (text, per, want) in [
            ("1970-01-01T00:00:00Z", 1_000_000_000, 0i128),
            ("2023-01-05T00:00:00Z", 1_000_000_000, 1_672_876_800),
            ("2023-01-05T01:00:00+01:00", 1_000_000_000, 1_672_876_800),
            ("1969-12-31T23:59:59.999Z", 1_000_000, -1),
            ("2000-02-29T00:00:00.000001Z", 1_000, 951_782_400_000_001),
        ] {
            assert_eq!(parse_timestamp(text, per), Some(want), "{text}");
        }
        assert_eq!(parse_timestamp("2023-01-05T00:00:00.5Z", 1_000_000_000), None);
        assert_eq!(parse_timestamp("2023-01-05 00:00:00Z", 1), None);
    }

    #[test]
    fn compare_names_every_differing_figure() {
        let mut a = Census::default();
        let mut idx = IndexCensus { records: Some(10), ..Default::default() };
        let mut rows = RowsCensus { field_type: "set".into(), ..Default::default() };
        rows.views.entry(STANDARD_VIEW.into()).or_default().insert(Row::Key("paris".into()), 3);
        idx.fields.insert("city".into(), FieldCensus::Rows(rows));
        let v = ValuesCensus { count: 2, sum: 5, min: Some(1), max: Some(4), ..ValuesCensus::empty("int", Unit::Int) };
        idx.fields.insert("age".into(), FieldCensus::Values(v));
        a.indexes.insert("users".into(), idx);
        let mut b = a.clone();
        assert!(compare(&a, &b).differences.is_empty());
        let ib = b.indexes.get_mut("users").unwrap();
        if let Some(FieldCensus::Rows(r)) = ib.fields.get_mut("city") {
            r.views.get_mut(STANDARD_VIEW).unwrap().insert(Row::Key("oslo".into()), 1);
        }
        if let Some(FieldCensus::Values(v)) = ib.fields.get_mut("age") {
            v.max = Some(9);
            v.sum = 10;
        }
        let d = compare(&a, &b).differences;
        let shown: Vec<String> = d.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "index users field age: sum 5 != 10",
                "index users field age: max 4 != 9",
                "index users field city view standard row \"oslo\": bits 0 != 1",
            ]
        );
        // A sum one side cannot give exactly is listed as not compared, not as a difference.
        if let Some(FieldCensus::Values(v)) = b.indexes.get_mut("users").unwrap().fields.get_mut("age") {
            v.sum_unknown = Some("wrapped".into());
        }
        let c = compare(&a, &b);
        assert!(c.differences.iter().all(|d| d.figure != "sum"), "{:?}", c.differences);
        assert_eq!(c.not_compared, ["index users field age: sum: wrapped"]);
    }
}
