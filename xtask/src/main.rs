//! Project chores: `cargo xtask man` regenerates the man pages and shell completions from the
//! clap definitions; `cargo xtask man --check` fails when the committed ones differ (CI).
//! `cargo xtask bench` measures the release binaries against same-run baselines (not part of
//! the test run); `cargo xtask bench-upstream` against FeatureBase's own backuptar and
//! restoretar on a real cluster (with a featurebase binary you built).

mod bench;
mod upstream;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use clap_complete::Shell;

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Generate man pages into man/ and completions into man/completions/
    Man {
        /// Do not write; fail if the committed files differ from what would be generated
        #[arg(long)]
        check: bool,
    },
    /// Build the release binaries, start fb-devcluster with large demo shards, and print
    /// throughput, memory and no-spill figures against baselines measured in the same run
    Bench(bench::BenchArgs),
    /// Side by side with FeatureBase's own backuptar and restoretar on the same real cluster
    /// (needs a featurebase binary you built: --featurebase PATH or FEATUREBASE_BIN)
    BenchUpstream(upstream::UpstreamArgs),
}

const EXIT_STATUS: &str = r#".SH "EXIT STATUS"
.TP
\fB0\fR
success; verified; identical
.TP
\fB1\fR
verification failed, or manifests differ
.TP
\fB2\fR
usage error (bad flags)
.TP
\fB65\fR
input is not a valid backup: malformed tar, bad manifest, unsafe entry path, unknown format version
.TP
\fB66\fR
input ended early: truncated stream, no manifest, missing file
.TP
\fB69\fR
cluster unreachable, or a shard with no reachable replica
.TP
\fB73\fR
cannot create the output file
.TP
\fB74\fR
I/O error, including output closed early (broken pipe)
.TP
\fB76\fR
the cluster answered in a way this version does not understand
.TP
\fB77\fR
authentication or authorisation refused (no retries)
.TP
\fB78\fR
precondition refused: target cluster not empty, bad TLS material
.TP
\fB130\fR
interrupted; temporary files removed
"#;

const ENVIRONMENT: &str = r#".SH ENVIRONMENT
.TP
\fBFBKIT_AUTH_TOKEN\fR
Bearer token for a cluster with authentication on, instead of \fB\-\-auth\-token\fR (which shows in
\fBps\fR(1) and shell history). The token is never printed.
.TP
\fBSOURCE_DATE_EPOCH\fR
Seconds since the epoch: the mtime of every archive entry, recorded in the manifest. Unset: 0.
"#;

const FILES: &str = r#".SH FILES
An archive is a POSIX tar stream with the layout \fBfeaturebase backup\fR writes:
.PP
.nf
  schema
  indexes/<index>/shards/<%04d shard>          RBF shard snapshot
  indexes/<index>/dataframe/<%04d shard>       dataframe file, when the cluster has one
  indexes/<index>/translate/<%04d partition>   key partition of a keyed index (bbolt)
  indexes/<index>/fields/<field>/translate     key store of a keyed field (bbolt)
  idalloc                                      ID allocator state (bbolt)
  MANIFEST.json                                always the last entry
.fi
.PP
\fBMANIFEST.json\fR (format "fbkit-manifest", version 1) lists every entry in archive order with its
path, kind, index, field, shard or partition, size and SHA-256; totals per kind; \fBentries_sha256\fR
(SHA-256 of the compact JSON of the entries) and \fBmanifest_sha256\fR (SHA-256 of everything before
it). A stream without it is incomplete. Entries have mode 0644, owner 0/0, and a fixed mtime.
"#;

/// Escape text for roff: backslashes and leading dots, and hyphens as minus signs.
fn roff(text: &str) -> String {
    let t = text.replace('\\', "\\e").replace('-', "\\-");
    if t.starts_with('.') || t.starts_with('\'') {
        format!("\\&{t}")
    } else {
        t
    }
}

/// The EXAMPLES section, from the tool's documented examples (the ones the tests run).
fn examples(tool: &str) -> String {
    let list: &[fb_cli::Example] = match tool {
        "fb-export" => fb_export::EXAMPLES,
        "fb-import" => fb_import::EXAMPLES,
        "fb-manifest" => fb_manifest::EXAMPLES,
        "fb-verify" => fb_verify::EXAMPLES,
        _ => &[fb_cli::Example {
            about: "A three-node cluster with two replicas and demo data on ports 10101-10103",
            command: "fb-devcluster --nodes 3 --replicas 2 --port 10101 --demo",
        }],
    };
    let mut out = String::from(".SH EXAMPLES\n");
    for e in list {
        out.push_str(&format!("{}:\n.PP\n.nf\n  {}\n.fi\n.PP\n", roff(e.about), roff(e.command)));
    }
    out
}

fn see_also(tool: &str) -> String {
    let all = ["fb-export", "fb-import", "fb-manifest", "fb-verify", "fb-devcluster"];
    let list: Vec<String> = all.iter().filter(|t| **t != tool).map(|t| format!("\\fB{t}\\fR(1)")).collect();
    format!(".SH \"SEE ALSO\"\n{}, \\fBzstd\\fR(1), \\fBtar\\fR(1), \\fBsha256sum\\fR(1)\n", list.join(", "))
}

fn man_page(cmd: clap::Command) -> Result<Vec<u8>> {
    let tool = cmd.get_name().to_string();
    let man = clap_mangen::Man::new(cmd.clone());
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    if cmd.get_subcommands().next().is_some() {
        man.render_subcommands_section(&mut out)?;
    }
    out.extend_from_slice(examples(&tool).as_bytes());
    out.extend_from_slice(EXIT_STATUS.as_bytes());
    out.extend_from_slice(ENVIRONMENT.as_bytes());
    out.extend_from_slice(FILES.as_bytes());
    out.extend_from_slice(see_also(&tool).as_bytes());
    man.render_version_section(&mut out)?;
    Ok(out)
}

fn commands() -> Vec<clap::Command> {
    vec![
        fb_export::command(),
        fb_import::command(),
        fb_manifest::command(),
        fb_verify::command(),
        fb_devcluster::cli_command(),
    ]
}

fn generated() -> Result<Vec<(PathBuf, Vec<u8>)>> {
    let mut files = Vec::new();
    for cmd in commands() {
        let name = cmd.get_name().to_string();
        files.push((PathBuf::from(format!("{name}.1")), man_page(cmd.clone())?));
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut c = cmd.clone();
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut c, name.clone(), &mut buf);
            let file = match shell {
                Shell::Bash => format!("{name}.bash"),
                Shell::Zsh => format!("_{name}"),
                _ => format!("{name}.fish"),
            };
            files.push((PathBuf::from("completions").join(file), buf));
        }
    }
    Ok(files)
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().context("workspace root")?;
    let root = workspace.join("man");
    match cli.task {
        Task::Bench(args) => return bench::run(workspace, args),
        Task::BenchUpstream(args) => return upstream::run(workspace, args),
        Task::Man { check } => {
            let mut stale = Vec::new();
            for (rel, bytes) in generated()? {
                let path = root.join(&rel);
                if check {
                    if std::fs::read(&path).ok().as_deref() != Some(&bytes[..]) {
                        stale.push(rel.display().to_string());
                    }
                } else {
                    std::fs::create_dir_all(path.parent().context("parent")?)?;
                    std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
                }
            }
            if !stale.is_empty() {
                bail!(
                    "man pages or completions are out of date: {} (run `cargo xtask man` and commit)",
                    stale.join(", ")
                );
            }
            if check {
                println!("man pages and completions are up to date");
            }
        }
    }
    Ok(())
}
