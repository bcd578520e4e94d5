//! Helpers for fbkit's end-to-end tests: find (or build) the real binaries, start
//! fb-devcluster clusters in-process on loopback, start real FeatureBase clusters (with
//! `FEATUREBASE_BIN`), run pipelines through bash.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

pub use fb_devcluster::upstream::RealCluster;
pub use fb_devcluster::{spawn, ClusterConfig, RunningCluster};

/// The directory holding fb-export, fb-import, fb-manifest, fb-verify, fb-devcluster.
/// `cargo test` builds bin targets only as test harnesses and never rebuilds another
/// package's binaries, so they are built here, once per test run (a no-op when up to date):
/// a test never runs a stale tool.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        let dir = exe.parent().and_then(Path::parent).expect("target profile directory").to_path_buf();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "--workspace", "--bins"]).current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
        if dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        let status = build.status().expect("running cargo build for the tool binaries");
        assert!(status.success(), "cargo build --workspace --bins failed");
        dir
    })
}

/// Path of one tool.
pub fn bin(name: &str) -> PathBuf {
    bin_dir().join(name)
}

/// A demo cluster of `nodes` nodes and `replicas` replicas on free loopback ports.
pub fn demo(nodes: usize, replicas: usize) -> RunningCluster {
    spawn(ClusterConfig { nodes, replicas, demo: true, ..ClusterConfig::default() }).expect("start demo cluster")
}

/// An empty cluster.
pub fn empty(nodes: usize, replicas: usize) -> RunningCluster {
    spawn(ClusterConfig { nodes, replicas, ..ClusterConfig::default() }).expect("start empty cluster")
}

/// Run one tool with arguments and optional stdin bytes.
pub fn run(tool: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(bin(tool));
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).env_remove("FBKIT_AUTH_TOKEN");
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("starting {tool}: {e}"));
    if let Some(data) = stdin {
        let mut si = child.stdin.take().expect("stdin");
        let data = data.to_vec();
        // Write from a thread so a tool that stops reading early cannot deadlock the test.
        std::thread::spawn(move || {
            let _ = si.write_all(&data);
        });
    }
    child.wait_with_output().expect("waiting for the tool")
}

/// Run a bash pipeline with the tools on PATH and `set -o pipefail`; `dir` is the working
/// directory.
pub fn sh(script: &str, dir: &Path) -> Output {
    let path = format!("{}:{}", bin_dir().display(), std::env::var("PATH").unwrap_or_default());
    Command::new("bash")
        .arg("-c")
        .arg(format!("set -o pipefail\n{script}"))
        .current_dir(dir)
        .env("PATH", path)
        .env_remove("FBKIT_AUTH_TOKEN")
        .output()
        .expect("running bash")
}

/// Exit code of an output (signals count as -1).
pub fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

/// Stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Export a cluster to bytes with extra flags, asserting success.
pub fn export(url: &str, extra: &[&str]) -> Vec<u8> {
    let mut args = vec!["--host", url, "--quiet"];
    args.extend_from_slice(extra);
    let out = run("fb-export", &args, None);
    assert_eq!(code(&out), 0, "fb-export failed: {}", stderr(&out));
    out.stdout
}

/// The (name, bytes) entries of a tar stream, read with the tar crate.
pub fn tar_entries(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut a = tar::Archive::new(bytes);
    a.entries()
        .expect("tar entries")
        .map(|e| {
            let mut e = e.expect("tar entry");
            let name = e.path().expect("path").to_string_lossy().into_owned();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).expect("entry data");
            (name, data)
        })
        .collect()
}

/// A self-consistent fbkit archive of `entries` (in their order; any MANIFEST.json among
/// them dropped) ending in a MANIFEST.json recomputed over them, with `source` as its source
/// description: what a backup whose bytes were altered and re-manifested looks like.
pub fn rebuild_archive(entries: &[(String, Vec<u8>)], source: serde_json::Map<String, serde_json::Value>) -> Vec<u8> {
    use fb_core::archive::TarWriter;
    use fb_core::layout::EntryPath;
    use fb_core::manifest::{Manifest, ManifestEntry};
    use sha2::{Digest, Sha256};
    let mut tar = TarWriter::new(Vec::new(), 0);
    let mut listed = Vec::new();
    for (name, data) in entries.iter().filter(|(n, _)| n != "MANIFEST.json") {
        tar.append(name, data).expect("append");
        let path = EntryPath::parse(name).expect("an archive path");
        listed.push(ManifestEntry::new(&path, data.len() as u64, &Sha256::digest(data).into()));
    }
    tar.append("MANIFEST.json", &Manifest::new(source, listed).to_bytes()).expect("append");
    tar.finish().expect("finish")
}

/// Whether a tool is on PATH (tests that need it skip, saying so, when it is not).
pub fn have(tool: &str) -> bool {
    Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output().map(|o| o.status.success()).unwrap_or(false)
}

pub use fb_devcluster::data::SplitMix64;

/// The deterministic PRNG of the tests (offsets to cut, bits to flip): fb-devcluster's
/// splitmix64, the one that also makes its demo data. `Rng(seed)` reads as a constructor.
#[allow(non_snake_case)]
pub fn Rng(seed: u64) -> SplitMix64 {
    SplitMix64::new(seed)
}

/// Every directory and file below `dir` (not `dir` itself), sorted, so a directory comes
/// before what it holds.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("reading {}: {e}", d.display())) {
            let path = e.expect("directory entry").path();
            if path.is_dir() {
                pending.push(path.clone());
            }
            out.push(path);
        }
    }
    out.sort();
    out
}

/// Copy the tree below `from` to `to` (created), files and directories.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("creating the copy");
    for path in walk(from) {
        let target = to.join(path.strip_prefix(from).expect("below the root"));
        if path.is_dir() {
            std::fs::create_dir_all(&target).expect("creating a directory");
        } else {
            std::fs::copy(&path, &target).unwrap_or_else(|e| panic!("copying {}: {e}", path.display()));
        }
    }
}

/// The `featurebase` binary named by `FEATUREBASE_BIN`; `None`, saying the test is skipped,
/// when it is unset (CI never has one).
pub fn featurebase_bin() -> Option<PathBuf> {
    match std::env::var_os("FEATUREBASE_BIN") {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => {
            eprintln!("skipped: set FEATUREBASE_BIN to a featurebase binary to run the real-cluster tests");
            None
        }
    }
}

/// A real FeatureBase cluster of `nodes` plain-HTTP servers named `{name}1`, `{name}2`, ...
/// with `replicas` replicas, NORMAL; a failure to start fails the test with the servers'
/// log tail.
pub fn real_cluster(bin: &Path, name: &str, nodes: usize, replicas: usize) -> RealCluster {
    RealCluster::start(bin, &fb_devcluster::upstream::Config::new(name, nodes, replicas))
        .unwrap_or_else(|e| panic!("{e:#}"))
}

/// A tool running in the background (for faults and signals sent while it runs); threads
/// collect its stdout and stderr so that it never blocks on a full pipe.
pub struct Background {
    child: std::process::Child,
    stdout: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    stderr: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Background {
    /// Start `tool` with `args` and extra environment variables; stdin is empty.
    pub fn start(tool: &str, args: &[&str], envs: &[(&str, &str)]) -> Background {
        let mut cmd = Command::new(bin(tool));
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("FBKIT_AUTH_TOKEN");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("starting {tool}: {e}"));
        let stdout = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        let pipes: [(Box<dyn std::io::Read + Send>, _); 2] = [
            (Box::new(child.stdout.take().expect("stdout")), stdout.clone()),
            (Box::new(child.stderr.take().expect("stderr")), stderr.clone()),
        ];
        for (mut pipe, sink) in pipes {
            readers.push(std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    sink.lock().expect("lock").extend_from_slice(&buf[..n]);
                }
            }));
        }
        Background { child, stdout, stderr, readers }
    }

    /// Process id (to send it signals).
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Stderr so far.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().expect("lock")).into_owned()
    }

    /// Wait for the exit (killing it and failing the test after `limit`); returns exit code
    /// (-1 for a signal), stdout and stderr.
    pub fn finish(mut self, limit: std::time::Duration) -> (i32, Vec<u8>, String) {
        let deadline = std::time::Instant::now() + limit;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                break s;
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("still running after {limit:?}; stderr:\n{}", self.stderr_text());
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        let out = std::mem::take(&mut *self.stdout.lock().expect("lock"));
        (status.code().unwrap_or(-1), out, self.stderr_text())
    }
}

/// Poll `cond` every 20 ms until it holds; fail the test naming `what` after `limit`.
pub fn wait_until(limit: std::time::Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Certificates made at test time: a CA, a server certificate for 127.0.0.1/localhost signed
/// by it, and a client certificate (files `ca.pem`, `cert.pem`, `key.pem`, `client.pem`,
/// `client-key.pem` in a temporary directory).
pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// Make a fresh set.
    pub fn new() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
        let dir = tempfile::tempdir().expect("temp dir");
        let ca_key = KeyPair::generate().expect("key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("CA");
        let server_key = KeyPair::generate().expect("key");
        let mut sp = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        sp.subject_alt_names.push(SanType::IpAddress("127.0.0.1".parse().expect("ip")));
        let server = sp.signed_by(&server_key, &ca, &ca_key).expect("server cert");
        let client_key = KeyPair::generate().expect("key");
        let client = CertificateParams::new(vec!["client".to_string()])
            .expect("params")
            .signed_by(&client_key, &ca, &ca_key)
            .expect("client cert");
        let files = [
            ("ca.pem", ca.pem()),
            ("cert.pem", server.pem()),
            ("key.pem", server_key.serialize_pem()),
            ("client.pem", client.pem()),
            ("client-key.pem", client_key.serialize_pem()),
        ];
        for (name, pem) in files {
            std::fs::write(dir.path().join(name), pem).expect("write pem");
        }
        Pki { dir }
    }

    /// Path of one of the files.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Path of one of the files, as text (for command lines).
    pub fn path_str(&self, name: &str) -> String {
        self.path(name).to_string_lossy().into_owned()
    }

    /// Server TLS files for fb-devcluster (client certificates required when `mtls`).
    pub fn server(&self, mtls: bool) -> fb_devcluster::TlsFiles {
        fb_devcluster::TlsFiles {
            cert: self.path("cert.pem"),
            key: self.path("key.pem"),
            client_ca: mtls.then(|| self.path("ca.pem")),
        }
    }
}

impl Default for Pki {
    fn default() -> Self {
        Pki::new()
    }
}
