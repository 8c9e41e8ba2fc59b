//! Every script the README names exists, is executable, and is run by CI: `scripts/test.sh` runs
//! each one (`.ci/run` runs scripts/test.sh itself). A script that CI does not run rots, as
//! `scripts/demo.sh` once did.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;

fn repo(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Every `scripts/…` path in `text` (ending at the first character that cannot be in one).
fn script_paths(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("scripts/") {
        let tail = &rest[start..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || "/._-".contains(c))).unwrap_or(tail.len());
        let path = tail[..end].trim_end_matches('.');
        // `scripts/` directly preceded by a name character is part of another path.
        let whole = !rest[..start].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '/' || c == '_');
        if whole && path.len() > "scripts/".len() {
            found.insert(path.to_string());
        }
        rest = &tail[end..];
    }
    found
}

/// The non-comment lines of a shell script.
fn commands(script: &str) -> Vec<String> {
    std::fs::read_to_string(repo(script))
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(String::from)
        .collect()
}

#[test]
fn every_script_the_readme_names_exists_and_ci_runs_it() {
    let readme = std::fs::read_to_string(repo("README.md")).unwrap();
    let named = script_paths(&readme);
    assert!(named.contains("scripts/demo.sh") && named.contains("scripts/test.sh"), "{named:?}");
    let test_sh = commands("scripts/test.sh");
    let ci = commands(".ci/run");
    let mut problems = Vec::new();
    for path in &named {
        let file = repo(path);
        let Ok(metadata) = std::fs::metadata(&file) else {
            problems.push(format!("README names {path}, which does not exist"));
            continue;
        };
        if metadata.permissions().mode() & 0o111 == 0 {
            problems.push(format!("{path} is not executable"));
        }
        let runs = |lines: &[String]| {
            lines.iter().any(|line| line.split_whitespace().any(|word| word.trim_matches('"') == path.as_str()))
        };
        let run_by_ci = if path == "scripts/test.sh" { runs(&ci) } else { runs(&test_sh) };
        if !run_by_ci {
            problems.push(format!("README names {path}, but scripts/test.sh (or .ci/run) never runs it"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn script_paths_are_read_as_whole_paths() {
    let found = script_paths("run `scripts/demo.sh --check`, see scripts/lib/setup.sh. Not tests/scripts/x.sh");
    assert_eq!(found.into_iter().collect::<Vec<_>>(), ["scripts/demo.sh", "scripts/lib/setup.sh"]);
}
