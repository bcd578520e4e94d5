//! fb-core: everything fbkit's tools do, as a library. The binaries parse flags, call in here,
//! print the error's cause chain and exit with [`Error::exit_code`]. Nothing in this crate
//! prints or exits.

#![warn(missing_docs)]

pub mod archive;
pub mod census;
pub mod client;
pub mod compare;
pub mod content;
pub mod error;
pub mod events;
pub mod export;
pub mod format;
pub mod import;
pub mod layout;
pub mod manifest;
pub mod mapped;
pub mod output;
pub mod preflight;
pub mod rate;
pub mod resume;
pub mod schema;
pub mod sha;
pub mod topology;
pub mod verify;

pub use error::{Error, ErrorKind, Result};
