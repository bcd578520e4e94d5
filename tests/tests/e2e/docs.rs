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
    // `ssh vault CMD` runs CMD in ./vault; `mail` records the alert instead of sending it.
    let prelude = r#"set -e
ssh() { local host=$1; shift; (cd "$host" && bash -c "$*"); }
mail() { cat > mail.txt; }
if command -v age-keygen >/dev/null; then age-keygen -o key.txt 2>/dev/null; RECIPIENT=$(age-keygen -y key.txt); fi
"#;
    let out = sh(&format!("{prelude}\n{script}\n"), dir.path());
    assert_eq!(code(&out), 0, "README recipes failed:\n{}\n{}", stderr(&out), String::from_utf8_lossy(&out.stdout));
    assert!(!dir.path().join("mail.txt").exists(), "the cron recipe alerted on a good backup");
    let diff = String::from_utf8_lossy(&out.stdout);
    assert!(diff.contains("identical"), "the diff recipes ran: {diff}");
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
