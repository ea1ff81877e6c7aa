//! `beacon serve --config FILE`: every `serve` flag as a TOML key.
//!
//! Takes a TOML file whose keys are `serve`'s long flags (`zone =
//! "svc.internal."`, `max-udp-payload = 1232`, a repeatable flag as an
//! array) and the flags given on the command line; produces the command
//! line with the file's settings added for every flag the command line
//! does not give (the command line wins, a repeatable flag included).
//! Each value is checked with the flag's own parser, so an unknown key, a
//! wrong type or a bad value is reported as `file:line:col: message`
//! before anything starts. It never reads anything but the file.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{ArgAction, Command};
use toml::de::{DeTable, DeValue};

/// A problem with the configuration file.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// It cannot be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The system's reason.
        source: std::io::Error,
    },
    /// Something in it is wrong.
    #[error("{path}:{line}:{col}: {message}")]
    At {
        /// The file.
        path: PathBuf,
        /// Line (from 1).
        line: usize,
        /// Column (from 1).
        col: usize,
        /// What is wrong and what would do.
        message: String,
    },
}

/// One setting from the file, as command-line words, with where it was.
#[derive(Debug, Clone)]
pub struct Setting {
    /// The flag's id (its long name with `_` for `-`, as clap has it).
    pub id: String,
    /// `--flag value` words (a flag per value of an array).
    pub words: Vec<OsString>,
    /// `file:line:col` of the key, for later messages.
    pub location: String,
}

/// Reads `path` against `serve`'s flags (`command`).
///
/// # Errors
/// [`FileError`] for a file that cannot be read or a key, type or value
/// that `serve` would not take.
pub fn read(path: &Path, command: &Command) -> Result<Vec<Setting>, FileError> {
    let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let at = |offset: usize, message: String| {
        let (line, col) = line_col(&text, offset);
        FileError::At {
            path: path.to_path_buf(),
            line,
            col,
            message,
        }
    };
    let table = DeTable::parse(&text).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        at(offset, e.message().trim().to_string())
    })?;
    let mut settings = Vec::new();
    for (key, value) in table.get_ref() {
        let name = key.get_ref().as_ref();
        let Some(arg) = command
            .get_arguments()
            .find(|a| a.get_long() == Some(name) && name != "config")
        else {
            return Err(at(
                key.span().start,
                format!(
                    "unknown key `{name}`: the keys are `beacon serve`'s flags without the dashes (see `beacon serve --help`)"
                ),
            ));
        };
        let repeatable = matches!(arg.get_action(), ArgAction::Append);
        let values: Vec<(String, usize)> = match value.get_ref() {
            DeValue::Array(items) if repeatable => items
                .iter()
                .map(|item| scalar(item.get_ref()).map(|v| (v, item.span().start)))
                .collect::<Option<_>>()
                .ok_or_else(|| {
                    at(
                        value.span().start,
                        format!("`{name}` takes a list of strings or numbers"),
                    )
                })?,
            DeValue::Array(_) => {
                return Err(at(
                    value.span().start,
                    format!("`{name}` takes one value, not a list"),
                ));
            }
            other => match scalar(other) {
                Some(v) => vec![(v, value.span().start)],
                None => {
                    return Err(at(
                        value.span().start,
                        format!("`{name}` takes a string or a number"),
                    ));
                }
            },
        };
        let mut words = Vec::new();
        for (value, offset) in values {
            // The flag's own parser, through clap (the same check as on
            // the command line).
            let checked = command
                .clone()
                .no_binary_name(true)
                .try_get_matches_from([format!("--{name}"), value.clone()]);
            if let Err(error) = checked {
                let message = error.to_string();
                let first = message.lines().next().unwrap_or_default();
                let message = first.trim().trim_start_matches("error: ").to_string();
                return Err(at(offset, format!("`{name}`: {message}")));
            }
            words.push(OsString::from(format!("--{name}")));
            words.push(OsString::from(value));
        }
        let (line, col) = line_col(&text, key.span().start);
        settings.push(Setting {
            id: arg.get_id().to_string(),
            words,
            location: format!("{}:{line}:{col}", path.display()),
        });
    }
    Ok(settings)
}

/// A TOML scalar as a command-line word (`true`/`false` as `on`/`off`,
/// what switches such as `fast-path` take).
fn scalar(value: &DeValue<'_>) -> Option<String> {
    match value {
        DeValue::String(s) => Some(s.to_string()),
        DeValue::Integer(i) if i.radix() == 10 => Some(i.as_str().replace('_', "")),
        DeValue::Float(f) => Some(f.as_str().replace('_', "")),
        DeValue::Boolean(b) => Some(if *b { "on" } else { "off" }.to_string()),
        _ => None,
    }
}

/// Line and column (from 1) of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, col)
}

/// The command line with the file's settings for every flag it does not
/// give itself: `args` (the whole command line, program name first) with
/// the file's words appended. `given` holds the ids of the flags the
/// command line gave.
pub fn merge(args: Vec<OsString>, settings: &[Setting], given: &HashSet<String>) -> Vec<OsString> {
    let mut merged = args;
    for setting in settings.iter().filter(|s| !given.contains(&s.id)) {
        merged.extend(setting.words.iter().cloned());
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn serve() -> Command {
        crate::cli::Cli::command()
            .find_subcommand("serve")
            .cloned()
            .expect("serve")
    }

    fn read_str(text: &str) -> Result<Vec<Setting>, FileError> {
        let file = tempfile::NamedTempFile::new().expect("file");
        std::fs::write(file.path(), text).expect("write");
        read(file.path(), &serve()).map_err(|e| match e {
            FileError::At {
                line, col, message, ..
            } => FileError::At {
                path: PathBuf::from("beacon.toml"),
                line,
                col,
                message,
            },
            other @ FileError::Read { .. } => other,
        })
    }

    #[test]
    fn keys_become_flags_and_problems_have_their_place() {
        let settings = read_str(
            "zone = \"svc.example.\"\nmax-udp-payload = 1232\nforward = [\"127.0.0.1:53\", \"127.0.0.2:53\"]\nfast-path = false\n",
        )
        .expect("valid");
        let mut pairs: Vec<String> = settings
            .iter()
            .flat_map(|s| {
                s.words
                    .chunks(2)
                    .map(|w| format!("{} {}", w[0].to_string_lossy(), w[1].to_string_lossy()))
            })
            .collect();
        pairs.sort();
        assert_eq!(
            pairs,
            [
                "--fast-path off",
                "--forward 127.0.0.1:53",
                "--forward 127.0.0.2:53",
                "--max-udp-payload 1232",
                "--zone svc.example."
            ]
        );
        let problem = |text: &str| read_str(text).expect_err("a problem").to_string();
        assert!(
            problem("zone = \"a\"\nfrobnicate = 1\n")
                .starts_with("beacon.toml:2:1: unknown key `frobnicate`")
        );
        assert!(
            problem("max-udp-payload = \"big\"\n")
                .starts_with("beacon.toml:1:19: `max-udp-payload`:")
        );
        assert!(
            problem("zone = [\"a.\", \"b.\"]\n")
                .starts_with("beacon.toml:1:8: `zone` takes one value")
        );
        assert!(problem("zone = \n").starts_with("beacon.toml:1:"));
        assert!(problem("[server]\nzone = \"a.\"\n").contains("unknown key `server`"));
    }
}
