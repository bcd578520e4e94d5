//! `GET /internal/translate/data`: key-store downloads, served by the first live owner
//! and redirected there from every other node.
//!
//! Layer: http (a part of it; imports `cluster` and the leaf `placeholder`).

use std::io;
use std::sync::Arc;

use fb_core::layout::{EntryPath, PARTITION_N};
use http::{Request, StatusCode};
use hyper::body::Incoming;

use super::refused;
use super::response::{redirect, stream_bytes, stream_file, text, Resp};
use crate::cluster::Cluster;

/// `GET /internal/translate/data` (upstream `handleGetTranslateData`, `API.TranslateData`
/// and `API.FieldTranslateData`): every error is a 404 with the error's text, including the
/// refusal outside state NORMAL; a node that is not the first owner listed STARTED
/// redirects (303) to it, even when that owner is dead but not yet noticed.
pub(super) async fn translate_data(
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
