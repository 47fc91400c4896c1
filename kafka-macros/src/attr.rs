//! Parsing the attribute's `key = value` arguments.

use proc_macro2::Span;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Expr, ExprArray, ExprLit, Ident, Lit, LitBool, LitInt, LitStr, Token};

const KEYS: &str = "`topics`, `topic_pattern`, `partitions`, `initial_offset`, `group`, `id`, \
                    `concurrency`, `ack_mode`, `auto_startup`, `batch`, `ordering`, `send_to`, \
                    `filter`, `dedupe`";

/// The ordering modes, as the runtime's `Ordering` variants.
const ORDERINGS: &[(&str, &str)] = &[("partition", "Partition"), ("key", "Key"), ("none", "None")];

/// Spring's ack modes, as the runtime's `AckMode` variants.
const ACK_MODES: &[(&str, &str)] = &[
    ("record", "Record"),
    ("batch", "Batch"),
    ("time", "Time"),
    ("count", "Count"),
    ("count_time", "CountTime"),
    ("manual", "Manual"),
    ("manual_immediate", "ManualImmediate"),
];

/// The parsed attribute.
pub(crate) struct ListenerArgs {
    pub(crate) topics: Vec<LitStr>,
    /// The pattern of the topics to consume, instead of `topics`.
    pub(crate) topic_pattern: Option<LitStr>,
    /// Explicit partitions of `topics`, instead of the group's assignment.
    pub(crate) partitions: Option<LitStr>,
    /// Where explicit partitions start.
    pub(crate) initial_offset: Option<LitStr>,
    pub(crate) group: Option<LitStr>,
    pub(crate) id: Option<LitStr>,
    pub(crate) concurrency: Option<LitInt>,
    /// The `AckMode` variant name, spanned at the user's string.
    pub(crate) ack_mode: Option<Ident>,
    pub(crate) auto_startup: Option<LitBool>,
    /// Whether the handler takes a batch; by default, whether an argument is a `Batch<T>` or a
    /// `BatchAck`.
    pub(crate) batch: Option<LitBool>,
    /// The `Ordering` variant name, spanned at the user's string.
    pub(crate) ordering: Option<Ident>,
    /// Where the handler's replies go.
    pub(crate) send_to: Option<LitStr>,
    /// The record filter: a function `fn(&RecordContext<'_>) -> bool`, `true` discarding.
    pub(crate) filter: Option<syn::Path>,
    /// Where a record's id is for the idempotent receiver: `key` or `header:<name>`.
    pub(crate) dedupe: Option<LitStr>,
    /// Typed keys given as `${name:default}` strings, resolved at startup: `(key, text)`.
    pub(crate) placeholders: Vec<(String, LitStr)>,
}

struct Arg {
    key: Ident,
    value: Expr,
}

impl Parse for Arg {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let key: Ident = input.parse()?;
        input.parse::<Token![=]>()?;
        let value: Expr = input.parse()?;
        Ok(Arg { key, value })
    }
}

impl Parse for ListenerArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let args = Punctuated::<Arg, Token![,]>::parse_terminated(input)?;
        let mut parsed = ListenerArgs {
            topics: Vec::new(),
            topic_pattern: None,
            partitions: None,
            initial_offset: None,
            group: None,
            id: None,
            concurrency: None,
            ack_mode: None,
            auto_startup: None,
            batch: None,
            ordering: None,
            send_to: None,
            filter: None,
            dedupe: None,
            placeholders: Vec::new(),
        };
        let mut seen: Vec<String> = Vec::new();
        for Arg { key, value } in args {
            let name = key.to_string();
            if seen.contains(&name) {
                return Err(syn::Error::new(
                    key.span(),
                    format!("duplicate key `{name}`"),
                ));
            }
            seen.push(name.clone());
            if let Some(text) = placeholder(&value).filter(|_| TYPED.contains(&name.as_str())) {
                parsed.placeholders.push((name, text));
                continue;
            }
            match name.as_str() {
                "topics" => parsed.topics = topics(&value)?,
                "topic_pattern" => {
                    parsed.topic_pattern = Some(non_empty(string(&value, "topic_pattern")?)?);
                }
                "partitions" => parsed.partitions = Some(partitions(&value)?),
                "initial_offset" => parsed.initial_offset = Some(initial_offset(&value)?),
                "group" => parsed.group = Some(non_empty(string(&value, "group")?)?),
                "id" => parsed.id = Some(non_empty(string(&value, "id")?)?),
                "concurrency" => parsed.concurrency = Some(concurrency(&value)?),
                "ack_mode" => parsed.ack_mode = Some(variant(&value, "ack_mode", ACK_MODES)?),
                "ordering" => parsed.ordering = Some(variant(&value, "ordering", ORDERINGS)?),
                "auto_startup" => parsed.auto_startup = Some(boolean(&value, "auto_startup")?),
                "batch" => parsed.batch = Some(boolean(&value, "batch")?),
                "send_to" => parsed.send_to = Some(non_empty(string(&value, "send_to")?)?),
                "filter" => parsed.filter = Some(function(&value, "filter")?),
                "dedupe" => parsed.dedupe = Some(dedupe(&value)?),
                _ => {
                    return Err(syn::Error::new(
                        key.span(),
                        format!("unknown key `{name}`; expected one of {KEYS}"),
                    ))
                }
            }
        }
        parsed.check_positions()?;
        Ok(parsed)
    }
}

impl ListenerArgs {
    /// `topics` or `topic_pattern`, one of them; `partitions` of `topics`; `initial_offset` of
    /// `partitions`.
    fn check_positions(&self) -> syn::Result<()> {
        match (&self.topic_pattern, self.topics.is_empty()) {
            (None, true) => Err(syn::Error::new(
                Span::call_site(),
                "missing `topics`: name the topic(s) to consume, e.g. #[kafka_listener(topics = \"user-events\")], or a `topic_pattern`",
            )),
            (Some(pattern), false) => Err(syn::Error::new(
                pattern.span(),
                "`topic_pattern` replaces `topics`: keep one of them",
            )),
            (Some(_), true) if self.partitions.is_some() => Err(syn::Error::new(
                self.partitions.as_ref().map_or_else(Span::call_site, LitStr::span),
                "`partitions` names partitions of `topics`, not of a `topic_pattern`",
            )),
            _ => match (&self.initial_offset, &self.partitions) {
                (Some(initial), None) => Err(syn::Error::new(
                    initial.span(),
                    "`initial_offset` is for explicit `partitions`; a group's partitions start at its committed offsets",
                )),
                _ => Ok(()),
            },
        }
    }
}

/// The typed keys that may also be given as a `${name:default}` placeholder string.
const TYPED: [&str; 4] = ["concurrency", "ack_mode", "auto_startup", "ordering"];

/// A string literal holding a `${...}` placeholder.
fn placeholder(value: &Expr) -> Option<LitStr> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) if s.value().contains("${") => Some(s.clone()),
        _ => None,
    }
}

fn boolean(value: &Expr, key: &str) -> syn::Result<LitBool> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Bool(b), ..
        }) => Ok(b.clone()),
        other => Err(syn::Error::new_spanned(
            other,
            format!("`{key}` takes `true` or `false`"),
        )),
    }
}

fn string(value: &Expr, key: &str) -> syn::Result<LitStr> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => Ok(s.clone()),
        other => Err(syn::Error::new_spanned(
            other,
            format!("`{key}` takes a string literal"),
        )),
    }
}

/// A function named by its path (`heartbeat`, `filters::heartbeat`).
fn function(value: &Expr, key: &str) -> syn::Result<syn::Path> {
    match value {
        Expr::Path(path) if path.qself.is_none() => Ok(path.path.clone()),
        other => Err(syn::Error::new_spanned(
            other,
            format!("`{key}` takes the name of a function, e.g. `{key} = heartbeat`"),
        )),
    }
}

fn non_empty(value: LitStr) -> syn::Result<LitStr> {
    if value.value().trim().is_empty() {
        return Err(syn::Error::new(value.span(), "must not be empty"));
    }
    Ok(value)
}

fn topics(value: &Expr) -> syn::Result<Vec<LitStr>> {
    let list = match value {
        Expr::Array(ExprArray { elems, .. }) => elems
            .iter()
            .map(|e| string(e, "topics").and_then(non_empty))
            .collect::<syn::Result<Vec<_>>>()?,
        other => vec![non_empty(string(other, "topics").map_err(|_| {
            syn::Error::new_spanned(other, "`topics` takes a string or a list of strings")
        })?)?],
    };
    if list.is_empty() {
        return Err(syn::Error::new_spanned(
            value,
            "`topics` needs at least one topic",
        ));
    }
    Ok(list)
}

/// Partition numbers and ranges, `"0, 2, 4-6"` (checked again at startup, where a placeholder is
/// resolved).
fn partitions(value: &Expr) -> syn::Result<LitStr> {
    let text = non_empty(string(value, "partitions")?)?;
    let valid = |part: &str| {
        let number = |n: &str| !n.trim().is_empty() && n.trim().bytes().all(|b| b.is_ascii_digit());
        match part.split_once('-') {
            Some((first, last)) => number(first) && number(last),
            None => number(part),
        }
    };
    if text.value().contains("${") || text.value().split(',').all(valid) {
        return Ok(text);
    }
    Err(syn::Error::new(
        text.span(),
        "`partitions` takes partition numbers and ranges, e.g. \"0, 2, 4-6\"",
    ))
}

/// `key` or `header:<name>` (checked again at startup, where a placeholder is resolved).
fn dedupe(value: &Expr) -> syn::Result<LitStr> {
    let text = non_empty(string(value, "dedupe")?)?;
    let wanted = text.value();
    let header = wanted
        .trim()
        .strip_prefix("header:")
        .is_some_and(|name| !name.trim().is_empty());
    if wanted.trim() == "key" || header || wanted.contains("${") {
        return Ok(text);
    }
    Err(syn::Error::new(
        text.span(),
        "`dedupe` takes where a record's id is: `key` or `header:<name>`, e.g. \"header:event_id\"",
    ))
}

/// `earliest`, `latest`, an offset, a negative offset (from the end) or `timestamp:<millis>`.
fn initial_offset(value: &Expr) -> syn::Result<LitStr> {
    let text = non_empty(string(value, "initial_offset")?)?;
    let wanted = text.value().trim().to_ascii_lowercase();
    let millis = wanted.strip_prefix("timestamp:").map(str::trim);
    let valid = ["earliest", "beginning", "latest", "end"].contains(&wanted.as_str())
        || wanted.contains("${")
        || wanted.parse::<i64>().is_ok()
        || millis.is_some_and(|m| m.parse::<u64>().is_ok());
    if valid {
        return Ok(text);
    }
    Err(syn::Error::new(
        text.span(),
        "`initial_offset` takes `earliest`, `latest`, an offset (`42`), an offset from the end (`-10`) or `timestamp:<epoch millis>`",
    ))
}

fn concurrency(value: &Expr) -> syn::Result<LitInt> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(n), ..
        }) => match n.base10_parse::<u32>() {
            Ok(0) | Err(_) => Err(syn::Error::new(
                n.span(),
                "`concurrency` takes a whole number of at least 1",
            )),
            Ok(_) => Ok(n.clone()),
        },
        other => Err(syn::Error::new_spanned(
            other,
            "`concurrency` takes a whole number of at least 1",
        )),
    }
}

/// The variant of `choices` (`(name, variant)`) that `value` names.
fn variant(value: &Expr, key: &str, choices: &[(&str, &str)]) -> syn::Result<Ident> {
    let text = string(value, key)?;
    let wanted = text.value().to_ascii_lowercase().replace('-', "_");
    choices
        .iter()
        .find(|(name, _)| *name == wanted)
        .map(|(_, variant)| Ident::new(variant, text.span()))
        .ok_or_else(|| {
            let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
            let what = key.replace('_', " ");
            syn::Error::new(
                text.span(),
                format!(
                    "unknown {what} `{}`; expected one of {}",
                    text.value(),
                    names.join(", ")
                ),
            )
        })
}
