//! `--census` against real FeatureBase (`FEATUREBASE_BIN`, v3.35): what a backup answers,
//! decoded from its files by `fb-verify --census`, compared by `fb-manifest diff --census`
//! with what live clusters answer to PQL. Skipped with a message when `FEATUREBASE_BIN` is
//! unset. Run with `--nocapture --test-threads 1` to see the figures: exit codes, the
//! summary lines (`same census: N indexes, M figures agree`) and the time each step took.
//!
//! The data (deterministic, built by [`Data::build`] together with the figures it must
//! give): an unkeyed index `events` with every field type (set, mutex, bool, int with
//! negative values, decimal of scale 2 with negative values, timestamp in seconds with the
//! epoch 2000-01-01 and values on both sides of it, time with quantum YMD set across several
//! days, months and two years) over 52 shards; a keyed index `users` (keyed set, mutex,
//! bool, int); and an unkeyed index `clicks` whose fields have the names and types of some of
//! `events`' fields, so that one of its shards is a valid shard file for `events` too.
//!
//! One test, so the 3-node source cluster is started and loaded once:
//! 1. `fb-export -o` of the source; `fb-verify --census --json` of the archive agrees with
//!    the figures the data was built to give;
//! 2. `diff --census ARCHIVE http://source` exits 0;
//! 3. `fb-import` into a fresh 1-node cluster and a fresh 4-node cluster with replicas 3;
//!    `diff --census ARCHIVE http://restored` exits 0 for both;
//! 4. one `Clear()` on the 1-node cluster and one `Set()` on the 4-node cluster: the diff
//!    exits 1 and names exactly that index, field, view and row, and nothing else (nothing
//!    besides what differed before it, so that a failure of step 3 does not hide this one);
//! 5. a damaged backup whose bytes verify (a shard of `events` replaced by the shard of
//!    `clicks` with the same number, manifest rebuilt): `fb-verify` exits 0, and
//!    `diff --census DAMAGED http://source` exits 1 naming `events` figures only (and so does
//!    `diff --census DAMAGED ARCHIVE`, which needs no live side). A shard of the keyed index
//!    put in place of an `events` shard holds fields `events` does not have: the census
//!    refuses it (exit 65); its exit code is printed.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use fb_core::manifest::Manifest;
use fbkit_tests::*;
use serde_json::Value;

const SHARD_WIDTH: u64 = 1 << 20;
/// Shards of `events` (at least 50).
const EVENT_SHARDS: u64 = 52;
/// Records of `events` per shard.
const PER_SHARD: u64 = 3;
/// Keys of `users`.
const USER_KEYS: u64 = 150;
/// Shards of `clicks` (the same numbers as the first shards of `events`).
const CLICK_SHARDS: u64 = 8;
/// Records of `clicks` per shard (not `PER_SHARD`, so a swapped shard changes the count).
const CLICKS_PER_SHARD: u64 = 5;
/// 2000-01-01T00:00:00Z, the epoch of `events.ts`.
const TS_EPOCH_SECS: i64 = 946_684_800;
const CITIES: [&str; 5] = ["paris", "oslo", "lima", "kyoto", "quito"];

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// POST `body` to `url` + `path` (the body through stdin: loads exceed an argument's size);
/// the HTTP status and the answer.
fn post(url: &str, path: &str, body: &str) -> (u16, String) {
    let mut child = Command::new("curl")
        .args(["-s", "-m", "120", "-X", "POST", "-H", "Accept: application/json", "--data-binary", "@-"])
        .args(["-w", "\n%{http_code}", &format!("{url}{path}")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running curl");
    let mut stdin = child.stdin.take().expect("stdin");
    let data = body.as_bytes().to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().expect("curl");
    let _ = writer.join();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (answer, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), answer.to_string())
}

fn post_ok(url: &str, path: &str, body: &str) -> String {
    let (status, answer) = post(url, path, body);
    assert_eq!(status, 200, "POST {path} ({} bytes): {answer}", body.len());
    answer
}

/// A decimal of scale 2 from its hundredths, as PQL takes it (`-3.07`).
fn hundredths(v: i64) -> String {
    format!("{}{}.{:02}", if v < 0 { "-" } else { "" }, v.abs() / 100, v.abs() % 100)
}

/// The schema, the PQL that loads the data, and the figures the data must give.
struct Data {
    /// (path, body) to POST in order: indexes, fields, then the PQL loads.
    schema: Vec<(String, String)>,
    /// (index, PQL) loads.
    loads: Vec<(String, String)>,
    /// Records per index.
    records: BTreeMap<&'static str, u64>,
    /// (index, field, view, row as the diff prints it) → bits.
    bits: BTreeMap<(String, String, String, String), u64>,
    /// (index, field) → values (int: the value; decimal: hundredths; timestamp: Unix seconds).
    values: BTreeMap<(String, String), Vec<i128>>,
    /// Column of each `events` record, by record number.
    event_cols: Vec<u64>,
}

impl Data {
    fn bit(&mut self, index: &str, field: &str, view: &str, row: String) {
        *self.bits.entry((index.into(), field.into(), view.into(), row)).or_default() += 1;
    }

    fn value(&mut self, index: &str, field: &str, v: i128) {
        self.values.entry((index.into(), field.into())).or_default().push(v);
    }

    fn build() -> Data {
        let mut d = Data {
            schema: Vec::new(),
            loads: Vec::new(),
            records: BTreeMap::new(),
            bits: BTreeMap::new(),
            values: BTreeMap::new(),
            event_cols: Vec::new(),
        };
        let field = |index: &str, name: &str, opts: &str| (format!("/index/{index}/field/{name}"), opts.to_string());
        d.schema.push(("/index/events".into(), String::new()));
        d.schema.push(field("events", "s", r#"{"options":{"type":"set"}}"#));
        d.schema.push(field("events", "m", r#"{"options":{"type":"mutex"}}"#));
        d.schema.push(field("events", "b", r#"{"options":{"type":"bool"}}"#));
        d.schema.push(field("events", "i", r#"{"options":{"type":"int"}}"#));
        d.schema.push(field("events", "d", r#"{"options":{"type":"decimal","scale":2}}"#));
        d.schema.push(field(
            "events",
            "ts",
            r#"{"options":{"type":"timestamp","timeUnit":"s","epoch":"2000-01-01T00:00:00Z"}}"#,
        ));
        d.schema.push(field("events", "t", r#"{"options":{"type":"time","timeQuantum":"YMD"}}"#));
        d.schema.push(("/index/users".into(), r#"{"options":{"keys":true}}"#.into()));
        d.schema.push(field("users", "city", r#"{"options":{"type":"set","keys":true}}"#));
        d.schema.push(field("users", "tier", r#"{"options":{"type":"mutex"}}"#));
        d.schema.push(field("users", "vip", r#"{"options":{"type":"bool"}}"#));
        d.schema.push(field("users", "age", r#"{"options":{"type":"int"}}"#));
        d.schema.push(("/index/clicks".into(), String::new()));
        d.schema.push(field("clicks", "s", r#"{"options":{"type":"set"}}"#));
        d.schema.push(field("clicks", "m", r#"{"options":{"type":"mutex"}}"#));
        d.schema.push(field("clicks", "i", r#"{"options":{"type":"int"}}"#));

        // events: PER_SHARD records in each of EVENT_SHARDS shards.
        let mut q = String::new();
        for n in 0..EVENT_SHARDS * PER_SHARD {
            let (shard, k) = (n / PER_SHARD, n % PER_SHARD);
            let col = shard * SHARD_WIDTH + k * 65_537 + 11;
            d.event_cols.push(col);
            let row = n % 5 + 1;
            q += &format!("Set({col}, s={row}) ");
            d.bit("events", "s", "standard", row.to_string());
            if n % 4 == 0 {
                q += &format!("Set({col}, s=9) ");
                d.bit("events", "s", "standard", "9".into());
            }
            if n % 3 != 0 {
                q += &format!("Set({col}, m={}) ", n % 4);
                d.bit("events", "m", "standard", (n % 4).to_string());
            }
            if n % 5 != 4 {
                let b = n % 2 == 0;
                q += &format!("Set({col}, b={b}) ");
                d.bit("events", "b", "standard", u64::from(b).to_string());
            }
            if n % 7 != 6 {
                let i = (n as i64 - 80) * 1_001 - 7;
                q += &format!("Set({col}, i={i}) ");
                d.value("events", "i", i.into());
            }
            let dec = (n as i64 * 37) % 1_000 - 500;
            q += &format!("Set({col}, d={}) ", hundredths(dec));
            d.value("events", "d", dec.into());
            if n % 6 != 5 {
                // Some before the field's epoch, most after it.
                let secs = TS_EPOCH_SECS + (n as i64 - 10) * 5 * 86_400 + n as i64 * 3_607;
                let text = fb_core::census::format_timestamp(secs.into(), 1_000_000_000);
                q += &format!("Set({col}, ts=\"{text}\") ");
                d.value("events", "ts", secs.into());
            }
            // Time: 2 years, 4 months, 5 days each.
            let (y, mo, day, h) = (2023 + n % 2, 1 + n % 4, 1 + n % 5, n % 24);
            let row = n % 3 + 1;
            q += &format!("Set({col}, t={row}, {y}-{mo:02}-{day:02}T{h:02}:00) ");
            for view in [
                "standard".to_string(),
                format!("standard_{y}"),
                format!("standard_{y}{mo:02}"),
                format!("standard_{y}{mo:02}{day:02}"),
            ] {
                d.bit("events", "t", &view, row.to_string());
            }
        }
        d.records.insert("events", EVENT_SHARDS * PER_SHARD);
        d.loads.push(("events".into(), q));

        // users: keyed, USER_KEYS keys.
        let mut q = String::new();
        for k in 0..USER_KEYS {
            let key = format!("u{k:03}");
            let city = CITIES[(k % 5) as usize];
            q += &format!("Set(\"{key}\", city=\"{city}\") ");
            d.bit("users", "city", "standard", format!("{city:?}"));
            if k % 4 == 1 {
                let second = CITIES[((k + 2) % 5) as usize];
                q += &format!("Set(\"{key}\", city=\"{second}\") ");
                d.bit("users", "city", "standard", format!("{second:?}"));
            }
            if k % 10 != 0 {
                q += &format!("Set(\"{key}\", tier={}) ", k % 3);
                d.bit("users", "tier", "standard", (k % 3).to_string());
            }
            if k % 3 != 2 {
                let b = k % 2 == 1;
                q += &format!("Set(\"{key}\", vip={b}) ");
                d.bit("users", "vip", "standard", u64::from(b).to_string());
            }
            let age = k as i64 % 90 - 10;
            q += &format!("Set(\"{key}\", age={age}) ");
            d.value("users", "age", age.into());
        }
        d.records.insert("users", USER_KEYS);
        d.loads.push(("users".into(), q));

        // clicks: same field names as events (s, m, i), other values and more records.
        let mut q = String::new();
        for n in 0..CLICK_SHARDS * CLICKS_PER_SHARD {
            let (shard, k) = (n / CLICKS_PER_SHARD, n % CLICKS_PER_SHARD);
            let col = shard * SHARD_WIDTH + k * 40_009 + 5;
            let row = 20 + n % 3;
            q += &format!("Set({col}, s={row}) Set({col}, m={}) Set({col}, i={}) ", n % 2, 500 - n as i64 * 77);
            d.bit("clicks", "s", "standard", row.to_string());
            d.bit("clicks", "m", "standard", (n % 2).to_string());
            d.value("clicks", "i", (500 - n as i64 * 77).into());
        }
        d.records.insert("clicks", CLICK_SHARDS * CLICKS_PER_SHARD);
        d.loads.push(("clicks".into(), q));
        d
    }

    /// Create the schema and load the data into a cluster.
    fn load(&self, url: &str) {
        for (path, body) in &self.schema {
            post_ok(url, path, body);
        }
        for (index, q) in &self.loads {
            post_ok(url, &format!("/index/{index}/query"), q);
        }
    }

    fn bits_of(&self, index: &str, field: &str, view: &str, row: &str) -> u64 {
        self.bits.get(&(index.into(), field.into(), view.into(), row.into())).copied().unwrap_or(0)
    }
}

/// One tool run, timed.
fn timed(tool: &str, args: &[&str]) -> (Output, Duration) {
    let t0 = Instant::now();
    let out = run(tool, args, None);
    (out, t0.elapsed())
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What one `fb-manifest diff --census` said.
struct CensusDiff {
    code: i32,
    /// The `differs  ...` lines.
    differs: Vec<String>,
    /// The `not compared: ...` lines.
    not_compared: Vec<String>,
    /// The last line (`same census: ...` or `N census figures differ ...`).
    summary: String,
    stderr: String,
    took: Duration,
}

fn census_diff(a: &str, b: &str) -> CensusDiff {
    let (out, took) = timed("fb-manifest", &["diff", "--census", "--quiet", a, b]);
    let text = stdout(&out);
    let lines = |prefix: &str| text.lines().filter(|l| l.starts_with(prefix)).map(str::to_string).collect::<Vec<_>>();
    CensusDiff {
        code: code(&out),
        differs: lines("differs "),
        not_compared: lines("not compared: "),
        summary: text.lines().last().unwrap_or("(no output)").to_string(),
        stderr: stderr(&out),
        took,
    }
}

impl CensusDiff {
    /// Print what it said (all `differs` lines up to 15) under a title.
    fn show(&self, what: &str) {
        println!("{what}: exit {} in {:.1?}: {}", self.code, self.took, self.summary);
        for l in self.differs.iter().take(15) {
            println!("    {l}");
        }
        if self.differs.len() > 15 {
            println!("    ... {} more differs lines", self.differs.len() - 15);
        }
        for l in &self.not_compared {
            println!("    {l}");
        }
        for l in self.stderr.lines().filter(|l| !l.trim().is_empty()).take(5) {
            println!("    stderr: {l}");
        }
    }

    /// Expect exit 0 and "same census"; a failure message otherwise.
    fn expect_same(&self, what: &str) -> Option<String> {
        (self.code != 0 || !self.summary.starts_with("same census:")).then(|| {
            format!(
                "{what}: expected exit 0 and the same census, got exit {}: {}; differs: {:?}; stderr: {}",
                self.code,
                self.summary,
                self.differs,
                self.stderr.trim()
            )
        })
    }
}

/// The archive `entries` with the bytes of entry `from` put under the name `into`, written
/// with a rebuilt manifest to `file`.
fn swap_shard(entries: &[(String, Vec<u8>)], original: &Manifest, into: &str, from: &str, file: &Path) {
    let bytes = entries.iter().find(|(n, _)| n == from).unwrap_or_else(|| panic!("no entry {from}")).1.clone();
    let mut swapped = entries.to_vec();
    let slot = swapped.iter_mut().find(|(n, _)| n == into).unwrap_or_else(|| panic!("no entry {into}"));
    assert_ne!(slot.1, bytes, "{into} and {from} hold different bytes");
    slot.1 = bytes;
    std::fs::write(file, rebuild_archive(&swapped, original.source.clone())).unwrap();
}

/// Check the `fb-verify --census --json` census of the archive against the data's figures;
/// (figures checked, mismatches).
fn check_archive_census(census: &Value, data: &Data) -> (usize, Vec<String>) {
    let mut checked = 0;
    let mut bad = Vec::new();
    let mut check = |what: String, got: &Value, want: Value| {
        checked += 1;
        if *got != want {
            bad.push(format!("{what}: archive census says {got}, loaded {want}"));
        }
    };
    let idx = &census["indexes"];
    for (index, n) in &data.records {
        check(format!("{index} records"), &idx[index]["records"], (*n).into());
    }
    check("users keys".into(), &idx["users"]["keys"], USER_KEYS.into());
    for ((index, field, view, row), n) in &data.bits {
        // The census JSON names a keyed row by its key, an unkeyed one by its ID (as text: a
        // JSON object key).
        let key = row.trim_matches('"');
        check(
            format!("{index}/{field} view {view} row {row} bits"),
            &idx[index]["fields"][field]["views"][view][key],
            (*n).into(),
        );
    }
    for (index, field) in [("events", "t"), ("events", "s"), ("users", "city")] {
        let want = data.bits.keys().filter(|(i, f, _, _)| i == index && f == field).count();
        let views = idx[index]["fields"][field]["views"].as_object().cloned().unwrap_or_default();
        let got: usize = views.values().map(|rows| rows.as_object().map_or(0, |r| r.len())).sum();
        check(format!("{index}/{field} (view, row) pairs"), &got.into(), want.into());
    }
    for ((index, field), vals) in &data.values {
        let f = &idx[index]["fields"][field];
        let s = |v: i128| Value::String(v.to_string());
        check(format!("{index}/{field} count"), &f["count"], vals.len().into());
        check(format!("{index}/{field} sum"), &f["sum"], s(vals.iter().sum()));
        check(format!("{index}/{field} min"), &f["min"], s(*vals.iter().min().unwrap()));
        check(format!("{index}/{field} max"), &f["max"], s(*vals.iter().max().unwrap()));
    }
    (checked, bad)
}

/// Index and field options from `GET /schema`, keyed `index` and `index/field`.
fn schema_options(url: &str) -> BTreeMap<String, Value> {
    let out = Command::new("curl").args(["-s", "-m", "30", &format!("{url}/schema")]).output().expect("curl");
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let mut opts = BTreeMap::new();
    for index in doc["indexes"].as_array().cloned().unwrap_or_default() {
        let name = index["name"].as_str().unwrap_or("").to_string();
        for field in index["fields"].as_array().cloned().unwrap_or_default() {
            opts.insert(format!("{name}/{}", field["name"].as_str().unwrap_or("")), field["options"].clone());
        }
        opts.insert(name, index["options"].clone());
    }
    opts
}

/// The options that differ, as `index/field key: a -> b`.
fn option_differences(a: &BTreeMap<String, Value>, b: &BTreeMap<String, Value>) -> Vec<String> {
    let mut out = Vec::new();
    for (name, x) in a {
        let y = b.get(name).cloned().unwrap_or(Value::Null);
        for (k, v) in x.as_object().into_iter().flatten() {
            if y.get(k) != Some(v) {
                out.push(format!("{name} {k}: {v} -> {}", y.get(k).map_or("(absent)".to_string(), Value::to_string)));
            }
        }
    }
    out
}

#[test]
fn real_census_of_export_and_restores_and_a_swapped_shard() {
    let Some(bin) = featurebase_bin() else { return };
    bin_dir();
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let mut failures: Vec<String> = Vec::new();
    let data = Data::build();

    let t0 = Instant::now();
    let src = real_cluster(&bin, "cen", 3, 2);
    let started_in = t0.elapsed();
    let t0 = Instant::now();
    data.load(src.url());
    println!(
        "source: 3 nodes replicas 2 started in {started_in:.1?}; loaded {} events ({EVENT_SHARDS} shards), {USER_KEYS} users, {} clicks in {:.1?}",
        data.event_cols.len(),
        data.records["clicks"],
        t0.elapsed()
    );
    let src_url = src.url().to_string();

    // 1. The export and its census.
    let archive = t.join("export.tar");
    let (out, took) = timed("fb-export", &["--host", &src_url, "-q", "-o", path_str(&archive)]);
    assert_eq!(code(&out), 0, "fb-export: {}", stderr(&out));
    let entries = tar_entries(&std::fs::read(&archive).unwrap());
    let shards = |index: &str| -> Vec<String> {
        entries.iter().map(|(n, _)| n).filter(|n| n.starts_with(&format!("indexes/{index}/shards/"))).cloned().collect()
    };
    println!(
        "fb-export: exit 0 in {took:.1?}: {} entries, {} bytes; shards: events {}, users {}, clicks {}",
        entries.len(),
        std::fs::metadata(&archive).unwrap().len(),
        shards("events").len(),
        shards("users").len(),
        shards("clicks").len()
    );
    assert!(shards("events").len() >= 50, "at least 50 shards of events: {:?}", shards("events"));

    let (out, took) = timed("fb-verify", &["--census", "--json", path_str(&archive)]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    println!(
        "fb-verify --census --json of the archive: exit {} in {took:.1?}, verdict {}",
        code(&out),
        report["verdict"]
    );
    if code(&out) != 0 {
        failures.push(format!("fb-verify --census of the export: exit {}: {}", code(&out), stderr(&out)));
    }
    let (checked, bad) = check_archive_census(&report["census"], &data);
    println!("archive census vs the data loaded: {checked} figures checked, {} wrong", bad.len());
    for b in bad.iter().take(20) {
        println!("    {b}");
    }
    failures.extend(bad);
    let ev = &report["census"]["indexes"]["events"]["fields"];
    println!(
        "    e.g. events/i count {} sum {} min {} max {}; events/d sum {} min {} max {} (hundredths); events/ts min {} max {} (Unix s); events/t views {}",
        ev["i"]["count"],
        ev["i"]["sum"],
        ev["i"]["min"],
        ev["i"]["max"],
        ev["d"]["sum"],
        ev["d"]["min"],
        ev["d"]["max"],
        ev["ts"]["min"],
        ev["ts"]["max"],
        ev["t"]["views"].as_object().map_or(0, |v| v.len())
    );

    // 2. The archive against the source cluster.
    let a = archive.to_string_lossy().into_owned();
    let d = census_diff(&a, &src_url);
    d.show("diff --census ARCHIVE http://source (3n r2)");
    failures.extend(d.expect_same("archive vs source"));

    // 3. Restores: 1 node, 4 nodes replicas 3.
    let mut restored = Vec::new();
    for (name, nodes, replicas) in [("cen1n", 1, 1), ("cen4n", 4, 3)] {
        let t0 = Instant::now();
        let dst = real_cluster(&bin, name, nodes, replicas);
        let up = t0.elapsed();
        let (out, took) = timed("fb-import", &["--host", dst.url(), "-s", &a]);
        println!(
            "{nodes} node(s) replicas {replicas}: started in {up:.1?}; fb-import exit {} in {took:.1?}",
            code(&out)
        );
        if code(&out) != 0 {
            failures.push(format!("fb-import into {nodes}n r{replicas}: exit {}: {}", code(&out), stderr(&out)));
            continue;
        }
        let d = census_diff(&a, dst.url());
        d.show(&format!("diff --census ARCHIVE http://restored ({nodes}n r{replicas})"));
        if let Some(f) = d.expect_same(&format!("archive vs restored {nodes}n r{replicas}")) {
            // Name the field options the restore changed: the likely cause.
            let changed = option_differences(&schema_options(&src_url), &schema_options(dst.url()));
            println!("    field options the restore changed: {changed:?}");
            failures.push(format!("{f}; field options the restore changed: {changed:?}"));
        }
        restored.push((nodes, replicas, dst, d.differs));
    }

    // 4. One Clear() on the 1-node cluster, one Set() on the 4-node cluster.
    // Each diff must name exactly the figure changed, besides what already differed before.
    for (nodes, replicas, dst, before) in &restored {
        let (index, pql, expected) = if *nodes == 1 {
            // The first record has row 9 of events.s.
            let n = data.bits_of("events", "s", "standard", "9");
            (
                "events",
                format!("Clear({}, s=9)", data.event_cols[0]),
                format!("differs  index events field s view standard row 9: bits {n} != {}", n - 1),
            )
        } else {
            // A user that is not in paris yet.
            let k = (0..USER_KEYS).find(|k| k % 5 != 0 && (k % 4 != 1 || (k + 2) % 5 != 0)).unwrap();
            let n = data.bits_of("users", "city", "standard", "\"paris\"");
            (
                "users",
                format!("Set(\"u{k:03}\", city=\"paris\")"),
                format!("differs  index users field city view standard row \"paris\": bits {n} != {}", n + 1),
            )
        };
        let answer = post_ok(dst.url(), &format!("/index/{index}/query"), &pql);
        println!("{nodes}n r{replicas}: {pql} on {index} answered {}", answer.trim());
        let d = census_diff(&a, dst.url());
        d.show(&format!("after {pql}: diff --census ARCHIVE http://restored ({nodes}n r{replicas})"));
        let new: Vec<&String> = d.differs.iter().filter(|l| !before.contains(l)).collect();
        let gone: Vec<&String> = before.iter().filter(|l| !d.differs.contains(l)).collect();
        if d.code != 1 || new != vec![&expected] || !gone.is_empty() {
            failures.push(format!(
                "after {pql} on {nodes}n r{replicas}: expected exit 1 and exactly {expected:?} more than before, got exit {} and {new:?} more, {gone:?} fewer ({}; stderr {})",
                d.code,
                d.summary,
                d.stderr.trim()
            ));
        }
    }
    drop(restored);

    // 5. A damaged backup whose bytes verify: events' shard 0005 holds clicks' shard 0005.
    let original = Manifest::parse(&entries.last().expect("entries").1).expect("the export's manifest");
    let pick = |index: &str, number: u64| -> String {
        shards(index)
            .into_iter()
            .find(|n| n.rsplit('/').next().and_then(|s| s.parse::<u64>().ok()) == Some(number))
            .unwrap_or_else(|| panic!("{index} has no shard {number}: {:?}", shards(index)))
    };
    let (into, from) = (pick("events", 5), pick("clicks", 5));
    let damaged = t.join("damaged.tar");
    swap_shard(&entries, &original, &into, &from, &damaged);
    let dmg = damaged.to_string_lossy().into_owned();
    let (out, took) = timed("fb-verify", &[&dmg]);
    println!("damaged ({into} <- {from}, manifest rebuilt): fb-verify exit {} in {took:.1?}", code(&out));
    if code(&out) != 0 {
        failures.push(format!(
            "fb-verify of the damaged backup (bytes consistent): exit {}: {}",
            code(&out),
            stderr(&out)
        ));
    }
    let (out, took) = timed("fb-verify", &["--deep", &dmg]);
    println!("damaged: fb-verify --deep exit {} in {took:.1?}", code(&out));
    for (what, other) in [("http://source", src_url.as_str()), ("ARCHIVE", a.as_str())] {
        let d = census_diff(&dmg, other);
        d.show(&format!("diff --census DAMAGED {what}"));
        let outside: Vec<&String> = d
            .differs
            .iter()
            .filter(|l| !(l.starts_with("differs  index events ") || l.starts_with("differs  index events:")))
            .collect();
        if d.code != 1 || d.differs.is_empty() || !outside.is_empty() {
            failures.push(format!(
                "diff --census DAMAGED {what}: expected exit 1 naming events figures only, got exit {} ({}); outside events: {outside:?}; stderr {}",
                d.code,
                d.summary,
                d.stderr.trim()
            ));
        }
    }
    // A shard of the keyed index in place of an events shard: bitmaps of fields events does
    // not have; the census must not take it (any exit but 0).
    let users_shard = shards("users").into_iter().next().expect("a users shard");
    let foreign = t.join("foreign.tar");
    swap_shard(&entries, &original, &pick("events", 6), &users_shard, &foreign);
    let d = census_diff(&foreign.to_string_lossy(), &src_url);
    d.show(&format!("diff --census (events shard 6 <- {users_shard}) http://source"));
    if d.code == 0 {
        failures.push(format!("a users shard in place of an events shard: diff --census exit 0 ({})", d.summary));
    }

    drop(src);
    println!("real_census_of_export_and_restores_and_a_swapped_shard: {:.1?}", started.elapsed());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
