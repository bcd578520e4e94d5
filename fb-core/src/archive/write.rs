//! The deterministic tar writer (contract §1): ustar headers with mode 0644, uid/gid 0,
//! empty owner names and a fixed mtime, a PAX header only when a name or a size does not fit
//! ustar. Completion is explicit: [`TarWriter::finish`] writes the trailer and returns
//! errors; dropping a writer writes nothing, and a declared size is enforced.

use std::io::{self, Write};

use super::header::*;

/// Writes a tar stream entry by entry. Sizes are declared before the data, so contents can
/// be streamed straight through.
pub struct TarWriter<W: Write> {
    out: W,
    mtime: u64,
    /// Bytes still owed to the current entry.
    remaining: u64,
    /// Padding owed after the current entry's data.
    pad: usize,
    offset: u64,
}

impl<W: Write> TarWriter<W> {
    /// A writer that stamps every entry with `mtime` (seconds since the epoch).
    pub fn new(out: W, mtime: u64) -> Self {
        TarWriter { out, mtime, remaining: 0, pad: 0, offset: 0 }
    }

    /// Bytes written so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Start an entry named `name` holding exactly `size` bytes.
    pub fn begin_entry(&mut self, name: &str, size: u64) -> io::Result<()> {
        assert_eq!(self.remaining, 0, "previous entry not complete");
        let (ustar_name, prefix) = split_ustar_name(name).unwrap_or(("", ""));
        let mut pax = Vec::new();
        if ustar_name.is_empty() {
            pax_record(&mut pax, "path", name);
        }
        if size > USTAR_MAX_SIZE {
            pax_record(&mut pax, "size", &size.to_string());
        }
        if !pax.is_empty() {
            let short: String = name.chars().rev().take(80).collect::<Vec<_>>().into_iter().rev().collect();
            let short = short.trim_start_matches('/');
            let header = ustar_header(&format!("PaxHeader/{short}"), "", pax.len() as u64, self.mtime, b'x');
            self.put(&header)?;
            self.put(&pax)?;
            self.put(&[0u8; BLOCK][..padding(pax.len() as u64)])?;
        }
        let fallback = if ustar_name.is_empty() { truncate_utf8(name, 100) } else { ustar_name };
        let header = ustar_header(fallback, prefix, size, self.mtime, b'0');
        self.put(&header)?;
        self.remaining = size;
        self.pad = padding(size);
        Ok(())
    }

    /// Append data to the current entry; more than was declared is refused.
    pub fn write_data(&mut self, data: &[u8]) -> io::Result<()> {
        if data.len() as u64 > self.remaining {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "entry data longer than its declared size"));
        }
        self.put(data)?;
        self.remaining -= data.len() as u64;
        if self.remaining == 0 {
            let pad = std::mem::take(&mut self.pad);
            self.put(&[0u8; BLOCK][..pad])?;
        }
        Ok(())
    }

    /// Bytes still owed to the current entry.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// A whole entry from memory.
    pub fn append(&mut self, name: &str, data: &[u8]) -> io::Result<()> {
        self.begin_entry(name, data.len() as u64)?;
        if data.is_empty() {
            return Ok(());
        }
        self.write_data(data)
    }

    /// Write the end-of-archive marker and flush. The current entry must be complete.
    pub fn finish(mut self) -> io::Result<W> {
        if self.remaining != 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "archive finished inside an entry"));
        }
        self.put(&[0u8; 2 * BLOCK])?;
        self.out.flush()?;
        Ok(self.out)
    }

    /// The underlying writer (for flushing or syncing).
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }

    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.out.write_all(b)?;
        self.offset += b.len() as u64;
        Ok(())
    }
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Split a name into ustar (name, prefix), or None when it needs PAX.
fn split_ustar_name(name: &str) -> Option<(&str, &str)> {
    if name.len() <= 100 {
        return Some((name, ""));
    }
    // The prefix is everything before some '/', at most 155 bytes; the rest at most 100.
    let bytes = name.as_bytes();
    for (i, &c) in bytes.iter().enumerate().rev() {
        if c == b'/' && i <= 155 && name.len() - i - 1 <= 100 && i > 0 {
            return Some((&name[i + 1..], &name[..i]));
        }
    }
    None
}

fn pax_record(out: &mut Vec<u8>, key: &str, value: &str) {
    // The length counts itself: find the fixed point.
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    out.extend_from_slice(format!("{len} {key}={value}\n").as_bytes());
}

pub(super) fn ustar_header(name: &str, prefix: &str, size: u64, mtime: u64, typeflag: u8) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    h[NAME.start..NAME.start + name.len()].copy_from_slice(name.as_bytes());
    octal(&mut h[MODE], 0o644);
    octal(&mut h[UID], 0);
    octal(&mut h[GID], 0);
    if size <= USTAR_MAX_SIZE {
        octal(&mut h[SIZE], size);
    } else {
        // GNU base-256, understood by GNU tar and Go; the PAX size record is authoritative.
        h[SIZE.start] = 0x80;
        h[SIZE.start + 4..SIZE.end].copy_from_slice(&size.to_be_bytes());
    }
    octal(&mut h[MTIME], mtime.min(USTAR_MAX_SIZE));
    h[TYPEFLAG] = typeflag;
    h[MAGIC_VERSION].copy_from_slice(USTAR_MAGIC);
    octal(&mut h[DEVMAJOR], 0);
    octal(&mut h[DEVMINOR], 0);
    h[PREFIX.start..PREFIX.start + prefix.len()].copy_from_slice(prefix.as_bytes());
    h[CHECKSUM].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[CHECKSUM].copy_from_slice(s.as_bytes());
    h
}
