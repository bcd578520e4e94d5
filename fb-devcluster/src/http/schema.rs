//! The schema routes that change it: `POST /schema`, `POST /index/{index}` and
//! `POST /index/{index}/field/{field}`, with upstream's checks and messages in its order.
//!
//! Layer: http (a part of it; imports `cluster` and the leaf `schema_doc`).

use std::io;
use std::sync::Arc;

use http::{Request, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{json, Value};

use super::refused;
use super::request::json_body;
use super::response::{created_response, failure_response, text, with_status, Resp};
use crate::body;
use crate::cluster::{Cluster, State};
use crate::schema_doc::SchemaDoc;

pub(super) async fn post_schema(cluster: &Arc<Cluster>, req: Request<Incoming>) -> io::Result<Resp> {
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

/// `POST /index/{index}` (upstream `handlePostIndex`, `API.CreateIndex`): options
/// `keys` (default false), `trackExistence` (default true), `partitionN`, `description`;
/// any other key is refused.
pub(super) async fn post_index(
    cluster: &Arc<Cluster>,
    state: State,
    index: &str,
    req: Request<Incoming>,
) -> io::Result<Resp> {
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
pub(super) async fn post_field(
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

fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}
