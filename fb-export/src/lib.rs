//! fb-export's command line. The work is in `fb_core::export`.

use std::io::{BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use fb_cli::{ClusterArgs, Example, ExitStatus, ReportArgs, Reporter};
use fb_core::client::ClusterClient;
use fb_core::output::AtomicFile;
use fb_core::{Error, ErrorKind, Result};

/// The documented examples (help, man page, and the docs test run them).
pub const EXAMPLES: &[Example] = &[
    Example {
        about: "Nightly backup to a remote host, compressed; renamed only when every stage succeeded",
        command: r#"set -o pipefail; fb-export --host db1:10101 | zstd | ssh vault 'cat > fb.tar.zst.part' && ssh vault 'mv fb.tar.zst.part fb.tar.zst'"#,
    },
    Example {
        about: "Over TLS, token kept out of argv, to a file written atomically",
        command: r#"fb-export --host https://db1:10101 --auth-token-file tok --tls.ca-certificate ca.crt -o fb.tar"#,
    },
    Example {
        about: "Two indexes, four files at a time, and the manifest kept apart",
        command: r#"fb-export --host db1:10101 --concurrency 4 --index users --index events -o part.tar && fb-manifest part.tar > part.manifest.json"#,
    },
];

/// What this tool's exit codes mean: 0, then every kind of error it can end with (rendered
/// into `--help`, the man page and the README's table).
pub const EXIT_STATUS: ExitStatus = ExitStatus {
    success: "success, the archive is complete with its manifest",
    kinds: &[
        ErrorKind::Usage,
        ErrorKind::Unavailable,
        ErrorKind::Internal,
        ErrorKind::CannotCreate,
        ErrorKind::Io,
        ErrorKind::Protocol,
        ErrorKind::Auth,
        ErrorKind::Precondition,
        ErrorKind::Interrupted,
    ],
};

/// The clap command with its examples.
pub fn command() -> clap::Command {
    fb_cli::command_for::<Cli>(EXAMPLES, &EXIT_STATUS)
}

/// Parse the process arguments.
pub fn parse() -> Cli {
    fb_cli::parse_for(EXAMPLES, &EXIT_STATUS)
}

/// Back up a whole FeatureBase cluster, reached through any one node, as one tar stream.
#[derive(Parser, Debug)]
#[command(
    name = "fb-export",
    version,
    about = "Back up a whole FeatureBase cluster as one deterministic tar stream",
    long_about = "Back up a whole FeatureBase cluster, reached through any one node, as one deterministic tar \
stream: the layout of `featurebase backup`, with MANIFEST.json (sizes and SHA-256 of every entry) as the last \
entry. A failed export never writes the manifest, so a cut or failed stream can never pass for a backup.\n\n\
Files stream from the cluster to the output without being held in memory or spilled to disk: every file's \
length is known from its first bytes (RBF and bbolt headers) or from Content-Length. A file that declares \
neither is refused (exit 76) rather than buffered."
)]
pub struct Cli {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Write the archive to FILE (atomically: temp file, fsync, rename) instead of stdout; - is stdout
    /// (./- for a file named -). The file gets mode 0666 less the umask, as `> FILE` would (0644 under
    /// umask 022); run with umask 077 for a file only you can read
    #[arg(short, long, value_name = "FILE", help_heading = "Output")]
    pub output: Option<PathBuf>,
    /// With -o: skip the fsyncs of the file and its directory
    #[arg(long, requires = "output", help_heading = "Output")]
    pub no_sync: bool,
    /// Back up only this index (repeatable); an unknown name is an error
    #[arg(long = "index", value_name = "NAME", help_heading = "Behaviour")]
    pub indexes: Vec<String>,
    #[command(flatten)]
    pub report: ReportArgs,
}

/// Run fb-export with parsed flags; returns the exit code.
pub fn run(cli: Cli) -> ExitCode {
    fb_cli::grow_pipes();
    let reporter = Reporter::new("fb-export", &cli.report);
    match run_inner(&cli, &reporter) {
        Ok(summary) => {
            reporter.summary(&fb_cli::transfer_summary(summary.files, summary.bytes, summary.seconds));
            ExitCode::SUCCESS
        }
        Err(e) => fb_cli::fail("fb-export", &e),
    }
}

/// Output buffer. Body chunks at least this large bypass it and go to the file or pipe
/// directly (one copy fewer: the copy into a 1 MiB buffer was 10% of fb-export's CPU time);
/// tar headers and small chunks are gathered.
const OUT_BUF: usize = 64 << 10;

fn run_inner(cli: &Cli, reporter: &Arc<Reporter>) -> Result<fb_core::export::ExportSummary> {
    let opts = fb_cli::export_options(cli.indexes.clone())?;
    let cluster = cli.cluster.options()?;
    // `-o -` is stdout, as for every other tool that takes a file name.
    let output = cli.output.as_ref().filter(|p| p.as_os_str() != "-");
    if output.is_none() && std::io::stdout().is_terminal() {
        return Err(Error::usage("refusing to write archive bytes to a terminal; redirect stdout or use -o FILE"));
    }
    let client = Arc::new(ClusterClient::new(&cluster, reporter.events())?);
    let rt = fb_cli::runtime()?;
    let result = (|| match output {
        Some(path) => {
            let file = AtomicFile::create(path, !cli.no_sync)?;
            let temp = file.temp_path();
            let out = BufWriter::with_capacity(OUT_BUF, file);
            match fb_cli::export_until_interrupted(
                &rt,
                &client,
                &opts,
                out,
                "interrupted; the partial file was removed",
            ) {
                Ok((out, summary)) => {
                    let file = out.into_inner().map_err(|e| Error::io("flushing the archive", e.into_error()))?;
                    file.commit()?;
                    Ok(summary)
                }
                Err(e) => {
                    // The writer thread may still hold the temporary file; remove it by name.
                    let _ = std::fs::remove_file(&temp);
                    Err(e)
                }
            }
        }
        None => {
            let out = BufWriter::with_capacity(OUT_BUF, fb_cli::stdout_file()?);
            let (mut out, summary) = fb_cli::export_until_interrupted(
                &rt,
                &client,
                &opts,
                out,
                "interrupted; the output is incomplete (no manifest)",
            )?;
            out.flush().map_err(|e| Error::io("flushing stdout", e))?;
            Ok(summary)
        }
    })();
    // Do not wait for tasks still blocked on the network or a full pipe.
    rt.shutdown_background();
    result
}
