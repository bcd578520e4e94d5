//! Upstream's auth wrappers (`chkAuthN`, `chkAuthZ`): who sent a request and whether the
//! route lets them in.
//!
//! Layer: http (a part of it; imports `cluster` and `config`).

use http::header::AUTHORIZATION;
use http::{Request, StatusCode};
use hyper::body::Incoming;

use crate::cluster::Cluster;
use crate::config::ReadToken;

/// Which check a route's auth wrapper makes upstream (http_handler.go `NewRouter`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Auth {
    /// No token needed.
    None,
    /// `chkAuthN`: 401 on a missing or bad token; any valid token passes.
    AuthN,
    /// `chkAuthZ`: 403 on a missing or bad token, then the permission check.
    AuthZ(Perm),
}

/// The permission a `chkAuthZ` route asks for (upstream `authz.Permission`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Perm {
    Read,
    Write,
    Admin,
}

/// Who sent a request, as far as auth goes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Caller {
    /// Auth is off.
    Open,
    /// The admin token.
    Admin,
    /// The k-th read token.
    Reader(usize),
}

/// Upstream `chkAuthN` / `chkAuthZ` (http_handler.go): authenticate the bearer token, then
/// for `chkAuthZ` routes check the permission. A non-admin token is refused admin routes;
/// on other routes it is checked against the index the request names (path variable, else
/// `index` query argument) and passes when the request names none.
pub(super) fn check_auth(
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
fn check_permission(token: &ReadToken, k: usize, perm: Perm, index: Option<&str>) -> Result<(), (StatusCode, String)> {
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
