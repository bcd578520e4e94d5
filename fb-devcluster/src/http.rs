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
use crate::cluster::Cluster;
use crate::fault::FaultSpec;
use crate::schema_doc::SchemaDoc;

/// The version `/version` reports.
pub const VERSION: &str = "3.35.0-devcluster";

/// Error of the service: the connection is dropped without an answer.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Abandon(&'static str);

type Resp = Response<Body>;

/// Which check a route's auth wrapper makes upstream.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Auth {
    /// No token needed.
    None,
    /// `chkAuthN`: 401 on a missing or bad token.
    AuthN,
    /// `chkAuthZ`: 403 on a missing or bad token.
    AuthZ,
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
    Faults,
}

impl Route {
    fn auth(&self) -> Auth {
        use Route::*;
        match self {
            Version => Auth::None,
            Nodes | FragmentNodes | PartitionNodes | IdallocData | IdallocRestore | Faults => Auth::AuthN,
            _ => Auth::AuthZ,
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
            Status | Info | Version | GetSchema | Nodes | Shards(_) | FragmentNodes | PartitionNodes | DiskUsage(_)
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
        ["internal", "dataframe", "restore", i, sh] => (Route::DataframeRestore(s(i), s(sh)), &[&post]),
        ["internal", "disk-usage"] => (Route::DiskUsage(None), &[&get]),
        ["internal", "disk-usage", i] => (Route::DiskUsage(Some(s(i))), &[&get]),
        ["_fbkit", "fault"] => (Route::Faults, &[&get, &post, &delete]),
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
    let control = matches!(r, Route::Faults);

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
    if let Some(resp) = check_auth(&cluster, r.auth(), &req) {
        return Ok(resp);
    }
    if r.json_only() && !accepts_json(&req) {
        return Ok(text(StatusCode::NOT_ACCEPTABLE, "JSON only acceptable response"));
    }

    let resp = dispatch(&cluster, node, r, &query, req).await;
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
    query: &[(String, String)],
    req: Request<Incoming>,
) -> io::Result<Resp> {
    let q = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str()).unwrap_or("");
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
            let body = cluster.schema().response_body(q("views") == "true");
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
            let owners = cluster.shard_owners(q("index"), shard);
            Ok(json_resp(&owners.iter().map(|&i| cluster.node_json(i)).collect::<Vec<_>>()))
        }
        Route::PartitionNodes => {
            let Ok(partition) = q("partition").parse::<u32>() else {
                return Ok(text(StatusCode::BAD_REQUEST, "shard should be an unsigned integer"));
            };
            let owners = cluster.partition_owners(partition);
            Ok(json_resp(&owners.iter().map(|&i| cluster.node_json(i)).collect::<Vec<_>>()))
        }
        Route::Snapshot(index, shard) => snapshot(cluster, node, &index, &shard).await,
        Route::IdallocData => {
            let store = &cluster.nodes[node].store;
            let path = store.root().join("idalloc");
            match tokio::fs::File::open(&path).await {
                Ok(f) => Ok(stream_file(f, None)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(stream_bytes(crate::data::empty_idalloc()?.into())),
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
            if cluster.schema().index(&index).is_none() {
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
            if cluster.schema().index(&index).is_none() {
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
        Route::Faults => control(cluster, req).await,
    }
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
    crate::schema_doc::widen_zero_bounds(&mut posted);
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
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(stream_bytes(crate::data::empty_shard()?.into())),
        Err(e) => Ok(text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())),
    }
}

async fn translate_data(
    cluster: &Arc<Cluster>,
    node: usize,
    req: &Request<Incoming>,
    index: &str,
    partition: &str,
    field: &str,
) -> io::Result<Resp> {
    let store = &cluster.nodes[node].store;
    if !field.is_empty() {
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
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(stream_bytes(crate::data::empty_key_store()?.into())),
            Err(e) => Ok(text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())),
        };
    }
    let Ok(p) = partition.parse::<u32>() else {
        return Ok(text(StatusCode::BAD_REQUEST, "partition or field required"));
    };
    if cluster.schema().index(index).is_none() {
        return Ok(text(StatusCode::NOT_FOUND, &format!("{index}: index not found")));
    }
    // The first owner that is up serves the partition; any other node redirects to it.
    let Some(server) = cluster.partition_owners(p).into_iter().find(|&o| !cluster.nodes[o].down.load(Ordering::SeqCst))
    else {
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
            match cluster.add_fault(spec) {
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

fn check_auth(cluster: &Cluster, auth: Auth, req: &Request<Incoming>) -> Option<Resp> {
    let want = cluster.settings.auth_token.as_deref()?;
    if auth == Auth::None {
        return None;
    }
    let given = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once("Bearer ").map(|(_, t)| t))
        .unwrap_or("");
    let reason = if given.is_empty() {
        "auth token is empty".to_string()
    } else if given == want {
        return None;
    } else if given.split('.').count() != 3 {
        "parsing auth token: token contains an invalid number of segments".to_string()
    } else {
        "parsing auth token: signature is invalid".to_string()
    };
    let status = match auth {
        Auth::AuthN => StatusCode::UNAUTHORIZED,
        _ => StatusCode::FORBIDDEN,
    };
    Some(text(status, &format!("authenticating: {reason}")))
}

/// Upstream's Accept rule: no Accept header passes; otherwise one value must be
/// `application/json`, `*/json`, `application/*` or `*/*`.
fn accepts_json<B>(req: &Request<B>) -> bool {
    let mut values = req.headers().get_all(ACCEPT).iter().peekable();
    if values.peek().is_none() {
        return true;
    }
    values.any(|v| {
        let Ok(v) = v.to_str() else { return false };
        let media = v.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        matches!(
            media.split_once('/'),
            Some(("application", "json")) | Some(("*", "json")) | Some(("application", "*")) | Some(("*", "*"))
        )
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
