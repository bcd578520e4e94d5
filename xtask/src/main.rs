//! Project chores: `cargo xtask man` regenerates the man pages, shell completions and README's
//! exit-code table from the clap definitions and `fb_core::ErrorKind`; `cargo xtask man
//! --check` fails when the committed ones differ (CI).
//! `cargo xtask bench` measures the release binaries against same-run baselines (not part of
//! the test run); `cargo xtask bench-upstream` against FeatureBase's own backuptar and
//! restoretar on a real cluster (with a featurebase binary you built).

mod bench;
mod clusters;
mod man;
mod process;
mod smallset;
mod upstream;

use std::path::Path;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Generate man pages into man/, completions into man/completions/ and README's exit-code table
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
    /// Write the benchmarks' small-shard data set (an extracted backup directory that
    /// `fb-devcluster --seed-from DIR` serves), to look at it or measure by hand
    SmallSet {
        /// The directory to create
        dir: std::path::PathBuf,
        /// Shards in each of the two unkeyed indexes (the keyed index adds 256)
        #[arg(long, default_value_t = 640)]
        shards: u64,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().context("workspace root")?;
    match cli.task {
        Task::Bench(args) => bench::run(workspace, args),
        Task::BenchUpstream(args) => upstream::run(workspace, args),
        Task::Man { check } => man::run(workspace, check),
        Task::SmallSet { dir, shards } => {
            let set = smallset::write(&dir, shards)?;
            eprintln!("{}: {} files, {} shards", dir.display(), set.files, set.shards);
            Ok(())
        }
    }
}
