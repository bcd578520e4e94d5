//! fb-devcluster: run a FeatureBase-compatible test cluster on loopback until interrupted.
//!
//! Layer: the binary, above the library; it uses only its public API (`cli`, `spawn`).

use std::io::Write;

use clap::Parser;
use fb_devcluster::cli::Cli;
use fb_devcluster::ClusterConfig;

fn main() {
    let cfg = Cli::parse().config().unwrap_or_else(|e| e.exit());
    if let Err(e) = run(cfg) {
        eprintln!("fb-devcluster: {e:#}");
        std::process::exit(1);
    }
}

fn run(cfg: ClusterConfig) -> anyhow::Result<()> {
    use nix::sys::signal::{SigSet, Signal};
    // Block the signals before any thread starts, so that only sigwait sees them.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    signals.thread_block()?;
    let cluster = fb_devcluster::spawn(cfg)?;
    {
        let mut out = std::io::stdout().lock();
        for url in cluster.urls() {
            writeln!(out, "{url}")?;
        }
        out.flush()?;
    }
    signals.wait()?;
    cluster.shutdown();
    Ok(())
}
