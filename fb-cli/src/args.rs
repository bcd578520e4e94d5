//! The flags every tool shares, defined once and flattened into each tool: cluster and TLS
//! (named as upstream names them) and reporting.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use fb_core::client::{ClusterOptions, TlsOptions};
use fb_core::{Error, Result};

/// The shared cluster flags of contract §3, named as upstream names them.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Cluster")]
pub struct ClusterArgs {
    /// Any node of the cluster: host[:port], with http:// (default) or https://
    #[arg(long, default_value = "localhost:10101", value_name = "HOST[:PORT]")]
    pub host: String,
    /// Bearer token for a cluster with auth on (prefer FBKIT_AUTH_TOKEN or --auth-token-file: argv is visible in ps)
    #[arg(long, env = "FBKIT_AUTH_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub auth_token: Option<String>,
    /// Read the bearer token from this file (surrounding whitespace ignored)
    #[arg(long, value_name = "FILE", conflicts_with = "auth_token")]
    pub auth_token_file: Option<PathBuf>,
    /// Files moved at once; output order and bytes do not depend on it
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    /// How long one idempotent request is retried (5xx, resets) before the next replica, and how long
    /// the owners of a file are asked again while the cluster still lists one as up (frozen, just died)
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = parse_duration)]
    pub retry_period: Duration,
    /// Longest wait for a node's response headers, and between two pieces of a body
    #[arg(long, default_value = "60s", value_name = "DURATION", value_parser = parse_duration)]
    pub header_timeout: Duration,
    /// Cap on the bytes per second of file data, all transfers together (whatever --concurrency is):
    /// 50M = 50 MB/s, 20MiB = 20 MiB/s, 500k, or plain bytes. fb-import counts every copy it sends (an
    /// entry for three replicas counts three times); fb-export and fb-manifest count what they read.
    /// Default: no limit
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub max_rate: Option<u64>,
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// The TLS flags, named as upstream names them.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "TLS")]
pub struct TlsArgs {
    /// PEM file of the CA certificate(s) that signed the cluster's certificates
    #[arg(long = "tls.ca-certificate", value_name = "FILE")]
    pub ca_certificate: Option<PathBuf>,
    /// PEM client certificate, for clusters that require one (mTLS)
    #[arg(long = "tls.certificate", value_name = "FILE", requires = "key")]
    pub certificate: Option<PathBuf>,
    /// PEM private key of the client certificate
    #[arg(long = "tls.key", value_name = "FILE", requires = "certificate")]
    pub key: Option<PathBuf>,
    /// Do not verify the server's certificate (unsafe; off by default)
    #[arg(long = "tls.skip-verify")]
    pub skip_verify: bool,
}

impl ClusterArgs {
    /// The core's options; reads the token file.
    pub fn options(&self) -> Result<ClusterOptions> {
        let auth_token = match (&self.auth_token, &self.auth_token_file) {
            (_, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    Error::precondition(format!("cannot read --auth-token-file {}", path.display())).with_source(e)
                })?;
                Some(text.trim().to_string())
            }
            (Some(t), None) => Some(t.trim().to_string()),
            (None, None) => None,
        };
        Ok(ClusterOptions {
            host: self.host.clone(),
            auth_token,
            tls: TlsOptions {
                ca_certificate: self.tls.ca_certificate.clone(),
                certificate: self.tls.certificate.clone(),
                key: self.tls.key.clone(),
                skip_verify: self.tls.skip_verify,
            },
            retry_period: self.retry_period,
            header_timeout: self.header_timeout,
            concurrency: usize::from(self.concurrency),
            max_rate: self.max_rate,
        })
    }
}

/// Export options for these indexes, stamped from `SOURCE_DATE_EPOCH` (entry mtimes and the
/// manifest's source) when it is set, else mtime 0. Shared by fb-export and
/// `fb-manifest --host`, whose manifests must be the same bytes.
pub fn export_options(indexes: Vec<String>) -> Result<fb_core::export::ExportOptions> {
    let epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.trim().is_empty() => Some(
            v.trim()
                .parse::<u64>()
                .map_err(|_| Error::usage(format!("SOURCE_DATE_EPOCH={v:?} is not a whole number of seconds")))?,
        ),
        _ => None,
    };
    Ok(fb_core::export::ExportOptions { indexes, mtime: epoch.unwrap_or(0), source_date_epoch: epoch })
}

/// A duration as humantime reads it (`30s`, `500ms`, `1.5s`, `2m`, `1h30m`, `2min`), or a
/// plain number of seconds (`7`, `0.5`).
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|_| format!("{s:?} is not a valid duration"));
    }
    humantime::parse_duration(s).map_err(|e| format!("{s:?} is not a duration like 30s, 500ms, 2m: {e}"))
}

/// A rate in bytes per second as bytesize reads a size (`50M` = 50 MB, `20MiB`, `500k`,
/// `1000`), with an optional `/s`; at least 1 KB/s (a lower limit would only stall a run).
pub fn parse_rate(s: &str) -> std::result::Result<u64, String> {
    let text = s.trim();
    let size = text.strip_suffix("/s").unwrap_or(text).trim();
    let bytes = size
        .parse::<bytesize::ByteSize>()
        .map_err(|e| format!("{s:?} is not a rate like 50M, 20MiB or 500k (bytes per second): {e}"))?
        .as_u64();
    if bytes < 1000 {
        return Err(format!("{s:?} is below the smallest rate, 1k (1000 bytes per second)"));
    }
    Ok(bytes)
}

/// When to show progress.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// A progress line when stderr is a terminal
    Auto,
    /// Always a progress line on stderr
    Always,
    /// No progress
    Never,
    /// One JSON object per line on stderr per event: started, file, retry, failover, warning, request
    /// (with -vv), and last finished (exit_code 0, files, bytes, seconds, manifest_sha256, totals) or
    /// failed (exit_code, error). started.files counts the entries a success writes for certain;
    /// optional_files the dataframes written only where the cluster has one; finished.files =
    /// required_files (= started.files) + optional_files (those found). MANIFEST.json is not counted
    Json,
}

/// The reporting flags every tool has.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Reporting")]
pub struct ReportArgs {
    /// Progress on stderr
    #[arg(long, value_enum, default_value = "auto", value_name = "WHEN")]
    pub progress: Progress,
    /// No progress and no summary line; errors are still printed
    #[arg(short, long)]
    pub quiet: bool,
    /// More detail on stderr: -v retries and failovers (warnings are always shown); -vv also every
    /// request and every file
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert_eq!(parse_duration("0.5").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration(" 1m30s ").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("50M").unwrap(), 50_000_000);
        assert_eq!(parse_rate("4M").unwrap(), 4_000_000);
        assert_eq!(parse_rate("20MiB").unwrap(), 20 << 20);
        assert_eq!(parse_rate("20 MiB/s").unwrap(), 20 << 20);
        assert_eq!(parse_rate("500k").unwrap(), 500_000);
        assert_eq!(parse_rate("1.5G").unwrap(), 1_500_000_000);
        assert_eq!(parse_rate("1000").unwrap(), 1000);
        assert!(parse_rate("999").is_err());
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("-5M").is_err());
    }
}
