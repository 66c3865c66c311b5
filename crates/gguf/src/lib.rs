//! GGUF model files for the LLM engine: the parts that are not tensor arithmetic.
//!
//! - [`file`]: a bounded reader of the GGUF header, metadata and tensor table. Model files
//!   come from a content store and are untrusted, so nothing here allocates more than the
//!   file and [`Limits`] justify, and nothing panics.
//! - [`tokenizer`]: the SPM and BPE tokenizers as llama.cpp implements them, so a prompt
//!   tokenised here gives the ids llama.cpp gives (validators compare against it).
//! - [`template`]: the chat template stored in the file, rendered with a fuel-bounded
//!   Jinja engine (a hostile template cannot loop forever or fill memory).
//!
//! No tensor data is read here: the engine maps it using [`TensorInfo::offset`].
#![forbid(unsafe_code)]

pub mod file;
pub mod template;
pub mod tokenizer;

pub use file::{GgmlType, Gguf, GgufError, Limits, TensorInfo, Value};
pub use template::{ChatMessage, ChatTemplate, TemplateError, TemplateLimits};
pub use tokenizer::{PreTokenizer, Tokenizer, TokenizerError, TokenizerKind};

/// The engine shares these across request threads.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Gguf>();
    send_sync::<Tokenizer>();
    send_sync::<ChatTemplate>();
};
