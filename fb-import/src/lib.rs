//! fb-import's command line. The work is in `fb_core::import`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use fb_cli::{ClusterArgs, Example, ExitStatus, ReportArgs, Reporter};
use fb_core::client::ClusterClient;
use fb_core::import::{import, open_backup, ImportOptions, ImportSummary};
use fb_core::verify::read_manifest_file;
use fb_core::{Error, Result};

/// The documented examples (help, man page, and the docs test run them).
pub const EXAMPLES: &[Example] = &[
    Example {
        about: "Restore a remote backup into a new, bigger cluster",
        command: r#"ssh vault 'cat fb.tar.zst' | zstd -d | fb-import --host newdb:10101 --concurrency 8"#,
    },
    Example {
        about: "Restore from a file over TLS: every entry is checked before it is committed",
        command: r#"fb-import --host https://newdb:10101 --auth-token-file tok --tls.ca-certificate ca.crt -s fb.tar"#,
    },
    Example {
        about: "Check a gzip backup end to end without a cluster",
        command: r#"fb-import --dry-run < fb.tar.gz"#,
    },
];

/// What this tool's exit codes mean: 0, then every kind of error it can end with (rendered
/// into `--help`, the man page and the README's table).
pub const EXIT_STATUS: ExitStatus = ExitStatus {
    success: "restored (with --dry-run, every entry checked and nothing sent)",
    kinds: fb_cli::BACKUP_AND_CLUSTER_ERRORS,
};

/// The clap command with its examples.
pub fn command() -> clap::Command {
    fb_cli::command_for::<Cli>(EXAMPLES, &EXIT_STATUS)
}

/// Parse the process arguments.
pub fn parse() -> Cli {
    fb_cli::parse_for(EXAMPLES, &EXIT_STATUS)
}

/// Restore a backup into an empty FeatureBase cluster of any size.
#[derive(Parser, Debug)]
#[command(
    name = "fb-import",
    version,
    about = "Restore an fbkit backup stream into an empty FeatureBase cluster of any size",
    long_about = "Restore a backup stream (plain, zstd or gzip, detected by magic bytes) into an empty \
FeatureBase cluster of any size: each file goes to every node that owns it on the target's topology. Also \
accepts `featurebase backuptar` output and a tar of a `featurebase backup` directory (these have no \
MANIFEST.json: give --no-manifest to accept that sizes and checksums cannot be checked).\n\n\
Every entry's size and SHA-256 are checked against the manifest. With -s FILE or --manifest FILE the manifest \
is known before anything is sent and a wrong entry is never committed; from a pipe the manifest comes last, so \
a damaged or cut stream is found after data was sent, and the error says the target holds an incomplete \
restore. Requests that carry data are never retried."
)]
pub struct Cli {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Read the backup from FILE (checked whole before anything is sent) instead of stdin
    #[arg(short = 's', long = "source", value_name = "FILE", help_heading = "Input")]
    pub source: Option<PathBuf>,
    /// The manifest, stored apart: every entry is checked before it is committed
    #[arg(long, value_name = "FILE", help_heading = "Input")]
    pub manifest: Option<PathBuf>,
    /// Accept a stream without MANIFEST.json (featurebase backuptar or backup directory)
    #[arg(long, help_heading = "Input")]
    pub no_manifest: bool,
    /// Restore into a cluster that already holds data (its files may be overwritten); the
    /// indexes and fields it lacks are created, and one it holds with other options is refused
    #[arg(long, help_heading = "Behaviour")]
    pub force: bool,
    /// Finish an interrupted restore of this backup: send only the entries the target lacks or
    /// holds differently (needs -s FILE); a target whose schema is not the backup's is refused
    #[arg(long, help_heading = "Behaviour", conflicts_with_all = ["dry_run", "force"])]
    pub resume: bool,
    /// Read and check everything; send nothing, do not contact the cluster
    #[arg(long, help_heading = "Behaviour")]
    pub dry_run: bool,
    #[command(flatten)]
    pub report: ReportArgs,
}

/// Run fb-import with parsed flags; returns the exit code.
pub fn run(cli: Cli) -> ExitCode {
    fb_cli::grow_pipes();
    let reporter = Reporter::new("fb-import", &cli.report);
    match run_inner(&cli, &reporter) {
        Ok(s) => {
            let what = if cli.dry_run { "checked (dry run, nothing sent)" } else { "restored" };
            let resumed = if cli.resume {
                format!("; {} entries were on the target already, {} bytes sent", s.kept, s.sent_bytes)
            } else {
                String::new()
            };
            reporter.summary(&format!("{what}: {}{resumed}", fb_cli::transfer_summary(s.files, s.bytes, s.seconds)));
            ExitCode::SUCCESS
        }
        Err(e) if e.message().contains("INCOMPLETE RESTORE") => {
            fb_cli::fail("fb-import", &e.with_suffix(&next_step(&cli)))
        }
        Err(e) => fb_cli::fail("fb-import", &e),
    }
}

/// The command that finishes a restore that broke off (`--resume` reads the backup twice, so
/// from a pipe the stream must be saved to a file first).
fn next_step(cli: &Cli) -> String {
    let host = &cli.cluster.host;
    match cli.source.as_deref().filter(|p| p.as_os_str() != "-") {
        Some(file) => format!(". To finish it, run: fb-import --resume --host {host} -s {}", file.display()),
        None => format!(". To finish it, save the backup to a file and run: fb-import --resume --host {host} -s FILE"),
    }
}

fn run_inner(cli: &Cli, reporter: &Arc<Reporter>) -> Result<ImportSummary> {
    let mut opts = ImportOptions {
        force: cli.force,
        dry_run: cli.dry_run,
        no_manifest: cli.no_manifest,
        manifest: cli.manifest.as_deref().map(read_manifest_file).transpose()?,
        schema: None,
        resume: cli.resume,
        contents: Default::default(),
    };
    let input = open_backup(cli.source.as_deref(), &mut opts)?;
    let client = if cli.dry_run {
        None
    } else {
        Some(Arc::new(ClusterClient::new(&cli.cluster.options()?, reporter.events())?))
    };
    let rt = fb_cli::runtime()?;
    let events = reporter.events();
    let result = rt.block_on(async {
        tokio::select! {
            r = import(client, input, &opts, events) => r,
            _ = fb_cli::interrupted() => {
                let sent = reporter.files_done();
                Err(Error::interrupted(if sent == 0 {
                    "interrupted before any entry was complete; entries being sent were aborted".to_string()
                } else {
                    format!(
                        "interrupted after {sent} entries were sent: THE TARGET CLUSTER NOW HOLDS AN INCOMPLETE RESTORE (-vv lists them)"
                    )
                }))
            }
        }
    });
    rt.shutdown_background();
    result
}
