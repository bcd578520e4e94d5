//! fb-manifest's command line: print the manifest of a backup or a live cluster, or compare
//! two. The work is in `fb_core::verify`, `fb_core::manifest` and `fb_core::export`.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, FromArgMatches, Parser, Subcommand, ValueEnum};
use fb_cli::{ClusterArgs, Example, ExitStatus, ReportArgs, Reporter};
use fb_core::census::{self, Census};
use fb_core::client::ClusterClient;
use fb_core::compare::{compare, load_side, Comparison, Side, Source};
use fb_core::manifest::Manifest;
use fb_core::schema::Schema;
use fb_core::verify::{scan_stream, ScanMode};
use fb_core::{Error, Result};
use serde_json::{Map, Value};

/// The documented examples (help, man page, and the docs test run them).
pub const EXAMPLES: &[Example] = &[
    Example {
        about: "Store the manifest apart from the archive",
        command: r#"fb-manifest < fb.tar > fb.manifest.json"#,
    },
    Example {
        about: "Manifest of a live cluster (everything fetched and hashed, nothing stored)",
        command: r#"fb-manifest --host db1:10101 > live.json"#,
    },
    Example {
        about: "Checksums for an extracted backup",
        command: r#"fb-manifest --format sha256sum extracted/ | (cd extracted && sha256sum -c)"#,
    },
    Example { about: "Compare two backups", command: r#"fb-manifest diff monday.tar tuesday.tar"# },
    Example {
        about: "Compare what two backups answer: records, keys, rows' bits, sums, mins and maxes",
        command: r#"fb-manifest diff --census monday.tar tuesday.tar"#,
    },
];

/// What this tool's exit codes mean: 0, then every kind of error it can end with (rendered
/// into `--help`, the man page and the README's table).
pub const EXIT_STATUS: ExitStatus =
    ExitStatus { success: "manifest printed, or diff found no difference", kinds: fb_cli::BACKUP_AND_CLUSTER_ERRORS };

/// The clap command with its examples.
pub fn command() -> clap::Command {
    fb_cli::command_for::<Cli>(EXAMPLES, &EXIT_STATUS)
}

/// Emit the manifest of a backup or a live cluster, or compare two.
#[derive(Parser, Debug)]
#[command(
    name = "fb-manifest",
    version,
    about = "Print the manifest of a backup or a live cluster, or compare two with `fb-manifest diff A B`",
    long_about = "Print the manifest (contract MANIFEST.json, version 1) of a backup stream (plain, zstd or gzip), \
an extracted backup directory (fbkit's or `featurebase backup`'s), or a live cluster (--host: everything is \
fetched and hashed as fb-export would, nothing is kept). When a stream carries its own MANIFEST.json, the \
manifest is computed from the content and the command fails (exit 1) where the two disagree.\n\n\
`fb-manifest diff A B` compares two sides by entry path, size and SHA-256; each side is a stream file, a \
directory, a manifest JSON file, - for stdin, or an http(s):// URL of a live cluster (the cluster flags \
apply). The source descriptions are shown but are not a difference. With `diff --content`, entries whose \
bytes differ are compared by what they hold (schema without timestamps, key stores and idalloc by keys and \
values; shards and dataframes by bytes), for checking a restore against its backup: a FeatureBase restore rewrites those files. \
With `diff --census`, the two sides are compared by what their data answers: records and keys per index, \
bits per row and view, count, sum, min and max per value field; an archive or directory is decoded, a live \
cluster is asked with PQL queries (Count, GroupBy, Sum, Min, Max), so a restore is checked by its answers.",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub print: PrintArgs,
}

/// Arguments of the default action (print a manifest).
#[derive(Args, Debug)]
pub struct PrintArgs {
    /// Backup: a tar stream file (plain, zstd or gzip), a directory, or - for stdin (default)
    #[arg(value_name = "SOURCE")]
    pub source: Option<String>,
    /// Output format
    #[arg(long, value_enum, default_value = "json", help_heading = "Output")]
    pub format: Format,
    /// Compute the manifest of the live cluster named by --host (nothing is stored)
    #[arg(long, help_heading = "Cluster")]
    pub live: bool,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub report: ReportArgs,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Compare two backups, manifests, directories or live clusters
    Diff(DiffArgs),
}

/// `fb-manifest diff A B`.
#[derive(Args, Debug)]
pub struct DiffArgs {
    /// First side: stream file, directory, manifest JSON, -, or http(s):// cluster URL
    #[arg(value_name = "A")]
    pub a: String,
    /// Second side
    #[arg(value_name = "B")]
    pub b: String,
    /// Machine-readable output
    #[arg(long)]
    pub json: bool,
    /// Compare changed entries by what they hold, not by their bytes: schema without the
    /// createdAt/updatedAt stamps and owners (and an int or decimal bound of 0 read as unset,
    /// as upstream's POST /schema does; numbers compared as written), key stores and idalloc by their keys and values; shards and
    /// dataframes stay compared by bytes (a restore keeps them). For checking a restore
    /// against its backup: a FeatureBase restore rewrites the schema and the key stores.
    /// Needs the data of both sides (not a manifest file); holds a schema, key store or
    /// idalloc in memory while reading it, up to 64 MiB (larger ones are compared by bytes)
    #[arg(long)]
    pub content: bool,
    /// Compare what the two sides answer instead of their entries: records and keys per
    /// index, every row's bits per view, count, sum, min and max of every int, decimal and
    /// timestamp field. An archive or directory is decoded; a cluster URL is asked with PQL
    /// queries (its files are not read). Exit 1 names every figure that differs
    #[arg(long, conflicts_with = "content")]
    pub census: bool,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub report: ReportArgs,
}

/// Output formats.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// MANIFEST.json, byte for byte as fb-export writes it
    Json,
    /// `SHA256  PATH` lines for `sha256sum -c` inside an extracted backup
    Sha256sum,
}

/// Parse the command line, noting whether `--host` was given (it turns on the live mode).
pub fn parse() -> Cli {
    let matches = command().get_matches();
    let host_given = matches.value_source("host") == Some(clap::parser::ValueSource::CommandLine);
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    cli.print.live |= host_given;
    cli
}

/// Run fb-manifest with parsed flags; returns the exit code.
pub fn run(cli: Cli) -> ExitCode {
    fb_cli::grow_pipes();
    let result = match &cli.command {
        Some(Command::Diff(d)) => run_diff(d),
        None => run_print(&cli.print),
    };
    match result {
        Ok(code) => code,
        Err(e) => fb_cli::fail("fb-manifest", &e),
    }
}

fn run_print(p: &PrintArgs) -> Result<ExitCode> {
    let reporter = Reporter::new("fb-manifest", &p.report);
    let manifest = if p.live {
        if p.source.is_some() {
            return Err(Error::usage("give either SOURCE or --host, not both"));
        }
        live(&p.cluster, &reporter)?
    } else {
        load(p.source.as_deref().unwrap_or("-"), &p.cluster, &reporter, false, false)?.manifest
    };
    let bytes = match p.format {
        Format::Json => manifest.to_bytes(),
        Format::Sha256sum => {
            manifest.entries.iter().map(|e| format!("{}  {}\n", e.sha256, e.path)).collect::<String>().into_bytes()
        }
    };
    reporter.finish(); // no progress bar left on the line the manifest starts on
    let mut out = std::io::stdout().lock();
    out.write_all(&bytes).and_then(|_| out.flush()).map_err(|e| Error::io("writing the manifest to stdout", e))?;
    reporter.succeeded();
    Ok(ExitCode::SUCCESS)
}

/// Export the live cluster named by `cluster` into `out` (nothing is stored by this).
fn export_live<W: Write + Send + 'static>(
    cluster: &ClusterArgs,
    reporter: &Arc<Reporter>,
    out: W,
) -> Result<(W, fb_core::export::ExportSummary)> {
    let client = Arc::new(ClusterClient::new(&cluster.options()?, reporter.events())?);
    let opts = fb_cli::export_options(Vec::new())?;
    let rt = fb_cli::runtime()?;
    let result = fb_cli::export_until_interrupted(&rt, &client, &opts, out, "interrupted");
    rt.shutdown_background();
    result
}

fn live(cluster: &ClusterArgs, reporter: &Arc<Reporter>) -> Result<Manifest> {
    Ok(export_live(cluster, reporter, std::io::sink())?.1.manifest)
}

/// A live cluster read as a stream: the export writes into a pipe that a scan reads on
/// another thread, so that every entry's content digest is computed (nothing is stored).
fn live_scanned(cluster: &ClusterArgs, reporter: &Arc<Reporter>) -> Result<Side> {
    let (reader, writer) = std::io::pipe().map_err(|e| Error::io("creating a pipe", e))?;
    let events = reporter.events();
    let scanner = std::thread::Builder::new()
        .name("fb-manifest-scan".into())
        .spawn(move || scan_stream(reader, ScanMode { deep: false, content: true, ..ScanMode::default() }, &events))
        .map_err(|e| Error::io("starting the scan thread", e))?;
    // Dropping the writer ends the stream the scan reads; on failure the export has
    // already dropped it, and its error is the one reported.
    let exported = export_live(cluster, reporter, writer).map(|(w, _)| drop(w));
    let scan = scanner.join().map_err(|_| Error::internal("the scan thread panicked"))?;
    exported?;
    Side::of_scan(scan, Map::new())
}

/// Load one side: a cluster URL is exported (and scanned in content mode); anything else is
/// read by fb-core (see [`Source`]).
fn load(side: &str, cluster: &ClusterArgs, reporter: &Arc<Reporter>, allow_json: bool, content: bool) -> Result<Side> {
    match Source::parse(side) {
        Source::Cluster(url) => {
            let mut c = cluster.clone();
            c.host = url;
            if content {
                live_scanned(&c, reporter)
            } else {
                live(&c, reporter).map(Side::manifest_only)
            }
        }
        source => load_side(&source, side, allow_json, content, &reporter.events()),
    }
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

fn run_diff(d: &DiffArgs) -> Result<ExitCode> {
    if d.a == "-" && d.b == "-" {
        return Err(Error::usage("only one side can be stdin"));
    }
    let reporter = Reporter::new("fb-manifest", &d.report);
    if d.census {
        return run_census_diff(d, &reporter);
    }
    let a = load(&d.a, &d.cluster, &reporter, true, d.content)?;
    let b = load(&d.b, &d.cluster, &reporter, true, d.content)?;
    let Comparison { diff, same, ignored, not_compared: unknown } = compare(&a, &b);
    let (a, b) = (a.manifest, b.manifest);
    let mut out = String::new();
    if d.json {
        let entry = |e: &fb_core::manifest::ManifestEntry| serde_json::json!({"path": e.path, "size": e.size, "sha256": e.sha256});
        let mut doc = serde_json::json!({
            "identical": diff.is_empty(),
            "added": diff.added.iter().map(entry).collect::<Vec<_>>(),
            "removed": diff.removed.iter().map(entry).collect::<Vec<_>>(),
            "changed": diff.changed.iter().map(|(x, y)| {
                let mut c = serde_json::json!({"path": x.path, "a": entry(x), "b": entry(y)});
                if let Some(why) = unknown.get(&x.path) {
                    c["note"] = why.clone().into();
                }
                c
            }).collect::<Vec<_>>(),
            "source_a": a.source,
            "source_b": b.source,
        });
        if d.content {
            doc["ignored"] = ignored.clone().into();
            doc["same_content"] =
                same.iter().map(|s| serde_json::json!({"path": s.path, "notes": s.notes})).collect::<Vec<_>>().into();
        }
        out = serde_json::to_string_pretty(&doc).expect("json") + "\n";
    } else {
        for e in &diff.removed {
            out.push_str(&format!("removed  {}  ({} bytes, {})\n", e.path, e.size, short(&e.sha256)));
        }
        for e in &diff.added {
            out.push_str(&format!("added    {}  ({} bytes, {})\n", e.path, e.size, short(&e.sha256)));
        }
        for (x, y) in &diff.changed {
            out.push_str(&format!(
                "changed  {}  ({} -> {} bytes, {} -> {}){}\n",
                x.path,
                x.size,
                y.size,
                short(&x.sha256),
                short(&y.sha256),
                unknown.get(&x.path).map(|w| format!("; {w}")).unwrap_or_default()
            ));
        }
        for p in &ignored {
            out.push_str(&format!(
                "ignored  {p}  (upstream's placeholder dataframe \"Dataframe is disabled\", not data)\n"
            ));
        }
        for s in &same {
            out.push_str(&format!("same     {}  (other bytes, same content: {})\n", s.path, s.notes.join("; ")));
        }
        if a.source != b.source {
            out.push_str(&format!(
                "note: the sources differ (not a difference): A {} / B {}\n",
                Value::Object(a.source.clone()),
                Value::Object(b.source.clone())
            ));
        }
        let mut rewritten = if same.is_empty() { String::new() } else { format!(", {} with other bytes", same.len()) };
        if !ignored.is_empty() {
            rewritten.push_str(&format!(", {} placeholder dataframe(s) ignored", ignored.len()));
        }
        out.push_str(&if diff.is_empty() {
            format!("identical{}: {} entries{rewritten}\n", if d.content { " content" } else { "" }, a.entries.len())
        } else {
            format!(
                "{} differences: {} changed, {} added, {} removed (A: {} entries, B: {} entries{rewritten})\n",
                diff.changed.len() + diff.added.len() + diff.removed.len(),
                diff.changed.len(),
                diff.added.len(),
                diff.removed.len(),
                a.entries.len(),
                b.entries.len()
            )
        });
    }
    reporter.finish(); // no progress bar left on the line the output starts on
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes()).and_then(|_| stdout.flush()).map_err(|e| Error::io("writing to stdout", e))?;
    Ok(conclude(&reporter, diff.is_empty(), || {
        format!("manifests differ: {} entries", diff.changed.len() + diff.added.len() + diff.removed.len())
    }))
}

/// Exit 0 when the sides agree, else 1; with `--progress json` the event stream ends with
/// `finished`, or `failed` (exit code 1 and `differ`'s text).
fn conclude(reporter: &Reporter, same: bool, differ: impl FnOnce() -> String) -> ExitCode {
    if same {
        reporter.succeeded();
        ExitCode::SUCCESS
    } else {
        reporter.ended_with(1, &differ());
        ExitCode::from(1)
    }
}

/// One side's census: a cluster URL is asked with queries, anything else decoded.
fn census_of(side: &str, cluster: &ClusterArgs, reporter: &Arc<Reporter>) -> Result<Census> {
    match Source::parse(side) {
        Source::Cluster(url) => {
            let mut c = cluster.clone();
            c.host = url.clone();
            let client = ClusterClient::new(&c.options()?, reporter.events())?;
            let rt = fb_cli::runtime()?;
            let result = rt.block_on(async {
                let raw: Value = client.get_json(client.entry_node(), "/schema").await?;
                let schema = Schema::from_value(raw)?;
                census::live::census(&client, &schema).await
            });
            rt.shutdown_background();
            result.map_err(|e| e.context(url))
        }
        source => census::of_source(&source, side, &reporter.events()),
    }
}

fn run_census_diff(d: &DiffArgs, reporter: &Arc<Reporter>) -> Result<ExitCode> {
    let a = census_of(&d.a, &d.cluster, reporter)?;
    let b = census_of(&d.b, &d.cluster, reporter)?;
    let result = census::compare(&a, &b);
    let same = result.differences.is_empty();
    let out = if d.json {
        let doc = serde_json::json!({
            "identical": same,
            "differences": result.differences,
            "not_compared": result.not_compared,
            "compared": result.compared,
            "census_a": a,
            "census_b": b,
        });
        serde_json::to_string_pretty(&doc).map_err(|e| Error::internal(format!("encoding the census: {e}")))? + "\n"
    } else {
        let mut out = String::new();
        for diff in &result.differences {
            out.push_str(&format!("differs  {diff}\n"));
        }
        for why in &result.not_compared {
            out.push_str(&format!("not compared: {why}\n"));
        }
        let figures = result.compared;
        out.push_str(&if same {
            format!("same census: {} indexes, {figures} figures agree\n", a.indexes.len())
        } else {
            format!("{} of {figures} census figures differ\n", result.differences.len())
        });
        out
    };
    reporter.finish();
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes()).and_then(|_| stdout.flush()).map_err(|e| Error::io("writing to stdout", e))?;
    Ok(conclude(reporter, same, || format!("censuses differ: {} figures", result.differences.len())))
}
