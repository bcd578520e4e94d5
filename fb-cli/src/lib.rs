//! What every fbkit tool shares on the command line: the cluster, TLS and reporting flags
//! (defined once, flattened into each tool), turning events into `-v` lines, a progress line
//! or `--progress json`, the documented examples and exit codes of `--help`, and the one
//! place where an error becomes `tool: message` on stderr and an exit code.

mod args;
mod examples;
mod exit;
mod report;
mod runtime;

pub use args::{export_options, parse_duration, parse_rate, ClusterArgs, Progress, ReportArgs, TlsArgs};
pub use examples::{command_for, help_epilogue, parse_for, Example};
pub use exit::{fail, short_meaning, ExitStatus, BACKUP_AND_CLUSTER_ERRORS, SUCCESS_MEANING};
pub use report::{human_bytes, transfer_summary, Reporter};
pub use runtime::{export_until_interrupted, grow_pipes, interrupted, runtime, stdout_file};
