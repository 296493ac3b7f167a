//! `homeward`: the operator's command line.

mod commands;
mod config;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::output::Output;

/// Homeward: disaster recovery that fails back.
#[derive(Debug, Parser)]
#[command(name = "homeward", version, about)]
struct Cli {
    /// Config file (default: $HOMEWARD_CONFIG, else ./homeward.toml).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long, global = true)]
    json: bool,
    /// More log output on stderr (repeat for more); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate the config file.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Inspect and check adapter plugins.
    Plugins {
        #[command(subcommand)]
        command: PluginsCommand,
    },
    /// Check native disk transports.
    Transports {
        #[command(subcommand)]
        command: TransportsCommand,
    },
    /// Run the simulated sites.
    Lab {
        #[command(subcommand)]
        command: LabCommand,
    },
    /// The failback drill on the built-in lab: protect, fail over, reprotect, fail back,
    /// commit and protect again, with a verified report.
    Demo {
        /// Keep the lab and state here instead of a temporary directory.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Run the adapter conformance suite against a component, or check one quickly.
    #[command(subcommand)]
    Testkit(homeward_testkit::TestkitCommand),
    #[command(flatten)]
    Ops(commands::ops::OpsCommand),
}

#[derive(Debug, Subcommand)]
enum LabCommand {
    /// Start the simulated vCenter and standalone-ESXi sites on loopback in the foreground,
    /// print their endpoints and credentials, and write an operator config for them.
    Up {
        /// Where the lab keeps its disks and state.
        #[arg(long, default_value = "homeward-lab")]
        dir: PathBuf,
        /// Where to write the operator config.
        #[arg(long, default_value = "homeward-lab.toml")]
        config_out: PathBuf,
        /// vCenter inventory (TOML); default: examples/lab/vcenter.toml, built in.
        #[arg(long, value_name = "FILE")]
        vcenter: Option<PathBuf>,
        /// Standalone ESXi inventory (TOML); default: examples/lab/esxi.toml, built in.
        #[arg(long, value_name = "FILE")]
        esxi: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Parse and validate the layered config, pins, grants and preopens; load nothing.
    Check,
}

#[derive(Debug, Subcommand)]
enum PluginsCommand {
    /// List configured plugins with their pins.
    List,
    /// Show a plugin's WIT version, exports, declared and granted hosts, and hash.
    Inspect { name: String },
    /// Load and instantiate every plugin and call `describe`.
    Check,
    /// Record the sha256 of each named plugin's current file in the config file (after
    /// you have reviewed that file).
    Pin {
        #[arg(required = true)]
        names: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum TransportsCommand {
    /// Load every native transport: trust, pin and ABI version.
    Check,
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let out = Output { json: cli.json };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli, out));
    match result {
        Ok(code) => code,
        Err(e) => {
            if out.json {
                println!("{}", serde_json::json!({ "error": format!("{e:#}") }));
            } else {
                eprintln!("error: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, out: Output) -> anyhow::Result<ExitCode> {
    let config_flag = cli.config.as_deref();
    match cli.command {
        Command::Config { command: ConfigCommand::Check } => commands::config_check::run(config_flag, out),
        Command::Plugins { command } => match command {
            PluginsCommand::List => commands::plugins::list(config_flag, out),
            PluginsCommand::Inspect { name } => commands::plugins::inspect(config_flag, &name, out),
            PluginsCommand::Check => commands::plugins::check(config_flag, out).await,
            PluginsCommand::Pin { names } => commands::pin::run(config_flag, &names, out),
        },
        Command::Transports { command: TransportsCommand::Check } => commands::transports::check(config_flag, out),
        Command::Demo { dir } => commands::demo::run(commands::demo::DemoArgs { dir }, out).await,
        Command::Testkit(cmd) => homeward_testkit::run_cli(cmd, out.json).await,
        Command::Ops(command) => commands::ops::run(config_flag, command, out).await,
        Command::Lab { command: LabCommand::Up { dir, config_out, vcenter, esxi } } => {
            commands::lab::up(commands::lab::LabUpArgs { dir, config_out, vcenter, esxi }, out).await
        }
    }
}
