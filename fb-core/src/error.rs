//! The one error type of fbkit, and the one place where an outcome becomes an exit code
//! (contract §4).

use std::fmt;

/// What went wrong, in the terms of the contract's exit-code table. Each kind maps to exactly
/// one exit code in [`ErrorKind::exit_code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A check ran and found a difference: checksum, size, missing or extra entry (1).
    Verification,
    /// The command line or an option's value is wrong (2).
    Usage,
    /// The input is not a valid backup: malformed tar, bad manifest, unsafe path (65).
    InvalidBackup,
    /// The input ended early: truncated stream, no manifest, missing file (66).
    Truncated,
    /// The cluster, a node, or every replica of a shard could not be reached (69).
    Unavailable,
    /// The output file could not be created (73).
    CannotCreate,
    /// An I/O error, including a closed output (broken pipe) (74).
    Io,
    /// The cluster answered in a way this version does not understand (76).
    Protocol,
    /// Authentication or authorisation was refused (77).
    Auth,
    /// A precondition was refused: target cluster not empty, bad TLS material, server
    /// certificate not trusted, a `Delete` running (78).
    Precondition,
    /// A bug in fbkit: a worker that panicked, a task that ended early, an impossible state
    /// (70, `EX_SOFTWARE`).
    Internal,
    /// Interrupted by a signal; temporary files were removed (130).
    Interrupted,
}

impl ErrorKind {
    /// Every kind, in the order of contract §4's table (by exit code).
    pub const ALL: [ErrorKind; 12] = [
        ErrorKind::Verification,
        ErrorKind::Usage,
        ErrorKind::InvalidBackup,
        ErrorKind::Truncated,
        ErrorKind::Unavailable,
        ErrorKind::Internal,
        ErrorKind::CannotCreate,
        ErrorKind::Io,
        ErrorKind::Protocol,
        ErrorKind::Auth,
        ErrorKind::Precondition,
        ErrorKind::Interrupted,
    ];

    /// What the exit code means, as contract §4's table says it (the one text the man pages,
    /// `--help` and the README are rendered from).
    pub fn meaning(self) -> &'static str {
        match self {
            ErrorKind::Verification => "verification failed, or manifests differ",
            ErrorKind::Usage => "usage error (bad flags)",
            ErrorKind::InvalidBackup => {
                "input is not a valid backup: malformed tar, bad manifest, unsafe entry path, unknown format version"
            }
            ErrorKind::Truncated => "input ended early: truncated stream, no manifest, missing file",
            ErrorKind::Unavailable => {
                "cluster unreachable, or a shard or key store no node can serve (a DEGRADED cluster does not serve key translation)"
            }
            ErrorKind::Internal => "internal error (a bug in fbkit: a worker that panicked, an impossible state)",
            ErrorKind::CannotCreate => "cannot create the output file",
            ErrorKind::Io => "I/O error, including output closed early (broken pipe)",
            ErrorKind::Protocol => "the cluster answered in a way this version does not understand",
            ErrorKind::Auth => {
                "authentication or authorisation refused (no retries): a token without admin rights, a client certificate the server refuses"
            }
            ErrorKind::Precondition => {
                "precondition refused: target cluster not empty, bad TLS material, server certificate not trusted, a Delete running"
            }
            ErrorKind::Interrupted => "interrupted; temporary files removed",
        }
    }

    /// The process exit code of contract §4 for this kind.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::Verification => 1,
            ErrorKind::Usage => 2,
            ErrorKind::InvalidBackup => 65,
            ErrorKind::Truncated => 66,
            ErrorKind::Unavailable => 69,
            ErrorKind::CannotCreate => 73,
            ErrorKind::Io => 74,
            ErrorKind::Protocol => 76,
            ErrorKind::Auth => 77,
            ErrorKind::Precondition => 78,
            ErrorKind::Internal => 70,
            ErrorKind::Interrupted => 130,
        }
    }
}

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An fbkit error: a kind (which decides the exit code), a message that names the file,
/// entry or node concerned, and the underlying cause if there is one.
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Source>,
}

/// The result type used throughout fb-core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with a message naming what it concerns.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into(), source: None }
    }

    /// Attach the underlying cause, shown after the message in the cause chain.
    pub fn with_source(mut self, source: impl Into<Source>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// An I/O error with context; a broken pipe keeps kind [`ErrorKind::Io`] (exit 74).
    pub fn io(context: impl Into<String>, err: std::io::Error) -> Self {
        Error::new(ErrorKind::Io, context).with_source(err)
    }

    /// What went wrong, which decides the exit code.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message without its causes.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The exit code of contract §4.
    pub fn exit_code(&self) -> u8 {
        self.kind.exit_code()
    }

    /// Prefix the message with more context, keeping kind and cause.
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }

    /// Append text to the message, keeping kind and cause.
    pub fn with_suffix(mut self, suffix: &str) -> Self {
        self.message.push_str(suffix);
        self
    }

    /// True when the cause chain contains a broken pipe (the reader went away).
    pub fn is_broken_pipe(&self) -> bool {
        let mut cur: Option<&(dyn std::error::Error + 'static)> =
            self.source.as_deref().map(|s| s as &(dyn std::error::Error + 'static));
        while let Some(e) = cur {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                if io.kind() == std::io::ErrorKind::BrokenPipe {
                    return true;
                }
            }
            cur = e.source();
        }
        false
    }

    /// The message followed by every cause, `message: cause: cause`, as the tools print it.
    pub fn chain(&self) -> String {
        let mut out = self.message.clone();
        let mut cur: Option<&(dyn std::error::Error + 'static)> =
            self.source.as_deref().map(|s| s as &(dyn std::error::Error + 'static));
        while let Some(e) = cur {
            let text = e.to_string();
            if !text.is_empty() && !out.ends_with(&text) {
                out.push_str(": ");
                out.push_str(&text);
            }
            cur = e.source();
        }
        out
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.chain())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|s| s as &(dyn std::error::Error + 'static))
    }
}

/// Shorthand constructors, one per kind.
macro_rules! ctor {
    ($($name:ident => $kind:ident),* $(,)?) => {
        impl Error {
            $(
                #[doc = concat!("A new [`ErrorKind::", stringify!($kind), "`] error.")]
                pub fn $name(message: impl Into<String>) -> Self {
                    Error::new(ErrorKind::$kind, message)
                }
            )*
        }
    };
}

ctor! {
    verification => Verification,
    usage => Usage,
    invalid => InvalidBackup,
    truncated => Truncated,
    unavailable => Unavailable,
    cannot_create => CannotCreate,
    protocol => Protocol,
    auth => Auth,
    precondition => Precondition,
    internal => Internal,
    interrupted => Interrupted,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_contract_code() {
        let table = [
            (ErrorKind::Verification, 1),
            (ErrorKind::Usage, 2),
            (ErrorKind::InvalidBackup, 65),
            (ErrorKind::Truncated, 66),
            (ErrorKind::Unavailable, 69),
            (ErrorKind::CannotCreate, 73),
            (ErrorKind::Io, 74),
            (ErrorKind::Protocol, 76),
            (ErrorKind::Auth, 77),
            (ErrorKind::Precondition, 78),
            (ErrorKind::Internal, 70),
            (ErrorKind::Interrupted, 130),
        ];
        assert_eq!(table.len(), ErrorKind::ALL.len());
        let codes: Vec<u8> = ErrorKind::ALL.iter().map(|k| k.exit_code()).collect();
        assert!(codes.windows(2).all(|w| w[0] < w[1]), "ALL is in exit-code order: {codes:?}");
        for (kind, code) in table {
            assert_eq!(kind.exit_code(), code, "{kind:?}");
        }
    }

    #[test]
    fn chain_lists_causes_and_detects_broken_pipe() {
        let io = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "pipe closed");
        let e = Error::io("writing the archive to stdout", io).context("entry schema");
        assert_eq!(e.chain(), "entry schema: writing the archive to stdout: pipe closed");
        assert!(e.is_broken_pipe());
        assert_eq!(e.exit_code(), 74);
    }
}
