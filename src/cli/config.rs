//! Layered configuration: built-in defaults < TOML file < `EOD_*` environment < flags.
//!
//! The clap argument structs are the one typed configuration: every option is declared once,
//! with its type, default and help. This module adds the two outer layers to them:
//! - every named option gets an `EOD_<NAME>` environment variable (unless it declares one);
//! - a TOML file (`--config`/`EOD_CONFIG`) supplies options that neither the command line nor
//!   the environment set. Its values go through the same clap parsers as flags, so a bad value
//!   in the file fails exactly as it would on the command line, naming the key.
//!
//! The file: top-level keys apply to every command that has the option; a `[command]` table
//! applies to that command only and wins over the top level. Keys are the long flag names
//! (`epoch-ms` or `epoch_ms`). A key no command knows is an error, not a silent no-op.
//!
//! ```toml
//! brokers = "kafka-1:9092,kafka-2:9092"
//! redis = "redis://redis:6379"
//!
//! [run]
//! group-id = "eod-run"
//! books = "postgres://eod:secret@db:5432/eod"
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::Path;

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};

/// The environment variable of the config file itself.
pub const CONFIG_ENV: &str = "EOD_CONFIG";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("config file {path}: unknown key `{key}`{hint}")]
    UnknownKey {
        path: String,
        key: String,
        hint: String,
    },
    #[error("config file {path}: `{key}` must be {expected}")]
    BadValue {
        path: String,
        key: String,
        expected: &'static str,
    },
}

/// A parsed config file, not yet applied to a command.
#[derive(Debug, Default, Clone)]
pub struct ConfigFile {
    path: String,
    /// Top-level keys, normalised to clap ids (`epoch_ms`).
    common: BTreeMap<String, toml::Value>,
    /// `[command]` tables.
    commands: BTreeMap<String, BTreeMap<String, toml::Value>>,
}

fn normalise(key: &str) -> String {
    key.replace('-', "_")
}

impl ConfigFile {
    pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        ConfigFile::parse(&path.display().to_string(), &text)
    }

    pub fn parse(path: &str, text: &str) -> Result<ConfigFile, ConfigError> {
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Parse {
                path: path.to_owned(),
                message: e.to_string(),
            })?;
        let mut file = ConfigFile {
            path: path.to_owned(),
            ..ConfigFile::default()
        };
        for (key, value) in table {
            match value {
                toml::Value::Table(section) => {
                    let section = section
                        .into_iter()
                        .map(|(k, v)| (normalise(&k), v))
                        .collect();
                    file.commands.insert(key, section);
                }
                value => {
                    file.common.insert(normalise(&key), value);
                }
            }
        }
        Ok(file)
    }

    /// Checks every key against `cli`: each `[command]` must be a command, each key an option
    /// of it; a top-level key must be an option of at least one command.
    pub fn validate(&self, cli: &Command) -> Result<(), ConfigError> {
        let unknown = |key: &str, hint: String| ConfigError::UnknownKey {
            path: self.path.clone(),
            key: key.to_owned(),
            hint,
        };
        for (name, section) in &self.commands {
            let Some(command) = cli.find_subcommand(name) else {
                return Err(unknown(name, " (not a command)".into()));
            };
            for key in section.keys() {
                if configurable(command).all(|arg| arg.get_id() != key.as_str()) {
                    return Err(unknown(key, format!(" in [{name}]")));
                }
            }
        }
        for key in self.common.keys() {
            let known = cli
                .get_subcommands()
                .any(|c| configurable(c).any(|arg| arg.get_id() == key.as_str()));
            if !known {
                return Err(unknown(key, String::new()));
            }
        }
        Ok(())
    }

    /// The file's values for `command`: its own table over the top-level keys it has.
    fn values_for(&self, command: &Command) -> BTreeMap<String, toml::Value> {
        let mut values: BTreeMap<String, toml::Value> = self
            .common
            .iter()
            .filter(|(key, _)| configurable(command).any(|a| a.get_id() == key.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let Some(section) = self.commands.get(command.get_name()) {
            values.extend(section.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        values
    }
}

/// Options a file or the environment may set: named (`--long`), not help/version.
fn configurable(command: &Command) -> impl Iterator<Item = &Arg> {
    command.get_arguments().filter(|arg| {
        arg.get_long().is_some()
            && !matches!(
                arg.get_action(),
                ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version
            )
            && arg.get_id() != "config"
    })
}

/// `EOD_` and the option's name in capitals: `--epoch-ms` is `EOD_EPOCH_MS`.
pub fn env_name(id: &str) -> String {
    format!("EOD_{}", id.to_ascii_uppercase())
}

/// Gives every configurable option of every command an `EOD_*` variable, unless it names one.
pub fn with_env_names(cli: Command) -> Command {
    cli.mut_subcommands(|command| {
        let ids: Vec<String> = configurable(&command)
            .filter(|arg| arg.get_env().is_none())
            .map(|arg| arg.get_id().to_string())
            .collect();
        ids.into_iter().fold(command, |command, id| {
            let name = env_name(&id);
            // `--help` shows a variable's current value: never a secret's.
            let hide = is_secret(&id) || id.ends_with("_option");
            command.mut_arg(id, |arg| arg.env(name).hide_env_values(hide))
        })
    })
}

/// A command line with the file layer applied.
#[derive(Debug, Clone, Default)]
pub struct Layered {
    pub argv: Vec<OsString>,
    /// Options whose value came from the file.
    pub from_file: BTreeSet<String>,
}

/// A lenient parse of `argv`: what flags and environment set so far, before the file layer
/// (a required option may still be coming from the file). Empty after `--help`/`--version`.
pub fn lenient(cli: &Command, argv: &[OsString]) -> ArgMatches {
    cli.clone()
        .ignore_errors(true)
        .try_get_matches_from(argv)
        .unwrap_or_default()
}

/// `--config`/`EOD_CONFIG` from a lenient parse, before or after the command's name.
pub fn config_path(lenient: &ArgMatches) -> Option<std::path::PathBuf> {
    // `try_`: the matches are empty after --help or --version, which is not an error.
    let given = |m: &ArgMatches| {
        m.try_get_one::<std::path::PathBuf>("config")
            .ok()
            .flatten()
            .cloned()
    };
    given(lenient).or_else(|| lenient.subcommand().and_then(|(_, m)| given(m)))
}

/// The command line with the file's values added as flags, for exactly the options that
/// neither `argv` nor the environment set (`lenient` is [`lenient`] of `argv`). `argv[0]` is
/// the program.
pub fn apply_file(
    cli: &Command,
    argv: &[OsString],
    lenient: &ArgMatches,
    file: &ConfigFile,
) -> Result<Layered, ConfigError> {
    let unchanged = || Layered {
        argv: argv.to_vec(),
        from_file: BTreeSet::new(),
    };
    file.validate(cli)?;
    let Some((name, matches)) = lenient.subcommand() else {
        return Ok(unchanged());
    };
    let Some(command) = cli.find_subcommand(name) else {
        return Ok(unchanged());
    };
    let set_by_user = |id: &str| {
        matches!(
            matches
                .try_get_raw(id)
                .ok()
                .flatten()
                .and(matches.value_source(id)),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        )
    };
    let mut injected: Vec<OsString> = Vec::new();
    let mut from_file = BTreeSet::new();
    for (key, value) in file.values_for(command) {
        if set_by_user(&key) {
            continue;
        }
        let Some(arg) = configurable(command).find(|a| a.get_id() == key.as_str()) else {
            continue;
        };
        // An option the user set that conflicts with this one wins over the file.
        let overruled = command
            .get_arguments()
            .filter(|other| set_by_user(other.get_id().as_str()))
            .any(|other| {
                command
                    .get_arg_conflicts_with(other)
                    .iter()
                    .any(|c| c.get_id() == arg.get_id())
                    || command
                        .get_arg_conflicts_with(arg)
                        .iter()
                        .any(|c| c.get_id() == other.get_id())
            });
        if overruled {
            continue;
        }
        let long = arg.get_long().unwrap_or_default();
        from_file.insert(key.clone());
        let bad = |expected| ConfigError::BadValue {
            path: file.path.clone(),
            key: key.clone(),
            expected,
        };
        if matches!(arg.get_action(), ArgAction::SetTrue) {
            match value {
                toml::Value::Boolean(true) => injected.push(format!("--{long}").into()),
                toml::Value::Boolean(false) => {}
                _ => return Err(bad("true or false")),
            }
            continue;
        }
        let scalars = match value {
            toml::Value::Array(items) => items,
            scalar => vec![scalar],
        };
        for scalar in scalars {
            let text = match scalar {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                _ => return Err(bad("a string, number, boolean or array of them")),
            };
            injected.push(format!("--{long}={text}").into());
        }
    }
    if injected.is_empty() {
        return Ok(unchanged());
    }
    // Right after the command's name, so a trailing `-- <timely flags>` stays trailing.
    let position = argv
        .iter()
        .enumerate()
        .skip(1)
        .find(|(i, token)| {
            token.to_str() == Some(name)
                && argv
                    .get(i - 1)
                    .and_then(|t| t.to_str())
                    .is_none_or(|previous| previous != "--config")
        })
        .map(|(i, _)| i + 1)
        .unwrap_or(argv.len());
    let mut layered = argv[..position].to_vec();
    layered.extend(injected);
    layered.extend_from_slice(&argv[position..]);
    Ok(Layered {
        argv: layered,
        from_file,
    })
}

/// Options whose whole value is secret.
fn is_secret(id: &str) -> bool {
    id.contains("password") || id.contains("token") || id.contains("secret")
}

/// The effective configuration of `command` as TOML: each option with its help, its value
/// (secrets redacted) and where the value came from. Unset options are commented out.
pub fn show(command: &Command, matches: &ArgMatches, from_file: &BTreeSet<String>) -> String {
    let mut out = format!("[{}]\n", command.get_name());
    for arg in configurable(command) {
        let id = arg.get_id().as_str();
        if let Some(help) = arg.get_help() {
            for line in help.to_string().lines() {
                let _ = writeln!(out, "# {line}");
            }
        }
        let env = arg
            .get_env()
            .map(|e| e.to_string_lossy().into_owned())
            .unwrap_or_default();
        let key = arg.get_long().unwrap_or(id);
        let values: Vec<String> = matches
            .try_get_raw(id)
            .ok()
            .flatten()
            .map(|raw| raw.map(|v| v.to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let source = match matches.value_source(id) {
            Some(ValueSource::DefaultValue) => "default",
            Some(ValueSource::EnvVariable) => "env",
            Some(ValueSource::CommandLine) if from_file.contains(id) => "file",
            Some(ValueSource::CommandLine) => "flag",
            _ => "unset",
        };
        let rendered: Vec<String> = values
            .iter()
            .map(|v| {
                if is_secret(id) {
                    "\"***\"".to_owned()
                } else {
                    toml_scalar(arg, &eod_sinks::redact::secrets(v))
                }
            })
            .collect();
        let value = match (arg.get_action(), rendered.len()) {
            (ArgAction::Append, _) => format!("[{}]", rendered.join(", ")),
            (_, 0) => {
                let _ = writeln!(out, "# {key} =   (unset; env {env})\n");
                continue;
            }
            _ => rendered.join(", "),
        };
        let _ = writeln!(out, "{key} = {value}   # {source}; env {env}\n");
    }
    out
}

/// Numbers and booleans bare, everything else as a TOML string.
fn toml_scalar(arg: &Arg, value: &str) -> String {
    let bare = matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse)
        || (value.parse::<i64>().is_ok() && !value.starts_with('0'))
        || value == "0"
        || (value.parse::<f64>().is_ok_and(|f| f.is_finite()) && value.contains('.'));
    if bare {
        value.to_owned()
    } else {
        toml::Value::String(value.to_owned()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Args, Parser, Subcommand};

    #[derive(Parser, Debug)]
    struct TestCli {
        #[arg(long, global = true)]
        config: Option<std::path::PathBuf>,
        #[command(subcommand)]
        command: TestCommand,
    }

    #[derive(Subcommand, Debug)]
    enum TestCommand {
        Run(RunArgs),
        Other(OtherArgs),
    }

    #[derive(Args, Debug)]
    struct RunArgs {
        #[arg(long, default_value = "localhost:9092")]
        brokers: String,
        #[arg(long, default_value_t = 10)]
        epoch_ms: u64,
        #[arg(long)]
        required_path: String,
        #[arg(long)]
        books: Option<String>,
        #[arg(long, conflicts_with = "books")]
        no_books: bool,
        #[arg(long, value_delimiter = ',')]
        tags: Vec<String>,
        #[arg(last = true)]
        rest: Vec<String>,
    }

    #[derive(Args, Debug)]
    struct OtherArgs {
        #[arg(long, default_value = "x")]
        brokers: String,
    }

    fn cli() -> Command {
        with_env_names(<TestCli as clap::CommandFactory>::command())
    }

    fn parse(argv: &[&str], file: &str) -> Result<RunArgs, String> {
        let file = ConfigFile::parse("test.toml", file).map_err(|e| e.to_string())?;
        let argv: Vec<OsString> = argv.iter().map(OsString::from).collect();
        let layered =
            apply_file(&cli(), &argv, &lenient(&cli(), &argv), &file).map_err(|e| e.to_string())?;
        let matches = cli()
            .try_get_matches_from(layered.argv)
            .map_err(|e| e.to_string())?;
        let parsed = <TestCli as clap::FromArgMatches>::from_arg_matches(&matches)
            .map_err(|e| e.to_string())?;
        match parsed.command {
            TestCommand::Run(args) => Ok(args),
            TestCommand::Other(_) => Err("other".into()),
        }
    }

    #[test]
    fn file_fills_what_flags_leave_and_flags_win() {
        let file = r#"
            brokers = "common:9092"
            [run]
            epoch-ms = 25
            required_path = "/data"
            tags = ["a", "b"]
        "#;
        let args = parse(&["eod", "run", "--", "-w", "2"], file).unwrap();
        assert_eq!(args.brokers, "common:9092");
        assert_eq!(args.epoch_ms, 25);
        assert_eq!(args.required_path, "/data");
        assert_eq!(args.tags, ["a", "b"]);
        assert_eq!(args.rest, ["-w", "2"]);
        let args = parse(&["eod", "run", "--epoch-ms", "7"], file).unwrap();
        assert_eq!(args.epoch_ms, 7);
        let args = parse(&["eod", "run", "--epoch-ms", "7"], "").unwrap_err();
        assert!(args.contains("required-path"), "{args}");
    }

    #[test]
    fn a_flag_beats_a_conflicting_file_value() {
        let file = "[run]\nrequired_path = \"p\"\nbooks = \"sqlite:x\"\n";
        let args = parse(&["eod", "run", "--no-books"], file).unwrap();
        assert!(args.no_books);
        assert_eq!(args.books, None);
        let args = parse(&["eod", "run"], file).unwrap();
        assert_eq!(args.books.as_deref(), Some("sqlite:x"));
    }

    #[test]
    fn bad_files_name_the_key() {
        let err = parse(&["eod", "run"], "[run]\nepoch_mss = 3\n").unwrap_err();
        assert!(err.contains("`epoch_mss`"), "{err}");
        let err = parse(&["eod", "run"], "[runn]\nx = 1\n").unwrap_err();
        assert!(err.contains("not a command"), "{err}");
        let err = parse(&["eod", "run"], "nope = 1\n").unwrap_err();
        assert!(err.contains("`nope`"), "{err}");
        let err = parse(
            &["eod", "run"],
            "[run]\nrequired_path = \"p\"\nepoch_ms = \"ten\"\n",
        )
        .unwrap_err();
        assert!(err.contains("epoch-ms"), "{err}");
        let err = parse(&["eod", "run"], "[run]\nno_books = 1\n").unwrap_err();
        assert!(err.contains("true or false"), "{err}");
        let err = parse(&["eod", "run"], "[run\n").unwrap_err();
        assert!(err.contains("test.toml"), "{err}");
    }

    #[test]
    fn every_option_has_an_eod_env_name() {
        let cli = cli();
        let run = cli.find_subcommand("run").unwrap();
        for arg in configurable(run) {
            let env = arg.get_env().unwrap().to_string_lossy().into_owned();
            assert!(env.starts_with("EOD_"), "{env}");
        }
        assert_eq!(env_name("epoch_ms"), "EOD_EPOCH_MS");
    }

    #[test]
    fn show_redacts_and_tells_the_source() {
        let file = ConfigFile::parse(
            "t.toml",
            "[run]\nrequired_path = \"p\"\nbooks = \"postgres://eod:hunter2@db/eod\"\n",
        )
        .unwrap();
        let argv: Vec<OsString> = ["eod", "run"].iter().map(OsString::from).collect();
        let layered = apply_file(&cli(), &argv, &lenient(&cli(), &argv), &file).unwrap();
        let matches = cli().try_get_matches_from(&layered.argv).unwrap();
        let (_, run_matches) = matches.subcommand().unwrap();
        let text = show(
            cli().find_subcommand("run").unwrap(),
            run_matches,
            &layered.from_file,
        );
        assert!(text.contains("required-path = \"p\"   # file"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("postgres://eod:***@db/eod"), "{text}");
        assert!(
            text.contains("epoch-ms = 10   # default; env EOD_EPOCH_MS"),
            "{text}"
        );
        // What show prints reads back as a config file.
        let uncommented: String = text
            .lines()
            .map(|l| l.split("   #").next().unwrap_or(""))
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        ConfigFile::parse("shown.toml", &uncommented)
            .unwrap()
            .validate(&cli())
            .unwrap();
    }
}
