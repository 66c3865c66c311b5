//! llama.cpp-compatible tokenizers built from a GGUF file's `tokenizer.ggml.*` metadata.
//!
//! Validators check a node's answers against llama.cpp token for token, so a prompt must
//! become exactly the ids llama.cpp's `llama_tokenize` gives, and ids must become exactly
//! the bytes of its `llama_token_to_piece`. This module follows llama.cpp's rules (not the
//! Hugging Face ones where they differ):
//!
//! - **SPM** (`model = "llama"`): characters merged by the highest-scoring bigram that is a
//!   vocabulary token, a `▁` prefix after the start and after every special token (when
//!   `add_space_prefix`), bytes without a token become `<0xNN>` tokens.
//! - **BPE** (`model = "gpt2"`): the text is split into words by the pre-tokenizer named by
//!   `tokenizer.ggml.pre` (an unknown name is an error: a guessed splitter would produce
//!   different ids), each word's bytes are mapped to GPT-2's printable characters and
//!   merged by rank.
//! - Special tokens (control, user-defined, unknown) are cut out of the text first, longest
//!   first; control and unknown ones only when `parse_special`.
//! - The end-of-generation set and the control attributes come from the ids in the metadata
//!   and from llama.cpp's list of well-known token texts (`<|eot_id|>`, `<|im_end|>`, ...).
//!
//! Not implemented (refused or ignored, never approximated silently): WPM/UGM/RWKV vocabularies
//! (error), pre-tokenizers other than the GPT-2, Llama-3, Qwen2 and default families (error),
//! and llama.cpp's per-model-name `lstrip`/`rstrip` attributes (Phi-3, Jina).

mod unicode;

use std::cmp::Ordering;
use std::collections::{BTreeSet, BinaryHeap, HashMap};

use crate::file::{Gguf, Value};
pub use unicode::PreTokenizer;

const ATTR_UNKNOWN: u32 = 1 << 0;
const ATTR_UNUSED: u32 = 1 << 1;
const ATTR_NORMAL: u32 = 1 << 2;
const ATTR_CONTROL: u32 = 1 << 3;
const ATTR_USER_DEFINED: u32 = 1 << 4;
const ATTR_BYTE: u32 = 1 << 5;
const ATTR_LSTRIP: u32 = 1 << 7;
const ATTR_RSTRIP: u32 = 1 << 8;

/// Why a tokenizer could not be built from a file's metadata.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A required key is absent.
    #[error("missing metadata key {0}")]
    MissingKey(&'static str),
    /// A key holds a value of the wrong type.
    #[error("metadata key {key} is not {expected}")]
    WrongType {
        /// The key.
        key: &'static str,
        /// What it should hold.
        expected: &'static str,
    },
    /// A per-token array shorter than the vocabulary.
    #[error("{key} has {len} entries for {n_tokens} tokens")]
    ShortArray {
        /// The key.
        key: &'static str,
        /// Its length.
        len: usize,
        /// Vocabulary size.
        n_tokens: usize,
    },
    /// `tokenizer.ggml.model` other than `llama` (SPM) or `gpt2` (BPE).
    #[error("unsupported tokenizer model {0:?}")]
    UnknownModel(String),
    /// `tokenizer.ggml.pre` naming a pre-tokenizer this crate does not implement.
    #[error("unsupported pre-tokenizer {0:?}")]
    UnknownPre(String),
    /// An empty vocabulary, or one too large for 32-bit ids.
    #[error("vocabulary of {0} tokens")]
    BadVocabSize(usize),
}

/// The tokenizer algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenizerKind {
    /// SentencePiece-style score merges (`tokenizer.ggml.model = "llama"`).
    Spm,
    /// Byte-level BPE with the given pre-tokenizer (`tokenizer.ggml.model = "gpt2"`).
    Bpe(PreTokenizer),
}

#[derive(Debug, Clone)]
struct Token {
    text: String,
    score: f32,
    attr: u32,
}

/// A vocabulary with llama.cpp's tokenization and detokenization rules.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    kind: TokenizerKind,
    tokens: Vec<Token>,
    /// `token_to_piece(id, special = true)` for every id.
    pieces: Vec<Vec<u8>>,
    token_to_id: HashMap<String, u32>,
    /// BPE merges keyed `"left right"`, value = rank (first occurrence wins).
    merges: HashMap<String, u32>,
    /// Special tokens in partition order (longest text first).
    specials: Vec<u32>,
    /// SPM byte fallback tokens.
    byte_tokens: [Option<u32>; 256],
    bos: Option<u32>,
    eos: Option<u32>,
    eot: Option<u32>,
    unk: Option<u32>,
    eog: BTreeSet<u32>,
    add_bos: bool,
    add_eos: bool,
    add_space_prefix: bool,
    ignore_merges: bool,
    clean_spaces: bool,
}

/// Texts llama.cpp recognises as end-of-turn tokens when `eot_token_id` is absent.
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];
const FIM_PRE_TEXTS: &[&str] = &[
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<｜fim▁begin｜>",
    "<PRE>",
    "▁<PRE>",
    "<|code_prefix|>",
    "<|prefix|>",
];
const FIM_SUF_TEXTS: &[&str] = &[
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<｜fim▁hole｜>",
    "<SUF>",
    "▁<SUF>",
    "<|code_suffix|>",
    "<|suffix|>",
];
const FIM_MID_TEXTS: &[&str] = &[
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<｜fim▁end｜>",
    "<MID>",
    "▁<MID>",
    "<|code_middle|>",
    "<|middle|>",
];
const FIM_PAD_TEXTS: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP_TEXTS: &[&str] = &[
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
];
const FIM_SEP_TEXTS: &[&str] = &["<|file_sep|>"];
/// Texts llama.cpp always treats as end of generation.
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

fn string_array<'a>(
    g: &'a Gguf,
    key: &'static str,
) -> Result<Option<Vec<&'a str>>, TokenizerError> {
    let Some(v) = g.get(key) else {
        return Ok(None);
    };
    let wrong = TokenizerError::WrongType {
        key,
        expected: "an array of strings",
    };
    let arr = v.as_array().ok_or(wrong)?;
    arr.iter()
        .map(|v| {
            v.as_str().ok_or(TokenizerError::WrongType {
                key,
                expected: "an array of strings",
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn bool_key(g: &Gguf, key: &'static str) -> Result<Option<bool>, TokenizerError> {
    match g.get(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(TokenizerError::WrongType {
            key,
            expected: "a boolean",
        }),
    }
}

/// llama.cpp's `strtol(text.substr(3, 2), 16)` for `<0xNN>` byte tokens.
fn hex_byte(text: &str) -> u8 {
    let digits = text.get(3..).unwrap_or("").chars().take(2);
    let mut v = 0u8;
    for c in digits {
        match c.to_digit(16) {
            Some(d) => v = v.wrapping_mul(16).wrapping_add(d as u8),
            None => break,
        }
    }
    v
}

impl Tokenizer {
    /// Builds the tokenizer described by `g`'s `tokenizer.ggml.*` metadata.
    pub fn from_gguf(g: &Gguf) -> Result<Tokenizer, TokenizerError> {
        let model = g
            .get_str("tokenizer.ggml.model")
            .ok_or(TokenizerError::MissingKey("tokenizer.ggml.model"))?;
        let mut add_bos;
        let mut add_eos = false;
        let mut add_space_prefix;
        let mut ignore_merges = false;
        let mut clean_spaces;
        let (mut bos, mut eos, mut unk): (Option<u32>, Option<u32>, Option<u32>);
        let kind = match model {
            "llama" => {
                add_bos = true;
                add_space_prefix = true;
                clean_spaces = false;
                (bos, eos, unk) = (Some(1), Some(2), Some(0));
                TokenizerKind::Spm
            }
            "gpt2" => {
                add_bos = false;
                add_space_prefix = false;
                clean_spaces = true;
                (bos, eos, unk) = (Some(11), Some(11), None);
                let pre = match g.get_str("tokenizer.ggml.pre") {
                    // llama.cpp's documented fallback for files without the key.
                    None | Some("default") => PreTokenizer::Default,
                    Some(
                        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral"
                        | "midm-2.0" | "lfm2" | "jina-v5-nano",
                    ) => {
                        ignore_merges = true;
                        add_bos = true;
                        PreTokenizer::Llama3
                    }
                    Some("qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2") => {
                        clean_spaces = false;
                        PreTokenizer::Qwen2
                    }
                    Some("megrez" | "stablelm2") => PreTokenizer::Qwen2,
                    Some(
                        "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es"
                        | "jina-v2-de" | "a.x-4.0" | "mellum" | "exaone4",
                    ) => PreTokenizer::Gpt2,
                    Some(other) => return Err(TokenizerError::UnknownPre(other.to_owned())),
                };
                TokenizerKind::Bpe(pre)
            }
            other => return Err(TokenizerError::UnknownModel(other.to_owned())),
        };
        if let Some(v) = bool_key(g, "tokenizer.ggml.add_space_prefix")? {
            add_space_prefix = v;
        }

        let texts = string_array(g, "tokenizer.ggml.tokens")?
            .ok_or(TokenizerError::MissingKey("tokenizer.ggml.tokens"))?;
        let n = texts.len();
        if n == 0 || u32::try_from(n).is_err() || n > i32::MAX as usize {
            return Err(TokenizerError::BadVocabSize(n));
        }
        let scores: Option<Vec<f32>> = match g.get("tokenizer.ggml.scores") {
            None => None,
            Some(v) => {
                let key = "tokenizer.ggml.scores";
                let arr = v.as_array().ok_or(TokenizerError::WrongType {
                    key,
                    expected: "an array of f32 or i32",
                })?;
                if arr.len() < n {
                    return Err(TokenizerError::ShortArray {
                        key,
                        len: arr.len(),
                        n_tokens: n,
                    });
                }
                let s = arr
                    .iter()
                    .map(|v| match v {
                        Value::F32(f) => Ok(*f),
                        Value::I32(i) => Ok(*i as f32),
                        _ => Err(TokenizerError::WrongType {
                            key,
                            expected: "an array of f32 or i32",
                        }),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Some(s)
            }
        };
        let types: Option<Vec<i32>> = match g.get("tokenizer.ggml.token_type") {
            None => None,
            Some(v) => {
                let key = "tokenizer.ggml.token_type";
                let arr = v.as_array().ok_or(TokenizerError::WrongType {
                    key,
                    expected: "an array of i32",
                })?;
                if arr.len() < n {
                    return Err(TokenizerError::ShortArray {
                        key,
                        len: arr.len(),
                        n_tokens: n,
                    });
                }
                let t = arr
                    .iter()
                    .map(|v| match v {
                        Value::I32(i) => Ok(*i),
                        _ => Err(TokenizerError::WrongType {
                            key,
                            expected: "an array of i32",
                        }),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Some(t)
            }
        };

        let mut tokens = Vec::with_capacity(n);
        let mut token_to_id = HashMap::with_capacity(n);
        for (i, text) in texts.iter().enumerate() {
            let text = if text.is_empty() {
                format!("[EMPTY_{i}]")
            } else {
                (*text).to_owned()
            };
            let attr = match types.as_ref().and_then(|t| t.get(i)) {
                None | Some(1) => ATTR_NORMAL,
                Some(2) => ATTR_UNKNOWN,
                Some(3) => ATTR_CONTROL,
                Some(4) => ATTR_USER_DEFINED,
                Some(5) => ATTR_UNUSED,
                Some(6) => ATTR_BYTE,
                Some(_) => 0,
            };
            token_to_id.insert(text.clone(), i as u32);
            tokens.push(Token {
                text,
                score: scores
                    .as_ref()
                    .and_then(|s| s.get(i))
                    .copied()
                    .unwrap_or(0.0),
                attr,
            });
        }

        let mut merges = HashMap::new();
        if let TokenizerKind::Bpe(_) = kind {
            let list = string_array(g, "tokenizer.ggml.merges")?
                .ok_or(TokenizerError::MissingKey("tokenizer.ggml.merges"))?;
            merges.reserve(list.len());
            for (rank, m) in list.iter().enumerate() {
                // llama.cpp splits at the first space after the first byte.
                if m.as_bytes().get(1..).is_some_and(|s| s.contains(&b' ')) {
                    merges.entry((*m).to_owned()).or_insert(rank as u32);
                }
            }
        }

        // Special ids: defaults out of range are dropped; metadata ids out of range keep
        // the default (llama.cpp warns and does the same).
        let n32 = n as u32;
        let in_range = |id: Option<u32>| id.filter(|&i| i < n32);
        (bos, eos, unk) = (in_range(bos), in_range(eos), in_range(unk));
        let key_id = |key: &str, cur: Option<u32>| match g.get_u32(key) {
            Some(id) if id < n32 => Some(id),
            _ => cur,
        };
        bos = key_id("tokenizer.ggml.bos_token_id", bos);
        eos = key_id("tokenizer.ggml.eos_token_id", eos);
        unk = key_id("tokenizer.ggml.unknown_token_id", unk);
        let mut eot = key_id("tokenizer.ggml.eot_token_id", None);
        let mut eom = key_id("tokenizer.ggml.eom_token_id", None);
        let mut fim_pre = key_id("tokenizer.ggml.fim_pre_token_id", None);
        let mut fim_suf = key_id("tokenizer.ggml.fim_suf_token_id", None);
        let mut fim_mid = key_id("tokenizer.ggml.fim_mid_token_id", None);
        let mut fim_pad = key_id("tokenizer.ggml.fim_pad_token_id", None);
        let mut fim_rep = key_id("tokenizer.ggml.fim_rep_token_id", None);
        let mut fim_sep = key_id("tokenizer.ggml.fim_sep_token_id", None);
        fim_pre = key_id("tokenizer.ggml.prefix_token_id", fim_pre);
        fim_suf = key_id("tokenizer.ggml.suffix_token_id", fim_suf);
        fim_mid = key_id("tokenizer.ggml.middle_token_id", fim_mid);
        if let Some(v) = bool_key(g, "tokenizer.ggml.add_bos_token")? {
            add_bos = v;
        }
        if let Some(v) = bool_key(g, "tokenizer.ggml.add_eos_token")? {
            add_eos = v;
        }

        // Auto-detection by text over the ids the text map resolves to. llama.cpp walks a
        // hash map (first hit wins, in no defined order); here the first text of each list
        // that is in the vocabulary wins, so "<|eot_id|>" beats "<|end_of_text|>".
        let mut by_id: Vec<(u32, &str)> =
            token_to_id.iter().map(|(t, &i)| (i, t.as_str())).collect();
        by_id.sort_unstable();
        let mut control = BTreeSet::new();
        for (slot, list) in [
            (&mut eot, EOT_TEXTS),
            (&mut eom, &["<|eom_id|>"][..]),
            (&mut fim_pre, FIM_PRE_TEXTS),
            (&mut fim_suf, FIM_SUF_TEXTS),
            (&mut fim_mid, FIM_MID_TEXTS),
            (&mut fim_pad, FIM_PAD_TEXTS),
            (&mut fim_rep, FIM_REP_TEXTS),
            (&mut fim_sep, FIM_SEP_TEXTS),
        ] {
            if slot.is_none()
                && let Some(id) = list.iter().find_map(|t| token_to_id.get(*t).copied())
            {
                *slot = Some(id);
                control.insert(id);
            }
        }
        let mut eog: BTreeSet<u32> = [fim_pad, fim_rep, fim_sep].into_iter().flatten().collect();
        for &(id, text) in &by_id {
            if EOG_TEXTS.contains(&text) {
                eog.insert(id);
                control.insert(id);
            }
        }
        for id in control {
            if let Some(t) = tokens.get_mut(id as usize) {
                t.attr |= ATTR_CONTROL;
            }
        }
        // gpt-oss channel markers are always rendered.
        for &(id, text) in &by_id {
            if matches!(
                text,
                "<|channel|>" | "<|message|>" | "<|start|>" | "<|constrain|>"
            ) && let Some(t) = tokens.get_mut(id as usize)
            {
                t.attr = ATTR_USER_DEFINED;
            }
        }
        eog.extend([eos, eot, eom].into_iter().flatten());
        let text_of = |id: u32, tokens: &[Token]| {
            tokens
                .get(id as usize)
                .map(|t| t.text.clone())
                .unwrap_or_default()
        };
        {
            // o200k-harmony / solar-open: "<|end|>" ends a message, not the generation.
            let texts: Vec<(u32, String)> =
                eog.iter().map(|&id| (id, text_of(id, &tokens))).collect();
            let has = |s: &str| texts.iter().any(|(_, t)| t == s);
            let end = texts
                .iter()
                .find(|(_, t)| t == "<|end|>")
                .map(|(id, _)| *id);
            let call = has("<|call|>") || has("<|calls|>");
            if let Some(end) = end
                && call
                && (has("<|return|>") || has("<|flush|>"))
            {
                eog.remove(&end);
                if let Some(t) = tokens.get_mut(end as usize) {
                    t.attr = ATTR_USER_DEFINED;
                }
            }
            // Gemma 4 / PLaMo: "</s>" is an ordinary token there.
            let s = texts.iter().find(|(_, t)| t == "</s>").map(|(id, _)| *id);
            if let Some(s) = s
                && (has("<|tool_response>") || has("<|plamo:eos|>"))
            {
                eog.remove(&s);
                if let Some(t) = tokens.get_mut(s as usize) {
                    t.attr = ATTR_NORMAL;
                }
            }
        }

        let mut specials: Vec<u32> = (0..n32)
            .filter(|&i| {
                tokens.get(i as usize).is_some_and(|t| {
                    t.attr & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN) != 0
                })
            })
            .collect();
        specials.sort_by_key(|&i| {
            std::cmp::Reverse(tokens.get(i as usize).map_or(0, |t| t.text.len()))
        });

        // llama.cpp's per-model strip attributes (not stored in GGUF): special tokens of
        // Phi-3 eat the whitespace after them; Jina/Nomic/ModernBERT masks the one before.
        let model_name = g.get_str("general.name").unwrap_or("").to_lowercase();
        let pre_name = g.get_str("tokenizer.ggml.pre").unwrap_or("");
        let arch = g.architecture().unwrap_or("");
        let set_attr = |tokens: &mut Vec<Token>, text: &str, attr: u32, on: bool| {
            if let Some(t) = token_to_id
                .get(text)
                .and_then(|&i| tokens.get_mut(i as usize))
            {
                if on {
                    t.attr |= attr;
                } else {
                    t.attr &= !attr;
                }
            }
        };
        if ["jina-v2-de", "jina-v2-es", "jina-v2-code"]
            .iter()
            .any(|p| pre_name.contains(p))
            || ["nomic-bert-moe", "jina-bert-v3"]
                .iter()
                .any(|a| arch.contains(a))
        {
            set_attr(&mut tokens, "<mask>", ATTR_LSTRIP, true);
        } else if model_name.contains("phi-3") || model_name.contains("phi3") {
            for &id in &specials {
                if let Some(t) = tokens.get_mut(id as usize) {
                    t.attr |= ATTR_RSTRIP;
                }
            }
            set_attr(&mut tokens, "</s>", ATTR_RSTRIP, true);
            for text in ["<unk>", "<s>", "<|endoftext|>"] {
                set_attr(&mut tokens, text, ATTR_RSTRIP, false);
            }
        } else if model_name.contains("modern-bert") {
            set_attr(&mut tokens, "[MASK]", ATTR_LSTRIP, true);
        }

        let mut byte_tokens = [None; 256];
        if kind == TokenizerKind::Spm {
            for (b, slot) in byte_tokens.iter_mut().enumerate() {
                let hex = format!("<0x{b:02X}>");
                *slot = token_to_id.get(&hex).copied().or_else(|| {
                    let c = char::from(b as u8);
                    // A one-byte std::string in llama.cpp; only ASCII is a valid key here.
                    c.is_ascii()
                        .then(|| token_to_id.get(c.encode_utf8(&mut [0; 4]) as &str).copied())
                        .flatten()
                });
            }
        }

        let mut t = Tokenizer {
            kind,
            tokens,
            pieces: Vec::new(),
            token_to_id,
            merges,
            specials,
            byte_tokens,
            bos,
            eos,
            eot,
            unk,
            eog,
            add_bos,
            add_eos,
            add_space_prefix,
            ignore_merges,
            clean_spaces,
        };
        t.pieces = (0..n32).map(|id| t.make_piece(id)).collect();
        Ok(t)
    }

    /// llama.cpp's `token_to_piece(id, special = true)`, before the cache.
    fn make_piece(&self, id: u32) -> Vec<u8> {
        let Some(tok) = self.tokens.get(id as usize) else {
            return Vec::new();
        };
        if tok.attr & (ATTR_UNKNOWN | ATTR_CONTROL | ATTR_USER_DEFINED) != 0 {
            return tok.text.as_bytes().to_vec();
        }
        if tok.attr & ATTR_NORMAL != 0 {
            return match self.kind {
                TokenizerKind::Spm => tok.text.replace('\u{2581}', " ").into_bytes(),
                TokenizerKind::Bpe(_) => {
                    let mut out = Vec::with_capacity(tok.text.len());
                    for c in tok.text.chars() {
                        match unicode::char_to_byte(c) {
                            Some(b) => out.push(b),
                            None => {
                                // llama.cpp's marker for a character outside the byte map.
                                out.extend_from_slice(b"[UNK_BYTE_0x");
                                for b in c.encode_utf8(&mut [0; 4]).bytes() {
                                    out.extend_from_slice(format!("{b:02x}").as_bytes());
                                }
                                out.extend_from_slice(tok.text.as_bytes());
                                out.push(b']');
                            }
                        }
                    }
                    out
                }
            };
        }
        if tok.attr & ATTR_BYTE != 0 {
            return vec![hex_byte(&tok.text)];
        }
        Vec::new()
    }

    /// The algorithm (and pre-tokenizer) of this vocabulary.
    pub fn kind(&self) -> TokenizerKind {
        self.kind
    }

    /// Number of tokens in the vocabulary.
    pub fn n_vocab(&self) -> usize {
        self.tokens.len()
    }

    /// Beginning-of-sequence token.
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    /// End-of-sequence token.
    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    /// End-of-turn token (`<|eot_id|>`, `<|im_end|>`, ...), from the metadata or by text.
    pub fn eot(&self) -> Option<u32> {
        self.eot
    }

    /// Unknown-token id.
    pub fn unk(&self) -> Option<u32> {
        self.unk
    }

    /// Whether `encode(.., add_special = true, ..)` prepends BOS.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// Whether `encode(.., add_special = true, ..)` appends EOS.
    pub fn add_eos(&self) -> bool {
        self.add_eos
    }

    /// Whether generating `id` ends the generation (EOS, EOT, EOM and llama.cpp's list).
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.contains(&id)
    }

    /// Every end-of-generation id, ascending.
    pub fn eog_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.eog.iter().copied()
    }

    /// Whether `id` is a control token (rendered only with `special`).
    pub fn is_control(&self, id: u32) -> bool {
        self.tokens
            .get(id as usize)
            .is_some_and(|t| t.attr & ATTR_CONTROL != 0)
    }

    /// The token's text as stored in the vocabulary ("" for ids outside it).
    pub fn token_text(&self, id: u32) -> &str {
        self.tokens.get(id as usize).map_or("", |t| t.text.as_str())
    }

    /// The id of the token whose text is exactly `text`.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.token_to_id.get(text).copied()
    }

    /// The bytes of one token as llama.cpp's `token_to_piece(id, lstrip = 0, special)`:
    /// control and unknown tokens are empty unless `special`; empty for ids outside the
    /// vocabulary. Pieces may hold partial UTF-8 sequences.
    pub fn piece(&self, id: u32, special: bool) -> &[u8] {
        let Some(tok) = self.tokens.get(id as usize) else {
            return &[];
        };
        if !special && tok.attr & (ATTR_UNKNOWN | ATTR_CONTROL) != 0 {
            return &[];
        }
        self.pieces.get(id as usize).map_or(&[], Vec::as_slice)
    }

    /// Text of `ids`: their pieces ([`Tokenizer::piece`]) concatenated and decoded as lossy
    /// UTF-8. This is what llama.cpp's server streams for a completion and what
    /// llama-cpp-python's `detokenize` returns: a leading space of the first token is
    /// kept (a completion's first word starts with it).
    pub fn decode(&self, ids: &[u32], special: bool) -> String {
        let mut out: Vec<u8> = Vec::new();
        for &id in ids {
            out.extend_from_slice(self.piece(id, special));
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Text of `ids` as llama.cpp's C `llama_detokenize(remove_special = false,
    /// unparse_special = special)`: SPM drops the space the tokenizer prefixed to the
    /// first token, and vocabularies with `clean_spaces` (Llama-3, GPT-2) join " ," " 's"
    /// and the like. It inverts [`Tokenizer::encode`] for most prompts.
    pub fn detokenize(&self, ids: &[u32], special: bool) -> String {
        let mut out: Vec<u8> = Vec::new();
        let mut remove_space = self.add_space_prefix;
        for &id in ids {
            let mut p = self.piece(id, special);
            if remove_space && let Some(rest) = p.strip_prefix(b" ") {
                p = rest;
            }
            remove_space = false;
            out.extend_from_slice(p);
        }
        if self.clean_spaces {
            out = clean_spaces(&out);
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Token ids of `text` as llama.cpp's `llama_tokenize(text, add_special,
    /// parse_special)`: with `add_special`, BOS/EOS as the vocabulary asks; with
    /// `parse_special`, control-token texts in `text` become those tokens.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let frags = if text.is_empty() {
            Vec::new()
        } else {
            self.partition(text, parse_special)
        };
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_special
            && self.add_bos
            && let Some(b) = self.bos
        {
            out.push(b);
        }
        match self.kind {
            TokenizerKind::Spm => {
                let mut prev_special = true;
                let mut buf = String::new();
                for f in &frags {
                    match *f {
                        Frag::Raw(s, e) => {
                            buf.clear();
                            if self.add_space_prefix && prev_special {
                                buf.push('\u{2581}');
                            }
                            for c in text.get(s..e).unwrap_or("").chars() {
                                buf.push(if c == ' ' { '\u{2581}' } else { c });
                            }
                            self.spm(&buf, &mut out);
                            prev_special = false;
                        }
                        Frag::Token(id) => {
                            out.push(id);
                            prev_special = true;
                        }
                    }
                }
            }
            TokenizerKind::Bpe(pre) => {
                let mut sess = BpeSession::default();
                for f in &frags {
                    match *f {
                        Frag::Raw(s, e) => {
                            let frag = text.get(s..e).unwrap_or("");
                            for w in unicode::split(pre, frag) {
                                self.bpe_word(frag.get(w).unwrap_or(""), &mut sess, &mut out);
                            }
                        }
                        Frag::Token(id) => out.push(id),
                    }
                }
            }
        }
        if add_special
            && self.add_eos
            && let Some(e) = self.eos
        {
            out.push(e);
        }
        out
    }

    /// Cuts special-token texts out of `text`, longest tokens first.
    fn partition(&self, text: &str, parse_special: bool) -> Vec<Frag> {
        let mut frags = vec![Frag::Raw(0, text.len())];
        // Only tokens whose bytes and adjacent byte pairs all occur in the text can match:
        // vocabularies with thousands of special tokens skip almost all of them cheaply.
        let bytes = text.as_bytes();
        let mut present = [false; 256];
        let mut pairs = vec![0u64; 1024];
        for (i, &b) in bytes.iter().enumerate() {
            present[usize::from(b)] = true;
            if let Some(&n) = bytes.get(i + 1) {
                let k = usize::from(b) << 8 | usize::from(n);
                if let Some(w) = pairs.get_mut(k >> 6) {
                    *w |= 1 << (k & 63);
                }
            }
        }
        let may_occur = |pat: &[u8]| {
            pat.iter().all(|&b| present[usize::from(b)])
                && pat.windows(2).all(|w| {
                    let k = usize::from(w[0]) << 8 | usize::from(w[1]);
                    pairs.get(k >> 6).is_some_and(|x| x & (1 << (k & 63)) != 0)
                })
        };
        for &id in &self.specials {
            let Some(tok) = self.tokens.get(id as usize) else {
                continue;
            };
            if !parse_special && tok.attr & (ATTR_CONTROL | ATTR_UNKNOWN) != 0 {
                continue;
            }
            let pat = tok.text.as_str();
            if pat.is_empty() || pat.len() > text.len() || !may_occur(pat.as_bytes()) {
                continue;
            }
            if !text.contains(pat) {
                continue;
            }
            let mut next = Vec::with_capacity(frags.len() + 2);
            for f in frags {
                let Frag::Raw(mut s, e) = f else {
                    next.push(f);
                    continue;
                };
                while let Some(i) = text.get(s..e).and_then(|t| t.find(pat)) {
                    let mut left_end = s + i;
                    if tok.attr & ATTR_LSTRIP != 0 {
                        while left_end > s
                            && bytes.get(left_end - 1).is_some_and(|b| is_c_space(*b))
                        {
                            left_end -= 1;
                        }
                    }
                    if left_end > s {
                        next.push(Frag::Raw(s, left_end));
                    }
                    next.push(Frag::Token(id));
                    s += i + pat.len();
                    if tok.attr & ATTR_RSTRIP != 0 {
                        while s < e && bytes.get(s).is_some_and(|b| is_c_space(*b)) {
                            s += 1;
                        }
                    }
                }
                if s < e {
                    next.push(Frag::Raw(s, e));
                }
            }
            frags = next;
        }
        frags
    }

    /// SPM merges over the (escaped) fragment `text`.
    fn spm(&self, text: &str, out: &mut Vec<u32>) {
        let mut syms: Vec<Sym> = Vec::with_capacity(text.len());
        for (i, (start, c)) in text.char_indices().enumerate() {
            syms.push(Sym {
                start,
                n: c.len_utf8(),
                prev: i.checked_sub(1),
                next: None,
            });
            if let Some(p) = i.checked_sub(1).and_then(|p| syms.get_mut(p)) {
                p.next = Some(i);
            }
        }
        let mut heap = BinaryHeap::new();
        let push = |heap: &mut BinaryHeap<SpmBigram>, syms: &[Sym], l: usize, r: usize| {
            let (Some(a), Some(b)) = (syms.get(l), syms.get(r)) else {
                return;
            };
            let size = a.n + b.n;
            let Some(id) = text
                .get(a.start..a.start + size)
                .and_then(|t| self.token_to_id.get(t))
            else {
                return;
            };
            let score = self.tokens.get(*id as usize).map_or(0.0, |t| t.score);
            heap.push(SpmBigram {
                score,
                left: l,
                right: r,
                size,
            });
        };
        for i in 1..syms.len() {
            push(&mut heap, &syms, i - 1, i);
        }
        while let Some(bg) = heap.pop() {
            let (Some(l), Some(r)) = (syms.get(bg.left).copied(), syms.get(bg.right).copied())
            else {
                continue;
            };
            if l.n == 0 || r.n == 0 || l.n + r.n != bg.size {
                continue;
            }
            if let Some(s) = syms.get_mut(bg.left) {
                s.n += r.n;
                s.next = r.next;
            }
            if let Some(s) = syms.get_mut(bg.right) {
                s.n = 0;
            }
            if let Some(s) = r.next.and_then(|nx| syms.get_mut(nx)) {
                s.prev = Some(bg.left);
            }
            if let Some(p) = l.prev {
                push(&mut heap, &syms, p, bg.left);
            }
            if let Some(nx) = r.next {
                push(&mut heap, &syms, bg.left, nx);
            }
        }
        let mut cur = (!syms.is_empty()).then_some(0);
        while let Some(i) = cur {
            let Some(s) = syms.get(i) else { break };
            let piece = text.get(s.start..s.start + s.n).unwrap_or("");
            match self.token_to_id.get(piece) {
                Some(id) => out.push(*id),
                None => {
                    for b in piece.bytes() {
                        if let Some(id) = self.byte_tokens[usize::from(b)].or(self.unk) {
                            out.push(id);
                        }
                    }
                }
            }
            cur = s.next;
        }
    }

    /// BPE merges over one pre-tokenized word.
    fn bpe_word(&self, word: &str, sess: &mut BpeSession, out: &mut Vec<u32>) {
        let enc = &mut sess.enc;
        enc.clear();
        unicode::byte_encode(word.as_bytes(), enc);
        if self.ignore_merges
            && let Some(id) = self.token_to_id.get(enc.as_str())
        {
            out.push(*id);
            return;
        }
        let syms = &mut sess.syms;
        syms.clear();
        for (i, (start, c)) in enc.char_indices().enumerate() {
            syms.push(Sym {
                start,
                n: c.len_utf8(),
                prev: i.checked_sub(1),
                next: None,
            });
            if let Some(p) = i.checked_sub(1).and_then(|p| syms.get_mut(p)) {
                p.next = Some(i);
            }
        }
        let heap = &mut sess.heap;
        heap.clear();
        let key = &mut sess.key;
        let enc = enc.as_str();
        let mut push = |heap: &mut BinaryHeap<BpeBigram>, syms: &[Sym], l: usize, r: usize| {
            let (Some(a), Some(b)) = (syms.get(l), syms.get(r)) else {
                return;
            };
            let (Some(lt), Some(rt)) = (
                enc.get(a.start..a.start + a.n),
                enc.get(b.start..b.start + b.n),
            ) else {
                return;
            };
            key.clear();
            key.push_str(lt);
            key.push(' ');
            key.push_str(rt);
            // The stored key splits at its first space after byte 0: a left part with a
            // later space cannot be the left side of any merge.
            if lt.as_bytes().get(1..).is_some_and(|s| s.contains(&b' ')) {
                return;
            }
            if let Some(&rank) = self.merges.get(key.as_str()) {
                heap.push(BpeBigram {
                    rank,
                    left: l,
                    right: r,
                    size: a.n + b.n,
                });
            }
        };
        for i in 1..syms.len() {
            push(heap, syms, i - 1, i);
        }
        while let Some(bg) = heap.pop() {
            let (Some(l), Some(r)) = (syms.get(bg.left).copied(), syms.get(bg.right).copied())
            else {
                continue;
            };
            if l.n == 0 || r.n == 0 || l.n + r.n != bg.size {
                continue;
            }
            if let Some(s) = syms.get_mut(bg.left) {
                s.n += r.n;
                s.next = r.next;
            }
            if let Some(s) = syms.get_mut(bg.right) {
                s.n = 0;
            }
            if let Some(s) = r.next.and_then(|nx| syms.get_mut(nx)) {
                s.prev = Some(bg.left);
            }
            if let Some(p) = l.prev {
                push(heap, syms, p, bg.left);
            }
            if let Some(nx) = r.next {
                push(heap, syms, bg.left, nx);
            }
        }
        for s in syms.iter().filter(|s| s.n > 0) {
            let piece = enc.get(s.start..s.start + s.n).unwrap_or("");
            match self.token_to_id.get(piece) {
                Some(id) => out.push(*id),
                None => {
                    // llama.cpp looks each byte up as a one-byte token text.
                    for b in piece.bytes().filter(u8::is_ascii) {
                        if let Some(id) = self
                            .token_to_id
                            .get(char::from(b).encode_utf8(&mut [0; 4]) as &str)
                        {
                            out.push(*id);
                        }
                    }
                }
            }
        }
    }
}

/// C's `isspace` in the "C" locale.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

/// llama.cpp's `clean_spaces` pass of `llama_detokenize` (on bytes).
fn clean_spaces(t: &[u8]) -> Vec<u8> {
    // " ?", " !", " .", " ," lose the space.
    let mut a: Vec<u8> = Vec::with_capacity(t.len());
    for (i, &x) in t.iter().enumerate() {
        if i > 0 && t.get(i - 1) == Some(&b' ') && matches!(x, b'?' | b'!' | b'.' | b',') {
            a.pop();
        }
        a.push(x);
    }
    // " ' " becomes "'" (the following space is zeroed in place, as llama.cpp does, so
    // it no longer counts as the space before the next character).
    let mut b: Vec<u8> = Vec::with_capacity(a.len());
    let mut i = 0;
    while let Some(&x) = a.get(i) {
        if i > 0 && x == b'\'' && a.get(i + 1) == Some(&b' ') && a.get(i - 1) == Some(&b' ') {
            b.pop();
            b.push(x);
            if let Some(z) = a.get_mut(i + 1) {
                *z = 0;
            }
            i += 2;
            continue;
        }
        b.push(x);
        i += 1;
    }
    // " 's", " 'm", " 're", " 've" lose the space.
    let mut c: Vec<u8> = Vec::with_capacity(b.len());
    for (i, &x) in b.iter().enumerate() {
        if i > 0 && b.get(i - 1) == Some(&b' ') && x == b'\'' {
            match (b.get(i + 1), b.get(i + 2)) {
                (Some(b's' | b'm'), _) => {
                    c.pop();
                }
                (Some(b'r'), Some(b'e')) | (Some(b'v'), Some(b'e')) => {
                    c.pop();
                }
                _ => {}
            }
        }
        c.push(x);
    }
    c
}

#[derive(Debug, Clone, Copy)]
enum Frag {
    Raw(usize, usize),
    Token(u32),
}

#[derive(Debug, Clone, Copy)]
struct Sym {
    start: usize,
    n: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// Highest score first, then leftmost.
#[derive(Debug)]
struct SpmBigram {
    score: f32,
    left: usize,
    right: usize,
    size: usize,
}

impl Ord for SpmBigram {
    fn cmp(&self, o: &Self) -> Ordering {
        self.score
            .partial_cmp(&o.score)
            .unwrap_or(Ordering::Equal)
            .then_with(|| o.left.cmp(&self.left))
    }
}
impl PartialOrd for SpmBigram {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl PartialEq for SpmBigram {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for SpmBigram {}

/// Lowest rank first, then leftmost.
#[derive(Debug, PartialEq, Eq)]
struct BpeBigram {
    rank: u32,
    left: usize,
    right: usize,
    size: usize,
}

impl Ord for BpeBigram {
    fn cmp(&self, o: &Self) -> Ordering {
        o.rank.cmp(&self.rank).then_with(|| o.left.cmp(&self.left))
    }
}
impl PartialOrd for BpeBigram {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

/// Buffers reused across the words of one `encode` call.
#[derive(Default)]
struct BpeSession {
    enc: String,
    key: String,
    syms: Vec<Sym>,
    heap: BinaryHeap<BpeBigram>,
}
