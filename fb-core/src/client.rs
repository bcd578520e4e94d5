//! The cluster client: one reqwest client (rustls, timeouts, no proxy, no automatic
//! redirects) built once and shared. Only idempotent GETs are retried, with bounded backoff
//! and jitter; 401/403 are never retried; the auth token goes only to the node given with
//! `--host` and to nodes the cluster itself listed.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH, LOCATION};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;

use crate::error::{Error, ErrorKind, Result};
use crate::events::{Event, Events};
use crate::rate::RateLimiter;
use crate::topology::{ClusterStatus, Node, NodeUri};

/// Default FeatureBase HTTP port.
pub const DEFAULT_PORT: u16 = 10101;

/// TLS material, as the `--tls.*` flags name it.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// `--tls.ca-certificate`: PEM file of the CA(s) that sign the cluster's certificates.
    pub ca_certificate: Option<PathBuf>,
    /// `--tls.certificate`: PEM client certificate (mTLS).
    pub certificate: Option<PathBuf>,
    /// `--tls.key`: PEM private key of the client certificate.
    pub key: Option<PathBuf>,
    /// `--tls.skip-verify`: accept any server certificate (off by default).
    pub skip_verify: bool,
}

/// How to reach a cluster; the shared cluster flags of contract §3.
#[derive(Clone)]
pub struct ClusterOptions {
    /// `--host` as given.
    pub host: String,
    /// Bearer token, if any. Never printed.
    pub auth_token: Option<String>,
    /// TLS material.
    pub tls: TlsOptions,
    /// Total time budget for retrying one idempotent request.
    pub retry_period: Duration,
    /// Longest wait for a node's response headers, and for each piece of a body.
    pub header_timeout: Duration,
    /// Files moved at once.
    pub concurrency: usize,
    /// `--max-rate`: bytes per second of file bodies, all transfers together; `None`: no limit.
    pub max_rate: Option<u64>,
}

impl std::fmt::Debug for ClusterOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterOptions")
            .field("host", &self.host)
            .field("auth_token", &self.auth_token.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls)
            .field("retry_period", &self.retry_period)
            .field("header_timeout", &self.header_timeout)
            .field("concurrency", &self.concurrency)
            .field("max_rate", &self.max_rate)
            .finish()
    }
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            host: format!("localhost:{DEFAULT_PORT}"),
            auth_token: None,
            tls: TlsOptions::default(),
            retry_period: Duration::from_secs(30),
            header_timeout: Duration::from_secs(60),
            concurrency: 1,
            max_rate: None,
        }
    }
}

/// Parse `--host` as upstream does: `host[:port]`, optionally with `http://` or `https://`;
/// no scheme means http, no port means 10101.
pub fn parse_host(host: &str) -> Result<NodeUri> {
    let bad = |why: &str| Error::usage(format!("--host {host:?}: {why}"));
    let (scheme, rest) = match host.split_once("://") {
        Some(("http", r)) => ("http", r),
        Some(("https", r)) => ("https", r),
        Some((s, _)) => return Err(bad(&format!("unsupported scheme {s:?} (use http or https)"))),
        None => ("http", host),
    };
    let rest = rest.trim_end_matches('/');
    if rest.contains('/') || rest.contains('@') || rest.contains('?') {
        return Err(bad("give only scheme, host and port"));
    }
    let (h, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad("invalid port"))?,
            None if after.is_empty() => DEFAULT_PORT,
            None => return Err(bad("invalid port")),
        };
        (h.to_string(), port)
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().map_err(|_| bad("invalid port"))?),
            None => (rest.to_string(), DEFAULT_PORT),
        }
    };
    let h = if h.is_empty() { "localhost".to_string() } else { h };
    Ok(NodeUri { scheme: scheme.into(), host: h, port })
}

/// Build the rustls client configuration from the TLS flags. Bad material is a refused
/// precondition (exit 78) naming the file.
pub fn tls_config(tls: &TlsOptions) -> Result<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::precondition("TLS setup").with_source(e))?;
    let load_certs = |path: &PathBuf| -> Result<Vec<CertificateDer<'static>>> {
        let certs: Vec<_> = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
            .map_err(|e| Error::precondition(format!("bad TLS material in {}", path.display())).with_source(e))?;
        if certs.is_empty() {
            return Err(Error::precondition(format!("no PEM certificate in {}", path.display())));
        }
        Ok(certs)
    };
    let builder = if tls.skip_verify {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
    } else {
        let mut roots = rustls::RootCertStore::empty();
        match &tls.ca_certificate {
            Some(path) => {
                for cert in load_certs(path)? {
                    roots.add(cert).map_err(|e| {
                        Error::precondition(format!("bad CA certificate in {}", path.display())).with_source(e)
                    })?;
                }
            }
            None => {
                for cert in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(cert);
                }
            }
        }
        builder.with_root_certificates(roots)
    };
    match (&tls.certificate, &tls.key) {
        (Some(cert), Some(key)) => {
            let certs = load_certs(cert)?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| Error::precondition(format!("bad TLS key in {}", key.display())).with_source(e))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| Error::precondition("client certificate and key do not fit together").with_source(e))
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        _ => Err(Error::usage("--tls.certificate and --tls.key go together")),
    }
}

/// `--tls.skip-verify`: signatures are still checked, the certificate chain and name are not.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &[rustls_pki_types::CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The outcome of a GET that may legitimately find nothing.
pub enum Fetched {
    /// 2xx: the response, body not yet read.
    Found(reqwest::Response),
    /// 404, with the start of its body (upstream's bodies tell a missing file from a
    /// refused request).
    NotFound(String),
    /// 400 with this body (dataframes answer "Dataframe is disabled" this way).
    BadRequest(String),
}

/// A client for one cluster, built once and shared by every task of a run.
pub struct ClusterClient {
    http: reqwest::Client,
    entry: NodeUri,
    token: Option<String>,
    /// `host:port` of every node allowed to receive the token.
    allowed: Mutex<HashSet<String>>,
    /// Nodes seen refusing connections: tried last from then on.
    down: Mutex<HashSet<String>>,
    /// The nodes the last `/status` answer listed.
    known: Mutex<Vec<NodeUri>>,
    opts: ClusterOptions,
    events: Events,
    /// `--max-rate`, shared by every transfer of the run.
    rate: Option<RateLimiter>,
}

/// Why one attempt failed, and whether another attempt may help.
struct AttemptError {
    error: Error,
    retryable: bool,
}

impl ClusterClient {
    /// Build the client for `opts`; fails on bad flags (2) or bad TLS material (78).
    pub fn new(opts: &ClusterOptions, events: Events) -> Result<ClusterClient> {
        let entry = parse_host(&opts.host)?;
        // reqwest is built without a default crypto provider; ring is ours (an error only
        // means one is installed already).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(opts.header_timeout.min(Duration::from_secs(10)))
            .read_timeout(opts.header_timeout)
            .pool_max_idle_per_host(opts.concurrency.max(1) * 2)
            .tcp_nodelay(true)
            .no_proxy();
        if entry.scheme == "https" {
            builder = builder.tls_backend_preconfigured(tls_config(&opts.tls)?);
        }
        let http = builder.build().map_err(|e| Error::precondition("building the HTTP client").with_source(e))?;
        let mut allowed = HashSet::new();
        allowed.insert(entry.authority());
        Ok(ClusterClient {
            http,
            entry,
            token: opts.auth_token.clone().filter(|t| !t.is_empty()),
            allowed: Mutex::new(allowed),
            down: Mutex::new(HashSet::new()),
            known: Mutex::new(Vec::new()),
            opts: opts.clone(),
            events,
            rate: opts.max_rate.map(RateLimiter::new),
        })
    }

    /// Wait until `bytes` more of a file body may move under `--max-rate` (at once without
    /// a limit). Every body read by an export and every body sent by an import passes here,
    /// so the limit holds for the run's total whatever `--concurrency` is.
    pub async fn pace(&self, bytes: usize) {
        if let Some(rate) = &self.rate {
            rate.take(bytes).await;
        }
    }

    /// The node given with `--host`.
    pub fn entry_node(&self) -> &NodeUri {
        &self.entry
    }

    /// The options the client was built with.
    pub fn options(&self) -> &ClusterOptions {
        &self.opts
    }

    /// The event sink of this run.
    pub fn events(&self) -> &Events {
        &self.events
    }

    /// Allow the token to go to these nodes (the cluster listed them).
    pub fn trust_nodes(&self, nodes: &[Node]) {
        let mut allowed = self.allowed.lock().expect("lock");
        for n in nodes {
            allowed.insert(n.uri.authority());
        }
    }

    /// Order candidate owners: nodes seen down go last, otherwise the given order is kept.
    pub fn prefer_live<'a>(&self, nodes: &'a [Node]) -> Vec<&'a Node> {
        let down = self.down.lock().expect("lock");
        let (mut live, dead): (Vec<&Node>, Vec<&Node>) = nodes.iter().partition(|n| !down.contains(&n.uri.authority()));
        live.extend(dead);
        live
    }

    fn mark_down(&self, node: &NodeUri) {
        self.down.lock().expect("lock").insert(node.authority());
    }

    /// `GET /status` of the entry node; also trusts the nodes it lists. When the entry node
    /// cannot be reached, the nodes an earlier answer listed are asked in turn, so a run can
    /// still learn the cluster's state after the `--host` node died.
    pub async fn status(&self) -> Result<ClusterStatus> {
        let others: Vec<NodeUri> =
            self.known.lock().expect("lock").iter().filter(|n| **n != self.entry).cloned().collect();
        let mut first_error = None;
        for node in std::iter::once(&self.entry).chain(others.iter()) {
            match self.get_json::<ClusterStatus>(node, "/status").await {
                Ok(status) => {
                    self.trust_nodes(&status.nodes);
                    *self.known.lock().expect("lock") = status.nodes.iter().map(|n| n.uri.clone()).collect();
                    return Ok(status);
                }
                Err(e) if e.kind() == ErrorKind::Unavailable => {
                    first_error.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(first_error.unwrap_or_else(|| Error::unavailable("no node answered /status")))
    }

    /// GET a JSON document, retried on connection errors and 5xx within the retry budget.
    pub async fn get_json<T: DeserializeOwned>(&self, node: &NodeUri, path: &str) -> Result<T> {
        let resp = match self.get(node, path, "application/json").await? {
            Fetched::Found(r) => r,
            Fetched::NotFound(body) => {
                return Err(Error::protocol(format!("{}{path}: 404 Not Found: {}", node.base_url(), body.trim())))
            }
            Fetched::BadRequest(body) => {
                return Err(Error::protocol(format!("{}{path}: 400 Bad Request: {}", node.base_url(), body.trim())))
            }
        };
        let url = resp.url().to_string();
        let body = resp
            .bytes()
            .await
            .map_err(|e| Error::unavailable(format!("{url}: the answer broke off")).with_source(e))?;
        serde_json::from_slice(&body).map_err(|e| {
            Error::protocol(format!("{url}: answer is not the JSON this version understands")).with_source(e)
        })
    }

    /// GET with bounded retries; follows a 303 redirect only to a node of the cluster.
    /// Connection refused ends the attempts on this node at once (the caller fails over).
    pub async fn get(&self, node: &NodeUri, path: &str, accept: &str) -> Result<Fetched> {
        let started = Instant::now();
        let mut attempt: u32 = 0;
        let mut target = node.clone();
        let mut target_path = path.to_string();
        let mut redirects = 0;
        loop {
            attempt += 1;
            match self.attempt_get(&target, &target_path, accept).await {
                Ok(Ok(fetched)) => return Ok(fetched),
                Ok(Err((to, to_path))) => {
                    redirects += 1;
                    if redirects > 3 {
                        return Err(Error::protocol(format!("{}{path}: too many redirects", node.base_url())));
                    }
                    target = to;
                    target_path = to_path;
                    attempt = 0;
                }
                Err(AttemptError { error, retryable }) => {
                    let budget_left = self.opts.retry_period.saturating_sub(started.elapsed());
                    if !retryable || attempt >= 5 || budget_left.is_zero() {
                        return Err(error);
                    }
                    let backoff = backoff(attempt).min(budget_left);
                    self.events.event(Event::Retry {
                        url: format!("{}{}", target.base_url(), target_path),
                        attempt,
                        reason: error.chain(),
                    });
                    tokio::time::sleep(backoff).await;
                }
            }
        }
    }

    /// One attempt: Ok(Ok) = an answer; Ok(Err) = a redirect to follow; Err = failure.
    async fn attempt_get(
        &self,
        node: &NodeUri,
        path: &str,
        accept: &str,
    ) -> std::result::Result<std::result::Result<Fetched, (NodeUri, String)>, AttemptError> {
        let url = format!("{}{}", node.base_url(), path);
        self.events.event(Event::Request { method: "GET", url: url.clone() });
        let mut req = self.http.request(Method::GET, &url).header(ACCEPT, accept);
        if let Some(token) = self.token_for(node) {
            req = req.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        let no_answer = || {
            self.mark_down(node);
            Error::unavailable(format!("{url}: no answer within {:?} (--header-timeout)", self.opts.header_timeout))
        };
        let resp = match tokio::time::timeout(self.opts.header_timeout, req.send()).await {
            Err(_) => return Err(AttemptError { error: no_answer(), retryable: false }),
            // reqwest's read timeout (the same --header-timeout) usually fires first: a node
            // that does not answer in time is not asked again (a hung node would otherwise
            // cost five timeouts per file) and is tried last from then on, like a refusal.
            Ok(Err(e)) if e.is_timeout() => {
                return Err(AttemptError { error: no_answer().with_source(e), retryable: false });
            }
            Ok(Err(e)) => {
                if let Some(error) = tls_refusal(&url, node, &e, self.opts.tls.certificate.is_some()) {
                    return Err(AttemptError { error, retryable: false });
                }
                let refused = e.is_connect();
                if refused {
                    self.mark_down(node);
                }
                return Err(AttemptError {
                    error: Error::unavailable(format!("{url}: cannot connect{}", scheme_hint(node, &e))).with_source(e),
                    retryable: !refused,
                });
            }
            Ok(Ok(r)) => r,
        };
        let status = resp.status();
        if status.is_success() {
            return Ok(Ok(Fetched::Found(resp)));
        }
        if status == StatusCode::SEE_OTHER || status == StatusCode::TEMPORARY_REDIRECT || status == StatusCode::FOUND {
            let location = resp.headers().get(LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
            let (to, to_path) =
                self.redirect_target(&url, &location).map_err(|error| AttemptError { error, retryable: false })?;
            return Ok(Err((to, to_path)));
        }
        let body = body_snippet(resp).await;
        match status {
            StatusCode::NOT_FOUND => Ok(Ok(Fetched::NotFound(body))),
            StatusCode::BAD_REQUEST => Ok(Ok(Fetched::BadRequest(body))),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                Err(AttemptError { error: Error::auth(format!("{url}: {status}: {}", body.trim())), retryable: false })
            }
            s if s.is_server_error() => Err(AttemptError {
                error: Error::unavailable(format!("{url}: {status}: {}", body.trim())),
                retryable: true,
            }),
            s => Err(AttemptError {
                error: Error::protocol(format!("{url}: unexpected {s}: {}", body.trim())),
                retryable: false,
            }),
        }
    }

    fn token_for(&self, node: &NodeUri) -> Option<&str> {
        let allowed = self.allowed.lock().expect("lock").contains(&node.authority());
        self.token.as_deref().filter(|_| allowed)
    }

    /// A redirect may only lead to a node of this cluster; anything else is refused, so the
    /// token is never sent to a stranger.
    fn redirect_target(&self, from: &str, location: &str) -> Result<(NodeUri, String)> {
        let url = reqwest::Url::parse(from)
            .and_then(|base| base.join(location))
            .map_err(|e| Error::protocol(format!("{from}: unreadable redirect {location:?}")).with_source(e))?;
        let host = url.host_str().unwrap_or("").trim_start_matches('[').trim_end_matches(']').to_string();
        let to = NodeUri {
            scheme: url.scheme().to_string(),
            host,
            port: url.port_or_known_default().unwrap_or(DEFAULT_PORT),
        };
        if !self.allowed.lock().expect("lock").contains(&to.authority()) {
            return Err(Error::protocol(format!(
                "{from}: redirect to {} refused: not a node of this cluster",
                to.authority()
            )));
        }
        let mut path = url.path().to_string();
        if let Some(q) = url.query() {
            path.push('?');
            path.push_str(q);
        }
        Ok((to, path))
    }

    /// POST a body once (never retried: it may come from a stream that cannot be replayed).
    /// 2xx is success; anything else is an error naming the node and the status.
    pub async fn post(
        &self,
        node: &NodeUri,
        path: &str,
        body: reqwest::Body,
        length: Option<u64>,
        content_type: &str,
    ) -> Result<()> {
        let url = format!("{}{}", node.base_url(), path);
        self.events.event(Event::Request { method: "POST", url: url.clone() });
        let mut req = self
            .http
            .request(Method::POST, &url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .header(ACCEPT, "application/json")
            .body(body);
        if let Some(len) = length {
            req = req.header(CONTENT_LENGTH, len);
        }
        if let Some(token) = self.token_for(node) {
            req = req.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        let resp = req.send().await.map_err(|e| {
            if let Some(error) = tls_refusal(&url, node, &e, self.opts.tls.certificate.is_some()) {
                return error;
            }
            let kind = if e.is_connect() { ErrorKind::Unavailable } else { ErrorKind::Io };
            Error::new(kind, format!("POST {url}: sending failed{}", scheme_hint(node, &e))).with_source(e)
        })?;
        let status = resp.status();
        if status.is_success() {
            // Drain the small answer so the connection can be reused.
            let _ = resp.bytes().await;
            return Ok(());
        }
        let body = body_snippet(resp).await;
        let msg = format!("POST {url}: {status}: {}", body.trim());
        Err(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Error::auth(msg),
            s if s.is_server_error() => Error::unavailable(msg),
            _ => Error::protocol(msg),
        })
    }
}

impl ClusterClient {
    /// POST a small text body (a PQL query) and read its whole answer, whatever its status:
    /// a query's answer is a bounded JSON document, and upstream reports a refused query as
    /// a 400 whose body says why. Never retried. 401/403 is an authentication error, a
    /// request that cannot be sent or read is `Unavailable`.
    pub(crate) async fn post_for_answer(
        &self,
        node: &NodeUri,
        path: &str,
        body: String,
    ) -> Result<(StatusCode, bytes::Bytes)> {
        let url = format!("{}{}", node.base_url(), path);
        self.events.event(Event::Request { method: "POST", url: url.clone() });
        let mut req = self
            .http
            .request(Method::POST, &url)
            .header(reqwest::header::CONTENT_TYPE, "text/plain")
            .header(ACCEPT, "application/json")
            .body(body);
        if let Some(token) = self.token_for(node) {
            req = req.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        let resp = req.send().await.map_err(|e| {
            if let Some(error) = tls_refusal(&url, node, &e, self.opts.tls.certificate.is_some()) {
                return error;
            }
            Error::unavailable(format!("POST {url}: sending failed{}", scheme_hint(node, &e))).with_source(e)
        })?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let body = body_snippet(resp).await;
            return Err(Error::auth(format!("POST {url}: {status}: {}", body.trim())));
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| Error::unavailable(format!("POST {url}: the answer broke off")).with_source(e))?;
        Ok((status, body))
    }
}

/// The TLS error in a request failure's cause chain, if any.
fn rustls_cause<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut cur: Option<&'a (dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<rustls::Error>() {
            return Some(t);
        }
        if let Some(t) = err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            if let Some(t) = t.downcast_ref::<rustls::Error>() {
                return Some(t);
            }
        }
        cur = err.source();
    }
    None
}

/// A TLS handshake that failed because one side did not accept the other's certificate is
/// not an unreachable node (contract §4): the server's certificate not trusted here is a
/// refused precondition (78); our client certificate refused, or none given to a server that
/// ended the handshake with an alert, is an authentication failure (77). Other failures are
/// left to the caller.
fn tls_refusal(url: &str, node: &NodeUri, e: &reqwest::Error, have_client_cert: bool) -> Option<Error> {
    let at = node.authority();
    // The rustls error as a value where the chain keeps it, else as the text rustls prints.
    let text = error_chain_text(e);
    let (untrusted, alert) = match rustls_cause(e) {
        Some(rustls::Error::InvalidCertificate(_)) => (true, None),
        Some(rustls::Error::AlertReceived(a)) => (false, Some(format!("{a:?}"))),
        _ => (
            text.contains("invalid peer certificate"),
            text.split("received fatal alert: ")
                .nth(1)
                .map(|rest| rest.split_whitespace().next().unwrap_or("").to_string()),
        ),
    };
    if untrusted {
        return Some(
            Error::precondition(format!(
                "{url}: the server certificate of {at} is not trusted; give the CA that signed the cluster's certificates with --tls.ca-certificate FILE"
            ))
            .with_source(e.to_string()),
        );
    }
    // A fatal alert from the server during the handshake: the server refused us at the
    // TLS layer, which in practice is about the client certificate (Go servers send
    // "bad certificate" or "certificate required"; a rustls server can end with
    // "decrypt error" when it refused the certificate after the client's Finished).
    let alert = alert?;
    let hint = if have_client_cert {
        "it does not accept the client certificate given; check --tls.certificate and --tls.key"
    } else {
        "it may require a client certificate; give one with --tls.certificate FILE --tls.key FILE"
    };
    Some(
        Error::auth(format!("{url}: {at} refused the TLS handshake (alert {alert}): {hint}"))
            .with_source(e.to_string()),
    )
}

/// A hint when the scheme does not match what the node speaks: TLS bytes answered to plain
/// HTTP, or an answer that is not TLS to an https:// request.
fn scheme_hint(node: &NodeUri, e: &reqwest::Error) -> &'static str {
    let text = error_chain_text(e);
    if node.scheme == "https" {
        if matches!(
            rustls_cause(e),
            Some(rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. })
        ) || text.contains("InvalidContentType")
        {
            return " (the node did not answer in TLS: is it plain HTTP? try http://)";
        }
    } else if text.contains("invalid HTTP version") || text.contains("connection closed before message completed") {
        return " (the node's answer is not plain HTTP: if the cluster uses TLS, try https://)";
    }
    ""
}

/// Every cause of an error, as printed, for the few facts only the text carries.
fn error_chain_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = String::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        out.push_str(&format!("{err} | "));
        cur = err.source();
    }
    out
}

async fn body_snippet(resp: reqwest::Response) -> String {
    match resp.bytes().await {
        Ok(b) => String::from_utf8_lossy(&b[..b.len().min(300)]).into_owned(),
        Err(_) => String::new(),
    }
}

/// Exponential backoff with jitter: about 100 ms, 200 ms, 400 ms, ... capped at 2 s.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let base = 100u64 << attempt.min(5).saturating_sub(1);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let jitter = u64::from(nanos) % (base / 2 + 1);
    Duration::from_millis((base + jitter).min(2000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_forms() {
        let h = parse_host("db1:10101").unwrap();
        assert_eq!((h.scheme.as_str(), h.host.as_str(), h.port), ("http", "db1", 10101));
        let h = parse_host("https://db1").unwrap();
        assert_eq!((h.scheme.as_str(), h.host.as_str(), h.port), ("https", "db1", 10101));
        let h = parse_host("http://[::1]:9000/").unwrap();
        assert_eq!((h.host.as_str(), h.port), ("::1", 9000));
        assert_eq!(h.base_url(), "http://[::1]:9000");
        assert_eq!(parse_host("ftp://x").unwrap_err().exit_code(), 2);
        assert_eq!(parse_host("x:notaport").unwrap_err().exit_code(), 2);
        assert_eq!(parse_host("x:1/path").unwrap_err().exit_code(), 2);
    }
}
