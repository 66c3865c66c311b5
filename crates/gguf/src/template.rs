//! The chat template stored in a GGUF file (`tokenizer.chat_template`), rendered with
//! minijinja the way Hugging Face's `apply_chat_template` and llama.cpp render it.
//!
//! The template is code shipped inside an untrusted model file, so rendering is bounded:
//! minijinja's fuel caps the number of executed instructions (an endless loop stops with
//! [`TemplateError::OutOfFuel`]), the output is written through a writer that refuses to
//! grow past [`TemplateLimits::max_output`], and recursion is capped. A file without a
//! template is an error: guessing a template would silently change what the model sees.
//!
//! The context follows Hugging Face's conventions: `messages` (each `role` and `content`),
//! `add_generation_prompt`, `bos_token`, `eos_token`, `raise_exception(msg)` (a typed
//! [`TemplateError::Raised`]), and `strftime_now(fmt)` only when a time was injected with
//! [`ChatTemplate::with_now`] (templates then fall back to their own fixed date, which
//! keeps renders reproducible). Common Python string and dict methods (`strip`,
//! `startswith`, `split`, `items`, `get`, ...) are provided because many templates use them.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use minijinja::value::{Value, ValueKind};
use minijinja::{Environment, ErrorKind, State};
use serde::{Deserialize, Serialize};

use crate::file::Gguf;
use crate::tokenizer::Tokenizer;

/// The template's name inside its minijinja environment.
const NAME: &str = "chat_template";
/// Marks errors raised by the template's own `raise_exception`.
const RAISED: &str = "raise_exception: ";

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant`, ...
    pub role: String,
    /// The message text.
    pub content: String,
}

impl ChatMessage {
    /// A message with `role` and `content`.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// Bounds on one render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemplateLimits {
    /// minijinja fuel: roughly the number of instructions executed.
    pub fuel: u64,
    /// Largest rendered prompt, in bytes.
    pub max_output: usize,
    /// Deepest recursion (macros, includes, nested loops).
    pub max_recursion: usize,
}

impl Default for TemplateLimits {
    fn default() -> Self {
        // Real templates spend a few hundred units per message; this allows thousands of
        // messages while stopping a runaway loop in milliseconds.
        TemplateLimits {
            fuel: 2_000_000,
            max_output: 8 << 20,
            max_recursion: 64,
        }
    }
}

/// Why a template could not be loaded or rendered.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The file has no `tokenizer.chat_template`.
    #[error("the model has no chat template (tokenizer.chat_template)")]
    Missing,
    /// The template does not parse.
    #[error("chat template syntax error")]
    Syntax(#[source] minijinja::Error),
    /// The render ran out of fuel (an endless or very long loop).
    #[error("chat template exceeded its step budget of {0}")]
    OutOfFuel(u64),
    /// The rendered prompt exceeded the output limit.
    #[error("chat template output exceeds {0} bytes")]
    OutputTooLarge(usize),
    /// The template called `raise_exception(message)`.
    #[error("chat template raised: {0}")]
    Raised(String),
    /// Any other render failure (undefined method, bad operand, ...).
    #[error("chat template render failed")]
    Render(#[source] minijinja::Error),
}

/// A compiled chat template with the tokenizer's BOS/EOS texts.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    bos_token: String,
    eos_token: String,
    limits: TemplateLimits,
}

impl ChatTemplate {
    /// The template of `g` (`tokenizer.chat_template`), with BOS/EOS texts from `tok`.
    pub fn from_gguf(g: &Gguf, tok: &Tokenizer) -> Result<ChatTemplate, TemplateError> {
        let source = g
            .get_str("tokenizer.chat_template")
            .ok_or(TemplateError::Missing)?;
        let text = |id: Option<u32>| id.map(|i| tok.token_text(i).to_owned()).unwrap_or_default();
        ChatTemplate::new(source, &text(tok.bos()), &text(tok.eos()))
    }

    /// A template from its source and the texts bound to `bos_token` and `eos_token`.
    pub fn new(
        source: &str,
        bos_token: &str,
        eos_token: &str,
    ) -> Result<ChatTemplate, TemplateError> {
        let limits = TemplateLimits::default();
        let mut env = Environment::new();
        // Hugging Face renders with trim_blocks and lstrip_blocks.
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(TemplateError::Syntax)?;
        env.set_syntax(syntax);
        env.set_fuel(Some(limits.fuel));
        env.set_recursion_limit(limits.max_recursion);
        env.add_function(
            "raise_exception",
            |msg: String| -> Result<Value, minijinja::Error> {
                Err(minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    format!("{RAISED}{msg}"),
                ))
            },
        );
        env.set_unknown_method_callback(py_method);
        env.add_template_owned(NAME, source.to_owned())
            .map_err(TemplateError::Syntax)?;
        Ok(ChatTemplate {
            env,
            source: source.to_owned(),
            bos_token: bos_token.to_owned(),
            eos_token: eos_token.to_owned(),
            limits,
        })
    }

    /// The same template with other render bounds.
    pub fn with_limits(mut self, limits: TemplateLimits) -> ChatTemplate {
        self.env.set_fuel(Some(limits.fuel));
        self.env.set_recursion_limit(limits.max_recursion);
        self.limits = limits;
        self
    }

    /// Defines `strftime_now(fmt)` as the UTC time `unix_seconds` (injected, never read
    /// from the clock here). Formats: `%Y %y %m %d %e %b %B %a %A %H %M %S %j %%`.
    pub fn with_now(mut self, unix_seconds: i64) -> ChatTemplate {
        self.env
            .add_function("strftime_now", move |fmt: String| -> Value {
                Value::from(strftime(unix_seconds, &fmt))
            });
        self
    }

    /// The template's source, as the model file gives it (to compile it elsewhere: the
    /// node renders untrusted templates in a memory-limited process).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The text bound to `bos_token`.
    pub fn bos_token(&self) -> &str {
        &self.bos_token
    }

    /// The text bound to `eos_token`.
    pub fn eos_token(&self) -> &str {
        &self.eos_token
    }

    /// Renders `messages`; with `add_generation_prompt` the template appends the header
    /// of the assistant's turn.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, TemplateError> {
        let msgs: Vec<Value> = messages
            .iter()
            .map(|m| {
                let mut o: BTreeMap<String, Value> = BTreeMap::new();
                o.insert("role".into(), Value::from(m.role.as_str()));
                o.insert("content".into(), Value::from(m.content.as_str()));
                Value::from(o)
            })
            .collect();
        let mut ctx: BTreeMap<String, Value> = BTreeMap::new();
        ctx.insert("messages".into(), Value::from(msgs));
        ctx.insert(
            "add_generation_prompt".into(),
            Value::from(add_generation_prompt),
        );
        ctx.insert("bos_token".into(), Value::from(self.bos_token.as_str()));
        ctx.insert("eos_token".into(), Value::from(self.eos_token.as_str()));
        let tmpl = self.env.get_template(NAME).map_err(TemplateError::Render)?;
        let overflow = Arc::new(AtomicBool::new(false));
        let mut out = Vec::new();
        let writer = Bounded {
            out: &mut out,
            max: self.limits.max_output,
            overflow: overflow.clone(),
        };
        match tmpl.render_captured_to(Value::from(ctx), writer) {
            Ok(_) => Ok(String::from_utf8_lossy(&out).into_owned()),
            Err(e) => Err(self.classify(e, overflow.load(Ordering::Relaxed))),
        }
    }

    fn classify(&self, e: minijinja::Error, overflow: bool) -> TemplateError {
        if overflow {
            return TemplateError::OutputTooLarge(self.limits.max_output);
        }
        if e.kind() == ErrorKind::OutOfFuel {
            return TemplateError::OutOfFuel(self.limits.fuel);
        }
        // The raised message may sit on a cause of the reported error.
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(err) = cur {
            if let Some(mj) = err.downcast_ref::<minijinja::Error>()
                && let Some(msg) = mj.detail().and_then(|d| d.strip_prefix(RAISED))
            {
                return TemplateError::Raised(msg.to_owned());
            }
            cur = err.source();
        }
        TemplateError::Render(e)
    }
}

/// A writer that fails once more than `max` bytes were written.
struct Bounded<'a> {
    out: &'a mut Vec<u8>,
    max: usize,
    overflow: Arc<AtomicBool>,
}

impl Write for Bounded<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.out.len().saturating_add(buf.len()) > self.max {
            self.overflow.store(true, Ordering::Relaxed);
            return Err(std::io::Error::other("chat template output limit"));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Largest string a Python string method may return (the output limit's default).
const MAX_METHOD_BYTES: usize = 8 << 20;
/// Most pieces `split` may return.
const MAX_METHOD_ITEMS: usize = 1 << 20;

fn too_large(method: &str, size: usize) -> minijinja::Error {
    minijinja::Error::new(
        ErrorKind::InvalidOperation,
        format!("{method} would make {size} (bytes or items), over its limit"),
    )
}

fn str_arg(args: &[Value], i: usize) -> Option<&str> {
    args.get(i).and_then(Value::as_str)
}

/// Python methods that chat templates call on strings and dicts.
fn py_method(
    state: &mut State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, minijinja::Error> {
    let unknown = || minijinja::Error::from(ErrorKind::UnknownMethod);
    match value.kind() {
        ValueKind::String => {
            let s = value.as_str().unwrap_or("");
            let chars = str_arg(args, 0);
            let strip_set = |c: char| chars.map_or(c.is_whitespace(), |set| set.contains(c));
            Ok(match method {
                "strip" => Value::from(s.trim_matches(strip_set)),
                "lstrip" => Value::from(s.trim_start_matches(strip_set)),
                "rstrip" => Value::from(s.trim_end_matches(strip_set)),
                "startswith" => Value::from(chars.is_some_and(|p| s.starts_with(p))),
                "endswith" => Value::from(chars.is_some_and(|p| s.ends_with(p))),
                "upper" => Value::from(s.to_uppercase()),
                "lower" => Value::from(s.to_lowercase()),
                "title" => Value::from(
                    s.split(' ')
                        .map(|w| {
                            let mut c = w.chars();
                            c.next()
                                .map(|f| {
                                    f.to_uppercase()
                                        .chain(c.flat_map(char::to_lowercase))
                                        .collect::<String>()
                                })
                                .unwrap_or_default()
                        })
                        .collect::<Vec<_>>()
                        .join(" "),
                ),
                // minijinja charges fuel for what a method returns only once it exists:
                // these two are sized before anything is allocated.
                "replace" => match (str_arg(args, 0), str_arg(args, 1)) {
                    (Some(a), Some(b)) if !a.is_empty() => {
                        let n = s.matches(a).count();
                        let size =
                            (s.len() - n * a.len()).saturating_add(n.saturating_mul(b.len()));
                        if size > MAX_METHOD_BYTES {
                            return Err(too_large("replace", size));
                        }
                        Value::from(s.replace(a, b))
                    }
                    _ => return Err(unknown()),
                },
                "split" => {
                    let n = match chars {
                        Some(sep) if !sep.is_empty() => s.matches(sep).count() + 1,
                        _ => s.split_whitespace().count(),
                    };
                    if n > MAX_METHOD_ITEMS {
                        return Err(too_large("split", n));
                    }
                    let parts: Vec<Value> = match chars {
                        Some(sep) if !sep.is_empty() => s.split(sep).map(Value::from).collect(),
                        _ => s.split_whitespace().map(Value::from).collect(),
                    };
                    Value::from(parts)
                }
                _ => return Err(unknown()),
            })
        }
        ValueKind::Map => match method {
            "items" => state.apply_filter("items", std::slice::from_ref(value)),
            "keys" => Ok(Value::from(value.try_iter()?.collect::<Vec<_>>())),
            "values" => {
                let keys: Vec<Value> = value.try_iter()?.collect();
                let vals: Result<Vec<Value>, _> = keys.iter().map(|k| value.get_item(k)).collect();
                Ok(Value::from(vals?))
            }
            "get" => {
                let key = args.first().ok_or_else(unknown)?;
                let v = value.get_item(key)?;
                Ok(if v.is_undefined() {
                    args.get(1).cloned().unwrap_or(Value::from(()))
                } else {
                    v
                })
            }
            _ => Err(unknown()),
        },
        _ => Err(unknown()),
    }
}

/// A small strftime over UTC for `strftime_now`.
fn strftime(unix: i64, fmt: &str) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const DAYS: [&str; 7] = [
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
        "Monday",
        "Tuesday",
        "Wednesday",
    ];
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let cum = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let yday = cum.get((m - 1) as usize).copied().unwrap_or(0) + d + i64::from(leap && m > 2);
    let month = MONTHS.get((m - 1) as usize).copied().unwrap_or("");
    let wday = DAYS.get(days.rem_euclid(7) as usize).copied().unwrap_or("");
    let mut out = String::new();
    let mut it = fmt.chars();
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('Y') => out.push_str(&y.to_string()),
            Some('y') => out.push_str(&format!("{:02}", y.rem_euclid(100))),
            Some('m') => out.push_str(&format!("{m:02}")),
            Some('d') => out.push_str(&format!("{d:02}")),
            Some('e') => out.push_str(&format!("{d:>2}")),
            Some('b') => out.push_str(month.get(..3).unwrap_or("")),
            Some('B') => out.push_str(month),
            Some('a') => out.push_str(wday.get(..3).unwrap_or("")),
            Some('A') => out.push_str(wday),
            Some('H') => out.push_str(&format!("{:02}", secs / 3600)),
            Some('M') => out.push_str(&format!("{:02}", secs % 3600 / 60)),
            Some('S') => out.push_str(&format!("{:02}", secs % 60)),
            Some('j') => out.push_str(&format!("{yday:03}")),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::strftime;

    #[test]
    fn strftime_known_dates() {
        assert_eq!(
            strftime(0, "%Y-%m-%d %H:%M:%S %a %j"),
            "1970-01-01 00:00:00 Thu 001"
        );
        // 2024-07-26 12:34:56 UTC, a Friday.
        assert_eq!(
            strftime(1_721_997_296, "%d %b %Y %A %B %y"),
            "26 Jul 2024 Friday July 24"
        );
        assert_eq!(strftime(951_782_400, "%Y-%m-%d %j"), "2000-02-29 060");
    }
}
