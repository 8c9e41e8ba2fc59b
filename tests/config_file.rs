//! The shipped `config/gateway.toml` shows every option with its default, and docs/OPERATIONS.md's
//! configuration reference lists every option with its default, both checked against the keys
//! of the config structs as serde sees them (`xmpp_ws_gateway::config::keys`, derived from
//! `Config`'s defaults, not a hand-kept list): a key added to a struct but not documented, or
//! documented but not in a struct, or shown with a value that is not its default, fails here.
//!
//! In gateway.toml a key is shown either set (`key = value`) or, when it has no default value,
//! commented out with an example (`# key = value`). A key set to something other than its
//! default must say so in the comment right above it with `Default: X`, and X must be the real
//! default (the shipped file enables `allow_missing_origin` for the demo's Node clients).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use serde_json::Value;
use xmpp_ws_gateway::config::keys::{self, ConfigKey, KeyDefault};
use xmpp_ws_gateway::config::Config;

fn repo(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// A default as it is written in TOML and in the docs' tables: `262144`, `"info"`, `[]`.
fn literal(value: &Value) -> String {
    match value {
        Value::Array(items) if items.is_empty() => "[]".into(),
        other => other.to_string(),
    }
}

/// How gateway.toml shows one key.
#[derive(Debug)]
struct Shown {
    line: usize,
    /// `None` when commented out.
    value: Option<Value>,
    /// The comment lines right above it.
    comment: Vec<String>,
}

/// A `key = value` line as TOML sees it, if it is one.
fn parse_assignment(text: &str) -> Option<(String, Value)> {
    let table: toml::Table = text.parse().ok()?;
    let mut entries = table.into_iter();
    let (key, value) = entries.next()?;
    if entries.next().is_some() || value.is_table() {
        return None;
    }
    Some((key, serde_json::to_value(value).unwrap()))
}

/// Every key gateway.toml shows, by `section.key`, with the problems found while reading it.
fn shown_in_gateway_toml() -> (BTreeMap<String, Shown>, Vec<String>) {
    let text = repo("config/gateway.toml");
    let mut shown = BTreeMap::new();
    let mut problems = Vec::new();
    let mut section = String::new();
    let mut comment: Vec<String> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let number = index + 1;
        if let Some(name) = line.strip_prefix("[[").and_then(|rest| rest.strip_suffix("]]")) {
            section = name.to_string();
            comment.clear();
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')) {
            section = name.to_string();
            comment.clear();
            continue;
        }
        let (assignment, commented) = match line.strip_prefix('#') {
            Some(rest) => (parse_assignment(rest.trim()), true),
            None if line.is_empty() => {
                comment.clear();
                continue;
            }
            None => (parse_assignment(line), false),
        };
        match assignment {
            Some((key, value)) => {
                let dotted = format!("{section}.{key}");
                let entry = Shown { line: number, value: (!commented).then_some(value), comment: comment.clone() };
                if let Some(first) = shown.insert(dotted.clone(), entry) {
                    problems.push(format!("{dotted} is shown twice (lines {} and {number})", first.line));
                }
                comment.clear();
            }
            None if commented => comment.push(line.trim_start_matches('#').trim().to_string()),
            None => problems.push(format!("line {number} is neither a section, a key nor a comment: {raw}")),
        }
    }
    (shown, problems)
}

/// The `Default: X` a comment states, if any.
fn stated_default(comment: &[String]) -> Option<String> {
    let text = comment.join(" ");
    let rest = &text[text.find("Default: ")? + "Default: ".len()..];
    let token: String = rest.chars().take_while(|c| !c.is_whitespace() && *c != ',' && *c != ')').collect();
    Some(token.trim_end_matches('.').to_string())
}

#[test]
fn gateway_toml_shows_every_option_with_its_default() {
    let keys = keys::all();
    let (shown, mut problems) = shown_in_gateway_toml();
    for key in &keys {
        let dotted = key.dotted();
        let Some(entry) = shown.get(&dotted) else {
            problems.push(format!("{dotted} is in the config structs but not in config/gateway.toml"));
            continue;
        };
        match (&key.default, &entry.value) {
            (KeyDefault::Required, None) => {
                problems.push(format!("{dotted} (line {}) is required: show it set", entry.line))
            }
            (KeyDefault::Required, Some(_)) | (KeyDefault::Unset, None) => {}
            (KeyDefault::Unset, Some(value)) => problems.push(format!(
                "{dotted} (line {}) has no default but is set to {value}: comment it out as an example",
                entry.line
            )),
            (KeyDefault::Value(default), None) => problems.push(format!(
                "{dotted} (line {}) is commented out: show its default, {}",
                entry.line,
                literal(default)
            )),
            (KeyDefault::Value(default), Some(value)) if value == default => {}
            (KeyDefault::Value(default), Some(value)) => match stated_default(&entry.comment) {
                Some(stated) if stated == literal(default) => {}
                stated => problems.push(format!(
                    "{dotted} (line {}) is set to {value}, not its default {}, and its comment says Default: {stated:?}",
                    entry.line,
                    literal(default)
                )),
            },
        }
    }
    for (dotted, entry) in &shown {
        if !keys.iter().any(|key| &key.dotted() == dotted) {
            problems
                .push(format!("config/gateway.toml line {} shows {dotted}, which no config struct has", entry.line));
        }
    }
    assert!(problems.is_empty(), "config/gateway.toml:\n  {}", problems.join("\n  "));
    // And the file as shipped is a valid configuration.
    Config::from_toml(&repo("config/gateway.toml")).unwrap();
}

/// The rows of docs/OPERATIONS.md's configuration reference: `section.key` → the default cell.
fn operations_reference() -> BTreeMap<String, String> {
    let text = repo("docs/OPERATIONS.md");
    let reference = &text[text.find("## Configuration reference").expect("a configuration reference")..];
    let mut rows = BTreeMap::new();
    let mut section = None;
    for line in reference.lines() {
        if let Some(heading) = line.strip_prefix("### ") {
            section =
                heading.split('`').nth(1).map(|name| name.trim_start_matches('[').trim_end_matches(']').to_string());
            continue;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if let (Some(section), [_, key, default, ..]) = (&section, cells.as_slice()) {
            if let Some(key) = key.strip_prefix('`').and_then(|key| key.strip_suffix('`')) {
                rows.insert(format!("{section}.{key}"), default.to_string());
            }
        }
    }
    rows
}

/// The default as the reference table writes it: the first `code` span, `unset` or `required`.
fn documented_default(cell: &str) -> String {
    if cell.starts_with('`') {
        cell.split('`').nth(1).unwrap_or_default().to_string()
    } else {
        cell.split_whitespace().next().unwrap_or_default().to_string()
    }
}

#[test]
fn operations_reference_lists_every_option_with_its_default() {
    let keys = keys::all();
    let rows = operations_reference();
    let mut problems = Vec::new();
    for ConfigKey { section, name, default } in &keys {
        let dotted = format!("{section}.{name}");
        let Some(cell) = rows.get(&dotted) else {
            problems.push(format!("{dotted} is missing from docs/OPERATIONS.md's configuration reference"));
            continue;
        };
        let expected = match default {
            KeyDefault::Value(value) => literal(value),
            KeyDefault::Unset => "unset".into(),
            KeyDefault::Required => "required".into(),
        };
        if documented_default(cell) != expected {
            problems.push(format!("{dotted}: docs/OPERATIONS.md says the default is {cell:?}, it is {expected}"));
        }
    }
    for dotted in rows.keys() {
        if !keys.iter().any(|key| &key.dotted() == dotted) {
            problems.push(format!("docs/OPERATIONS.md documents {dotted}, which no config struct has"));
        }
    }
    assert!(problems.is_empty(), "docs/OPERATIONS.md:\n  {}", problems.join("\n  "));
}

/// The checker itself: a file missing a key, with an unknown key, or with a wrong stated default
/// is caught (so the tests above cannot pass by reading nothing).
#[test]
fn the_reader_sees_keys_comments_and_stated_defaults() {
    let (shown, problems) = shown_in_gateway_toml();
    assert!(problems.is_empty(), "{problems:?}");
    assert!(shown.len() >= keys::all().len(), "{shown:?}");
    let origin = &shown["listener.allow_missing_origin"];
    assert_eq!(origin.value, Some(Value::Bool(true)));
    assert_eq!(stated_default(&origin.comment).as_deref(), Some("false"));
    assert_eq!(shown["listener.tls_cert_file"].value, None);
    assert_eq!(shown["upstream.domain"].value, Some(Value::String("localhost".into())));
    assert!(parse_assignment("tls = \"starttls\" (default): plain TCP").is_none());
    assert_eq!(parse_assignment("max_sessions = 10000"), Some(("max_sessions".into(), Value::from(10000))));
    assert_eq!(stated_default(&["Browsers always send Origin. Default: false.".into()]).as_deref(), Some("false"));
    assert_eq!(documented_default("`false` (the shipped file sets `true`)"), "false");
    assert_eq!(documented_default("unset"), "unset");
}
