//! A minimal GGUF writer for the tests: the files are built here, byte for byte, so the
//! reader is checked against the format rather than against itself.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

/// A metadata value to write (type number and payload).
pub enum W {
    U8(u8),
    I32(i32),
    U32(u32),
    U64(u64),
    F32(f32),
    Bool(bool),
    Str(String),
    /// Element type number and encoded elements.
    Arr(u32, Vec<W>),
    /// Raw type number with raw payload bytes (for invalid files).
    Raw(u32, Vec<u8>),
}

impl W {
    pub fn type_id(&self) -> u32 {
        match self {
            W::U8(_) => 0,
            W::U32(_) => 4,
            W::I32(_) => 5,
            W::F32(_) => 6,
            W::Bool(_) => 7,
            W::Str(_) => 8,
            W::Arr(..) => 9,
            W::U64(_) => 10,
            W::Raw(t, _) => *t,
        }
    }

    fn payload(&self, out: &mut Vec<u8>) {
        match self {
            W::U8(v) => out.push(*v),
            W::U32(v) => out.extend(v.to_le_bytes()),
            W::I32(v) => out.extend(v.to_le_bytes()),
            W::F32(v) => out.extend(v.to_le_bytes()),
            W::Bool(v) => out.push(u8::from(*v)),
            W::U64(v) => out.extend(v.to_le_bytes()),
            W::Str(s) => put_str(out, s),
            W::Arr(t, items) => {
                out.extend(t.to_le_bytes());
                out.extend((items.len() as u64).to_le_bytes());
                for i in items {
                    i.payload(out);
                }
            }
            W::Raw(_, b) => out.extend(b),
        }
    }
}

pub fn s(v: &str) -> W {
    W::Str(v.to_owned())
}

pub fn strs<'a>(v: impl IntoIterator<Item = &'a str>) -> W {
    W::Arr(8, v.into_iter().map(s).collect())
}

pub fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

/// A tensor to write: name, dims, ggml type, relative offset (None = next aligned slot).
pub struct T {
    pub name: String,
    pub dims: Vec<u64>,
    pub ty: u32,
    pub offset: Option<u64>,
    /// Data bytes written for it (the writer pads between tensors).
    pub data_len: u64,
}

pub fn tensor(name: &str, dims: &[u64], ty: u32, data_len: u64) -> T {
    T {
        name: name.into(),
        dims: dims.to_vec(),
        ty,
        offset: None,
        data_len,
    }
}

/// Writes a GGUF v3 file with the given metadata and tensors (alignment 32 unless
/// `general.alignment` says otherwise... the tests keep 32).
pub fn write(kv: Vec<(&str, W)>, tensors: Vec<T>) -> Vec<u8> {
    write_version(3, kv, tensors)
}

pub fn write_version(version: u32, kv: Vec<(&str, W)>, tensors: Vec<T>) -> Vec<u8> {
    let align = 32u64;
    let mut out = b"GGUF".to_vec();
    out.extend(version.to_le_bytes());
    out.extend((tensors.len() as u64).to_le_bytes());
    out.extend((kv.len() as u64).to_le_bytes());
    for (k, v) in &kv {
        put_str(&mut out, k);
        out.extend(v.type_id().to_le_bytes());
        v.payload(&mut out);
    }
    let mut next = 0u64;
    let mut layout = Vec::new();
    for t in &tensors {
        put_str(&mut out, &t.name);
        out.extend((t.dims.len() as u32).to_le_bytes());
        for d in &t.dims {
            out.extend(d.to_le_bytes());
        }
        out.extend(t.ty.to_le_bytes());
        let off = t.offset.unwrap_or(next);
        out.extend(off.to_le_bytes());
        layout.push((off, t.data_len));
        next = off
            .saturating_add(t.data_len)
            .checked_next_multiple_of(align)
            .unwrap_or(u64::MAX);
    }
    let data_start = (out.len() as u64).next_multiple_of(align);
    out.resize(data_start as usize, 0);
    let end = layout
        .iter()
        .filter_map(|(o, l)| data_start.checked_add(*o)?.checked_add(*l))
        .filter(|end| *end < 1 << 30)
        .max()
        .unwrap_or(data_start);
    out.resize(end as usize, 0xAB);
    out
}

/// llama.cpp's vocab-only GGUF `name` (`llama-spm`, `qwen2`, ...) from the test-support
/// locator; its `.inp`/`.out` tokenizer vectors sit beside it.
pub fn vocab_path(name: &str) -> std::path::PathBuf {
    attesta_test_support::llm::vocab_gguf(name)
}

/// Reads and parses `ggml-vocab-{name}.gguf`.
pub fn vocab(name: &str) -> attesta_gguf::Gguf {
    let path = vocab_path(name);
    let f = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let len = f.metadata().unwrap().len();
    attesta_gguf::Gguf::read(f, len, &attesta_gguf::Limits::default())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
