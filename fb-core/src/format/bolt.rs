//! bbolt files (FeatureBase's ID allocator, index key partitions and field key stores).
//!
//! Layout facts (bbolt v1.3.6, the version FeatureBase pins), all little-endian:
//! - every page starts with a 16-byte header: page id u64, flags u16 (branch 0x01, leaf 0x02,
//!   meta 0x04, freelist 0x10), element count u16, overflow page count u32;
//! - pages 0 and 1 are meta pages: magic `0xED0CDAED`, version 2, page size, flags, root bucket
//!   (root page id, sequence), freelist page id, high-water page id `pgid`, txid, and an FNV-1a
//!   64 checksum of the meta bytes before it;
//! - a read transaction's `WriteTo` copy writes meta 0 with the transaction's txid and meta 1
//!   with txid − 1 (same everything else), then the data pages, so the file is exactly
//!   `pgid × page size` bytes;
//! - leaf elements are 16 bytes (flags, pos, ksize, vsize; `pos` counts from the element
//!   itself), branch elements are 16 bytes (pos, ksize, child page id);
//! - a bucket's value is a 16-byte header (root page id, sequence); root 0 means the bucket is
//!   inline and a leaf page image follows the header.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{self, Write};

use super::{le16, le32, le64, problem, Checker, FormatProblem};

/// A bucket's key/values, in key order when read.
pub type KeyValues = Vec<(Vec<u8>, Vec<u8>)>;

/// The page size fbkit writes (bbolt uses the OS page size, 4096 on amd64).
pub const PAGE_SIZE: u64 = 4096;

const MAGIC: u32 = 0xED0C_DAED;
const VERSION: u32 = 2;
const HEADER: usize = 16;
const ELEM: usize = 16;
const BUCKET_HEADER: usize = 16;
const FLAG_BRANCH: u16 = 0x01;
const FLAG_LEAF: u16 = 0x02;
const FLAG_META: u16 = 0x04;
const FLAG_FREELIST: u16 = 0x10;
const BUCKET_LEAF_FLAG: u32 = 0x01;
/// The freelist page id bbolt stores when the freelist is not persisted (NoFreelistSync).
const NO_FREELIST: u64 = u64::MAX;
/// Meta fields end (and the checksum starts) at this offset inside the page.
const META_SUM_END: usize = HEADER + 56;
const META_END: usize = META_SUM_END + 8;
/// Nesting deeper than this is not a real bbolt tree (bbolt trees are balanced and shallow);
/// the limit keeps hostile input from recursing without bound.
const MAX_DEPTH: usize = 64;

/// FNV-1a 64, the hash bbolt uses for meta checksums.
fn fnv1a64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The fields of a bbolt meta page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Meta {
    page_size: u64,
    root: u64,
    freelist: u64,
    pgid: u64,
    txid: u64,
}

/// Parses and validates the meta page starting at `page` (`base` is its file offset), the way
/// bbolt's `meta.validate` does: magic, version, checksum (0 means "not set" to bbolt).
fn parse_meta(page: &[u8], base: u64) -> Result<Meta, FormatProblem> {
    if page.len() < META_END {
        return Err(problem(base + page.len() as u64, "file ends inside the bbolt meta page"));
    }
    let flags = le16(page, 8);
    if flags & FLAG_META == 0 {
        return Err(problem(base + 8, format!("meta page has flags {flags:#x}, not meta (0x04)")));
    }
    let magic = le32(page, HEADER);
    if magic != MAGIC {
        return Err(problem(base + HEADER as u64, format!("bad bbolt magic {magic:#010x}")));
    }
    let version = le32(page, HEADER + 4);
    if version != VERSION {
        return Err(problem(base + HEADER as u64 + 4, format!("unsupported bbolt version {version}")));
    }
    let page_size = u64::from(le32(page, HEADER + 8));
    // bbolt takes the page size from the meta page; real files use the OS page size.
    if !(512..=1 << 16).contains(&page_size) || !page_size.is_power_of_two() {
        return Err(problem(base + HEADER as u64 + 8, format!("implausible bbolt page size {page_size}")));
    }
    let sum = le64(page, META_SUM_END);
    if sum != 0 && sum != fnv1a64(&page[HEADER..META_SUM_END]) {
        return Err(problem(base + META_SUM_END as u64, "bbolt meta checksum mismatch"));
    }
    let meta = Meta {
        page_size,
        root: le64(page, HEADER + 16),
        freelist: le64(page, HEADER + 32),
        pgid: le64(page, HEADER + 40),
        txid: le64(page, HEADER + 48),
    };
    if meta.pgid < 3 || meta.root < 2 || meta.root >= meta.pgid {
        return Err(problem(base + HEADER as u64 + 16, "bbolt meta root or high-water page id out of range"));
    }
    if meta.freelist != NO_FREELIST && (meta.freelist < 2 || meta.freelist >= meta.pgid) {
        return Err(problem(base + HEADER as u64 + 32, "bbolt meta freelist page id out of range"));
    }
    Ok(meta)
}

/// The exact length a bbolt file declares in its first page: meta 0's high-water page id ×
/// page size. A read transaction's `WriteTo` copy always writes a valid meta 0 first (meta 1
/// starts past the 4096-byte prefix), so meta 0 alone decides; a file whose meta 0 is damaged
/// is reported rather than guessed at.
pub fn declared_len(prefix: &[u8]) -> Result<u64, FormatProblem> {
    let meta = parse_meta(prefix, 0)?;
    meta.pgid
        .checked_mul(meta.page_size)
        .ok_or_else(|| problem(HEADER as u64 + 40, "bbolt high-water page id overflows"))
}

/// A set of page numbers as a bitset (one bit per page), used by the streaming checkers to
/// remember facts about pages already passed without holding the pages.
#[derive(Debug, Default)]
pub(crate) struct PageBits {
    words: Vec<u64>,
}

impl PageBits {
    /// A set able to hold page numbers `0..n`.
    pub(crate) fn with_len(n: u64) -> Self {
        PageBits { words: vec![0; usize::try_from(n.div_ceil(64)).unwrap_or(0)] }
    }
    /// Adds `i` (ignored when out of range, which callers have already reported).
    pub(crate) fn set(&mut self, i: u64) {
        if let Some(w) = usize::try_from(i / 64).ok().and_then(|w| self.words.get_mut(w)) {
            *w |= 1 << (i % 64);
        }
    }
    /// Whether `i` is in the set.
    pub(crate) fn get(&self, i: u64) -> bool {
        usize::try_from(i / 64).ok().and_then(|w| self.words.get(w)).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
    /// Members, ascending.
    pub(super) fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.words
            .iter()
            .enumerate()
            .flat_map(|(w, &bits)| (0..64u64).filter(move |b| bits & (1 << b) != 0).map(move |b| w as u64 * 64 + b))
    }
}

/// Above this many pages the checkers skip the tree checks (three bitsets of this many bits
/// would pass 12 MiB); the meta, length and freelist checks still run.
pub(super) const MAX_TRACKED_PAGES: u64 = 1 << 25;

/// Streaming structural check of a bbolt file: both meta pages (magic, version, page size,
/// checksum), length == high-water page id × page size, the freelist page, and every page
/// reachable from the root bucket (page id equals its position, branch/leaf flags, elements
/// inside the page, keys ascending, children below the high-water mark, not on the freelist).
/// Pages not reachable from the root are free pages whose content bbolt never reads, so
/// they are not judged. Memory: one page buffer and three bitsets of one bit per page.
#[derive(Default)]
pub struct BoltChecker {
    fed: u64,
    buf: Vec<u8>,
    meta0: Option<Meta>,
    meta: Option<Meta>,
    first: Option<FormatProblem>,
    /// Continuation pages of a reachable multi-page node are skipped up to (not incl.) this.
    skip_until: u64,
    /// Freelist ids still to read from freelist continuation pages.
    freelist_left: u64,
    freelist_last: u64,
    tracked: bool,
    node_ok: PageBits,
    expected: PageBits,
    free: PageBits,
}

impl BoltChecker {
    fn note(&mut self, p: FormatProblem) {
        if self.first.is_none() {
            self.first = Some(p);
        }
    }

    fn page_size(&self) -> usize {
        self.meta0.map_or(PAGE_SIZE as usize, |m| m.page_size as usize)
    }

    /// Whole pages seen so far.
    fn page_index(&self) -> u64 {
        self.fed / self.page_size() as u64
    }

    fn on_page(&mut self) {
        let page = std::mem::take(&mut self.buf);
        let i = self.page_index();
        self.fed += page.len() as u64;
        self.check_page(i, &page);
        self.buf = page;
        self.buf.clear();
    }

    fn check_page(&mut self, i: u64, page: &[u8]) {
        let base = i * page.len() as u64;
        match i {
            0 => match parse_meta(page, 0) {
                Ok(m) => {
                    if le64(page, 0) != 0 {
                        self.note(problem(0, "meta page 0 does not carry page id 0"));
                    }
                    self.meta0 = Some(m);
                }
                Err(p) => self.note(p),
            },
            1 => {
                let m1 = match parse_meta(page, base) {
                    Ok(m) => {
                        if le64(page, 0) != 1 {
                            self.note(problem(base, "meta page 1 does not carry page id 1"));
                        }
                        if Some(m.page_size) != self.meta0.map(|m0| m0.page_size) && self.meta0.is_some() {
                            self.note(problem(base + HEADER as u64 + 8, "meta pages disagree on the page size"));
                        }
                        Some(m)
                    }
                    Err(p) => {
                        self.note(p);
                        None
                    }
                };
                // bbolt uses the valid meta page with the higher txid.
                self.meta = match (self.meta0, m1) {
                    (Some(a), Some(b)) => Some(if b.txid > a.txid { b } else { a }),
                    (a, b) => a.or(b),
                };
                if let Some(m) = self.meta {
                    if m.pgid <= MAX_TRACKED_PAGES {
                        self.tracked = true;
                        self.node_ok = PageBits::with_len(m.pgid);
                        self.expected = PageBits::with_len(m.pgid);
                        self.free = PageBits::with_len(m.pgid);
                        self.expected.set(m.root);
                    }
                }
            }
            _ => self.check_data_page(i, base, page),
        }
    }

    fn check_data_page(&mut self, i: u64, base: u64, page: &[u8]) {
        let Some(meta) = self.meta else { return };
        if i >= meta.pgid {
            return; // past the declared end: reported by finish
        }
        if self.freelist_left > 0 {
            self.read_free_ids(i, base, page, 0);
            return;
        }
        if i < self.skip_until {
            return;
        }
        let id = le64(page, 0);
        let flags = le16(page, 8);
        let count = le16(page, 10);
        let overflow = u64::from(le32(page, 12));
        if id == i && (flags == FLAG_BRANCH || flags == FLAG_LEAF) {
            self.node_ok.set(i);
        }
        if i == meta.freelist {
            if id != i || flags != FLAG_FREELIST {
                self.note(problem(base, format!("freelist page {i} has id {id} and flags {flags:#x}")));
                return;
            }
            if i.checked_add(overflow).is_none_or(|end| end >= meta.pgid) {
                self.note(problem(base + 12, "freelist overflows past the high-water mark"));
                return;
            }
            let (n, start) =
                if count == 0xFFFF { (le64(page, HEADER), HEADER + 8) } else { (u64::from(count), HEADER) };
            self.freelist_left = n;
            self.freelist_last = 1;
            self.skip_until = i + overflow + 1;
            self.read_free_ids(i, base, page, start);
            if self.freelist_left > 0 && self.skip_until == i + 1 {
                self.note(problem(base + 10, "freelist count exceeds its page"));
                self.freelist_left = 0;
            }
            return;
        }
        if !self.tracked || !self.expected.get(i) {
            return;
        }
        if id != i || (flags != FLAG_BRANCH && flags != FLAG_LEAF) {
            self.note(problem(base, format!("reachable page {i} has id {id} and flags {flags:#x}")));
            return;
        }
        if i.checked_add(overflow).is_none_or(|end| end >= meta.pgid) {
            self.note(problem(base + 12, format!("page {i} overflows past the high-water mark")));
            return;
        }
        self.skip_until = i + overflow + 1;
        let node_len = (overflow + 1).saturating_mul(page.len() as u64);
        let mut refs = Vec::new();
        if let Err(p) = walk_node(page, node_len, base, flags, count, &mut refs) {
            self.note(p);
        }
        for (child, at) in refs {
            self.expect(child, at, meta);
        }
    }

    fn expect(&mut self, child: u64, at: u64, meta: Meta) {
        if child < 2 || child >= meta.pgid || child == meta.freelist {
            self.note(problem(at, format!("reference to page {child} outside the data pages")));
            return;
        }
        if self.expected.get(child) {
            self.note(problem(at, format!("page {child} referenced twice")));
        }
        self.expected.set(child);
    }

    fn read_free_ids(&mut self, i: u64, base: u64, page: &[u8], start: usize) {
        let Some(meta) = self.meta else { return };
        let mut at = start;
        while self.freelist_left > 0 && at + 8 <= page.len() {
            let id = le64(page, at);
            if id < 2 || id >= meta.pgid || id <= self.freelist_last && self.freelist_last > 1 {
                self.note(problem(base + at as u64, format!("freelist entry {id} invalid or out of order")));
                self.freelist_left = 0;
                return;
            }
            self.freelist_last = id;
            self.free.set(id);
            self.freelist_left -= 1;
            at += 8;
        }
        let _ = i;
    }
}

/// Walks one node image (a page, or an inline bucket's page image) collecting child page
/// references with the offset they were read at. `avail` is how many bytes the node spans
/// (overflow pages included); only bytes present in `page` are inspected.
fn walk_node(
    page: &[u8],
    avail: u64,
    base: u64,
    flags: u16,
    count: u16,
    refs: &mut Vec<(u64, u64)>,
) -> Result<(), FormatProblem> {
    let n = usize::from(count);
    let table_end = HEADER + n * ELEM;
    if table_end as u64 > avail {
        return Err(problem(base + 10, format!("{n} elements do not fit the node")));
    }
    let mut prev_key: Option<&[u8]> = None;
    for e in 0..n {
        let at = HEADER + e * ELEM;
        if at + ELEM > page.len() {
            break; // element table continues on an overflow page: not inspected
        }
        let (pos, ksize, vsize, elem_flags) = if flags == FLAG_BRANCH {
            (le32(page, at) as usize, le32(page, at + 4) as usize, 0usize, 0u32)
        } else {
            (le32(page, at + 4) as usize, le32(page, at + 8) as usize, le32(page, at + 12) as usize, le32(page, at))
        };
        let kstart = at + pos;
        let end = kstart as u64 + ksize as u64 + vsize as u64;
        if ksize == 0 || end > avail {
            return Err(problem(base + at as u64, format!("element {e} lies outside its node")));
        }
        if flags == FLAG_BRANCH {
            refs.push((le64(page, at + 8), base + at as u64 + 8));
        }
        if kstart + ksize > page.len() {
            continue;
        }
        let key = &page[kstart..kstart + ksize];
        if prev_key.is_some_and(|p| p >= key) {
            return Err(problem(base + kstart as u64, format!("element {e} key out of order")));
        }
        prev_key = Some(key);
        if flags == FLAG_LEAF && elem_flags & BUCKET_LEAF_FLAG != 0 {
            let vstart = kstart + ksize;
            if vstart + vsize > page.len() {
                continue;
            }
            let value = &page[vstart..vstart + vsize];
            if vsize < BUCKET_HEADER {
                return Err(problem(base + vstart as u64, "bucket value shorter than a bucket header"));
            }
            let root = le64(value, 0);
            if root != 0 {
                refs.push((root, base + vstart as u64));
            } else {
                let inline = &value[BUCKET_HEADER..];
                let ibase = base + (vstart + BUCKET_HEADER) as u64;
                if inline.len() < HEADER || le16(inline, 8) != FLAG_LEAF {
                    return Err(problem(ibase, "inline bucket is not a leaf page image"));
                }
                let mut nested = Vec::new();
                walk_node(inline, inline.len() as u64, ibase, FLAG_LEAF, le16(inline, 10), &mut nested)?;
                refs.extend(nested);
            }
        }
    }
    Ok(())
}

impl Checker for BoltChecker {
    fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            // Until meta 0 is parsed the page size is unknown; 4096 is both bbolt's usual page
            // size and enough to hold the meta fields of any page size.
            let want = if self.fed == 0 && self.meta0.is_none() { PAGE_SIZE as usize } else { self.page_size() };
            let take = (want - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == want {
                if self.fed == 0 && want < self.page_size_hint() {
                    // Meta 0 says pages are larger than what we gathered: keep gathering.
                    continue;
                }
                self.on_page();
            }
        }
    }

    fn finish(mut self: Box<Self>) -> Result<(), FormatProblem> {
        let total = self.fed + self.buf.len() as u64;
        if self.fed < 2 * self.page_size() as u64 && self.first.is_none() {
            if self.fed == 0 && !self.buf.is_empty() {
                let page = std::mem::take(&mut self.buf);
                parse_meta(&page, 0)?;
            }
            return Err(problem(total, "file ends before both bbolt meta pages"));
        }
        if let Some(p) = self.first.take() {
            return Err(p);
        }
        let Some(meta) = self.meta else { return Err(problem(0, "no valid bbolt meta page")) };
        let want = meta.pgid.saturating_mul(meta.page_size);
        if total > want {
            return Err(problem(want, format!("{} bytes past the declared end ({want} bytes)", total - want)));
        }
        if total < want {
            return Err(problem(total, format!("file is {} bytes short of its declared {want} bytes", want - total)));
        }
        if self.freelist_left > 0 {
            return Err(problem(meta.freelist * meta.page_size, "freelist ends early"));
        }
        if self.tracked {
            for i in self.expected.iter() {
                if !self.node_ok.get(i) {
                    return Err(problem(
                        i * meta.page_size,
                        format!("page {i} is referenced but is not a branch or leaf page with its own id"),
                    ));
                }
                if self.free.get(i) {
                    return Err(problem(i * meta.page_size, format!("page {i} is both reachable and free")));
                }
            }
        }
        Ok(())
    }
}

impl BoltChecker {
    /// The page size meta 0 declares, once at least its header is buffered.
    fn page_size_hint(&mut self) -> usize {
        if self.meta0.is_none() && self.buf.len() >= META_END {
            if let Ok(m) = parse_meta(&self.buf, 0) {
                return m.page_size as usize;
            }
        }
        self.page_size()
    }
}

// ---------------------------------------------------------------------------------------
// Writer

/// One key/value of a node being written.
struct Item<'a> {
    key: &'a [u8],
    value: Cow<'a, [u8]>,
    flags: u32,
}

/// A page to be emitted: a leaf over `items[range]` of tree `tree`, or a branch.
enum Node {
    Leaf { tree: usize, start: usize, end: usize, overflow: u64 },
    Branch { children: Vec<(Vec<u8>, u64)>, overflow: u64 },
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.to_string())
}

fn pages_for(bytes: usize, page_size: usize) -> u64 {
    bytes.div_ceil(page_size).max(1) as u64
}

/// Plans the pages of one tree (leaves left to right, then each branch level), assigning
/// page ids from `next`; returns the root page id.
fn plan_tree(tree: usize, items: &[Item<'_>], page_size: usize, next: &mut u64, nodes: &mut Vec<(u64, Node)>) -> u64 {
    // Leaves: fill up to a page; an element too big for a page gets its own overflowed node.
    let mut level: Vec<(Vec<u8>, u64)> = Vec::new();
    let mut start = 0;
    while start < items.len() || (start == 0 && items.is_empty()) {
        let mut size = HEADER;
        let mut end = start;
        while end < items.len() {
            let add = ELEM + items[end].key.len() + items[end].value.len();
            if end > start && size + add > page_size {
                break;
            }
            size += add;
            end += 1;
        }
        let overflow = pages_for(size, page_size) - 1;
        let id = *next;
        *next += overflow + 1;
        level.push((items.get(start).map_or_else(Vec::new, |i| i.key.to_vec()), id));
        nodes.push((id, Node::Leaf { tree, start, end, overflow }));
        if items.is_empty() {
            break;
        }
        start = end;
    }
    // Branch levels until one node remains.
    while level.len() > 1 {
        let mut upper = Vec::new();
        let mut rest = level.as_slice();
        while !rest.is_empty() {
            let mut size = HEADER;
            let mut n = 0;
            while n < rest.len() {
                let add = ELEM + rest[n].0.len();
                // At least two children per branch so every level shrinks.
                if n >= 2 && size + add > page_size {
                    break;
                }
                size += add;
                n += 1;
            }
            let overflow = pages_for(size, page_size) - 1;
            let id = *next;
            *next += overflow + 1;
            upper.push((rest[0].0.clone(), id));
            nodes.push((id, Node::Branch { children: rest[..n].to_vec(), overflow }));
            rest = &rest[n..];
        }
        level = upper;
    }
    level[0].1
}

/// One element to render: key, value, leaf flags, child page (branches).
type ElemRef<'a> = (&'a [u8], &'a [u8], u32, u64);

/// Renders a node's page image (page header included) into `out`, `page_size`-padded.
fn render(id: u64, flags: u16, elems: &[ElemRef<'_>], overflow: u64, out: &mut Vec<u8>, page_size: usize) {
    out.clear();
    out.resize(HEADER + elems.len() * ELEM, 0);
    out[0..8].copy_from_slice(&id.to_le_bytes());
    out[8..10].copy_from_slice(&flags.to_le_bytes());
    out[10..12].copy_from_slice(&(elems.len() as u16).to_le_bytes());
    out[12..16].copy_from_slice(&(overflow as u32).to_le_bytes());
    for (e, (key, value, eflags, child)) in elems.iter().enumerate() {
        let at = HEADER + e * ELEM;
        let pos = (out.len() - at) as u32;
        if flags == FLAG_BRANCH {
            out[at..at + 4].copy_from_slice(&pos.to_le_bytes());
            out[at + 4..at + 8].copy_from_slice(&(key.len() as u32).to_le_bytes());
            out[at + 8..at + 16].copy_from_slice(&child.to_le_bytes());
        } else {
            out[at..at + 4].copy_from_slice(&eflags.to_le_bytes());
            out[at + 4..at + 8].copy_from_slice(&pos.to_le_bytes());
            out[at + 8..at + 12].copy_from_slice(&(key.len() as u32).to_le_bytes());
            out[at + 12..at + 16].copy_from_slice(&(value.len() as u32).to_le_bytes());
        }
        out.extend_from_slice(key);
        out.extend_from_slice(value);
    }
    if page_size > 0 {
        let total = (overflow as usize + 1) * page_size;
        out.resize(total, 0);
    }
}

fn meta_page(page_no: u64, txid: u64, root: u64, freelist: u64, pgid: u64) -> Vec<u8> {
    let mut p = vec![0u8; PAGE_SIZE as usize];
    p[0..8].copy_from_slice(&page_no.to_le_bytes());
    p[8..10].copy_from_slice(&FLAG_META.to_le_bytes());
    let m = &mut p[HEADER..];
    m[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    m[4..8].copy_from_slice(&VERSION.to_le_bytes());
    m[8..12].copy_from_slice(&(PAGE_SIZE as u32).to_le_bytes());
    m[16..24].copy_from_slice(&root.to_le_bytes());
    m[32..40].copy_from_slice(&freelist.to_le_bytes());
    m[40..48].copy_from_slice(&pgid.to_le_bytes());
    m[48..56].copy_from_slice(&txid.to_le_bytes());
    let sum = fnv1a64(&p[HEADER..META_SUM_END]);
    p[META_SUM_END..META_END].copy_from_slice(&sum.to_le_bytes());
    p
}

/// Writes a bbolt file holding the given top-level buckets (name → key/values), shaped like a
/// read transaction's `WriteTo` copy: meta 0 (txid 2) and meta 1 (txid 1), an empty freelist
/// on page 2, each bucket's pages, then the root bucket's pages. Keys are written sorted;
/// buckets small enough are inlined the way bbolt inlines them (a single leaf of at most a
/// quarter page); larger buckets get leaf pages filled up to a page, branch pages above them,
/// and overflow pages for elements bigger than a page. Deterministic: same input, same bytes.
/// Returns the number of bytes written. Empty keys, empty bucket names and duplicates are
/// rejected (bbolt cannot store them).
pub fn write_db<W: Write>(mut out: W, buckets: &[(Vec<u8>, KeyValues)]) -> io::Result<u64> {
    let ps = PAGE_SIZE as usize;
    let mut order: Vec<usize> = (0..buckets.len()).collect();
    order.sort_by(|&a, &b| buckets[a].0.cmp(&buckets[b].0));
    if order.windows(2).any(|w| buckets[w[0]].0 == buckets[w[1]].0) || buckets.iter().any(|b| b.0.is_empty()) {
        return Err(invalid("bucket names must be unique and non-empty"));
    }
    let mut trees: Vec<Vec<Item<'_>>> = Vec::new();
    for &b in &order {
        let mut items: Vec<Item<'_>> =
            buckets[b].1.iter().map(|(k, v)| Item { key: k, value: Cow::Borrowed(v.as_slice()), flags: 0 }).collect();
        items.sort_by(|a, b| a.key.cmp(b.key));
        if items.iter().any(|i| i.key.is_empty()) || items.windows(2).any(|w| w[0].key == w[1].key) {
            return Err(invalid("keys must be unique and non-empty within a bucket"));
        }
        trees.push(items);
    }

    let mut next = 3u64; // 0, 1: meta; 2: freelist
    let mut nodes: Vec<(u64, Node)> = Vec::new();
    let mut root_items: Vec<Item<'_>> = Vec::new();
    let mut scratch = Vec::new();
    for (t, &b) in order.iter().enumerate() {
        let items = &trees[t];
        let inline_size = HEADER + items.iter().map(|i| ELEM + i.key.len() + i.value.len()).sum::<usize>();
        let mut value = vec![0u8; BUCKET_HEADER];
        if inline_size <= ps / 4 {
            let elems: Vec<_> = items.iter().map(|i| (i.key, i.value.as_ref(), i.flags, 0u64)).collect();
            render(0, FLAG_LEAF, &elems, 0, &mut scratch, 0);
            value.extend_from_slice(&scratch);
        } else {
            let root = plan_tree(t, items, ps, &mut next, &mut nodes);
            value[0..8].copy_from_slice(&root.to_le_bytes());
        }
        root_items.push(Item { key: &buckets[b].0, value: Cow::Owned(value), flags: BUCKET_LEAF_FLAG });
    }
    let root_tree = trees.len();
    trees.push(root_items);
    let root = plan_tree(root_tree, &trees[root_tree], ps, &mut next, &mut nodes);
    let pgid = next;

    let mut written = 0u64;
    for (i, txid) in [(0u64, 2u64), (1, 1)] {
        out.write_all(&meta_page(i, txid, root, 2, pgid))?;
        written += PAGE_SIZE;
    }
    let mut freelist = vec![0u8; ps];
    freelist[0..8].copy_from_slice(&2u64.to_le_bytes());
    freelist[8..10].copy_from_slice(&FLAG_FREELIST.to_le_bytes());
    out.write_all(&freelist)?;
    written += PAGE_SIZE;

    for (id, node) in &nodes {
        match node {
            Node::Leaf { tree, start, end, overflow } => {
                let elems: Vec<_> =
                    trees[*tree][*start..*end].iter().map(|i| (i.key, i.value.as_ref(), i.flags, 0u64)).collect();
                render(*id, FLAG_LEAF, &elems, *overflow, &mut scratch, ps);
            }
            Node::Branch { children, overflow } => {
                let elems: Vec<_> = children.iter().map(|(k, c)| (k.as_slice(), &[][..], 0u32, *c)).collect();
                render(*id, FLAG_BRANCH, &elems, *overflow, &mut scratch, ps);
            }
        }
        out.write_all(&scratch)?;
        written += scratch.len() as u64;
    }
    Ok(written)
}

// ---------------------------------------------------------------------------------------
// Reader

/// A key/value read from a bucket, with the file offset of its value (for problem reports).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    pub(super) key: Vec<u8>,
    pub(super) value: Vec<u8>,
    pub(super) offset: u64,
}

struct Reader<'a> {
    data: &'a [u8],
    meta: Meta,
    visited: PageBits,
}

impl<'a> Reader<'a> {
    /// The node at page `id`: its bytes (overflow included), flags and element count.
    fn node(&mut self, id: u64, at: u64) -> Result<(&'a [u8], u64, u16, u16), FormatProblem> {
        let ps = self.meta.page_size;
        if id < 2 || id >= self.meta.pgid || id == self.meta.freelist {
            return Err(problem(at, format!("reference to page {id} outside the data pages")));
        }
        if self.visited.get(id) {
            return Err(problem(at, format!("page {id} referenced twice")));
        }
        self.visited.set(id);
        let base = id * ps;
        let head = self
            .data
            .get(base as usize..(base + HEADER as u64) as usize)
            .ok_or_else(|| problem(base, format!("page {id} lies past the end of the file")))?;
        let overflow = u64::from(le32(head, 12));
        let end = overflow
            .checked_add(id + 1)
            .filter(|&e| e <= self.meta.pgid)
            .ok_or_else(|| problem(base + 12, format!("page {id} overflows past the high-water mark")))?;
        let bytes = self
            .data
            .get(base as usize..(end * ps) as usize)
            .ok_or_else(|| problem(base, format!("page {id} lies past the end of the file")))?;
        if le64(head, 0) != id {
            return Err(problem(base, format!("page {id} carries id {}", le64(head, 0))));
        }
        Ok((bytes, base, le16(head, 8), le16(head, 10)))
    }

    /// Collects the leaf elements of the tree rooted at page `id`, in key order.
    fn tree(&mut self, id: u64, at: u64, depth: usize, out: &mut Vec<(Entry, u32)>) -> Result<(), FormatProblem> {
        if depth > MAX_DEPTH {
            return Err(problem(at, "bbolt tree too deep"));
        }
        let (bytes, base, flags, count) = self.node(id, at)?;
        match flags {
            FLAG_LEAF => leaf_elems(bytes, base, count, out),
            FLAG_BRANCH => {
                let mut refs = Vec::new();
                walk_node(bytes, bytes.len() as u64, base, flags, count, &mut refs)?;
                for (child, cat) in refs {
                    self.tree(child, cat, depth + 1, out)?;
                }
                Ok(())
            }
            _ => Err(problem(base + 8, format!("page {id} has flags {flags:#x}, not branch or leaf"))),
        }
    }

    /// The key/values of a bucket whose header+inline image is `value` (read at `at`).
    fn bucket(&mut self, value: &[u8], at: u64) -> Result<Vec<Entry>, FormatProblem> {
        if value.len() < BUCKET_HEADER {
            return Err(problem(at, "bucket value shorter than a bucket header"));
        }
        let root = le64(value, 0);
        let mut elems = Vec::new();
        if root == 0 {
            let inline = &value[BUCKET_HEADER..];
            let ibase = at + BUCKET_HEADER as u64;
            if inline.len() < HEADER || le16(inline, 8) != FLAG_LEAF {
                return Err(problem(ibase, "inline bucket is not a leaf page image"));
            }
            leaf_elems(inline, ibase, le16(inline, 10), &mut elems)?;
        } else {
            self.tree(root, at, 0, &mut elems)?;
        }
        check_order(&elems)?;
        // Nested buckets are not used by FeatureBase's files; they are left out.
        Ok(elems.into_iter().filter(|(_, f)| f & BUCKET_LEAF_FLAG == 0).map(|(e, _)| e).collect())
    }
}

fn check_order(elems: &[(Entry, u32)]) -> Result<(), FormatProblem> {
    for w in elems.windows(2) {
        if w[0].0.key >= w[1].0.key {
            return Err(problem(w[1].0.offset, "keys out of order"));
        }
    }
    Ok(())
}

fn leaf_elems(bytes: &[u8], base: u64, count: u16, out: &mut Vec<(Entry, u32)>) -> Result<(), FormatProblem> {
    let n = usize::from(count);
    if HEADER + n * ELEM > bytes.len() {
        return Err(problem(base + 10, format!("{n} elements do not fit the node")));
    }
    for e in 0..n {
        let at = HEADER + e * ELEM;
        let flags = le32(bytes, at);
        let kstart = at as u64 + u64::from(le32(bytes, at + 4));
        let ksize = u64::from(le32(bytes, at + 8));
        let vsize = u64::from(le32(bytes, at + 12));
        let end = kstart + ksize + vsize;
        if ksize == 0 || end > bytes.len() as u64 {
            return Err(problem(base + at as u64, format!("element {e} lies outside its node")));
        }
        let (k, v) = (kstart as usize, (kstart + ksize) as usize);
        out.push((
            Entry { key: bytes[k..v].to_vec(), value: bytes[v..end as usize].to_vec(), offset: base + v as u64 },
            flags,
        ));
    }
    Ok(())
}

/// The meta page bbolt uses: the valid one with the higher txid.
fn newer_meta(m0: Result<Meta, FormatProblem>, m1: Result<Meta, FormatProblem>) -> Result<Meta, FormatProblem> {
    match (m0, m1) {
        (Ok(a), Ok(b)) => Ok(if b.txid > a.txid { b } else { a }),
        (Ok(a), Err(_)) => Ok(a),
        (Err(_), Ok(b)) => Ok(b),
        (Err(e), Err(_)) => Err(e),
    }
}

/// Reads every top-level bucket with its key/values (internal form, offsets kept).
pub(super) fn read_entries(data: &[u8]) -> Result<BTreeMap<Vec<u8>, Vec<Entry>>, FormatProblem> {
    let m0 = parse_meta(data, 0);
    let ps0 = m0.as_ref().map_or(PAGE_SIZE, |m| m.page_size);
    let m1 = data
        .get(ps0 as usize..)
        .map_or_else(|| Err(problem(data.len() as u64, "file ends before meta page 1")), |rest| parse_meta(rest, ps0));
    let meta = newer_meta(m0, m1)?;
    let want = meta.pgid.saturating_mul(meta.page_size);
    if (data.len() as u64) < want {
        return Err(problem(data.len() as u64, format!("file is shorter than its declared {want} bytes")));
    }
    let visited = PageBits::with_len(meta.pgid.min(data.len() as u64 / meta.page_size + 1));
    let mut reader = Reader { data, meta, visited };
    let mut top = Vec::new();
    reader.tree(meta.root, HEADER as u64 + 16, 0, &mut top)?;
    check_order(&top)?;
    let mut out = BTreeMap::new();
    for (e, flags) in top {
        if flags & BUCKET_LEAF_FLAG == 0 {
            continue; // a plain key in the root bucket: bbolt does not allow one
        }
        let entries = reader.bucket(&e.value, e.offset)?;
        out.insert(e.key, entries);
    }
    Ok(out)
}

/// What [`visit_bucket`] calls for each key/value of the bucket, in key order.
pub(crate) type KeyValueVisitor<'v> = dyn FnMut(&[u8], &[u8]) -> Result<(), FormatProblem> + 'v;

/// Calls `visit` for every key/value of the top-level bucket `name` of the bbolt file held
/// in the `len` bytes at `offset` of `file`, reading one node at a time through positional
/// reads: memory is the largest node (a page and its overflow), not the file. Returns
/// whether the bucket exists. Nested buckets are skipped; malformed structure is reported
/// with its offset inside the bbolt file.
pub(crate) fn visit_bucket(
    file: &std::fs::File,
    offset: u64,
    len: u64,
    name: &[u8],
    visit: &mut KeyValueVisitor<'_>,
) -> Result<bool, FormatProblem> {
    use std::os::unix::fs::FileExt;
    let read = |at: u64, n: u64| -> Result<Vec<u8>, FormatProblem> {
        if at.checked_add(n).is_none_or(|end| end > len) {
            return Err(problem(at, format!("{n} bytes at {at} lie past the end of the file ({len} bytes)")));
        }
        let mut buf = vec![0u8; n as usize];
        file.read_exact_at(&mut buf, offset + at).map_err(|e| problem(at, format!("cannot read: {e}")))?;
        Ok(buf)
    };
    let first = read(0, (META_END as u64).min(len))?;
    let m0 = parse_meta(&first, 0);
    let ps0 = m0.as_ref().map_or(PAGE_SIZE, |m| m.page_size);
    let m1 = read(ps0, META_END as u64).and_then(|p| parse_meta(&p, ps0));
    let meta = newer_meta(m0, m1)?;
    let ps = meta.page_size;
    let mut visited = PageBits::with_len(meta.pgid.min(len / ps + 1));
    // One node: its bytes with overflow, its base offset, flags and element count.
    let mut node = |id: u64, at: u64| -> Result<(Vec<u8>, u64, u16, u16), FormatProblem> {
        if id < 2 || id >= meta.pgid || id == meta.freelist {
            return Err(problem(at, format!("reference to page {id} outside the data pages")));
        }
        if visited.get(id) {
            return Err(problem(at, format!("page {id} referenced twice")));
        }
        visited.set(id);
        let head = read(id * ps, HEADER as u64)?;
        if le64(&head, 0) != id {
            return Err(problem(id * ps, format!("page {id} carries id {}", le64(&head, 0))));
        }
        let overflow = u64::from(le32(&head, 12));
        if overflow.checked_add(id + 1).is_none_or(|e| e > meta.pgid) {
            return Err(problem(id * ps + 12, format!("page {id} overflows past the high-water mark")));
        }
        Ok((read(id * ps, (overflow + 1) * ps)?, id * ps, le16(&head, 8), le16(&head, 10)))
    };
    // Depth-first over a tree, leaves in key order; `on_leaf` gets each leaf's elements.
    let mut walk = |root: u64, at: u64, on_leaf: &mut dyn FnMut(Vec<(Entry, u32)>) -> Result<(), FormatProblem>| {
        let mut stack = vec![(root, at, 0usize)];
        while let Some((id, at, depth)) = stack.pop() {
            if depth > MAX_DEPTH {
                return Err(problem(at, "bbolt tree too deep"));
            }
            let (bytes, base, flags, count) = node(id, at)?;
            match flags {
                FLAG_LEAF => {
                    let mut elems = Vec::new();
                    leaf_elems(&bytes, base, count, &mut elems)?;
                    check_order(&elems)?;
                    on_leaf(elems)?;
                }
                FLAG_BRANCH => {
                    let mut refs = Vec::new();
                    walk_node(&bytes, bytes.len() as u64, base, flags, count, &mut refs)?;
                    stack.extend(refs.into_iter().rev().map(|(child, cat)| (child, cat, depth + 1)));
                }
                _ => return Err(problem(base + 8, format!("page {id} has flags {flags:#x}, not branch or leaf"))),
            }
        }
        Ok(())
    };
    let mut header: Option<(Vec<u8>, u64)> = None;
    walk(meta.root, HEADER as u64 + 16, &mut |elems| {
        for (e, flags) in elems {
            if flags & BUCKET_LEAF_FLAG != 0 && e.key == name {
                header = Some((e.value, e.offset));
            }
        }
        Ok(())
    })?;
    let Some((value, at)) = header else { return Ok(false) };
    if value.len() < BUCKET_HEADER {
        return Err(problem(at, "bucket value shorter than a bucket header"));
    }
    let mut last: Option<Vec<u8>> = None;
    let mut each = |elems: Vec<(Entry, u32)>| -> Result<(), FormatProblem> {
        for (e, flags) in elems {
            if last.as_ref().is_some_and(|l| *l >= e.key) {
                return Err(problem(e.offset, "keys out of order across nodes"));
            }
            if flags & BUCKET_LEAF_FLAG == 0 {
                visit(&e.key, &e.value)?;
            }
            last = Some(e.key);
        }
        Ok(())
    };
    match le64(&value, 0) {
        0 => {
            let inline = &value[BUCKET_HEADER..];
            let ibase = at + BUCKET_HEADER as u64;
            if inline.len() < HEADER || le16(inline, 8) != FLAG_LEAF {
                return Err(problem(ibase, "inline bucket is not a leaf page image"));
            }
            let mut elems = Vec::new();
            leaf_elems(inline, ibase, le16(inline, 10), &mut elems)?;
            check_order(&elems)?;
            each(elems)?;
        }
        root => walk(root, at, &mut each)?,
    }
    Ok(true)
}

/// Reads a bbolt file: every top-level bucket with its key/values in key order. Handles
/// inline buckets, branch pages and overflow pages; uses the valid meta page with the higher
/// txid, as bbolt does. Nested buckets are skipped (FeatureBase does not use them). Any
/// malformed structure is reported with its offset.
pub fn read_db(data: &[u8]) -> Result<BTreeMap<Vec<u8>, KeyValues>, FormatProblem> {
    Ok(read_entries(data)?
        .into_iter()
        .map(|(name, entries)| (name, entries.into_iter().map(|e| (e.key, e.value)).collect()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Buckets = Vec<(Vec<u8>, KeyValues)>;

    fn write(b: &Buckets) -> Vec<u8> {
        let mut out = Vec::new();
        let n = write_db(&mut out, b).expect("write");
        assert_eq!(n, out.len() as u64);
        out
    }

    fn check(data: &[u8], chunk: usize) -> Result<(), FormatProblem> {
        let mut c = Box::new(BoltChecker::default());
        for part in data.chunks(chunk.max(1)) {
            c.update(part);
        }
        c.finish()
    }

    fn expected(b: &Buckets) -> BTreeMap<Vec<u8>, KeyValues> {
        b.iter()
            .map(|(n, kv)| {
                let mut kv = kv.clone();
                kv.sort();
                (n.clone(), kv)
            })
            .collect()
    }

    #[test]
    fn empty_buckets_are_inline_and_readable() {
        let b: Buckets = vec![(b"keys".to_vec(), vec![]), (b"ids".to_vec(), vec![]), (b"free".to_vec(), vec![])];
        let data = write(&b);
        assert_eq!(data.len() as u64, 4 * PAGE_SIZE);
        assert_eq!(declared_len(&data[..4096]), Ok(data.len() as u64));
        assert_eq!(read_db(&data), Ok(expected(&b)));
        check(&data, 1000).expect("check");
    }

    #[test]
    fn thousands_of_keys_use_branches_and_overflow() {
        let kv: Vec<_> = (0..5000u64).map(|i| (format!("key{i}").into_bytes(), i.to_be_bytes().to_vec())).collect();
        let big = vec![(b"big".to_vec(), vec![7u8; 10_000])];
        let b: Buckets = vec![(b"keys".to_vec(), kv), (b"blob".to_vec(), big)];
        let data = write(&b);
        assert_eq!(read_db(&data), Ok(expected(&b)));
        check(&data, 4096).expect("check");
        check(&data, 777).expect("check");
        assert_eq!(declared_len(&data[..4096]), Ok(data.len() as u64));
        // Deterministic.
        assert_eq!(data, write(&b));
    }

    #[test]
    fn checker_reports_length_and_meta_problems() {
        let b: Buckets = vec![(b"a".to_vec(), vec![(b"k".to_vec(), b"v".to_vec())])];
        let data = write(&b);
        let short = &data[..data.len() - 1];
        assert_eq!(check(short, 4096).map_err(|p| p.offset), Err(short.len() as u64));
        let mut long = data.clone();
        long.extend_from_slice(&[0; 10]);
        assert_eq!(check(&long, 4096).map_err(|p| p.offset), Err(data.len() as u64));
        let mut bad = data.clone();
        bad[PAGE_SIZE as usize + 40] ^= 1; // meta 1 field: checksum no longer matches
        assert_eq!(check(&bad, 4096).map_err(|p| p.offset), Err(PAGE_SIZE + META_SUM_END as u64));
        let mut bad = data.clone();
        bad[3 * PAGE_SIZE as usize] ^= 1; // root leaf page id
        assert!(check(&bad, 4096).is_err());
        assert!(read_db(&bad).is_err());
    }

    #[test]
    fn invalid_input_is_rejected() {
        assert!(write_db(Vec::new(), &[(b"a".to_vec(), vec![(vec![], vec![])])]).is_err());
        assert!(write_db(Vec::new(), &[(b"a".to_vec(), vec![]), (b"a".to_vec(), vec![])]).is_err());
    }

    fn buckets() -> impl Strategy<Value = Buckets> {
        prop::collection::btree_map(
            prop::collection::vec(any::<u8>(), 1..12),
            prop::collection::btree_map(
                prop::collection::vec(any::<u8>(), 1..40),
                prop::collection::vec(any::<u8>(), 0..300),
                0..120,
            ),
            0..5,
        )
        .prop_map(|m| m.into_iter().map(|(k, v)| (k, v.into_iter().collect())).collect())
    }

    proptest! {
        #[test]
        fn round_trip(b in buckets(), chunk in 1usize..9000) {
            let data = write(&b);
            prop_assert_eq!(read_db(&data), Ok(expected(&b)));
            prop_assert_eq!(check(&data, chunk), Ok(()));
            prop_assert_eq!(declared_len(&data[..4096]), Ok(data.len() as u64));
        }

        #[test]
        fn garbled_input_never_panics(b in buckets(), flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..20), cut in any::<usize>()) {
            let mut data = write(&b);
            for (at, x) in flips {
                let n = data.len();
                data[at % n] ^= x;
            }
            data.truncate(cut % (data.len() + 1));
            let _ = read_db(&data);
            let _ = check(&data, 1000);
            let _ = declared_len(&data[..data.len().min(4096)]);
        }

        #[test]
        fn random_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..20000)) {
            let _ = read_db(&data);
            let _ = check(&data, 333);
            let _ = declared_len(&data);
        }
    }
}
