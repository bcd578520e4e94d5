//! bbolt files (work in progress).
use super::{Checker, FormatProblem};

/// Length declared by a bbolt meta page.
pub fn declared_len(_prefix: &[u8]) -> Result<u64, FormatProblem> {
    Err(FormatProblem { offset: 0, message: "not implemented".into() })
}

/// Streaming bbolt checker.
#[derive(Default)]
pub struct BoltChecker {}

impl Checker for BoltChecker {
    fn update(&mut self, _data: &[u8]) {}
    fn finish(self: Box<Self>) -> Result<(), FormatProblem> {
        Ok(())
    }
}
