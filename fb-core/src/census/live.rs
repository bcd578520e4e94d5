//! A live cluster's census, from its query engine (PQL over HTTP), so a restore is checked
//! by what the restored cluster answers and not by fbkit's own decoder.
//!
//! What is asked, per index (all `POST /index/{index}/query`, many calls per request; the
//! answer's `results` come in the calls' order):
//!
//! - records: `Count(All())`, only where the index tracks existence (elsewhere upstream
//!   refuses `All()`: "index does not support existence tracking");
//! - keys: nothing. No PQL call counts the keys of an index's key partitions (they are read
//!   only through `/internal/translate/*`, which is not the query engine), so a keyed index
//!   has `keys: None` and says why;
//! - rows of set, mutex, bool and time fields: `GroupBy(Rows(f), limit=N)` for the standard
//!   view, paged with `previous=` (upstream's GroupBy has no limit by default, but one answer
//!   per field would grow with its rows). Row IDs come as `rowID` (bool: 0 false, 1 true),
//!   keys as `rowKey` where the field is keyed;
//! - rows of each time view (`standard_YYYY`, `_YYYYMM`, `_YYYYMMDD`, `_YYYYMMDDHH`): the
//!   same with `from`/`to` exactly the view's period. Upstream then reads that one view
//!   and no other: `Field.viewsByTimeRange` clamps the range to the field's coarsest views
//!   and `viewsByTimeRange` (time.go) walks it from the largest unit that fits, and a range
//!   that is exactly one period of a unit of the quantum is that period's view;
//! - values of int, decimal and timestamp fields: `Sum(field=f)` (value and count), `Min`
//!   and `Max`. A sum upstream adds in wrapping 64-bit integers; the exact sum is recovered
//!   from it and the count, min and max where only one value fits (see [`exact_sum`]);
//!   elsewhere the sum is marked unknown, with why, and is not compared.
//!
//! The list of views comes from `GET /schema?views=true`: the cluster-wide list upstream
//! keeps in its schema store, not one node's files.

use std::collections::BTreeMap;

use futures_util::stream::{self, StreamExt};
use serde_json::Value;

use super::{civil_from_days, days_from_civil, parse_scaled, parse_timestamp, plan, STANDARD_VIEW};
use super::{Census, FieldCensus, IndexCensus, IndexPlan, Row, RowsCensus, Unit, ValuesCensus};
use crate::client::ClusterClient;
use crate::error::{Error, Result};
use crate::schema::Schema;

/// PQL calls sent in one request: few requests, answers of bounded size.
const CALLS_PER_REQUEST: usize = 32;
/// Rows asked of one `GroupBy` call; a view with more is read in pages.
const ROWS_PER_PAGE: usize = 10_000;

/// Why a live cluster's census has no key count for a keyed index.
pub const KEYS_UNKNOWN: &str =
    "a live cluster answers no query for the number of keys in its key partitions (only its key files hold them)";

/// The census of a live cluster, for the indexes and fields of `schema` (normally the
/// cluster's own `GET /schema`), from the answers of its query engine. Every query that is
/// refused or answered in a shape this version does not know is an error naming the index,
/// field and query; no figure is ever taken from an error.
pub async fn census(client: &ClusterClient, schema: &Schema) -> Result<Census> {
    let plans = plan(schema)?;
    let views = cluster_views(client).await?;
    let mut census = Census::default();
    for index in &plans {
        let figures = index_census(client, index, &views).await?;
        census.indexes.insert(index.name.clone(), figures);
    }
    Ok(census)
}

/// `(index, field)` → the field's views, from `GET /schema?views=true` (upstream's
/// `FieldInfo.views`, `[{"name": ...}]`, left out when the field has none).
type ViewList = BTreeMap<(String, String), Vec<String>>;

async fn cluster_views(client: &ClusterClient) -> Result<ViewList> {
    let doc: Value = client.get_json(client.entry_node(), "/schema?views=true").await?;
    views_of(&doc).map_err(|why| Error::protocol(format!("GET /schema?views=true: {why}")))
}

fn views_of(doc: &Value) -> std::result::Result<ViewList, String> {
    let mut out = ViewList::new();
    let indexes = match doc.get("indexes") {
        Some(Value::Array(a)) => a.as_slice(),
        Some(Value::Null) | None => &[],
        Some(_) => return Err("\"indexes\" is not a list".into()),
    };
    for index in indexes {
        let iname = index.get("name").and_then(Value::as_str).ok_or("an index without a name")?;
        let fields = index.get("fields").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
        for field in fields {
            let fname = field.get("name").and_then(Value::as_str).ok_or("a field without a name")?;
            let mut names = Vec::new();
            if let Some(list) = field.get("views").filter(|v| !v.is_null()) {
                let list = list.as_array().ok_or_else(|| format!("views of {iname}/{fname} is not a list"))?;
                for v in list {
                    let name = v.get("name").and_then(Value::as_str);
                    names.push(name.ok_or_else(|| format!("a view of {iname}/{fname} without a name"))?.to_string());
                }
            }
            out.insert((iname.to_string(), fname.to_string()), names);
        }
    }
    Ok(out)
}

/// One figure to ask for.
#[derive(Debug, Clone)]
enum Ask {
    /// `Count(All())`.
    Records,
    /// `Sum`, `Min` or `Max` of the field at this position of the plan.
    Sum(usize),
    Min(usize),
    Max(usize),
    /// One page of a view's rows, after the last row of the previous page.
    Rows {
        field: usize,
        view: String,
        after: Option<Row>,
    },
}

/// A PQL call and what it is for, for error messages.
struct Call {
    ask: Ask,
    pql: String,
    what: String,
}

/// Figures of one value field as they arrive.
#[derive(Default)]
struct ValueAnswers {
    sum: Option<(u64, i128)>,
    min: Option<Option<i128>>,
    max: Option<Option<i128>>,
}

async fn index_census(client: &ClusterClient, index: &IndexPlan, views: &ViewList) -> Result<IndexCensus> {
    let mut figures = IndexCensus::default();
    if index.keys {
        figures.keys_unknown = Some(KEYS_UNKNOWN.to_string());
    }
    let mut asks = Vec::new();
    if index.track_existence {
        asks.push(Ask::Records);
    }
    let mut rows: BTreeMap<usize, RowsCensus> = BTreeMap::new();
    let mut values: BTreeMap<usize, ValueAnswers> = BTreeMap::new();
    for (i, field) in index.fields.iter().enumerate() {
        let at = || format!("index {} field {}", index.name, field.name);
        if field.values.is_some() {
            asks.extend([Ask::Sum(i), Ask::Min(i), Ask::Max(i)]);
            values.insert(i, ValueAnswers::default());
            continue;
        }
        if !matches!(field.field_type.as_str(), "set" | "mutex" | "bool" | "time") {
            return Err(Error::protocol(format!(
                "{}: field type {:?} is not one this version knows",
                at(),
                field.field_type
            )));
        }
        let listed = views
            .get(&(index.name.clone(), field.name.clone()))
            .ok_or_else(|| Error::protocol(format!("{}: not in the cluster's GET /schema?views=true", at())))?;
        for view in row_views(&field.field_type, listed).map_err(|why| Error::protocol(format!("{}: {why}", at())))? {
            asks.push(Ask::Rows { field: i, view, after: None });
        }
        rows.insert(i, RowsCensus { field_type: field.field_type.clone(), ..Default::default() });
    }

    while !asks.is_empty() {
        let calls: Vec<Call> = asks.drain(..).map(|ask| call_for(index, ask)).collect();
        let answers = run(client, &index.name, &calls).await?;
        for (call, answer) in calls.iter().zip(answers) {
            let bad = |why: String| Error::protocol(format!("{}: {}: {why}: {answer}", call.what, call.pql));
            match &call.ask {
                Ask::Records => figures.records = Some(answer.as_u64().ok_or_else(|| bad("not a count".into()))?),
                Ask::Sum(i) | Ask::Min(i) | Ask::Max(i) => {
                    let (unit, _) = index.fields[*i].values.expect("a value field");
                    let got = values.get_mut(i).expect("planned");
                    match call.ask {
                        Ask::Sum(_) => got.sum = Some(sum_answer(unit, &answer).map_err(bad)?),
                        Ask::Min(_) => got.min = Some(extreme_answer(unit, &answer).map_err(bad)?),
                        _ => got.max = Some(extreme_answer(unit, &answer).map_err(bad)?),
                    }
                }
                Ask::Rows { field, view, .. } => {
                    let keyed = index.fields[*field].keys;
                    let page = rows_answer(&index.fields[*field].name, keyed, &answer).map_err(bad)?;
                    if page.len() >= ROWS_PER_PAGE {
                        let after = page.last().map(|(r, _)| r.clone());
                        asks.push(Ask::Rows { field: *field, view: view.clone(), after });
                    }
                    if !page.is_empty() {
                        let census = rows.get_mut(field).expect("planned");
                        let view_rows = census.views.entry(view.clone()).or_default();
                        for (row, bits) in page {
                            if view_rows.insert(row.clone(), bits).is_some() {
                                return Err(bad(format!("row {row} came twice (paging with previous= went back)")));
                            }
                        }
                    }
                }
            }
        }
    }

    for (i, census) in rows {
        figures.fields.insert(index.fields[i].name.clone(), FieldCensus::Rows(census));
    }
    for (i, got) in values {
        let field = &index.fields[i];
        let at = format!("index {} field {}", index.name, field.name);
        let (unit, _) = field.values.expect("a value field");
        let (Some((count, wrapped)), Some(min), Some(max)) = (got.sum, got.min, got.max) else {
            return Err(Error::internal(format!("{at}: a Sum, Min or Max answer is missing")));
        };
        if (count == 0) != min.is_none() || min.is_none() != max.is_none() {
            return Err(Error::protocol(format!(
                "{at}: Sum counts {count} values but Min is {min:?} and Max is {max:?}"
            )));
        }
        let (sum, sum_unknown) = match (min, max) {
            (Some(lo), Some(hi)) => match exact_sum(wrapped, count, lo, hi) {
                Ok(sum) => (sum, None),
                Err(why) => {
                    (wrapped, Some(format!("Sum(field={}) answered {wrapped} for {count} values: {why}", field.name)))
                }
            },
            _ => (wrapped, None),
        };
        let figure = ValuesCensus { field_type: field.field_type.clone(), unit, count, sum, min, max, sum_unknown };
        figures.fields.insert(field.name.clone(), FieldCensus::Values(figure));
    }
    Ok(figures)
}

/// The views whose rows the census counts: `standard` where listed, and for time fields
/// each time view. A field's `existence` view (null tracking) holds no rows of the field.
fn row_views(field_type: &str, listed: &[String]) -> std::result::Result<Vec<String>, String> {
    let mut out = Vec::new();
    for view in listed {
        match view.as_str() {
            STANDARD_VIEW => out.push(view.clone()),
            "existence" => {}
            _ if field_type == "time" && time_view_range(view).is_some() => out.push(view.clone()),
            _ => return Err(format!("view {view:?} is not one this version knows for a {field_type} field")),
        }
    }
    Ok(out)
}

fn call_for(index: &IndexPlan, ask: Ask) -> Call {
    let idx = &index.name;
    let (pql, what) = match &ask {
        Ask::Records => ("Count(All())".to_string(), format!("index {idx} records")),
        Ask::Sum(i) | Ask::Min(i) | Ask::Max(i) => {
            let f = &index.fields[*i].name;
            let op = match ask {
                Ask::Sum(_) => "Sum",
                Ask::Min(_) => "Min",
                _ => "Max",
            };
            (format!("{op}(field={f})"), format!("index {idx} field {f}"))
        }
        Ask::Rows { field, view, after } => {
            let f = &index.fields[*field].name;
            (rows_pql(f, view, after.as_ref()), format!("index {idx} field {f} view {view}"))
        }
    };
    Call { ask, pql, what }
}

/// `GroupBy(Rows(f[, from=, to=][, previous=]), limit=N)` for one view of a field.
fn rows_pql(field: &str, view: &str, after: Option<&Row>) -> String {
    let mut args = field.to_string();
    if let Some((from, to)) = time_view_range(view) {
        args.push_str(&format!(", from=\"{from}\", to=\"{to}\""));
    }
    match after {
        Some(Row::Id(id)) => args.push_str(&format!(", previous={id}")),
        Some(Row::Key(key)) => args.push_str(&format!(", previous={}", pql_string(key))),
        None => {}
    }
    format!("GroupBy(Rows({args}), limit={ROWS_PER_PAGE})")
}

/// A PQL double-quoted string: the escapes upstream's grammar knows (`\"`, `\\`, `\n`,
/// `\t`); any other character stands for itself.
fn pql_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The period a time view covers, as PQL `from` and `to` (`YYYY-MM-DDTHH:MM`, to exclusive):
/// `standard_2023` is 2023-01-01T00:00 to 2024-01-01T00:00, `standard_2023010515` one hour.
/// `None` for a name that is not a time view of the standard view.
fn time_view_range(view: &str) -> Option<(String, String)> {
    let digits = view.strip_prefix("standard_")?;
    if !matches!(digits.len(), 4 | 6 | 8 | 10) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let num = |r: std::ops::Range<usize>| digits.get(r).map(|s| s.parse::<u32>().expect("digits"));
    let year = i64::from(num(0..4)?);
    let month = num(4..6).unwrap_or(1);
    let day = num(6..8).unwrap_or(1);
    let hour = num(8..10).unwrap_or(0);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) || hour > 23 {
        return None;
    }
    let start = (days_from_civil(year, month, day), hour);
    let end = match digits.len() {
        4 => (days_from_civil(year + 1, 1, 1), 0),
        6 if month == 12 => (days_from_civil(year + 1, 1, 1), 0),
        6 => (days_from_civil(year, month + 1, 1), 0),
        8 => (start.0 + 1, 0),
        _ if hour == 23 => (start.0 + 1, 0),
        _ => (start.0, hour + 1),
    };
    let show = |(days, hour): (i64, u32)| {
        let (y, m, d) = civil_from_days(days);
        format!("{y:04}-{m:02}-{d:02}T{hour:02}:00")
    };
    // Upstream parses `from`/`to` with a four-digit year.
    if civil_from_days(end.0).0 > 9999 {
        return None;
    }
    Some((show(start), show(end)))
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// POST the calls to the entry node's query endpoint in requests of [`CALLS_PER_REQUEST`]
/// calls, `--concurrency` requests at a time; one answer per call, in order.
async fn run(client: &ClusterClient, index: &str, calls: &[Call]) -> Result<Vec<Value>> {
    let width = client.options().concurrency.max(1);
    let answers: Vec<Result<Vec<Value>>> = stream::iter(calls.chunks(CALLS_PER_REQUEST))
        .map(|batch| query(client, index, batch))
        .buffered(width)
        .collect()
        .await;
    let mut out = Vec::with_capacity(calls.len());
    for batch in answers {
        out.extend(batch?);
    }
    Ok(out)
}

/// One request of several calls. When upstream refuses it (its error does not say which
/// call), each call is asked alone so the error names the index, field and query.
async fn query(client: &ClusterClient, index: &str, calls: &[Call]) -> Result<Vec<Value>> {
    let pql: Vec<&str> = calls.iter().map(|c| c.pql.as_str()).collect();
    match query_once(client, index, &pql.join("\n")).await? {
        Ok(results) if results.len() == calls.len() => Ok(results),
        Ok(results) => Err(Error::protocol(format!(
            "index {index}: {} calls answered with {} results",
            calls.len(),
            results.len()
        ))),
        Err(refusal) if calls.len() == 1 => {
            Err(Error::protocol(format!("{}: {}: {refusal}", calls[0].what, calls[0].pql)))
        }
        Err(refusal) => {
            for call in calls {
                if let Err(alone) = query_once(client, index, &call.pql).await? {
                    return Err(Error::protocol(format!("{}: {}: {alone}", call.what, call.pql)));
                }
            }
            Err(Error::protocol(format!(
                "index {index}: a query of {} calls was refused, but no call alone: {refusal}",
                calls.len()
            )))
        }
    }
}

/// One `POST /index/{index}/query`: its `results`, or why upstream refused it (any answer
/// that is not 2xx, or an `error` in the JSON). Transport trouble is the outer error.
async fn query_once(client: &ClusterClient, index: &str, pql: &str) -> Result<std::result::Result<Vec<Value>, String>> {
    let path = format!("/index/{index}/query");
    let node = client.entry_node();
    let (status, body) = client.post_for_answer(node, &path, pql.to_string()).await?;
    let url = format!("{}{path}", node.base_url());
    if status.is_server_error() {
        let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        return Err(Error::unavailable(format!("POST {url}: {status}: {}", text.trim())));
    }
    let doc: Value = match serde_json::from_slice(&body) {
        Ok(doc) => doc,
        Err(e) if status.is_success() => {
            return Err(Error::protocol(format!("POST {url}: the answer is not JSON")).with_source(e))
        }
        Err(_) => {
            let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
            return Ok(Err(format!("{status}: {}", text.trim())));
        }
    };
    match query_results(&doc) {
        Ok(results) if status.is_success() => Ok(Ok(results)),
        Ok(_) => Ok(Err(format!("{status}: {doc}"))),
        Err(why) => Ok(Err(if status.is_success() { why } else { format!("{status}: {why}") })),
    }
}

/// The `results` of a query answer, or its `error`.
fn query_results(doc: &Value) -> std::result::Result<Vec<Value>, String> {
    if let Some(err) = doc.get("error").filter(|e| !e.is_null()) {
        return Err(err.as_str().map_or_else(|| err.to_string(), str::to_string));
    }
    match doc.get("results") {
        Some(Value::Array(results)) => Ok(results.clone()),
        _ => Err(format!("an answer without results: {doc}")),
    }
}

/// One page of `GroupBy(Rows(f))`: `[{"group": [{"field": f, "rowID"|"rowKey": ..}],
/// "count": n}, ...]`, rows in ID order.
fn rows_answer(field: &str, keyed: bool, answer: &Value) -> std::result::Result<Vec<(Row, u64)>, String> {
    let list = answer.as_array().ok_or("not a GroupBy answer")?;
    let mut out = Vec::with_capacity(list.len());
    for item in list {
        let group = item.get("group").and_then(Value::as_array).ok_or("a group without \"group\"")?;
        let [member] = group.as_slice() else { return Err("a group of more than one field".into()) };
        if member.get("field").and_then(Value::as_str) != Some(field) {
            return Err(format!("a group of another field: {member}"));
        }
        // Upstream writes `rowKey` only when the ID has a key; a keyed field's row without
        // one comes as its ID.
        let row = match (member.get("rowKey").and_then(Value::as_str), member.get("rowID").and_then(Value::as_u64)) {
            (Some(key), _) if keyed => Row::Key(key.to_string()),
            (None, Some(id)) => Row::Id(id),
            _ => return Err(format!("a group row that is neither a row ID nor a key of this field: {member}")),
        };
        let bits = item.get("count").and_then(Value::as_u64).ok_or("a group without a count")?;
        out.push((row, bits));
    }
    Ok(out)
}

/// `Sum`'s answer: the count of values and the sum as upstream added it (64-bit, wrapping):
/// `value` for int and timestamp fields (a timestamp's sum counts units since the Unix
/// epoch: upstream adds `count × base`), `decimalValue` for decimals.
fn sum_answer(unit: Unit, answer: &Value) -> std::result::Result<(u64, i128), String> {
    let count = answer.get("count").and_then(Value::as_u64).ok_or("no count")?;
    let sum = match unit {
        Unit::Decimal { scale } => match answer.get("decimalValue") {
            Some(Value::Null) | None if count == 0 => 0,
            Some(Value::Number(n)) => parse_scaled(&n.to_string(), scale)
                .ok_or_else(|| format!("decimalValue is not a number of scale {scale}"))?,
            _ => return Err("no decimalValue".into()),
        },
        _ => i128::from(answer.get("value").and_then(Value::as_i64).ok_or("no integer value")?),
    };
    Ok((count, sum))
}

/// `Min`'s or `Max`'s answer in the field's unit; `None` when it counts no value. Decimals
/// come in `decimalValue` (upstream drops `value` when it merges decimals), timestamps in
/// `timestampValue` (it drops `value` there too).
fn extreme_answer(unit: Unit, answer: &Value) -> std::result::Result<Option<i128>, String> {
    let count = answer.get("count").and_then(Value::as_u64).ok_or("no count")?;
    if count == 0 {
        return Ok(None);
    }
    Ok(Some(match unit {
        Unit::Int => i128::from(answer.get("value").and_then(Value::as_i64).ok_or("no integer value")?),
        Unit::Decimal { scale } => match answer.get("decimalValue") {
            Some(Value::Number(n)) => parse_scaled(&n.to_string(), scale)
                .ok_or_else(|| format!("decimalValue is not a number of scale {scale}"))?,
            _ => return Err("no decimalValue".into()),
        },
        Unit::Timestamp { nanos_per_unit } => {
            let text = answer.get("timestampValue").and_then(Value::as_str).ok_or("no timestampValue")?;
            parse_timestamp(text, nanos_per_unit)
                .ok_or_else(|| format!("timestampValue {text:?} is not an RFC 3339 time in whole units of the field"))?
        }
    }))
}

/// The exact sum of `count` values between `min` and `max`, from the sum upstream answered
/// in wrapping 64-bit arithmetic (`wrapped` equals the exact sum modulo 2^64: every step of
/// upstream's sum, per shard and across shards, is an int64 or uint64 addition). The exact
/// sum lies in `[count × min, count × max]`; when that range holds only one number of the
/// right residue, it is the sum. Otherwise upstream's answer cannot give it.
fn exact_sum(wrapped: i128, count: u64, min: i128, max: i128) -> std::result::Result<i128, String> {
    const M: i128 = 1 << 64;
    let n = i128::from(count);
    let (lo, hi) = (n * min, n * max);
    let k = (lo - wrapped).div_euclid(M) + i128::from((lo - wrapped).rem_euclid(M) != 0);
    let sum = wrapped + k * M;
    if sum > hi {
        return Err(format!("no sum of {count} values between {min} and {max} gives that answer modulo 2^64"));
    }
    if sum + M <= hi {
        return Err(format!(
            "upstream adds in 64 bits and the sum overflowed; {count} values between {min} and {max} leave more than one exact sum possible"
        ));
    }
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn time_views_cover_their_period() {
        let r = |v: &str| time_view_range(v).map(|(a, b)| format!("{a} {b}"));
        assert_eq!(r("standard_2023").unwrap(), "2023-01-01T00:00 2024-01-01T00:00");
        assert_eq!(r("standard_202312").unwrap(), "2023-12-01T00:00 2024-01-01T00:00");
        assert_eq!(r("standard_202301").unwrap(), "2023-01-01T00:00 2023-02-01T00:00");
        assert_eq!(r("standard_20240229").unwrap(), "2024-02-29T00:00 2024-03-01T00:00");
        assert_eq!(r("standard_20231231").unwrap(), "2023-12-31T00:00 2024-01-01T00:00");
        assert_eq!(r("standard_2023123123").unwrap(), "2023-12-31T23:00 2024-01-01T00:00");
        assert_eq!(r("standard_2023010510").unwrap(), "2023-01-05T10:00 2023-01-05T11:00");
        for bad in [
            "standard",
            "standard_20230229",
            "standard_202313",
            "standard_2023010524",
            "standard_20231",
            "bsig_x",
            "standard_9999",
            "standard_abcd",
        ] {
            assert_eq!(r(bad), None, "{bad}");
        }
        assert_eq!(
            rows_pql("t", "standard_20230105", None),
            "GroupBy(Rows(t, from=\"2023-01-05T00:00\", to=\"2023-01-06T00:00\"), limit=10000)"
        );
        assert_eq!(rows_pql("s", "standard", Some(&Row::Id(7))), "GroupBy(Rows(s, previous=7), limit=10000)");
        assert_eq!(
            rows_pql("k", "standard", Some(&Row::Key("a\"b\\c\nd".into()))),
            "GroupBy(Rows(k, previous=\"a\\\"b\\\\c\\nd\"), limit=10000)"
        );
    }

    #[test]
    fn views_by_field_type() {
        let l = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(row_views("set", &l(&["existence", "standard"])).unwrap(), ["standard"]);
        assert_eq!(
            row_views("time", &l(&["existence", "standard", "standard_2023", "standard_202301"])).unwrap(),
            ["standard", "standard_2023", "standard_202301"]
        );
        assert!(row_views("set", &l(&["standard_2023"])).is_err());
        assert!(row_views("time", &l(&["odd"])).is_err());
        let doc = parse(
            r#"{"indexes":[{"name":"i","fields":[{"name":"t","views":[{"name":"standard"},{"name":"standard_2023"}]},{"name":"e"}]}]}"#,
        );
        let v = views_of(&doc).unwrap();
        assert_eq!(v[&("i".into(), "t".into())], ["standard", "standard_2023"]);
        assert!(v[&("i".into(), "e".into())].is_empty());
    }

    #[test]
    fn value_answers_in_the_fields_unit() {
        // As v3.35 answered (see the integration test): decimals in decimalValue, timestamps
        // in timestampValue with value 0, an empty field with count 0.
        let int = parse(
            r#"{"value":-98,"floatValue":0,"decimalValue":null,"timestampValue":"0001-01-01T00:00:00Z","count":3}"#,
        );
        assert_eq!(sum_answer(Unit::Int, &int).unwrap(), (3, -98));
        assert_eq!(extreme_answer(Unit::Int, &int).unwrap(), Some(-98));
        let dec = parse(
            r#"{"value":0,"floatValue":0,"decimalValue":-0.05,"timestampValue":"0001-01-01T00:00:00Z","count":1}"#,
        );
        assert_eq!(sum_answer(Unit::Decimal { scale: 2 }, &dec).unwrap(), (1, -5));
        assert_eq!(extreme_answer(Unit::Decimal { scale: 3 }, &dec).unwrap(), Some(-50));
        let big = parse(r#"{"value":0,"decimalValue":92233720368547758.07,"count":1}"#);
        assert_eq!(extreme_answer(Unit::Decimal { scale: 2 }, &big).unwrap(), Some(i128::from(i64::MAX)));
        let ts = parse(
            r#"{"value":0,"floatValue":0,"decimalValue":null,"timestampValue":"2023-01-05T10:00:00.123Z","count":1}"#,
        );
        assert_eq!(
            extreme_answer(Unit::Timestamp { nanos_per_unit: 1_000_000 }, &ts).unwrap(),
            Some(1_672_912_800_123)
        );
        assert!(extreme_answer(Unit::Timestamp { nanos_per_unit: 1_000_000_000 }, &ts).is_err());
        let empty = parse(
            r#"{"value":0,"floatValue":0,"decimalValue":null,"timestampValue":"0001-01-01T00:00:00Z","count":0}"#,
        );
        assert_eq!(sum_answer(Unit::Decimal { scale: 2 }, &empty).unwrap(), (0, 0));
        assert_eq!(extreme_answer(Unit::Timestamp { nanos_per_unit: 1 }, &empty).unwrap(), None);
        assert!(sum_answer(Unit::Int, &json!({"count": 1})).is_err());
    }

    #[test]
    fn group_by_answers() {
        let a =
            parse(r#"[{"group":[{"field":"s","rowID":1}],"count":3},{"group":[{"field":"s","rowID":2}],"count":1}]"#);
        assert_eq!(rows_answer("s", false, &a).unwrap(), [(Row::Id(1), 3), (Row::Id(2), 1)]);
        let k = parse(
            r#"[{"group":[{"field":"ks","rowKey":"a"}],"count":2},{"group":[{"field":"ks","rowID":9}],"count":1}]"#,
        );
        assert_eq!(rows_answer("ks", true, &k).unwrap(), [(Row::Key("a".into()), 2), (Row::Id(9), 1)]);
        assert!(rows_answer("s", false, &k).is_err());
        assert!(rows_answer("s", false, &json!({"x": 1})).is_err());
        assert!(rows_answer("s", false, &json!([{"group": [], "count": 1}])).is_err());
    }

    #[test]
    fn refusals_are_errors() {
        assert_eq!(query_results(&json!({"results": [1, 2]})).unwrap(), [json!(1), json!(2)]);
        assert_eq!(
            query_results(&json!({"error": "executing: nope: index not found"})).unwrap_err(),
            "executing: nope: index not found"
        );
        assert!(query_results(&json!({})).is_err());
    }

    #[test]
    fn sums_that_wrapped_are_recovered_when_only_one_fits() {
        let wrap = |s: i128| -> i128 { i128::from(s as i64) };
        assert_eq!(exact_sum(-98, 3, -100, 7), Ok(-98));
        assert_eq!(exact_sum(0, 0, 0, 0), Ok(0));
        // Three timestamps in nanoseconds around 2023: the true sum is past 2^63.
        let v = 1_672_912_800_000_000_000i128;
        let s = 3 * v + 7;
        assert_eq!(exact_sum(wrap(s), 3, v, v + 5), Ok(s));
        let s = -5 * i128::from(i64::MAX);
        assert_eq!(exact_sum(wrap(s), 5, -i128::from(i64::MAX), -i128::from(i64::MAX)), Ok(s));
        // Too wide to tell.
        assert!(exact_sum(wrap(s), 5, -i128::from(i64::MAX), i128::from(i64::MAX)).is_err());
        // Impossible: the count's values cannot add up to that residue within the range.
        assert!(exact_sum(100, 1, 0, 10).is_err());
    }
}
