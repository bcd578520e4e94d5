//! Real FeatureBase (`FEATUREBASE_BIN`, v3.35) in the situations a backup meets in
//! production: a node killed before or during an export, a node frozen with SIGSTOP, a
//! cluster with authentication, and every field type through every restorer. Each test is
//! skipped with a message when `FEATUREBASE_BIN` is unset (CI never has it). Run them with
//! `--nocapture --test-threads 1` to see what they saw: exit codes, entries written, the
//! first lines of stderr, and one table per test.
//!
//! The rule every fault case checks: an export never exits 0 with a key store missing.
//! Either it exits 0 with the whole archive (the healthy export's entries, all 256 key
//! partitions and the field key store, `fb-verify --deep` passing), or it exits 69 without
//! a `MANIFEST.json`, naming the node down and, for a killed node, the state DEGRADED (a
//! real cluster serves no key translation outside NORMAL: protocol notes §9). A node frozen
//! for 5 s and then resumed must not fail the export at all (`--retry-period 20s`).
//!
//! What v3.35 does, as measured here: a killed node is listed STARTED for a few seconds,
//! then UNKNOWN with the cluster DEGRADED (about 5-8 s with the default 5 s etcd heartbeat
//! TTL); a frozen node is usually noticed the same way, but in some runs `/status` kept
//! saying NORMAL for the whole freeze while the key-translation endpoints already answered
//! 404 "not allowed in state DEGRADED" (or "DOWN", from the resumed node itself).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fb_devcluster::upstream::{Auth, Config, Tls};
use fbkit_tests::*;
use serde_json::{json, Value};

use crate::interop::{curl, data_entries, fixture, upstream};

const SHARD_WIDTH: u64 = 1 << 20;
/// Keys of the keyed index: a keyed index allocates column IDs per key partition, so 300
/// keys fill about 190 shards (and all 256 key partitions exist either way).
const USER_KEYS: usize = 300;
/// Shards of the unkeyed index.
const EVENT_SHARDS: u64 = 40;
/// Bytes a slow consumer reads before it pauses: past the schema and a few shards of an
/// archive of about 20 MB.
const PAUSE_AT: usize = 1 << 20;
/// Upper bound for one export in these tests.
const EXPORT_LIMIT: Duration = Duration::from_secs(150);

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// POST a body to a cluster, asserting 200.
fn post_ok(url: &str, path: &str, body: &str) {
    let (status, text) = curl("POST", &format!("{url}{path}"), Some(body));
    assert_eq!(status, 200, "POST {path}: {text}");
}

/// A keyed index `users` (300 keys, a set field and a keyed set field `city`) and an
/// unkeyed index `events` with 40 shards.
fn load_keyed_and_sharded(url: &str) {
    post_ok(url, "/index/users", r#"{"options":{"keys":true}}"#);
    post_ok(url, "/index/users/field/city", r#"{"options":{"keys":true}}"#);
    post_ok(url, "/index/users/field/f", "");
    post_ok(url, "/index/events", "");
    post_ok(url, "/index/events/field/f", "");
    let q: String = (0..USER_KEYS).map(|k| format!("Set(\"k{k}\", f=1) Set(\"k{k}\", city=\"c{}\") ", k % 7)).collect();
    post_ok(url, "/index/users/query", &q);
    let q: String = (0..EVENT_SHARDS)
        .flat_map(|s| (1..=5u64).map(move |c| format!("Set({}, f={c}) ", s * SHARD_WIDTH + c * 1000)))
        .collect();
    post_ok(url, "/index/events/query", &q);
}

/// `/status` of one node as JSON; Null when it does not answer within 5 s (a frozen node
/// must not hold up a watcher).
fn status_of(url: &str) -> Value {
    fb_devcluster::upstream::status(url, None, None)
}

/// "NORMAL [STARTED STARTED UNKNOWN]" for messages and logs.
fn state_line(url: &str) -> String {
    let s = status_of(url);
    let nodes: Vec<String> = s["nodes"]
        .as_array()
        .map(|a| a.iter().map(|n| n["state"].as_str().unwrap_or("?").to_string()).collect())
        .unwrap_or_default();
    format!("{} [{}]", s["state"].as_str().unwrap_or("no answer"), nodes.join(" "))
}

/// Poll `/status` of `url` until the cluster state is `want`; the time it took, or None
/// after `limit`.
fn wait_for_state(url: &str, want: &str, limit: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if status_of(url)["state"] == want {
            return Some(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    None
}

/// A node as messages name it: the ID FeatureBase gave it and its `host:port`.
struct NodeName {
    id: String,
    addr: String,
}

fn node_name(c: &RealCluster, node: usize) -> NodeName {
    let addr = c.urls()[node].trim_start_matches("http://").to_string();
    let port: u64 = addr.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port");
    let s = status_of(c.url());
    let id = s["nodes"]
        .as_array()
        .and_then(|a| a.iter().find(|n| n["uri"]["port"].as_u64() == Some(port)))
        .and_then(|n| n["id"].as_str())
        .unwrap_or_else(|| panic!("node {addr} in /status: {s}"))
        .to_string();
    NodeName { id, addr }
}

/// Entry names of a tar stream, as far as it reads (a failed export to stdout is cut).
fn tar_names(bytes: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    let mut archive = tar::Archive::new(bytes);
    let Ok(entries) = archive.entries() else { return names };
    for e in entries {
        match e.as_ref().map(|e| e.path()) {
            Ok(Ok(p)) => names.push(p.to_string_lossy().into_owned()),
            _ => break,
        }
    }
    names
}

/// What one fb-export run left behind.
struct Outcome {
    code: i32,
    names: Vec<String>,
    stderr: String,
    bytes: Vec<u8>,
}

impl Outcome {
    fn has_manifest(&self) -> bool {
        self.names.iter().any(|n| n == "MANIFEST.json")
    }
    /// Entries written, MANIFEST.json not counted.
    fn entries(&self) -> usize {
        self.names.iter().filter(|n| *n != "MANIFEST.json").count()
    }
    /// Key stores written: index key partitions and field key stores.
    fn key_stores(&self) -> usize {
        self.names.iter().filter(|n| n.contains("/translate")).count()
    }
}

/// The first non-empty lines of a tool's stderr and, when there are more, the last one
/// (the error a failed tool ends with), for tables.
fn first_lines(stderr: &str, n: usize) -> String {
    let all: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut shown: Vec<&str> = all.iter().take(n).copied().collect();
    if all.len() > n {
        shown.push("...");
        shown.push(all[all.len() - 1]);
    }
    if shown.is_empty() {
        "(nothing)".into()
    } else {
        shown.join(" | ")
    }
}

/// A tool's `-v` stderr, indented, without the one line per entry written: the retries,
/// failovers, warnings and the error; at most 40 lines (the rest counted).
fn print_stderr(what: &str, stderr: &str) {
    let all = stderr.lines().count();
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.ends_with(" bytes)")).collect();
    eprintln!("{what}: stderr ({all} lines, {} besides the entries written):", lines.len());
    for l in lines.iter().take(40) {
        eprintln!("    {l}");
    }
    if lines.len() > 40 {
        eprintln!("    ... {} more", lines.len() - 40);
    }
}

/// fb-export to `-o file` (removed first), with extra flags.
fn export_to_file(url: &str, file: &Path, extra: &[&str]) -> Outcome {
    let _ = std::fs::remove_file(file);
    let mut args = vec!["--host", url, "-q", "-o", path_str(file)];
    args.extend_from_slice(extra);
    let out = run("fb-export", &args, None);
    let bytes = std::fs::read(file).unwrap_or_default();
    Outcome { code: code(&out), names: tar_names(&bytes), stderr: stderr(&out), bytes }
}

/// A child process killed (and reaped) when dropped, also when the test panics.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// fb-export to a pipe whose reader pauses after `pause_at` bytes: `during` runs while the
/// export is stalled mid-way (its in-flight files are bounded), then the reader drains the
/// rest. Returns the outcome and where the pause was.
fn export_paused(url: &str, extra: &[&str], pause_at: usize, during: impl FnOnce()) -> (Outcome, String) {
    let mut cmd = Command::new(bin("fb-export"));
    cmd.args(["--host", url, "-q"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("FBKIT_AUTH_TOKEN");
    let mut child = KillOnDrop(cmd.spawn().expect("starting fb-export"));
    let mut out = child.0.stdout.take().expect("stdout");
    let mut err = child.0.stderr.take().expect("stderr");
    let errors = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let (paused_tx, paused_rx) = mpsc::channel::<Vec<u8>>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let mut buf = vec![0u8; 65536];
        while bytes.len() < pause_at {
            match out.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
            }
        }
        let _ = paused_tx.send(bytes.clone());
        let _ = go_rx.recv();
        let _ = out.read_to_end(&mut bytes);
        bytes
    });
    let head = paused_rx.recv_timeout(EXPORT_LIMIT).expect("the export wrote its first bytes");
    let names = tar_names(&head);
    let at = format!(
        "paused after {} bytes ({} entries begun, the last {})",
        head.len(),
        names.len(),
        names.last().map_or("none", String::as_str)
    );
    during();
    let _ = go_tx.send(());
    let deadline = Instant::now() + EXPORT_LIMIT;
    let status = loop {
        if let Some(s) = child.0.try_wait().expect("try_wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "fb-export still running after {EXPORT_LIMIT:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let bytes = reader.join().expect("reader");
    let stderr = errors.join().expect("stderr reader");
    (Outcome { code: status.code().unwrap_or(-1), names: tar_names(&bytes), stderr, bytes }, at)
}

/// fb-verify --deep of archive bytes (written to `file`): exit code and first stderr line.
fn deep_verify(bytes: &[u8], file: &Path) -> (i32, String) {
    std::fs::write(file, bytes).unwrap();
    let out = run("fb-verify", &["--deep", path_str(file)], None);
    (code(&out), first_lines(&stderr(&out), 1))
}

/// One line of a fault table, and what broke the rule.
struct Judged {
    row: Vec<String>,
    violations: Vec<String>,
}

/// What a fault case may end in besides a complete archive.
#[derive(Clone, Copy)]
enum Allowed {
    /// Only a complete archive: the fault was over in time.
    CompleteOnly,
    /// Or exit 69 without a manifest, with a message naming the node and, when given, the
    /// cluster state.
    Refusal(Option<&'static str>),
}

/// Judge a fault case against the rule (module doc).
fn judge(case: &str, o: &Outcome, healthy: &Outcome, down: &NodeName, tmp: &Path, allowed: Allowed) -> Judged {
    let mut violations = Vec::new();
    let mut deep = "-".to_string();
    if o.code == 0 {
        if !o.has_manifest() {
            violations.push(format!("{case}: exit 0 without MANIFEST.json"));
        }
        if o.names != healthy.names {
            let (a, b): (BTreeSet<_>, BTreeSet<_>) = (o.names.iter().collect(), healthy.names.iter().collect());
            violations.push(format!(
                "{case}: exit 0 with {} entries ({} key stores) where the healthy export has {} ({}); missing {:?}",
                o.entries(),
                o.key_stores(),
                healthy.entries(),
                healthy.key_stores(),
                b.difference(&a).take(5).collect::<Vec<_>>()
            ));
        }
        let (dc, dl) = deep_verify(&o.bytes, &tmp.join(format!("{}.tar", case.replace([' ', ','], "_"))));
        deep = format!("{dc}");
        if dc != 0 {
            violations.push(format!("{case}: fb-verify --deep exit {dc}: {dl}"));
        }
    } else {
        if let Allowed::CompleteOnly = allowed {
            violations.push(format!("{case}: expected exit 0 and a complete archive, got exit {}", o.code));
        }
        if o.code != 69 {
            violations.push(format!("{case}: exit {} (expected 69)", o.code));
        }
        if o.has_manifest() {
            violations.push(format!("{case}: a failed export wrote MANIFEST.json"));
        }
        if let Allowed::Refusal(Some(state)) = allowed {
            if !o.stderr.contains(state) {
                violations.push(format!("{case}: the message does not name the state {state}"));
            }
        }
        if !(o.stderr.contains(&down.id) || o.stderr.contains(&down.addr)) {
            violations.push(format!("{case}: the message names neither {} nor {}", down.id, down.addr));
        }
    }
    let row = vec![
        case.to_string(),
        o.code.to_string(),
        format!("{}/{}", o.entries(), healthy.entries()),
        format!("{}/{}", o.key_stores(), healthy.key_stores()),
        if o.has_manifest() { "yes" } else { "no" }.to_string(),
        deep,
        if violations.is_empty() { "ok" } else { "VIOLATED" }.to_string(),
        first_lines(&o.stderr, 1),
    ];
    Judged { row, violations }
}

const FAULT_HEADER: [&str; 8] =
    ["case", "exit", "entries/healthy", "key stores/healthy", "manifest", "verify --deep", "rule", "stderr"];

/// Print a table with aligned columns (the last column is left unpadded).
fn print_table(title: &str, header: &[&str], rows: &[Vec<String>]) {
    let mut width: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i + 1 < width.len() {
                width[i] = width[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| if i + 1 < cells.len() { format!("{c:<w$}", w = width[i]) } else { c.clone() })
            .collect::<Vec<_>>()
            .join(" | ")
    };
    eprintln!("\n== {title}");
    eprintln!("{}", line(header.iter().map(|h| h.to_string()).collect()));
    for r in rows {
        eprintln!("{}", line(r.clone()));
    }
}

/// Print a fault table, then fail the test if any case broke the rule; `test` and
/// `started` make the line with the test's own time.
fn report_faults(title: &str, judged: Vec<Judged>, test: &str, started: Instant) {
    print_table(title, &FAULT_HEADER, &judged.iter().map(|j| j.row.clone()).collect::<Vec<_>>());
    let violations: Vec<String> = judged.into_iter().flat_map(|j| j.violations).collect();
    eprintln!("{test}: {:.1?}", started.elapsed());
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

/// A healthy 3-node replicas-2 cluster with the keyed and sharded data, and its export.
fn loaded_cluster(bin: &Path, name: &str, tmp: &Path) -> (RealCluster, Outcome) {
    let c = real_cluster(bin, name, 3, 2);
    load_keyed_and_sharded(c.url());
    let healthy = export_to_file(c.url(), &tmp.join(format!("{name}-healthy.tar")), &[]);
    assert_eq!(healthy.code, 0, "healthy export of {name}: {}", healthy.stderr);
    let (dc, dl) = deep_verify(&healthy.bytes, &tmp.join(format!("{name}-healthy-check.tar")));
    assert_eq!(dc, 0, "fb-verify --deep of the healthy export: {dl}");
    assert_eq!(healthy.key_stores(), 257, "256 key partitions of users and the key store of users/city");
    eprintln!(
        "{name}: healthy export: {} entries ({} key stores), {} bytes; fb-verify --deep 0",
        healthy.entries(),
        healthy.key_stores(),
        healthy.bytes.len()
    );
    (c, healthy)
}

#[test]
fn real_node_killed_before_an_export() {
    let Some(bin) = featurebase_bin() else { return };
    bin_dir();
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (mut c, healthy) = loaded_cluster(&bin, "kb", t);
    let victim = 2;
    let down = node_name(&c, victim);
    c.kill_node(victim).expect("SIGKILL to a node");
    eprintln!("killed node {} ({}) with SIGKILL; /status now: {}", down.id, down.addr, state_line(c.url()));

    let t0 = Instant::now();
    let a = export_to_file(c.url(), &t.join("a.tar"), &[]);
    eprintln!("(a) export right after the kill: exit {} after {:.1?}", a.code, t0.elapsed());
    let mut judged =
        vec![judge("killed before (a) at once", &a, &healthy, &down, t, Allowed::Refusal(Some("DEGRADED")))];

    let degraded = wait_for_state(c.url(), "DEGRADED", Duration::from_secs(60));
    eprintln!("(b) /status DEGRADED after {degraded:?} more: {}", state_line(c.url()));
    assert!(degraded.is_some(), "the cluster says DEGRADED within 60 s of a node's death");
    let t0 = Instant::now();
    let b = export_to_file(c.url(), &t.join("b.tar"), &[]);
    eprintln!("(b) export while DEGRADED: exit {} after {:.1?}", b.code, t0.elapsed());
    judged.push(judge("killed before (b) DEGRADED", &b, &healthy, &down, t, Allowed::Refusal(Some("DEGRADED"))));

    report_faults("node killed before an export", judged, "real_node_killed_before_an_export", started);
}

#[test]
fn real_node_killed_during_an_export() {
    let Some(bin) = featurebase_bin() else { return };
    bin_dir();
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let mut judged = Vec::new();
    // (case, --concurrency, node killed): node 0 is the --host node.
    for (case, concurrency, victim) in
        [("killed during c1", "1", 2), ("killed during c4", "4", 2), ("host killed during", "1", 0)]
    {
        let name = format!("kd{}", judged.len() + 1);
        let (mut c, healthy) = loaded_cluster(&bin, &name, t);
        let url = c.url().to_string();
        let down = node_name(&c, victim);
        let t0 = Instant::now();
        let (o, at) = export_paused(&url, &["--concurrency", concurrency], PAUSE_AT, || {
            c.kill_node(victim).expect("SIGKILL to a node")
        });
        eprintln!(
            "{case}: {at}; killed node {} ({}); exit {} after {:.1?}; /status of a live node: {}",
            down.id,
            down.addr,
            o.code,
            t0.elapsed(),
            state_line(&c.urls()[if victim == 0 { 1 } else { 0 }])
        );
        judged.push(judge(case, &o, &healthy, &down, t, Allowed::Refusal(Some("DEGRADED"))));
    }
    report_faults("node killed during an export", judged, "real_node_killed_during_an_export", started);
}

/// Records every change of a cluster's `/status` (state and node states) until stopped.
struct StateWatch {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<String>>>,
}

impl StateWatch {
    fn start(url: &str) -> StateWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, url) = (stop.clone(), url.to_string());
        let thread = std::thread::spawn(move || {
            let t0 = Instant::now();
            let mut seen = Vec::new();
            let mut last = String::new();
            while !flag.load(Ordering::Relaxed) {
                let now = state_line(&url);
                if now != last {
                    seen.push(format!("t+{:.1}s {now}", t0.elapsed().as_secs_f64()));
                    last = now;
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            seen
        });
        StateWatch { stop, thread: Some(thread) }
    }
    fn finish(mut self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().map(|t| t.join().unwrap_or_default()).unwrap_or_default()
    }
}

impl Drop for StateWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[test]
fn real_node_frozen_with_sigstop() {
    let Some(bin) = featurebase_bin() else { return };
    bin_dir();
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (c, healthy) = loaded_cluster(&bin, "fz", t);
    let url = c.url().to_string();
    let victim = 2;
    let down = node_name(&c, victim);
    let flags = ["--header-timeout", "2s", "--retry-period", "20s", "-v"];
    let mut judged = Vec::new();

    // Frozen for 5 s, then resumed: the export waits for it and completes.
    let file = t.join("resumed.tar");
    let watch = StateWatch::start(&url);
    c.freeze_node(victim).expect("SIGSTOP to a node");
    let mut args = vec!["--host", url.as_str(), "-q", "-o", path_str(&file)];
    args.extend_from_slice(&flags);
    let export = Background::start("fb-export", &args, &[]);
    std::thread::sleep(Duration::from_secs(5));
    c.resume_node(victim).expect("SIGCONT to a node");
    let (exit, _, stderr) = export.finish(EXPORT_LIMIT);
    let bytes = std::fs::read(&file).unwrap_or_default();
    let o = Outcome { code: exit, names: tar_names(&bytes), stderr, bytes };
    eprintln!(
        "SIGSTOP node {} ({}) for 5 s during an export: exit {exit}; /status: {:?}",
        down.id,
        down.addr,
        watch.finish()
    );
    print_stderr("SIGSTOP, SIGCONT after 5 s", &o.stderr);
    let mut j = judge("SIGSTOP, SIGCONT after 5 s", &o, &healthy, &down, t, Allowed::CompleteOnly);
    if o.code != 0 {
        j.violations.push(
            "  (the node was back after 5 s, well within --retry-period 20s; fb-export gives up instead when it \
             reaches the key stores while /status says DEGRADED, or after two rounds in which every owner answered \
             404 \"not allowed in state DEGRADED/DOWN\" while /status said NORMAL)"
                .into(),
        );
    } else {
        // Equal to the healthy export: by bytes, or else by content (a node that was frozen
        // may rewrite a bbolt file it holds, with the same keys).
        let (a, b) = (data_entries(&file), data_entries(&t.join("fz-healthy.tar")));
        let differ: Vec<&String> = b.iter().filter(|(n, d)| a.get(*n) != Some(*d)).map(|(n, _)| n).collect();
        let out =
            run("fb-manifest", &["diff", "--content", path_str(&t.join("fz-healthy.tar")), path_str(&file)], None);
        eprintln!(
            "resumed export vs healthy export: {} entries differ in bytes {differ:?}; fb-manifest diff --content exit {}",
            differ.len(),
            code(&out)
        );
        if code(&out) != 0 {
            j.violations.push(format!(
                "resumed export differs from the healthy one in content: {}",
                String::from_utf8_lossy(&out.stdout)
            ));
        }
    }
    judged.push(j);

    // Back to NORMAL, then frozen for good: the export gives up, cleanly.
    let normal = wait_for_state(&url, "NORMAL", Duration::from_secs(60));
    eprintln!("NORMAL again after {normal:?}: {}", state_line(&url));
    assert!(normal.is_some(), "the cluster is NORMAL within 60 s of SIGCONT");
    let watch = StateWatch::start(&url);
    c.freeze_node(victim).expect("SIGSTOP to a node");
    let t0 = Instant::now();
    let o = export_to_file(&url, &t.join("frozen.tar"), &flags);
    eprintln!("node frozen for good: exit {} after {:.1?}; /status: {:?}", o.code, t0.elapsed(), watch.finish());
    print_stderr("SIGSTOP, left frozen", &o.stderr);
    judged.push(judge("SIGSTOP, left frozen", &o, &healthy, &down, t, Allowed::Refusal(None)));
    c.resume_node(victim).expect("SIGCONT to a node");

    report_faults("node frozen with SIGSTOP", judged, "real_node_frozen_with_sigstop", started);
}

// ---- authentication (protocol notes §8) ----

const B64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64url without padding, as JWTs spell it.
fn b64url(data: &[u8]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(B64URL[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.trim_end_matches('=').bytes() {
        acc = (acc << 6) | B64URL.iter().position(|&x| x == c)? as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// An unsigned JWT (FeatureBase parses it without checking the signature).
fn jwt(claims: &Value) -> String {
    format!("{}.{}.unsigned", b64url(br#"{"alg":"HS256","typ":"JWT"}"#), b64url(claims.to_string().as_bytes()))
}

/// The `groups` claim of a bearer token.
fn token_groups(token: &str) -> Vec<String> {
    let claims = token.split('.').nth(1).and_then(b64url_decode);
    let doc: Value = claims.and_then(|c| serde_json::from_slice(&c).ok()).unwrap_or_default();
    doc["groups"]
        .as_array()
        .map(|a| a.iter().filter_map(|g| g.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

/// The identity provider FeatureBase needs, on 127.0.0.1 over plain HTTP (the server asks
/// it with Go's default client, which would not trust the test's CA): `GET /groups`
/// answers the groups of the bearer token's `groups` claim; everything else (the token
/// URL, which the server asks to refresh an expired token) answers 400.
struct GroupEndpoint {
    url: String,
    stop: Arc<AtomicBool>,
    asked: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl GroupEndpoint {
    fn start() -> GroupEndpoint {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let asked = Arc::new(AtomicUsize::new(0));
        let (flag, count) = (stop.clone(), asked.clone());
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(s) = stream {
                    count.fetch_add(1, Ordering::Relaxed);
                    let _ = answer_identity_request(s);
                }
            }
        });
        GroupEndpoint { url, stop, asked, thread: Some(thread) }
    }
}

impl Drop for GroupEndpoint {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.url.trim_start_matches("http://"));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn answer_identity_request(mut s: TcpStream) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut req = Vec::new();
    let mut buf = [0u8; 4096];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 65536 {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        req.extend_from_slice(&buf[..n]);
    }
    let head_end = req.windows(4).position(|w| w == b"\r\n\r\n").map_or(req.len(), |p| p + 4);
    let head = String::from_utf8_lossy(&req[..head_end]).into_owned();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.split_once(':').filter(|(k, _)| k.trim().eq_ignore_ascii_case(name)).map(|(_, v)| v.trim()))
            .map(String::from)
    };
    // Read the body (the token URL gets a form) so the client sees our answer, not a reset.
    let length: usize = header("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
    let mut have = req.len() - head_end;
    while have < length {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        have += n;
    }
    let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
    let (status, body) = if path.starts_with("/groups") {
        let token = header("authorization").unwrap_or_default();
        let groups = token_groups(token.trim_start_matches("Bearer "));
        let value: Vec<Value> = groups.iter().map(|g| json!({"id": g, "displayName": g})).collect();
        ("200 OK", json!({ "value": value }).to_string())
    } else {
        ("400 Bad Request", r#"{"error":"invalid_grant"}"#.to_string())
    };
    write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// A CA and a server certificate for 127.0.0.1 made with openssl (files `ca.pem`,
/// `cert.pem`, `key.pem` in `dir`).
fn openssl_pki(dir: &Path) {
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n\
         extendedKeyUsage=serverAuth,clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n",
    )
    .unwrap();
    let script = "set -e
        openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=fbkit-test-ca
        openssl req -newkey rsa:2048 -nodes -keyout key.pem -out server.csr -subj /CN=127.0.0.1
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out cert.pem -days 2 -extfile server.ext";
    let out = sh(script, dir);
    assert_eq!(code(&out), 0, "openssl: {}", stderr(&out));
}

/// One HTTPS request with curl trusting `ca`, with a bearer token when given.
fn curl_tls(method: &str, url: &str, ca: &Path, token: Option<&str>) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-m", "30", "-X", method, "--cacert", path_str(ca), "-H", "Accept: application/json"]);
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    let out = cmd.args(["-w", "\n%{http_code}", url]).output().expect("running curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), body.to_string())
}

/// Index names in a schema document.
fn index_names(schema: &[u8]) -> Vec<String> {
    let doc: Value = serde_json::from_slice(schema).unwrap_or_default();
    doc["indexes"]
        .as_array()
        .map(|a| a.iter().filter_map(|i| i["name"].as_str().map(String::from)).collect())
        .unwrap_or_default()
}

#[test]
fn real_auth_admin_reader_expired_and_no_token() {
    let Some(bin) = featurebase_bin() else { return };
    if !have("openssl") {
        eprintln!("skipped: openssl is needed to make the test's certificates");
        return;
    }
    bin_dir();
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    openssl_pki(t);
    let ca = t.join("ca.pem");
    std::fs::write(
        t.join("permissions.yaml"),
        "admin: \"fbkit-admins\"\nuser-groups:\n  \"fbkit-readers\":\n    \"users\": \"read\"\n",
    )
    .unwrap();
    let idp = GroupEndpoint::start();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let admin = jwt(&json!({"oid": "u-admin", "name": "ops", "exp": now + 3600, "groups": ["fbkit-admins"]}));
    let reader = jwt(&json!({"oid": "u-reader", "name": "analyst", "exp": now + 3600, "groups": ["fbkit-readers"]}));
    let expired = jwt(&json!({"oid": "u-admin", "name": "ops", "exp": now - 3600, "groups": ["fbkit-admins"]}));
    // A 1-node FeatureBase with TLS and `--auth.enable`, its identity provider being
    // [`GroupEndpoint`].
    let mut config = Config::new("auth", 1, 1);
    config.tls = Some(Tls { certificate: t.join("cert.pem"), key: t.join("key.pem"), ca_certificate: ca.clone() });
    config.auth = Some(Auth {
        identity_provider: idp.url.clone(),
        permissions: t.join("permissions.yaml"),
        admin_token: admin.clone(),
    });
    let server = RealCluster::start(&bin, &config).unwrap_or_else(|e| panic!("featurebase with auth: {e:#}"));
    let url = server.url().to_string();
    let who: [(&str, Option<&str>); 4] =
        [("read-only", Some(&reader)), ("expired", Some(&expired)), ("none", None), ("admin", Some(&admin))];
    // What the server itself answers each token.
    for (name, token) in who {
        let info = curl_tls("GET", &format!("{url}/info"), &ca, token);
        let schema = curl_tls("GET", &format!("{url}/schema"), &ca, token);
        eprintln!(
            "server: token {name}: GET /info {} {:.80}; GET /schema {} {:.80}",
            info.0,
            info.1.trim(),
            schema.0,
            schema.1.trim()
        );
    }
    let token_args = |name: &str, token: Option<&str>| -> Vec<String> {
        token.map_or_else(Vec::new, |tok| {
            let f = t.join(format!("{name}.token"));
            std::fs::write(&f, tok).unwrap();
            vec!["--auth-token-file".into(), path_str(&f).into()]
        })
    };
    let tool = |tool: &str, name: &str, token: Option<&str>, args: &[&str]| {
        let mut all: Vec<String> =
            vec!["--host".into(), url.clone(), "--tls.ca-certificate".into(), path_str(&ca).into()];
        all.extend(token_args(name, token));
        all.extend(args.iter().map(|a| a.to_string()));
        run(tool, &all.iter().map(String::as_str).collect::<Vec<_>>(), None)
    };
    let admin_view = || index_names(curl_tls("GET", &format!("{url}/schema"), &ca, Some(&admin)).1.as_bytes());
    let mut rows = Vec::new();
    let mut violations = Vec::new();
    let expect = |name: &str| if name == "admin" { 0 } else { 77 };

    // fb-import of upstream's backuptar (indexes events and users) into the empty cluster:
    // the admin last, so each refusal is checked against a cluster that is still empty.
    let fixture_tar = fixture().join("backup.tar");
    for (name, token) in who {
        let out = tool("fb-import", name, token, &["--no-manifest", "-q", "-s", path_str(&fixture_tar)]);
        let indexes = admin_view();
        let c = code(&out);
        if c != expect(name) {
            violations.push(format!("fb-import, token {name}: exit {c}, expected {}: {}", expect(name), stderr(&out)));
        }
        if name != "admin" && !indexes.is_empty() {
            violations.push(format!("fb-import, token {name}: the cluster now holds {indexes:?}"));
        }
        rows.push(vec![
            format!("fb-import {name}"),
            c.to_string(),
            format!("cluster holds {indexes:?}"),
            "-".into(),
            first_lines(&stderr(&out), 1),
        ]);
    }

    // fb-export to -o FILE: only the admin writes anything.
    for (name, token) in who {
        let file = t.join(format!("export-{name}.tar"));
        let out = tool("fb-export", name, token, &["-q", "-o", path_str(&file)]);
        let c = code(&out);
        let written = std::fs::read(&file).ok();
        let leftovers: Vec<String> = std::fs::read_dir(t)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .filter(|n| n.contains(&format!("export-{name}.tar")) && *n != format!("export-{name}.tar"))
            .collect();
        let (what, deep) = match &written {
            Some(bytes) => {
                let names = tar_names(bytes);
                let schema =
                    tar_entries(bytes).into_iter().find(|(n, _)| n == "schema").map(|(_, d)| d).unwrap_or_default();
                let (dc, dl) = deep_verify(bytes, &t.join(format!("check-{name}.tar")));
                if dc != 0 {
                    violations.push(format!("fb-export, token {name}: fb-verify --deep exit {dc}: {dl}"));
                }
                (format!("{} entries, indexes {:?}", names.len() - 1, index_names(&schema)), dc.to_string())
            }
            None => ("no file".to_string(), "-".into()),
        };
        if c != expect(name) {
            violations.push(format!("fb-export, token {name}: exit {c}, expected {}: {}", expect(name), stderr(&out)));
        }
        if name != "admin" && (written.is_some() || !leftovers.is_empty()) {
            violations.push(format!("fb-export, token {name}: wrote {what} {leftovers:?}"));
        }
        if name == "admin" && !what.contains(r#"["events", "users"]"#) {
            violations.push(format!("fb-export, token admin: {what}"));
        }
        rows.push(vec![format!("fb-export {name}"), c.to_string(), what, deep, first_lines(&stderr(&out), 1)]);
    }

    // fb-manifest of the live cluster.
    for (name, token) in who {
        let out = tool("fb-manifest", name, token, &["--live", "-q"]);
        let c = code(&out);
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let entries = doc["entries"].as_array().map_or(0, Vec::len);
        if c != expect(name) {
            violations.push(format!(
                "fb-manifest --live, token {name}: exit {c}, expected {}: {}",
                expect(name),
                stderr(&out)
            ));
        }
        if name != "admin" && !out.stdout.is_empty() {
            violations.push(format!("fb-manifest --live, token {name}: printed {} bytes", out.stdout.len()));
        }
        rows.push(vec![
            format!("fb-manifest --live {name}"),
            c.to_string(),
            format!("{} bytes, {entries} entries", out.stdout.len()),
            "-".into(),
            first_lines(&stderr(&out), 1),
        ]);
    }
    eprintln!("the group endpoint was asked {} times", idp.asked.load(Ordering::Relaxed));
    print_table(
        "auth (1-node, TLS, --auth.enable)",
        &["tool and token", "exit", "result", "verify --deep", "stderr"],
        &rows,
    );
    drop(server);
    eprintln!("real_auth_admin_reader_expired_and_no_token: {:.1?}", started.elapsed());
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

// ---- every field type ----

/// Fields of index `all` (unkeyed) and their options as created over HTTP.
const FIELDS: [(&str, &str); 10] = [
    ("s", r#"{"options":{"type":"set"}}"#),
    ("ks", r#"{"options":{"type":"set","keys":true}}"#),
    ("m", r#"{"options":{"type":"mutex"}}"#),
    ("b", r#"{"options":{"type":"bool"}}"#),
    ("i", r#"{"options":{"type":"int"}}"#),
    ("pos", r#"{"options":{"type":"int","min":0}}"#),
    ("d", r#"{"options":{"type":"decimal","scale":2}}"#),
    ("db", r#"{"options":{"type":"decimal","scale":2,"min":-1234567890123456.78,"max":1234567890123456.78}}"#),
    ("ts", r#"{"options":{"type":"timestamp","timeUnit":"s"}}"#),
    ("t", r#"{"options":{"type":"time","timeQuantum":"YMD"}}"#),
];

const VALUES: &str = "Set(1, s=1) Set(2, s=1) Set(1048577, s=2) \
    Set(1, ks=\"red\") Set(2, ks=\"blue\") Set(2097155, ks=\"red\") \
    Set(1, m=1) Set(2, m=2) Set(3, m=2) \
    Set(1, b=true) Set(2, b=false) Set(1048577, b=true) \
    Set(1, i=-5) Set(2, i=-1000000) Set(3, i=42) Set(2097155, i=-9000000000000) \
    Set(1, pos=0) Set(2, pos=7) Set(1048577, pos=123456) \
    Set(1, d=-12.34) Set(2, d=0.01) Set(2097155, d=99999.99) \
    Set(1, db=-1234567890123456.78) Set(2, db=1234567890123456.78) Set(3, db=-0.05) \
    Set(1, ts=\"2023-01-02T03:04:05Z\") Set(2, ts=\"1999-12-31T23:59:59Z\") Set(1048577, ts=\"2024-06-30T12:00:00Z\") \
    Set(1, t=3, 2023-01-02T03:04) Set(2, t=3, 2024-05-06T07:08) Set(1048577, t=4, 2023-01-05T00:00)";

/// (index, query) pairs whose answers are compared across clusters.
fn field_queries() -> Vec<(&'static str, String)> {
    let mut q: Vec<(&str, String)> = [
        "Count(All())",
        "Count(Row(s=1))",
        "Count(Row(s=2))",
        "Count(Row(ks=\"red\"))",
        "Count(Row(ks=\"blue\"))",
        "Count(Row(m=1))",
        "Count(Row(m=2))",
        "Count(Row(b=true))",
        "Count(Row(b=false))",
        "Count(Row(t=3))",
        "Count(Row(t=4))",
        "Count(Row(t=3, from=2024-01-01T00:00, to=2025-01-01T00:00))",
        "Count(Row(i<0))",
        "Count(Row(pos>5))",
        "Count(Row(pos==0))",
        "Count(Row(db<0))",
    ]
    .iter()
    .map(|q| ("all", q.to_string()))
    .collect();
    for f in ["i", "pos", "d", "db", "ts"] {
        for agg in ["Sum", "Min", "Max"] {
            q.push(("all", format!("{agg}(field={f})")));
        }
    }
    q.push(("kidx", "Count(All())".into()));
    q.push(("kidx", "Row(f=1)".into()));
    q.push(("kidx", "Count(Row(f=2))".into()));
    q
}

/// The first result of a query, compact (a keyed row's keys sorted), or the error answer.
fn answer(url: &str, index: &str, q: &str) -> String {
    let (status, body) = curl("POST", &format!("{url}/index/{index}/query"), Some(q));
    if status != 200 {
        return format!("HTTP {status}: {}", body.trim());
    }
    let mut doc: Value = serde_json::from_str(&body).unwrap_or_default();
    let mut r = doc["results"][0].take();
    if let Some(keys) = r.get_mut("keys").and_then(Value::as_array_mut) {
        keys.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
    }
    if let Some(m) = r.as_object_mut() {
        // The parts of a ValCount that do not apply to the field's type.
        m.remove("floatValue");
        if m.get("decimalValue") == Some(&Value::Null) {
            m.remove("decimalValue");
        }
        if m.get("timestampValue").and_then(Value::as_str) == Some("0001-01-01T00:00:00Z") {
            m.remove("timestampValue");
        }
    }
    r.to_string()
}

/// Index and field options from `GET /schema`, keyed `index` and `index/field`.
fn schema_options(url: &str) -> BTreeMap<String, Value> {
    let (status, body) = curl("GET", &format!("{url}/schema"), None);
    assert_eq!(status, 200, "GET /schema: {body}");
    let doc: Value = serde_json::from_str(&body).expect("schema JSON");
    let mut out = BTreeMap::new();
    for index in doc["indexes"].as_array().cloned().unwrap_or_default() {
        let name = index["name"].as_str().unwrap_or("").to_string();
        out.insert(name.clone(), index["options"].clone());
        for field in index["fields"].as_array().cloned().unwrap_or_default() {
            out.insert(format!("{name}/{}", field["name"].as_str().unwrap_or("")), field["options"].clone());
        }
    }
    out
}

/// The options that differ between two schemas, as `index/field key: a -> b`.
fn option_differences(a: &BTreeMap<String, Value>, b: &BTreeMap<String, Value>) -> Vec<String> {
    let mut out = Vec::new();
    for name in a.keys().chain(b.keys()).collect::<BTreeSet<_>>() {
        match (a.get(name), b.get(name)) {
            (Some(x), Some(y)) if x != y => {
                let keys: BTreeSet<&String> =
                    x.as_object().into_iter().chain(y.as_object()).flat_map(|m| m.keys()).collect();
                for k in keys {
                    if x.get(k) != y.get(k) {
                        let show = |v: Option<&Value>| v.map_or("(absent)".to_string(), Value::to_string);
                        out.push(format!("{name} {k}: {} -> {}", show(x.get(k)), show(y.get(k))));
                    }
                }
            }
            (Some(_), None) => out.push(format!("{name}: missing")),
            (None, Some(_)) => out.push(format!("{name}: extra")),
            _ => {}
        }
    }
    out
}

#[test]
fn real_every_field_type_through_every_restorer() {
    let Some(bin) = featurebase_bin() else { return };
    bin_dir();
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let mut failures = Vec::new();

    let src = real_cluster(&bin, "ft", 3, 2);
    let url = src.url().to_string();
    post_ok(&url, "/index/all", "");
    for (field, options) in FIELDS {
        post_ok(&url, &format!("/index/all/field/{field}"), options);
    }
    post_ok(&url, "/index/all/query", VALUES);
    post_ok(&url, "/index/kidx", r#"{"options":{"keys":true}}"#);
    post_ok(&url, "/index/kidx/field/f", "");
    post_ok(&url, "/index/kidx/query", r#"Set("alpha", f=1) Set("beta", f=1) Set("gamma", f=2)"#);
    let source_schema = schema_options(&url);
    let queries = field_queries();
    let source_answers: Vec<String> = queries.iter().map(|(i, q)| answer(&url, i, q)).collect();
    for (name, options) in &source_schema {
        eprintln!("source option {name}: {options}");
    }

    // (a) fb-export vs featurebase backuptar of the same idle cluster, entry by entry.
    let ours = t.join("ours.tar");
    let o = export_to_file(&url, &ours, &[]);
    assert_eq!(o.code, 0, "fb-export of every field type: {}", o.stderr);
    let (dc, dl) = deep_verify(&o.bytes, &t.join("ours-check.tar"));
    let theirs = t.join("theirs.tar");
    upstream(&bin, &["backuptar", "--host", &url, "-o", path_str(&theirs)]);
    let (a, b) = (data_entries(&ours), data_entries(&theirs));
    let names: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let differ: Vec<String> = names.into_iter().filter(|n| a.get(*n) != b.get(*n)).cloned().collect();
    eprintln!(
        "fb-export vs featurebase backuptar: {} vs {} entries, {} differ: {differ:?}; fb-verify --deep of fb-export: {dc} {dl}",
        a.len(),
        b.len(),
        differ.len()
    );
    if let (Some(x), Some(y)) = (a.get("schema"), b.get("schema")) {
        if x != y {
            let (x, y) = (String::from_utf8_lossy(x), String::from_utf8_lossy(y));
            let first = x.lines().zip(y.lines()).find(|(p, q)| p != q);
            eprintln!("schema: first differing line: fb-export {first:?} (backuptar second)");
        }
    }
    if !differ.is_empty() {
        failures.push(format!("fb-export and backuptar differ in {differ:?}"));
    }
    if dc != 0 {
        failures.push(format!("fb-verify --deep of the fb-export archive: {dc} {dl}"));
    }
    drop(src);

    // (b) three restorers, each into a fresh cluster.
    let mut columns: Vec<(String, Vec<String>)> = vec![("source 3n r2".into(), source_answers.clone())];
    let mut schema_rows = Vec::new();
    for (what, nodes, replicas) in [("fb-import 1n", 1, 1), ("fb-import 5n r3", 5, 3), ("restoretar 1n", 1, 1)] {
        let dst = real_cluster(&bin, &format!("r{nodes}{}", columns.len()), nodes, replicas);
        let note = if what.starts_with("fb-import") {
            let out = run("fb-import", &["--host", dst.url(), "-s", path_str(&ours)], None);
            let c = code(&out);
            if c != 0 {
                failures.push(format!("{what}: exit {c}: {}", stderr(&out)));
            }
            let err = stderr(&out);
            let warnings: Vec<&str> = err.lines().filter(|l| l.contains("warning")).map(str::trim).collect();
            format!("exit {c}; warnings {warnings:?}")
        } else {
            upstream(&bin, &["restoretar", "--host", dst.url(), "-s", path_str(&ours)]);
            "exit 0".to_string()
        };
        let diffs = option_differences(&source_schema, &schema_options(dst.url()));
        let got: Vec<String> = queries.iter().map(|(i, q)| answer(dst.url(), i, q)).collect();
        let wrong = got.iter().zip(&source_answers).filter(|(g, s)| g != s).count();
        eprintln!(
            "{what}: {note}; {} option(s) differ from the source: {diffs:?}; {wrong} answer(s) differ",
            diffs.len()
        );
        if what.starts_with("fb-import") {
            // Contract §3: the restored schema keeps every field option of the backup (type,
            // bounds, keys, cache, time quantum), also where upstream's POST /schema loses
            // one (an int bound of 0). Expected to fail until fb-import creates such fields
            // with POST /index/{i}/field/{f}.
            if !diffs.is_empty() {
                failures.push(format!(
                    "{what}: the restored schema does not keep the backup's field options (contract §3; expected to fail until fb-import creates fields whose bounds POST /schema loses with POST /index/{{i}}/field/{{f}}): {diffs:?}"
                ));
            }
            if wrong > 0 {
                failures.push(format!("{what}: {wrong} query answer(s) differ from the source"));
            }
        }
        schema_rows.push(vec![what.to_string(), note, if diffs.is_empty() { "none".into() } else { diffs.join("; ") }]);
        columns.push((what.to_string(), got));
    }

    let header: Vec<String> =
        std::iter::once("query".to_string()).chain(columns.iter().map(|(n, _)| n.clone())).collect();
    let rows: Vec<Vec<String>> = queries
        .iter()
        .enumerate()
        .map(|(k, (index, q))| {
            let mut row = vec![format!("{index}: {q}")];
            for (n, (_, answers)) in columns.iter().enumerate() {
                let same = n == 0 || answers[k] == columns[0].1[k];
                row.push(if same && n > 0 { "same".into() } else { answers[k].clone() });
            }
            row
        })
        .collect();
    let mut shown = rows.clone();
    // The source's answers last: they are the long column.
    for r in &mut shown {
        let src = r.remove(1);
        r.push(src);
    }
    let mut head: Vec<&str> = header.iter().map(String::as_str).collect();
    let first = head.remove(1);
    head.push(first);
    print_table("every field type: query answers after each restorer (same = the source's answer)", &head, &shown);
    print_table(
        "every field type: field options that differ from the source",
        &["restorer", "result", "options differing"],
        &schema_rows,
    );
    eprintln!("real_every_field_type_through_every_restorer: {:.1?}", started.elapsed());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
