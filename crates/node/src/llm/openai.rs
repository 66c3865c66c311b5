//! OpenAI's completion and chat-completion request and response shapes, and their
//! translation into one [`GenSpec`] the generator runs.
//!
//! Unknown fields are ignored (clients send many); known parameters this node cannot
//! honour with a non-default value (`n > 1`, penalties, `logit_bias`, `echo`, tools, ...)
//! are refused with 400 `unsupported_parameter` rather than silently ignored.

use attesta_llm::ChatMessage;
use attesta_llm::sample::SamplingParams;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// `stop`: one string or up to four.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    /// One stop string.
    One(String),
    /// Several.
    Many(Vec<String>),
}

/// `prompt` of a completion: text, or a batch of exactly one text, or token ids.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    /// Text.
    Text(String),
    /// A batch of texts (this node serves batches of one).
    Texts(Vec<String>),
    /// Token ids.
    Tokens(Vec<u32>),
}

/// `stream_options`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamOptions {
    /// Send a last chunk with the token counts.
    #[serde(default)]
    pub include_usage: bool,
}

/// Parameters both endpoints share.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Common {
    /// The model's CID.
    pub model: String,
    /// Most tokens to generate.
    pub max_tokens: Option<u64>,
    /// 0..=2, default 1.
    pub temperature: Option<f32>,
    /// (0, 1], default 1.
    pub top_p: Option<f32>,
    /// Seed of the sampler (the node draws one when absent).
    pub seed: Option<u64>,
    /// Stop strings (not included in the output).
    pub stop: Option<Stop>,
    /// Server-sent events.
    #[serde(default)]
    pub stream: bool,
    /// Streaming options.
    pub stream_options: Option<StreamOptions>,
    /// Also answer the token ids (`prompt_token_ids`, `token_ids`; vLLM's extension):
    /// what a validator needs to check a completion token by token.
    #[serde(default)]
    pub return_token_ids: bool,
    /// Completions per prompt (1 only).
    pub n: Option<u32>,
    /// Refused unless 0.
    pub presence_penalty: Option<f32>,
    /// Refused unless 0.
    pub frequency_penalty: Option<f32>,
    /// Refused unless empty.
    pub logit_bias: Option<serde_json::Map<String, serde_json::Value>>,
}

/// `POST /v1/completions`.
#[derive(Debug, Clone, Deserialize)]
pub struct CompletionRequest {
    /// Shared parameters.
    #[serde(flatten)]
    pub common: Common,
    /// The prompt.
    pub prompt: Prompt,
    /// Top alternatives per token (0..=5).
    pub logprobs: Option<u32>,
    /// Refused when true.
    #[serde(default)]
    pub echo: bool,
    /// Refused unless 1.
    pub best_of: Option<u32>,
    /// Refused when present.
    pub suffix: Option<String>,
}

/// Message content: a string or OpenAI's list of text parts.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Parts; only `{"type": "text", "text": ...}` parts are accepted.
    Parts(Vec<Part>),
}

/// One content part.
#[derive(Debug, Clone, Deserialize)]
pub struct Part {
    /// Must be `text`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The text.
    #[serde(default)]
    pub text: Option<String>,
}

/// One chat message.
#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    /// `system`, `user`, `assistant` (or `developer`, rendered as `system`).
    pub role: String,
    /// What it says.
    pub content: Content,
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatRequest {
    /// Shared parameters.
    #[serde(flatten)]
    pub common: Common,
    /// The conversation.
    pub messages: Vec<Message>,
    /// OpenAI's newer name for `max_tokens`.
    pub max_completion_tokens: Option<u64>,
    /// Report log-probabilities.
    #[serde(default)]
    pub logprobs: bool,
    /// Alternatives per token (0..=20), with `logprobs`.
    pub top_logprobs: Option<u32>,
    /// Refused when non-empty.
    pub tools: Option<Vec<serde_json::Value>>,
}

/// Which endpoint a request came from (shapes the answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/completions`.
    Completions,
    /// `/v1/chat/completions`.
    Chat,
}

/// What the prompt is before tokenisation.
#[derive(Debug, Clone)]
pub enum PromptSpec {
    /// Raw text (completions).
    Text(String),
    /// Token ids (completions).
    Tokens(Vec<u32>),
    /// A conversation for the model's chat template.
    Messages(Vec<ChatMessage>),
}

/// A validated generation request.
#[derive(Debug, Clone)]
pub struct GenSpec {
    /// Which API shape answers.
    pub endpoint: Endpoint,
    /// The model's CID as given.
    pub model: String,
    /// The prompt.
    pub prompt: PromptSpec,
    /// Requested completion length (None: the endpoint's default).
    pub max_tokens: Option<usize>,
    /// Sampling (seed filled in by the node when absent).
    pub sampling: SamplingParams,
    /// Whether the caller gave the seed.
    pub seed_given: bool,
    /// Stop strings.
    pub stop: Vec<String>,
    /// Alternatives per token when log-probabilities were asked for.
    pub logprobs: Option<usize>,
    /// Server-sent events.
    pub stream: bool,
    /// A usage chunk at the end of a stream.
    pub include_usage: bool,
    /// Answer the token ids too.
    pub return_token_ids: bool,
}

fn unsupported(param: &str, why: &str) -> ApiError {
    ApiError::bad_request(
        "unsupported_parameter",
        format!("{param}: {why} is not supported by this node"),
    )
}

fn invalid(message: String) -> ApiError {
    ApiError::bad_request("invalid_request", message)
}

impl Common {
    fn check(&self) -> Result<(SamplingParams, Vec<String>, bool), ApiError> {
        if self.n.is_some_and(|n| n != 1) {
            return Err(unsupported("n", "more than one choice"));
        }
        if self.presence_penalty.is_some_and(|p| p != 0.0) {
            return Err(unsupported("presence_penalty", "a non-zero penalty"));
        }
        if self.frequency_penalty.is_some_and(|p| p != 0.0) {
            return Err(unsupported("frequency_penalty", "a non-zero penalty"));
        }
        if self.logit_bias.as_ref().is_some_and(|b| !b.is_empty()) {
            return Err(unsupported("logit_bias", "a bias"));
        }
        let sampling = SamplingParams {
            temperature: self.temperature.unwrap_or(1.0),
            top_p: self.top_p.unwrap_or(1.0),
            seed: self.seed.unwrap_or(0),
        };
        sampling.check().map_err(|e| invalid(e.to_string()))?;
        let stop = match &self.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s.clone()],
            Some(Stop::Many(v)) => v.clone(),
        };
        if stop.len() > 4 {
            return Err(invalid("stop: at most 4 sequences".into()));
        }
        if stop.iter().any(|s| s.is_empty() || s.len() > 256) {
            return Err(invalid("stop: each sequence must be 1 to 256 bytes".into()));
        }
        Ok((sampling, stop, self.seed.is_some()))
    }

    fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .is_some_and(|o| o.include_usage)
    }
}

impl CompletionRequest {
    /// Validates and translates.
    pub fn into_spec(self) -> Result<GenSpec, ApiError> {
        let (sampling, stop, seed_given) = self.common.check()?;
        if self.echo {
            return Err(unsupported("echo", "echoing the prompt"));
        }
        if self.best_of.is_some_and(|b| b != 1) {
            return Err(unsupported("best_of", "more than one candidate"));
        }
        if self.suffix.is_some() {
            return Err(unsupported("suffix", "insertion"));
        }
        let logprobs = match self.logprobs {
            None => None,
            Some(k) if k <= 5 => Some(k as usize),
            Some(k) => return Err(invalid(format!("logprobs: at most 5, got {k}"))),
        };
        let prompt = match self.prompt {
            Prompt::Text(t) => PromptSpec::Text(t),
            Prompt::Texts(mut v) if v.len() == 1 => PromptSpec::Text(v.remove(0)),
            Prompt::Texts(_) => return Err(unsupported("prompt", "a batch of several prompts")),
            Prompt::Tokens(t) => PromptSpec::Tokens(t),
        };
        Ok(GenSpec {
            endpoint: Endpoint::Completions,
            include_usage: self.common.include_usage(),
            return_token_ids: self.common.return_token_ids,
            model: self.common.model,
            prompt,
            // OpenAI's default for completions.
            max_tokens: Some(self.common.max_tokens.map_or(16, clamp_u64)),
            sampling,
            seed_given,
            stop,
            logprobs,
            stream: self.common.stream,
        })
    }
}

impl ChatRequest {
    /// Validates and translates.
    pub fn into_spec(self) -> Result<GenSpec, ApiError> {
        let (sampling, stop, seed_given) = self.common.check()?;
        if self.tools.as_ref().is_some_and(|t| !t.is_empty()) {
            return Err(unsupported("tools", "tool calling"));
        }
        if self.messages.is_empty() {
            return Err(invalid("messages: at least one message is required".into()));
        }
        let mut messages = Vec::with_capacity(self.messages.len());
        for (i, m) in self.messages.into_iter().enumerate() {
            let role = match m.role.as_str() {
                "system" | "user" | "assistant" => m.role,
                "developer" => "system".to_string(),
                other => {
                    return Err(invalid(format!(
                        "messages[{i}].role: unknown role {other:?}"
                    )));
                }
            };
            let content = match m.content {
                Content::Text(t) => t,
                Content::Parts(parts) => {
                    let mut text = String::new();
                    for p in parts {
                        match (p.kind.as_str(), p.text) {
                            ("text", Some(t)) => text.push_str(&t),
                            (kind, _) => {
                                return Err(unsupported(
                                    &format!("messages[{i}].content"),
                                    &format!("a {kind:?} part"),
                                ));
                            }
                        }
                    }
                    text
                }
            };
            messages.push(ChatMessage { role, content });
        }
        let logprobs = match (self.logprobs, self.top_logprobs) {
            (false, None) => None,
            (false, Some(_)) => return Err(invalid("top_logprobs requires logprobs: true".into())),
            (true, k) if k.unwrap_or(0) <= 20 => Some(k.unwrap_or(0) as usize),
            (true, k) => return Err(invalid(format!("top_logprobs: at most 20, got {k:?}"))),
        };
        Ok(GenSpec {
            endpoint: Endpoint::Chat,
            include_usage: self.common.include_usage(),
            return_token_ids: self.common.return_token_ids,
            model: self.common.model,
            prompt: PromptSpec::Messages(messages),
            max_tokens: self
                .max_completion_tokens
                .or(self.common.max_tokens)
                .map(clamp_u64),
            sampling,
            seed_given,
            stop,
            logprobs,
            stream: self.common.stream,
        })
    }
}

fn clamp_u64(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

/// Token counts.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Generated tokens.
    pub completion_tokens: usize,
    /// Their sum.
    pub total_tokens: usize,
}
