//! `homeward-replication-role`: runs the process-server or master-target role as its own
//! process. The `homeward` CLI wraps the same library calls; this binary exists so the
//! two roles can run on separate hosts (and as separate processes in tests).
//!
//! ```text
//! homeward-replication-role master-target --listen ADDR --journal DIR --disk ID=PATH...
//!     [--segment-bytes N]
//! homeward-replication-role process-server --connect ADDR --group NAME --disk ID=PATH...
//!     (--sync | --changes FILE --cycle SEQ) [--app-consistent] [--bwlimit BYTES_PER_SEC]
//!     [--codec auto|zstd|zstd-N|lz4|none] [--time-ms MS]
//! ```
//! The master target prints `LISTENING <addr>` once it accepts sessions. The process
//! server prints one JSON line describing what it did. `--changes` names a JSON file of
//! changed areas per disk id (`{"0": [[offset, len], ...]}`), standing in for the
//! adapter's `changed-areas` answer.
//!
//! For crash tests, `HOMEWARD_REPLICATION_FAULT=append:CYCLE:INDEX` (halfway through
//! writing a block record) or `apply:CYCLE:INDEX` (after applying a block) makes the
//! master target print `FAULT` and stop there until it is killed.

use std::{
    collections::BTreeMap,
    io::Write,
    path::PathBuf,
    sync::Arc,
};

use anyhow::{Context, bail};
use homeward_replication::{
    compress::CodecChoice,
    cycle::{DiskChanges, now_ms},
    extent::Extent,
    journal::{Consistency, FaultHook, FaultSite, JournalConfig},
    transport::{FileTransport, Transport},
    wire::{MasterTargetConfig, MasterTargetServer, ProcessServerSession, SessionOptions},
};

struct Args(Vec<String>);

impl Args {
    fn value(&self, name: &str) -> Option<String> {
        self.0.iter().position(|a| a == name).and_then(|i| self.0.get(i + 1).cloned())
    }
    fn values(&self, name: &str) -> Vec<String> {
        self.0.windows(2).filter(|w| w[0] == name).map(|w| w[1].clone()).collect()
    }
    fn flag(&self, name: &str) -> bool {
        self.0.iter().any(|a| a == name)
    }
    fn required(&self, name: &str) -> anyhow::Result<String> {
        self.value(name).with_context(|| format!("missing {name}"))
    }
    fn disks(&self) -> anyhow::Result<BTreeMap<u32, PathBuf>> {
        self.values("--disk")
            .iter()
            .map(|d| {
                let (id, path) = d.split_once('=').with_context(|| format!("--disk {d}: expected ID=PATH"))?;
                Ok((id.parse().with_context(|| format!("--disk {d}: bad id"))?, PathBuf::from(path)))
            })
            .collect()
    }
}

fn fault_hook() -> anyhow::Result<Option<FaultHook>> {
    let Ok(spec) = std::env::var("HOMEWARD_REPLICATION_FAULT") else { return Ok(None) };
    let parts: Vec<&str> = spec.split(':').collect();
    let [kind, cycle, index] = parts[..] else { bail!("HOMEWARD_REPLICATION_FAULT={spec}: expected KIND:CYCLE:INDEX") };
    let (cycle, index): (u64, u64) = (cycle.parse()?, index.parse()?);
    let want = match kind {
        "append" => FaultSite::MidBlockRecord { cycle, index },
        "apply" => FaultSite::AfterApplyBlock { cycle, index },
        other => bail!("unknown fault kind {other}"),
    };
    Ok(Some(Arc::new(move |site| {
        if site == want {
            println!("FAULT {site:?}");
            let _ = std::io::stdout().flush();
            // Stay here, mid-operation, until the test kills the process.
            loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            }
        }
    })))
}

async fn master_target(args: Args) -> anyhow::Result<()> {
    let config = MasterTargetConfig {
        journal_dir: PathBuf::from(args.required("--journal")?),
        replicas: args.disks()?,
        journal: JournalConfig {
            segment_bytes: args.value("--segment-bytes").map(|s| s.parse()).transpose()?.unwrap_or(JournalConfig::default().segment_bytes),
        },
        fault: fault_hook()?,
    };
    let listener = tokio::net::TcpListener::bind(args.required("--listen")?).await?;
    println!("LISTENING {}", listener.local_addr()?);
    std::io::stdout().flush()?;
    MasterTargetServer::new(config).serve(listener).await?;
    Ok(())
}

fn parse_changes(path: &str) -> anyhow::Result<BTreeMap<u32, Vec<Extent>>> {
    let raw: BTreeMap<String, Vec<(u64, u64)>> = serde_json::from_slice(&std::fs::read(path)?)?;
    raw.into_iter()
        .map(|(k, v)| Ok((k.parse()?, v.into_iter().map(|(o, l)| Extent::new(o, l)).collect())))
        .collect()
}

async fn process_server(args: Args) -> anyhow::Result<()> {
    let codec = match args.value("--codec") {
        None => CodecChoice::default(),
        Some(name) => name.parse::<CodecChoice>().map_err(|e| anyhow::anyhow!("--codec: {e}"))?,
    };
    let options = SessionOptions {
        bandwidth: args.value("--bwlimit").map(|s| s.parse()).transpose()?,
        codec,
        ..SessionOptions::default()
    };
    let mut sources: BTreeMap<u32, Arc<dyn Transport>> = BTreeMap::new();
    let mut decl = Vec::new();
    for (id, path) in args.disks()? {
        let t = FileTransport::open(&path, false)?;
        decl.push((id, t.size().await?));
        sources.insert(id, Arc::new(t));
    }
    let consistency = if args.flag("--app-consistent") { Consistency::App } else { Consistency::Crash };
    let mut session = ProcessServerSession::connect(&args.required("--connect")?, &args.value("--group").unwrap_or_default(), &decl, options).await?;
    let output = if args.flag("--sync") {
        let report = session.sync(&sources, consistency, None).await?;
        serde_json::json!({
            "mode": "sync",
            "point": report.cycle.map(|c| c.point.seq),
            "full_copy": report.full_copy,
            "blocks_sent": report.blocks_sent,
            "verified": format!("{:?}", report.verified),
        })
    } else {
        let cycle: u64 = args.required("--cycle")?.parse()?;
        let next = session.next_cycle();
        if next > cycle {
            serde_json::json!({ "mode": "cycle", "skipped": true, "cycle": cycle, "next_cycle": next })
        } else if next < cycle {
            bail!("master target expects cycle {next}; send the cycles before {cycle} first");
        } else {
            let changes = parse_changes(&args.required("--changes")?)?;
            let disks: Vec<DiskChanges> = changes
                .into_iter()
                .map(|(id, changed)| {
                    let source = sources.get(&id).cloned().with_context(|| format!("changes name disk {id} but no --disk {id}="))?;
                    Ok(DiskChanges { disk: id, source, changed })
                })
                .collect::<anyhow::Result<_>>()?;
            let time_ms = args.value("--time-ms").map(|s| s.parse()).transpose()?.unwrap_or_else(now_ms);
            let report = session.cycle(&disks, time_ms, consistency, None).await?;
            serde_json::json!({
                "mode": "cycle",
                "skipped": false,
                "cycle": report.point.seq,
                "blocks": report.blocks,
                "bytes_changed": report.bytes_changed,
                "bytes_sent": report.bytes_sent,
            })
        }
    };
    session.close().await?;
    println!("{output}");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let mut argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.is_empty() {
        bail!("usage: homeward-replication-role (master-target|process-server) ...");
    }
    let role = argv.remove(0);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async move {
        match role.as_str() {
            "master-target" => master_target(Args(argv)).await,
            "process-server" => process_server(Args(argv)).await,
            other => bail!("unknown role {other}; expected master-target or process-server"),
        }
    })
}
