//! The expectations file: known failures a vendor marks as expected, each with a reason.
//!
//! ```toml
//! # homeward-testkit-expect.toml
//! [expected-failures]
//! "errors::throttle" = "our backend has no throttling signal yet (VENDOR-123)"
//! "change-tracking" = "CBT lands in 2.1"
//! ```
//!
//! A listed case that fails is reported as `expected failure` and does not fail the run. A
//! listed case that passes is reported as `unexpected pass`, which does fail the run: the
//! vendor should remove the entry. A listed name that matches no case is an error, so a
//! typo cannot hide a failure.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Parsed expectations.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectations {
    /// Case name → why it is expected to fail.
    #[serde(default, rename = "expected-failures")]
    pub expected_failures: BTreeMap<String, String>,
}

impl Expectations {
    /// Parses an expectations file's text. `source` names it in errors.
    pub fn parse(text: &str, source: &str) -> anyhow::Result<Expectations> {
        let e: Expectations = toml::from_str(text).map_err(|e| {
            anyhow::anyhow!("expectations file {source} is invalid: {e}. It holds one table, [expected-failures], of \"case name\" = \"reason\" lines")
        })?;
        for (case, reason) in &e.expected_failures {
            if reason.trim().is_empty() {
                anyhow::bail!("expectations file {source}: case `{case}` is marked as expected to fail without a reason; say why (and where it is tracked)");
            }
        }
        Ok(e)
    }

    /// Reads and parses an expectations file.
    pub fn load(path: &Path) -> anyhow::Result<Expectations> {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read expectations file {}: {e}", path.display()))?;
        Self::parse(&text, &path.display().to_string())
    }

    /// The reason a case is expected to fail, if it is.
    pub fn reason(&self, case: &str) -> Option<&str> {
        self.expected_failures.get(case).map(String::as_str)
    }

    /// Entries naming no known case (typos), given every case name.
    pub fn unknown_cases<'a>(&'a self, known: &[&str]) -> Vec<&'a str> {
        self.expected_failures.keys().map(String::as_str).filter(|c| !known.contains(c)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_requires_reasons() {
        let e = Expectations::parse("[expected-failures]\n\"errors::throttle\" = \"no 429 yet\"\n", "x.toml").unwrap();
        assert_eq!(e.reason("errors::throttle"), Some("no 429 yet"));
        assert_eq!(e.reason("contract"), None);
        assert!(Expectations::parse("[expected-failures]\ncontract = \" \"\n", "x.toml").is_err());
        assert!(Expectations::parse("[expected]\ncontract = \"r\"\n", "x.toml").is_err(), "unknown tables are refused");
        assert_eq!(e.unknown_cases(&["contract"]), vec!["errors::throttle"]);
    }
}
