//! Helpers for fbkit's end-to-end tests: find (or build) the real binaries, start
//! fb-devcluster clusters in-process on loopback, run pipelines through bash.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

pub use fb_devcluster::{spawn, ClusterConfig, RunningCluster};

/// The directory holding fb-export, fb-import, fb-manifest, fb-verify, fb-devcluster.
/// They are built by `cargo test --workspace`; when this crate's tests run alone, they are
/// built here once.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        let dir = exe.parent().and_then(Path::parent).expect("target profile directory").to_path_buf();
        let tools = ["fb-export", "fb-import", "fb-manifest", "fb-verify", "fb-devcluster"];
        if tools.iter().any(|t| !dir.join(t).exists()) {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            // `cargo test` builds bin targets as test harnesses only; build the real ones.
            let status = Command::new(cargo)
                .args(["build", "--workspace", "--bins"])
                .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
                .status()
                .expect("running cargo build for the tool binaries");
            assert!(status.success(), "cargo build --workspace --bins failed");
        }
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

/// Whether a tool is on PATH (tests that need it skip, saying so, when it is not).
pub fn have(tool: &str) -> bool {
    Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output().map(|o| o.status.success()).unwrap_or(false)
}

/// A tiny deterministic PRNG for choosing offsets (splitmix64).
pub struct Rng(pub u64);

impl Rng {
    /// Next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// A value below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}
