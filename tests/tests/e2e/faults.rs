//! Faults during an export (nodes down, cut, failing, hanging or slow; data written
//! while the export runs) and faults of the output (full disk, signals). Nothing may fail
//! silently: every run ends identical to a clean export, or fails with its exit code and no
//! manifest.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use fb_core::format::{idalloc, rbf, translate};
use fb_core::schema::Schema;
use fbkit_tests::*;

const SHARD_WIDTH: u64 = 1 << 20;
const LIMIT: Duration = Duration::from_secs(180);

fn has_manifest(out: &[u8]) -> bool {
    out.windows(13).any(|w| w == b"MANIFEST.json")
}

/// A failed export's output is never taken for a backup: no manifest, and fb-verify says so.
fn assert_failed_output_is_unusable(out: &[u8]) {
    assert!(!has_manifest(out), "a failed export wrote MANIFEST.json");
    let v = run("fb-verify", &["-q", "-"], Some(out));
    assert!(matches!(code(&v), 65 | 66), "fb-verify on a failed export's output: exit {} {}", code(&v), stderr(&v));
}

fn files_in(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
}

#[test]
fn every_owner_of_a_shard_down_fails_69_and_leaves_no_file() {
    let c = demo(3, 2);
    let url = c.urls()[0].clone();
    c.add_fault("down@1").unwrap();
    c.add_fault("down@2").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("b.tar");
    let out = run("fb-export", &["--host", &url, "-q", "-o", target.to_str().unwrap()], None);
    assert_eq!(code(&out), 69, "{}", stderr(&out));
    assert!(stderr(&out).contains("indexes/"), "names the entry that has no live owner: {}", stderr(&out));
    assert!(files_in(dir.path()).is_empty(), "nothing at the target, no temporary file: {:?}", files_in(dir.path()));
}

#[test]
fn node_going_down_mid_body_fails_over_or_fails_never_a_short_entry() {
    let c =
        spawn(ClusterConfig { nodes: 3, replicas: 2, demo: true, demo_shard_bytes: 256 * 1024, ..Default::default() })
            .unwrap();
    let urls = c.urls();
    let reference = export(&urls[0], &[]);
    // Node 1's snapshots trickle out, so the export is inside one of them when it goes down.
    c.add_fault("slow@1:300000:/internal/index/").unwrap();
    let bg = Background::start("fb-export", &["--host", &urls[0], "-vv", "--progress", "never"], &[]);
    let reading = format!("GET {}/internal/index/", urls[1]);
    wait_until(LIMIT, "a snapshot request to node 1", || bg.stderr_text().contains(&reading));
    c.add_fault("down@1").unwrap();
    let (status, out, err) = bg.finish(LIMIT);
    assert!(err.contains(&format!("{} failed", urls[1].trim_start_matches("http://"))), "a failover happened: {err}");
    match status {
        0 => assert!(out == reference, "a failed-over export differs from a clean one"),
        69 | 74 => assert_failed_output_is_unusable(&out),
        other => panic!("exit {other}: {err}"),
    }
}

#[test]
fn bursts_of_5xx_are_retried_and_change_nothing() {
    let c = demo(3, 2);
    let url = c.urls()[0].clone();
    let reference = export(&url, &[]);
    c.add_fault("error@1:503:3:/internal/").unwrap();
    let out = run("fb-export", &["--host", &url, "-v", "--progress", "never"], None);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stderr(&out).contains("retry 1 of"), "the 503s were retried: {}", stderr(&out));
    assert!(out.stdout == reference, "retried export differs");
    // Every node, the entry node's planning requests included.
    c.add_fault("error:500:2:/internal/").unwrap();
    let out = run("fb-export", &["--host", &url, "-v", "--progress", "never", "--concurrency", "3"], None);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stderr(&out).contains("500"), "{}", stderr(&out));
    assert!(out.stdout == reference, "retried export differs");
}

#[test]
fn a_hung_node_costs_the_header_timeout_not_the_run() {
    let c = demo(3, 2);
    let url = c.urls()[0].clone();
    let reference = export(&url, &[]);
    c.add_fault("hang@1").unwrap();
    let started = Instant::now();
    let args = ["--host", &url, "-v", "--progress", "never", "--header-timeout", "1s", "--retry-period", "10s"];
    let out = run("fb-export", &args, None);
    let took = started.elapsed();
    match code(&out) {
        0 => assert!(out.stdout == reference, "failed-over export differs"),
        69 => assert_failed_output_is_unusable(&out.stdout),
        other => panic!("exit {other}: {}", stderr(&out)),
    }
    assert!(stderr(&out).contains("--header-timeout"), "the timeout fired: {}", stderr(&out));
    // Bounded: a hung node is given up on, not waited for once per file (hundreds of files).
    assert!(took < Duration::from_secs(60), "took {took:?}");
}

#[test]
fn slow_bodies_complete_whole() {
    let c = demo(3, 2);
    let url = c.urls()[0].clone();
    let reference = export(&url, &[]);
    c.add_fault("slow@1:2000000").unwrap();
    let out = export(&url, &["--concurrency", "2"]);
    assert!(out == reference, "a slow node changes the archive");
}

// ---- concurrent writes: contract rules 5 (keys after data) and 6 (idalloc after data) ----

type Entries = BTreeMap<String, Vec<u8>>;

fn entries_of(archive: &[u8]) -> Entries {
    tar_entries(archive).into_iter().collect()
}

/// Every way an archive breaks rule 5 (a key ID in the shard data without its translation in
/// the archive: a column of a keyed index, or a row of a keyed field) or rule 6 (an ID in an
/// unkeyed index's shard data at or above the archive's idalloc committed bound).
fn consistency_violations(e: &Entries) -> Vec<String> {
    let schema = Schema::parse(&e["schema"]).expect("schema entry");
    let ida = idalloc::read(&e["idalloc"]).expect("idalloc entry");
    let mut bad = Vec::new();
    for index in &schema.indexes {
        let prefix = format!("indexes/{}/", index.name);
        let mine = || e.iter().filter(|(n, _)| n.starts_with(&prefix));
        let keys: BTreeSet<u64> = mine()
            .filter(|(n, _)| n.starts_with(&format!("{prefix}translate/")))
            .flat_map(|(n, b)| translate::read_store(b).unwrap_or_else(|p| panic!("{n}: {p}")))
            .map(|k| k.1)
            .collect();
        let field_keys: BTreeMap<String, BTreeSet<u64>> = index
            .fields
            .iter()
            .filter(|f| f.keys)
            .map(|f| {
                let store = e.get(&format!("{prefix}fields/{}/translate", f.name));
                let ids = store.map(|b| translate::read_store(b).unwrap().into_iter().map(|k| k.1).collect());
                (rbf::fragment_key(&f.name, ""), ids.unwrap_or_default())
            })
            .collect();
        let bound = ida.committed_upper_bound(&index.name);
        for (name, bytes) in mine().filter(|(n, _)| n.starts_with(&format!("{prefix}shards/"))) {
            let shard: u64 = name.rsplit('/').next().unwrap().parse().unwrap();
            for (bitmap, positions) in rbf::read_bitmaps(bytes).unwrap_or_else(|p| panic!("{name}: {p}")) {
                // A keyed field's bitmap key starts like `~field;` (any view).
                let field_ids =
                    field_keys.iter().find(|(k, _)| bitmap.starts_with(k.trim_end_matches('<'))).map(|x| x.1);
                for p in positions {
                    let column = shard * SHARD_WIDTH + p % SHARD_WIDTH;
                    if index.keys && !keys.contains(&column) {
                        bad.push(format!("rule 5: {name} {bitmap}: column {column} has no key"));
                    }
                    if !index.keys && column >= bound {
                        bad.push(format!("rule 6: {name} {bitmap}: column {column} >= idalloc bound {bound}"));
                    }
                    if let Some(ids) = field_ids {
                        if !ids.contains(&(p / SHARD_WIDTH)) {
                            bad.push(format!("rule 5: {name} {bitmap}: row {} has no key", p / SHARD_WIDTH));
                        }
                    }
                }
            }
        }
    }
    bad
}

#[test]
fn writes_during_an_export_keep_keys_and_idalloc_consistent() {
    let c = demo(3, 2);
    let url = c.urls()[0].clone();
    let before = entries_of(&export(&url, &[]));
    assert_eq!(consistency_violations(&before), Vec::<String>::new(), "the demo data itself");
    // Bounded churn that outlasts the export (stopped by clear_faults below).
    c.add_fault("churn:20000:2").unwrap();
    wait_until(LIMIT, "churn to start", || c.churn_steps() >= 6);
    let steps_at_start = c.churn_steps();
    let during = export(&url, &["--concurrency", "4"]);
    let steps_at_end = c.churn_steps();
    c.clear_faults();
    assert!(steps_at_end > steps_at_start, "the churn ran while the export ran");
    let b = entries_of(&during);
    assert_eq!(consistency_violations(&b), Vec::<String>::new(), "export taken during writes");

    // The check detects what it is for: the same archive with the idalloc (or the keys) of
    // the export taken before the writes, i.e. fetched before the shard data.
    let mut early_idalloc = b.clone();
    early_idalloc.insert("idalloc".into(), before["idalloc"].clone());
    let v = consistency_violations(&early_idalloc);
    assert!(v.iter().any(|m| m.starts_with("rule 6")), "an idalloc older than the data is caught: {v:?}");
    let mut early_keys: Entries =
        b.iter().filter(|(n, _)| !n.contains("/translate")).map(|(n, d)| (n.clone(), d.clone())).collect();
    early_keys.extend(before.iter().filter(|(n, _)| n.contains("/translate")).map(|(n, d)| (n.clone(), d.clone())));
    let v = consistency_violations(&early_keys);
    assert!(v.iter().any(|m| m.starts_with("rule 5")), "keys older than the data are caught: {v:?}");

    // Restored into a differently sized cluster, the allocator still covers every ID.
    let dst = empty(2, 1);
    let out = run("fb-import", &["--host", &dst.urls()[0], "-q"], Some(&during));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let restored = entries_of(&export(&dst.urls()[0], &[]));
    assert_eq!(consistency_violations(&restored), Vec::<String>::new(), "after the restore");
    for (name, data) in b.iter().filter(|(n, _)| n.contains("/shards/")) {
        assert!(restored.get(name) == Some(data), "{name} restored as exported");
    }
}

// ---- output faults ----

/// A tmpfs of 1 MiB, unmounted on drop; None (with a message) where it cannot be made.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn new(dir: &std::path::Path) -> Option<SmallDisk> {
        if !nix::unistd::geteuid().is_root() || !have("mount") {
            eprintln!("skipped: a full disk needs root and mount");
            return None;
        }
        let out = sh(&format!("mount -t tmpfs -o size=1m tmpfs '{}'", dir.display()), dir);
        if code(&out) != 0 {
            eprintln!("skipped: cannot mount a tmpfs here: {}", stderr(&out));
            return None;
        }
        Some(SmallDisk(dir.to_path_buf()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = sh(&format!("umount '{}'", self.0.display()), std::path::Path::new("/"));
    }
}

#[test]
fn full_disk_is_74_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = SmallDisk::new(dir.path()) else { return };
    let c = spawn(ClusterConfig { nodes: 1, demo: true, demo_shard_bytes: 512 * 1024, ..Default::default() }).unwrap();
    let target = disk.0.join("b.tar");
    let out = run("fb-export", &["--host", &c.urls()[0], "-q", "-o", target.to_str().unwrap()], None);
    assert_eq!(code(&out), 74, "{}", stderr(&out));
    assert!(files_in(&disk.0).is_empty(), "left behind: {:?}", files_in(&disk.0));
}

#[test]
fn sigint_and_sigterm_mid_export_are_130_and_leave_nothing() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let c = demo(2, 1);
    let urls = c.urls();
    c.add_fault("slow:20000:/internal/index/").unwrap();
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("b.tar");
        let bg = Background::start("fb-export", &["--host", &urls[0], "-vv", "-o", target.to_str().unwrap()], &[]);
        wait_until(LIMIT, "the first snapshot request", || bg.stderr_text().contains("/snapshot"));
        kill(Pid::from_raw(bg.pid()), sig).unwrap();
        let (status, _, err) = bg.finish(LIMIT);
        assert_eq!(status, 130, "{sig}: {err}");
        assert!(files_in(dir.path()).is_empty(), "{sig}: left behind: {:?}", files_in(dir.path()));
    }
    // To stdout: 130, and what was written has no manifest.
    let bg = Background::start("fb-export", &["--host", &urls[0], "-vv"], &[]);
    wait_until(LIMIT, "the first snapshot request", || bg.stderr_text().contains("/snapshot"));
    kill(Pid::from_raw(bg.pid()), Signal::SIGINT).unwrap();
    let (status, out, err) = bg.finish(LIMIT);
    assert_eq!(status, 130, "{err}");
    assert!(!has_manifest(&out));
}
