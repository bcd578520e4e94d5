//! Reading a request as upstream does: query arguments and their validation, the Accept
//! rules, JSON bodies, and bodies streamed into a node's files.
//!
//! Layer: http (a part of it; imports the leaf `store`).

use std::io;

use http::header::ACCEPT;
use http::Request;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

/// Query arguments a route accepts (upstream's validators), required ones first.
pub(super) struct ArgSpec {
    pub(super) required: &'static [&'static str],
    pub(super) optional: &'static [&'static str],
}

pub(super) const NO_ARGS: ArgSpec = ArgSpec { required: &[], optional: &[] };

/// Read a JSON request body; an empty body is `null` (Go's decoder sees `io.EOF`).
pub(super) async fn json_body(req: Request<Incoming>) -> Result<Value, String> {
    let bytes = req.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

/// Stream a request body into `path`, replacing the file atomically once it is complete.
pub(super) async fn receive_file(mut body: Incoming, path: &std::path::Path) -> io::Result<u64> {
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

/// Upstream's Accept rule: no Accept header passes; otherwise one value must be
/// `application/json`, `*/json`, `application/*` or `*/*`.
pub(super) fn accepts_json<B>(req: &Request<B>) -> bool {
    accepts(req, "application", "json")
}

/// Upstream `validHeaderAcceptType`: no Accept header passes; otherwise one value must be
/// `typ/sub`, `*/sub`, `typ/*` or `*/*`.
pub(super) fn accepts<B>(req: &Request<B>, typ: &str, sub: &str) -> bool {
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

pub(super) fn validate_args(spec: &ArgSpec, query: &[(String, String)]) -> Result<(), String> {
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
pub(super) fn parse_query(q: &str) -> Vec<(String, String)> {
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
