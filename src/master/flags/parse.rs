//! The gflags syntax itself, value checks, flag files, the environment and `--config_path`.

use std::collections::{HashSet, VecDeque};

use super::{Command, FlagValues, Kind, Spec, table, usage};

/// A command line gflags would refuse; the text is what gflags prints (`ERROR: ...`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FlagError(pub String);

/// The most flag files one command line may read (they may include each other).
const MAX_FLAGFILES: usize = 64;

fn lookup(name: &str) -> Option<&'static Spec> {
    table::FLAGS.iter().find(|s| s.name == name)
}

pub use crate::gflags::parse_bool;

/// A decimal or `0x` hexadecimal integer with an optional sign.
pub(super) fn parse_int(v: &str) -> Option<i128> {
    let (neg, digits) = match v.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, v.strip_prefix('+').unwrap_or(v)),
    };
    let n = match digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
        Some(hex) => i128::from_str_radix(hex, 16).ok()?,
        None if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => digits.parse().ok()?,
        None => return None,
    };
    Some(if neg { -n } else { n })
}

/// Mooncake's `ParseDurationMs`: digits, then nothing or `ms`, `s`, `m`, `h` (any case,
/// spaces allowed around), in milliseconds.
pub fn parse_duration_ms(v: &str) -> Option<u64> {
    let v = v.trim();
    let end = v.bytes().position(|b| !b.is_ascii_digit()).unwrap_or(v.len());
    if end == 0 {
        return None;
    }
    let n: u64 = v[..end].parse().ok()?;
    let mult = match v[end..].trim().to_ascii_lowercase().as_str() {
        "" | "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// Checks `value` against `spec`'s type, as gflags does before setting a flag.
fn check(spec: &Spec, value: &str) -> Result<(), FlagError> {
    let ok = match spec.kind {
        Kind::Bool => parse_bool(value).is_some(),
        Kind::Int32 => parse_int(value).is_some_and(|n| i32::try_from(n).is_ok()),
        Kind::Int64 => parse_int(value).is_some_and(|n| i64::try_from(n).is_ok()),
        Kind::Uint32 => parse_int(value).is_some_and(|n| u32::try_from(n).is_ok()),
        Kind::Uint64 => parse_int(value).is_some_and(|n| u64::try_from(n).is_ok()),
        Kind::Double => value.trim().parse::<f64>().is_ok_and(f64::is_finite),
        Kind::Str => true,
        Kind::Duration => {
            return if parse_duration_ms(value).is_some() {
                Ok(())
            } else {
                Err(FlagError(format!("ERROR: failed validation of new value '{value}' for flag '{}'", spec.name)))
            };
        }
    };
    if ok {
        Ok(())
    } else {
        Err(FlagError(format!(
            "ERROR: illegal value '{value}' specified for {} flag '{}'",
            spec.kind.name(),
            spec.name
        )))
    }
}

impl FlagValues {
    fn set(&mut self, spec: &Spec, value: String) -> Result<(), FlagError> {
        check(spec, &value)?;
        self.values.insert(spec.name, value);
        self.explicit.insert(spec.name);
        Ok(())
    }
}

/// Applies the command line to `values`; `Some` when it asks for help or the version.
pub(super) fn apply_args(values: &mut FlagValues, args: Vec<String>) -> Result<Option<Command>, FlagError> {
    let mut queue: VecDeque<String> = args.into();
    let mut unknown: Vec<String> = Vec::new();
    let mut undefok: HashSet<String> = HashSet::new();
    let (mut help, mut version, mut flagfiles) = (false, false, 0usize);
    while let Some(arg) = queue.pop_front() {
        if arg == "--" {
            break;
        }
        let Some(body) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')).filter(|b| !b.is_empty()) else {
            tracing::debug!(arg, "ignoring a non-flag argument");
            continue;
        };
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        let (spec, value) = match lookup(name) {
            Some(spec) => (spec, value),
            None => match name.strip_prefix("no").and_then(lookup) {
                Some(spec) if spec.kind == Kind::Bool && value.is_none() => (spec, Some("false".to_string())),
                _ => {
                    unknown.push(name.to_string());
                    continue;
                }
            },
        };
        let value = match value {
            Some(v) => v,
            None if spec.kind == Kind::Bool => "true".to_string(),
            None => queue.pop_front().ok_or_else(|| {
                FlagError(format!(
                    "ERROR: flag '{}' is missing its argument; flag description: {}",
                    spec.name, spec.help
                ))
            })?,
        };
        values.set(spec, value.clone())?;
        match spec.name {
            "help" | "helpfull" | "helpshort" | "helppackage" | "helpxml" => help |= parse_bool(&value) == Some(true),
            "helpmatch" | "helpon" => help |= !value.is_empty(),
            "version" => version |= parse_bool(&value) == Some(true),
            "undefok" => undefok.extend(value.split(',').filter(|s| !s.is_empty()).map(str::to_string)),
            "flagfile" if !value.is_empty() => {
                flagfiles += 1;
                if flagfiles > MAX_FLAGFILES {
                    return Err(FlagError(format!(
                        "ERROR: more than {MAX_FLAGFILES} flag files (do they include each other?)"
                    )));
                }
                let text = std::fs::read_to_string(&value)
                    .map_err(|e| FlagError(format!("ERROR: cannot read flag file '{value}': {e}")))?;
                let lines: Vec<String> =
                    text.lines().map(str::trim).filter(|l| l.starts_with('-')).map(str::to_string).collect();
                for l in lines.into_iter().rev() {
                    queue.push_front(l);
                }
            }
            "fromenv" | "tryfromenv" => {
                let strict = spec.name == "fromenv";
                for name in value.split(',').filter(|s| !s.is_empty()) {
                    let target = lookup(name).ok_or_else(|| {
                        FlagError(format!("ERROR: unknown command line flag '{name}' (via --{})", spec.name))
                    })?;
                    match std::env::var(format!("FLAGS_{name}")) {
                        Ok(v) => values.set(target, v)?,
                        Err(_) if !strict => {}
                        Err(_) => return Err(FlagError(format!("ERROR: FLAGS_{name} not found in environment"))),
                    }
                }
            }
            _ => {}
        }
    }
    unknown.retain(|n| !undefok.contains(n));
    if let Some(name) = unknown.first() {
        return Err(FlagError(format!("ERROR: unknown command line flag '{name}'")));
    }
    if help {
        return Ok(Some(Command::Help(usage())));
    }
    if version {
        return Ok(Some(Command::Version(format!("mooncake_master version {} (libmooncake)", crate::VERSION))));
    }
    Ok(None)
}

/// Applies a `--config_path` JSON file: each key a flag name; flags given explicitly win.
pub(super) fn apply_config_file(values: &mut FlagValues, path: &str) -> Result<(), FlagError> {
    let lower = path.to_ascii_lowercase();
    if lower.ends_with(".yaml") || lower.ends_with(".yml") {
        return Err(FlagError(format!(
            "--config_path={path}: YAML config files are not supported by this build; use JSON"
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| FlagError(format!("--config_path={path}: {e}")))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| FlagError(format!("--config_path={path}: not JSON: {e}")))?;
    let serde_json::Value::Object(map) = json else {
        return Err(FlagError(format!("--config_path={path}: expected a JSON object of flag names to values")));
    };
    let explicit = values.explicit.clone();
    for (key, value) in map {
        let Some(spec) = lookup(&key) else {
            tracing::warn!(key, "--config_path: ignoring an unknown key");
            continue;
        };
        if explicit.contains(spec.name) {
            continue;
        }
        let text = match value {
            serde_json::Value::Bool(b) => b.to_string(),
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::String(s) => s,
            other => return Err(FlagError(format!("--config_path={path}: {key}: unsupported value {other}"))),
        };
        values.set(spec, text).map_err(|e| FlagError(format!("--config_path={path}: {e}")))?;
    }
    Ok(())
}
