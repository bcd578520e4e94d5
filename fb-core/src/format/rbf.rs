//! FeatureBase RBF shard files ("roaring b-tree format"), page size 8192.
//!
//! Layout facts (FeatureBase v3 `rbf/`), confirmed on upstream's sample files and on a
//! snapshot made by upstream's own code:
//! - page 0, meta: magic `\xFFRBF`, flags u32 (0 in files), page count u32, WAL id u64, root
//!   record page u32, freelist root page u32, all big-endian. The last 4 bytes are reserved
//!   for a checksum that upstream never computes (the code is commented out; real files have
//!   zeros), so there is no checksum to check;
//! - other non-bitmap pages: page number u32 BE, flags u32 BE (root record 1, leaf 2,
//!   branch 4), cell count u16 BE, then a u16 BE offset per cell; cells start 8-aligned;
//! - root record pages: after the page number and flags, the next root record page (u32 BE,
//!   0 for none), then records `pgno u32 BE, name length u16 BE, name` in name order, ended
//!   by a zero pgno or the end of the page;
//! - leaf cells are written in native (little-endian on amd64) order: key u64 (value >> 16),
//!   container type u32 (1 array, 2 run, 4 bitmap pointer), element count u16, bit count
//!   u32, then the data: u16 values, (start, last) u16 pairs, or a u32 bitmap page number;
//! - branch cells (native order): smallest key u64, flags u32 (0), child page u32;
//! - bitmap pages are 8192 bytes of 1024 little-endian u64 words, with no header;
//! - the freelist is itself a bitmap b-tree whose set bits are free page numbers.

use std::collections::BTreeMap;
use std::io::{self, Write};

use super::bolt::{PageBits, MAX_TRACKED_PAGES};
use super::{be16, be32, le16, le32, le64, problem, Checker, FormatProblem};

/// RBF page size.
pub const PAGE_SIZE: u64 = 8192;

const PS: usize = PAGE_SIZE as usize;
const MAGIC: &[u8; 4] = b"\xFFRBF";
pub(crate) const TYPE_ROOT_RECORD: u32 = 1;
pub(crate) const TYPE_LEAF: u32 = 2;
pub(crate) const TYPE_BRANCH: u32 = 4;
pub(crate) const CT_ARRAY: u32 = 1;
pub(crate) const CT_RLE: u32 = 2;
pub(crate) const CT_BITMAP_PTR: u32 = 4;
const CELL_HEADER: usize = 18;
const BRANCH_CELL: usize = 16;
const ROOT_RECORD_PAGE_HEADER: usize = 12;
/// Containers with more values than this are written as bitmap containers. Upstream's limit
/// for array cells is 4079 (so one fits a page); 4000 keeps every array cell clearly inside.
const ARRAY_MAX: usize = 4000;
/// Branch cells per page fbkit writes (a page holds 454; upstream splits at 60% fill).
const BRANCH_MAX: usize = 256;
/// Tree depth beyond this is not a real RBF tree (they are balanced and shallow).
pub(crate) const MAX_DEPTH: usize = 32;

fn align8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

/// Where cell data may start on a page with `n` cells (header + offset table, 8-aligned).
fn data_offset(n: usize) -> usize {
    align8(10 + 2 * n)
}

/// The name FeatureBase gives, inside a shard's RBF file, to the bitmap of a field's view:
/// `~field;view<` (upstream's `short_txkey.Prefix`, used by `rbfName`; the index and shard are
/// not part of it because each shard of each index has its own file).
pub fn fragment_key(field: &str, view: &str) -> String {
    format!("~{field};{view}<")
}

/// The meta page fields fbkit uses.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Meta {
    pub(crate) page_n: u32,
    pub(crate) root_records: u32,
    pub(crate) freelist: u32,
}

pub(crate) fn parse_meta(prefix: &[u8]) -> Result<Meta, FormatProblem> {
    if prefix.len() < 28 {
        return Err(problem(prefix.len() as u64, "file ends inside the RBF meta page header"));
    }
    if &prefix[0..4] != MAGIC {
        return Err(problem(0, "bad RBF magic (want \\xFFRBF)"));
    }
    let meta = Meta { page_n: be32(prefix, 8), root_records: be32(prefix, 20), freelist: be32(prefix, 24) };
    // Upstream always has the meta page and a freelist root page.
    if meta.page_n < 2 {
        return Err(problem(8, format!("RBF page count {} is too small", meta.page_n)));
    }
    if meta.root_records >= meta.page_n {
        return Err(problem(20, format!("root record page {} is past the page count", meta.root_records)));
    }
    if meta.freelist == 0 || meta.freelist >= meta.page_n || meta.freelist == meta.root_records {
        return Err(problem(24, format!("freelist page {} is invalid", meta.freelist)));
    }
    Ok(meta)
}

/// The exact length an RBF file declares on its meta page: page count × 8192. `prefix` needs
/// the first 28 bytes.
pub fn declared_len(prefix: &[u8]) -> Result<u64, FormatProblem> {
    Ok(u64::from(parse_meta(prefix)?.page_n) * PAGE_SIZE)
}

// ---------------------------------------------------------------------------------------
// Page parsing shared by the checker and the reader.

/// A leaf cell as found on a page.
pub(crate) struct LeafCell<'a> {
    pub(crate) key: u64,
    pub(crate) kind: u32,
    pub(crate) bit_n: u32,
    pub(crate) data: &'a [u8],
    pub(crate) at: usize,
}

/// Parses the cells of a leaf page and checks what every real page satisfies: offsets inside
/// the page past the offset table, known container types, data inside the page, keys
/// ascending, array values ascending with a matching bit count, runs ordered.
pub(crate) fn leaf_cells(page: &[u8], base: u64) -> Result<Vec<LeafCell<'_>>, FormatProblem> {
    let n = usize::from(be16(page, 8));
    if data_offset(n) > PS {
        return Err(problem(base + 8, format!("{n} cells do not fit a page")));
    }
    let mut cells = Vec::with_capacity(n);
    for i in 0..n {
        let at = usize::from(be16(page, 10 + 2 * i));
        if at < data_offset(n) || at + CELL_HEADER > PS {
            return Err(problem(base + 10 + 2 * i as u64, format!("cell {i} offset {at} outside the page")));
        }
        let key = le64(page, at);
        let kind = le32(page, at + 8);
        let elem_n = usize::from(le16(page, at + 12));
        let bit_n = le32(page, at + 14);
        let len = match kind {
            CT_ARRAY => 2 * elem_n,
            CT_RLE => 4 * elem_n,
            CT_BITMAP_PTR => 4,
            _ => return Err(problem(base + at as u64 + 8, format!("cell {i} has unknown container type {kind}"))),
        };
        let start = at + CELL_HEADER;
        let data = page
            .get(start..start + len)
            .ok_or_else(|| problem(base + at as u64 + 12, format!("cell {i} data runs past the page")))?;
        if cells.last().is_some_and(|c: &LeafCell<'_>| c.key >= key) {
            return Err(problem(base + at as u64, format!("cell {i} key {key} out of order")));
        }
        if kind == CT_ARRAY {
            if bit_n as usize != elem_n {
                return Err(problem(base + at as u64 + 14, format!("cell {i} bit count {bit_n} != {elem_n} values")));
            }
            if (1..elem_n).any(|j| le16(data, 2 * j - 2) >= le16(data, 2 * j)) {
                return Err(problem(base + start as u64, format!("cell {i} array values out of order")));
            }
        }
        if kind == CT_RLE {
            let mut prev: Option<u16> = None;
            for j in 0..elem_n {
                let (s, l) = (le16(data, 4 * j), le16(data, 4 * j + 2));
                if s > l || prev.is_some_and(|p| p >= s) {
                    return Err(problem(base + (start + 4 * j) as u64, format!("cell {i} run {j} malformed")));
                }
                prev = Some(l);
            }
        }
        cells.push(LeafCell { key, kind, bit_n, data, at });
    }
    Ok(cells)
}

/// A branch cell as found: smallest key, child page, file offset of the child field.
pub(crate) type BranchCell = (u64, u32, u64);

/// Parses a branch page's cells.
pub(crate) fn branch_cells(page: &[u8], base: u64) -> Result<Vec<BranchCell>, FormatProblem> {
    let n = usize::from(be16(page, 8));
    if n == 0 || data_offset(n) > PS {
        return Err(problem(base + 8, format!("branch page with {n} cells")));
    }
    let mut cells: Vec<BranchCell> = Vec::with_capacity(n);
    for i in 0..n {
        let at = usize::from(be16(page, 10 + 2 * i));
        if at < data_offset(n) || at + BRANCH_CELL > PS {
            return Err(problem(base + 10 + 2 * i as u64, format!("branch cell {i} offset {at} outside the page")));
        }
        let key = le64(page, at);
        if cells.last().is_some_and(|c| c.0 >= key) {
            return Err(problem(base + at as u64, format!("branch cell {i} key {key} out of order")));
        }
        cells.push((key, le32(page, at + 12), base + at as u64 + 12));
    }
    Ok(cells)
}

/// A root record as found: bitmap name, root page, file offset of the record.
pub(crate) type RootRecord = (String, u32, u64);

/// Root records on one root record page, and the next root record page (0 for none).
pub(crate) fn root_records(page: &[u8], base: u64) -> Result<(Vec<RootRecord>, u32), FormatProblem> {
    let mut recs = Vec::new();
    let mut at = ROOT_RECORD_PAGE_HEADER;
    while at + 6 <= PS {
        let pgno = be32(page, at);
        if pgno == 0 {
            break;
        }
        let len = usize::from(be16(page, at + 4));
        let name = page
            .get(at + 6..at + 6 + len)
            .ok_or_else(|| problem(base + at as u64 + 4, "root record name runs past the page"))?;
        let name = String::from_utf8(name.to_vec())
            .map_err(|_| problem(base + at as u64 + 6, "root record name is not UTF-8"))?;
        if name.is_empty() {
            return Err(problem(base + at as u64 + 4, "root record with an empty name"));
        }
        recs.push((name, pgno, base + at as u64));
        at += 6 + len;
    }
    Ok((recs, be32(page, 8)))
}

// ---------------------------------------------------------------------------------------
// Checker

/// Streaming structural check of an RBF file: meta page (magic, page count, root record and
/// freelist page numbers), length == page count × 8192 (reporting where extra bytes start or
/// how many are missing), and every page reachable from the meta page that arrives after the
/// page pointing at it: root record pages (record bounds, names ascending), branch and leaf
/// pages (page number equals position, flags, cell bounds, container types, keys ascending,
/// child and bitmap page numbers below the page count). Pages referenced from later pages
/// are checked for their page number and flags only. Unreachable pages (free pages, stale
/// copies) and bitmap pages have no structure to check and are not judged. Memory: one page
/// and four bitsets of one bit per page (tree checks are skipped above 2^25 pages).
#[derive(Default)]
pub struct RbfChecker {
    fed: u64,
    buf: Vec<u8>,
    meta: Option<Meta>,
    first: Option<FormatProblem>,
    tracked: bool,
    node_ok: PageBits,
    rr_ok: PageBits,
    want_node: PageBits,
    want_rr: PageBits,
    last_name: Option<String>,
}

impl RbfChecker {
    fn note(&mut self, p: FormatProblem) {
        if self.first.is_none() {
            self.first = Some(p);
        }
    }

    fn expect_node(&mut self, pgno: u32, at: u64, page_n: u32) {
        if pgno == 0 || pgno >= page_n {
            self.note(problem(at, format!("reference to page {pgno} outside the file's {page_n} pages")));
        } else {
            self.want_node.set(u64::from(pgno));
        }
    }

    fn on_page(&mut self, i: u64, page: &[u8]) {
        let base = i * PAGE_SIZE;
        if i == 0 {
            match parse_meta(page) {
                Ok(m) => {
                    self.meta = Some(m);
                    if u64::from(m.page_n) <= MAX_TRACKED_PAGES {
                        self.tracked = true;
                        let n = u64::from(m.page_n);
                        self.node_ok = PageBits::with_len(n);
                        self.rr_ok = PageBits::with_len(n);
                        self.want_node = PageBits::with_len(n);
                        self.want_rr = PageBits::with_len(n);
                        self.want_node.set(u64::from(m.freelist));
                        if m.root_records != 0 {
                            self.want_rr.set(u64::from(m.root_records));
                        }
                    }
                }
                Err(p) => self.note(p),
            }
            return;
        }
        let Some(meta) = self.meta else { return };
        if !self.tracked || i >= u64::from(meta.page_n) {
            return;
        }
        let pgno = u64::from(be32(page, 0));
        let flags = be32(page, 4);
        if pgno == i {
            match flags {
                TYPE_LEAF | TYPE_BRANCH => self.node_ok.set(i),
                TYPE_ROOT_RECORD => self.rr_ok.set(i),
                _ => {}
            }
        }
        if self.want_rr.get(i) {
            if pgno != i || flags != TYPE_ROOT_RECORD {
                self.note(problem(base, format!("root record page {i} has page number {pgno} and flags {flags}")));
                return;
            }
            match root_records(page, base) {
                Ok((recs, next)) => {
                    for (name, root, at) in recs {
                        if self.last_name.as_ref().is_some_and(|l| *l >= name) {
                            self.note(problem(at, format!("root record {name:?} out of order")));
                        }
                        self.expect_node(root, at, meta.page_n);
                        self.last_name = Some(name);
                    }
                    if next != 0 {
                        if next >= meta.page_n {
                            self.note(problem(base + 8, format!("root record overflow page {next} past the end")));
                        } else {
                            self.want_rr.set(u64::from(next));
                        }
                    }
                }
                Err(p) => self.note(p),
            }
        }
        if self.want_node.get(i) {
            if pgno != i || (flags != TYPE_LEAF && flags != TYPE_BRANCH) {
                self.note(problem(base, format!("tree page {i} has page number {pgno} and flags {flags}")));
                return;
            }
            if flags == TYPE_BRANCH {
                match branch_cells(page, base) {
                    Ok(cells) => cells.into_iter().for_each(|(_, child, at)| self.expect_node(child, at, meta.page_n)),
                    Err(p) => self.note(p),
                }
            } else {
                match leaf_cells(page, base) {
                    Ok(cells) => {
                        for c in cells.iter().filter(|c| c.kind == CT_BITMAP_PTR) {
                            let bp = le32(c.data, 0);
                            if bp == 0 || bp >= meta.page_n {
                                self.note(problem(
                                    base + c.at as u64 + 18,
                                    format!("bitmap page {bp} outside the file"),
                                ));
                            }
                        }
                    }
                    Err(p) => self.note(p),
                }
            }
        }
    }
}

impl Checker for RbfChecker {
    fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let take = (PS - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == PS {
                let page = std::mem::take(&mut self.buf);
                let i = self.fed / PAGE_SIZE;
                self.on_page(i, &page);
                self.fed += PAGE_SIZE;
                self.buf = page;
                self.buf.clear();
            }
        }
    }

    fn finish(mut self: Box<Self>) -> Result<(), FormatProblem> {
        let total = self.fed + self.buf.len() as u64;
        if self.fed == 0 {
            let prefix = std::mem::take(&mut self.buf);
            parse_meta(&prefix)?;
            return Err(problem(total, "file ends inside the RBF meta page"));
        }
        if let Some(p) = self.first.take() {
            return Err(p);
        }
        let Some(meta) = self.meta else { return Err(problem(0, "no RBF meta page")) };
        let want = u64::from(meta.page_n) * PAGE_SIZE;
        if total > want {
            return Err(problem(want, format!("{} bytes past the declared end ({want} bytes)", total - want)));
        }
        if total < want {
            return Err(problem(total, format!("file is {} bytes short of its declared {want} bytes", want - total)));
        }
        for i in self.want_node.iter() {
            if !self.node_ok.get(i) {
                return Err(problem(i * PAGE_SIZE, format!("page {i} is referenced as a tree page but is not one")));
            }
        }
        for i in self.want_rr.iter() {
            if !self.rr_ok.get(i) {
                return Err(problem(
                    i * PAGE_SIZE,
                    format!("page {i} is referenced as a root record page but is not one"),
                ));
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Reader

fn page_at(data: &[u8], pgno: u32, page_n: u32, at: u64) -> Result<&[u8], FormatProblem> {
    if pgno == 0 || pgno >= page_n {
        return Err(problem(at, format!("reference to page {pgno} outside the file's {page_n} pages")));
    }
    let start = pgno as usize * PS;
    data.get(start..start + PS)
        .ok_or_else(|| problem(start as u64, format!("page {pgno} lies past the end of the file")))
}

fn read_tree(
    data: &[u8],
    meta: Meta,
    pgno: u32,
    at: u64,
    depth: usize,
    visited: &mut PageBits,
    out: &mut Vec<u64>,
) -> Result<(), FormatProblem> {
    if depth > MAX_DEPTH {
        return Err(problem(at, "RBF tree too deep"));
    }
    let page = page_at(data, pgno, meta.page_n, at)?;
    let base = u64::from(pgno) * PAGE_SIZE;
    if visited.get(u64::from(pgno)) {
        return Err(problem(at, format!("page {pgno} referenced twice")));
    }
    visited.set(u64::from(pgno));
    if u64::from(be32(page, 0)) != u64::from(pgno) {
        return Err(problem(base, format!("page {pgno} carries page number {}", be32(page, 0))));
    }
    match be32(page, 4) {
        TYPE_BRANCH => {
            for (_, child, cat) in branch_cells(page, base)? {
                read_tree(data, meta, child, cat, depth + 1, visited, out)?;
            }
        }
        TYPE_LEAF => {
            for c in leaf_cells(page, base)? {
                let hi = c.key << 16;
                match c.kind {
                    CT_ARRAY => out.extend(c.data.chunks_exact(2).map(|v| hi | u64::from(le16(v, 0)))),
                    CT_RLE => {
                        for r in c.data.chunks_exact(4) {
                            out.extend((le16(r, 0)..=le16(r, 2)).map(|v| hi | u64::from(v)));
                        }
                    }
                    _ => {
                        let bp = le32(c.data, 0);
                        let bitmap = page_at(data, bp, meta.page_n, base + c.at as u64 + 18)?;
                        let before = out.len();
                        for (w, word) in bitmap.chunks_exact(8).enumerate() {
                            let mut bits = le64(word, 0);
                            while bits != 0 {
                                out.push(hi | (w as u64 * 64 + u64::from(bits.trailing_zeros())));
                                bits &= bits - 1;
                            }
                        }
                        if (out.len() - before) as u64 != u64::from(c.bit_n) {
                            return Err(problem(
                                base + c.at as u64 + 14,
                                "bitmap page bit count differs from the cell's",
                            ));
                        }
                    }
                }
            }
        }
        f => return Err(problem(base + 4, format!("page {pgno} has flags {f}, not a tree page"))),
    }
    Ok(())
}

/// Reads every bitmap of an RBF file (name → set bit positions, ascending). For tests and
/// tools, not for huge files: the result holds every bit. Malformed structure is reported
/// with its offset.
pub fn read_bitmaps(data: &[u8]) -> Result<BTreeMap<String, Vec<u64>>, FormatProblem> {
    let meta = parse_meta(data)?;
    let want = u64::from(meta.page_n) * PAGE_SIZE;
    if data.len() as u64 != want {
        return Err(problem(
            data.len().min(want as usize) as u64,
            format!("file is {} bytes, declares {want}", data.len()),
        ));
    }
    let mut visited = PageBits::with_len(u64::from(meta.page_n));
    let mut out = BTreeMap::new();
    let (mut pgno, mut at) = (meta.root_records, 20u64);
    while pgno != 0 {
        let page = page_at(data, pgno, meta.page_n, at)?;
        let base = u64::from(pgno) * PAGE_SIZE;
        if visited.get(u64::from(pgno)) {
            return Err(problem(at, format!("root record page {pgno} referenced twice")));
        }
        visited.set(u64::from(pgno));
        if u64::from(be32(page, 0)) != u64::from(pgno) || be32(page, 4) != TYPE_ROOT_RECORD {
            return Err(problem(base, format!("page {pgno} is not a root record page")));
        }
        let (recs, next) = root_records(page, base)?;
        for (name, root, rat) in recs {
            let mut bits = Vec::new();
            read_tree(data, meta, root, rat, 0, &mut visited, &mut bits)?;
            if bits.windows(2).any(|w| w[0] >= w[1]) {
                return Err(problem(u64::from(root) * PAGE_SIZE, format!("bitmap {name:?} values out of order")));
            }
            if out.insert(name.clone(), bits).is_some() {
                return Err(problem(rat, format!("bitmap {name:?} named twice")));
            }
        }
        (pgno, at) = (next, base + 8);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Writer

/// A container of one bitmap: its key and values (low 16 bits), ascending.
struct Container {
    key: u64,
    values: Vec<u16>,
}

/// A leaf cell to be written.
#[derive(Clone, Copy)]
enum CellPlan {
    /// Array container `c` of bitmap `b`.
    Array { b: usize, c: usize },
    /// Bitmap container `c` of bitmap `b`, stored on page `page`.
    Bitmap { b: usize, c: usize, page: u32 },
    /// A freelist run `start..=last` inside container `key`.
    Run { key: u64, start: u16, last: u16 },
}

impl CellPlan {
    fn size(&self, bitmaps: &[Vec<Container>]) -> usize {
        match *self {
            CellPlan::Array { b, c } => CELL_HEADER + 2 * bitmaps[b][c].values.len(),
            CellPlan::Bitmap { .. } | CellPlan::Run { .. } => CELL_HEADER + 4,
        }
    }
    fn key(&self, bitmaps: &[Vec<Container>]) -> u64 {
        match *self {
            CellPlan::Array { b, c } | CellPlan::Bitmap { b, c, .. } => bitmaps[b][c].key,
            CellPlan::Run { key, .. } => key,
        }
    }
}

/// A page to be written, in page-number order.
enum PagePlan {
    RootRecords { names: Vec<(usize, u32)>, next: u32 },
    Leaf(Vec<CellPlan>),
    Branch(Vec<(u64, u32)>),
    Bitmap { b: usize, c: usize },
}

/// Groups cells into leaves (each within a page) and plans the tree top-down from page
/// `first`: root first, then each lower level, leaves last, so a reader streaming the file
/// meets every page after the page that points at it. Returns the root page and the pages.
fn plan_tree(cells: Vec<CellPlan>, bitmaps: &[Vec<Container>], first: u32) -> (u32, Vec<PagePlan>) {
    let mut leaves: Vec<Vec<CellPlan>> = vec![Vec::new()];
    let mut used = 0;
    for cell in cells {
        let size = align8(cell.size(bitmaps));
        let cur = leaves.last().map_or(0, Vec::len);
        // Stay strictly below a full page, as upstream does before it splits a leaf.
        if cur > 0 && data_offset(cur + 1) + used + size >= PS {
            leaves.push(Vec::new());
            used = 0;
        }
        used += size;
        if let Some(l) = leaves.last_mut() {
            l.push(cell);
        }
    }
    // Level sizes bottom-up: leaves, then branches of up to BRANCH_MAX children.
    let mut counts = vec![leaves.len()];
    let mut n = leaves.len();
    while n > 1 {
        n = n.div_ceil(BRANCH_MAX);
        counts.push(n);
    }
    // Page numbers top-down: level k (0 = leaves) starts after all levels above it.
    let mut starts = vec![0u32; counts.len()];
    let mut next = first;
    for k in (0..counts.len()).rev() {
        starts[k] = next;
        next += counts[k] as u32;
    }
    let leaf_keys: Vec<u64> = leaves.iter().map(|l| l.first().map_or(0, |c| c.key(bitmaps))).collect();
    let mut pages = Vec::new();
    let mut keys = leaf_keys;
    let mut levels: Vec<Vec<PagePlan>> = vec![leaves.into_iter().map(PagePlan::Leaf).collect()];
    for k in 1..counts.len() {
        let children: Vec<(u64, u32)> =
            keys.iter().enumerate().map(|(j, &key)| (key, starts[k - 1] + j as u32)).collect();
        let groups: Vec<Vec<(u64, u32)>> = children.chunks(BRANCH_MAX).map(<[_]>::to_vec).collect();
        keys = groups.iter().map(|g| g[0].0).collect();
        levels.push(groups.into_iter().map(PagePlan::Branch).collect());
    }
    for level in levels.into_iter().rev() {
        pages.extend(level);
    }
    (starts[counts.len() - 1], pages)
}

/// The freelist cells listing pages `start..end` as free: one run per 65536-page container.
fn free_runs(start: u64, end: u64) -> Vec<CellPlan> {
    let mut cells = Vec::new();
    let mut at = start;
    while at < end {
        let key = at >> 16;
        let last = end.min((key + 1) << 16) - 1;
        cells.push(CellPlan::Run { key, start: (at & 0xFFFF) as u16, last: (last & 0xFFFF) as u16 });
        at = last + 1;
    }
    cells
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Deterministic filler for padding pages: incompressible, so a padded file really costs
/// its size in an archive, and the same for the same page number.
fn fill_padding(page: &mut [u8], pgno: u64) {
    let mut x = pgno.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for chunk in page.chunks_exact_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes());
    }
    // Page number 0 and flags 0: never mistaken for a tree page.
    page[0..8].fill(0);
}

/// Writes a structurally real RBF file holding `bitmaps` (name → bit positions; any order,
/// duplicates ignored), at least `min_bytes` long, streaming one page at a time.
///
/// Layout: meta page; root record page(s) naming each bitmap in name order; the freelist
/// tree; then each bitmap's b-tree top-down (root, branches, leaves) followed by its bitmap
/// pages. Containers of at most 4000 values are array cells, denser ones bitmap cells
/// pointing at their own bitmap page. Same input, same bytes.
///
/// Padding: when `min_bytes` asks for more than the data needs, the extra pages are *free
/// pages* at the end of the file, listed in the freelist as run containers, and filled with
/// deterministic incompressible bytes. FeatureBase treats free pages as normal (its integrity
/// check requires every page to be in use or on the freelist, and it reuses or truncates
/// free pages on its next write). An extra bitmap was rejected: FeatureBase maps every root
/// record to a field and view of the index (`api.go` rebuilds fragments from the root record
/// names and dereferences the field without a nil check), so a bitmap for an unknown field
/// could crash it.
///
/// Bitmap names longer than fit one root record page (8180 bytes) are rejected; values must
/// be below 2^64 (any u64; containers are keyed by `value >> 16`).
/// Unsure: the WAL id is written as 0 (real files carry the count of WAL pages ever written;
/// upstream only uses it as a base for new WAL ids, so 0 is safe as far as the code shows).
pub fn write_shard<W: Write>(mut out: W, bitmaps: &BTreeMap<String, Vec<u64>>, min_bytes: u64) -> io::Result<u64> {
    // Containers per bitmap.
    let mut conts: Vec<Vec<Container>> = Vec::with_capacity(bitmaps.len());
    for (name, values) in bitmaps {
        if name.is_empty() || name.len() + 6 > PS - ROOT_RECORD_PAGE_HEADER {
            return Err(invalid(format!("bitmap name of {} bytes cannot be stored", name.len())));
        }
        let mut v = values.clone();
        v.sort_unstable();
        v.dedup();
        let mut cs: Vec<Container> = Vec::new();
        for x in v {
            match cs.last_mut() {
                Some(c) if c.key == x >> 16 => c.values.push(x as u16),
                _ => cs.push(Container { key: x >> 16, values: vec![x as u16] }),
            }
        }
        conts.push(cs);
    }

    // Root record pages.
    let mut rr_pages: Vec<Vec<usize>> = vec![Vec::new()];
    let mut used = ROOT_RECORD_PAGE_HEADER;
    for (b, name) in bitmaps.keys().enumerate() {
        if used + 6 + name.len() > PS {
            rr_pages.push(Vec::new());
            used = ROOT_RECORD_PAGE_HEADER;
        }
        used += 6 + name.len();
        if let Some(p) = rr_pages.last_mut() {
            p.push(b);
        }
    }
    let rr_first = 1u32;
    let rr_n = if bitmaps.is_empty() { 0 } else { rr_pages.len() as u32 };

    // Bitmap trees, after a provisional one-page freelist (fixed up below).
    let too_big = || invalid("RBF file would exceed 2^32 pages".to_string());
    let mut fl_pages_n = 1u64;
    loop {
        let mut next = u64::from(rr_first + rr_n) + fl_pages_n;
        let mut roots = Vec::new();
        let mut body: Vec<PagePlan> = Vec::new();
        for (b, cs) in conts.iter().enumerate() {
            let dense = cs.iter().filter(|c| c.values.len() > ARRAY_MAX).count() as u64;
            // Tree pages first (their count does not depend on page numbers), then bitmaps.
            let probe: Vec<CellPlan> = (0..cs.len())
                .map(|c| {
                    if cs[c].values.len() > ARRAY_MAX {
                        CellPlan::Bitmap { b, c, page: 0 }
                    } else {
                        CellPlan::Array { b, c }
                    }
                })
                .collect();
            let tree_n = plan_tree(probe, &conts, 0).1.len() as u64;
            let mut bp = next + tree_n;
            let cells: Vec<CellPlan> = (0..cs.len())
                .map(|c| {
                    if cs[c].values.len() > ARRAY_MAX {
                        bp += 1;
                        CellPlan::Bitmap { b, c, page: (bp - 1) as u32 }
                    } else {
                        CellPlan::Array { b, c }
                    }
                })
                .collect();
            let first = u32::try_from(next).map_err(|_| too_big())?;
            let (root, pages) = plan_tree(cells, &conts, first);
            roots.push(root);
            body.extend(pages);
            body.extend((0..cs.len()).filter(|&c| cs[c].values.len() > ARRAY_MAX).map(|c| PagePlan::Bitmap { b, c }));
            next += tree_n + dense;
        }
        let data_end = next;
        let page_n = data_end.max(min_bytes.div_ceil(PAGE_SIZE));
        let fl_first = u32::try_from(u64::from(rr_first + rr_n)).map_err(|_| too_big())?;
        let (fl_root, fl_pages) = plan_tree(free_runs(data_end, page_n), &conts, fl_first);
        if fl_pages.len() as u64 != fl_pages_n {
            fl_pages_n = fl_pages.len() as u64;
            continue; // the freelist needs more pages than assumed: plan again
        }
        let page_n32 = u32::try_from(page_n).map_err(|_| too_big())?;

        let mut page = vec![0u8; PS];
        let mut written = 0u64;
        // Meta.
        page[0..4].copy_from_slice(MAGIC);
        page[8..12].copy_from_slice(&page_n32.to_be_bytes());
        page[20..24].copy_from_slice(&(if rr_n == 0 { 0 } else { rr_first }).to_be_bytes());
        page[24..28].copy_from_slice(&fl_root.to_be_bytes());
        out.write_all(&page)?;
        written += PAGE_SIZE;

        let rr_plans = rr_pages.iter().enumerate().take(rr_n as usize).map(|(k, bs)| PagePlan::RootRecords {
            names: bs.iter().map(|&b| (b, roots[b])).collect(),
            next: if k + 1 < rr_n as usize { rr_first + k as u32 + 1 } else { 0 },
        });
        let names: Vec<&String> = bitmaps.keys().collect();
        // Plans come in page-number order starting at page 1.
        for (k, plan) in rr_plans.chain(fl_pages).chain(body).enumerate() {
            render(&plan, k as u32 + 1, &conts, &names, &mut page);
            out.write_all(&page)?;
            written += PAGE_SIZE;
        }
        for p in data_end..page_n {
            fill_padding(&mut page, p);
            out.write_all(&page)?;
            written += PAGE_SIZE;
        }
        return Ok(written);
    }
}

fn render(plan: &PagePlan, pgno: u32, conts: &[Vec<Container>], names: &[&String], page: &mut [u8]) {
    page.fill(0);
    let header = |page: &mut [u8], flags: u32| {
        page[0..4].copy_from_slice(&pgno.to_be_bytes());
        page[4..8].copy_from_slice(&flags.to_be_bytes());
    };
    match plan {
        PagePlan::RootRecords { names: recs, next } => {
            header(page, TYPE_ROOT_RECORD);
            page[8..12].copy_from_slice(&next.to_be_bytes());
            let mut at = ROOT_RECORD_PAGE_HEADER;
            for &(b, root) in recs {
                let name = names[b].as_bytes();
                page[at..at + 4].copy_from_slice(&root.to_be_bytes());
                page[at + 4..at + 6].copy_from_slice(&(name.len() as u16).to_be_bytes());
                page[at + 6..at + 6 + name.len()].copy_from_slice(name);
                at += 6 + name.len();
            }
        }
        PagePlan::Leaf(cells) => {
            header(page, TYPE_LEAF);
            page[8..10].copy_from_slice(&(cells.len() as u16).to_be_bytes());
            let mut at = data_offset(cells.len());
            for (i, cell) in cells.iter().enumerate() {
                page[10 + 2 * i..12 + 2 * i].copy_from_slice(&(at as u16).to_be_bytes());
                page[at..at + 8].copy_from_slice(&cell.key(conts).to_le_bytes());
                let d = at + CELL_HEADER;
                let (kind, elem_n, bit_n) = match *cell {
                    CellPlan::Array { b, c } => {
                        let vs = &conts[b][c].values;
                        for (j, v) in vs.iter().enumerate() {
                            page[d + 2 * j..d + 2 * j + 2].copy_from_slice(&v.to_le_bytes());
                        }
                        (CT_ARRAY, vs.len(), vs.len())
                    }
                    CellPlan::Bitmap { b, c, page: bp } => {
                        page[d..d + 4].copy_from_slice(&bp.to_le_bytes());
                        (CT_BITMAP_PTR, 0, conts[b][c].values.len())
                    }
                    CellPlan::Run { start, last, .. } => {
                        page[d..d + 2].copy_from_slice(&start.to_le_bytes());
                        page[d + 2..d + 4].copy_from_slice(&last.to_le_bytes());
                        (CT_RLE, 1, usize::from(last - start) + 1)
                    }
                };
                page[at + 8..at + 12].copy_from_slice(&kind.to_le_bytes());
                page[at + 12..at + 14].copy_from_slice(&(elem_n as u16).to_le_bytes());
                page[at + 14..at + 18].copy_from_slice(&(bit_n as u32).to_le_bytes());
                at += align8(cell.size(conts));
            }
        }
        PagePlan::Branch(cells) => {
            header(page, TYPE_BRANCH);
            page[8..10].copy_from_slice(&(cells.len() as u16).to_be_bytes());
            let mut at = data_offset(cells.len());
            for (i, &(key, child)) in cells.iter().enumerate() {
                page[10 + 2 * i..12 + 2 * i].copy_from_slice(&(at as u16).to_be_bytes());
                page[at..at + 8].copy_from_slice(&key.to_le_bytes());
                page[at + 12..at + 16].copy_from_slice(&child.to_le_bytes());
                at += BRANCH_CELL;
            }
        }
        PagePlan::Bitmap { b, c } => {
            for &v in &conts[*b][*c].values {
                let w = usize::from(v / 64) * 8;
                let word = le64(page, w) | 1 << (v % 64);
                page[w..w + 8].copy_from_slice(&word.to_le_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn write(b: &BTreeMap<String, Vec<u64>>, min: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let n = write_shard(&mut out, b, min).expect("write");
        assert_eq!(n, out.len() as u64);
        out
    }

    fn check(data: &[u8], chunk: usize) -> Result<(), FormatProblem> {
        let mut c = Box::new(RbfChecker::default());
        for part in data.chunks(chunk.max(1)) {
            c.update(part);
        }
        c.finish()
    }

    fn normalized(b: &BTreeMap<String, Vec<u64>>) -> BTreeMap<String, Vec<u64>> {
        b.iter()
            .map(|(k, v)| {
                let mut v = v.clone();
                v.sort_unstable();
                v.dedup();
                (k.clone(), v)
            })
            .collect()
    }

    #[test]
    fn fragment_key_matches_upstream_naming() {
        assert_eq!(fragment_key("f", "standard"), "~f;standard<");
        assert_eq!(fragment_key("ts", "standard_2023"), "~ts;standard_2023<");
    }

    #[test]
    fn empty_shard_is_meta_root_records_and_freelist() {
        let data = write(&BTreeMap::new(), 0);
        assert_eq!(data.len() as u64, 2 * PAGE_SIZE);
        assert_eq!(read_bitmaps(&data), Ok(BTreeMap::new()));
        check(&data, 8192).expect("check");
    }

    #[test]
    fn sparse_dense_and_many_containers_round_trip() {
        let mut b = BTreeMap::new();
        b.insert(fragment_key("f", "standard"), vec![100, 200, 65536 + 10, 5 << 16]);
        b.insert(fragment_key("g", "standard"), (0..20_000u64).map(|i| (2 << 16) + i * 3).collect());
        // Enough containers for branch pages above the leaves.
        b.insert(fragment_key("h", "standard"), (0..300_000u64).map(|i| i * 70_001).collect());
        let data = write(&b, 0);
        assert_eq!(read_bitmaps(&data), Ok(normalized(&b)));
        check(&data, 8192).expect("check");
        check(&data, 1000).expect("check");
        assert_eq!(declared_len(&data[..4096]), Ok(data.len() as u64));
        assert_eq!(data, write(&b, 0));
    }

    #[test]
    fn padding_is_free_pages_on_the_freelist() {
        let mut b = BTreeMap::new();
        b.insert(fragment_key("f", "standard"), vec![1, 2, 3]);
        let min = 3 * 65536 * PAGE_SIZE + 12345; // spans several freelist containers
        let mut c = Box::new(RbfChecker::default());
        let mut sink = CheckerSink(&mut c, 0);
        let n = write_shard(&mut sink, &b, min).expect("write");
        assert_eq!(n, min.div_ceil(PAGE_SIZE) * PAGE_SIZE);
        assert_eq!(sink.1, n);
        c.finish().expect("check");
        let small = write(&b, 40 * PAGE_SIZE);
        assert_eq!(small.len() as u64, 40 * PAGE_SIZE);
        assert_eq!(read_bitmaps(&small), Ok(normalized(&b)));
    }

    struct CheckerSink<'a>(&'a mut Box<RbfChecker>, u64);

    impl Write for CheckerSink<'_> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.update(buf);
            self.1 += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn checker_reports_length_and_structure_problems() {
        let mut b = BTreeMap::new();
        b.insert(fragment_key("f", "standard"), vec![1, 2, 3]);
        let data = write(&b, 0);
        let short = &data[..data.len() - 100];
        assert_eq!(check(short, 8192).map_err(|p| p.offset), Err(short.len() as u64));
        let mut long = data.clone();
        long.extend_from_slice(&[1; 5]);
        assert_eq!(check(&long, 8192).map_err(|p| p.offset), Err(data.len() as u64));
        let mut bad = data.clone();
        bad[0] = 0;
        assert_eq!(check(&bad, 8192).map_err(|p| p.offset), Err(0));
        assert_eq!(declared_len(&bad).map_err(|p| p.offset), Err(0));
        let mut bad = data.clone();
        bad[3 * PS + 3] ^= 1; // tree root's page number
        assert_eq!(check(&bad, 8192).map_err(|p| p.offset), Err(3 * PAGE_SIZE));
        let mut bad = data.clone();
        bad[3 * PS + 16 + 8] = 9; // container type of the first cell
        assert!(check(&bad, 8192).is_err());
        assert!(read_bitmaps(&bad).is_err());
    }

    #[test]
    fn declared_len_problems() {
        assert!(declared_len(b"\xFFRBF").is_err());
        let mut meta = vec![0u8; 28];
        meta[0..4].copy_from_slice(MAGIC);
        assert_eq!(declared_len(&meta).map_err(|p| p.offset), Err(8));
    }

    fn bitmaps() -> impl Strategy<Value = BTreeMap<String, Vec<u64>>> {
        let values = prop_oneof![
            prop::collection::vec(0u64..300_000, 0..200),
            (0u64..4, 4001usize..6000).prop_map(|(k, n)| (0..n as u64).map(|i| (k << 16) + i * 7 % 65536).collect()),
            prop::collection::vec(any::<u64>(), 0..50),
        ];
        prop::collection::btree_map("[a-z]{1,8}", values, 0..4)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn round_trip(b in bitmaps(), pad in 0u64..40) {
            let data = write(&b, pad * PAGE_SIZE);
            prop_assert_eq!(read_bitmaps(&data), Ok(normalized(&b)));
            prop_assert_eq!(check(&data, 4000), Ok(()));
        }

        #[test]
        fn garbled_input_never_panics(b in bitmaps(), flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..20), cut in any::<usize>()) {
            let mut data = write(&b, 0);
            for (at, x) in flips {
                let n = data.len();
                data[at % n] ^= x;
            }
            data.truncate(cut % (data.len() + 1));
            let _ = read_bitmaps(&data);
            let _ = check(&data, 3000);
            let _ = declared_len(&data);
        }

        #[test]
        fn random_bytes_never_panic(mut data in prop::collection::vec(any::<u8>(), 0..40000), magic in any::<bool>()) {
            if magic && data.len() >= 28 {
                data[0..4].copy_from_slice(MAGIC);
                let pages = (data.len() / PS) as u32;
                data[8..12].copy_from_slice(&pages.to_be_bytes());
            }
            let _ = read_bitmaps(&data);
            let _ = check(&data, 5000);
            let _ = declared_len(&data);
        }
    }
}
