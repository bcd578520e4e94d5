//! The fault-control routes under `/_fbkit/`: `/_fbkit/fault` (list, add, clear faults)
//! and `/_fbkit/query` (report queries as running). Exempt from every fault but `down`.
//!
//! Layer: http (a part of it; imports `churn`, `cluster`, `config` and `fault`).

use std::io;
use std::sync::Arc;

use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{json, Value};

use super::response::{json_resp, text, Resp};
use crate::churn;
use crate::cluster::Cluster;
use crate::config::ActiveQuery;
use crate::fault::FaultSpec;

/// `/_fbkit/query`: POST reports the body's PQL as running (on node `node`, or on every
/// node), DELETE stops reporting every query, GET lists them as node `here` reports them.
pub(super) async fn query_control(
    cluster: &Arc<Cluster>,
    here: usize,
    index: &str,
    node: &str,
    req: Request<Incoming>,
) -> io::Result<Resp> {
    match *req.method() {
        Method::GET => {
            let list: Vec<Value> =
                cluster.queries_on(here).iter().map(|q| json!({ "index": q.index, "pql": q.pql })).collect();
            Ok(json_resp(&json!({ "queries": list })))
        }
        Method::DELETE => {
            cluster.clear_queries();
            Ok(text(StatusCode::OK, "OK"))
        }
        _ => {
            let on = match node {
                "" => None,
                n => match n.parse::<usize>() {
                    Ok(n) if n < cluster.nodes.len() => Some(n),
                    _ => return Ok(text(StatusCode::BAD_REQUEST, &format!("node {n:?} does not exist"))),
                },
            };
            let bytes = match req.into_body().collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => return Ok(text(StatusCode::BAD_REQUEST, &e.to_string())),
            };
            let pql = String::from_utf8_lossy(&bytes).trim().to_string();
            if pql.is_empty() {
                return Ok(text(StatusCode::BAD_REQUEST, "the body must be a PQL query"));
            }
            cluster.add_query(on, ActiveQuery { index: index.to_string(), pql });
            Ok(text(StatusCode::OK, "OK"))
        }
    }
}

/// The fault-control routes: GET lists, POST adds one SPEC, DELETE clears everything.
pub(super) async fn fault_control(cluster: &Arc<Cluster>, req: Request<Incoming>) -> io::Result<Resp> {
    match *req.method() {
        Method::GET => Ok(json_resp(&json!({ "faults": cluster.fault_specs() }))),
        Method::DELETE => {
            cluster.clear_faults();
            settle(cluster).await;
            Ok(text(StatusCode::OK, "OK"))
        }
        _ => {
            let bytes = match req.into_body().collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => return Ok(text(StatusCode::BAD_REQUEST, &e.to_string())),
            };
            let spec = match std::str::from_utf8(&bytes)
                .map_err(|e| e.to_string())
                .and_then(|s| s.trim().parse::<FaultSpec>().map_err(|e| e.to_string()))
            {
                Ok(spec) => spec,
                Err(e) => return Ok(text(StatusCode::BAD_REQUEST, &e)),
            };
            match churn::add_fault(cluster, spec) {
                Ok(()) => {
                    settle(cluster).await;
                    Ok(text(StatusCode::OK, "OK"))
                }
                Err(e) => Ok(text(StatusCode::BAD_REQUEST, &e.to_string())),
            }
        }
    }
}

/// Wait (off the runtime's workers) until the nodes' ports match the fault table.
async fn settle(cluster: &Arc<Cluster>) {
    let c = cluster.clone();
    let _ = tokio::task::spawn_blocking(move || c.settle()).await;
}
