//! The run's report: console (cargo-test style), JUnit XML and JSON.

use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cases::Outcome;
use crate::site::Profile;

/// How one case ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// The adapter conforms.
    Passed,
    /// The adapter does not conform; the message says what to fix.
    Failed,
    /// Not run: the adapter's `describe` says it cannot, or the site cannot stage it.
    Skipped,
    /// Failed, and the expectations file says it would, with a reason.
    ExpectedFailure,
    /// Passed although the expectations file says it fails: remove the entry.
    UnexpectedPass,
}

impl Status {
    /// Whether this status fails the run.
    pub fn is_failure(self) -> bool {
        matches!(self, Status::Failed | Status::UnexpectedPass)
    }

    fn word(self) -> &'static str {
        match self {
            Status::Passed => "ok",
            Status::Failed => "FAILED",
            Status::Skipped => "skipped",
            Status::ExpectedFailure => "expected failure",
            Status::UnexpectedPass => "UNEXPECTED PASS",
        }
    }
}

/// What the adapter used during one case, summed over every instance the case loaded
/// (from the plugin host's `call_stats`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseStats {
    /// Export calls made.
    pub calls: u64,
    /// Host calls the adapter made (HTTP, config, key-value, logging).
    pub host_calls: u64,
    /// Fuel consumed (0 when fuel is off).
    pub fuel_used: u64,
    /// The largest linear memory any instance reached, in bytes.
    pub peak_memory_bytes: u64,
}

/// One case's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseReport {
    /// The case's name (see [`crate::CASES`]).
    pub name: String,
    /// How it ended.
    pub status: Status,
    /// Why it failed or was skipped: what is wrong and what to fix.
    pub message: Option<String>,
    /// The expectations file's reason, for expected failures and unexpected passes.
    pub expected_reason: Option<String>,
    /// Conformant but worth knowing (such as a superset of changed areas, with its size).
    pub warnings: Vec<String>,
    /// Parts of the case not run, and why.
    pub notes: Vec<String>,
    /// Wall-clock time of the case, lab start-up included.
    pub duration_ms: f64,
    /// What the adapter used.
    pub stats: CaseStats,
}

impl CaseReport {
    pub(crate) fn from_outcome(name: &str, outcome: Outcome, took: Duration) -> CaseReport {
        let (status, message) = match outcome.end {
            None => (Status::Passed, None),
            Some(crate::cases::End::Fail(m)) => (Status::Failed, Some(m)),
            Some(crate::cases::End::Skip(m)) => (Status::Skipped, Some(m)),
        };
        CaseReport {
            name: name.to_string(),
            status,
            message,
            expected_reason: None,
            warnings: outcome.warnings,
            notes: outcome.notes,
            duration_ms: took.as_secs_f64() * 1000.0,
            stats: outcome.stats,
        }
    }

    pub(crate) fn apply_expectation(&mut self, reason: Option<&str>) {
        let Some(reason) = reason else { return };
        self.expected_reason = Some(reason.to_string());
        match self.status {
            Status::Failed => self.status = Status::ExpectedFailure,
            Status::Passed => {
                self.status = Status::UnexpectedPass;
                self.message = Some(format!(
                    "the case passed, but the expectations file marks it as expected to fail ({reason}): remove its entry from [expected-failures]"
                ));
            }
            _ => {}
        }
    }
}

/// The whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The component file.
    pub component: String,
    /// Its sha256.
    pub sha256: String,
    /// The manifest's name.
    pub manifest_name: String,
    /// The manifest's version.
    pub manifest_version: String,
    /// The `homeward:adapter` version it was built against.
    pub wit_version: String,
    /// `describe`'s adapter string, when describe answered.
    pub adapter: Option<String>,
    /// The site the run used.
    pub profile: Profile,
    /// The seed of the random writes and clears.
    pub seed: u64,
    /// Wall-clock time of the whole run.
    pub duration_ms: f64,
    /// One entry per case run, in suite order.
    pub cases: Vec<CaseReport>,
}

/// Counts per status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Cases passed.
    pub passed: usize,
    /// Cases failed.
    pub failed: usize,
    /// Cases skipped.
    pub skipped: usize,
    /// Failures the expectations file expected.
    pub expected_failures: usize,
    /// Passes the expectations file said would fail.
    pub unexpected_passes: usize,
}

impl Report {
    /// True when no case failed and none passed unexpectedly.
    pub fn success(&self) -> bool {
        !self.cases.iter().any(|c| c.status.is_failure())
    }

    /// The case called `name`.
    pub fn case(&self, name: &str) -> Option<&CaseReport> {
        self.cases.iter().find(|c| c.name == name)
    }

    /// Counts per status.
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for case in &self.cases {
            match case.status {
                Status::Passed => c.passed += 1,
                Status::Failed => c.failed += 1,
                Status::Skipped => c.skipped += 1,
                Status::ExpectedFailure => c.expected_failures += 1,
                Status::UnexpectedPass => c.unexpected_passes += 1,
            }
        }
        c
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        let mut v = serde_json::to_value(self).expect("a report serialises");
        v["success"] = serde_json::Value::Bool(self.success());
        v["counts"] = serde_json::to_value(self.counts()).expect("counts serialise");
        serde_json::to_string_pretty(&v).expect("a report serialises")
    }

    /// The human report, in the style of `cargo test`.
    pub fn to_console(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\nrunning {} conformance cases for {} {} ({}) on profile {}",
            self.cases.len(),
            if self.manifest_name.is_empty() { "adapter" } else { &self.manifest_name },
            self.manifest_version,
            self.component,
            self.profile
        );
        for c in &self.cases {
            let _ = writeln!(out, "case {} ... {} ({:.1}s)", c.name, c.status.word(), c.duration_ms / 1000.0);
            if c.status == Status::Skipped
                && let Some(m) = &c.message {
                    let _ = writeln!(out, "    skipped: {m}");
                }
            if c.status == Status::ExpectedFailure {
                let _ = writeln!(out, "    expected: {}", c.expected_reason.as_deref().unwrap_or_default());
            }
            for w in &c.warnings {
                let _ = writeln!(out, "    warning: {w}");
            }
            for n in &c.notes {
                let _ = writeln!(out, "    note: {n}");
            }
        }
        let failures: Vec<&CaseReport> = self.cases.iter().filter(|c| c.status.is_failure() || c.status == Status::ExpectedFailure).collect();
        if !failures.is_empty() {
            let _ = writeln!(out, "\nfailures:");
            for c in failures {
                let _ = writeln!(out, "\n---- {} ({}) ----\n{}", c.name, c.status.word(), c.message.as_deref().unwrap_or_default());
            }
        }
        let _ = writeln!(out, "\nresource use per case (calls / host calls / fuel / peak memory):");
        for c in &self.cases {
            let _ = writeln!(
                out,
                "    {:<28} {:>5} / {:>6} / {:>14} / {:>6.1} MiB",
                c.name,
                c.stats.calls,
                c.stats.host_calls,
                c.stats.fuel_used,
                c.stats.peak_memory_bytes as f64 / (1 << 20) as f64
            );
        }
        let n = self.counts();
        let _ = writeln!(
            out,
            "\ntest result: {}. {} passed; {} failed; {} skipped; {} expected failures; {} unexpected passes; finished in {:.1}s (seed {})",
            if self.success() { "ok" } else { "FAILED" },
            n.passed,
            n.failed,
            n.skipped,
            n.expected_failures,
            n.unexpected_passes,
            self.duration_ms / 1000.0,
            self.seed
        );
        out
    }

    /// The report as JUnit XML: one `<testsuite>` for the run, one `<testcase>` per case.
    /// Failures and unexpected passes are `<failure>`, skips `<skipped>`; an expected
    /// failure is a passing testcase whose `<system-out>` carries the reason.
    pub fn to_junit(&self) -> String {
        let n = self.counts();
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let suite = format!("homeward-testkit.{}", self.profile);
        let _ = writeln!(
            out,
            "<testsuites name=\"homeward-testkit\" tests=\"{}\" failures=\"{}\" skipped=\"{}\" time=\"{:.3}\">",
            self.cases.len(),
            n.failed + n.unexpected_passes,
            n.skipped,
            self.duration_ms / 1000.0
        );
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"{}\" time=\"{:.3}\">",
            esc(&suite),
            self.cases.len(),
            n.failed + n.unexpected_passes,
            n.skipped,
            self.duration_ms / 1000.0
        );
        let _ = writeln!(out, "    <properties>");
        for (k, v) in [
            ("component", self.component.as_str()),
            ("sha256", self.sha256.as_str()),
            ("manifest", self.manifest_name.as_str()),
            ("wit-version", self.wit_version.as_str()),
            ("profile", self.profile.name()),
        ] {
            let _ = writeln!(out, "      <property name=\"{}\" value=\"{}\"/>", esc(k), esc(v));
        }
        let _ = writeln!(out, "      <property name=\"seed\" value=\"{}\"/>", self.seed);
        let _ = writeln!(out, "    </properties>");
        for c in &self.cases {
            let _ = write!(out, "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\">", esc(&suite), esc(&c.name), c.duration_ms / 1000.0);
            let msg = c.message.as_deref().unwrap_or_default();
            match c.status {
                Status::Failed => {
                    let _ = write!(out, "\n      <failure message=\"{}\" type=\"nonconformance\">{}</failure>", esc(first_line(msg)), esc(msg));
                }
                Status::UnexpectedPass => {
                    let _ = write!(out, "\n      <failure message=\"{}\" type=\"unexpected-pass\">{}</failure>", esc(first_line(msg)), esc(msg));
                }
                Status::Skipped => {
                    let _ = write!(out, "\n      <skipped message=\"{}\"/>", esc(msg));
                }
                Status::Passed | Status::ExpectedFailure => {}
            }
            let mut sysout = Vec::new();
            if c.status == Status::ExpectedFailure {
                sysout.push(format!("expected failure ({}): {msg}", c.expected_reason.as_deref().unwrap_or_default()));
            }
            sysout.extend(c.warnings.iter().map(|w| format!("warning: {w}")));
            sysout.extend(c.notes.iter().map(|w| format!("note: {w}")));
            sysout.push(format!(
                "calls={} host_calls={} fuel_used={} peak_memory_bytes={}",
                c.stats.calls, c.stats.host_calls, c.stats.fuel_used, c.stats.peak_memory_bytes
            ));
            let _ = write!(out, "\n      <system-out>{}</system-out>\n    </testcase>\n", esc(&sysout.join("\n")));
        }
        let _ = writeln!(out, "  </testsuite>\n</testsuites>");
        out
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default()
}

/// Escapes text for XML attributes and content; drops characters XML 1.0 cannot carry.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' | '\t' | '\r' => out.push(ch),
            c if (c as u32) < 0x20 => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_control_characters() {
        assert_eq!(esc("a<b & \"c\"\u{1}"), "a&lt;b &amp; &quot;c&quot;");
    }
}
