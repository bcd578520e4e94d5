//! The HTTP API: FeatureBase's backup and restore routes, with upstream's status codes,
//! bodies, auth checks (query arguments, then auth, then Accept) and redirects, plus the
//! fault-control routes under `/_fbkit/`.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use fb_core::layout::{EntryPath, PARTITION_N};
use http::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use http::{Method, Request, Response, StatusCode};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use crate::body::{self, Body, BodyFaults, FaultBody};
use crate::cluster::{Cluster, State};
use crate::fault::FaultSpec;
use crate::schema_doc::SchemaDoc;

/// The version `/version` reports.
pub const VERSION: &str = "3.35.0-devcluster";

/// Error of the service: the connection is dropped without an answer.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Abandon(&'static str);

type Resp = Response<Body>;

/// Which check a route's auth wrapper makes upstream (http_handler.go `NewRouter`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Auth {
    /// No token needed.
    None,
    /// `chkAuthN`: 401 on a missing or bad token; any valid token passes.
    AuthN,
    /// `chkAuthZ`: 403 on a missing or bad token, then the permission check.
    AuthZ(Perm),
}

/// The permission a `chkAuthZ` route asks for (upstream `authz.Permission`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Perm {
    Read,
    Write,
    Admin,
}

/// Who sent a request, as far as auth goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Caller {
    /// Auth is off.
    Open,
    /// The admin token.
    Admin,
    /// The k-th read token.
    Reader(usize),
}

/// Query arguments a route accepts (upstream's validators), required ones first.
struct ArgSpec {
    required: &'static [&'static str],
    optional: &'static [&'static str],
}

const NO_ARGS: ArgSpec = ArgSpec { required: &[], optional: &[] };

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
        Route::PostSchema => post_schema(cluster, req).await,
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
        Route::TranslateData => translate_data(cluster, node, &req, q("index"), q("partition"), q("field")).await,
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
        Route::PostIndex(index) => post_index(cluster, state, &index, req).await,
        Route::PostField(index, field) => post_field(cluster, state, &index, &field, req).await,
        Route::Queries => active_queries(cluster, node, state, &req),
        Route::Faults => control(cluster, req).await,
        Route::QueryControl => query_control(cluster, node, q("index"), q("node"), req).await,
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

async fn post_schema(cluster: &Arc<Cluster>, req: Request<Incoming>) -> io::Result<Resp> {
    let bytes = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return Ok(text(StatusCode::BAD_REQUEST, &format!("decoding request as JSON Pilosa schema: {e}"))),
    };
    let mut posted: Value = match serde_json::from_slice(&bytes) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => {
            return Ok(text(
                StatusCode::BAD_REQUEST,
                "decoding request as JSON Pilosa schema: json: cannot unmarshal into Go value of type pilosa.Schema",
            ))
        }
        Err(e) => return Ok(text(StatusCode::BAD_REQUEST, &format!("decoding request as JSON Pilosa schema: {e}"))),
    };
    if let Err(e) = crate::schema_doc::decode_posted(&mut posted) {
        return Ok(text(StatusCode::BAD_REQUEST, &format!("decoding request as JSON Pilosa schema: {e}")));
    }
    if let Some(msg) = refused("apiApplySchema", cluster.state()) {
        return Ok(text(StatusCode::BAD_REQUEST, &format!("apply schema to Pilosa: {msg}")));
    }
    crate::schema_doc::widen_zero_bounds(&mut posted);
    crate::schema_doc::clear_field_owners(&mut posted);
    let created_at = cluster.settings.reset_schema_timestamps.then(now_ns);
    let mut schema = cluster.schema.write().unwrap_or_else(|e| e.into_inner());
    let mut next: SchemaDoc = schema.clone();
    let outcome = next.apply(&posted, created_at);
    // Indexes created before a failing one stay created, as upstream.
    cluster.save_schema(&next)?;
    *schema = next;
    drop(schema);
    match outcome {
        Ok(_) => Ok(with_status(StatusCode::NO_CONTENT, body::empty())),
        Err((_, e)) => Ok(text(StatusCode::BAD_REQUEST, &format!("apply schema to Pilosa: {}", e.0))),
    }
}

/// Upstream's `successResponse.write` for a failure: the JSON document as plain text.
fn failure_response(status: StatusCode, name: &str, created_at: Option<i64>, message: &str) -> Resp {
    let mut doc = serde_json::Map::new();
    doc.insert("success".into(), false.into());
    doc.insert("name".into(), name.into());
    if let Some(c) = created_at.filter(|&c| c != 0) {
        doc.insert("createdAt".into(), c.into());
    }
    doc.insert("error".into(), json!({ "message": message }));
    let body = serde_json::to_string(&Value::Object(doc)).expect("JSON");
    text(status, &body)
}

/// Upstream's `successResponse.write` for a success.
fn created_response(name: &str, created_at: i64) -> Resp {
    json_resp(&json!({ "success": true, "name": name, "createdAt": created_at }))
}

/// Read a JSON request body; an empty body is `null` (Go's decoder sees `io.EOF`).
async fn json_body(req: Request<Incoming>) -> Result<Value, String> {
    let bytes = req.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

/// `POST /index/{index}` (upstream `handlePostIndex`, `API.CreateIndex`): options
/// `keys` (default false), `trackExistence` (default true), `partitionN`, `description`;
/// any other key is refused.
async fn post_index(cluster: &Arc<Cluster>, state: State, index: &str, req: Request<Incoming>) -> io::Result<Resp> {
    let ise = StatusCode::INTERNAL_SERVER_ERROR;
    let body = match json_body(req).await {
        Ok(v) => v,
        Err(e) => return Ok(failure_response(ise, index, None, &format!("unmarshalling unexpected values: {e}"))),
    };
    let mut options = json!({ "keys": false, "trackExistence": true, "partitionN": 0, "description": "" });
    match &body {
        Value::Null => {}
        Value::Object(top) => {
            for (k, v) in top {
                let Value::Object(given) = v else {
                    let msg = if k == "options" {
                        "options is not map[string]interface{}".to_string()
                    } else {
                        format!("unknown key: {k}:{}", go_value(v))
                    };
                    return Ok(failure_response(ise, index, None, &msg));
                };
                if k != "options" {
                    return Ok(failure_response(ise, index, None, &format!("unknown key: {k}:{}", go_value(v))));
                }
                for (kk, vv) in given {
                    if !["keys", "trackExistence", "partitionN", "description"].contains(&kk.as_str()) {
                        return Ok(failure_response(ise, index, None, &format!("unknown key: {kk}:{}", go_value(vv))));
                    }
                    options[kk.as_str()] = vv.clone();
                }
            }
        }
        _ => {
            let msg =
                "unmarshalling unexpected values: json: cannot unmarshal into Go value of type map[string]interface {}";
            return Ok(failure_response(ise, index, None, msg));
        }
    }
    if let Some(msg) = refused("apiCreateIndex", state) {
        return Ok(failure_response(ise, index, None, &msg));
    }
    if !fb_core::layout::is_valid_name(index) {
        let msg = format!(
            "creating index: persisting index: validating name: '{index}': invalid index or field name, must match [a-z][a-z0-9Θ_-]* and contain at most 230 characters"
        );
        return Ok(failure_response(ise, index, None, &msg));
    }
    let now = now_ns();
    let mut schema = cluster.schema.write().unwrap_or_else(|e| e.into_inner());
    if let Some(existing) = schema.index(index) {
        let created = existing.get("createdAt").and_then(Value::as_i64);
        return Ok(failure_response(StatusCode::CONFLICT, index, created, "creating index: index already exists"));
    }
    let mut next = schema.clone();
    if let Err(e) = next.create_index(index, &options, now) {
        return Ok(failure_response(ise, index, None, &format!("creating index: {}", e.0)));
    }
    cluster.save_schema(&next)?;
    *schema = next;
    Ok(created_response(index, now))
}

/// `POST /index/{index}/field/{field}` (upstream `handlePostField`, `API.CreateField`).
async fn post_field(
    cluster: &Arc<Cluster>,
    state: State,
    index: &str,
    field: &str,
    req: Request<Incoming>,
) -> io::Result<Resp> {
    use crate::schema_doc::FieldRequestError as E;
    let ise = StatusCode::INTERNAL_SERVER_ERROR;
    let body = match json_body(req).await {
        Ok(v) => v,
        Err(e) => return Ok(failure_response(ise, field, None, &e)),
    };
    let options = match crate::schema_doc::field_from_request(&body) {
        Ok(o) => Ok(o),
        Err(E::Decode(m)) | Err(E::BadType(m)) => return Ok(failure_response(ise, field, None, &m)),
        Err(E::Invalid(m)) => return Ok(failure_response(StatusCode::BAD_REQUEST, field, None, &m)),
        Err(E::Apply(m)) => Err(m),
    };
    // `API.CreateField`: the state first, then the options, then the index and the name.
    if let Some(msg) = refused("apiCreateField", state) {
        return Ok(failure_response(ise, field, None, &msg));
    }
    let options = match options {
        Ok(o) => o,
        Err(m) => return Ok(text(StatusCode::BAD_REQUEST, &m)),
    };
    let now = now_ns();
    let mut schema = cluster.schema.write().unwrap_or_else(|e| e.into_inner());
    if schema.index(index).is_none() {
        return Ok(failure_response(StatusCode::NOT_FOUND, field, None, &format!("{index}: index not found")));
    }
    if !fb_core::layout::is_valid_name(field) {
        let msg = format!(
            "creating field: validating name: '{field}': invalid index or field name, must match [a-z][a-z0-9Θ_-]* and contain at most 230 characters"
        );
        return Ok(failure_response(ise, field, None, &msg));
    }
    if let Some(existing) = schema.field(index, field) {
        let created = existing.get("createdAt").and_then(Value::as_i64);
        return Ok(failure_response(StatusCode::CONFLICT, field, created, "creating field: field already exists"));
    }
    let mut next = schema.clone();
    if let Err(e) = next.create_field(index, field, &options, now) {
        return Ok(failure_response(ise, field, None, &e.0));
    }
    cluster.save_schema(&next)?;
    *schema = next;
    Ok(created_response(field, now))
}

/// How Go's `%v` prints a decoded JSON value (for "unknown key" messages).
fn go_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "<nil>".into(),
        Value::Object(m) => {
            let inner: Vec<String> = m.iter().map(|(k, v)| format!("{k}:{}", go_value(v))).collect();
            format!("map[{}]", inner.join(" "))
        }
        Value::Array(a) => format!("[{}]", a.iter().map(go_value).collect::<Vec<_>>().join(" ")),
        other => other.to_string(),
    }
}

/// `GET /queries` (upstream `handleGetActiveQueries`): the queries this node runs, as text
/// when the client accepts `text/plain` (also when it sends no Accept header), else as
/// JSON `[{"PQL", "node", "index", "age" (nanoseconds)}]`.
fn active_queries(cluster: &Cluster, node: usize, state: State, req: &Request<Incoming>) -> io::Result<Resp> {
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

/// `/_fbkit/query`: POST reports the body's PQL as running (on node `node`, or on every
/// node), DELETE stops reporting every query, GET lists them as node `here` reports them.
async fn query_control(
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
            cluster.add_query(on, crate::config::ActiveQuery { index: index.to_string(), pql });
            Ok(text(StatusCode::OK, "OK"))
        }
    }
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

/// `GET /internal/translate/data` (upstream `handleGetTranslateData`, `API.TranslateData`
/// and `API.FieldTranslateData`): every error is a 404 with the error's text, including the
/// refusal outside state NORMAL; a node that is not the first owner listed STARTED
/// redirects (303) to it, even when that owner is dead but not yet noticed.
async fn translate_data(
    cluster: &Arc<Cluster>,
    node: usize,
    req: &Request<Incoming>,
    index: &str,
    partition: &str,
    field: &str,
) -> io::Result<Resp> {
    let store = &cluster.nodes[node].store;
    let state = cluster.state();
    if !field.is_empty() {
        if let Some(msg) = refused("apiFieldTranslateData", state) {
            return Ok(text(StatusCode::NOT_FOUND, &msg));
        }
        let problem = {
            let schema = cluster.schema();
            if schema.index(index).is_none() {
                Some(format!("{index}: index not found"))
            } else if schema.field(index, field).is_none() {
                Some(format!("{field}: field not found"))
            } else {
                None
            }
        };
        if let Some(message) = problem {
            return Ok(text(StatusCode::NOT_FOUND, &message));
        }
        let path = store.path(&EntryPath::FieldKeys { index: index.to_string(), field: field.to_string() });
        return match tokio::fs::File::open(&path).await {
            Ok(f) => Ok(stream_file(f, None)),
            // Upstream opens a key store for every field, keyed or not, and serves it empty.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Ok(stream_bytes(crate::placeholder::empty_key_store()?.into()))
            }
            Err(e) => Ok(text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())),
        };
    }
    let Ok(p) = partition.parse::<u32>() else {
        return Ok(text(StatusCode::BAD_REQUEST, "partition or field required"));
    };
    if let Some(msg) = refused("apiTranslateData", state) {
        return Ok(text(StatusCode::NOT_FOUND, &msg));
    }
    let keyed = {
        let schema = cluster.schema();
        if schema.index(index).is_none() {
            return Ok(text(StatusCode::NOT_FOUND, &format!("{index}: index not found")));
        }
        schema.index_keyed(index)
    };
    // Upstream serves from the first owner whose state is STARTED (an UNKNOWN owner is
    // never chosen), and every other node redirects there; a replica does not serve a
    // partition whose primary owner is listed STARTED.
    let Some(server) = cluster.partition_owners(p).into_iter().find(|&o| !cluster.noticed_dead(o)) else {
        return Ok(text(
            StatusCode::NOT_FOUND,
            &format!("can't get translate data, no nodes available for partition {p}"),
        ));
    };
    if server != node {
        return Ok(redirect(req, cluster.nodes[server].port));
    }
    let path = store.path(&EntryPath::IndexKeys { index: index.to_string(), partition: p });
    match tokio::fs::File::open(&path).await {
        Ok(f) => Ok(stream_file(f, None)),
        // A keyed index has a store for each of its 256 partitions from the moment it is
        // created (upstream `Index.open`), so a partition nothing was written to is served
        // as an empty store. An unkeyed index has none.
        Err(e) if e.kind() == io::ErrorKind::NotFound && keyed && p < PARTITION_N => {
            Ok(stream_bytes(crate::placeholder::empty_key_store()?.into()))
        }
        Err(_) => Ok(text(StatusCode::NOT_FOUND, "translate store not found")),
    }
}

/// 303 See Other to the same path and query on another node. Like upstream, the Location
/// is scheme-relative (`//host:port/path?query`): the client keeps its scheme.
fn redirect(req: &Request<Incoming>, port: u16) -> Resp {
    let pq = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let location = format!("//127.0.0.1:{port}{pq}");
    let html = format!("<a href=\"{}\">See Other</a>.\n\n", html_escape(&location));
    let mut resp = with_status(StatusCode::SEE_OTHER, body::full(html));
    let h = resp.headers_mut();
    h.insert(LOCATION, HeaderValue::from_str(&location).expect("valid header"));
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    resp
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&#34;").replace('\'', "&#39;")
}

/// The fault-control routes: GET lists, POST adds one SPEC, DELETE clears everything.
async fn control(cluster: &Arc<Cluster>, req: Request<Incoming>) -> io::Result<Resp> {
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
            match crate::churn::add_fault(cluster, spec) {
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

/// Stream a request body into `path`, replacing the file atomically once it is complete.
async fn receive_file(mut body: Incoming, path: &std::path::Path) -> io::Result<u64> {
    let (tmp, file) = crate::store::temp_beside(path)?;
    let mut file = tokio::io::BufWriter::with_capacity(1 << 20, tokio::fs::File::from_std(file));
    let result = async {
        let mut len = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(io::Error::other)?;
            if let Ok(data) = frame.into_data() {
                file.write_all(&data).await?;
                len += data.len() as u64;
            }
        }
        file.flush().await?;
        drop(file);
        tokio::fs::rename(&tmp, path).await?;
        Ok(len)
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    result
}

/// Upstream `chkAuthN` / `chkAuthZ` (http_handler.go): authenticate the bearer token, then
/// for `chkAuthZ` routes check the permission. A non-admin token is refused admin routes;
/// on other routes it is checked against the index the request names (path variable, else
/// `index` query argument) and passes when the request names none.
fn check_auth(
    cluster: &Cluster,
    auth: Auth,
    index: Option<&str>,
    req: &Request<Incoming>,
) -> Result<Caller, (StatusCode, String)> {
    let settings = &cluster.settings;
    if settings.auth_token.is_none() && settings.read_tokens.is_empty() && settings.expired_tokens.is_empty() {
        return Ok(Caller::Open);
    }
    if auth == Auth::None {
        return Ok(Caller::Open);
    }
    let given = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once("Bearer ").map(|(_, t)| t))
        .unwrap_or("");
    let reader = settings.read_tokens.iter().position(|t| t.token == given);
    let reason = if given.is_empty() {
        "auth token is empty".to_string()
    } else if settings.auth_token.as_deref() == Some(given) {
        return Ok(Caller::Admin);
    } else if let Some(k) = reader {
        let Auth::AuthZ(perm) = auth else { return Ok(Caller::Reader(k)) };
        return check_permission(&settings.read_tokens[k], k, perm, index).map(|()| Caller::Reader(k));
    } else if settings.expired_tokens.iter().any(|t| t == given) {
        // The token URL of a test identity provider refuses the refresh.
        "token is expired: refreshing token: 400 Bad Request".to_string()
    } else if given.split('.').count() != 3 {
        "parsing auth token: token contains an invalid number of segments".to_string()
    } else {
        "parsing auth token: signature is invalid".to_string()
    };
    let status = match auth {
        Auth::AuthN => StatusCode::UNAUTHORIZED,
        _ => StatusCode::FORBIDDEN,
    };
    Err((status, format!("authenticating: {reason}")))
}

/// The permission check of `chkAuthZ` for a non-admin token (upstream
/// `GroupPermissions.GetPermissions`, authz/authorization.go).
fn check_permission(
    token: &crate::config::ReadToken,
    k: usize,
    perm: Perm,
    index: Option<&str>,
) -> Result<(), (StatusCode, String)> {
    if perm == Perm::Admin {
        return Err((StatusCode::FORBIDDEN, "Insufficient permissions: user does not have admin permission".into()));
    }
    let Some(index) = index.filter(|i| !i.is_empty()) else { return Ok(()) };
    if !token.indexes.iter().any(|i| i == index) {
        let user = format!("reader{}", k + 1);
        return Err((
            StatusCode::FORBIDDEN,
            format!("Insufficient Permissions: user {user} does not have permission to index {index}"),
        ));
    }
    if perm > Perm::Read {
        return Err((StatusCode::FORBIDDEN, "Insufficient permissions".into()));
    }
    Ok(())
}

/// Upstream's Accept rule: no Accept header passes; otherwise one value must be
/// `application/json`, `*/json`, `application/*` or `*/*`.
fn accepts_json<B>(req: &Request<B>) -> bool {
    accepts(req, "application", "json")
}

/// Upstream `validHeaderAcceptType`: no Accept header passes; otherwise one value must be
/// `typ/sub`, `*/sub`, `typ/*` or `*/*`.
fn accepts<B>(req: &Request<B>, typ: &str, sub: &str) -> bool {
    let mut values = req.headers().get_all(ACCEPT).iter().peekable();
    if values.peek().is_none() {
        return true;
    }
    values.any(|v| {
        let Ok(v) = v.to_str() else { return false };
        let media = v.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match media.split_once('/') {
            Some((t, s)) => (t == typ || t == "*") && (s == sub || s == "*"),
            None => false,
        }
    })
}

fn validate_args(spec: &ArgSpec, query: &[(String, String)]) -> Result<(), String> {
    for req in spec.required {
        if !query.iter().any(|(k, v)| k == req && !v.is_empty()) {
            return Err(format!("{req} is required"));
        }
    }
    for (k, _) in query {
        if !spec.required.contains(&k.as_str()) && !spec.optional.contains(&k.as_str()) {
            return Err(format!("{k} is not a valid argument"));
        }
    }
    Ok(())
}

/// Query pairs in order, percent-decoded (`+` is a space).
fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

fn with_status(status: StatusCode, body: Body) -> Resp {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    resp
}

/// Go's `http.Error`: the message and a newline as plain text.
fn text(status: StatusCode, msg: &str) -> Resp {
    let mut resp = with_status(status, body::full(format!("{msg}\n")));
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    resp
}

/// The `OK` answer of the restore routes.
fn ok_text() -> Resp {
    let mut resp = with_status(StatusCode::OK, body::full(Bytes::from_static(b"OK")));
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}

/// Upstream's `successResponse` for the translate restore routes.
fn success_response(name: &str, result: Result<(), String>) -> Resp {
    match result {
        Ok(()) => json_resp(&json!({ "success": true, "name": name })),
        Err(message) => {
            let doc = json!({ "success": false, "name": name, "error": { "message": message } });
            let mut resp = with_status(StatusCode::NOT_FOUND, body::full(encode(&doc)));
            resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
            resp
        }
    }
}

/// Go's `json.Encoder` output: compact JSON and a newline.
fn encode<T: serde::Serialize>(v: &T) -> Vec<u8> {
    let mut out = serde_json::to_vec(v).expect("JSON values serialise");
    out.push(b'\n');
    out
}

fn json_resp<T: serde::Serialize>(v: &T) -> Resp {
    json_bytes(encode(v))
}

/// Go's server announces a Content-Length only for replies that fit its 2048-byte buffer;
/// longer ones are sent chunked.
const GO_CHUNKING_THRESHOLD: usize = 2048;

fn json_bytes(bytes: Vec<u8>) -> Resp {
    let mut resp = if bytes.len() > GO_CHUNKING_THRESHOLD {
        stream_bytes(bytes.into())
    } else {
        with_status(StatusCode::OK, body::full(bytes))
    };
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// A binary file: chunked (`len: None`, like upstream's streamed snapshots and bbolt
/// copies) or with a Content-Length (like `http.ServeFile`).
fn stream_file(file: tokio::fs::File, len: Option<u64>) -> Resp {
    let mut resp = with_status(StatusCode::OK, body::file(file));
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    if let Some(len) = len {
        h.insert(CONTENT_LENGTH, HeaderValue::from(len));
    }
    resp
}

/// Bytes generated on the fly, sent chunked like a streamed file.
fn stream_bytes(bytes: Bytes) -> Resp {
    let body = http_body_util::StreamBody::new(futures_util::stream::iter([Ok::<_, io::Error>(
        http_body::Frame::data(bytes),
    )]));
    let mut resp = with_status(StatusCode::OK, body.boxed_unsync());
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_accept_rules() {
        assert_eq!(
            parse_query("index=a%2Fb&partition=5&x"),
            vec![
                ("index".to_string(), "a/b".to_string()),
                ("partition".to_string(), "5".to_string()),
                ("x".to_string(), String::new())
            ]
        );
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        let spec = ArgSpec { required: &["index"], optional: &["partition"] };
        assert_eq!(validate_args(&spec, &parse_query("partition=1")), Err("index is required".into()));
        assert_eq!(validate_args(&spec, &parse_query("index=i&bogus=1")), Err("bogus is not a valid argument".into()));
        let req = |accept: Option<&str>| {
            let mut b = Request::builder();
            if let Some(a) = accept {
                b = b.header(ACCEPT, a);
            }
            b.body(()).unwrap()
        };
        assert!(accepts_json(&req(None)));
        assert!(accepts_json(&req(Some("application/json"))));
        assert!(accepts_json(&req(Some("*/*"))));
        assert!(accepts_json(&req(Some("application/*; q=1"))));
        assert!(!accepts_json(&req(Some("text/plain"))));
        assert!(!accepts_json(&req(Some("application/octet-stream"))));
    }
}
