//! One generation on the blocking pool: prompt to tokens, tokens to text, stop strings,
//! end-of-generation tokens, deadline and cancellation, reported as [`Event`]s.

use std::time::Instant;

use attesta_llm::generate::Generation;
use attesta_llm::{LlmError, LlmModel};
use axum::http::StatusCode;
use tokio::sync::mpsc;

use super::openai::{GenSpec, PromptSpec, Usage};
use crate::error::ApiError;

/// Why generation ended (OpenAI's `finish_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// An end-of-generation token or a stop string.
    Stop,
    /// `max_tokens` reached.
    Length,
}

impl Finish {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
        }
    }
}

/// One token's log-probability report.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    /// The token as text (lossy for partial UTF-8).
    pub token: String,
    /// Its raw bytes.
    pub bytes: Vec<u8>,
    /// Natural-log probability.
    pub logprob: f32,
    /// Alternatives: (text, bytes, logprob), most likely first.
    pub top: Vec<(String, Vec<u8>, f32)>,
}

/// What the generator reports, in order.
#[derive(Debug, Clone)]
pub enum Event {
    /// A generated token: the text it completes (possibly empty while a UTF-8 sequence
    /// or a possible stop string is pending), and its log-probabilities when asked.
    Token {
        /// Text to append.
        text: String,
        /// Token id.
        id: u32,
        /// Log-probabilities.
        logprob: Option<TokenLogprob>,
    },
    /// The end, with the remaining text (held back until now) and the counts.
    Done {
        /// Text not yet sent.
        text: String,
        /// Why it ended.
        finish: Finish,
        /// Token counts.
        usage: Usage,
        /// The end-of-generation token that ended it, if one did (counted in `usage`,
        /// never shown as text, listed in token ids).
        eog: Option<u32>,
    },
}

/// Tokenises the text or token prompt of `spec` for `llm` (chat prompts: [`chat_tokens`]
/// of the sandbox's render).
pub fn prompt_tokens(llm: &LlmModel, spec: &GenSpec) -> Result<Vec<u32>, ApiError> {
    let tok = llm.tokenizer();
    let tokens = match &spec.prompt {
        PromptSpec::Tokens(t) => {
            if let Some(&bad) = t.iter().find(|&&id| id as usize >= tok.n_vocab()) {
                return Err(ApiError::bad_request(
                    "invalid_request",
                    format!(
                        "prompt: token {bad} is outside the vocabulary of {}",
                        tok.n_vocab()
                    ),
                ));
            }
            t.clone()
        }
        PromptSpec::Text(text) => tok.encode(text, true, true),
        // Only the template sandbox renders chat templates (they are the model file's code):
        // messages never reach the tokenizer unrendered.
        PromptSpec::Messages(_) => {
            return Err(ApiError::internal(
                "chat messages reached the tokenizer without their template render",
            ));
        }
    };
    non_empty(tokens)
}

/// The refusal of a chat request for a model without a chat template.
pub fn no_chat_template(model: &str) -> ApiError {
    ApiError::bad_request(
        "no_chat_template",
        format!("model {model} has no chat template: use /v1/completions"),
    )
}

/// Tokenises a rendered chat prompt for `llm`.
pub fn chat_tokens(llm: &LlmModel, text: &str) -> Result<Vec<u32>, ApiError> {
    let tok = llm.tokenizer();
    let mut t = tok.encode(text, true, true);
    // Templates that write the BOS themselves would otherwise get a second one.
    if let (Some(bos), [a, b, ..]) = (tok.bos(), t.as_slice())
        && *a == bos
        && *b == bos
    {
        t.remove(0);
    }
    non_empty(t)
}

fn non_empty(tokens: Vec<u32>) -> Result<Vec<u32>, ApiError> {
    if tokens.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_request",
            "prompt: empty after tokenisation",
        ));
    }
    Ok(tokens)
}

/// Completion tokens to allow: the request's, else what the context leaves (capped by
/// the node's limit). A request over either limit is refused, never truncated.
pub fn completion_budget(
    spec: &GenSpec,
    prompt_len: usize,
    context: usize,
    node_limit: usize,
) -> Result<usize, ApiError> {
    let left = context.saturating_sub(prompt_len);
    match spec.max_tokens {
        Some(n) if n > node_limit => Err(ApiError::bad_request(
            "max_tokens_too_large",
            format!("max_tokens {n} is over this node's limit of {node_limit}"),
        )),
        Some(0) => Err(ApiError::bad_request(
            "invalid_request",
            "max_tokens must be at least 1",
        )),
        Some(n) if prompt_len + n > context => Err(context_overflow(prompt_len, n, context)),
        Some(n) => Ok(n),
        None if left == 0 => Err(context_overflow(prompt_len, 1, context)),
        None => Ok(left.min(node_limit)),
    }
}

fn context_overflow(prompt: usize, completion: usize, context: usize) -> ApiError {
    ApiError::bad_request(
        "context_length_exceeded",
        format!(
            "this model's context is {context} tokens; the request needs {} ({prompt} in the prompt, {completion} to generate)",
            prompt + completion
        ),
    )
}

/// Runs the generation, sending events to `tx` until done, the deadline passes (503
/// `timeout`) or the receiver is gone (the client left: generation stops at once).
/// `perturb` (the node's declared `wrong-output` fault) answers another ordinary token
/// in place of the first one generated, as a dishonest node would: the completion is then
/// not what the sampler chose, which is what a validator's greedy check has to catch.
pub fn generate(
    llm: &LlmModel,
    spec: &GenSpec,
    prompt: &[u32],
    max_tokens: usize,
    deadline: Instant,
    tx: &mpsc::Sender<Event>,
    perturb: bool,
) -> Result<(), ApiError> {
    let tok = llm.tokenizer();
    let top_k = spec.logprobs.unwrap_or(0);
    let mut generation = Generation::start(llm.model(), prompt, spec.sampling, max_tokens, top_k)
        .map_err(llm_error)?;
    let mut text = TextAssembler::new(&spec.stop);
    let mut finish = Finish::Length;
    let mut eog = None;
    while let Some(step) = generation.step().map_err(llm_error)? {
        if Instant::now() > deadline {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                format!(
                    "generation did not finish in time ({} tokens produced)",
                    generation.produced()
                ),
            ));
        }
        if tok.is_eog(step.token) {
            finish = Finish::Stop;
            eog = Some(step.token);
            break;
        }
        let token = if perturb && generation.produced() == 1 {
            other_token(llm, step.token)
        } else {
            step.token
        };
        let piece = tok.piece(token, false);
        let (out, stopped) = text.push(piece);
        let logprob = spec.logprobs.map(|_| TokenLogprob {
            token: String::from_utf8_lossy(piece).into_owned(),
            bytes: piece.to_vec(),
            logprob: step.logprob,
            top: step
                .top
                .iter()
                .map(|&(id, lp)| {
                    let p = tok.piece(id, false);
                    (String::from_utf8_lossy(p).into_owned(), p.to_vec(), lp)
                })
                .collect(),
        });
        let event = Event::Token {
            text: out,
            id: token,
            logprob,
        };
        if tx.blocking_send(event).is_err() {
            return Ok(());
        }
        if stopped {
            finish = Finish::Stop;
            break;
        }
    }
    let usage = Usage {
        prompt_tokens: prompt.len(),
        completion_tokens: generation.produced(),
        total_tokens: prompt.len() + generation.produced(),
    };
    let _ = tx.blocking_send(Event::Done {
        text: text.finish(),
        finish,
        usage,
        eog,
    });
    Ok(())
}

/// The next ordinary token after `not` (wrapping): not control, end-of-generation or
/// empty, so the perturbed answer still looks like text.
fn other_token(llm: &LlmModel, not: u32) -> u32 {
    let tok = llm.tokenizer();
    let n = u32::try_from(tok.n_vocab()).unwrap_or(u32::MAX).max(1);
    (1..n)
        .map(|k| (not.wrapping_add(k)) % n)
        .find(|&id| !tok.is_control(id) && !tok.is_eog(id) && !tok.piece(id, false).is_empty())
        .unwrap_or(not)
}

/// A language-model failure as an API error.
pub fn llm_error(e: LlmError) -> ApiError {
    match e {
        LlmError::ContextOverflow { needed, limit } => ApiError::bad_request(
            "context_length_exceeded",
            format!("this model's context is {limit} tokens; the request needs {needed}"),
        ),
        LlmError::TokenOutOfRange { .. } => ApiError::bad_request("invalid_request", e.to_string()),
        other => ApiError::internal_from("generation failed", other),
    }
}

/// Turns token bytes into text: whole UTF-8 characters only, and nothing that could be
/// the start of a stop string until it is known not to be one.
pub struct TextAssembler<'s> {
    stops: &'s [String],
    /// Bytes of an incomplete UTF-8 sequence.
    partial: Vec<u8>,
    /// Decoded text not yet handed out.
    held: String,
    stopped: bool,
}

impl<'s> TextAssembler<'s> {
    /// An assembler cutting at `stops`.
    pub fn new(stops: &'s [String]) -> Self {
        TextAssembler {
            stops,
            partial: Vec::new(),
            held: String::new(),
            stopped: false,
        }
    }

    /// Adds a token's bytes; returns the text now safe to send, and whether a stop
    /// string was reached (the text then ends right before it).
    pub fn push(&mut self, bytes: &[u8]) -> (String, bool) {
        if self.stopped {
            return (String::new(), true);
        }
        self.partial.extend_from_slice(bytes);
        let valid = match std::str::from_utf8(&self.partial) {
            Ok(s) => s.len(),
            // An invalid sequence (not merely incomplete) is passed on as U+FFFD.
            Err(e) if e.error_len().is_some() => self.partial.len(),
            Err(e) => e.valid_up_to(),
        };
        let done: Vec<u8> = self.partial.drain(..valid).collect();
        self.held.push_str(&String::from_utf8_lossy(&done));
        if let Some(at) = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min()
        {
            self.held.truncate(at);
            self.stopped = true;
            return (std::mem::take(&mut self.held), true);
        }
        let keep = self
            .stops
            .iter()
            .map(|s| longest_suffix_prefix(&self.held, s))
            .max()
            .unwrap_or(0);
        let cut = self.held.len() - keep;
        let out = self.held[..cut].to_string();
        self.held.drain(..cut);
        (out, false)
    }

    /// What is left at the end (nothing after a stop string).
    pub fn finish(mut self) -> String {
        if self.stopped {
            return String::new();
        }
        let rest = String::from_utf8_lossy(&self.partial).into_owned();
        self.held.push_str(&rest);
        self.held
    }
}

/// Length of the longest suffix of `text` that is a proper prefix of `stop` (always a
/// character boundary of `text`: UTF-8 is self-synchronising).
fn longest_suffix_prefix(text: &str, stop: &str) -> usize {
    let max = stop.len().saturating_sub(1).min(text.len());
    (1..=max)
        .rev()
        .find(|&k| {
            text.is_char_boundary(text.len() - k)
                && stop
                    .as_bytes()
                    .starts_with(&text.as_bytes()[text.len() - k..])
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_waits_for_whole_characters() {
        let stops = vec![];
        let mut t = TextAssembler::new(&stops);
        let euro = "€".as_bytes();
        assert_eq!(t.push(&euro[..1]), (String::new(), false));
        assert_eq!(t.push(&euro[1..]), ("€".to_string(), false));
    }

    #[test]
    fn stop_strings_cut_and_are_held_back_while_possible() {
        let stops = vec!["\nUser:".to_string()];
        let mut t = TextAssembler::new(&stops);
        assert_eq!(t.push(b"Hello"), ("Hello".to_string(), false));
        assert_eq!(t.push(b"\nUs"), (String::new(), false));
        assert_eq!(t.push(b"er: hi"), (String::new(), true));
        let mut t = TextAssembler::new(&stops);
        t.push(b"a\nU");
        assert_eq!(t.push(b"nicorn"), ("\nUnicorn".to_string(), false));
        assert_eq!(t.finish(), "");
    }

    #[test]
    fn held_text_is_released_at_the_end() {
        let stops = vec!["STOP".to_string()];
        let mut t = TextAssembler::new(&stops);
        assert_eq!(t.push(b"ab ST"), ("ab ".to_string(), false));
        assert_eq!(t.finish(), "ST");
    }
}
