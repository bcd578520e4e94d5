//! What `cargo xtask bench` found, as values (a struct per kind of row), and the one place
//! that renders them as the printed table and notes.

use std::fmt;
use std::io::{self, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use super::{DEMO_SHARDS, MIB, NODES, REPLICAS};
use crate::process::{Run, Usage};

/// Best (fastest) and peak RSS over repeated runs.
#[derive(Debug, Clone, Default)]
pub struct Best {
    pub secs: f64,
    pub rss_kib: u64,
    pub write_bytes: u64,
    /// What each command of the fastest run used, in pipeline order.
    pub usage: Vec<Usage>,
}

impl Best {
    pub fn add(&mut self, run: &Run) {
        if self.secs == 0.0 || run.secs < self.secs {
            self.secs = run.secs;
            self.usage = run.usage.clone();
        }
        self.rss_kib = self.rss_kib.max(run.max_rss_kib());
        self.write_bytes = self.write_bytes.max(run.usage.iter().map(|u| u.write_bytes).sum());
    }

    /// CPU seconds (all commands of the pipeline) of the fastest run.
    pub fn cpu_secs(&self) -> f64 {
        self.usage.iter().map(|u| u.cpu_secs).sum()
    }

    pub fn mbps(&self, bytes: u64) -> f64 {
        bytes as f64 / self.secs / 1e6
    }
}

/// fbkit against a baseline moving the same bytes.
pub struct Throughput {
    pub figure: String,
    pub bytes: u64,
    pub ours: Best,
    pub base: Best,
    /// What the baseline ran (`curl`, `sha256sum`, ...).
    pub base_name: &'static str,
    /// Least ratio (baseline time over ours) the figure must reach, if any.
    pub goal: Option<f64>,
}

/// fbkit's verification speed against one core's SHA-256.
pub struct CoreSpeed {
    pub figure: &'static str,
    pub bytes: u64,
    pub ours: Best,
    /// SHA-256 bytes per second of one core.
    pub core_bps: f64,
    pub core_source: String,
    pub goal: f64,
    /// The most the machine allows, as a multiple of one core, and how it was found: for
    /// a stream, [`stream_ceiling`]; for a file, every core hashing the mapped file.
    pub ceiling: Option<(f64, String)>,
}

impl CoreSpeed {
    pub fn ratio(&self) -> f64 {
        self.ours.mbps(self.bytes) * 1e6 / self.core_bps
    }
}

/// The fastest a stream can be hashed, as a multiple of one SHA-256 core: every core
/// busy, with hashing (`bytes / core_bps` seconds of CPU) and moving the bytes through
/// the pipe (`transfer_cpu`) as the only work.
pub fn stream_ceiling(bytes: u64, core_bps: f64, transfer_cpu: f64, cores: f64) -> f64 {
    let hash = bytes as f64 / core_bps;
    cores * hash / (hash + transfer_cpu)
}

/// Peak RSS of one tool with a small and a large shard: it must not grow with the shard.
pub struct Memory {
    pub tool: &'static str,
    /// The shard sizes, small first.
    pub shard_bytes: [u64; 2],
    /// Peak RSS with each, KiB.
    pub rss_kib: [u64; 2],
}

impl Memory {
    fn met(&self) -> bool {
        let (small, large) = (self.rss_kib[0] * 1024, self.rss_kib[1] * 1024);
        // Buffering a file would add most of its size; allocator noise is a few MiB.
        large < 64 * MIB && large.saturating_sub(small) < 16 * MIB
    }
}

/// What the exports wrote to storage and left in their TMPDIR.
pub struct NoSpill {
    pub written: u64,
    pub spilled: usize,
}

/// One row of the table.
pub enum Row {
    Throughput(Throughput),
    CoreSpeed(CoreSpeed),
    Memory(Memory),
    NoSpill(NoSpill),
}

/// What a row is held to, and whether it got there.
enum Goal {
    None,
    AtLeast(f64, bool),
    Text(&'static str, bool),
}

impl fmt::Display for Goal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (text, met) = match self {
            Goal::None => return f.write_str("-"),
            Goal::AtLeast(g, met) => (format!(">= {g:.2}x"), met),
            Goal::Text(t, met) => (t.to_string(), met),
        };
        write!(f, "{text} {}", if *met { "ok" } else { "MISSED" })
    }
}

fn mbps(mbps: f64) -> String {
    format!("{mbps:.0} MB/s")
}

fn ratio(x: f64) -> String {
    format!("{x:.2}x")
}

pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB as f64)
}

impl Row {
    /// figure, ours, baseline, ratio, goal, peak RSS.
    fn cells(&self) -> [String; 6] {
        match self {
            Row::Throughput(t) => {
                let r = t.base.secs / t.ours.secs;
                let goal = t.goal.map_or(Goal::None, |g| Goal::AtLeast(g, r >= g));
                [
                    t.figure.clone(),
                    mbps(t.ours.mbps(t.bytes)),
                    format!("{} {}", mbps(t.base.mbps(t.bytes)), t.base_name),
                    ratio(r),
                    goal.to_string(),
                    mib(t.ours.rss_kib * 1024),
                ]
            }
            Row::CoreSpeed(c) => [
                c.figure.to_string(),
                mbps(c.ours.mbps(c.bytes)),
                format!("{} {}", mbps(c.core_bps / 1e6), c.core_source),
                ratio(c.ratio()),
                match &c.ceiling {
                    None => Goal::AtLeast(c.goal, c.ratio() >= c.goal).to_string(),
                    Some((top, how)) => format!(
                        "{}; ceiling {top:.2}x ({how}), {:.2} of it",
                        Goal::AtLeast(c.goal, c.ratio() >= c.goal),
                        c.ratio() / top
                    ),
                },
                mib(c.ours.rss_kib * 1024),
            ],
            Row::Memory(m) => {
                let (small, large) = (m.rss_kib[0] * 1024, m.rss_kib[1] * 1024);
                [
                    format!("memory: {}, {} vs {} shard", m.tool, mib(m.shard_bytes[1]), mib(m.shard_bytes[0])),
                    mib(large),
                    mib(small),
                    ratio(large as f64 / small as f64),
                    Goal::Text("< 64 MiB, +< 16 MiB", m.met()).to_string(),
                    mib(large),
                ]
            }
            Row::NoSpill(s) => [
                "no spill: fb-export to /dev/null".into(),
                format!("{} B written", s.written),
                format!("TMPDIR: {} entries", s.spilled),
                "-".into(),
                Goal::Text("0 B, 0 entries", s.written == 0 && s.spilled == 0).to_string(),
                "-".into(),
            ],
        }
    }
}

/// Throughput at one concurrency, fbkit and curl.
pub struct Scaling {
    /// `export` or `import`.
    pub what: &'static str,
    pub concurrency: usize,
    pub ours_mbps: f64,
    pub curl_mbps: f64,
    /// For an import: the owners of each file (curl uploads concurrency x owners at once).
    pub owners: Option<usize>,
}

impl fmt::Display for Scaling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.concurrency;
        write!(f, "{} c={c}: fbkit {:.0} MB/s, curl {:.0} MB/s", self.what, self.ours_mbps, self.curl_mbps)?;
        if let Some(owners) = self.owners {
            write!(f, " (curl runs {} uploads at once: {c} files x {owners} owners)", c * owners)?;
        }
        Ok(())
    }
}

/// A note on CPU time.
pub enum CpuNote {
    /// How close a run came to what the machine's cores allow: fbkit's CPU seconds plus
    /// the serving cluster's, spread over every core, is the least wall time possible.
    CoreBound { what: &'static str, fbkit_cpu: f64, server_cpu: f64, cores: f64, secs: f64 },
    /// The CPU time of an export against curl, and what hashing every byte costs alone.
    ExportWork {
        fb_export_cpu: f64,
        curl_cpu: f64,
        curl_dgst_cpu: f64,
        archive_bytes: u64,
        sha_bps: f64,
        sha_source: String,
        curl_secs: f64,
    },
}

impl CpuNote {
    /// The bound for a run of fbkit (`ours`) that cost its cluster `server_cpu` seconds.
    pub fn core_bound(what: &'static str, ours: &Best, server_cpu: f64) -> CpuNote {
        let cores = super::cores();
        CpuNote::CoreBound { what, fbkit_cpu: ours.cpu_secs(), server_cpu, cores, secs: ours.secs }
    }
}

impl fmt::Display for CpuNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CpuNote::CoreBound { what, fbkit_cpu, server_cpu, cores, secs } => {
                let least = (fbkit_cpu + server_cpu) / cores;
                write!(
                    f,
                    "{what}: fbkit {fbkit_cpu:.2} CPU-s + cluster {server_cpu:.2} CPU-s over {cores} cores = at least {least:.2} s; took {secs:.2} s ({:.0}% of that bound)",
                    100.0 * least / secs
                )
            }
            CpuNote::ExportWork {
                fb_export_cpu,
                curl_cpu,
                curl_dgst_cpu,
                archive_bytes,
                sha_bps,
                sha_source,
                curl_secs,
            } => {
                let hash_secs = *archive_bytes as f64 / sha_bps;
                write!(
                    f,
                    "export c=1 CPU time (user+sys): fb-export {fb_export_cpu:.2} s, curl {curl_cpu:.2} s, curl|openssl dgst {curl_dgst_cpu:.2} s; \
                     SHA-256 of the archive alone takes {hash_secs:.2} s of one core ({sha_source} at {:.0} MB/s), so one stream \
                     that hashes every byte cannot pass {:.2}x curl here",
                    sha_bps / 1e6,
                    hash_secs.recip() * curl_secs,
                )
            }
        }
    }
}

/// Everything the bench measured.
#[derive(Default)]
pub struct Report {
    pub shard_bytes: u64,
    pub reps: u32,
    pub archive_bytes: u64,
    pub rows: Vec<Row>,
    pub scaling: Vec<Scaling>,
    pub cpu: Vec<CpuNote>,
    /// Export at concurrency 1 against curl (baseline time over ours), when measured.
    pub export_ratio: Option<f64>,
    /// Export against a fetch that also hashes every byte once (curl | openssl dgst).
    pub export_hash_ratio: Option<f64>,
    /// fb-verify and fb-manifest against one SHA-256 core: (short name, ratio).
    /// Each verify figure: its name, its ratio to one core and to its ceiling.
    pub core_ratios: Vec<(&'static str, f64, Option<f64>)>,
    pub core_source: String,
}

impl Report {
    /// Print the table and the notes to stdout; `secs` is how long the bench took.
    pub fn print(&self, secs: f64, root: &Path) {
        let header = ["figure", "ours", "baseline", "ratio", "goal", "peak RSS"];
        let cells: Vec<[String; 6]> = self.rows.iter().map(Row::cells).collect();
        let mut width = header.map(str::len);
        for row in &cells {
            for (w, c) in width.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |cols: &[String]| {
            let parts: Vec<String> = cols.iter().zip(width).map(|(c, w)| format!("{c:<w$}")).collect();
            format!("| {} |", parts.join(" | "))
        };
        let mut out = io::stdout().lock();
        let _ = writeln!(
            out,
            "fbkit bench: {} demo shards of {} on a {NODES}-node replicas-{REPLICAS} fb-devcluster (archive {}); \
             best of {} run(s) per figure; ratio > 1 means fbkit is faster",
            DEMO_SHARDS,
            mib(self.shard_bytes),
            mib(self.archive_bytes),
            self.reps
        );
        let _ = writeln!(out, "{}", line(&header.map(String::from)));
        let _ = writeln!(out, "|{}|", width.iter().map(|w| "-".repeat(w + 2)).collect::<Vec<_>>().join("|"));
        for row in &cells {
            let _ = writeln!(out, "{}", line(row));
        }
        for s in &self.scaling {
            let _ = writeln!(out, "scaling: {s}");
        }
        for s in &self.cpu {
            let _ = writeln!(out, "cpu: {s}");
        }
        let _ = writeln!(
            out,
            "one-core SHA-256 from {}; peak RSS is fbkit's (max over its runs, from wait4); bench took {:.0} s",
            self.core_source, secs
        );
        let mut summary = Vec::new();
        if let Some(r) = self.export_ratio {
            let hash = self.export_hash_ratio.map(|x| format!(" ({x:.2}\u{d7} curl|openssl dgst)")).unwrap_or_default();
            summary.push(format!("export {r:.2}\u{d7} curl{hash}"));
        }
        if !self.core_ratios.is_empty() {
            let each: Vec<String> = self
                .core_ratios
                .iter()
                .map(|(what, r, top)| match top {
                    Some(top) => format!("{what} {r:.2}\u{d7} ({top:.2} of its ceiling)"),
                    None => format!("{what} {r:.2}\u{d7}"),
                })
                .collect();
            summary.push(format!("{} of one SHA-256 core", each.join(", ")));
        }
        let _ = writeln!(out, "summary: {} (commit {})", summary.join("; "), commit(root));
    }
}

/// Short hash of HEAD (read-only git commands), with `-dirty` when the tree differs from it.
pub(crate) fn commit(root: &Path) -> String {
    let git = |args: &[&str]| Command::new("git").current_dir(root).args(args).stderr(Stdio::null()).output();
    let Ok(out) = git(&["rev-parse", "--short", "HEAD"]) else { return "unknown".into() };
    let hash = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if hash.is_empty() {
        return "unknown".into();
    }
    let dirty = git(&["diff-index", "--quiet", "HEAD", "--"]).map(|o| !o.status.success()).unwrap_or(false);
    if dirty {
        format!("{hash}-dirty")
    } else {
        hash
    }
}
