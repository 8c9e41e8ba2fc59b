//! Every rule id cited in the repository is defined in docs/PROTOCOL.md.
//!
//! Comments, tests and documents cite rules (`CL-4`), decisions (`D6`) and test vectors
//! (`TV-92`); a citation of an id that PROTOCOL.md does not define sends the reader nowhere.
//! These tests scan the repository's text files and fail naming the file and line of each such
//! citation. They also check that the coverage map lists exactly the vectors PROTOCOL.md
//! defines, that references to sections of the conformance checklist (a letter, or 3.6) name
//! headings of PROTOCOL.md, and that nothing points at specification files outside the repository.
//!
//! What counts as a cited id (so that `XEP-0198`, `SHA-256`, `UTF-8`, `TEST-NET-3`, `U+D800` or a
//! stream id `ID-2` in test data never do):
//! - `PREFIX-N` (optionally one lowercase letter after `N`, as in `TV-20b`) where PREFIX is an
//!   uppercase word that PROTOCOL.md itself uses for the ids it defines (WS, FR, … TV): the set
//!   of prefixes comes from the definitions, so a new section is picked up when it is written;
//! - `Dn`, a decision: `D` then 1 to 99 without a leading zero (hex bytes such as `D0` or
//!   code points such as `D800` are not decisions);
//! - either one standing as a word: not preceded by a letter, digit or any of `_ - + { \ # & % $ @`
//!   (so not inside `TEST-NET-3`, `0xD6`, `\u{D6}`, `U+D7`), not followed by a letter, digit or `_`;
//! - the end of a range or list written with the prefix once, `HDR-1..5` or `SASL-3/5`.
//!
//! What is scanned: the files git tracks plus untracked files it does not ignore (a plain walk of
//! the tree when git is unavailable), minus `node_modules/`, `target/`, lock files, the fuzz
//! corpus and anything that is not UTF-8 text. No network, no build products; well under a second.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

const PROTOCOL: &str = "docs/PROTOCOL.md";
const COVERAGE: &str = "tests/CONFORMANCE_COVERAGE.md";

/// Uppercase words that appear before `-N` in this repository without being rule prefixes.
/// PROTOCOL.md must never define ids with these prefixes: their ordinary uses would then be
/// read as citations.
const NOT_RULE_PREFIXES: &[&str] =
    &["XEP", "RFC", "SHA", "UTF", "ISO", "CVE", "ECMA", "TEST", "NET", "ID", "GW", "P", "SCRAM", "HT", "CESU", "X"];

/// Bytes that, just before an uppercase word, make it part of something else.
const GLUE_BEFORE: &[u8] = b"_-+{\\#&%$@";

/// The repository root.
fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// One id found in a line: the id as written (`TV-20b`, `D6`) and the byte offset after it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Found {
    id: String,
    end: usize,
}

fn is_word_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

fn digits_at(bytes: &[u8], start: usize) -> usize {
    bytes[start..].iter().take_while(|b| b.is_ascii_digit()).count()
}

/// Reads `N` or `Nx` (one lowercase letter) at `start` as the number part of an id, requiring a
/// word end after it. Returns the number text and its end.
fn number_at(bytes: &[u8], start: usize, allow_letter: bool) -> Option<(String, usize)> {
    let count = digits_at(bytes, start);
    if count == 0 {
        return None;
    }
    let mut end = start + count;
    if allow_letter
        && bytes.get(end).is_some_and(u8::is_ascii_lowercase)
        && !bytes.get(end + 1).is_some_and(|b| is_word_byte(*b))
    {
        end += 1;
    }
    if bytes.get(end).is_some_and(|b| is_word_byte(*b)) {
        return None;
    }
    Some((String::from_utf8_lossy(&bytes[start..end]).into_owned(), end))
}

/// A decision number: 1 to 99, no leading zero.
fn decision_number(number: &str) -> bool {
    !number.starts_with('0') && number.len() <= 2 && number.bytes().all(|b| b.is_ascii_digit())
}

/// The id starting at `start` (an uppercase letter at a word start), with `prefixes` the
/// hyphenated prefixes that count (`None`: any uppercase word, used to read definitions).
fn id_at(bytes: &[u8], start: usize, prefixes: Option<&BTreeSet<String>>) -> Option<Found> {
    let letters = bytes[start..].iter().take_while(|b| b.is_ascii_uppercase()).count();
    let word = std::str::from_utf8(&bytes[start..start + letters]).ok()?;
    let after = start + letters;
    if word == "D" {
        let (number, end) = number_at(bytes, after, false)?;
        return decision_number(&number).then(|| Found { id: format!("D{number}"), end });
    }
    if bytes.get(after) != Some(&b'-') || prefixes.is_some_and(|set| !set.contains(word)) {
        return None;
    }
    let (number, end) = number_at(bytes, after + 1, true)?;
    Some(Found { id: format!("{word}-{number}"), end })
}

/// Every cited id in `line`, ranges and lists (`HDR-1..5`, `SASL-3/5`) expanded to their ends.
fn cited_ids(line: &str, prefixes: &BTreeSet<String>) -> Vec<String> {
    let bytes = line.as_bytes();
    let mut ids = Vec::new();
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        let starts_word = byte.is_ascii_uppercase()
            && (index == 0 || !(is_word_byte(bytes[index - 1]) || GLUE_BEFORE.contains(&bytes[index - 1])));
        if !starts_word {
            index += 1;
            continue;
        }
        let Some(found) = id_at(bytes, index, Some(prefixes)) else {
            index += bytes[index..].iter().take_while(|b| b.is_ascii_alphanumeric()).count().max(1);
            continue;
        };
        let stem = if found.id.starts_with('D') && !found.id.contains('-') {
            "D".to_string()
        } else {
            found.id.split_once('-').map(|(word, _)| format!("{word}-")).unwrap_or_default()
        };
        let mut end = found.end;
        ids.push(found.id);
        // `..N` or `/N` after an id: the same prefix with another number.
        loop {
            let skip = if bytes[end..].starts_with(b"..") {
                2
            } else if bytes[end..].starts_with(b"/") {
                1
            } else {
                break;
            };
            let Some((number, next)) = number_at(bytes, end + skip, stem != "D") else { break };
            if stem == "D" && !decision_number(&number) {
                break;
            }
            ids.push(format!("{stem}{number}"));
            end = next;
        }
        index = end;
    }
    ids
}

/// The section named after the word CONFORMANCE (optionally `.md`, ` section` or ` §`): one
/// uppercase letter, or a number such as `3.6`.
fn conformance_sections(line: &str) -> Vec<String> {
    const WORD: &str = "CONFORMANCE";
    let bytes = line.as_bytes();
    let mut sections = Vec::new();
    for (at, _) in line.match_indices(WORD) {
        if at > 0 && is_word_byte(bytes[at - 1]) {
            continue;
        }
        let mut rest = &line[at + WORD.len()..];
        rest = rest.strip_prefix(".md").unwrap_or(rest);
        rest = rest.strip_prefix(" section").or_else(|| rest.strip_prefix(" §")).unwrap_or(rest);
        let Some(rest) = rest.strip_prefix(' ') else { continue };
        let tail = rest.as_bytes();
        if tail.first().is_some_and(u8::is_ascii_uppercase) && !tail.get(1).is_some_and(|b| is_word_byte(*b)) {
            sections.push(rest[..1].to_string());
            continue;
        }
        let mut end = digits_at(tail, 0);
        if end == 0 {
            continue;
        }
        while tail.get(end) == Some(&b'.') && tail.get(end + 1).is_some_and(u8::is_ascii_digit) {
            end += 1 + digits_at(tail, end + 1);
        }
        sections.push(rest[..end].to_string());
    }
    sections
}

/// What docs/PROTOCOL.md defines.
#[derive(Debug, Default)]
struct Definitions {
    /// Each id with the line defining it.
    ids: BTreeMap<String, usize>,
    /// Ids defined more than once: (id, line).
    duplicates: Vec<(String, usize)>,
    /// The prefixes of the hyphenated ids (`WS`, `TV`, …).
    prefixes: BTreeSet<String>,
    /// Section names of the headings: `A`…`R`, `1`, `3.6`…
    sections: BTreeSet<String>,
}

/// An id that opens a bold paragraph (`**WS-1 …`) or is the whole first cell of a table row.
fn defined_id(line: &str) -> Option<String> {
    if let Some(rest) = line.strip_prefix("**") {
        return id_at(rest.as_bytes(), 0, None).map(|found| found.id);
    }
    let cell = line.strip_prefix('|')?.split('|').next()?.trim();
    id_at(cell.as_bytes(), 0, None).filter(|found| found.end == cell.len()).map(|found| found.id)
}

/// The section a heading opens: `### J. Close codes` → `J`, `### 3.6 Client …` → `3.6`.
fn heading_section(line: &str) -> Option<String> {
    let text = line.strip_prefix('#')?.trim_start_matches('#').trim_start();
    let first = text.split_whitespace().next()?.trim_end_matches('.');
    let letter = first.len() == 1 && first.bytes().all(|b| b.is_ascii_uppercase());
    let number =
        !first.is_empty() && first.split('.').all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()));
    (letter || number).then(|| first.to_string())
}

fn definitions(text: &str) -> Definitions {
    let mut defs = Definitions::default();
    for (index, line) in text.lines().enumerate() {
        if let Some(section) = heading_section(line) {
            defs.sections.insert(section);
        }
        let Some(id) = defined_id(line) else { continue };
        if let Some((prefix, _)) = id.split_once('-') {
            defs.prefixes.insert(prefix.to_string());
        }
        if defs.ids.insert(id.clone(), index + 1).is_some() {
            defs.duplicates.push((id, index + 1));
        }
    }
    defs
}

fn skipped(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    path.split('/').any(|part| matches!(part, "node_modules" | "target" | ".git"))
        || path.starts_with("fuzz/corpus/")
        || path.starts_with("tests/e2e/work/")
        || name.ends_with(".lock")
        || name == "package-lock.json"
}

/// Tracked files plus untracked, not ignored ones; a walk of the tree if git cannot say.
fn repository_paths() -> Vec<String> {
    let listed = Command::new("git")
        .args(["ls-files", "-z", "--cached", "--others", "--exclude-standard"])
        .current_dir(root())
        .output()
        .ok()
        .filter(|output| output.status.success());
    let mut paths: Vec<String> = match listed {
        Some(output) => {
            String::from_utf8_lossy(&output.stdout).split('\0').filter(|p| !p.is_empty()).map(str::to_owned).collect()
        }
        None => {
            let mut found = Vec::new();
            walk(root(), "", &mut found);
            found
        }
    };
    paths.retain(|path| !skipped(path));
    paths.sort();
    paths.dedup();
    paths
}

fn walk(dir: &Path, relative: &str, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = if relative.is_empty() { name.clone() } else { format!("{relative}/{name}") };
        if skipped(&path) || name.starts_with('.') && name != ".ci" {
            continue;
        }
        match entry.file_type() {
            Ok(kind) if kind.is_dir() => walk(&entry.path(), &path, out),
            Ok(kind) if kind.is_file() => out.push(path),
            _ => {}
        }
    }
}

/// The repository's text files: (path, content). Binary and non-UTF-8 files are left out, and
/// so are tracked files deleted from the working tree.
fn text_files() -> &'static [(String, String)] {
    static FILES: OnceLock<Vec<(String, String)>> = OnceLock::new();
    FILES.get_or_init(|| {
        repository_paths()
            .into_iter()
            .filter_map(|path| {
                let bytes = std::fs::read(root().join(&path)).ok()?;
                if bytes.contains(&0) {
                    return None;
                }
                String::from_utf8(bytes).ok().map(|text| (path, text))
            })
            .collect()
    })
}

fn protocol() -> &'static Definitions {
    static DEFS: OnceLock<Definitions> = OnceLock::new();
    DEFS.get_or_init(|| {
        let text = std::fs::read_to_string(root().join(PROTOCOL)).expect("docs/PROTOCOL.md is readable");
        definitions(&text)
    })
}

/// Every (path, line, id) citation in the repository.
fn citations(defs: &Definitions) -> Vec<(String, usize, String)> {
    let mut out = Vec::new();
    for (path, text) in text_files() {
        for (index, line) in text.lines().enumerate() {
            for id in cited_ids(line, &defs.prefixes) {
                out.push((path.clone(), index + 1, id));
            }
        }
    }
    out
}

#[test]
fn every_cited_rule_id_is_defined_in_protocol_md() {
    let started = std::time::Instant::now();
    let defs = protocol();
    let cited = citations(defs);
    let undefined: Vec<String> = cited
        .iter()
        .filter(|(_, _, id)| !defs.ids.contains_key(id))
        .map(|(path, line, id)| format!("  {path}:{line}: {id}"))
        .collect();
    let elsewhere: Vec<&(String, usize, String)> = cited.iter().filter(|(path, _, _)| path != PROTOCOL).collect();
    let distinct: BTreeSet<&str> = elsewhere.iter().map(|(_, _, id)| id.as_str()).collect();
    let files: BTreeSet<&str> = elsewhere.iter().map(|(path, _, _)| path.as_str()).collect();
    println!(
        "{} files scanned in {:?}; {} ids defined in {PROTOCOL}; outside it, {} citations of {} distinct ids in {} files",
        text_files().len(),
        started.elapsed(),
        defs.ids.len(),
        elsewhere.len(),
        distinct.len(),
        files.len(),
    );
    assert!(
        undefined.is_empty(),
        "ids cited but not defined in {PROTOCOL} (define them there, or cite the right id):\n{}",
        undefined.join("\n")
    );
}

#[test]
fn conformance_section_references_resolve() {
    let defs = protocol();
    let mut unresolved = Vec::new();
    for (path, text) in text_files() {
        for (index, line) in text.lines().enumerate() {
            for section in conformance_sections(line) {
                if !defs.sections.contains(&section) {
                    unresolved.push(format!("  {path}:{}: CONFORMANCE {section}", index + 1));
                }
            }
        }
    }
    assert!(unresolved.is_empty(), "sections cited but not headings of {PROTOCOL}:\n{}", unresolved.join("\n"));
}

#[test]
fn nothing_points_at_specification_files_outside_the_repository() {
    // Spelled in pieces so that this file does not match itself.
    let outside = [
        format!("{}/{}.md", "spec", "CONFORMANCE"),
        format!("{}/{}.md", "spec", "DECISIONS"),
        format!("{}{}.md", "CONFORMANCE", ""),
        format!("{}{}.md", "DECISIONS", ""),
        format!("{} {}", "shared", "spec"),
        format!("/{}/{}", "work", "shared"),
    ];
    let mut found = Vec::new();
    for (path, text) in text_files() {
        for (index, line) in text.lines().enumerate() {
            for needle in &outside {
                let hit = line
                    .match_indices(needle.as_str())
                    .any(|(at, _)| at == 0 || !is_word_byte(line.as_bytes()[at - 1]));
                if hit {
                    found.push(format!("  {path}:{}: {needle}", index + 1));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "references to documents that are not in the repository (use {PROTOCOL}):\n{}",
        found.join("\n")
    );
}

#[test]
fn coverage_map_lists_exactly_the_vectors_protocol_md_defines() {
    let defined: BTreeSet<String> = protocol().ids.keys().filter(|id| id.starts_with("TV-")).cloned().collect();
    let text = std::fs::read_to_string(root().join(COVERAGE)).expect("the coverage map is readable");
    let mut mapped = BTreeSet::new();
    for line in text.lines() {
        let Some(cell) = line.strip_prefix('|').and_then(|rest| rest.split('|').next()).map(str::trim) else {
            continue;
        };
        let number = cell.trim_end_matches(|c: char| c.is_ascii_lowercase());
        if !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) && cell.len() <= number.len() + 1 {
            mapped.insert(format!("TV-{cell}"));
        }
    }
    let unmapped: Vec<&String> = defined.difference(&mapped).collect();
    let unknown: Vec<&String> = mapped.difference(&defined).collect();
    assert!(!defined.is_empty(), "{PROTOCOL} defines no test vectors");
    assert!(unmapped.is_empty(), "vectors of {PROTOCOL} with no row in {COVERAGE}: {unmapped:?}");
    assert!(unknown.is_empty(), "rows of {COVERAGE} for vectors {PROTOCOL} does not define: {unknown:?}");
}

#[test]
fn protocol_md_defines_each_id_once_and_no_prefix_of_ordinary_tokens() {
    let defs = protocol();
    assert!(defs.duplicates.is_empty(), "ids defined twice in {PROTOCOL}: {:?}", defs.duplicates);
    assert!(defs.ids.contains_key("D1") && defs.prefixes.contains("TV"), "{PROTOCOL} defines no decisions or vectors");
    let clashing: Vec<&String> =
        defs.prefixes.iter().filter(|prefix| NOT_RULE_PREFIXES.contains(&prefix.as_str())).collect();
    assert!(clashing.is_empty(), "{PROTOCOL} defines ids with prefixes that ordinary tokens use: {clashing:?}");
    for id in defs.ids.keys() {
        if let Some(number) = id.strip_prefix('D').filter(|_| !id.contains('-')) {
            assert!(decision_number(number), "{id}: decisions are numbered 1 to 99, without a leading zero");
        }
    }
}

fn prefixes(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|prefix| prefix.to_string()).collect()
}

#[test]
fn the_id_rule_on_citations() {
    let known = prefixes(&["TV", "CL", "HDR", "SASL", "DNS", "NS", "TLS"]);
    let cases: &[(&str, &[&str])] = &[
        ("// CL-4: no </stream:stream> (D5, TV-92).", &["CL-4", "D5", "TV-92"]),
        ("HDR-1..5 and SASL-3/5", &["HDR-1", "HDR-5", "SASL-3", "SASL-5"]),
        ("TV-110..TV-120, TV-20b, TV-117a.", &["TV-110", "TV-120", "TV-20b", "TV-117a"]),
        ("TV-01..05 then 10..17", &["TV-01", "TV-05"]),
        ("The D6-style class; DECISIONS D17", &["D6", "D17"]),
        ("(CONFORMANCE DNS-2, DNS-3) not NS-1 inside DNS-1", &["DNS-2", "DNS-3", "NS-1", "DNS-1"]),
        ("`D13`, *D4*, [D9], \"D8: passed\"", &["D13", "D4", "D9", "D8"]),
    ];
    for (line, expected) in cases {
        assert_eq!(cited_ids(line, &known), *expected, "{line}");
    }
}

#[test]
fn the_id_rule_leaves_ordinary_tokens_alone() {
    let known = prefixes(&["TV", "CL", "HDR", "SASL", "DNS", "NS", "TLS"]);
    let lines = [
        "XEP-0198 SHA-256 RFC-6121 CVE-2021-1234 ISO-8601 UTF-8 ECMA-262 CESU-8",
        "SCRAM-SHA-1-PLUS and TEST-NET-3 (RFC 5737), ECDSA P-256",
        "id='ID-2' id=\"GW-1\" id='D-1'",
        "location='[2001:41D0:1:A49b::1]:9222'",
        "'\\u{C0}'..='\\u{D6}' | '\\u{D8}' U+D7FF U+D800 0xD6 \\xD0 &#xD7;",
        "bytes D0 AF, D800, D100, DNS-0x20, TVS-1, tv_92, TLSv1.3, TLS-1a2",
    ];
    for line in lines {
        assert_eq!(cited_ids(line, &known), Vec::<String>::new(), "{line}");
    }
}

#[test]
fn an_undefined_id_is_reported_with_its_place() {
    // Built at run time so that this file cites nothing undefined.
    let text = format!("# Rules\n\n**TV-{} [MUST] x.**\n\n**D{}. y.**\n", "01", 1);
    let defs = definitions(&text);
    assert_eq!(defs.ids.keys().collect::<Vec<_>>(), ["D1", "TV-01"]);
    let line = format!("see D{} and TV-{} and TV-{}", 1, "01", "02");
    let undefined: Vec<String> =
        cited_ids(&line, &defs.prefixes).into_iter().filter(|id| !defs.ids.contains_key(id)).collect();
    assert_eq!(undefined, [format!("TV-{}", "02")]);
}

#[test]
fn definitions_sections_and_section_references() {
    let text = "## 1. Rules\n### J. Close codes\n### 3.10 DNS\n| TV-117a | x | y |\n| Situation | a |\n**CL-4 [SHOULD] Gone.** text CL-5\n";
    let defs = definitions(text);
    assert_eq!(defs.ids.keys().collect::<Vec<_>>(), ["CL-4", "TV-117a"]);
    assert_eq!(defs.sections, ["1", "3.10", "J"].iter().map(|s| s.to_string()).collect());
    let conformance = "CONFORMANCE";
    let line = format!("({conformance} J) {conformance} section 3.6, {conformance}.md 3.10. {conformance}_COVERAGE.md");
    assert_eq!(conformance_sections(&line), ["J", "3.6", "3.10"]);
    assert!(conformance_sections(&format!("{conformance}.md that needs")).is_empty());
}
