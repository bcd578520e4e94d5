//! The documented examples and the `--help` epilogue built from them and the exit codes.

use crate::exit::ExitStatus;

/// A documented example pipeline: listed by `--help`, rendered into the man page's EXAMPLES,
/// and run against fb-devcluster by the test suite, so documentation cannot drift.
#[derive(Debug, Clone, Copy)]
pub struct Example {
    /// What it does, one line.
    pub about: &'static str,
    /// The shell command, exactly as a user types it.
    pub command: &'static str,
}

/// The `--help` epilogue: the examples, then the exit codes in one line.
pub fn help_epilogue(examples: &[Example], exit_status: &ExitStatus) -> String {
    let mut s = String::from("Examples:\n");
    for e in examples {
        s.push_str(&format!("  # {}\n  {}\n", e.about, e.command));
    }
    s.push_str(&format!("\nExit status: {}", exit_status.help_line()));
    s
}

/// A tool's clap command with its examples and exit codes in the `--help` epilogue.
pub fn command_for<C: clap::CommandFactory>(examples: &[Example], exit_status: &ExitStatus) -> clap::Command {
    C::command().after_help(help_epilogue(examples, exit_status))
}

/// Parse the process arguments with [`command_for`]'s command (exits on a usage error).
pub fn parse_for<C: clap::CommandFactory + clap::FromArgMatches>(examples: &[Example], exit_status: &ExitStatus) -> C {
    let matches = command_for::<C>(examples, exit_status).get_matches();
    C::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}
