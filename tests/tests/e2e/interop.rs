//! Issue 10: interoperability with real FeatureBase.
//!
//! Always run: our readers and checkers on files that a real FeatureBase wrote
//! (`tests/fixtures/featurebase-<version>/`: a `featurebase backup` directory and a
//! `featurebase backuptar` file of the same idle cluster; see the README there).
//!
//! With `FEATUREBASE_BIN` set to a `featurebase` binary (skipped with a message otherwise):
//! real clusters on loopback. A 3-node cluster with replicas 2 loaded by fb-import; its
//! fb-export against `featurebase backuptar` and `featurebase backup` of the same idle
//! cluster; upstream's `restore` (extracted) and `restoretar` of the fb-export stream, and
//! fb-import of upstream's backups, into 1-node clusters; `fb-manifest diff` by bytes and by
//! content after a real round trip. Run with `--nocapture` to see the query answers and the
//! byte differences. (Authentication is not tried against the real binary: see below.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use fbkit_tests::*;

/// `git describe --tags` of the upstream source the fixture binary was built from.
const UPSTREAM: &str = "v3.35.0-23-g6222e9eb5";

/// What upstream saves as a dataframe file for every shard when dataframes are off (the
/// default): the body of its 400 answer.
const DATAFRAME_DISABLED: &[u8] = b"Dataframe is disabled\n";

pub(crate) fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(format!("featurebase-{UPSTREAM}"))
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// fb-manifest of a source, as JSON, asserting success.
fn manifest_json(source: &Path) -> serde_json::Value {
    let out = run("fb-manifest", &[path_str(source)], None);
    assert_eq!(code(&out), 0, "fb-manifest {}: {}", source.display(), stderr(&out));
    serde_json::from_slice(&out.stdout).expect("manifest JSON")
}

/// Paths of the manifest entries, in order.
fn entry_paths(m: &serde_json::Value) -> Vec<String> {
    m["entries"].as_array().expect("entries").iter().map(|e| e["path"].as_str().unwrap().to_string()).collect()
}

/// fb-verify --deep --json of `source` against `manifest`; the exit code and the entries
/// whose status is not ok, as (path, status, detail).
fn deep_verify(source: &Path, manifest: &Path) -> (i32, Vec<(String, String, String)>, String) {
    let out = run("fb-verify", &["--deep", "--json", "--manifest", path_str(manifest), path_str(source)], None);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("fb-verify --json report: {e}; stderr: {}", stderr(&out)));
    let bad = report["entries"]
        .as_array()
        .expect("report entries")
        .iter()
        .filter(|e| e["status"] != "ok")
        .map(|e| {
            (
                e["path"].as_str().unwrap_or("").to_string(),
                e["status"].as_str().unwrap_or("").to_string(),
                e["detail"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    (code(&out), bad, stderr(&out))
}

/// Write the manifest of `source` to `dir/name` and return its path.
fn write_manifest(source: &Path, dir: &Path, name: &str) -> PathBuf {
    let out = run("fb-manifest", &[path_str(source)], None);
    assert_eq!(code(&out), 0, "fb-manifest {}: {}", source.display(), stderr(&out));
    let p = dir.join(name);
    std::fs::write(&p, &out.stdout).unwrap();
    p
}

// ---- always run: real upstream files ----

#[test]
fn fixture_has_every_kind_of_file() {
    let m = manifest_json(&fixture().join("backup"));
    let kinds: BTreeMap<String, usize> = m["entries"].as_array().unwrap().iter().fold(BTreeMap::new(), |mut acc, e| {
        *acc.entry(e["kind"].as_str().unwrap().to_string()).or_default() += 1;
        acc
    });
    for kind in ["schema", "idalloc", "shard", "index-keys", "field-keys"] {
        assert!(kinds.get(kind).copied().unwrap_or(0) > 0, "the fixture has a {kind} entry: {kinds:?}");
    }
    let paths = entry_paths(&m);
    let shards = |index: &str| paths.iter().filter(|p| p.starts_with(&format!("indexes/{index}/shards/"))).count();
    assert!(shards("events") >= 4 && shards("users") >= 4, "at least 4 shards per index: {paths:?}");
    assert_eq!(kinds["index-keys"], 256, "a keyed index has 256 key partitions");
}

#[test]
fn real_backup_directory_passes_deep_verification() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fixture().join("backup");
    let m = write_manifest(&dir, tmp.path(), "m.json");
    let (status, bad, err) = deep_verify(&dir, &m);
    assert_eq!((status, &bad), (0, &vec![]), "fb-verify --deep of upstream's backup directory: {err}");
}

#[test]
fn real_backuptar_passes_deep_verification() {
    let tmp = tempfile::tempdir().unwrap();
    let tar = fixture().join("backup.tar");
    // A backuptar stream has no MANIFEST.json: fb-verify alone says it is incomplete.
    let out = run("fb-verify", &[path_str(&tar)], None);
    assert_eq!(code(&out), 66, "no manifest in a backuptar stream: {}", stderr(&out));
    let m = write_manifest(&tar, tmp.path(), "m.json");
    let (status, bad, err) = deep_verify(&tar, &m);
    assert_eq!((status, &bad), (0, &vec![]), "fb-verify --deep of upstream's backuptar: {err}");
}

#[test]
fn real_directory_and_backuptar_have_the_same_entries() {
    let fx = fixture();
    let out = run("fb-manifest", &["diff", path_str(&fx.join("backup")), path_str(&fx.join("backup.tar"))], None);
    assert_eq!(code(&out), 0, "{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    // Same entries (path, kind, size, SHA-256). The order differs: a directory is listed in
    // fbkit's archive order (idalloc after the data), a stream in its own order (upstream
    // puts idalloc second).
    let by_path = |m: &serde_json::Value| -> BTreeMap<String, String> {
        m["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["path"].as_str().unwrap().to_string(), e.to_string()))
            .collect()
    };
    let d = manifest_json(&fx.join("backup"));
    let t = manifest_json(&fx.join("backup.tar"));
    let (dm, tm) = (by_path(&d), by_path(&t));
    assert_eq!(dm.len(), tm.len(), "entry counts");
    for (path, e) in &dm {
        assert_eq!(Some(e), tm.get(path), "{path}");
    }
    let dp = entry_paths(&d);
    assert_eq!(dp.last().map(String::as_str), Some("idalloc"), "directory manifest: idalloc last");
    assert_eq!(entry_paths(&t)[1], "idalloc", "backuptar manifest: idalloc second, as in the stream");
    // Upstream's junk dataframes are there: one per shard, each the 22-byte text of its 400
    // answer.
    let tar = std::fs::read(fx.join("backup.tar")).unwrap();
    let entries = tar_entries(&tar);
    let shards = entries.iter().filter(|(n, _)| n.contains("/shards/")).count();
    let junk: Vec<&String> = entries.iter().filter(|(n, _)| n.contains("/dataframe/")).map(|(n, _)| n).collect();
    assert_eq!(junk.len(), shards, "upstream writes a dataframe entry per shard: {junk:?}");
    for (name, data) in entries.iter().filter(|(n, _)| n.contains("/dataframe/")) {
        assert_eq!(data.as_slice(), DATAFRAME_DISABLED, "{name}");
    }
    // backuptar's order: schema, idalloc, then per index shards (each followed by its
    // dataframe), key partitions, field keys.
    assert_eq!(entries[0].0, "schema");
    assert_eq!(entries[1].0, "idalloc");
}

#[test]
fn our_readers_decode_the_real_files_to_the_loaded_data() {
    use fb_core::format::{idalloc, rbf, translate};
    let dir = fixture().join("backup");
    let read = |p: &str| std::fs::read(dir.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    // Existence bits: 3000 events over shards 0-4 (600 each), 400 users over 4 shards.
    let exists = rbf::fragment_key("_exists", "standard");
    let count = |index: &str| -> (usize, usize) {
        let mut shards = 0;
        let mut bits = 0;
        for e in std::fs::read_dir(dir.join(format!("indexes/{index}/shards"))).unwrap() {
            let bitmaps = rbf::read_bitmaps(&std::fs::read(e.unwrap().path()).unwrap()).expect("RBF reads");
            bits += bitmaps.get(&exists).map_or(0, Vec::len);
            shards += 1;
        }
        (shards, bits)
    };
    assert_eq!(count("events"), (5, 3000), "events: shards and existence bits");
    assert_eq!(count("users"), (4, 400), "users: shards and existence bits");
    let events0 = rbf::read_bitmaps(&read("indexes/events/shards/0000")).unwrap();
    assert_eq!(events0.get(&exists).map(Vec::len), Some(600));
    assert!(events0.keys().any(|k| k.contains("ts;standard_2023")), "time views: {:?}", events0.keys());
    // Keys: 400 user keys in 4 of the 256 partitions; 7 cities, 3 plans.
    let mut keys = 0;
    let mut used = 0;
    for p in 0..256 {
        let n = translate::read_store(&read(&format!("indexes/users/translate/{p:04}")))
            .expect("key partition reads")
            .len();
        keys += n;
        used += usize::from(n > 0);
    }
    assert_eq!((keys, used), (400, 4), "index keys and partitions used");
    let cities = translate::read_store(&read("indexes/users/fields/city/translate")).unwrap();
    assert_eq!(cities.len(), 7, "{cities:?}");
    assert_eq!(translate::read_store(&read("indexes/users/fields/plan/translate")).unwrap().len(), 3);
    idalloc::read(&read("idalloc")).expect("idalloc reads");
}

/// Flip one byte of one file of a copy of the fixture directory; the manifest is taken of
/// the damaged copy so only the deep format check can catch it.
fn deep_rejects(file: &str, offset: usize, expect: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");
    copy_tree(&fixture().join("backup"), &dir);
    let target = dir.join(file);
    let mut bytes = std::fs::read(&target).unwrap();
    bytes[offset] ^= 0x01;
    std::fs::write(&target, &bytes).unwrap();
    let m = write_manifest(&dir, tmp.path(), "m.json");
    let (status, bad, err) = deep_verify(&dir, &m);
    assert_eq!(status, 1, "a damaged {file} fails --deep: {bad:?} {err}");
    assert_eq!(bad.len(), 1, "only the damaged file is reported: {bad:?}");
    assert_eq!(bad[0].0, file);
    assert_eq!(bad[0].1, "malformed");
    assert!(bad[0].2.contains(expect), "{file}: detail {:?} names {expect:?}", bad[0].2);
    // Without --deep the same copy checks out: the bytes match their (damaged) manifest.
    let out = run("fb-verify", &["--manifest", path_str(&m), path_str(&dir)], None);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}

#[test]
fn deep_rejects_a_real_shard_with_a_wrong_page_count() {
    // Byte 11 is the low byte of the big-endian page count in the RBF meta page.
    deep_rejects("indexes/events/shards/0000", 11, "declared");
}

#[test]
fn deep_rejects_real_bolt_files_with_a_damaged_meta_page() {
    // Page header is 16 bytes; the meta starts with the magic (LE u32); byte 16+28 is in
    // the root bucket's page id, covered by the meta checksum. (bbolt itself would fall back
    // to meta page 1; a backup copy must have both intact.)
    deep_rejects("idalloc", 16, "magic");
    deep_rejects("indexes/users/translate/0003", 16 + 28, "checksum");
    deep_rejects("indexes/users/fields/city/translate", 16 + 28, "checksum");
}

#[test]
fn deep_rejects_a_damaged_real_backuptar_stream() {
    let tmp = tempfile::tempdir().unwrap();
    let mut tar = std::fs::read(fixture().join("backup.tar")).unwrap();
    // Find the first shard entry's data in the tar and break its page count.
    let mut offset = None;
    {
        let mut a = tar::Archive::new(&tar[..]);
        for e in a.entries().unwrap() {
            let e = e.unwrap();
            if e.path().unwrap().to_string_lossy().contains("/shards/") {
                offset = Some(e.raw_file_position() as usize);
                break;
            }
        }
    }
    let offset = offset.expect("a shard entry");
    tar[offset + 11] ^= 0x01;
    let damaged = tmp.path().join("d.tar");
    std::fs::write(&damaged, &tar).unwrap();
    let m = write_manifest(&damaged, tmp.path(), "m.json");
    let (status, bad, err) = deep_verify(&damaged, &m);
    assert_eq!(status, 1, "{bad:?} {err}");
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(bad[0].0.contains("/shards/") && bad[0].1 == "malformed", "{bad:?}");
}

#[test]
fn real_backuptar_imports_into_a_devcluster() {
    let fx = fixture();
    let dst = empty(3, 2);
    let url = dst.urls()[0].clone();
    let out = run("fb-import", &["--host", &url, "--no-manifest", "-q", "-s", path_str(&fx.join("backup.tar"))], None);
    assert_eq!(code(&out), 0, "fb-import of upstream backuptar: {}", stderr(&out));
    // Everything but upstream's junk dataframes is back, byte for byte.
    let tmp = tempfile::tempdir().unwrap();
    let exported = tmp.path().join("e.tar");
    let out = run("fb-export", &["--host", &url, "-q", "-o", path_str(&exported)], None);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let ours: BTreeMap<String, Vec<u8>> =
        tar_entries(&std::fs::read(&exported).unwrap()).into_iter().filter(|(n, _)| n != "MANIFEST.json").collect();
    let theirs: BTreeMap<String, Vec<u8>> = tar_entries(&std::fs::read(fx.join("backup.tar")).unwrap())
        .into_iter()
        .filter(|(n, _)| !n.contains("/dataframe/"))
        .collect();
    assert_eq!(ours.keys().collect::<Vec<_>>(), theirs.keys().collect::<Vec<_>>());
    for (name, data) in &theirs {
        if name == "schema" {
            continue; // upstream re-encodes the schema with tabs; compared as JSON below
        }
        assert!(ours[name] == *data, "{name} differs after fb-import of upstream's backuptar");
    }
    // The schema came back with new timestamps (POST /schema stamps them); users/age's
    // `min: 0` is kept, since fb-import creates that field through the field API.
    let out = run("fb-manifest", &["diff", "--content", path_str(&fx.join("backup.tar")), path_str(&exported)], None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(code(&out), 0, "diff --content of backuptar and its restore: {text}{}", stderr(&out));
    assert!(text.contains("same     schema") && !text.contains("users/age min"), "{text}");
}

/// A devcluster seeded from the real `featurebase backup` directory of a 3-node cluster.
fn seeded(nodes: usize, replicas: usize) -> fb_devcluster::RunningCluster {
    fb_devcluster::spawn(fb_devcluster::ClusterConfig {
        nodes,
        replicas,
        seed_from: Some(fixture().join("backup")),
        dataframes: fb_devcluster::Dataframes::Disabled,
        ..Default::default()
    })
    .expect("seeding a devcluster from the fixture")
}

#[test]
fn a_devcluster_seeded_from_the_real_backup_serves_its_files_byte_for_byte() {
    let fx = fixture();
    let c = seeded(3, 2);
    let tmp = tempfile::tempdir().unwrap();
    let exported = tmp.path().join("seeded.tar");
    let out = run("fb-export", &["--host", &c.urls()[0], "-q", "--concurrency", "4", "-o", path_str(&exported)], None);
    assert_eq!(code(&out), 0, "fb-export of the seeded cluster: {}", stderr(&out));
    let out = run("fb-verify", &["--deep", path_str(&exported)], None);
    assert_eq!(code(&out), 0, "fb-verify --deep: {}", stderr(&out));
    // Every real file (schema included) comes back unchanged, in backuptar's order.
    let ours = data_entries(&exported);
    let theirs = data_entries(&fx.join("backup.tar"));
    assert_eq!(ours.keys().collect::<Vec<_>>(), theirs.keys().collect::<Vec<_>>());
    let differ: Vec<&String> = theirs.iter().filter(|(n, d)| ours[*n] != **d).map(|(n, _)| n).collect();
    assert!(differ.is_empty(), "the seeded cluster serves other bytes for {differ:?}");
    // By bytes, only upstream's placeholder dataframes differ; by content, nothing.
    let out = run("fb-manifest", &["diff", path_str(&fx.join("backup")), path_str(&exported)], None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(code(&out), 1, "{text}");
    assert!(text.lines().filter(|l| l.starts_with("removed")).all(|l| l.contains("/dataframe/")), "{text}");
    assert!(!text.lines().any(|l| l.starts_with("changed") || l.starts_with("added")), "{text}");
    let out = run("fb-manifest", &["diff", "--content", path_str(&fx.join("backup")), path_str(&exported)], None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(code(&out), 0, "{text}{}", stderr(&out));
    assert!(text.contains("placeholder dataframe(s) ignored"), "{text}");
}

#[test]
fn a_restore_of_real_files_differs_in_bytes_but_not_in_content() {
    let fx = fixture();
    let src = seeded(3, 2);
    let dst = empty(1, 1);
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let a = t.join("a.tar");
    let out = run("fb-export", &["--host", &src.urls()[0], "-q", "-o", path_str(&a)], None);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = run("fb-import", &["--host", &dst.urls()[0], "-s", path_str(&a)], None);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("changed a field bound"),
        "fb-import keeps users/age's min 0 (created through the field API): {}",
        stderr(&out)
    );
    // Raw: the schema differs (restore-time stamps, the widened bound). Content: nothing.
    let out = run("fb-manifest", &["diff", path_str(&a), &dst.urls()[0]], None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(code(&out), 1, "{text}");
    let changed: Vec<&str> = text.lines().filter(|l| l.starts_with("changed")).collect();
    assert!(changed.len() == 1 && changed[0].contains("schema"), "{text}");
    let out = run("fb-manifest", &["diff", "--content", "--json", path_str(&a), &dst.urls()[0]], None);
    assert_eq!(code(&out), 0, "{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["identical"], true);
    assert_eq!(doc["same_content"][0]["path"], "schema", "{doc}");

    // A real difference stays one: a key partition with other keys, in a copy of the fixture.
    let copy = t.join("backup");
    copy_tree(&fx.join("backup"), &copy);
    let parts = copy.join("indexes/users/translate");
    let mut stores: Vec<PathBuf> = std::fs::read_dir(&parts).unwrap().map(|e| e.unwrap().path()).collect();
    stores.sort();
    let donor = stores
        .iter()
        .find(|p| {
            let keys = |p: &Path| fb_core::format::translate::read_store(&std::fs::read(p).unwrap()).unwrap();
            keys(p) != keys(&stores[0])
        })
        .expect("two key partitions with other keys")
        .clone();
    std::fs::copy(&donor, &stores[0]).unwrap();
    let out = run("fb-manifest", &["diff", "--content", path_str(&fx.join("backup")), path_str(&copy)], None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(code(&out), 1, "{text}");
    let changed: Vec<&str> = text.lines().filter(|l| l.starts_with("changed")).collect();
    assert_eq!(changed.len(), 1, "{text}");
    assert!(
        changed[0].contains(&format!("indexes/users/translate/{}", stores[0].file_name().unwrap().to_str().unwrap()))
    );
}

/// The entries of a backup tar, without MANIFEST.json and upstream's junk dataframes.
pub(crate) fn data_entries(tar: &Path) -> BTreeMap<String, Vec<u8>> {
    tar_entries(&std::fs::read(tar).unwrap())
        .into_iter()
        .filter(|(n, d)| n != "MANIFEST.json" && !(n.contains("/dataframe/") && d.as_slice() == DATAFRAME_DISABLED))
        .collect()
}

/// The schema without what a restore into real FeatureBase does not keep: the timestamps
/// (POST /schema stamps the current time), and an int field's `"min": 0`, which upstream
/// v3.35 turns into -2^63 when it reads the schema back (its own restoretar does the same).
fn schema_sans_times(bytes: &[u8]) -> serde_json::Value {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                m.remove("createdAt");
                m.remove("updatedAt");
                if m.get("min").and_then(serde_json::Value::as_i64) == Some(i64::MIN) {
                    m.insert("min".into(), 0.into());
                }
                m.values_mut().for_each(strip);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut v = serde_json::from_slice(bytes).expect("schema JSON");
    strip(&mut v);
    v
}

/// Assert that two backups hold the same data: the same entry names, shard files with the
/// same bitmaps, bbolt files (idalloc, key stores) with the same buckets and key/values, and
/// the same schema up to timestamps. Returns the entries whose bytes differ.
fn assert_same_content(a: &Path, b: &Path, what: &str) -> Vec<String> {
    use fb_core::format::{bolt, rbf};
    let (a, b) = (data_entries(a), data_entries(b));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>(), "{what}: entry names");
    let mut differ = Vec::new();
    for (name, x) in &a {
        let y = &b[name];
        if x == y {
            continue;
        }
        differ.push(name.clone());
        if name == "schema" {
            assert_eq!(schema_sans_times(x), schema_sans_times(y), "{what}: schema");
        } else if name.contains("/shards/") {
            assert!(rbf::read_bitmaps(x).unwrap() == rbf::read_bitmaps(y).unwrap(), "{what}: {name}: bitmaps differ");
        } else if name.contains("/dataframe/") {
            panic!("{what}: {name} differs");
        } else {
            assert!(bolt::read_db(x).unwrap() == bolt::read_db(y).unwrap(), "{what}: {name}: bbolt contents differ");
        }
    }
    differ
}

/// Byte-different entries, summarised (the 256 key partitions would drown the rest).
fn summary(differ: &[String]) -> String {
    let keys = differ.iter().filter(|n| n.contains("/translate/")).count();
    let rest: Vec<&String> = differ.iter().filter(|n| !n.contains("/translate/")).collect();
    format!("{keys} index key partitions, and {rest:?}")
}

// ---- with FEATUREBASE_BIN: real clusters ----
//
// Started with the one launcher, `fb_devcluster::upstream` (through `real_cluster`).
// Authentication against the real binary is tested in real.rs.

/// One HTTP request with curl (60 s at most): (status, body). Status 0 when nothing
/// answered.
pub(crate) fn curl(method: &str, url: &str, body: Option<&str>) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-m", "60", "-X", method, "-H", "Accept: application/json", "-w", "\n%{http_code}", url]);
    if let Some(b) = body {
        cmd.args(["--data-binary", b]);
    }
    let out = cmd.output().expect("running curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), body.to_string())
}

/// Run one of upstream's own commands (`featurebase backup`, `restore`, ...); assert
/// success.
pub(crate) fn upstream(bin: &Path, args: &[&str]) {
    let out = Command::new(bin).args(args).stdin(Stdio::null()).output().expect("running featurebase");
    assert!(out.status.success(), "featurebase {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

/// A query answer with the parts whose order upstream does not fix put in order: the keys
/// of a keyed Row, and TopN pairs (ties come in any order).
fn normalize(mut v: serde_json::Value) -> serde_json::Value {
    if let Some(results) = v.get_mut("results").and_then(|r| r.as_array_mut()) {
        for r in results {
            if let Some(keys) = r.get_mut("keys").and_then(|k| k.as_array_mut()) {
                keys.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
            }
            if let Some(pairs) = r.as_array_mut() {
                pairs.sort_by_key(|p| p.to_string());
            }
        }
    }
    v
}

/// The fixture's queries and the answers the original 3-node cluster gave (queries.json).
fn expected_answers() -> Vec<(String, String, serde_json::Value)> {
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture().join("queries.json")).unwrap()).unwrap();
    doc.as_array()
        .unwrap()
        .iter()
        .map(|q| {
            (
                q["index"].as_str().unwrap().to_string(),
                q["query"].as_str().unwrap().to_string(),
                normalize(q["response"].clone()),
            )
        })
        .collect()
}

/// A cluster's answers to the fixture queries, normalized, in the order of queries.json.
fn answers(url: &str, what: &str) -> Vec<serde_json::Value> {
    expected_answers()
        .into_iter()
        .map(|(index, q, _)| {
            let (status, body) = curl("POST", &format!("{url}/index/{index}/query"), Some(&q));
            assert_eq!(status, 200, "{what}: {index}: {q}: {body}");
            normalize(serde_json::from_str(&body).unwrap_or_else(|e| panic!("{what}: {index}: {q}: {e}: {body}")))
        })
        .collect()
}

/// A query answer in a few characters: a count as the number, a row as its size and a
/// digest of it, TopN as `id-or-key:count` pairs, Sum and Min as value and count.
fn brief(answer: &serde_json::Value) -> String {
    use serde_json::Value;
    use sha2::{Digest, Sha256};
    let results = answer["results"].as_array().cloned().unwrap_or_default();
    let one = |r: &Value| match r {
        Value::Array(pairs) => pairs
            .iter()
            .map(|p| match p["key"].as_str() {
                Some(k) if !k.is_empty() => format!("{k}:{}", p["count"]),
                _ => format!("{}:{}", p["id"], p["count"]),
            })
            .collect::<Vec<_>>()
            .join(","),
        Value::Object(m) if m.contains_key("columns") => {
            let len = |k: &str| m.get(k).and_then(Value::as_array).map_or(0, Vec::len);
            let digest: String = Sha256::digest(r.to_string()).iter().take(4).map(|b| format!("{b:02x}")).collect();
            format!("row({} columns,{} keys,#{digest})", len("columns"), len("keys"))
        }
        Value::Object(m) if m.contains_key("value") => format!("value={},count={}", m["value"], m["count"]),
        other => other.to_string(),
    };
    results.iter().map(one).collect::<Vec<_>>().join(";")
}

/// Print one line per fixture query: the answer the fixture's own cluster gave (`source`,
/// recorded in queries.json), then each cluster's; assert they are all the same.
fn compare_answers(clusters: &[(&str, Vec<serde_json::Value>)]) {
    let expected = expected_answers();
    assert!(expected.len() >= 10, "queries.json lists the queries");
    let mut wrong = Vec::new();
    for (i, (index, q, want)) in expected.iter().enumerate() {
        let mut line = format!("query {index} {q}: source={}", brief(want));
        let mut ok = true;
        for (what, got) in clusters {
            line.push_str(&format!(" {what}={}", brief(&got[i])));
            if got[i] != *want {
                ok = false;
                wrong.push(format!("{what}: {index}: {q}: {} (recorded: {})", got[i], want));
            }
        }
        line.push_str(if ok { " ok" } else { " DIFFERENT" });
        eprintln!("{line}");
    }
    assert!(wrong.is_empty(), "answers differ from the recorded ones:\n{}", wrong.join("\n"));
}

/// A real 3-node cluster with replicas 2, loaded with fb-import of upstream's backuptar
/// (no manifest; taken of another 3-node cluster).
fn loaded_three_nodes(bin: &Path) -> RealCluster {
    let src = real_cluster(bin, "src", 3, 2);
    let tar = fixture().join("backup.tar");
    let out = run("fb-import", &["--host", src.url(), "--no-manifest", "-q", "-s", path_str(&tar)], None);
    assert_eq!(code(&out), 0, "fb-import of backuptar into a real 3-node cluster: {}", stderr(&out));
    src
}

/// fb-export of a cluster to `file`, asserting success.
fn export_to(url: &str, file: &Path) {
    let out = run("fb-export", &["--host", url, "-q", "-o", path_str(file)], None);
    assert_eq!(code(&out), 0, "fb-export of {url}: {}", stderr(&out));
}

/// The paths of the `changed` lines of an `fb-manifest diff` text report.
fn changed_paths(report: &str) -> Vec<String> {
    report
        .lines()
        .filter_map(|l| l.strip_prefix("changed  "))
        .map(|l| l.split("  ").next().unwrap_or("").to_string())
        .collect()
}

#[test]
fn real_three_node_cluster_fb_export_equals_upstream_backups() {
    let Some(bin) = featurebase_bin() else { return };
    bin_dir(); // the tools are built first: the time printed at the end is the test's own
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let fx = fixture();

    // fb-import of upstream's backuptar into a real 3-node cluster, replicas 2.
    let src = loaded_three_nodes(&bin);
    let loaded = answers(src.url(), "3-node");

    // fb-export, upstream backuptar and upstream backup of the same idle cluster.
    let ours = t.join("ours.tar");
    export_to(src.url(), &ours);
    let theirs = t.join("theirs.tar");
    upstream(&bin, &["backuptar", "--host", src.url(), "-o", path_str(&theirs)]);
    let dir = t.join("backup");
    upstream(&bin, &["backup", "--host", src.url(), "-o", path_str(&dir)]);
    drop(src);
    let out = run("fb-verify", &["--deep", path_str(&ours)], None);
    assert_eq!(code(&out), 0, "fb-verify --deep of fb-export of a real 3-node cluster: {}", stderr(&out));

    // Same names and the same bytes, entry for entry (upstream's junk dataframes aside). Both
    // tools save the files as the owners serve them: shards from the first node of
    // /internal/fragment/nodes, key partitions from their owners, field keys and idalloc
    // from the primary. Replicas hold the same bytes here: fb-import sent each owner the
    // same file, and each server reopened it once.
    let (ours_m, theirs_m) = (data_entries(&ours), data_entries(&theirs));
    assert_eq!(
        ours_m.keys().collect::<Vec<_>>(),
        theirs_m.keys().collect::<Vec<_>>(),
        "fb-export and backuptar name the same entries (upstream's junk dataframes aside)"
    );
    let differ: Vec<&String> = theirs_m.iter().filter(|(n, d)| ours_m[*n] != **d).map(|(n, _)| n).collect();
    eprintln!(
        "fb-export vs featurebase backuptar of a real 3-node cluster: {} entries, {} differ in bytes: {differ:?}",
        ours_m.len(),
        differ.len()
    );
    assert!(differ.is_empty(), "fb-export and backuptar of an idle cluster differ in bytes: {differ:?}");
    // Upstream's directory and stream forms agree too.
    let out = run("fb-manifest", &["diff", path_str(&dir), path_str(&theirs)], None);
    assert_eq!(code(&out), 0, "backup vs backuptar: {}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    // The data that came from the fixture is all there.
    let differ = assert_same_content(&fx.join("backup.tar"), &ours, "fb-import of backuptar, then fb-export");
    eprintln!("fixture vs fb-export of the 3-node cluster it was imported into: bytes differ in {}", summary(&differ));

    // Upstream's backup directory (tarred as a user would) and its backuptar file each go
    // into a real cluster of another size with fb-import.
    let out = sh("tar -cf backup-dir.tar -C backup .", t);
    assert_eq!(code(&out), 0, "tar: {}", stderr(&out));
    let mut columns = vec![("3-node", loaded)];
    for (what, file) in [("backup-dir", t.join("backup-dir.tar")), ("backuptar", theirs)] {
        let dst = real_cluster(&bin, "one", 1, 1);
        let out = run("fb-import", &["--host", dst.url(), "--no-manifest", "-q", "-s", path_str(&file)], None);
        assert_eq!(code(&out), 0, "fb-import of upstream's {what} into a real 1-node cluster: {}", stderr(&out));
        columns.push((what, answers(dst.url(), what)));
    }
    compare_answers(&columns);
    eprintln!("real_three_node_cluster_fb_export_equals_upstream_backups: {:.1?}", started.elapsed());
}

#[test]
fn real_restores_of_an_fb_export_stream() {
    let Some(bin) = featurebase_bin() else { return };
    bin_dir(); // the tools are built first: the time printed at the end is the test's own
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();

    let src = loaded_three_nodes(&bin);
    let loaded = answers(src.url(), "3-node");
    let ours = t.join("ours.tar");
    export_to(src.url(), &ours);
    drop(src);

    // Upstream restores the fb-export stream two ways into fresh 1-node clusters: extracted,
    // with `featurebase restore -s DIR` (MANIFEST.json is one file more there; it is
    // ignored), and as it is, with `featurebase restoretar`.
    let out = sh("mkdir d && tar -xf ours.tar -C d", t);
    assert_eq!(code(&out), 0, "tar: {}", stderr(&out));
    let restored = real_cluster(&bin, "rst", 1, 1);
    upstream(&bin, &["restore", "-s", path_str(&t.join("d")), "--host", restored.url()]);
    let restoredtar = real_cluster(&bin, "rtar", 1, 1);
    upstream(&bin, &["restoretar", "--host", restoredtar.url(), "-s", path_str(&ours)]);
    compare_answers(&[
        ("3-node", loaded),
        ("restore", answers(restored.url(), "restore")),
        ("restoretar", answers(restoredtar.url(), "restoretar")),
    ]);

    // fb-export of the source vs fb-export of each restored cluster. By bytes, exactly the
    // schema and every key store changed: POST /schema stamps createdAt/updatedAt with the
    // restore time, and the server writes a received bbolt file as it is, then reopens it
    // (BoltTranslateStore.ReadFrom, then Open), and Open's CreateBucketIfNotExists runs a
    // write transaction that bbolt commits even with nothing to create: a new txid, the
    // freelist on another page, a new meta checksum. Shards and idalloc come back byte for
    // byte. By content, nothing changed.
    let key_stores_and_schema: Vec<String> =
        data_entries(&ours).into_keys().filter(|n| n == "schema" || n.contains("/translate")).collect();
    for (what, cluster) in [("restore", &restored), ("restoretar", &restoredtar)] {
        let back = t.join(format!("{what}.tar"));
        export_to(cluster.url(), &back);
        let out = run("fb-manifest", &["diff", path_str(&ours), path_str(&back)], None);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(code(&out), 1, "fb-manifest diff after {what}: {text}{}", stderr(&out));
        let mut changed = changed_paths(&text);
        eprintln!("fb-export vs fb-export after featurebase {what}: bytes differ in {}", summary(&changed));
        changed.sort();
        assert_eq!(changed, key_stores_and_schema, "entries changed in bytes by featurebase {what}: {text}");
        assert!(!text.lines().any(|l| l.starts_with("added") || l.starts_with("removed")), "{text}");
        assert_same_content(&ours, &back, &format!("featurebase {what} of fb-export"));
        let out = run("fb-manifest", &["diff", "--content", path_str(&ours), path_str(&back)], None);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(code(&out), 0, "fb-manifest diff --content after {what}: {text}{}", stderr(&out));
        assert!(text.contains("identical content"), "{text}");
    }

    // One real change on a restored cluster: a new record with one bit in events shard 0.
    // `diff --content` names exactly that shard.
    let (status, body) = curl("POST", &format!("{}/index/events/query", restoredtar.url()), Some("Set(5, kind=3)"));
    assert_eq!((status, body.trim()), (200, r#"{"results":[true]}"#), "Set on the restored cluster");
    let out = run("fb-manifest", &["diff", "--content", path_str(&ours), restoredtar.url()], None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(code(&out), 1, "diff --content after a Set: {text}{}", stderr(&out));
    let changed = changed_paths(&text);
    eprintln!("diff --content after Set(5, kind=3) on the restored cluster: changed {changed:?}");
    assert_eq!(changed, ["indexes/events/shards/0000"], "{text}");

    // fb-import refuses the now non-empty real cluster.
    let out = run("fb-import", &["--host", restored.url(), "-q", "-s", path_str(&ours)], None);
    assert_eq!(code(&out), 78, "a non-empty real cluster is refused: {}", stderr(&out));
    eprintln!("real_restores_of_an_fb_export_stream: {:.1?}", started.elapsed());
}
