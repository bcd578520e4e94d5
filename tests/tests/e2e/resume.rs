//! A restore that broke off can be finished with the tools (contract §3): the error names the
//! command to run, `fb-import --resume` sends only what the target lacks or holds
//! differently, `--force` over a half-restored cluster works too, and a target whose schema
//! is not the backup's is refused (78).

use std::time::Duration;

use fbkit_tests::*;

/// "…; N entries were on the target already, B bytes sent" from fb-import's summary.
fn resumed(stderr: &str) -> (u64, u64) {
    let tail = stderr.rsplit("; ").next().unwrap_or("");
    let nums: Vec<u64> = tail.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    (nums.first().copied().unwrap_or(0), nums.get(1).copied().unwrap_or(0))
}

fn finish_and_check(url: &str, file: &str, what: &str) -> (u64, u64) {
    let out = run("fb-import", &["--host", url, "--resume", "-s", file], None);
    assert_eq!(code(&out), 0, "{what}: --resume: {}", stderr(&out));
    let diff = run("fb-manifest", &["diff", "--content", file, url], None);
    assert_eq!(code(&diff), 0, "{what}: {}", String::from_utf8_lossy(&diff.stdout));
    resumed(&stderr(&out))
}

#[test]
fn an_interrupted_restore_is_finished_by_resume() {
    let src = demo(3, 2);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("b.tar");
    let file = file.to_str().unwrap();
    let out = run("fb-export", &["--host", &src.urls()[0], "-q", "-o", file], None);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let archive = std::fs::read(file).unwrap();
    let total = archive.len();
    println!(
        "cut at | first exit | entries already on the target | bytes sent by --resume (of {total}) | diff --content"
    );
    for fraction in [0.03, 0.2, 0.5, 0.8, 0.999] {
        let target = empty(2, 2);
        let url = target.urls()[0].clone();
        let cut = (total as f64 * fraction) as usize;
        let out = run("fb-import", &["--host", &url, "-q"], Some(&archive[..cut]));
        let first = code(&out);
        assert_ne!(first, 0, "a cut stream never restores");
        let err = stderr(&out);
        if err.contains("INCOMPLETE RESTORE") {
            assert!(err.contains("fb-import --resume --host"), "names the next command: {err}");
        }
        // A plain rerun is refused and points to --resume.
        let again = run("fb-import", &["--host", &url, "-q", "-s", file], None);
        if code(&again) != 0 {
            assert_eq!(code(&again), 78, "{}", stderr(&again));
            assert!(stderr(&again).contains("--resume"), "{}", stderr(&again));
        }
        let (kept, sent) = finish_and_check(&url, file, &format!("cut at {cut}"));
        println!("{cut} ({:.1}%) | {first} | {kept} | {sent} | 0", fraction * 100.0);
        assert!(sent <= total as u64, "sent {sent}");
        // Once finished, nothing is left to send.
        let (kept2, sent2) = finish_and_check(&url, file, "again");
        assert_eq!(sent2, 0, "a finished restore sends nothing ({kept2} held)");
    }
}

#[test]
fn an_interrupted_restore_after_ctrl_c_and_force_over_a_half_restore() {
    let src = demo(3, 2);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("b.tar");
    let file = file.to_str().unwrap();
    assert_eq!(code(&run("fb-export", &["--host", &src.urls()[0], "-q", "-o", file], None)), 0);
    // Ctrl-C in the middle of a rate-limited restore.
    let target = empty(2, 1);
    let url = target.urls()[0].clone();
    let bg = Background::start("fb-import", &["--host", &url, "-s", file, "-vv", "--max-rate", "2M"], &[]);
    wait_until(Duration::from_secs(60), "some entries sent", || bg.stderr_text().matches("shards/").count() >= 3);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(bg.pid()), nix::sys::signal::Signal::SIGINT).unwrap();
    let (status, _, err) = bg.finish(Duration::from_secs(60));
    assert_eq!(status, 130, "{err}");
    assert!(err.contains(&format!("fb-import --resume --host {url} -s {file}")), "names the next command: {err}");
    let (kept, sent) = finish_and_check(&url, file, "after Ctrl-C");
    println!("Ctrl-C: {kept} entries kept, {sent} bytes sent by --resume");
    assert!(kept > 0, "entries sent before the interrupt are kept");
    // --force over a half-restored cluster completes it too.
    let target = empty(2, 1);
    let url = target.urls()[0].clone();
    let archive = std::fs::read(file).unwrap();
    let out = run("fb-import", &["--host", &url, "-q"], Some(&archive[..archive.len() / 2]));
    assert_ne!(code(&out), 0);
    let out = run("fb-import", &["--host", &url, "-q", "--force", "-s", file], None);
    assert_eq!(code(&out), 0, "--force over a half restore: {}", stderr(&out));
    let diff = run("fb-manifest", &["diff", "--content", file, &url], None);
    assert_eq!(code(&diff), 0, "{}", String::from_utf8_lossy(&diff.stdout));
}

#[test]
fn resume_refuses_a_target_that_is_not_a_restore_of_this_backup() {
    let src = demo(2, 1);
    let dir = tempfile::tempdir().unwrap();
    let (full, events) = (dir.path().join("full.tar"), dir.path().join("events.tar"));
    let (full, events) = (full.to_str().unwrap(), events.to_str().unwrap());
    assert_eq!(code(&run("fb-export", &["--host", &src.urls()[0], "-q", "-o", full], None)), 0);
    let out = run("fb-export", &["--host", &src.urls()[0], "-q", "--index", "events", "-o", events], None);
    assert_eq!(code(&out), 0);
    let target = empty(1, 1);
    let url = target.urls()[0].clone();
    assert_eq!(code(&run("fb-import", &["--host", &url, "-q", "-s", full], None)), 0);
    // The target has "users", which the events-only backup does not.
    let out = run("fb-import", &["--host", &url, "-q", "--resume", "-s", events], None);
    assert_eq!(code(&out), 78, "{}", stderr(&out));
    assert!(stderr(&out).contains("\"users\""), "names the difference: {}", stderr(&out));
    // From a pipe --resume cannot compare first: a usage error that says why.
    let out = run("fb-import", &["--host", &url, "-q", "--resume"], Some(&std::fs::read(full).unwrap()));
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("-s FILE"), "{}", stderr(&out));
}

/// The same against real FeatureBase (`FEATUREBASE_BIN`): a cut restore into a real 1-node
/// cluster, finished by --resume, compared by content; then nothing is left to send.
#[test]
fn real_an_interrupted_restore_is_finished_by_resume() {
    let Some(bin) = featurebase_bin() else { return };
    let src = spawn(ClusterConfig {
        nodes: 3,
        replicas: 2,
        seed_from: Some(crate::interop::fixture().join("backup")),
        dataframes: fb_devcluster::Dataframes::Disabled,
        ..Default::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("b.tar");
    let file = file.to_str().unwrap();
    assert_eq!(code(&run("fb-export", &["--host", &src.urls()[0], "-q", "-o", file], None)), 0);
    let archive = std::fs::read(file).unwrap();
    for fraction in [0.1, 0.6] {
        let target = real_cluster(&bin, "resume", 1, 1);
        let cut = (archive.len() as f64 * fraction) as usize;
        let out = run("fb-import", &["--host", target.url(), "-q"], Some(&archive[..cut]));
        assert_ne!(code(&out), 0);
        let out = run("fb-import", &["--host", target.url(), "--resume", "-s", file], None);
        assert_eq!(code(&out), 0, "--resume into real FeatureBase: {}", stderr(&out));
        let (kept, sent) = resumed(&stderr(&out));
        let diff = run("fb-manifest", &["diff", "--content", file, target.url()], None);
        assert_eq!(code(&diff), 0, "{}", String::from_utf8_lossy(&diff.stdout));
        let again = run("fb-import", &["--host", target.url(), "--resume", "-s", file], None);
        assert_eq!(code(&again), 0, "{}", stderr(&again));
        let (_, sent_again) = resumed(&stderr(&again));
        println!(
            "real FeatureBase, cut at {cut} of {}: --resume kept {kept} entries and sent {sent} bytes; diff --content 0; a second --resume sent {sent_again} bytes",
            archive.len()
        );
        assert_eq!(sent_again, 0, "a finished restore sends nothing");
    }
}
