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
        s.push_str(&format!("  # {}\n  {}\n", e.about, shell_lines(e.command, 76).join(" \\\n    ")));
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

/// Split a shell command into lines of at most `width` characters where that can be done
/// safely: after a `|`, `&&`, `||` or `;` outside quotes. Joined with ` \` and a newline it
/// is the same command, so the help never wraps an example in the middle of a word and a
/// copy-paste still runs.
pub fn shell_lines(command: &str, width: usize) -> Vec<String> {
    let bytes = command.as_bytes();
    // Byte offsets just after a break point (the operator and its space are kept on the
    // line before it).
    let mut breaks = Vec::new();
    let (mut single, mut double) = (false, false);
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\'' if !double => single = !single,
            b'"' if !single => double = !double,
            _ if single || double => {}
            _ => {
                for op in ["| ", "&& ", "|| ", "; "] {
                    if command[i..].starts_with(op)
                        && i > 0
                        && bytes[i - 1] == b' '
                        && (op != "| " || bytes[i - 1] != b'|')
                    {
                        breaks.push(i + op.len());
                    }
                }
            }
        }
    }
    let mut lines = Vec::new();
    let mut start = 0;
    let mut last_ok = None;
    for &at in &breaks {
        if at - start > width {
            if let Some(ok) = last_ok.take() {
                lines.push(command[start..ok].trim_end().to_string());
                start = ok;
            }
        }
        last_ok = Some(at);
    }
    if command.len() - start > width {
        if let Some(ok) = last_ok {
            lines.push(command[start..ok].trim_end().to_string());
            start = ok;
        }
    }
    lines.push(command[start..].to_string());
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_examples_break_only_after_an_operator() {
        let cmd = "set -o pipefail; fb-export --host db1:10101 | zstd | ssh vault 'cat > a | b && c' && ssh vault 'mv fb.tar.zst.part fb.tar.zst'";
        let lines = shell_lines(cmd, 40);
        assert!(lines.len() > 1, "{lines:?}");
        assert_eq!(lines.join(" "), cmd, "joined back it is the same command");
        for l in &lines[..lines.len() - 1] {
            assert!(l.ends_with('|') || l.ends_with("&&") || l.ends_with(';'), "{l:?}");
        }
        assert!(!lines.iter().any(|l| l.ends_with("'cat > a |")), "never inside quotes: {lines:?}");
        assert_eq!(shell_lines("fb-verify fb.tar", 40), ["fb-verify fb.tar"]);
    }
}
