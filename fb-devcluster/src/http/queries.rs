//! `GET /queries`: the queries a node reports as running, as text or JSON.
//!
//! Layer: http (a part of it; imports `cluster` and the leaf `schema_doc`).

use std::io;

use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde_json::{json, Value};

use super::refused;
use super::request::{accepts, accepts_json};
use super::response::{json_resp, text, with_status, Resp};
use crate::body;
use crate::cluster::{Cluster, State};

/// `GET /queries` (upstream `handleGetActiveQueries`): the queries this node runs, as text
/// when the client accepts `text/plain` (also when it sends no Accept header), else as
/// JSON `[{"PQL", "node", "index", "age" (nanoseconds)}]`.
pub(super) fn active_queries(
    cluster: &Cluster,
    node: usize,
    state: State,
    req: &Request<Incoming>,
) -> io::Result<Resp> {
    let as_text = accepts(req, "text", "plain");
    if !as_text && !accepts_json(req) {
        return Ok(text(StatusCode::NOT_ACCEPTABLE, "no acceptable response type selected"));
    }
    if let Some(msg) = refused("apiActiveQueries", state) {
        return Ok(text(StatusCode::INTERNAL_SERVER_ERROR, &msg));
    }
    let queries = cluster.queries_on(node);
    let id = &cluster.nodes[node].id;
    if as_text {
        let ages: Vec<String> = queries.iter().map(|q| go_duration(q.started.elapsed().as_nanos())).collect();
        let width = ages.iter().map(String::len).max().unwrap_or(0) + 2;
        let mut out = String::new();
        for (q, age) in queries.iter().zip(&ages) {
            out.push_str(&format!("{age:<width$}{}\n", crate::schema_doc::go_quote(&q.pql)));
        }
        out.push('\n');
        let mut resp = with_status(StatusCode::OK, body::full(out));
        resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        return Ok(resp);
    }
    let list: Vec<Value> = queries
        .iter()
        .map(|q| {
            let age = u64::try_from(q.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
            json!({ "PQL": q.pql, "node": id, "index": q.index, "age": age })
        })
        .collect();
    Ok(json_resp(&list))
}

/// Go's `time.Duration.String` (for the text form of `GET /queries`).
fn go_duration(ns: u128) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let frac = |v: u128, digits: u32| -> String {
        let p = 10u128.pow(digits);
        let f = format!("{:0width$}", v % p, width = digits as usize);
        let f = f.trim_end_matches('0');
        if f.is_empty() {
            format!("{}", v / p)
        } else {
            format!("{}.{f}", v / p)
        }
    };
    if ns < 1_000 {
        return format!("{ns}ns");
    }
    if ns < 1_000_000 {
        return format!("{}µs", frac(ns, 3));
    }
    if ns < 1_000_000_000 {
        return format!("{}ms", frac(ns, 6));
    }
    let secs = ns / 1_000_000_000;
    let sub = ns % 1_000_000_000;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let sec = frac(s * 1_000_000_000 + sub, 9);
    if h > 0 {
        format!("{h}h{m}m{sec}s")
    } else if m > 0 {
        format!("{m}m{sec}s")
    } else {
        format!("{sec}s")
    }
}
