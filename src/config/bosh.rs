//! The `[bosh]` section: the BOSH (XEP-0124, XEP-0206) front door on the public listener, its
//! path, the session parameters it grants (the clients' `wait` and `hold` are capped by these),
//! and its own bounds. Description only; `crate::bosh` serves it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::values::{any_seconds, count_at_least_one, count_between, seconds, UrlPath};

/// BOSH on the public listener.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BoshConfig {
    /// Serve BOSH at all.
    pub enabled: bool,
    /// The HTTP path of the BOSH endpoint (not the WebSocket path, not host-meta's).
    pub path: UrlPath,
    /// The longest a request is held (`wait`, seconds): a client asking for more gets this.
    #[serde(rename = "max_wait_secs", with = "seconds")]
    pub max_wait: Duration,
    /// The most requests held at once (`hold`); `requests` is this plus one. 1 to 10.
    #[serde(deserialize_with = "count_between::<_, 1, 10>")]
    pub max_hold: usize,
    /// How long a session lives with no request held (`inactivity`, seconds): after that the
    /// client is gone, and the upstream is closed without `</stream:stream>` (resumable).
    #[serde(rename = "inactivity_secs", with = "seconds")]
    pub inactivity: Duration,
    /// The shortest time between two empty requests of a polling client (`polling`, seconds;
    /// 0 lets clients poll as often as they like).
    #[serde(rename = "polling_secs", with = "any_seconds")]
    pub polling: Duration,
    /// The longest pause a client may ask for (`maxpause`, seconds).
    #[serde(rename = "max_pause_secs", with = "seconds")]
    pub max_pause: Duration,
    /// Most child elements in one request body.
    #[serde(deserialize_with = "count_at_least_one")]
    pub max_children_per_body: usize,
}

impl Default for BoshConfig {
    fn default() -> Self {
        BoshConfig {
            enabled: true,
            path: "/http-bind".parse().expect("a valid path"),
            max_wait: Duration::from_secs(60),
            max_hold: 1,
            inactivity: Duration::from_secs(60),
            polling: Duration::from_secs(2),
            max_pause: Duration::from_secs(120),
            max_children_per_body: 100,
        }
    }
}

/// Bytes of a request body beyond its largest element: the `<body>` tag and the whitespace
/// between children.
pub const BODY_OVERHEAD_BYTES: usize = 16 * 1024;
