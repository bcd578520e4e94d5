//! The ustar header block: where each field lies, and the numbers in it. Both the writer
//! and the reader name fields by these offsets.

/// A tar block; headers are one block, data is padded to whole blocks.
pub(crate) const BLOCK: usize = 512;
/// Largest value the 11-digit octal size field holds.
pub(crate) const USTAR_MAX_SIZE: u64 = 0o777_7777_7777;
/// Bound on PAX and GNU long-name records: far above anything fbkit writes.
pub(crate) const MAX_EXTENDED_HEADER: u64 = 64 * 1024;

/// Entry name (up to 100 bytes).
pub(crate) const NAME: std::ops::Range<usize> = 0..100;
/// File mode, octal.
pub(crate) const MODE: std::ops::Range<usize> = 100..108;
/// Owner ID, octal.
pub(crate) const UID: std::ops::Range<usize> = 108..116;
/// Group ID, octal.
pub(crate) const GID: std::ops::Range<usize> = 116..124;
/// Data size: octal, or GNU base-256 when the first byte has its high bit set.
pub(crate) const SIZE: std::ops::Range<usize> = 124..136;
/// Modification time, octal seconds.
pub(crate) const MTIME: std::ops::Range<usize> = 136..148;
/// Header checksum: the sum of the header's bytes with this field read as spaces.
pub(crate) const CHECKSUM: std::ops::Range<usize> = 148..156;
/// Entry type.
pub(crate) const TYPEFLAG: usize = 156;
/// Magic and version: `ustar\0` + `00` (POSIX) or `ustar  \0` (GNU).
pub(crate) const MAGIC_VERSION: std::ops::Range<usize> = 257..265;
/// Device major number, octal.
pub(crate) const DEVMAJOR: std::ops::Range<usize> = 329..337;
/// Device minor number, octal.
pub(crate) const DEVMINOR: std::ops::Range<usize> = 337..345;
/// Name prefix (POSIX ustar; up to 155 bytes).
pub(crate) const PREFIX: std::ops::Range<usize> = 345..500;

/// POSIX ustar magic and version.
pub(crate) const USTAR_MAGIC: &[u8; 8] = b"ustar\x0000";
/// GNU tar's magic and version.
pub(crate) const GNU_MAGIC: &[u8; 8] = b"ustar  \x00";

/// Zero bytes after `size` bytes of data, to the next block.
pub(crate) fn padding(size: u64) -> usize {
    ((BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64) as usize
}

/// Write `value` as zero-padded octal with a NUL terminator, filling `field`.
pub(crate) fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let s = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(s.as_bytes());
    field[digits] = 0;
}

pub(crate) fn parse_octal(field: &[u8]) -> Option<u64> {
    let s: Vec<u8> = field.iter().copied().skip_while(|&b| b == b' ').take_while(|&b| b != 0 && b != b' ').collect();
    if s.is_empty() {
        return Some(0);
    }
    let s = std::str::from_utf8(&s).ok()?;
    u64::from_str_radix(s, 8).ok()
}

pub(crate) fn parse_size(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        // GNU base-256; refuse negative numbers and anything over 64 bits.
        if field[0] != 0x80 || field[1..4].iter().any(|&b| b != 0) {
            return None;
        }
        let mut v: u64 = 0;
        for &b in &field[4..] {
            v = (v << 8) | u64::from(b);
        }
        return Some(v);
    }
    parse_octal(field)
}
