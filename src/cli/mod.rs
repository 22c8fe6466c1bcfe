//! The command line: one file per command, each with its clap arguments and their
//! conversion to the library's typed options; the option groups they share in `options`.
//! Timely's own flags (`-w`, `-n`, `-p`, `-h`) go after `--`.

mod check;
mod config;
mod demo;
mod generate;
mod ingest;
mod options;
mod reference;
mod replay;
mod run;
mod simulate;
mod telemetry;

use anyhow::{Context, Result};
use check::CheckArgs;
use clap::{Args, Parser, Subcommand};
use demo::DemoArgs;
use generate::GenerateArgs;
use ingest::IngestArgs;
use options::TelemetryArgs;
use reference::ReferenceArgs;
use replay::ReplayArgs;
use run::RunArgs;
use simulate::SimulateArgs;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "eod",
    version,
    about = "End-of-day trade processing: FIX in, exact positions and P&L out"
)]
pub(crate) struct Cli {
    /// TOML config file: top-level keys for every command, `[command]` tables for one.
    /// Precedence: flags > `EOD_*` environment > this file > built-in defaults.
    #[arg(long, global = true, env = crate::cli::config::CONFIG_ENV)]
    pub(crate) config: Option<PathBuf>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Replay an archive of raw FIX files through the dataflow and print a summary.
    Replay(ReplayArgs),
    /// Run the simulator live into the dataflow and serve the HTTP views.
    Demo(DemoArgs),
    /// Write a simulated FIX archive (and its prices CSV) for replays and benchmarks.
    Generate(GenerateArgs),
    /// Validate a FIX archive and publish its trades to Kafka (dead letters to the DLQ topic).
    Ingest(IngestArgs),
    /// Run the dataflow from Kafka, serving the HTTP views.
    Run(RunArgs),
    /// Drive a gateway over TCP with the seeded simulator (prices to Kafka).
    Simulate(SimulateArgs),
    /// Publish reference data (traders, securities CSVs) to the reference topic, where
    /// `eod run` follows it: a changed record re-enriches the books rows it touches.
    Reference(ReferenceArgs),
    /// Go or no-go before the close: scenarios against a running deployment (health,
    /// throughput, latency, burst, integrity, dead letters), a verdict each, exit status 1
    /// when any fails.
    Check(CheckArgs),
    /// Inspect the layered configuration (defaults, file, environment, flags).
    Config(ConfigArgs),
}

#[derive(Args, Debug)]
pub(crate) struct ConfigArgs {
    #[command(subcommand)]
    pub(crate) action: ConfigAction,
}

#[derive(Subcommand, Debug)]
pub(crate) enum ConfigAction {
    /// Print the effective configuration of a command as TOML, with each value's source and
    /// environment variable; passwords and tokens are redacted.
    /// Example: `eod --config eod.toml config show run -- -w 2`.
    Show {
        /// The command whose configuration to show (run, demo, replay, ingest, ...).
        command: String,
        /// That command's flags, as you would give them to it.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

/// Parses the command line through every configuration layer and runs the command.
pub(crate) fn main() -> Result<()> {
    let cli = parse_cli()?;
    let telemetry_args = match &cli.command {
        Command::Replay(args) => Some(&args.telemetry),
        Command::Demo(args) => Some(&args.telemetry),
        Command::Ingest(args) => Some(&args.telemetry),
        Command::Run(args) => Some(&args.telemetry),
        Command::Simulate(args) => Some(&args.telemetry),
        _ => None,
    };
    // Lives to the end of main: dropping it flushes the spans still batched.
    let _telemetry = crate::cli::telemetry::init(
        &telemetry_args
            .map(TelemetryArgs::options)
            .unwrap_or_default(),
    )?;
    match cli.command {
        Command::Replay(args) => replay::replay(args),
        Command::Demo(args) => demo::demo(args),
        Command::Generate(args) => generate::generate(args),
        Command::Ingest(args) => ingest::ingest(args),
        Command::Run(args) => run::run(args),
        Command::Simulate(args) => simulate::simulate(args),
        Command::Reference(args) => reference::publish_reference(args),
        Command::Check(args) => check::check(args),
        Command::Config(args) => match args.action {
            ConfigAction::Show { command, args } => show_config(cli.config, command, args),
        },
    }
}

/// The clap definition with the `EOD_*` environment layer added to every option.
pub(crate) fn cli_command() -> clap::Command {
    crate::cli::config::with_env_names(<Cli as clap::CommandFactory>::command())
}

/// Parses `argv` through every layer: flags, then environment, then the config file.
pub(crate) fn parse_layers(
    argv: Vec<std::ffi::OsString>,
) -> Result<(
    clap::ArgMatches,
    Option<PathBuf>,
    crate::cli::config::Layered,
)> {
    let cli = cli_command();
    let lenient = crate::cli::config::lenient(&cli, &argv);
    let config = crate::cli::config::config_path(&lenient);
    let layered = match &config {
        Some(path) => {
            let file = crate::cli::config::ConfigFile::load(path)?;
            crate::cli::config::apply_file(&cli, &argv, &lenient, &file)?
        }
        None => crate::cli::config::Layered {
            argv,
            ..Default::default()
        },
    };
    let matches = cli
        .try_get_matches_from(&layered.argv)
        .unwrap_or_else(|e| e.exit());
    Ok((matches, config, layered))
}

pub(crate) fn parse_cli() -> Result<Cli> {
    let (matches, _, _) = parse_layers(std::env::args_os().collect())?;
    Ok(<Cli as clap::FromArgMatches>::from_arg_matches(&matches).unwrap_or_else(|e| e.exit()))
}

pub(crate) fn show_config(
    config: Option<PathBuf>,
    command: String,
    args: Vec<std::ffi::OsString>,
) -> Result<()> {
    let mut argv: Vec<std::ffi::OsString> = vec!["eod".into()];
    if let Some(path) = &config {
        argv.extend(["--config".into(), path.clone().into_os_string()]);
    }
    argv.push(command.clone().into());
    argv.extend(args);
    let (matches, config, layered) = parse_layers(argv)?;
    // The same checks the command itself would make.
    <Cli as clap::FromArgMatches>::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let cli = cli_command();
    let (name, sub_matches) = matches
        .subcommand()
        .context("no command to show the configuration of")?;
    let sub = cli
        .find_subcommand(name)
        .with_context(|| format!("unknown command `{name}`"))?;
    match &config {
        Some(path) => println!("# effective configuration; file {}", path.display()),
        None => println!("# effective configuration; no config file"),
    }
    print!(
        "{}",
        crate::cli::config::show(sub, sub_matches, &layered.from_file)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every option says what it does (its default and env name are printed beside it).
    #[test]
    fn every_option_is_documented() {
        let cli = cli_command();
        let mut undocumented = Vec::new();
        for command in cli.get_subcommands() {
            for arg in command.get_arguments() {
                let named = arg.get_long().is_some() && arg.get_id() != "help";
                if named && arg.get_help().is_none() {
                    undocumented.push(format!("{} --{}", command.get_name(), arg.get_id()));
                }
            }
        }
        assert!(undocumented.is_empty(), "undocumented: {undocumented:#?}");
    }

    #[test]
    fn command_line_definition_is_consistent() {
        // Catches clashing flag names across flattened argument groups before a user does.
        <Cli as clap::CommandFactory>::command().debug_assert();
    }
}
