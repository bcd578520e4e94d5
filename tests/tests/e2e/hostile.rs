//! Damaged streams and hostile archives. Every reader (fb-verify, fb-manifest,
//! fb-import) detects every cut and every flipped bit, and refuses archives built to escape
//! the target or exhaust memory (exit 65) before it writes or sends anything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fb_core::layout::EntryPath;
use fb_core::manifest::{Manifest, ManifestEntry};
use fbkit_tests::*;
use sha2::{Digest, Sha256};

// ---- stream damage ----

struct Tally {
    case: String,
    tries: u32,
    detected: u32,
    wrong_success: u32,
    other: Vec<String>,
}

/// The readers of streams, as argument lists (the stream comes on stdin).
const READERS: [(&str, &[&str]); 3] =
    [("fb-verify", &["-q", "-"]), ("fb-manifest", &["-"]), ("fb-import", &["--dry-run", "-q", "-s", "-"])];

/// Byte offsets of the tar metadata (entry headers and the end-of-archive marker): few
/// enough that uniform flips would almost never hit them, so every other flip lands here.
fn metadata_offsets(archive: &[u8]) -> Vec<usize> {
    let mut a = tar::Archive::new(archive);
    let mut out: Vec<usize> = a
        .entries()
        .unwrap()
        .flat_map(|e| {
            let at = e.unwrap().raw_header_position() as usize;
            at..at + 512
        })
        .collect();
    out.extend(archive.len() - 1024..archive.len());
    out
}

fn damage(archive: &[u8], tries: u32, seed: u64) -> Vec<Tally> {
    let meta = metadata_offsets(archive);
    let mut tallies = Vec::new();
    for (tool, args) in READERS {
        for flips in [false, true] {
            let mut rng = Rng(seed);
            let mut t = Tally {
                case: format!("{tool} {}", if flips { "bit flip" } else { "truncation" }),
                tries,
                detected: 0,
                wrong_success: 0,
                other: Vec::new(),
            };
            for i in 0..tries {
                let (input, what) = if flips {
                    let at = if i % 2 == 0 {
                        rng.below(archive.len() as u64) as usize
                    } else {
                        meta[rng.below(meta.len() as u64) as usize]
                    };
                    let bit = rng.below(8);
                    let mut d = archive.to_vec();
                    d[at] ^= 1 << bit;
                    (d, format!("flip of bit {bit} at {at}"))
                } else {
                    let cut = rng.below(archive.len() as u64) as usize;
                    (archive[..cut].to_vec(), format!("cut at {cut}"))
                };
                let out = run(tool, args, Some(&input));
                let ok = if flips { matches!(code(&out), 1 | 65 | 66) } else { matches!(code(&out), 65 | 66) };
                if ok {
                    t.detected += 1;
                } else {
                    if code(&out) == 0 {
                        t.wrong_success += 1;
                    }
                    t.other.push(format!("{what}: exit {} {}", code(&out), stderr(&out).trim()));
                }
            }
            tallies.push(t);
        }
    }
    tallies
}

fn damage_table(tries: u32) {
    let c = demo(2, 1);
    let archive = export(&c.urls()[0], &[]);
    let tallies = damage(&archive, tries, 0x5eed_0007);
    println!("archive of {} bytes", archive.len());
    println!("{:<28} {:>6} {:>9} {:>14}", "case", "tries", "detected", "wrong-success");
    for t in &tallies {
        println!("{:<28} {:>6} {:>9} {:>14}", t.case, t.tries, t.detected, t.wrong_success);
    }
    for t in &tallies {
        assert!(t.other.is_empty(), "{}: {} of {} undetected:\n{}", t.case, t.other.len(), t.tries, t.other.join("\n"));
    }
}

#[test]
fn every_cut_and_every_flip_is_detected_by_every_reader() {
    // FBKIT_LONG=1: the full 200 of each (also `cargo test -- --ignored` below).
    let tries = if std::env::var("FBKIT_LONG").is_ok_and(|v| v == "1") { 200 } else { 30 };
    damage_table(tries);
}

#[test]
#[ignore = "long: 1200 runs; also run by FBKIT_LONG=1"]
fn every_cut_and_every_flip_is_detected_by_every_reader_long() {
    damage_table(200);
}

// ---- hostile archives, written byte by byte ----

/// One raw ustar header. `size` goes in as octal when it fits, else GNU base-256.
fn header(name: &[u8], size: u64, typeflag: u8, link: &[u8]) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name);
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    if size < 0o77777777777 {
        h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    } else {
        h[124] = 0x80;
        h[128..136].copy_from_slice(&size.to_be_bytes());
    }
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = typeflag;
    h[157..157 + link.len()].copy_from_slice(link);
    h[257..265].copy_from_slice(b"ustar\x0000");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

/// One PAX record, `LEN key=value\n`, its length counting itself.
fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let body = key.len() + value.len() + 3;
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    format!("{len} {key}={value}\n").into_bytes()
}

/// Raw archive builder.
#[derive(Default, Clone)]
struct Raw(Vec<u8>);

impl Raw {
    fn entry(mut self, name: &[u8], typeflag: u8, link: &[u8], data: &[u8]) -> Self {
        self.0.extend_from_slice(&header(name, data.len() as u64, typeflag, link));
        self.data(data)
    }
    fn file(self, name: &str, data: &[u8]) -> Self {
        self.entry(name.as_bytes(), b'0', b"", data)
    }
    /// Data plus its padding to the next block.
    fn data(mut self, data: &[u8]) -> Self {
        self.0.extend_from_slice(data);
        self.0.resize(self.0.len().div_ceil(512) * 512, 0);
        self
    }
    fn pax(self, records: &[u8]) -> Self {
        self.entry(b"PaxHeader/x", b'x', b"", records)
    }
    fn end(mut self) -> Vec<u8> {
        self.0.extend_from_slice(&[0u8; 1024]);
        self.0
    }
}

const SCHEMA: &[u8] = br#"{"indexes":[{"name":"i","options":{"keys":false,"trackExistence":true},"fields":[{"name":"f","options":{"type":"set","keys":false}}]}]}"#;

fn shard_file() -> Vec<u8> {
    let mut bits = BTreeMap::new();
    bits.insert(fb_core::format::rbf::fragment_key("f", "standard"), vec![1u64, 5, 77]);
    let mut rbf = Vec::new();
    fb_core::format::rbf::write_shard(&mut rbf, &bits, 0).unwrap();
    rbf
}

/// A valid start: schema and one shard, so that a reader that sends as it goes would have
/// sent something before it meets the hostile entry.
fn valid_start() -> Raw {
    Raw::default().file("schema", SCHEMA).file("indexes/i/shards/0000", &shard_file())
}

/// An archive of `files` whose MANIFEST.json lists `listed` (self-consistent digests).
fn with_manifest(files: &[(&str, Vec<u8>)], listed: Vec<ManifestEntry>, version: Option<u64>) -> Vec<u8> {
    let mut m = Manifest::new(serde_json::Map::new(), listed);
    if let Some(v) = version {
        m.version = v;
    }
    let mut raw = Raw::default();
    for (n, d) in files {
        raw = raw.file(n, d);
    }
    raw.file("MANIFEST.json", &m.to_bytes()).end()
}

fn entry_for(path: &str, data: &[u8]) -> ManifestEntry {
    ManifestEntry::new(&EntryPath::parse(path).unwrap(), data.len() as u64, &Sha256::digest(data).into())
}

fn hostile_cases() -> Vec<(&'static str, Vec<u8>)> {
    let rbf = shard_file();
    let tib = 1u64 << 40;
    let mut cases = vec![
        ("dot-dot name", valid_start().file("../../../tmp/fbkit-escape", b"x").end()),
        ("dot-dot inside the layout", valid_start().file("indexes/i/shards/../../../../x", b"x").end()),
        ("absolute name", valid_start().file("/tmp/fbkit-escape", b"x").end()),
        ("symlink", valid_start().entry(b"indexes/i/shards/0001", b'2', b"/etc/passwd", b"").end()),
        ("hardlink", valid_start().entry(b"indexes/i/shards/0001", b'1', b"schema", b"").end()),
        ("char device", valid_start().entry(b"indexes/i/shards/0001", b'3', b"", b"").end()),
        ("block device", valid_start().entry(b"indexes/i/shards/0001", b'4', b"", b"").end()),
        ("fifo", valid_start().entry(b"indexes/i/shards/0001", b'6', b"", b"").end()),
        ("duplicate name", valid_start().file("indexes/i/shards/0000", &rbf).end()),
        ("non-UTF-8 name", valid_start().file_bytes(b"indexes/\xff\xfe/shards/0001", &rbf).end()),
        ("PAX path with dot-dot", valid_start().pax(&pax_record("path", "../../etc/passwd")).file("x", b"x").end()),
        ("PAX path that is absolute", valid_start().pax(&pax_record("path", "/etc/passwd")).file("x", b"x").end()),
        ("PAX link target", valid_start().pax(&pax_record("linkpath", "/etc/passwd")).file("x", b"x").end()),
        ("PAX header of 1 TiB", {
            let mut r = valid_start();
            r.0.extend_from_slice(&header(b"PaxHeader/x", tib, b'x', b""));
            r.data(&[b'9'; 4096]).0
        }),
        ("PAX record claiming a huge length", valid_start().pax(b"99999999999999999999 path=x\n").file("x", b"").end()),
        ("PAX size of 1 TiB on a shard", {
            let r = valid_start().pax(&pax_record("size", &tib.to_string()));
            let mut r = Raw(r.0);
            r.0.extend_from_slice(&header(b"indexes/i/shards/0001", 0, b'0', b""));
            r.data(&rbf).0
        }),
        ("shard header claiming 1 TiB", {
            let mut r = valid_start();
            r.0.extend_from_slice(&header(b"indexes/i/shards/0001", tib, b'0', b""));
            r.data(&rbf).0
        }),
        ("MANIFEST.json claiming 1 TiB", {
            let mut r = valid_start();
            r.0.extend_from_slice(&header(b"MANIFEST.json", tib, b'0', b""));
            r.data(&[b'{'; 8192]).0
        }),
    ];
    let files = vec![("schema", SCHEMA.to_vec()), ("indexes/i/shards/0000", rbf.clone())];
    let mut outside: Vec<ManifestEntry> = files.iter().map(|(n, d)| entry_for(n, d)).collect();
    for evil in ["../../etc/passwd", "/etc/passwd", "indexes/i/shards/0000/../../../../etc/passwd"] {
        let mut e = outside[1].clone();
        e.path = evil.into();
        outside.push(e);
    }
    cases.push(("manifest listing paths outside the archive", with_manifest(&files, outside, None)));
    let listed = files.iter().map(|(n, d)| entry_for(n, d)).collect();
    cases.push(("manifest of an unknown version", with_manifest(&files, listed, Some(2))));
    cases
}

impl Raw {
    fn file_bytes(self, name: &[u8], data: &[u8]) -> Self {
        self.entry(name, b'0', b"", data)
    }
}

/// Every directory (empty content) and file (its bytes) under `dir`.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    walk(dir)
        .into_iter()
        .map(|p| {
            let bytes = if p.is_dir() { Vec::new() } else { std::fs::read(&p).unwrap_or_default() };
            (p, bytes)
        })
        .collect()
}

#[test]
fn hostile_archives_are_refused_65_before_anything_is_written_or_sent() {
    let target = empty(2, 1);
    let url = target.urls()[0].clone();
    let pristine = tree(target.data_dir());
    let dir = tempfile::tempdir().unwrap();
    for (i, (case, bytes)) in hostile_cases().into_iter().enumerate() {
        let file = format!("h{i}.tar");
        std::fs::write(dir.path().join(&file), &bytes).unwrap();
        // A 1 GB address-space limit: a reader that trusts a size for allocation dies.
        let limited = |cmd: &str| sh(&format!("ulimit -v 1000000; {cmd}"), dir.path());
        for cmd in [
            format!("fb-verify -q {file}"),
            format!("fb-verify -q - < {file}"),
            format!("fb-manifest - < {file} > /dev/null"),
            format!("fb-import --dry-run -q < {file}"),
            format!("fb-import --host {url} -q -s {file}"),
        ] {
            let out = limited(&cmd);
            // A size claim the stream does not honour may also be reported as what it is
            // once read: a stream that ends early (66).
            let expected: &[i32] =
                if case.starts_with("shard header") || case.starts_with("PAX size") { &[65, 66] } else { &[65] };
            assert!(expected.contains(&code(&out)), "{case}: `{cmd}`: exit {}: {}", code(&out), stderr(&out));
            assert!(!stderr(&out).contains("panicked"), "{case}: {}", stderr(&out));
        }
        // Nothing reached the target cluster: no schema, no file.
        assert!(tree(target.data_dir()) == pristine, "{case}: the target cluster changed");
        let schema = sh(&format!("curl -sf -H 'Accept: application/json' {url}/schema"), dir.path());
        let v: serde_json::Value = serde_json::from_slice(&schema.stdout).unwrap();
        assert!(v["indexes"].as_array().is_none_or(|a| a.is_empty()), "{case}: {v}");
        // Nothing was written beside the archive either (no extracted names, no escapes).
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), i + 1, "{case}: files appeared");
    }
    assert!(!Path::new("/tmp/fbkit-escape").exists());
}

#[test]
fn hostile_entry_from_a_pipe_stops_the_import_and_says_what_was_sent() {
    let target = empty(1, 1);
    let (_, bytes) = hostile_cases().into_iter().find(|(c, _)| *c == "dot-dot name").unwrap();
    let out = run("fb-import", &["--host", &target.urls()[0], "-q"], Some(&bytes));
    assert_eq!(code(&out), 65, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("../../../tmp/fbkit-escape"), "names the entry: {err}");
    assert!(err.contains("INCOMPLETE RESTORE") || err.contains("nothing was sent"), "says what was sent: {err}");
    // A hostile first entry: nothing at all reaches the cluster.
    let first = Raw::default().file("../evil", b"x").end();
    let dst = empty(1, 1);
    let before = tree(dst.data_dir());
    let out = run("fb-import", &["--host", &dst.urls()[0], "-q"], Some(&first));
    assert_eq!(code(&out), 65, "{}", stderr(&out));
    assert!(stderr(&out).contains("nothing was sent"), "{}", stderr(&out));
    assert!(tree(dst.data_dir()) == before);
}
