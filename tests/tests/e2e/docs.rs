//! The documentation runs: every README recipe, against fb-devcluster, and the generated
//! shell completions load in bash.

use fbkit_tests::*;

/// The recipe block of README.md (the fenced `sh` block after "## Recipes").
fn recipes() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).expect("README.md");
    let start = readme.find("## Recipes").expect("a Recipes section");
    let block = &readme[start..];
    let open = block.find("```sh\n").expect("a sh block") + 6;
    let close = block[open..].find("```").expect("block end") + open;
    block[open..close].to_string()
}

#[test]
fn readme_recipes_run_against_devclusters() {
    for tool in ["zstd", "tar"] {
        if !have(tool) {
            eprintln!("skipped: the recipes need {tool}");
            return;
        }
    }
    let db1 = demo(3, 2);
    let newdb = empty(4, 3);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("vault")).unwrap();
    let host = |url: &str| url.trim_start_matches("http://").to_string();
    let mut script = recipes()
        .replace("db1:10101", &host(&db1.urls()[0]))
        .replace("newdb:10101", &host(&newdb.urls()[0]))
        .replace("http://newdb:10101", &newdb.urls()[0]);
    let have_age = have("age") && have("age-keygen");
    if !have_age {
        eprintln!("note: age is not installed; the encryption recipe is not run");
        script = script.lines().filter(|l| !l.contains("age")).collect::<Vec<_>>().join("\n");
    }
    if !have("restic") {
        eprintln!("note: restic is not installed; the restic recipe is not run");
        script = script.lines().filter(|l| !l.contains("restic")).collect::<Vec<_>>().join("\n");
    }
    let out = sh(&format!("{PRELUDE}\n{script}\n"), dir.path());
    assert_eq!(code(&out), 0, "README recipes failed:\n{}\n{}", stderr(&out), String::from_utf8_lossy(&out.stdout));
    assert!(!dir.path().join("mail.txt").exists(), "the cron recipe alerted on a good backup");
    let diff = String::from_utf8_lossy(&out.stdout);
    assert!(diff.contains("identical"), "the diff recipes ran: {diff}");
    let vault: Vec<String> = std::fs::read_dir(dir.path().join("vault"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("fb-"))
        .collect();
    assert!(vault.len() == 1 && vault[0].ends_with(".tar.zst"), "the backup under its final name only: {vault:?}");
    if have("restic") {
        let out = sh(&format!("{PRELUDE}\nrestic snapshots -q --tag fbkit --json"), dir.path());
        let snaps: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        assert_eq!(snaps.as_array().map(Vec::len), Some(1), "one good restic snapshot: {}", stderr(&out));
    }
}

/// `ssh vault CMD` runs CMD in ./vault; `mail` records the alert instead of sending it;
/// restic keeps its repository in the vault.
const PRELUDE: &str = r#"set -e
ssh() { local host=$1; shift; (cd "$host" && bash -c "$*"); }
mail() { cat > mail.txt; }
if command -v age-keygen >/dev/null; then [ -f key.txt ] || age-keygen -o key.txt 2>/dev/null; RECIPIENT=$(age-keygen -y key.txt); fi
export RESTIC_REPOSITORY=$PWD/vault/restic RESTIC_PASSWORD=fbkit-test
if command -v restic >/dev/null && [ ! -d vault/restic ]; then restic init -q; fi
"#;

/// One recipe of the README: from the line starting with `start` to the next blank line.
fn recipe_from(start: &str) -> String {
    let recipes = recipes();
    let from = recipes.find(start).unwrap_or_else(|| panic!("a recipe starting {start:?}"));
    let block = &recipes[from..];
    block[..block.find("\n\n").unwrap_or(block.len())].to_string()
}

/// The nightly recipe and the restic one, broken on purpose: the source loses its nodes in
/// the middle of the stream, the vault's disk is full, the vault side is killed. Each job
/// exits non-zero and nothing is left under the final name (or as a good restic snapshot).
#[test]
fn broken_recipes_fail_and_leave_nothing_under_the_final_name() {
    for tool in ["zstd"] {
        if !have(tool) {
            eprintln!("skipped: the recipes need {tool}");
            return;
        }
    }
    let nightly = recipe_from("# Nightly backup");
    let restic = recipe_from("fb-export --host db1:10101 | restic");
    let cases: [(&str, &str, &str); 4] = [
        ("source nodes lost mid-stream", "cut:20000:/internal/index/", ""),
        ("source nodes down", "down@1 down@2", ""),
        ("vault disk full", "", "ln -s /dev/full vault/fb-$day.tar.zst.part"),
        ("vault side killed", "", "ssh() { (cd vault && head -c 5000 > fb-$day.tar.zst.part); return 137; }"),
    ];
    println!("case | recipe | stage exit statuses | job exit | left on the vault");
    for (what, faults, setup) in cases {
        for (name, recipe) in [("nightly", &nightly), ("restic", &restic)] {
            if name == "restic" && (!have("restic") || !setup.is_empty()) {
                continue;
            }
            let db1 = demo(3, 2);
            for f in faults.split_whitespace() {
                db1.add_fault(f).unwrap();
            }
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir(dir.path().join("vault")).unwrap();
            let host = db1.urls()[0].trim_start_matches("http://").to_string();
            let job = recipe.replace("db1:10101", &host);
            let script = format!(
                "{PRELUDE}\nset +e\nday=$(date +%F)\n{setup}\n{job}\nset -- $? \"${{PIPESTATUS[@]}}\"\necho \"rc=$1 stages=${{*:2}}\"\nexit $1"
            );
            let out = sh(&script, dir.path());
            let report = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or("").to_string();
            let mut left: Vec<String> = std::fs::read_dir(dir.path().join("vault"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n != "restic")
                .collect();
            left.sort();
            let good = if name == "restic" {
                let out = sh(&format!("{PRELUDE}\nrestic snapshots -q --tag fbkit --json"), dir.path());
                let snaps: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
                snaps.as_array().map(Vec::len).unwrap_or(0)
            } else {
                0
            };
            println!("{what} | {name} | {report} | {} | {left:?}, {good} good snapshot(s)", code(&out));
            assert_ne!(code(&out), 0, "{what}, {name}: the job must fail: {}", stderr(&out));
            assert!(
                !left.iter().any(|n| n.ends_with(".tar.zst")),
                "{what}, {name}: a file under the final name: {left:?}"
            );
            assert_eq!(good, 0, "{what}, {name}: a restic snapshot marked good");
        }
    }
}

#[test]
fn completions_load_in_bash() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../man/completions");
    for tool in ["fb-export", "fb-import", "fb-manifest", "fb-verify", "fb-devcluster"] {
        let out = sh(&format!("source {dir}/{tool}.bash && complete -p {tool}"), std::path::Path::new(dir));
        assert_eq!(code(&out), 0, "{tool}: {}", stderr(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains(tool));
    }
}

/// Every example of every tool's `--help` and man page, each in a fresh working directory
/// holding the files the examples name, against devclusters standing in for `db1` (with TLS
/// and a token for `https://db1`) and fresh empty ones for `newdb`.
#[test]
fn documented_examples_run_against_devclusters() {
    for tool in ["zstd", "tar", "gzip", "sha256sum"] {
        if !have(tool) {
            eprintln!("skipped: the examples need {tool}");
            return;
        }
    }
    const TOKEN: &str = "s3cret-token";
    let pki = Pki::new();
    let db1 = demo(3, 2);
    let db1_tls = spawn(ClusterConfig {
        nodes: 2,
        demo: true,
        tls: Some(pki.server(false)),
        auth_token: Some(TOKEN.into()),
        ..ClusterConfig::default()
    })
    .expect("tls cluster");
    let template = tempfile::tempdir().unwrap();
    let db1_host = db1.urls()[0].trim_start_matches("http://").to_string();
    let setup = format!(
        "set -e; mkdir vault extracted
         fb-export --host {db1_host} -q -o fb.tar
         cp fb.tar backup.tar; cp fb.tar monday.tar; cp fb.tar tuesday.tar
         zstd -q fb.tar -o fb.tar.zst; cp fb.tar.zst vault/; gzip -c fb.tar > fb.tar.gz
         fb-manifest fb.tar > fb.manifest.json
         tar -xf fb.tar -C extracted && rm extracted/MANIFEST.json
         printf '%s\\n' {TOKEN} > tok; cp {ca} ca.crt",
        ca = pki.path("ca.pem").display()
    );
    let out = sh(&setup, template.path());
    assert_eq!(code(&out), 0, "setup: {}", stderr(&out));
    let lists: [(&str, &[fb_cli::Example]); 4] = [
        ("fb-export", fb_export::EXAMPLES),
        ("fb-import", fb_import::EXAMPLES),
        ("fb-manifest", fb_manifest::EXAMPLES),
        ("fb-verify", fb_verify::EXAMPLES),
    ];
    let mut ran = 0;
    for (tool, examples) in lists {
        for e in examples {
            let newdb = empty(2, 1);
            let newdb_tls = spawn(ClusterConfig {
                nodes: 2,
                tls: Some(pki.server(false)),
                auth_token: Some(TOKEN.into()),
                ..ClusterConfig::default()
            })
            .expect("tls target");
            let work = tempfile::tempdir().unwrap();
            let out = sh(&format!("cp -r {}/. .", template.path().display()), work.path());
            assert_eq!(code(&out), 0);
            let command = e
                .command
                .replace("https://db1:10101", &db1_tls.urls()[0])
                .replace("https://newdb:10101", &newdb_tls.urls()[0])
                .replace("db1:10101", &db1_host)
                .replace("newdb:10101", newdb.urls()[0].trim_start_matches("http://"));
            let script = format!(
                "ssh() {{ local host=$1; shift; (cd \"$host\" && bash -c \"$*\"); }}\nmail() {{ cat > mail.txt; }}\n{command}"
            );
            let out = sh(&script, work.path());
            assert_eq!(code(&out), 0, "{tool} example {:?} ({command}) failed: {}", e.about, stderr(&out));
            assert!(!work.path().join("mail.txt").exists(), "{tool}: {:?} raised an alert", e.about);
            ran += 1;
        }
        // --help shows exactly these examples.
        let help = run(tool, &["--help"], None);
        let text = String::from_utf8_lossy(&help.stdout);
        for e in examples {
            assert!(text.contains(e.about), "{tool} --help lists {:?}", e.about);
        }
    }
    assert!(ran >= 12, "ran {ran} examples");
}

/// docs/format.md's rules for the two digests, applied to a real manifest with a generic JSON
/// library: compact JSON of `entries`, and of every key before `manifest_sha256`.
#[test]
fn the_format_document_describes_the_digests() {
    use sha2::{Digest, Sha256};
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/format.md")).unwrap();
    assert!(doc.contains("entries_sha256") && doc.contains("manifest_sha256"));
    let c = demo(1, 1);
    let archive = export(&c.urls()[0], &[]);
    let (name, bytes) = tar_entries(&archive).pop().unwrap();
    assert_eq!(name, "MANIFEST.json", "the manifest is the last entry");
    let m: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let hex = |b: &[u8]| Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect::<String>();
    assert_eq!(m["entries_sha256"], hex(&serde_json::to_vec(&m["entries"]).unwrap()));
    let mut covered = m.as_object().unwrap().clone();
    covered.shift_remove("manifest_sha256");
    assert_eq!(m["manifest_sha256"], hex(&serde_json::to_vec(&covered).unwrap()));
    let keys: Vec<&str> = m.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["format", "version", "source", "entries", "totals", "entries_sha256", "manifest_sha256"]);
    let pretty = serde_json::to_string_pretty(&m).unwrap() + "\n";
    assert_eq!(pretty.as_bytes(), &bytes[..], "two-space pretty JSON and a final newline");
}

/// A real sshd on 127.0.0.1 with its own host key, config and client key: `ssh vault CMD`
/// runs CMD over it, in the vault directory.
struct Sshd {
    child: std::process::Child,
    dir: tempfile::TempDir,
}

impl Sshd {
    fn start() -> Option<Sshd> {
        let sshd = ["/usr/sbin/sshd", "/usr/bin/sshd"].into_iter().find(|p| std::path::Path::new(p).exists())?;
        if !have("ssh") || !have("ssh-keygen") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let user = String::from_utf8(std::process::Command::new("id").arg("-un").output().unwrap().stdout).unwrap();
        let setup = format!(
            "set -e; mkdir -p vault; [ \"$(id -u)\" != 0 ] || mkdir -p /run/sshd
             ssh-keygen -q -t ed25519 -N '' -f host_key; ssh-keygen -q -t ed25519 -N '' -f client_key
             cp client_key.pub authorized_keys; chmod 600 authorized_keys
             cat > sshd_config <<EOT
Port {port}
ListenAddress 127.0.0.1
HostKey {d}/host_key
PidFile {d}/sshd.pid
AuthorizedKeysFile {d}/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
EOT
             cat > ssh_config <<EOT
Host vault
  HostName 127.0.0.1
  Port {port}
  User {user}
  IdentityFile {d}/client_key
  IdentitiesOnly yes
  StrictHostKeyChecking no
  UserKnownHostsFile {d}/known_hosts
  BatchMode yes
  LogLevel ERROR
EOT",
            user = user.trim()
        );
        let out = sh(&setup, dir.path());
        assert_eq!(code(&out), 0, "sshd setup: {}", stderr(&out));
        let child = std::process::Command::new(sshd)
            .args(["-D", "-e", "-f"])
            .arg(dir.path().join("sshd_config"))
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let s = Sshd { child, dir };
        wait_until(std::time::Duration::from_secs(20), "sshd answers", || {
            code(&sh(&format!("{}\nssh vault true", s.prelude()), s.dir.path())) == 0
        });
        Some(s)
    }

    fn vault(&self) -> std::path::PathBuf {
        self.dir.path().join("vault")
    }

    /// `ssh HOST CMD` through this sshd, CMD run in the vault directory.
    fn prelude(&self) -> String {
        format!(
            "ssh() {{ local host=$1; shift; command ssh -F '{}/ssh_config' \"$host\" \"cd '{}' && $*\"; }}",
            self.dir.path().display(),
            self.vault().display()
        )
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The nightly recipe over a real sshd: it works, and when the source loses its nodes
/// mid-stream, the vault's disk is full or the vault's session is killed, the job exits
/// non-zero and nothing is under the final name.
#[test]
fn the_nightly_recipe_over_a_real_sshd() {
    if !have("zstd") {
        eprintln!("skipped: the recipes need zstd");
        return;
    }
    let Some(sshd) = Sshd::start() else {
        eprintln!("skipped: no sshd/ssh/ssh-keygen on this machine (.ci/run installs openssh-server)");
        return;
    };
    let nightly = recipe_from("# Nightly backup");
    let final_files = || -> Vec<String> {
        std::fs::read_dir(sshd.vault())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tar.zst"))
            .collect()
    };
    let clear = || {
        for e in std::fs::read_dir(sshd.vault()).unwrap() {
            let _ = std::fs::remove_file(e.unwrap().path());
        }
    };
    let run_job = |db1: &RunningCluster, setup: &str| -> (i32, String) {
        let host = db1.urls()[0].trim_start_matches("http://").to_string();
        let script = format!(
            "{}\nset +e\nday=$(date +%F)\n{setup}\n{}\nset -- $? \"${{PIPESTATUS[@]}}\"\necho \"rc=$1 stages=${{*:2}}\"\nexit $1",
            sshd.prelude(),
            nightly.replace("db1:10101", &host)
        );
        let out = sh(&script, sshd.dir.path());
        (code(&out), String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or("").to_string())
    };
    println!("case (real sshd) | stage exit statuses | job exit | left on the vault");
    // It works, and the archive on the vault verifies.
    let db1 = demo(3, 2);
    let (rc, stages) = run_job(&db1, "");
    println!("healthy | {stages} | {rc} | {:?}", final_files());
    assert_eq!(rc, 0, "{stages}");
    let name = final_files().pop().expect("the backup under its final name");
    let v = sh(&format!("zstd -dc vault/{name} | fb-verify -q"), sshd.dir.path());
    assert_eq!(code(&v), 0, "{}", stderr(&v));
    clear();
    // Source nodes lost mid-stream.
    db1.add_fault("cut:20000:/internal/index/").unwrap();
    let (rc, stages) = run_job(&db1, "");
    println!("source cut mid-stream | {stages} | {rc} | {:?}", final_files());
    assert!(rc != 0 && final_files().is_empty(), "{stages}");
    db1.clear_faults();
    clear();
    // The vault's disk is full.
    let (rc, stages) = run_job(&db1, "ln -s /dev/full vault/fb-$day.tar.zst.part");
    println!("vault disk full | {stages} | {rc} | {:?}", final_files());
    assert!(rc != 0 && final_files().is_empty(), "{stages}");
    clear();
    // The vault's session killed while the stream flows (the source trickles at 1 MB/s, so
    // the export runs for seconds). The session is killed a second after the vault's `cat`
    // starts: zstd may hold back its output on data this compressible, so the `.part` file
    // can stay empty until late and is no sign of the stream flowing.
    db1.add_fault("slow:1000000:/internal/index/").unwrap();
    let vault = sshd.vault().display().to_string();
    let killer = format!(
        "(for i in $(seq 1 600); do
           p=$(pgrep -f \"^bash -c cd '{vault}' && cat\" | head -1)
           if [ -n \"$p\" ]; then sleep 1; kill -9 $(ps -o ppid= -p $p) $p; exit 0; fi
           sleep 0.1
         done) &"
    );
    let (rc, stages) = run_job(&db1, &killer);
    println!("vault session killed | {stages} | {rc} | {:?}", final_files());
    assert!(rc != 0 && final_files().is_empty(), "{stages}");
}
