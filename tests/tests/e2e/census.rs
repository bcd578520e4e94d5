//! The census (`fb-verify --census`, `fb-manifest diff --census`) on data it has not made.
//!
//! Always run: the upstream fixture (files real FeatureBase wrote, and the answers its
//! cluster gave to `queries.json`) is the oracle for the archive decoder. Each recorded
//! query a census figure covers is mapped to that figure; the test fails if a figure
//! differs, and also if fewer queries are covered than listed here, so it cannot pass by
//! covering nothing. Covered: `Count(All())`, `Count(Row(f=r))` (ID, bool or key),
//! `Row(f=r)` (its column or key count), `TopN(f)` (every row's count), `Sum(field=f)`
//! (value and count), `Min(field=f)` and `Max(field=f)` (value), and a time range that spans
//! exactly one month (upstream reads that month's view alone). Not covered: a range over
//! several views (`Count(Row(ts=2, from=2023-01-05…, to=2023-02-10…))` unions them; the
//! census counts each view apart) and a value condition (`Row(age > 40)`).
//!
//! Against fb-devcluster (archive against archive; the devcluster answers no PQL, and a
//! live side answered by fbkit's own decoder would check the decoder against itself): the
//! census of an export equals the census of its extracted directory; a shard of one index
//! replaced by a valid shard of another, with the manifest rebuilt, passes `fb-verify` but
//! not `diff --census`, which names the figures.

use std::path::Path;

use serde_json::Value;

use super::interop::fixture;
use fbkit_tests::*;

fn census_json(args: &[&str]) -> Value {
    let mut all = vec!["--census", "--json"];
    all.extend_from_slice(args);
    let out = run("fb-verify", &all, None);
    assert_eq!(code(&out), 0, "fb-verify {all:?}: {}", stderr(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("fb-verify --json");
    doc["census"].clone()
}

/// The figure a recorded query's answer is compared with, and the answer's number(s).
/// `None` when no census figure covers the query.
fn covered(census: &Value, index: &str, query: &str, response: &Value) -> Option<Vec<(String, Value, Value)>> {
    let idx = &census["indexes"][index];
    let result = &response["results"][0];
    let arg = |q: &str, head: &str| q.strip_prefix(head).and_then(|r| r.strip_suffix(')')).map(str::to_string);
    let row_of = |spec: &str| -> Option<(String, String)> {
        let (f, r) = spec.split_once('=')?;
        if spec.contains(',') || spec.contains('>') || spec.contains('<') {
            return None;
        }
        let r = match r {
            "true" => "1".to_string(),
            "false" => "0".to_string(),
            r => r.trim_matches('"').to_string(),
        };
        Some((f.to_string(), r))
    };
    let bits = |f: &str, r: &str| idx["fields"][f]["views"]["standard"][r].clone();
    if query == "Count(All())" {
        return Some(vec![(query.into(), idx["records"].clone(), result.clone())]);
    }
    if let Some(spec) = arg(query, "Count(Row(").and_then(|s| s.strip_suffix(')').map(str::to_string)) {
        if let Some(view) = one_view(&spec) {
            let (f, r) = row_of(spec.split(',').next()?)?;
            return Some(vec![(
                query.into(),
                idx["fields"][f.as_str()]["views"][view.as_str()][r.as_str()].clone(),
                result.clone(),
            )]);
        }
        let (f, r) = row_of(&spec)?;
        return Some(vec![(query.into(), bits(&f, &r), result.clone())]);
    }
    if let Some(spec) = arg(query, "Row(") {
        let (f, r) = row_of(&spec)?;
        let n = result["columns"].as_array()?.len() + result["keys"].as_array().map_or(0, Vec::len);
        return Some(vec![(query.into(), bits(&f, &r), Value::from(n))]);
    }
    if let Some(f) = arg(query, "TopN(") {
        let pairs = result.as_array()?;
        let keyed = pairs.iter().any(|p| p["key"].as_str().is_some_and(|k| !k.is_empty()));
        return Some(
            pairs
                .iter()
                .map(|p| {
                    let r = if keyed { p["key"].as_str().unwrap_or_default().to_string() } else { p["id"].to_string() };
                    (format!("{query} row {r}"), bits(&f, &r), p["count"].clone())
                })
                .collect(),
        );
    }
    for (head, figure) in [("Sum(field=", "sum"), ("Min(field=", "min"), ("Max(field=", "max")] {
        if let Some(f) = arg(query, head) {
            let field = &idx["fields"][f.as_str()];
            // The census writes value figures as exact decimal strings.
            let ours = Value::from(field[figure].as_str()?.parse::<i64>().ok()?);
            let mut out = vec![(query.to_string(), ours, result["value"].clone())];
            if figure == "sum" {
                out.push((format!("{query} count"), field["count"].clone(), result["count"].clone()));
            }
            return Some(out);
        }
    }
    None
}

/// The time view a `f=r, from=A, to=B` range reads when it spans exactly one month or one
/// day (upstream then reads that view alone), e.g. `standard_202202`.
fn one_view(spec: &str) -> Option<String> {
    let from = spec.split(", from=").nth(1)?.split(',').next()?;
    let to = spec.split(", to=").nth(1)?;
    let ymd = |t: &str| -> Option<(u32, u32, u32)> {
        Some((t.get(0..4)?.parse().ok()?, t.get(5..7)?.parse().ok()?, t.get(8..10)?.parse().ok()?))
    };
    let ((y, m, d), (y2, m2, d2)) = (ymd(from)?, ymd(to)?);
    if !from.ends_with("T00:00") || !to.ends_with("T00:00") || d != 1 || d2 != 1 {
        return None;
    }
    let next = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    (next == (y2, m2)).then(|| format!("standard_{y:04}{m:02}"))
}

#[test]
fn fixture_census_equals_every_recorded_answer_it_covers() {
    let dir = fixture();
    let queries: Vec<Value> =
        serde_json::from_slice(&std::fs::read(dir.join("queries.json")).expect("queries.json")).expect("json");
    let tar = dir.join("backup.tar");
    // Upstream's backups carry no manifest: verify against the one fb-manifest computes.
    let manifest = tempfile::NamedTempFile::new().expect("tmp");
    let out = run("fb-manifest", &[tar.to_str().unwrap()], None);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    std::fs::write(manifest.path(), &out.stdout).expect("write manifest");
    let m = manifest.path().to_str().unwrap();
    let from_tar = census_json(&["--manifest", m, tar.to_str().unwrap()]);
    let from_dir = census_json(&["--manifest", m, dir.join("backup").to_str().unwrap()]);
    assert_eq!(from_tar, from_dir, "the backuptar file and the backup directory hold the same data");

    let (mut covered_n, mut not_covered) = (0, Vec::new());
    for q in &queries {
        let (index, query) = (q["index"].as_str().unwrap(), q["query"].as_str().unwrap());
        match covered(&from_tar, index, query, &q["response"]) {
            None => not_covered.push(query.to_string()),
            Some(checks) => {
                covered_n += 1;
                for (what, ours, theirs) in checks {
                    println!("{index}: {what}: census {ours}, cluster {theirs}");
                    assert_eq!(ours, theirs, "{index}: {what}");
                }
            }
        }
    }
    println!("covered {covered_n} of {} queries; not covered: {not_covered:?}", queries.len());
    assert_eq!(
        not_covered,
        ["Count(Row(ts=2, from=2023-01-05T00:00, to=2023-02-10T00:00))", "Count(Row(age > 40))"]
            .iter()
            .filter(|q| queries.iter().any(|x| x["query"] == **q))
            .map(|q| q.to_string())
            .collect::<Vec<_>>()
    );
    assert!(covered_n >= 13, "only {covered_n} queries covered");
    // The existence count and the keys agree with what the fixture README says was loaded.
    assert_eq!(from_tar["indexes"]["users"]["keys"], 400);
    assert_eq!(from_tar["indexes"]["events"]["keys"], Value::Null);
}

/// Replace the bytes of entry `name` in an fbkit archive by `with`, and rebuild its
/// manifest (the last entry) so that the bytes verify.
fn replace_entry(archive: &[u8], name: &str, with: &[u8]) -> Vec<u8> {
    let entries: Vec<(String, Vec<u8>)> =
        tar_entries(archive).into_iter().map(|(n, d)| if n == name { (n, with.to_vec()) } else { (n, d) }).collect();
    rebuild_archive(&entries, serde_json::Map::new())
}

#[test]
fn a_shard_swapped_between_indexes_verifies_but_fails_the_census() {
    let cluster = demo(1, 1);
    let archive = export(&cluster.urls()[0], &[]);
    let tmp = tempfile::tempdir().expect("tmp");
    let good = tmp.path().join("good.tar");
    std::fs::write(&good, &archive).expect("write");

    let entries = tar_entries(&archive);
    let shard = |prefix: &str| {
        entries.iter().find(|(n, _)| n.starts_with(prefix) && n.contains("/shards/")).cloned().expect("a shard")
    };
    let indexes: Vec<String> = entries
        .iter()
        .filter_map(|(n, _)| n.strip_prefix("indexes/").and_then(|r| r.split_once("/shards/")).map(|x| x.0.to_string()))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert!(indexes.len() >= 2, "the demo has two indexes with shards: {indexes:?}");
    let (victim, donor) = (shard(&format!("indexes/{}/", indexes[0])), shard(&format!("indexes/{}/", indexes[1])));
    let damaged = tmp.path().join("damaged.tar");
    std::fs::write(&damaged, replace_entry(&archive, &victim.0, &donor.1)).expect("write");

    let verified = run("fb-verify", &["--deep", damaged.to_str().unwrap()], None);
    assert_eq!(code(&verified), 0, "the damaged archive's bytes verify: {}", stderr(&verified));

    let same = run("fb-manifest", &["diff", "--census", good.to_str().unwrap(), good.to_str().unwrap()], None);
    assert_eq!(code(&same), 0, "{}", stderr(&same));
    let diff = run("fb-manifest", &["diff", "--census", good.to_str().unwrap(), damaged.to_str().unwrap()], None);
    let text = String::from_utf8_lossy(&diff.stdout).to_string() + &stderr(&diff);
    println!("{victim_name} replaced by {donor_name}:\n{text}", victim_name = victim.0, donor_name = donor.0);
    // The donor's bitmaps name fields the victim's index does not have, or move its figures.
    assert!(matches!(code(&diff), 1 | 65), "exit {}: {text}", code(&diff));
    assert!(text.contains(&indexes[0]), "names the damaged index: {text}");

    // The census of the export equals the census of the same backup extracted.
    let dir = tmp.path().join("x");
    std::fs::create_dir(&dir).expect("mkdir");
    let out = sh(&format!("tar -xf {} -C {}", good.display(), dir.display()), Path::new("."));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let d = run("fb-manifest", &["diff", "--census", good.to_str().unwrap(), dir.to_str().unwrap()], None);
    assert_eq!(code(&d), 0, "{}{}", String::from_utf8_lossy(&d.stdout), stderr(&d));
}

/// A timestamp field with its own epoch survives a restore: fb-devcluster, like upstream,
/// drops `epoch` from `POST /schema`, so fb-import must create the field through the field
/// API. Checked by the restored schema's content (the census of an empty field would not
/// see it).
#[test]
fn a_restore_keeps_a_timestamp_fields_epoch() {
    let src = empty(1, 1);
    let url = &src.urls()[0];
    let dir = tempfile::tempdir().expect("tmp");
    let setup = format!(
        "set -e
         curl -sf -X POST {url}/index/ev -d '{{}}' >/dev/null
         curl -sf -X POST {url}/index/ev/field/at -d '{{\"options\":{{\"type\":\"timestamp\",\"epoch\":\"2000-01-01T00:00:00Z\",\"timeUnit\":\"ms\"}}}}' >/dev/null"
    );
    let out = sh(&setup, dir.path());
    assert_eq!(code(&out), 0, "creating the field: {}", stderr(&out));
    let archive = export(url, &[]);
    let tar = dir.path().join("b.tar");
    std::fs::write(&tar, &archive).expect("write");
    let dst = empty(2, 1);
    let imported = run("fb-import", &["--host", &dst.urls()[0], "-q", "-s", tar.to_str().unwrap()], None);
    assert_eq!(code(&imported), 0, "{}", stderr(&imported));
    let schema = sh(&format!("curl -sf {}/schema", dst.urls()[0]), dir.path());
    let text = String::from_utf8_lossy(&schema.stdout);
    assert!(text.contains("2000-01-01T00:00:00Z"), "the restored field keeps its epoch: {text}");
    let diff = run("fb-manifest", &["diff", "--content", tar.to_str().unwrap(), &dst.urls()[0]], None);
    assert_eq!(code(&diff), 0, "{}{}", String::from_utf8_lossy(&diff.stdout), stderr(&diff));
}
