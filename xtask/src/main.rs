//! Project chores: `cargo xtask man` regenerates the man pages and shell completions from the
//! clap definitions; `cargo xtask man --check` fails when the committed ones differ (CI).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{CommandFactory, Parser, Subcommand};
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

fn examples(tool: &str) -> &'static str {
    match tool {
        "fb-export" => {
            r#".SH EXAMPLES
Nightly backup to a remote host, compressed:
.PP
.nf
  fb-export \-\-host db1:10101 | zstd | ssh vault 'cat > fb\-$(date +%F).tar.zst'
.fi
.PP
Backup over TLS with a token kept out of argv, to a file written atomically:
.PP
.nf
  fb-export \-\-host https://db1:10101 \-\-auth\-token\-file tok \-\-tls.ca\-certificate ca.crt \-o fb.tar
.fi
.PP
Two indexes, four files at a time, manifest kept apart as well:
.PP
.nf
  fb-export \-\-concurrency 4 \-\-index users \-\-index events \-o part.tar && fb-manifest part.tar > part.manifest.json
.fi
"#
        }
        "fb-import" => {
            r#".SH EXAMPLES
Restore from a remote backup into a new (possibly bigger) cluster:
.PP
.nf
  ssh vault 'cat fb\-2026\-11\-24.tar.zst' | zstd \-d | fb-import \-\-host newdb:10101 \-\-concurrency 8
.fi
.PP
Restore from a file (every entry checked before it is committed):
.PP
.nf
  fb-import \-\-host https://newdb:10101 \-\-auth\-token\-file tok \-s fb.tar
.fi
.PP
Check a backup end to end without a cluster:
.PP
.nf
  fb-import \-\-dry\-run < fb.tar.gz
.fi
"#
        }
        "fb-manifest" => {
            r#".SH EXAMPLES
Store the manifest apart from the archive, and check the archive against it later:
.PP
.nf
  fb-manifest < fb.tar > fb.manifest.json
  fb-verify \-\-manifest fb.manifest.json fb.tar
.fi
.PP
Manifest of a live cluster (nothing stored), and checksums for an extracted backup:
.PP
.nf
  fb-manifest \-\-host db1:10101 > live.json
  fb-manifest \-\-format sha256sum extracted/ | (cd extracted && sha256sum \-c)
.fi
.PP
Compare two backups:
.PP
.nf
  fb-manifest diff monday.tar tuesday.tar
.fi
"#
        }
        "fb-verify" => {
            r#".SH EXAMPLES
Verify a backup, and from cron, alert on failure:
.PP
.nf
  fb-verify backup.tar
  0 5 * * * ssh vault 'cat fb.tar.zst' | zstd \-d | fb-verify \-q || mail \-s 'backup BAD' ops
.fi
.PP
Deep check against a manifest stored apart:
.PP
.nf
  zstd \-dc fb.tar.zst | fb-verify \-\-manifest fb.manifest.json \-\-deep
.fi
"#
        }
        _ => {
            r#".SH EXAMPLES
A three-node cluster with two replicas and demo data on ports 10101\-10103:
.PP
.nf
  fb-devcluster \-\-nodes 3 \-\-replicas 2 \-\-port 10101 \-\-demo
.fi
"#
        }
    }
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
        fb_export::Cli::command(),
        fb_import::Cli::command(),
        fb_manifest::Cli::command(),
        fb_verify::Cli::command(),
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
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().context("workspace root")?.join("man");
    match cli.task {
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
