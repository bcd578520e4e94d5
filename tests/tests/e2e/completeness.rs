//! A backup that says OK must restore (contract §5): what must be in a backup follows from
//! its schema, and a schema must be one FeatureBase accepts. Archives that break either rule
//! but are self-consistent (a manifest rebuilt over them) are caught by `fb-verify --deep`
//! and `fb-import --dry-run` (exit 1, naming the entry), and `fb-manifest diff --content`
//! sees a schema number that changed its text.

use fb_core::manifest::Manifest;
use fbkit_tests::*;

/// A self-consistent archive of `entries` (MANIFEST.json recomputed over them).
fn rebuild(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    rebuild_archive(entries, serde_json::Map::new())
}

fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_string_lossy().into_owned()
}

/// The keyed index of the demo data set and one of its key partitions.
fn a_key_partition(entries: &[(String, Vec<u8>)]) -> String {
    entries.iter().map(|(n, _)| n.clone()).find(|n| n.contains("/translate/")).expect("the demo has a keyed index")
}

#[test]
fn an_archive_without_a_key_store_its_schema_requires_fails_deep_checks() {
    let c = demo(3, 2);
    let archive = export(&c.urls()[0], &[]);
    let entries = tar_entries(&archive);
    let partitions = entries.iter().filter(|(n, _)| n.contains("/translate/")).count();
    assert!(partitions >= 256, "every key partition of the keyed index is exported: {partitions}");
    let dropped = a_key_partition(&entries);
    let damaged = rebuild(&entries.iter().filter(|(n, _)| *n != dropped).cloned().collect::<Vec<_>>());
    // The bytes verify: only the deep check knows what the schema requires.
    assert_eq!(code(&run("fb-verify", &["-q", "-"], Some(&damaged))), 0);
    let out = run("fb-verify", &["--deep", "-"], Some(&damaged));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(report.contains(&dropped) && report.contains("keyed"), "names the missing store: {report}");
    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir, "b.tar", &damaged);
    let out = run("fb-import", &["--dry-run", "-q", "-s", &file], None);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains(&dropped), "{}", stderr(&out));
    // Into a cluster: refused before anything is sent.
    let target = empty(1, 1);
    let out = run("fb-import", &["--host", &target.urls()[0], "-q", "-s", &file], None);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("nothing was sent"), "{}", stderr(&out));
}

/// The demo schema with `doc` applied to the first field's options.
fn schema_with(entries: &[(String, Vec<u8>)], min: &str) -> Vec<u8> {
    let text = String::from_utf8(entries.iter().find(|(n, _)| n == "schema").unwrap().1.clone()).unwrap();
    // Add a decimal field to the first index's field list, with the bound as given.
    let at = text.find("\"fields\": [").expect("fields list") + "\"fields\": [".len();
    let field = format!(
        "{{\"name\": \"price\", \"options\": {{\"type\": \"decimal\", \"base\": 0, \"scale\": 2, \"bitDepth\": 0, \"min\": {min}, \"max\": 92233720368547758.07, \"keys\": false}}}},"
    );
    format!("{}{field}{}", &text[..at], &text[at..]).into_bytes()
}

#[test]
fn a_schema_upstream_would_refuse_fails_deep_checks_and_number_text_counts() {
    let c = demo(1, 1);
    let archive = export(&c.urls()[0], &[]);
    let entries = tar_entries(&archive);
    let with_schema = |schema: Vec<u8>| -> Vec<u8> {
        rebuild(
            &entries
                .iter()
                .map(|(n, d)| if n == "schema" { (n.clone(), schema.clone()) } else { (n.clone(), d.clone()) })
                .collect::<Vec<_>>(),
        )
    };
    let exact = with_schema(schema_with(&entries, "-92233720368547758.08"));
    let floated = with_schema(schema_with(&entries, "-9.223372036854776e+16"));
    let out = run("fb-verify", &["--deep", "-q", "-"], Some(&exact));
    assert_eq!(code(&out), 0, "the exact decimal text passes: {}", stderr(&out));
    let out = run("fb-verify", &["--deep", "-"], Some(&floated));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(report.contains("price") && report.contains("exponent"), "names the field and why: {report}");
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (write(&dir, "exact.tar", &exact), write(&dir, "floated.tar", &floated));
    let out = run("fb-import", &["--dry-run", "-q", "-s", &b], None);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let out = run("fb-import", &["--dry-run", "-q"], Some(&floated));
    assert_eq!(code(&out), 1, "from a pipe too: {}", stderr(&out));
    // A float re-encoding is a change of content, and a content diff says what it compared.
    let out = run("fb-manifest", &["diff", "--content", &a, &b], None);
    assert_eq!(code(&out), 1, "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("schema"));
}

const ADMIN: &str = "admin-token-for-tests";
const READER: &str = "reader-token-for-tests";

fn auth_demo() -> RunningCluster {
    spawn(ClusterConfig {
        nodes: 2,
        replicas: 2,
        demo: true,
        auth_token: Some(ADMIN.into()),
        read_tokens: vec![fb_devcluster::ReadToken { token: READER.into(), indexes: vec!["events".into()] }],
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn a_token_without_admin_rights_is_refused_before_anything_is_written_or_sent() {
    let c = auth_demo();
    let url = c.urls()[0].clone();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("b.tar");
    // The reader sees a schema with only "events": without the check this is a backup of it.
    let out = run("fb-export", &["--host", &url, "-q", "--auth-token", READER, "-o", target.to_str().unwrap()], None);
    assert_eq!(code(&out), 77, "{}", stderr(&out));
    assert!(stderr(&out).contains("not an admin token"), "{}", stderr(&out));
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "nothing written");
    let out = run("fb-manifest", &["--host", &url, "-q", "--auth-token", READER], None);
    assert_eq!(code(&out), 77, "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    let archive = export(&url, &["--auth-token", ADMIN]);
    let manifest = Manifest::parse(&tar_entries(&archive).last().unwrap().1).unwrap();
    assert_eq!(manifest.source["replicas"], 2, "the replica count the cluster reports");
    let target = auth_demo_empty();
    let out = run("fb-import", &["--host", &target.urls()[0], "-q", "--auth-token", READER], Some(&archive));
    assert_eq!(code(&out), 77, "{}", stderr(&out));
    assert!(stderr(&out).contains("nothing was written or sent"), "{}", stderr(&out));
    let out = run("fb-import", &["--host", &target.urls()[0], "-q", "--auth-token", ADMIN], Some(&archive));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}

fn auth_demo_empty() -> RunningCluster {
    spawn(ClusterConfig {
        nodes: 1,
        replicas: 1,
        auth_token: Some(ADMIN.into()),
        read_tokens: vec![fb_devcluster::ReadToken { token: READER.into(), indexes: vec!["events".into()] }],
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn no_backup_or_restore_across_a_running_delete() {
    let c = demo(2, 1);
    let url = c.urls()[0].clone();
    let archive = export(&url, &[]);
    let delete = fb_devcluster::ActiveQuery { index: "users".into(), pql: "Delete(Row(color=\"red\"))".into() };
    c.set_active_queries(std::slice::from_ref(&delete));
    let out = run("fb-export", &["--host", &url, "-q"], None);
    assert_eq!(code(&out), 78, "{}", stderr(&out));
    assert!(stderr(&out).contains("Delete(Row(color"), "names the query: {}", stderr(&out));
    assert!(out.stdout.is_empty());
    // Other queries do not matter.
    c.set_active_queries(&[fb_devcluster::ActiveQuery { index: "users".into(), pql: "Count(All())".into() }]);
    assert!(export(&url, &[]) == archive);
    let target = empty(1, 1);
    target.set_active_queries(&[delete]);
    let out = run("fb-import", &["--host", &target.urls()[0], "-q"], Some(&archive));
    assert_eq!(code(&out), 78, "{}", stderr(&out));
    assert!(stderr(&out).contains("nothing was sent") || stderr(&out).contains("Delete"), "{}", stderr(&out));
}

#[test]
fn a_degraded_cluster_fails_the_backup_of_keys_and_says_why() {
    let c = spawn(ClusterConfig {
        nodes: 3,
        replicas: 2,
        demo: true,
        degraded_after: std::time::Duration::from_millis(500),
        ..Default::default()
    })
    .unwrap();
    let url = c.urls()[0].clone();
    let healthy = tar_entries(&export(&url, &[])).len();
    c.add_fault("down@2").unwrap();
    wait_until(std::time::Duration::from_secs(30), "the cluster notices", || c.state() == "DEGRADED");
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("b.tar");
    let out = run("fb-export", &["--host", &url, "-q", "-o", target.to_str().unwrap()], None);
    assert_eq!(code(&out), 69, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("DEGRADED") && err.contains("key translation") && err.contains("UNKNOWN"), "{err}");
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "nothing at the target");
    // The unkeyed index is still served by the live replicas.
    let out = run("fb-export", &["--host", &url, "-q", "--index", "events"], None);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(code(&run("fb-verify", &["--deep", "-q", "-"], Some(&out.stdout))), 0);
    // The node back: complete again.
    c.clear_faults();
    wait_until(std::time::Duration::from_secs(30), "the cluster is NORMAL", || c.state() == "NORMAL");
    assert_eq!(tar_entries(&export(&url, &[])).len(), healthy);
}

#[test]
fn a_frozen_primary_behind_redirects_is_waited_for_within_the_retry_period() {
    let c = spawn(ClusterConfig {
        nodes: 3,
        replicas: 2,
        demo: true,
        degraded_after: std::time::Duration::from_secs(60),
        ..Default::default()
    })
    .unwrap();
    let url = c.urls()[0].clone();
    let reference = export(&url, &[]);
    // Node 1 frozen: still listed STARTED, so the other owners redirect its partitions to it.
    c.add_fault("hang@1").unwrap();
    let args = ["--host", url.as_str(), "-v", "--progress", "never", "--header-timeout", "1s", "--retry-period", "30s"];
    let bg = Background::start("fb-export", &args, &[]);
    wait_until(std::time::Duration::from_secs(60), "a timeout on the frozen node", || {
        bg.stderr_text().contains("--header-timeout")
    });
    c.clear_faults(); // thawed within --retry-period
    let (status, out, err) = bg.finish(std::time::Duration::from_secs(120));
    assert_eq!(status, 0, "{err}");
    assert!(out == reference, "the export after the thaw is complete and identical");
    // Frozen for longer than --retry-period: a clean failure, no manifest.
    c.add_fault("hang@1").unwrap();
    let out = run("fb-export", &["--host", &url, "-q", "--header-timeout", "1s", "--retry-period", "3s"], None);
    assert_eq!(code(&out), 69, "{}", stderr(&out));
    assert!(!out.stdout.windows(13).any(|w| w == b"MANIFEST.json"));
}
