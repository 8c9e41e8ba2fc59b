//! Loading a [`Config`]: the file and the `XMPPGW_*` environment through the `config` crate,
//! every value into its type on the way (a refused one becomes a [`ConfigError`] naming its key),
//! then the checks that involve more than one key. Reads only the configuration file and checks
//! that the files it names exist; opens nothing else.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use super::{keys, Config, UpstreamTls};

/// A configuration that could not be loaded or is not valid. Its text names the key and what is
/// wrong (`limits.max_element_bytes: 9999 is below the minimum, 10000`).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or parsed as TOML, or a required key is missing.
    #[error("{0}")]
    Load(config::ConfigError),
    /// A value does not parse into its type, or does not fit with another one.
    #[error("{key}: {problem}")]
    Invalid {
        /// The key, e.g. `limits.max_element_bytes` or `upstream[1].address`.
        key: String,
        /// What is wrong with it.
        problem: String,
    },
}

impl From<config::ConfigError> for ConfigError {
    /// A value the deserialiser refused becomes [`ConfigError::Invalid`] with its key.
    fn from(error: config::ConfigError) -> Self {
        match error {
            config::ConfigError::At { error, key: Some(key), .. } => invalid(dotted(&key), error.to_string()),
            config::ConfigError::Type { unexpected, expected, key: Some(key), .. } => {
                invalid(dotted(&key), format!("{unexpected} where {expected} was expected"))
            }
            other => ConfigError::Load(other),
        }
    }
}

/// The loader's key path with a dot after each index, as the file is written: it reports a
/// field of the second `[[upstream]]` as `upstream[1]address`.
fn dotted(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 2);
    let mut after_index = false;
    for c in key.chars() {
        if after_index && c != '.' && c != '[' {
            out.push('.');
        }
        after_index = c == ']';
        out.push(c);
    }
    out
}

fn invalid(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.into(), problem: problem.into() }
}

impl Config {
    /// Loads `path` (TOML), applies overrides from `env` (variables named
    /// `XMPPGW_SECTION__KEY`, e.g. `XMPPGW_LISTENER__ADDRESS`; list keys take comma-separated
    /// items, e.g. `XMPPGW_LISTENER__ALLOWED_ORIGINS=https://a.example,https://b.example`), and
    /// parses the result.
    pub fn load(path: &Path, env: HashMap<String, String>) -> Result<Config, ConfigError> {
        let mut env: HashMap<String, String> = env.into_iter().filter(|(key, _)| key.starts_with("XMPPGW_")).collect();
        let lists = keys::take_list_overrides(&mut env);
        let mut builder = config::Config::builder()
            .add_source(config::File::from(path).format(config::FileFormat::Toml).required(true))
            .add_source(
                config::Environment::with_prefix("XMPPGW")
                    .prefix_separator("_")
                    .separator("__")
                    .try_parsing(true)
                    .source(Some(env)),
            );
        for (key, items) in lists {
            builder = builder.set_override(key, items)?;
        }
        Config::parse(builder.build()?)
    }

    /// Parses a TOML string without environment overrides (for tests and `--check-config`).
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        Config::parse(
            config::Config::builder().add_source(config::File::from_str(text, config::FileFormat::Toml)).build()?,
        )
    }

    /// Every value into its type, then the checks that involve more than one key.
    fn parse(loaded: config::Config) -> Result<Config, ConfigError> {
        let config: Config = loaded.try_deserialize()?;
        config.check_listener()?;
        config.check_discovery()?;
        config.check_upstreams()?;
        config.check_bosh()?;
        if config.connect.attempt_timeout > config.connect.overall_timeout {
            return Err(invalid("connect.attempt_timeout_secs", "must not exceed connect.overall_timeout_secs"));
        }
        Ok(config)
    }

    /// The largest element limit of any session: the global one or an upstream's. The WebSocket
    /// layer accepts messages up to this size; each session then applies its upstream's limit.
    pub fn largest_element_limit(&self) -> usize {
        let global = self.limits.max_element_bytes;
        self.upstream.iter().map(|upstream| upstream.element_limit(global)).fold(global, usize::max)
    }

    /// The BOSH path is its own: not the WebSocket path (nor its trailing-slash form).
    fn check_bosh(&self) -> Result<(), ConfigError> {
        let (bosh, websocket) = (self.bosh.path.as_str(), self.listener.path.as_str());
        if self.bosh.enabled && (bosh == websocket || bosh.trim_end_matches('/') == websocket.trim_end_matches('/')) {
            return Err(invalid("bosh.path", "must differ from listener.path"));
        }
        Ok(())
    }

    /// The listener's certificate and key come together, and both files are there.
    fn check_listener(&self) -> Result<(), ConfigError> {
        match (&self.listener.tls_cert_file, &self.listener.tls_key_file) {
            (Some(_), None) => Err(invalid("listener.tls_key_file", "is required with listener.tls_cert_file")),
            (None, Some(_)) => Err(invalid("listener.tls_cert_file", "is required with listener.tls_key_file")),
            (Some(cert), Some(key)) => {
                check_file("listener.tls_cert_file", cert)?;
                check_file("listener.tls_key_file", key)
            }
            (None, None) => Ok(()),
        }
    }

    /// Special-address domains are allowed ones; the extra CA file is there.
    fn check_discovery(&self) -> Result<(), ConfigError> {
        let policy = crate::upstream::guard::DomainPolicy::new(&self.domains.allow, &[], []);
        for (index, domain) in self.domains.special_addresses.iter().enumerate() {
            if !policy.allows(domain.as_str()) {
                return Err(invalid(
                    format!("domains.special_addresses[{index}]"),
                    format!("{:?} is not in domains.allow", domain.as_str()),
                ));
            }
        }
        match &self.domains.ca_file {
            Some(ca_file) => check_file("domains.ca_file", ca_file),
            None => Ok(()),
        }
    }

    /// Each domain once, CA files only where there is TLS and present, and some domain served.
    fn check_upstreams(&self) -> Result<(), ConfigError> {
        let mut seen = HashSet::new();
        for (index, upstream) in self.upstream.iter().enumerate() {
            let key = |field: &str| format!("upstream[{index}].{field}");
            if !seen.insert(upstream.domain.as_str()) {
                return Err(invalid(key("domain"), format!("{:?} is configured twice", upstream.domain.as_str())));
            }
            if let Some(ca_file) = &upstream.ca_file {
                if upstream.tls == UpstreamTls::None {
                    return Err(invalid(key("ca_file"), "makes no sense with tls = \"none\""));
                }
                check_file(&key("ca_file"), ca_file)?;
            }
        }
        if self.upstream.is_empty() && self.domains.allow.is_empty() {
            // An empty or truncated file would otherwise start a gateway that refuses everyone.
            return Err(invalid(
                "upstream",
                "the configuration serves no domain: add an [[upstream]] table or a [domains] allow entry \
                 (is the file empty or cut short?)",
            ));
        }
        Ok(())
    }
}

fn check_file(key: &str, path: &Path) -> Result<(), ConfigError> {
    if path.is_file() {
        Ok(())
    } else {
        Err(invalid(key, format!("{} is not a readable file", path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loaders_index_paths_get_their_dots() {
        assert_eq!(dotted("upstream[1]address"), "upstream[1].address");
        assert_eq!(dotted("listener.trusted_proxies[0]"), "listener.trusted_proxies[0]");
        assert_eq!(dotted("a[0][1]b.c"), "a[0][1].b.c");
    }
}
