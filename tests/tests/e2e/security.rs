//! TLS verification, client certificates, auth refusals, the token's secrecy and
//! the token's destinations, against fb-devcluster and a small fake node on loopback.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fb_devcluster::TlsFiles;
use fbkit_tests::*;

fn tls_cluster(pki: &Pki, mtls: bool) -> RunningCluster {
    spawn(ClusterConfig {
        nodes: 2,
        demo: true,
        tls: Some(TlsFiles {
            cert: pki.path("cert.pem"),
            key: pki.path("key.pem"),
            client_ca: mtls.then(|| pki.path("ca.pem")),
        }),
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn tls_is_verified_by_default_and_works_with_the_ca() {
    let pki = Pki::new();
    let c = tls_cluster(&pki, false);
    let url = c.urls()[0].clone();
    assert!(url.starts_with("https://"));
    let out = run("fb-export", &["--host", &url, "-q"], None);
    assert_eq!(code(&out), 78, "an untrusted server certificate is a refused precondition: {}", stderr(&out));
    assert!(out.stdout.is_empty(), "no archive bytes from an unverified server");
    let err = stderr(&out);
    assert!(
        err.contains("not trusted") && err.contains("--tls.ca-certificate"),
        "names the problem and the flag: {err}"
    );
    let out = run("fb-export", &["--host", &url, "-q", "--tls.ca-certificate", &pki.path_str("ca.pem")], None);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v = run("fb-verify", &["-q", "-"], Some(&out.stdout));
    assert_eq!(code(&v), 0, "{}", stderr(&v));
    // A CA file that is not PEM is bad TLS material (78), named.
    let out = run("fb-export", &["--host", &url, "-q", "--tls.ca-certificate", &pki.path_str("key.pem")], None);
    assert_eq!(code(&out), 78, "{}", stderr(&out));
}

#[test]
fn mtls_needs_the_client_certificate() {
    let pki = Pki::new();
    let c = tls_cluster(&pki, true);
    let url = c.urls()[0].clone();
    let ca = pki.path_str("ca.pem");
    let out = run("fb-export", &["--host", &url, "-q", "--tls.ca-certificate", &ca], None);
    assert_ne!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(code(&out), 77, "a client certificate the server requires is an auth failure: {}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("--tls.certificate"), "the message names the missing client certificate: {err}");
    // A client certificate from a CA the server does not know is refused the same way.
    let other = Pki::new();
    let (cert, key) = (other.path_str("client.pem"), other.path_str("client-key.pem"));
    let args =
        ["--host", url.as_str(), "-q", "--tls.ca-certificate", &ca, "--tls.certificate", &cert, "--tls.key", &key];
    let out = run("fb-export", &args, None);
    assert_eq!(code(&out), 77, "{}", stderr(&out));
    // Plain HTTP to a TLS node gets a hint.
    let plain = url.replacen("https://", "http://", 1);
    let out = run("fb-export", &["--host", &plain, "-q"], None);
    assert_eq!(code(&out), 69, "{}", stderr(&out));
    assert!(stderr(&out).contains("try https://"), "{}", stderr(&out));
    let (cert, key) = (pki.path_str("client.pem"), pki.path_str("client-key.pem"));
    let args =
        ["--host", url.as_str(), "-q", "--tls.ca-certificate", &ca, "--tls.certificate", &cert, "--tls.key", &key];
    let out = run("fb-export", &args, None);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(code(&run("fb-verify", &["-q", "-"], Some(&out.stdout))), 0);
}

const TOKEN: &str = "fbkit-SECRET-token-3f9a1c";

fn auth_cluster() -> RunningCluster {
    spawn(ClusterConfig { nodes: 2, replicas: 2, demo: true, auth_token: Some(TOKEN.into()), ..Default::default() })
        .unwrap()
}

#[test]
fn a_wrong_token_is_77_after_one_request() {
    let c = auth_cluster();
    let url = c.urls()[0].clone();
    let out = run("fb-export", &["--host", &url, "-vv", "--progress", "never", "--auth-token", "wrong"], None);
    assert_eq!(code(&out), 77, "{}", stderr(&out));
    let err = stderr(&out);
    let requests: Vec<&str> = err.lines().filter(|l| l.starts_with("fb-export: GET ")).collect();
    assert_eq!(requests.len(), 1, "one request, no retry: {err}");
    assert!(!err.contains("retry"), "{err}");
    // No token at all is refused the same way.
    let out = run("fb-export", &["--host", &url, "-q"], None);
    assert_eq!(code(&out), 77, "{}", stderr(&out));
    // fb-import and fb-manifest of a live cluster too.
    let out = run("fb-manifest", &["--host", &url, "-q", "--auth-token", "wrong"], None);
    assert_eq!(code(&out), 77, "{}", stderr(&out));
}

fn assert_no_token(what: &str, out: &[u8], err: &str) {
    let needle = TOKEN.as_bytes();
    assert!(!out.windows(needle.len()).any(|w| w == needle), "{what}: the token is in stdout");
    assert!(!err.contains(TOKEN), "{what}: the token is in stderr:\n{err}");
    // Nor a recognisable piece of it.
    assert!(!err.contains(&TOKEN[6..18]), "{what}: part of the token is in stderr:\n{err}");
}

#[test]
fn the_token_never_appears_in_any_output() {
    let c = auth_cluster();
    let url = c.urls()[0].clone();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tok"), format!("{TOKEN}\n")).unwrap();
    let tok_file = dir.path().join("tok").to_string_lossy().into_owned();
    let vv = ["--host", url.as_str(), "-vv", "--progress", "json"];
    // Three ways to give it, each with -vv and JSON progress.
    let with_flag = run("fb-export", &[&vv[..], &["--auth-token", TOKEN]].concat(), None);
    assert_eq!(code(&with_flag), 0, "{}", stderr(&with_flag));
    assert_no_token("--auth-token", &with_flag.stdout, &stderr(&with_flag));
    let bg = Background::start("fb-export", &vv, &[("FBKIT_AUTH_TOKEN", TOKEN)]);
    let (status, out, err) = bg.finish(Duration::from_secs(120));
    assert_eq!(status, 0, "{err}");
    assert_no_token("FBKIT_AUTH_TOKEN", &out, &err);
    assert!(out == with_flag.stdout);
    let out = run("fb-export", &[&vv[..], &["--auth-token-file", &tok_file]].concat(), None);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_no_token("--auth-token-file", &out.stdout, &stderr(&out));
    let archive = out.stdout;
    // Failures with the right token: a node down (retries, failovers), a bad --index, the
    // other tools.
    c.add_fault("down@1").unwrap();
    c.add_fault("error@0:503:2:/internal/").unwrap();
    let out = run("fb-export", &[&vv[..], &["--auth-token", TOKEN]].concat(), None);
    assert_no_token("export with a node down", &out.stdout, &stderr(&out));
    assert!(stderr(&out).contains("retry"), "{}", stderr(&out));
    c.clear_faults();
    let out = run("fb-export", &[&vv[..], &["--auth-token", TOKEN, "--index", "nosuch"]].concat(), None);
    assert_eq!(code(&out), 2);
    assert_no_token("bad --index", &out.stdout, &stderr(&out));
    let out = run("fb-manifest", &[&vv[..], &["--auth-token", TOKEN]].concat(), None);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_no_token("fb-manifest --host", &out.stdout, &stderr(&out));
    let out = run("fb-import", &[&vv[..], &["--auth-token", TOKEN]].concat(), Some(&archive));
    assert_eq!(code(&out), 78, "not empty: {}", stderr(&out));
    assert_no_token("fb-import refused", &out.stdout, &stderr(&out));
    let dst = spawn(ClusterConfig { nodes: 1, auth_token: Some(TOKEN.into()), ..Default::default() }).unwrap();
    let dst_url = dst.urls()[0].clone();
    let args = ["--host", dst_url.as_str(), "-vv", "--progress", "json", "--auth-token-file", &tok_file];
    let out = run("fb-import", &args, Some(&archive));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_no_token("fb-import", &out.stdout, &stderr(&out));
    // An unreadable token file names the file, not the contents.
    let out = run("fb-export", &["--host", &url, "--auth-token-file", "/nonexistent/tok"], None);
    assert_ne!(code(&out), 0);
    assert!(stderr(&out).contains("/nonexistent/tok"), "{}", stderr(&out));
}

// ---- redirects ----

/// What a fake listener saw.
#[derive(Default)]
struct Seen {
    connections: usize,
    requests: Vec<String>,
    authorization: usize,
}

/// Serve HTTP/1.1 on a loopback listener from a thread: `answer(path)` gives (status line,
/// extra headers, body). Connections are closed after each answer.
fn fake_server(answer: impl Fn(&str) -> (String, String, String) + Send + 'static) -> (u16, Arc<Mutex<Seen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            seen2.lock().unwrap().connections += 1;
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut first = String::new();
            if reader.read_line(&mut first).is_err() {
                continue;
            }
            let path = first.split_whitespace().nth(1).unwrap_or("").to_string();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if line.to_ascii_lowercase().starts_with("authorization:") {
                    seen2.lock().unwrap().authorization += 1;
                }
            }
            seen2.lock().unwrap().requests.push(path.clone());
            let (status, headers, body) = answer(&path);
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n{body}",
                body.len()
            );
        }
    });
    (port, seen)
}

#[test]
fn a_redirect_off_the_node_list_is_refused_and_gets_no_token() {
    let (evil_port, evil) = fake_server(|_| ("200 OK".into(), String::new(), "{}".into()));
    let (port, node) = fake_server(move |path| {
        let me = |port: u16| {
            format!(
                r#"{{"id":"n0","uri":{{"scheme":"http","host":"127.0.0.1","port":{port}}},"isPrimary":true,"state":"STARTED"}}"#
            )
        };
        let ok = |body: String| ("200 OK".to_string(), String::new(), body);
        match path.split('?').next().unwrap_or("") {
            "/status" => ok(format!(
                r#"{{"state":"NORMAL","nodes":[{}],"localID":"n0","clusterName":"fake"}}"#,
                me(NODE_PORT.load(std::sync::atomic::Ordering::SeqCst))
            )),
            "/version" => ok(r#"{"version":"v0.0.0"}"#.into()),
            "/info" => ok(r#"{"replicaN":1}"#.into()),
            "/queries" => ok("[]".into()),
            "/schema" => ok(r#"{"indexes":[{"name":"users","options":{"keys":true},"fields":[]}]}"#.into()),
            "/internal/partition/nodes" => ok(format!("[{}]", me(NODE_PORT.load(std::sync::atomic::Ordering::SeqCst)))),
            "/internal/index/users/shards" => ok(r#"{"shards":[]}"#.into()),
            "/internal/translate/data" => {
                ("303 See Other".into(), format!("Location: http://127.0.0.1:{evil_port}{path}\r\n"), String::new())
            }
            _ => ("404 Not Found".into(), String::new(), "not found".into()),
        }
    });
    NODE_PORT.store(port, std::sync::atomic::Ordering::SeqCst);
    let out = run(
        "fb-export",
        &["--host", &format!("127.0.0.1:{port}"), "-v", "--progress", "never", "--auth-token", "redirect-secret"],
        None,
    );
    // No owner can serve the key partition: 69 (or 76 for the refused answer itself).
    assert!(matches!(code(&out), 69 | 76), "exit {}: {}", code(&out), stderr(&out));
    assert!(stderr(&out).contains("refused: not a node of this cluster"), "{}", stderr(&out));
    assert!(!out.stdout.windows(13).any(|w| w == b"MANIFEST.json"));
    let node = node.lock().unwrap();
    assert!(node.requests.iter().any(|p| p.starts_with("/internal/translate/data")), "the redirect was met");
    assert!(node.authorization > 0, "the listed node got the token");
    let evil = evil.lock().unwrap();
    assert_eq!(evil.authorization, 0, "the token went to a host the cluster did not list");
    assert_eq!(evil.connections, 0, "nothing was sent to the stranger: {:?}", evil.requests);
}

/// The fake node's own port, for the node list it serves (known only once it listens).
static NODE_PORT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
