//! A replay node's entry in program.toml (`kind = "replay"`): its tables
//! (`[[node.tables]]`: size, sampler, remover, max_times_sampled, rate
//! limiter) and its checkpoint directory, checked value by value so a bad
//! one is reported at its line and column.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lp_replay::{RateLimiter, Selector, TableConfig};
use serde::Deserialize;
use toml::Spanned;

use super::Diagnostic;
use super::schema::{Context, Located};
use super::{Origin, ReplayCheckpoint, ReplayConfig};

const TABLE_HELP: &str = "a table is e.g. { name = \"experience\", max_size = 100000, sampler = \"prioritized\", priority_exponent = 0.6, remover = \"fifo\", rate_limiter = { kind = \"min_size\", min_size = 1000 } }; see docs/replay.md";
const SELECTORS: &str = "uniform, prioritized, fifo, lifo, min_heap or max_heap";

/// One `[[node.tables]]` entry as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTable {
    pub name: Spanned<String>,
    #[serde(default)]
    pub max_size: Option<Spanned<i64>>,
    #[serde(default)]
    pub sampler: Option<Spanned<String>>,
    #[serde(default)]
    pub remover: Option<Spanned<String>>,
    /// The exponent of a prioritized sampler or remover.
    #[serde(default)]
    pub priority_exponent: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub max_times_sampled: Option<Spanned<i64>>,
    #[serde(default)]
    pub rate_limiter: Option<Spanned<RawRateLimiter>>,
}

/// `{ kind = "min_size" | "sample_to_insert_ratio" | "queue" | "stack", ... }`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRateLimiter {
    pub kind: Spanned<String>,
    #[serde(default)]
    pub min_size: Option<Spanned<i64>>,
    #[serde(default)]
    pub samples_per_insert: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub min_size_to_sample: Option<Spanned<i64>>,
    #[serde(default)]
    pub error_buffer: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub size: Option<Spanned<i64>>,
}

/// `checkpoint = { dir = "replay-checkpoints", every_secs = 600, at_stop = true, restore = true }`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCheckpoint {
    pub dir: Spanned<String>,
    #[serde(default)]
    pub every_secs: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub at_stop: Option<bool>,
    #[serde(default)]
    pub restore: Option<bool>,
}

/// What a replay entry says: its tables and checkpoint, checked.
pub(super) fn replay_config(
    cx: &Context,
    name: &Located<String>,
    tables: Option<Spanned<Vec<Spanned<RawTable>>>>,
    checkpoint: Option<Spanned<RawCheckpoint>>,
) -> Result<Arc<ReplayConfig>, Diagnostic> {
    let Some(tables) = tables else {
        return Err(cx
            .error(
                &name.origin,
                format!("replay node {} has no tables", name.value),
            )
            .help(format!("add at least one [[node.tables]]: {TABLE_HELP}")));
    };
    let tables_origin = Origin::File(tables.span());
    let tables = tables.into_inner();
    if tables.is_empty() {
        return Err(cx
            .error(
                &tables_origin,
                format!("replay node {} has no tables", name.value),
            )
            .help(TABLE_HELP));
    }
    let mut configs: Vec<TableConfig> = Vec::new();
    for table in tables {
        let at = Origin::File(table.span());
        let config = table_config(cx, table.into_inner(), &at)?;
        if configs.iter().any(|t| t.name == config.name) {
            return Err(cx
                .error(
                    &at,
                    format!(
                        "replay node {} has two tables named {:?}",
                        name.value, config.name
                    ),
                )
                .help("give every table of a replay node its own name"));
        }
        configs.push(config);
    }
    let checkpoint = checkpoint.map(|c| checkpoint_config(cx, c)).transpose()?;
    Ok(Arc::new(ReplayConfig {
        tables: configs,
        checkpoint,
    }))
}

fn table_config(cx: &Context, raw: RawTable, at: &Origin) -> Result<TableConfig, Diagnostic> {
    let name_origin = Origin::File(raw.name.span());
    let name = raw.name.into_inner();
    let valid_name = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
    if !valid_name {
        return Err(cx
            .error(&name_origin, format!("invalid table name {name:?}"))
            .help("use letters, digits, '_', '-' and '.' only"));
    }
    let exponent = match raw.priority_exponent {
        Some(e) => Some((number(cx, &e, "priority_exponent")?, Origin::File(e.span()))),
        None => None,
    };
    let limiter_origin = raw
        .rate_limiter
        .as_ref()
        .map_or_else(|| at.clone(), |r| Origin::File(r.span()));
    let rate_limiter = match raw.rate_limiter {
        Some(r) => rate_limiter(cx, r.into_inner())?,
        None => RateLimiter::MinSize { min_size: 1 },
    };
    // A queue or stack has Reverb's shape unless the table says otherwise.
    let (default_selector, default_times, default_size) = match rate_limiter {
        RateLimiter::Queue { size } => (Selector::Fifo, 1, Some(size)),
        RateLimiter::Stack { size } => (Selector::Lifo, 1, Some(size)),
        _ => (Selector::Fifo, 0, None),
    };
    let sampler = match &raw.sampler {
        Some(s) => selector(cx, s, exponent.as_ref())?,
        None if default_size.is_some() => default_selector.clone(),
        None => Selector::Uniform,
    };
    let remover = match &raw.remover {
        Some(s) => selector(cx, s, exponent.as_ref())?,
        None => default_selector,
    };
    if let Some((_, origin)) = &exponent {
        let prioritized = |s: &Selector| matches!(s, Selector::Prioritized { .. });
        if !prioritized(&sampler) && !prioritized(&remover) {
            return Err(cx
                .error(
                    origin,
                    "priority_exponent is set, but neither the sampler nor the remover is prioritized",
                )
                .help("set sampler = \"prioritized\" (or remover), or remove priority_exponent"));
        }
    }
    let max_size_origin = raw.max_size.as_ref().map(|m| Origin::File(m.span()));
    let sampler_origin = raw.sampler.as_ref().map(|s| Origin::File(s.span()));
    let remover_origin = raw.remover.as_ref().map(|r| Origin::File(r.span()));
    let times_origin = raw
        .max_times_sampled
        .as_ref()
        .map(|m| Origin::File(m.span()));
    let max_size = match raw.max_size {
        Some(m) => positive(cx, &m, "max_size")?,
        None => match default_size {
            Some(size) => size,
            None => {
                return Err(cx
                    .error(at, format!("table {name:?} has no max_size"))
                    .help("add max_size = N: the most items the table holds (the remover evicts one per insert beyond it)"));
            }
        },
    };
    let max_times_sampled = match raw.max_times_sampled {
        Some(m) => u32::try_from(m.get_ref().to_owned()).map_err(|_| {
            cx.error(
                &Origin::File(m.span()),
                format!(
                    "max_times_sampled must be between 0 and {}, not {}",
                    u32::MAX,
                    m.get_ref()
                ),
            )
            .help("0 (the default) lets an item be sampled without limit")
        })?,
        None => default_times,
    };
    let config = TableConfig {
        name,
        max_size,
        sampler,
        remover,
        max_times_sampled,
        rate_limiter,
    };
    config.validate().map_err(|e| {
        let origin = match e.field {
            "name" => &name_origin,
            "max_size" => max_size_origin.as_ref().unwrap_or(at),
            // A queue's or stack's shape: the value that breaks it, else
            // the rate limiter that asks for it.
            "sampler" => sampler_origin.as_ref().unwrap_or(&limiter_origin),
            "remover" => remover_origin.as_ref().unwrap_or(&limiter_origin),
            "max_times_sampled" => times_origin.as_ref().unwrap_or(&limiter_origin),
            f if f.starts_with("rate_limiter") => &limiter_origin,
            f if f.contains("exponent") => exponent.as_ref().map_or(at, |(_, o)| o),
            _ => at,
        };
        cx.error(origin, format!("table {:?}: {}", config.name, e.message))
            .help(TABLE_HELP)
    })?;
    Ok(config)
}

fn selector(
    cx: &Context,
    written: &Spanned<String>,
    exponent: Option<&(f64, Origin)>,
) -> Result<Selector, Diagnostic> {
    let origin = Origin::File(written.span());
    Ok(match written.get_ref().as_str() {
        "uniform" => Selector::Uniform,
        "fifo" => Selector::Fifo,
        "lifo" => Selector::Lifo,
        "min_heap" => Selector::MinHeap,
        "max_heap" => Selector::MaxHeap,
        "prioritized" => match exponent {
            Some((exponent, _)) => Selector::Prioritized {
                exponent: *exponent,
            },
            None => {
                return Err(cx
                    .error(&origin, "a prioritized selector needs priority_exponent")
                    .help("add priority_exponent = 0.6 (0: uniform, 1: proportional to priority) to the table"));
            }
        },
        other => {
            return Err(cx
                .error(&origin, format!("unknown selector {other:?}"))
                .help(format!("samplers and removers are {SELECTORS}")));
        }
    })
}

fn rate_limiter(cx: &Context, raw: RawRateLimiter) -> Result<RateLimiter, Diagnostic> {
    let kind_origin = Origin::File(raw.kind.span());
    let missing = |key: &str, example: &str| {
        cx.error(
            &kind_origin,
            format!("a {} rate limiter needs {key}", raw.kind.get_ref()),
        )
        .help(format!("e.g. rate_limiter = {example}"))
    };
    let unused = |present: bool, key: &str| -> Result<(), Diagnostic> {
        if present {
            return Err(cx
                .error(
                    &kind_origin,
                    format!("a {} rate limiter takes no {key}", raw.kind.get_ref()),
                )
                .help("min_size takes min_size; sample_to_insert_ratio takes samples_per_insert, min_size_to_sample and error_buffer; queue and stack take size"));
        }
        Ok(())
    };
    let ratio_keys = raw.samples_per_insert.is_some()
        || raw.min_size_to_sample.is_some()
        || raw.error_buffer.is_some();
    match raw.kind.get_ref().as_str() {
        "min_size" => {
            unused(ratio_keys || raw.size.is_some(), "ratio or size")?;
            let min_size = match &raw.min_size {
                Some(m) => positive(cx, m, "min_size")?,
                None => {
                    return Err(missing(
                        "min_size",
                        "{ kind = \"min_size\", min_size = 1000 }",
                    ));
                }
            };
            Ok(RateLimiter::MinSize { min_size })
        }
        "sample_to_insert_ratio" => {
            unused(
                raw.min_size.is_some() || raw.size.is_some(),
                "min_size or size",
            )?;
            let example = "{ kind = \"sample_to_insert_ratio\", samples_per_insert = 4.0, min_size_to_sample = 1000, error_buffer = 100.0 }";
            let (Some(spi), Some(min), Some(buffer)) = (
                &raw.samples_per_insert,
                &raw.min_size_to_sample,
                &raw.error_buffer,
            ) else {
                return Err(missing(
                    "samples_per_insert, min_size_to_sample and error_buffer",
                    example,
                ));
            };
            Ok(RateLimiter::SampleToInsertRatio {
                samples_per_insert: number(cx, spi, "samples_per_insert")?,
                min_size_to_sample: positive(cx, min, "min_size_to_sample")?,
                error_buffer: number(cx, buffer, "error_buffer")?,
            })
        }
        kind @ ("queue" | "stack") => {
            unused(ratio_keys || raw.min_size.is_some(), "ratio or min_size")?;
            let size = match &raw.size {
                Some(s) => positive(cx, s, "size")?,
                None => {
                    return Err(missing(
                        "size",
                        &format!("{{ kind = \"{kind}\", size = 1000 }}"),
                    ));
                }
            };
            Ok(match kind {
                "queue" => RateLimiter::Queue { size },
                _ => RateLimiter::Stack { size },
            })
        }
        other => Err(cx
            .error(&kind_origin, format!("unknown rate limiter {other:?}"))
            .help("rate limiters are min_size, sample_to_insert_ratio, queue and stack")),
    }
}

fn checkpoint_config(
    cx: &Context,
    raw: Spanned<RawCheckpoint>,
) -> Result<ReplayCheckpoint, Diagnostic> {
    let raw = raw.into_inner();
    let dir_origin = Origin::File(raw.dir.span());
    let written = raw.dir.into_inner();
    if written.is_empty() {
        return Err(cx
            .error(&dir_origin, "the checkpoint directory is empty")
            .help("name a directory, relative to program.toml or absolute"));
    }
    let dir: PathBuf = cx.dir().join(&written);
    let every = match raw.every_secs {
        None => None,
        Some(v) => {
            let secs = number(cx, &v, "every_secs")?;
            if !(secs.is_finite() && secs > 0.0) {
                return Err(cx
                    .error(
                        &Origin::File(v.span()),
                        format!("every_secs must be a positive number, not {secs}"),
                    )
                    .help("leave it out to checkpoint only on request and at stop"));
            }
            Some(Duration::from_secs_f64(secs))
        }
    };
    Ok(ReplayCheckpoint {
        dir,
        every,
        at_stop: raw.at_stop.unwrap_or(true),
        restore: raw.restore.unwrap_or(true),
    })
}

/// A TOML number (integer or float) as f64.
fn number(cx: &Context, value: &Spanned<toml::Value>, key: &str) -> Result<f64, Diagnostic> {
    super::schema::number(value.get_ref()).ok_or_else(|| {
        cx.error(
            &Origin::File(value.span()),
            format!("{key} must be a number, not {}", value.get_ref()),
        )
        .help(TABLE_HELP)
    })
}

/// A count of at least 1.
fn positive(cx: &Context, value: &Spanned<i64>, key: &str) -> Result<u64, Diagnostic> {
    match u64::try_from(*value.get_ref()) {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(cx
            .error(
                &Origin::File(value.span()),
                format!("{key} must be 1 or more, not {}", value.get_ref()),
            )
            .help(TABLE_HELP)),
    }
}
