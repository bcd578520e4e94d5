//! The census on dense data. The demo cluster's shards are padded with free pages, which the
//! census never reads, so they would flatter it; this archive's shards are full of
//! containers the census must decode: rows of bitmap containers in a set field, a value
//! field with a value in every column (22 bit planes, negatives included), and the
//! existence row. Written with fb-core's RBF writer into an fbkit archive (schema, shards,
//! MANIFEST.json computed by fb-manifest), deterministic for a given size.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{ensure, Context, Result};
use fb_core::archive::TarWriter;
use fb_core::format::rbf;

/// Columns per shard.
const WIDTH: u64 = 1 << 20;
/// Set rows per shard: each row is 16 bitmap containers (a bit in every 8th column).
const ROWS: u64 = 48;
/// Bits of each value's magnitude.
const VALUE_BITS: u32 = 20;

/// The bitmaps of shard `s`: existence, the set field `tag`, the int field `n`.
fn shard_bitmaps(s: u64) -> BTreeMap<String, Vec<u64>> {
    let mut b: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    b.insert(rbf::fragment_key("_exists", "standard"), (0..WIDTH).collect());
    let tag = b.entry(rbf::fragment_key("tag", "standard")).or_default();
    for row in 0..ROWS {
        let phase = (row + s) % 8;
        tag.extend((phase..WIDTH).step_by(8).map(|c| row * WIDTH + c));
    }
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ s;
    let n = b.entry(rbf::fragment_key("n", "bsig_n")).or_default();
    for c in 0..WIDTH {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let magnitude = x & ((1 << VALUE_BITS) - 1);
        n.push(c); // exists
        if x >> 63 == 1 {
            n.push(WIDTH + c); // negative
        }
        for k in 0..VALUE_BITS {
            if magnitude >> k & 1 == 1 {
                n.push((2 + u64::from(k)) * WIDTH + c);
            }
        }
    }
    b
}

const SCHEMA: &str = r#"{"indexes":[{"name":"dense","options":{"keys":false,"trackExistence":true},"fields":[{"name":"n","options":{"type":"int","base":0,"bitDepth":20,"min":-1048576,"max":1048576,"keys":false,"foreignIndex":""}},{"name":"tag","options":{"type":"set","cacheType":"none","cacheSize":0,"keys":false}}],"shardWidth":1048576}]}"#;

/// Set (to `DIR,SHARDS,FB-MANIFEST`) in the environment of the child process that writes the
/// dense archive: generating it takes a few hundred MiB, and a child started later by the
/// bench would report that peak as its own (Linux carries the spawning process's peak RSS
/// into the child's `ru_maxrss` through `vfork` + `exec`), so the bench itself never holds it.
pub const GENERATE_ENV: &str = "FBKIT_BENCH_WRITE_DENSE";

/// Write the dense archive with `shards` shards into `dir` in a child process (`xtask`,
/// the release build of this executable in `bin`, beside the tools: the RBF writer runs
/// optimised; `bench`, with [`GENERATE_ENV`] set); returns its path and size.
pub fn dense_archive(dir: &Path, shards: u64, bin: &Path) -> Result<(PathBuf, u64)> {
    let fb_manifest = bin.join("fb-manifest");
    let job = format!("{},{shards},{}", dir.display(), fb_manifest.display());
    let status = Command::new(bin.join("xtask"))
        .arg("bench")
        .env(GENERATE_ENV, job)
        .status()
        .context("starting the dense archive writer")?;
    ensure!(status.success(), "writing the dense archive failed ({status})");
    let archive = dir.join("dense.tar");
    Ok((archive.clone(), fs::metadata(&archive)?.len()))
}

/// The child's side of [`dense_archive`]: `job` is `DIR,SHARDS,FB-MANIFEST`.
pub fn generate_here(job: &std::ffi::OsStr) -> Result<()> {
    let job = job.to_str().context("the dense archive job is not UTF-8")?;
    let mut parts = job.splitn(3, ',');
    let (Some(dir), Some(shards), Some(fb_manifest)) = (parts.next(), parts.next(), parts.next()) else {
        anyhow::bail!("bad dense archive job {job:?}");
    };
    write_dense(Path::new(dir), shards.parse()?, Path::new(fb_manifest)).map(drop)
}

/// Write the dense archive with `shards` shards into `dir`; returns its path and size.
fn write_dense(dir: &Path, shards: u64, fb_manifest: &Path) -> Result<(PathBuf, u64)> {
    let body = dir.join("dense-body.tar");
    let mut files: Vec<(String, PathBuf)> = vec![("schema".into(), dir.join("dense-schema"))];
    fs::write(&files[0].1, SCHEMA)?;
    for s in 0..shards {
        let path = dir.join(format!("dense-shard-{s}"));
        let mut w = BufWriter::with_capacity(1 << 20, File::create(&path)?);
        rbf::write_shard(&mut w, &shard_bitmaps(s), 0)?;
        w.flush()?;
        files.push((format!("indexes/dense/shards/{s:04}"), path));
    }
    // The entries, then their manifest as the last entry (as fb-export writes it).
    let write = |out: &Path, manifest: Option<&[u8]>| -> Result<u64> {
        let mut tar = TarWriter::new(BufWriter::with_capacity(1 << 20, File::create(out)?), 0);
        for (name, path) in &files {
            tar.append(name, &fs::read(path)?)?;
        }
        if let Some(m) = manifest {
            tar.append("MANIFEST.json", m)?;
        }
        let mut w = tar.finish()?;
        w.flush()?;
        Ok(fs::metadata(out)?.len())
    };
    write(&body, None)?;
    let out = Command::new(fb_manifest)
        .arg(&body)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", fb_manifest.display()))?;
    ensure!(out.status.success(), "fb-manifest of the dense archive failed");
    let archive = dir.join("dense.tar");
    let size = write(&archive, Some(&out.stdout))?;
    fs::remove_file(&body)?;
    for (_, path) in files {
        fs::remove_file(path)?;
    }
    Ok((archive, size))
}
