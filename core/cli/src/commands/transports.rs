//! `homeward transports check`.

use std::path::Path;
use std::process::ExitCode;

use crate::commands::config_check::{ItemReport, check_transport};
use crate::config;
use crate::output::{Output, table};

/// Loads every configured native transport and reports trust, pin and ABI.
pub fn check(flag: Option<&Path>, out: Output) -> anyhow::Result<ExitCode> {
    let loaded = config::load(flag)?;
    let reports: Vec<ItemReport> = loaded.transport_specs().iter().map(check_transport).collect();
    let ok = reports.iter().all(|r| r.ok);
    out.emit(&reports, || {
        if reports.is_empty() {
            return "no native transports configured\n".into();
        }
        let rows: Vec<Vec<String>> = reports
            .iter()
            .map(|r| vec![r.name.clone(), if r.ok { "ok".into() } else { r.problems.join("; ") }])
            .collect();
        table(&["TRANSPORT", "STATUS"], &rows)
    })?;
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
