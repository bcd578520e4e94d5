//! FeatureBase RBF shard files (work in progress).
use super::{Checker, FormatProblem};

/// RBF page size.
pub const PAGE_SIZE: u64 = 8192;

/// Length declared by an RBF meta page.
pub fn declared_len(prefix: &[u8]) -> Result<u64, FormatProblem> {
    if prefix.len() < 12 || &prefix[0..4] != b"\xFFRBF" {
        return Err(FormatProblem { offset: 0, message: "not an RBF meta page".into() });
    }
    let n = u32::from_be_bytes([prefix[8], prefix[9], prefix[10], prefix[11]]);
    Ok(u64::from(n) * PAGE_SIZE)
}

/// Streaming RBF checker.
#[derive(Default)]
pub struct RbfChecker {}

impl Checker for RbfChecker {
    fn update(&mut self, _data: &[u8]) {}
    fn finish(self: Box<Self>) -> Result<(), FormatProblem> {
        Ok(())
    }
}
