//! Answers as upstream's server writes them: Go's `http.Error` text, JSON with Go's
//! encoder and chunking threshold, streamed files, redirects and `successResponse`s.
//!
//! Layer: http (a part of it; imports the leaf `body`).

use std::io;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{json, Value};

use crate::body::{self, Body};

pub(super) type Resp = Response<Body>;

/// Upstream's `successResponse.write` for a failure: the JSON document as plain text.
pub(super) fn failure_response(status: StatusCode, name: &str, created_at: Option<i64>, message: &str) -> Resp {
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
pub(super) fn created_response(name: &str, created_at: i64) -> Resp {
    json_resp(&json!({ "success": true, "name": name, "createdAt": created_at }))
}

/// 303 See Other to the same path and query on another node. Like upstream, the Location
/// is scheme-relative (`//host:port/path?query`): the client keeps its scheme.
pub(super) fn redirect(req: &Request<Incoming>, port: u16) -> Resp {
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

pub(super) fn with_status(status: StatusCode, body: Body) -> Resp {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    resp
}

/// Go's `http.Error`: the message and a newline as plain text.
pub(super) fn text(status: StatusCode, msg: &str) -> Resp {
    let mut resp = with_status(status, body::full(format!("{msg}\n")));
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    resp
}

/// The `OK` answer of the restore routes.
pub(super) fn ok_text() -> Resp {
    let mut resp = with_status(StatusCode::OK, body::full(Bytes::from_static(b"OK")));
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}

/// Upstream's `successResponse` for the translate restore routes.
pub(super) fn success_response(name: &str, result: Result<(), String>) -> Resp {
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

pub(super) fn json_resp<T: serde::Serialize>(v: &T) -> Resp {
    json_bytes(encode(v))
}

/// Go's server announces a Content-Length only for replies that fit its 2048-byte buffer;
/// longer ones are sent chunked.
const GO_CHUNKING_THRESHOLD: usize = 2048;

pub(super) fn json_bytes(bytes: Vec<u8>) -> Resp {
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
pub(super) fn stream_file(file: tokio::fs::File, len: Option<u64>) -> Resp {
    let mut resp = with_status(StatusCode::OK, body::file(file));
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    if let Some(len) = len {
        h.insert(CONTENT_LENGTH, HeaderValue::from(len));
    }
    resp
}

/// Bytes generated on the fly, sent chunked like a streamed file.
pub(super) fn stream_bytes(bytes: Bytes) -> Resp {
    let body = http_body_util::StreamBody::new(futures_util::stream::iter([Ok::<_, io::Error>(
        http_body::Frame::data(bytes),
    )]));
    let mut resp = with_status(StatusCode::OK, body.boxed_unsync());
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    resp
}
