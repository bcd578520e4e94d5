//! How a tool ends: the error on stderr as `tool: message: cause`, and its exit code.

use std::io::Write;
use std::process::ExitCode;

use fb_core::Error;

/// Print `tool: message: cause` and return the error's exit code.
pub fn fail(tool: &str, err: &Error) -> ExitCode {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{tool}: {}", err.chain());
    ExitCode::from(err.exit_code())
}
