//! Sections oxrunner keeps verbatim (`[runners.ssh]`, `[runners.autoscaler]`, ...).

use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Serialize};

/// A TOML table kept as written. These sections hold passwords and cloud credentials
/// (`[runners.ssh] password`, `[runners.autoscaler.connector_config] password`) that
/// oxrunner does not model, so `Debug` shows key names only.
#[derive(Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RawSection(pub toml::Table);

impl RawSection {
    /// The table as parsed.
    pub fn table(&self) -> &toml::Table {
        &self.0
    }
}

impl Deref for RawSection {
    type Target = toml::Table;

    fn deref(&self) -> &toml::Table {
        &self.0
    }
}

impl fmt::Debug for RawSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawSection")
            .field("keys", &self.0.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_lists_keys_not_values() {
        let table: toml::Table =
            toml::from_str("user = \"root\"\npassword = \"hunter2\"\n").unwrap_or_default();
        let raw = RawSection(table);
        let shown = format!("{raw:?}");
        assert!(shown.contains("password"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(raw.get("user").and_then(|v| v.as_str()), Some("root"));
    }
}
