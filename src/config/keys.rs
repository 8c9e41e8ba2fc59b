//! The configuration's keys as data, derived from the serde form of [`Config`]'s defaults rather
//! than kept by hand: which keys exist and what each defaults to (the shipped
//! `config/gateway.toml` and docs/OPERATIONS.md are checked against this list by
//! `tests/config_file.rs`), and which keys hold lists (so `XMPPGW_*` environment overrides can
//! set them, comma-separated).
//!
//! A key added to a config struct appears here with no further work. This module only reads the
//! structs' defaults; it must not check values (that is [`super::values`] and [`Config`]'s loading).

use std::collections::HashMap;

use serde_json::Value;

use super::Config;

/// The table name of the statically configured upstreams (`[[upstream]]`).
pub const UPSTREAM_TABLE: &str = "upstream";

/// One configuration key.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigKey {
    /// The section: `listener`, `limits`, ... or [`UPSTREAM_TABLE`] for the keys of each
    /// `[[upstream]]` table.
    pub section: String,
    /// The key inside its section, e.g. `max_element_bytes`.
    pub name: String,
    /// What it takes when the file does not set it: [`KeyDefault::Value`] (in its JSON form),
    /// [`KeyDefault::Unset`] for an optional key without a value, or [`KeyDefault::Required`].
    pub default: KeyDefault,
}

/// The value a key takes when it is not set.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyDefault {
    /// This value (the serde form of the default: numbers, strings, booleans, arrays).
    Value(Value),
    /// No value: the feature the key enables is off.
    Unset,
    /// The key must be given (only inside `[[upstream]]`).
    Required,
}

impl ConfigKey {
    /// `section.name`, the spelling error messages and environment variables use.
    pub fn dotted(&self) -> String {
        format!("{}.{}", self.section, self.name)
    }
}

fn from_json(value: Value) -> KeyDefault {
    if value.is_null() {
        KeyDefault::Unset
    } else {
        KeyDefault::Value(value)
    }
}

/// Every key of the configuration, sorted by section and name.
pub fn all() -> Vec<ConfigKey> {
    // The required keys of an upstream are the ones a minimal table must give; serde fills in
    // every other field with its default.
    let required = [("domain", "example.com"), ("address", "127.0.0.1:5222")];
    let minimal: String = std::iter::once(format!("[[{UPSTREAM_TABLE}]]\n"))
        .chain(required.iter().map(|(key, value)| format!("{key} = {value:?}\n")))
        .collect();
    let config = Config::from_toml(&minimal).expect("a minimal upstream table is a valid configuration");
    let Value::Object(sections) = serde_json::to_value(&config).expect("the configuration serializes") else {
        unreachable!("Config serializes as a table")
    };
    let mut keys = Vec::new();
    for (section, value) in sections {
        let fields = match value {
            Value::Object(fields) => fields,
            Value::Array(mut tables) if section == UPSTREAM_TABLE => match tables.pop() {
                Some(Value::Object(fields)) => fields,
                other => unreachable!("[[upstream]] serializes as tables, got {other:?}"),
            },
            other => unreachable!("section {section} serializes as {other:?}"),
        };
        for (name, value) in fields {
            let default = if section == UPSTREAM_TABLE && required.iter().any(|(key, _)| *key == name) {
                KeyDefault::Required
            } else {
                from_json(value)
            };
            keys.push(ConfigKey { section: section.clone(), name, default });
        }
    }
    keys
}

/// The dotted names of the keys that hold lists (e.g. `listener.allowed_origins`).
fn list_keys() -> Vec<String> {
    all()
        .into_iter()
        .filter(|key| key.section != UPSTREAM_TABLE && matches!(key.default, KeyDefault::Value(Value::Array(_))))
        .map(|key| key.dotted())
        .collect()
}

/// Takes the `XMPPGW_SECTION__KEY` variables that name list keys out of `env` and returns them
/// as `(dotted key, items)`: the value split at commas, items trimmed, empty items dropped, so
/// `XMPPGW_LISTENER__ALLOWED_ORIGINS="https://a.example, https://b.example"` gives two origins
/// and an empty value an empty list.
pub(super) fn take_list_overrides(env: &mut HashMap<String, String>) -> Vec<(String, Vec<String>)> {
    let lists = list_keys();
    let mut overrides = Vec::new();
    let names: Vec<String> = env.keys().cloned().collect();
    for name in names {
        let Some(rest) = name.strip_prefix("XMPPGW_") else { continue };
        let dotted = rest.to_lowercase().replace("__", ".");
        if lists.contains(&dotted) {
            let value = env.remove(&name).unwrap_or_default();
            let items = value.split(',').map(str::trim).filter(|item| !item.is_empty()).map(String::from).collect();
            overrides.push((dotted, items));
        }
    }
    overrides.sort();
    overrides
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_from_the_structs_with_their_defaults() {
        let keys = all();
        let find = |dotted: &str| keys.iter().find(|key| key.dotted() == dotted).cloned();
        assert_eq!(find("limits.max_element_bytes").unwrap().default, KeyDefault::Value(262_144.into()));
        assert_eq!(find("listener.tls_cert_file").unwrap().default, KeyDefault::Unset);
        assert_eq!(find("dns.prefer").unwrap().default, KeyDefault::Value("mixed".into()));
        assert_eq!(find("upstream.domain").unwrap().default, KeyDefault::Required);
        assert_eq!(find("upstream.tls").unwrap().default, KeyDefault::Value("starttls".into()));
        assert_eq!(find("upstream.proxy_protocol").unwrap().default, KeyDefault::Value(false.into()));
        assert!(find("limits.nonexistent").is_none());
    }

    #[test]
    fn list_keys_are_the_array_valued_ones() {
        let lists = list_keys();
        for key in ["listener.allowed_origins", "listener.trusted_proxies", "domains.allow", "dns.nameservers"] {
            assert!(lists.contains(&key.to_string()), "{key} missing from {lists:?}");
        }
        assert!(!lists.iter().any(|key| key.starts_with("upstream")), "{lists:?}");
        assert!(!lists.contains(&"listener.address".to_string()));
    }

    #[test]
    fn list_overrides_are_split_and_taken_out_of_the_environment() {
        let mut env = HashMap::from([
            ("XMPPGW_LISTENER__ALLOWED_ORIGINS".to_string(), " https://a.example,https://b.example ,".to_string()),
            ("XMPPGW_DOMAINS__ALLOW".to_string(), String::new()),
            ("XMPPGW_LISTENER__ADDRESS".to_string(), "127.0.0.1:1".to_string()),
        ]);
        let overrides = take_list_overrides(&mut env);
        assert_eq!(
            overrides,
            vec![
                ("domains.allow".to_string(), vec![]),
                (
                    "listener.allowed_origins".to_string(),
                    vec!["https://a.example".to_string(), "https://b.example".to_string()]
                ),
            ]
        );
        assert_eq!(env.keys().collect::<Vec<_>>(), vec!["XMPPGW_LISTENER__ADDRESS"]);
    }
}
