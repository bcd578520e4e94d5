//! How a tool ends: the error on stderr as `tool: message: cause`, and its exit code; and
//! each tool's exit-code table, rendered from [`ErrorKind`] (contract §4) into `--help`, the
//! man page and the README, so the table has one source.

use std::io::Write;
use std::process::ExitCode;

use fb_core::{Error, ErrorKind};

/// What exit 0 means, said for every tool at once (the README's table).
pub const SUCCESS_MEANING: &str = "success; verified; identical";

/// The errors a tool that reads backups and talks to a cluster can end with (fb-import,
/// fb-manifest): every kind but [`ErrorKind::CannotCreate`], which only an output file has.
pub const BACKUP_AND_CLUSTER_ERRORS: &[ErrorKind] = &[
    ErrorKind::Verification,
    ErrorKind::Usage,
    ErrorKind::InvalidBackup,
    ErrorKind::Truncated,
    ErrorKind::Unavailable,
    ErrorKind::Internal,
    ErrorKind::Io,
    ErrorKind::Protocol,
    ErrorKind::Auth,
    ErrorKind::Precondition,
    ErrorKind::Interrupted,
];

/// One tool's exit codes: what 0 means for it, and every kind of error it can return.
#[derive(Debug, Clone, Copy)]
pub struct ExitStatus {
    /// What exit 0 means for this tool, e.g. `verified: every check passed`.
    pub success: &'static str,
    /// The kinds of error this tool can end with (any order; rendered by exit code).
    pub kinds: &'static [ErrorKind],
}

impl ExitStatus {
    /// Can this tool end with `kind`?
    pub fn returns(&self, kind: ErrorKind) -> bool {
        self.kinds.contains(&kind)
    }

    /// The table, in exit-code order: 0 with this tool's sentence, then each kind it can
    /// return with the full meaning of contract §4.
    pub fn rows(&self) -> Vec<(u8, &'static str)> {
        let errors = ErrorKind::ALL.into_iter().filter(|k| self.returns(*k)).map(|k| (k.exit_code(), k.meaning()));
        std::iter::once((0, self.success)).chain(errors).collect()
    }

    /// The one-line form of `--help`: `0 verified; 1 verification failed, ...; 74 I/O error, ...`.
    pub fn help_line(&self) -> String {
        let errors = ErrorKind::ALL.into_iter().filter(|k| self.returns(*k)).map(|k| (k.exit_code(), short_meaning(k)));
        let rows: Vec<String> =
            std::iter::once((0, self.success)).chain(errors).map(|(code, text)| format!("{code} {text}")).collect();
        format!("{}.", rows.join("; "))
    }
}

/// A kind's meaning without its examples: the text before the first `:`, ` (` or `;`
/// (`input is not a valid backup: malformed tar, ...` → `input is not a valid backup`).
pub fn short_meaning(kind: ErrorKind) -> &'static str {
    let meaning = kind.meaning();
    let end = [meaning.find(':'), meaning.find(" ("), meaning.find(';')].into_iter().flatten().min();
    &meaning[..end.unwrap_or(meaning.len())]
}

/// Print `tool: message: cause` on a line of its own (a progress bar is taken off the screen
/// first; with `--progress json` the event stream ends with `failed`) and return the error's
/// exit code.
pub fn fail(tool: &str, err: &Error) -> ExitCode {
    crate::report::clear_progress();
    crate::report::json_failed(err);
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{tool}: {}", err.chain());
    ExitCode::from(err.exit_code())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOOL: ExitStatus = ExitStatus {
        success: "verified",
        kinds: &[ErrorKind::Io, ErrorKind::Usage, ErrorKind::InvalidBackup, ErrorKind::Interrupted],
    };

    #[test]
    fn rows_are_in_exit_code_order_with_full_meanings() {
        let rows = TOOL.rows();
        let codes: Vec<u8> = rows.iter().map(|r| r.0).collect();
        assert_eq!(codes, [0, 2, 65, 74, 130]);
        assert_eq!(rows[0].1, "verified");
        assert_eq!(rows[2].1, ErrorKind::InvalidBackup.meaning());
    }

    #[test]
    fn help_line_uses_short_meanings() {
        assert_eq!(
            TOOL.help_line(),
            "0 verified; 2 usage error; 65 input is not a valid backup; \
             74 I/O error, including output closed early; 130 interrupted."
        );
    }

    #[test]
    fn every_short_meaning_is_a_prefix_and_not_empty() {
        for kind in ErrorKind::ALL {
            let short = short_meaning(kind);
            assert!(!short.is_empty() && kind.meaning().starts_with(short), "{kind:?}: {short:?}");
            assert!(!short.contains(';'), "{kind:?}: {short:?}");
        }
    }
}
