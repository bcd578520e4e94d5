//! The HTTP API: FeatureBase's backup and restore routes, with upstream's status codes,
//! bodies, auth checks (query arguments, then auth, then Accept) and redirects, plus the
//! fault-control routes under `/_fbkit/`.
//!
//! This module routes a request, applies the node's faults and the checks every route
//! shares, and answers the routes that fit in a few lines; the longer handlers live in
//! `schema` (schema, index and field creation), `translate` (key-store downloads),
//! `queries` (`GET /queries`) and `control` (`/_fbkit/`), with `auth`, `request` and
//! `response` holding what the handlers share.
//!
//! Layer: http, above `churn`, `cluster` and the leaves; only `server` imports it.

mod auth;
mod control;
mod queries;
mod request;
mod response;
mod schema;
mod translate;

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use fb_core::layout::{EntryPath, PARTITION_N};
use http::header::{HeaderValue, CONTENT_LENGTH};
use http::{Method, Request, Response, StatusCode};
use http_body::Body as _;
use hyper::body::Incoming;
use serde_json::{json, Value};

use crate::body::{self, BodyFaults, FaultBody};
use crate::cluster::{Cluster, State};
use auth::{check_auth, Auth, Caller, Perm};
use request::{accepts_json, parse_query, receive_file, validate_args, ArgSpec, NO_ARGS};
use response::{json_bytes, json_resp, ok_text, stream_bytes, stream_file, success_response, text, with_status, Resp};

/// The version `/version` reports.
pub const VERSION: &str = "3.35.0-devcluster";

/// Error of the service: the connection is dropped without an answer.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Abandon(&'static str);

/// A routed request.
enum Route {
    Status,
    Info,
    Version,
    GetSchema,
    PostSchema,
    Nodes,
    Shards(String),
    FragmentNodes,
    PartitionNodes,
    Snapshot(String, String),
    IdallocData,
    IdallocRestore,
    TranslateData,
    TranslateIndexRestore(String, String),
    TranslateFieldRestore(String, String),
    ShardRestore(String, String),
    Dataframe(String, String),
    DataframeRestore(String, String),
    DiskUsage(Option<String>),
    PostIndex(String),
    PostField(String, String),
    Queries,
    Faults,
    QueryControl,
}

impl Route {
    fn auth(&self) -> Auth {
        use Route::*;
        match self {
            Version => Auth::None,
            Nodes | FragmentNodes | PartitionNodes | IdallocData | IdallocRestore | Faults | QueryControl => {
                Auth::AuthN
            }
            Info
            | PostSchema
            | TranslateIndexRestore(..)
            | TranslateFieldRestore(..)
            | ShardRestore(..)
            | DataframeRestore(..)
            | PostIndex(_)
            | Queries => Auth::AuthZ(Perm::Admin),
            PostField(..) => Auth::AuthZ(Perm::Write),
            Status | GetSchema | Shards(_) | Snapshot(..) | TranslateData | Dataframe(..) | DiskUsage(_) => {
                Auth::AuthZ(Perm::Read)
            }
        }
    }

    /// The index a permission check is about: the route's `{index}` variable, else the
    /// `index` query argument (upstream `chkAuthZ`).
    fn index_var(&self) -> Option<&str> {
        use Route::*;
        match self {
            Shards(i)
            | Snapshot(i, _)
            | TranslateIndexRestore(i, _)
            | TranslateFieldRestore(i, _)
            | ShardRestore(i, _)
            | Dataframe(i, _)
            | DataframeRestore(i, _)
            | DiskUsage(Some(i))
            | PostIndex(i)
            | PostField(i, _) => Some(i),
            _ => None,
        }
    }

    fn args(&self) -> Option<ArgSpec> {
        use Route::*;
        Some(match self {
            Status | Info | Version | Nodes => NO_ARGS,
            GetSchema => ArgSpec { required: &[], optional: &["views"] },
            PostSchema => ArgSpec { required: &[], optional: &["remote"] },
            TranslateData => ArgSpec { required: &["index"], optional: &["partition", "field"] },
            FragmentNodes => ArgSpec { required: &["shard", "index"], optional: &[] },
            PartitionNodes => ArgSpec { required: &["partition"], optional: &[] },
            _ => return None,
        })
    }

    fn json_only(&self) -> bool {
        use Route::*;
        matches!(
            self,
            Status
                | Info
                | Version
                | GetSchema
                | Nodes
                | Shards(_)
                | FragmentNodes
                | PartitionNodes
                | DiskUsage(_)
                | PostIndex(_)
                | PostField(..)
        )
    }
}

/// Why a request matched no route.
enum Miss {
    /// Unknown path: 404.
    Path,
    /// Known path, other method: 405.
    Method,
}

/// Match a method and path to a route.
fn route(method: &Method, path: &str) -> Result<Route, Miss> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let s = |x: &str| x.to_string();
    let (get, post, delete) = (Method::GET, Method::POST, Method::DELETE);
    let (route, methods): (Route, &[&Method]) = match parts.as_slice() {
        ["status"] => (Route::Status, &[&get]),
        ["version"] => (Route::Version, &[&get]),
        ["info"] => (Route::Info, &[&get]),
        ["schema"] if method == post => (Route::PostSchema, &[&post]),
        ["schema"] => (Route::GetSchema, &[&get, &post]),
        ["internal", "nodes"] => (Route::Nodes, &[&get]),
        ["internal", "index", i, "shards"] => (Route::Shards(s(i)), &[&get]),
        ["internal", "fragment", "nodes"] => (Route::FragmentNodes, &[&get]),
        ["internal", "partition", "nodes"] => (Route::PartitionNodes, &[&get]),
        ["internal", "index", i, "shard", sh, "snapshot"] => (Route::Snapshot(s(i), s(sh)), &[&get]),
        ["internal", "idalloc", "data"] => (Route::IdallocData, &[&get]),
        ["internal", "idalloc", "restore"] => (Route::IdallocRestore, &[&post]),
        ["internal", "translate", "data"] => (Route::TranslateData, &[&get]),
        ["internal", "translate", "index", i, p] => (Route::TranslateIndexRestore(s(i), s(p)), &[&post]),
        ["internal", "translate", "field", i, f] => (Route::TranslateFieldRestore(s(i), s(f)), &[&post]),
        ["internal", "restore", i, sh] => (Route::ShardRestore(s(i), s(sh)), &[&post]),
        ["index", i, "dataframe", sh] => (Route::Dataframe(s(i), s(sh)), &[&get]),
        // GET and DELETE exist upstream too (not served here: 405).
        ["index", i] => (Route::PostIndex(s(i)), &[&post]),
        ["index", i, "field", f] => (Route::PostField(s(i), s(f)), &[&post]),
        ["queries"] => (Route::Queries, &[&get]),
        ["internal", "dataframe", "restore", i, sh] => (Route::DataframeRestore(s(i), s(sh)), &[&post]),
        ["internal", "disk-usage"] => (Route::DiskUsage(None), &[&get]),
        ["internal", "disk-usage", i] => (Route::DiskUsage(Some(s(i))), &[&get]),
        ["_fbkit", "fault"] => (Route::Faults, &[&get, &post, &delete]),
        ["_fbkit", "query"] => (Route::QueryControl, &[&get, &post, &delete]),
        _ => return Err(Miss::Path),
    };
    if !methods.contains(&method) {
        return Err(Miss::Method);
    }
    Ok(route)
}

/// Serve one request on node `node`.
pub(crate) async fn handle(cluster: Arc<Cluster>, node: usize, req: Request<Incoming>) -> Result<Resp, Abandon> {
    let path = req.uri().path().to_string();
    let query = parse_query(req.uri().query().unwrap_or(""));
    let r = match route(req.method(), &path) {
        Ok(r) => r,
        Err(Miss::Path) => return Ok(text(StatusCode::NOT_FOUND, "404 page not found")),
        // gorilla/mux answers a known path with another method 405 and no body.
        Err(Miss::Method) => return Ok(with_status(StatusCode::METHOD_NOT_ALLOWED, body::empty())),
    };
    let control = matches!(r, Route::Faults | Route::QueryControl);

    // Faults come first: a faulty node misbehaves whatever the request is. The control
    // routes are exempt so that faults can always be changed.
    let mut faults = Default::default();
    if !control {
        faults = cluster.faults().on_request(node, &path);
        if faults.hang {
            wait_while_hanging(&cluster, node, &path).await?;
            faults = cluster.faults().on_request(node, &path);
        }
        if let Some(status) = faults.error {
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let resp = text(code, &format!("fb-devcluster: injected fault: {status}"));
            return Ok(resp);
        }
    }

    // Upstream order: query-argument validation, then auth, then the Accept check.
    if let Some(spec) = r.args() {
        if let Err(msg) = validate_args(&spec, &query) {
            let msg =
                if accepts_json(&req) { serde_json::to_string(&json!({ "error": msg })).expect("JSON") } else { msg };
            return Ok(text(StatusCode::BAD_REQUEST, &msg));
        }
    }
    let index_arg = query.iter().find(|(k, _)| k == "index").map(|(_, v)| v.as_str());
    let caller = match check_auth(&cluster, r.auth(), r.index_var().or(index_arg), &req) {
        Ok(caller) => caller,
        Err((status, msg)) => return Ok(text(status, &msg)),
    };
    if r.json_only() && !accepts_json(&req) {
        return Ok(text(StatusCode::NOT_ACCEPTABLE, "JSON only acceptable response"));
    }

    let resp = dispatch(&cluster, node, r, caller, &query, req).await;
    let resp = match resp {
        Ok(resp) => resp,
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &format!("fb-devcluster: {e}")),
    };
    if control || (faults.cut.is_none() && faults.slow.is_none()) {
        return Ok(resp);
    }
    let (mut parts, body) = resp.into_parts();
    if let Some(len) = body.size_hint().exact() {
        // Keep announcing the full length when the body is cut short.
        parts.headers.entry(CONTENT_LENGTH).or_insert(HeaderValue::from(len));
    }
    let body = FaultBody::wrap(
        body,
        BodyFaults { cut: faults.cut, rate: faults.slow, down: cluster.nodes[node].down.clone() },
    );
    Ok(Response::from_parts(parts, body))
}

/// Wait until no `hang` fault applies to the request; give up (dropping the connection)
/// when the node goes down.
async fn wait_while_hanging(cluster: &Cluster, node: usize, path: &str) -> Result<(), Abandon> {
    let mut changes = cluster.fault_gen.subscribe();
    loop {
        if cluster.nodes[node].down.load(Ordering::SeqCst) {
            return Err(Abandon("node went down"));
        }
        if !cluster.faults().peek_hang(node, path) {
            return Ok(());
        }
        if changes.changed().await.is_err() {
            return Err(Abandon("cluster stopped"));
        }
    }
}

async fn dispatch(
    cluster: &Arc<Cluster>,
    node: usize,
    r: Route,
    caller: Caller,
    query: &[(String, String)],
    req: Request<Incoming>,
) -> io::Result<Resp> {
    let q = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str()).unwrap_or("");
    let state = cluster.state();
    match r {
        Route::Status => Ok(json_resp(&cluster.status(node))),
        Route::Version => Ok(json_resp(&json!({ "version": VERSION }))),
        Route::Info => {
            let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
            Ok(json_resp(&json!({
                "shardWidth": crate::schema_doc::SHARD_WIDTH,
                "replicaN": cluster.placement.replicas(),
                "shardHash": "jump-hash",
                "keyHash": "jump-hash",
                "memory": 0,
                "cpuType": "fb-devcluster",
                "cpuPhysicalCores": cores,
                "cpuLogicalCores": cores,
                "cpuMHz": 0,
                "storageBackend": "rbf",
            })))
        }
        Route::GetSchema => {
            // Upstream `handleGetSchema` only logs a failing `api.Schema` (refused in state
            // DOWN) and encodes the nil list: 200 `{"indexes":null}`. With auth on, a
            // non-admin caller sees only the indexes it may read (`filterSchema`), and
            // `null` when that is none.
            if state == State::Down {
                return Ok(json_bytes(b"{\"indexes\":null}\n".to_vec()));
            }
            let schema = cluster.schema();
            let body = match caller {
                Caller::Reader(k) => {
                    let allowed = &cluster.settings.read_tokens[k].indexes;
                    schema.response_body_filtered(q("views") == "true", |name| allowed.iter().any(|a| a == name))
                }
                _ => schema.response_body(q("views") == "true"),
            };
            Ok(json_bytes(body))
        }
        Route::PostSchema => schema::post_schema(cluster, req).await,
        Route::Nodes => {
            let nodes: Vec<_> = (0..cluster.nodes.len()).map(|i| cluster.node_json(i)).collect();
            Ok(json_resp(&nodes))
        }
        Route::Shards(index) => {
            if cluster.schema().index(&index).is_none() {
                return Ok(text(StatusCode::INTERNAL_SERVER_ERROR, &format!("{index}: index not found")));
            }
            let mut shards: Vec<u64> = cluster.nodes.iter().flat_map(|n| n.store.shards(&index)).collect();
            shards.sort_unstable();
            shards.dedup();
            let list = if shards.is_empty() { Value::Null } else { json!(shards) };
            Ok(json_resp(&json!({ "shards": list })))
        }
        Route::FragmentNodes => {
            let Ok(shard) = q("shard").parse::<u64>() else {
                return Ok(text(StatusCode::BAD_REQUEST, "shard should be an unsigned integer"));
            };
            if let Some(msg) = refused("apiShardNodes", state) {
                return Ok(text(StatusCode::BAD_REQUEST, &msg));
            }
            let owners = cluster.shard_owners(q("index"), shard);
            Ok(json_resp(&owners.iter().map(|&i| cluster.node_json(i)).collect::<Vec<_>>()))
        }
        Route::PartitionNodes => {
            let Ok(partition) = q("partition").parse::<u32>() else {
                return Ok(text(StatusCode::BAD_REQUEST, "shard should be an unsigned integer"));
            };
            if let Some(msg) = refused("apiPartitionNodes", state) {
                return Ok(text(StatusCode::BAD_REQUEST, &msg));
            }
            let owners = cluster.partition_owners(partition);
            Ok(json_resp(&owners.iter().map(|&i| cluster.node_json(i)).collect::<Vec<_>>()))
        }
        Route::Snapshot(index, shard) => snapshot(cluster, node, &index, &shard).await,
        Route::IdallocData => {
            let store = &cluster.nodes[node].store;
            let path = store.root().join("idalloc");
            match tokio::fs::File::open(&path).await {
                Ok(f) => Ok(stream_file(f, None)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    Ok(stream_bytes(crate::placeholder::empty_idalloc()?.into()))
                }
                Err(e) => Ok(text(StatusCode::INTERNAL_SERVER_ERROR, &format!("writeing id allocation data: {e}"))),
            }
        }
        Route::IdallocRestore => {
            let path = cluster.nodes[node].store.root().join("idalloc");
            match receive_file(req.into_body(), &path).await {
                Ok(_) => Ok(ok_text()),
                Err(e) => Ok(text(StatusCode::INTERNAL_SERVER_ERROR, &format!("restoring id allocation: {e}"))),
            }
        }
        Route::TranslateData => {
            translate::translate_data(cluster, node, &req, q("index"), q("partition"), q("field")).await
        }
        Route::TranslateIndexRestore(index, partition) => {
            let Ok(p) = partition.parse::<u64>() else {
                return Ok(text(StatusCode::BAD_REQUEST, "bad partition"));
            };
            let problem = {
                let schema = cluster.schema();
                if schema.index(&index).is_none() {
                    Some(format!("index {index:?} not found"))
                } else if !schema.index_keyed(&index) || p >= u64::from(PARTITION_N) {
                    Some(format!("index {index:?} has no translate store"))
                } else {
                    None
                }
            };
            if let Some(message) = problem {
                return Ok(success_response(&index, Err(message)));
            }
            let path =
                cluster.nodes[node].store.path(&EntryPath::IndexKeys { index: index.clone(), partition: p as u32 });
            let result = receive_file(req.into_body(), &path).await.map_err(|e| e.to_string());
            Ok(success_response(&index, result.map(|_| ())))
        }
        Route::TranslateFieldRestore(index, field) => {
            let problem = {
                let schema = cluster.schema();
                if schema.index(&index).is_none() {
                    Some(format!("index {index:?} not found"))
                } else if field == "_keys" && schema.field(&index, &field).is_none() {
                    // Upstream quietly accepts this name (old backups carried it).
                    return Ok(success_response(&field, Ok(())));
                } else if schema.field(&index, &field).is_none() {
                    Some(format!("field {index:?}/{field:?} not found"))
                } else if !schema.field_keyed(&index, &field) {
                    Some(format!("field {index:?}/{field:?} has no translate store"))
                } else {
                    None
                }
            };
            if let Some(message) = problem {
                return Ok(success_response(&field, Err(message)));
            }
            let path =
                cluster.nodes[node].store.path(&EntryPath::FieldKeys { index: index.clone(), field: field.clone() });
            let result = receive_file(req.into_body(), &path).await.map_err(|e| e.to_string());
            Ok(success_response(&field, result.map(|_| ())))
        }
        Route::ShardRestore(index, shard) => {
            let Ok(s) = shard.parse::<u64>() else {
                return Ok(text(
                    StatusCode::BAD_REQUEST,
                    &format!("failed to parse shard {index} {shard} err:invalid syntax"),
                ));
            };
            if !cluster.shard_owners(&index, s).contains(&node) {
                return Ok(text(
                    StatusCode::BAD_REQUEST,
                    &format!("failed to restore shard {index} {s} err:node does not own shard"),
                ));
            }
            if cluster.schema().index(&index).is_none() {
                return Ok(text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("failed to restore shard {index} {s} err:{index}: index not found"),
                ));
            }
            let path = cluster.nodes[node].store.path(&EntryPath::Shard { index, shard: s });
            match receive_file(req.into_body(), &path).await {
                Ok(_) => Ok(ok_text()),
                Err(e) => Ok(text(StatusCode::BAD_REQUEST, &format!("failed to restore shard: {e}"))),
            }
        }
        Route::Dataframe(index, shard) => {
            if !cluster.settings.dataframes_enabled {
                return Ok(text(StatusCode::BAD_REQUEST, "Dataframe is disabled"));
            }
            // `api.Index` is refused in state DOWN; the handler reports any failure so.
            if state == State::Down || cluster.schema().index(&index).is_none() {
                return Ok(text(StatusCode::NOT_FOUND, &format!("Index {index} Not Found")));
            }
            let Ok(s) = shard.parse::<u64>() else {
                return Ok(text(StatusCode::NOT_FOUND, "404 page not found"));
            };
            let path = cluster.nodes[node].store.path(&EntryPath::Dataframe { index, shard: s });
            match tokio::fs::File::open(&path).await {
                Ok(f) => {
                    let len = f.metadata().await?.len();
                    Ok(stream_file(f, Some(len)))
                }
                Err(_) => Ok(text(StatusCode::NOT_FOUND, "404 page not found")),
            }
        }
        Route::DataframeRestore(index, shard) => {
            let Ok(s) = shard.parse::<u64>() else {
                return Ok(text(
                    StatusCode::BAD_REQUEST,
                    &format!("failed to parse shard {index} {shard} err:invalid syntax"),
                ));
            };
            if state == State::Down || cluster.schema().index(&index).is_none() {
                return Ok(text(StatusCode::NOT_FOUND, &format!("Index {index} Not Found")));
            }
            let path = cluster.nodes[node].store.path(&EntryPath::Dataframe { index: index.clone(), shard: s });
            match receive_file(req.into_body(), &path).await {
                Ok(_) => Ok(ok_text()),
                Err(e) => Ok(text(
                    StatusCode::BAD_REQUEST,
                    &format!("failed to copy restore dataframe shard {index} {s} err:{e}"),
                )),
            }
        }
        Route::DiskUsage(index) => match cluster.nodes[node].store.usage(index.as_deref()) {
            Ok(usage) => Ok(json_resp(&json!({ "usage": usage }))),
            Err(e) => Ok(text(StatusCode::INTERNAL_SERVER_ERROR, &format!("getting disk usage: {e}"))),
        },
        Route::PostIndex(index) => schema::post_index(cluster, state, &index, req).await,
        Route::PostField(index, field) => schema::post_field(cluster, state, &index, &field, req).await,
        Route::Queries => queries::active_queries(cluster, node, state, &req),
        Route::Faults => control::fault_control(cluster, req).await,
        Route::QueryControl => control::query_control(cluster, node, q("index"), q("node"), req).await,
    }
}

/// Upstream `API.validate` (api.go): the API methods each cluster state allows
/// (`methodsNormal`, `methodsDegraded`, `methodsCommon`). Returns the error text of a
/// refused method, as the handlers print it (wrapped by "validating api method").
fn refused(method: &str, state: State) -> Option<String> {
    // Of the methods fb-devcluster serves, these are allowed in DEGRADED as well.
    const DEGRADED_OK: &[&str] =
        &["apiField", "apiIndex", "apiShardNodes", "apiSchema", "apiActiveQueries", "apiPartitionNodes"];
    let allowed = match state {
        State::Normal => true,
        State::Degraded => DEGRADED_OK.contains(&method),
        State::Down => false,
    };
    (!allowed).then(|| format!("validating api method: api method {method} not allowed in state {}", state.name()))
}

async fn snapshot(cluster: &Arc<Cluster>, node: usize, index: &str, shard: &str) -> io::Result<Resp> {
    let Ok(s) = shard.parse::<u64>() else {
        return Ok(text(StatusCode::BAD_REQUEST, "Invalid shard parameter"));
    };
    if cluster.schema().index(index).is_none() {
        return Ok(text(StatusCode::NOT_FOUND, &format!("{index}: index not found")));
    }
    let path = cluster.nodes[node].store.path(&EntryPath::Shard { index: index.to_string(), shard: s });
    match tokio::fs::File::open(&path).await {
        Ok(f) => Ok(stream_file(f, None)),
        // Upstream opens an empty shard database for a shard it does not hold and streams it.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(stream_bytes(crate::placeholder::empty_shard()?.into())),
        Err(e) => Ok(text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())),
    }
}
