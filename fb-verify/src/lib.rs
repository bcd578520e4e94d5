//! fb-verify's command line. The work is in `fb_core::verify`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use fb_cli::{Example, ExitStatus, ReportArgs, Reporter};
use fb_core::census;
use fb_core::verify::{read_manifest_file, scan_source, verify, EntryStatus, ScanMode};
use fb_core::{Error, ErrorKind};

/// The documented examples (help, man page, and the docs test run them).
pub const EXAMPLES: &[Example] = &[
    Example { about: "Verify a backup file", command: r#"fb-verify backup.tar"# },
    Example {
        about: "From cron: verify last night's backup on the remote host and alert on failure",
        command: r#"ssh vault 'cat fb.tar.zst' | zstd -d | fb-verify -q || echo 'backup BAD' | mail -s fbkit ops"#,
    },
    Example {
        about: "Deep check against a manifest stored apart",
        command: r#"zstd -dc fb.tar.zst | fb-verify --manifest fb.manifest.json --deep"#,
    },
    Example {
        about: "What the backup answers: records, keys, rows and values per index and field",
        command: r#"fb-verify --census backup.tar"#,
    },
];

/// What this tool's exit codes mean: 0, then every kind of error it can end with (rendered
/// into `--help`, the man page and the README's table).
pub const EXIT_STATUS: ExitStatus = ExitStatus {
    success: "verified, every check passed",
    kinds: &[ErrorKind::Verification, ErrorKind::Usage, ErrorKind::InvalidBackup, ErrorKind::Truncated, ErrorKind::Io],
};

/// The clap command with its examples.
pub fn command() -> clap::Command {
    fb_cli::command_for::<Cli>(EXAMPLES, &EXIT_STATUS)
}

/// Parse the process arguments.
pub fn parse() -> Cli {
    fb_cli::parse_for(EXAMPLES, &EXIT_STATUS)
}

/// Check a backup without restoring it.
#[derive(Parser, Debug)]
#[command(
    name = "fb-verify",
    version,
    about = "Check an fbkit backup (stream, file or extracted directory) without restoring it",
    long_about = "Check an fbkit backup without restoring it: recompute the size and SHA-256 of every entry and \
compare them with the manifest (the stream's own MANIFEST.json, or one stored apart with --manifest). Reports \
missing, extra, changed and truncated entries by path. With --deep, also checks each file's inner format \
(RBF meta page and page count, bbolt meta pages and checksums, schema JSON and the indexes and fields the \
files name). With --census, also decodes every shard and key store and prints what the backup answers \
(records and keys per index, bits per row and view, count, sum, min and max per int, decimal and timestamp \
field) without restoring it. Exit 0 only when every check passed."
)]
pub struct Cli {
    /// Backup to check: a tar stream (plain, zstd or gzip), an extracted directory, or - for stdin
    #[arg(value_name = "SOURCE")]
    pub source: Option<PathBuf>,
    /// Check against this manifest (stored apart) instead of the stream's own
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,
    /// Also check each file's inner format
    #[arg(long)]
    pub deep: bool,
    /// Also decode every shard and key store and print what the backup answers (in --json: "census")
    #[arg(long)]
    pub census: bool,
    /// Rows shown per field view in the census text (--json always has all of them)
    #[arg(long, value_name = "N", default_value_t = 10, requires = "census")]
    pub top: usize,
    /// Write a machine-readable report to stdout: {"verdict": "ok" or "failed", "exit_code", "error", "entries", "census"}
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub report: ReportArgs,
}

/// Run fb-verify with parsed flags; returns the exit code.
pub fn run(cli: Cli) -> ExitCode {
    fb_cli::grow_pipes();
    let reporter = Reporter::new("fb-verify", &cli.report);
    let started = std::time::Instant::now();
    let external = match cli.manifest.as_deref().map(read_manifest_file).transpose() {
        Ok(m) => m,
        Err(e) => return fb_cli::fail("fb-verify", &e),
    };
    let mode = ScanMode { deep: cli.deep, census: cli.census, ..ScanMode::default() };
    let mut scan = match scan_source(cli.source.as_deref(), mode, &reporter.events()) {
        Ok(s) => s,
        Err(e) => return fb_cli::fail("fb-verify", &e),
    };
    let (census, census_failure) = match cli.census.then(|| census::of_scan(&mut scan)) {
        Some(Ok(c)) => (Some(c), None),
        Some(Err(e)) => (None, Some(e.context("census"))),
        None => (None, None),
    };
    let bytes: u64 = scan.entries.iter().map(|e| e.size).sum();
    let result = verify(scan, external.as_ref(), cli.deep);
    // The report follows on stderr and stdout: the progress bar goes first.
    reporter.finish();
    for r in result.entries.iter().filter(|r| r.status != EntryStatus::Ok) {
        let mut line = format!("{:<9} {}", format!("{:?}", r.status).to_lowercase(), r.path);
        if let (Some(e), Some(a)) = (&r.expected, &r.actual) {
            if e.size != a.size {
                line.push_str(&format!(": {} bytes expected, {} read", e.size, a.size));
            } else if e.sha256 != a.sha256 {
                line.push_str(&format!(": sha256 {} expected, {} read", &e.sha256[..12], &a.sha256[..12]));
            }
        }
        if let Some(d) = &r.detail {
            line.push_str(&format!(": {d}"));
        }
        reporter.line(&line);
    }
    // A verification failure comes first; a census that could not be taken fails after it.
    let failure = result.failure.or(census_failure);
    if cli.json {
        // A fixed verdict for machines; the error, when there is one, in its own key.
        let doc = serde_json::json!({
            "verdict": if failure.is_none() { "ok" } else { "failed" },
            "exit_code": failure.as_ref().map(Error::exit_code).unwrap_or(0),
            "error": failure.as_ref().map(Error::chain),
            "entries": result.entries,
            "census": census.as_ref().map(serde_json::to_value).transpose().unwrap_or_default(),
        });
        let mut out = std::io::stdout().lock();
        let written =
            serde_json::to_writer_pretty(&mut out, &doc).map_err(std::io::Error::from).and_then(|_| writeln!(out));
        if let Err(e) = written {
            return fb_cli::fail("fb-verify", &Error::io("writing the report to stdout", e));
        }
    }
    if let (Some(c), false) = (&census, cli.json) {
        let mut out = std::io::stdout().lock();
        if let Err(e) = out.write_all(c.render(cli.top).as_bytes()) {
            return fb_cli::fail("fb-verify", &Error::io("writing the census to stdout", e));
        }
    }
    match failure {
        None => {
            let secs = started.elapsed().as_secs_f64();
            reporter.summary(&format!(
                "OK: {} entries verified, {}",
                result.entries.len(),
                fb_cli::transfer_summary(result.entries.len() as u64, bytes, secs)
                    .split_once(", ")
                    .map(|x| x.1)
                    .unwrap_or_default()
            ));
            ExitCode::SUCCESS
        }
        Some(e) => fb_cli::fail("fb-verify", &e.context("FAILED")),
    }
}
