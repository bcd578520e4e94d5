//! The empty files upstream serves for what a node does not hold: an ID allocator with
//! nothing allocated, a key store with no key, a shard with no bitmap. The HTTP routes
//! stream them in place of a missing file, and a new node starts with the empty allocator.
//!
//! Layer: leaf (imports no other module of this crate).

use std::collections::BTreeMap;
use std::io;

use fb_core::format::{bolt, rbf};

/// An ID allocator file with nothing allocated (what a fresh upstream node has).
pub fn empty_idalloc() -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    bolt::write_db(&mut out, &[])?;
    Ok(out)
}

/// A key store with no key, byte for byte what upstream serves for a key store nothing was
/// written to: an index key partition of a keyed index (upstream `Index.open` opens a store
/// for each of the 256 partitions) or the store of a field without keys.
///
/// Upstream `BoltTranslateStore.Open` (translate_boltdb.go) creates the buckets `keys`,
/// `ids` and `free` in bbolt's second transaction, and the store is served with bbolt's
/// `Tx.WriteTo`, which writes the current meta twice (page 1 with the txid one lower). The
/// file is 6 pages of 4096 bytes: metas 0 and 1, the first transaction's freelist (2) and
/// root leaf (3), the root leaf holding the three empty inline buckets (4), and the
/// freelist listing pages 2 and 3 (5). `fb-core`'s bbolt writer makes a smaller file with the
/// same buckets; this one matches the 252 empty partitions of a real v3.35 backup.
pub fn empty_key_store() -> io::Result<Vec<u8>> {
    const PAGE: usize = 4096;
    const TXID: u64 = 2;
    let mut out = vec![0u8; 6 * PAGE];
    let put16 = |b: &mut [u8], at: usize, v: u16| b[at..at + 2].copy_from_slice(&v.to_le_bytes());
    let put32 = |b: &mut [u8], at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    let put64 = |b: &mut [u8], at: usize, v: u64| b[at..at + 8].copy_from_slice(&v.to_le_bytes());
    // Page header: id u64, flags u16, count u16, overflow u32.
    let header = |b: &mut [u8], page: usize, flags: u16, count: u16| {
        put64(b, page * PAGE, page as u64);
        put16(b, page * PAGE + 8, flags);
        put16(b, page * PAGE + 10, count);
    };
    for (page, txid) in [(0usize, TXID), (1, TXID - 1)] {
        header(&mut out, page, 0x04, 0);
        let m = page * PAGE + 16;
        put32(&mut out, m, 0xED0C_DAED); // magic
        put32(&mut out, m + 4, 2); // version
        put32(&mut out, m + 8, PAGE as u32);
        put64(&mut out, m + 16, 4); // root bucket page (sequence 0 follows)
        put64(&mut out, m + 32, 5); // freelist page
        put64(&mut out, m + 40, 6); // high-water page id
        put64(&mut out, m + 48, txid);
        let sum = fb_core::topology::fnv1a64(&[&out[m..m + 56]]);
        put64(&mut out, m + 56, sum);
    }
    header(&mut out, 2, 0x10, 0); // the first transaction's freelist, now free
    header(&mut out, 3, 0x02, 0); // the first transaction's root, now free
                                  // Root leaf: three bucket elements (flag 1), each value a 16-byte bucket header (root 0:
                                  // inline) followed by an empty inline leaf page header.
    header(&mut out, 4, 0x02, 3);
    let mut data = 4 * PAGE + 16 + 3 * 16;
    for (i, name) in [&b"free"[..], b"ids", b"keys"].into_iter().enumerate() {
        let elem = 4 * PAGE + 16 + i * 16;
        put32(&mut out, elem, 1);
        put32(&mut out, elem + 4, (data - elem) as u32);
        put32(&mut out, elem + 8, name.len() as u32);
        put32(&mut out, elem + 12, 32);
        out[data..data + name.len()].copy_from_slice(name);
        put16(&mut out, data + name.len() + 16 + 8, 0x02);
        data += name.len() + 32;
    }
    header(&mut out, 5, 0x10, 2);
    put64(&mut out, 5 * PAGE + 16, 2);
    put64(&mut out, 5 * PAGE + 24, 3);
    Ok(out)
}

/// An RBF file with no bitmap (what upstream streams for a shard a node does not hold).
pub fn empty_shard() -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    rbf::write_shard(&mut out, &BTreeMap::new(), 0)?;
    Ok(out)
}
