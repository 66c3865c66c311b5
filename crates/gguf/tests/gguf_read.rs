//! The GGUF reader on files written here: a valid file reads back exactly, and hostile
//! files (huge lengths and counts, tensors outside the file, overflowing shapes, every
//! truncation of a valid file) are refused with the typed error, never a panic or a big
//! allocation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::io::Cursor;

use attesta_gguf::{GgmlType, Gguf, GgufError, Limits, Value};
use common::*;

fn read(bytes: &[u8]) -> Result<Gguf, GgufError> {
    Gguf::read(Cursor::new(bytes), bytes.len() as u64, &Limits::default())
}

fn valid() -> Vec<u8> {
    write(
        vec![
            ("general.architecture", s("llama")),
            ("general.name", s("tiny")),
            ("llama.context_length", W::U32(2048)),
            ("llama.block_count", W::U64(2)),
            ("llama.rope.freq_base", W::F32(10000.0)),
            ("tokenizer.ggml.add_bos_token", W::Bool(true)),
            ("tokenizer.ggml.tokens", strs(["<unk>", "<s>", "</s>", "a"])),
            (
                "tokenizer.ggml.token_type",
                W::Arr(5, vec![W::I32(2), W::I32(3), W::I32(3), W::I32(1)]),
            ),
            ("general.file_type", W::U32(15)),
            (
                "nested",
                W::Arr(9, vec![W::Arr(0, vec![W::U8(1), W::U8(2)])]),
            ),
        ],
        vec![
            tensor("token_embd.weight", &[256, 4], 12, 4 * 144),
            tensor("blk.0.attn_q.weight", &[256, 256], 12, 256 * 144),
            tensor("output_norm.weight", &[256], 0, 1024),
            tensor("blk.0.ffn_down.weight", &[64, 8], 8, 8 * 2 * 34),
            tensor("blk.0.attn_k.weight", &[32, 2], 1, 128),
        ],
    )
}

#[test]
fn reads_a_valid_file() {
    let bytes = valid();
    let g = read(&bytes).unwrap();
    assert_eq!(g.version, 3);
    assert_eq!(g.architecture(), Some("llama"));
    assert_eq!(g.arch_u32("context_length"), Some(2048));
    assert_eq!(g.arch_u32("block_count"), Some(2));
    assert_eq!(g.get_f32("llama.rope.freq_base"), Some(10000.0));
    assert_eq!(g.get_bool("tokenizer.ggml.add_bos_token"), Some(true));
    assert_eq!(g.get_str("general.name"), Some("tiny"));
    assert_eq!(g.get_u32("general.name"), None);
    assert_eq!(
        g.get("tokenizer.ggml.tokens")
            .and_then(Value::as_array)
            .map(<[_]>::len),
        Some(4)
    );
    assert_eq!(
        g.get("nested"),
        Some(&Value::Array(vec![Value::Array(vec![
            Value::U8(1),
            Value::U8(2)
        ])]))
    );
    assert_eq!(g.tensors.len(), 5);
    assert!(g.data_offset.is_multiple_of(32));
    let q = g.tensor("blk.0.attn_q.weight").unwrap();
    assert_eq!(q.ggml_type, GgmlType::Q4K);
    assert_eq!(q.size, 256 * 144);
    assert_eq!(q.dims, vec![256, 256]);
    assert!(q.offset >= g.data_offset && q.offset.is_multiple_of(32));
    let first = &g.tensors[0];
    assert_eq!(first.offset, g.data_offset);
    let last = g.tensors.last().unwrap();
    assert_eq!(last.offset + last.size, bytes.len() as u64);
    assert_eq!(g.quantisation(), "Q4_K");
    assert_eq!(
        g.parameter_count(),
        256 * 4 + 256 * 256 + 256 + 64 * 8 + 32 * 2
    );
    // Version 2 has the same layout.
    let mut v2 = bytes.clone();
    v2[4] = 2;
    assert_eq!(read(&v2).unwrap().version, 2);
}

#[test]
fn ggml_type_table_is_consistent() {
    for t in GgmlType::ALL {
        assert_eq!(GgmlType::from_id(t.id()), Some(t));
        assert!(t.block_bytes() > 0 && t.block_size() > 0);
    }
    assert_eq!(GgmlType::from_id(4), None);
    assert_eq!(GgmlType::Q8_0.tensor_bytes(&[64, 3]), Some(2 * 34 * 3));
    assert_eq!(GgmlType::Q8_0.tensor_bytes(&[48]), None);
    assert_eq!(GgmlType::F32.tensor_bytes(&[u64::MAX, 2]), None);
}

#[test]
fn every_truncation_is_refused() {
    let bytes = valid();
    for n in 0..bytes.len() {
        match read(&bytes[..n]) {
            Err(GgufError::Truncated { .. } | GgufError::OutOfFile { .. }) => {}
            other => panic!("prefix of {n} bytes: {other:?}"),
        }
    }
}

#[test]
fn bad_magic_and_version() {
    let mut bytes = valid();
    bytes[0] = b'X';
    assert!(matches!(read(&bytes), Err(GgufError::BadMagic { .. })));
    let mut bytes = valid();
    bytes[4] = 1;
    assert!(matches!(
        read(&bytes),
        Err(GgufError::UnsupportedVersion(1))
    ));
    bytes[4] = 4;
    assert!(matches!(
        read(&bytes),
        Err(GgufError::UnsupportedVersion(4))
    ));
}

/// A header claiming `n_kv` pairs followed by `rest`.
fn header(n_tensors: u64, n_kv: u64, rest: &[u8]) -> Vec<u8> {
    let mut out = b"GGUF".to_vec();
    out.extend(3u32.to_le_bytes());
    out.extend(n_tensors.to_le_bytes());
    out.extend(n_kv.to_le_bytes());
    out.extend(rest);
    out
}

#[test]
fn huge_string_length() {
    let mut rest = Vec::new();
    rest.extend(u64::MAX.to_le_bytes());
    let err = read(&header(0, 1, &rest)).unwrap_err();
    assert!(
        matches!(
            err,
            GgufError::Limit {
                what: "string length",
                value: u64::MAX,
                ..
            }
        ),
        "{err:?}"
    );
    // Within the limit but beyond the file.
    let mut rest = Vec::new();
    rest.extend(1000u64.to_le_bytes());
    rest.extend(b"abc");
    let err = read(&header(0, 1, &rest)).unwrap_err();
    assert!(
        matches!(err, GgufError::Truncated { offset: 32, .. }),
        "{err:?}"
    );
    // A value string: the key is named in the error.
    let mut rest = Vec::new();
    put_str(&mut rest, "general.name");
    rest.extend(8u32.to_le_bytes());
    rest.extend((1u64 << 40).to_le_bytes());
    let err = read(&header(0, 1, &rest)).unwrap_err();
    match err {
        GgufError::Limit { at, .. } => assert_eq!(at, "general.name"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn huge_array_count() {
    for (elem, count) in [(0u32, u64::MAX), (8, 1 << 23), (0, 1 << 20), (9, 1 << 20)] {
        let mut rest = Vec::new();
        put_str(&mut rest, "tokenizer.ggml.tokens");
        rest.extend(9u32.to_le_bytes());
        rest.extend(elem.to_le_bytes());
        rest.extend(count.to_le_bytes());
        rest.extend([0u8; 64]);
        let err = read(&header(0, 1, &rest)).unwrap_err();
        assert!(
            matches!(err, GgufError::Limit { .. } | GgufError::Truncated { .. }),
            "{elem} x {count}: {err:?}"
        );
    }
    // A count the file can hold but the memory budget cannot (1 byte per u8 on disk,
    // a full Value in memory).
    let limits = Limits {
        max_metadata_bytes: 1 << 16,
        ..Limits::default()
    };
    let bytes = write(
        vec![("big", W::Arr(0, (0..10_000).map(|_| W::U8(0)).collect()))],
        vec![],
    );
    let err = Gguf::read(Cursor::new(&bytes), bytes.len() as u64, &limits).unwrap_err();
    assert!(
        matches!(
            err,
            GgufError::Limit {
                what: "metadata bytes",
                ..
            }
        ),
        "{err:?}"
    );
    // Too many key/value pairs, too many tensors.
    assert!(matches!(
        read(&header(0, u64::MAX, &[])),
        Err(GgufError::Limit {
            what: "metadata count",
            ..
        })
    ));
    assert!(matches!(
        read(&header(u64::MAX, 0, &[])),
        Err(GgufError::Limit {
            what: "tensor count",
            ..
        })
    ));
    assert!(matches!(
        read(&header(1000, 0, &[0; 100])),
        Err(GgufError::Truncated { .. })
    ));
    // Arrays nested deeper than the limit.
    let mut v = W::U8(0);
    for _ in 0..8 {
        v = W::Arr(v.type_id(), vec![v]);
    }
    let bytes = write(vec![("deep", v)], vec![]);
    assert!(matches!(
        read(&bytes),
        Err(GgufError::Limit {
            what: "array nesting",
            ..
        })
    ));
}

#[test]
fn unknown_value_type_and_bad_values() {
    let bytes = write(vec![("x", W::Raw(13, vec![0; 8]))], vec![]);
    match read(&bytes).unwrap_err() {
        GgufError::UnknownValueType {
            key, type_id: 13, ..
        } => assert_eq!(key, "x"),
        other => panic!("{other:?}"),
    }
    let bytes = write(vec![("x", W::Arr(77, vec![]))], vec![]);
    assert!(matches!(
        read(&bytes),
        Err(GgufError::UnknownValueType { type_id: 77, .. })
    ));
    let bytes = write(vec![("b", W::Raw(7, vec![2]))], vec![]);
    assert!(matches!(
        read(&bytes),
        Err(GgufError::BadBool { byte: 2, .. })
    ));
    let bytes = write(
        vec![(
            "s",
            W::Raw(8, [2u64.to_le_bytes().as_slice(), &[0xff, 0xfe]].concat()),
        )],
        vec![],
    );
    assert!(matches!(read(&bytes), Err(GgufError::Utf8 { .. })));
    let bytes = write(vec![("k", W::U8(1)), ("k", W::U8(2))], vec![]);
    assert!(matches!(read(&bytes), Err(GgufError::DuplicateKey(k)) if k == "k"));
    let bytes = write(vec![("general.alignment", W::U32(48))], vec![]);
    assert!(matches!(read(&bytes), Err(GgufError::BadAlignment(48))));
}

#[test]
fn tensor_out_of_file() {
    // 64×64 f32 needs 16 KiB; only 100 bytes follow.
    let bytes = write(vec![], vec![tensor("w", &[64, 64], 0, 100)]);
    match read(&bytes).unwrap_err() {
        GgufError::OutOfFile {
            tensor,
            end,
            file_len,
            ..
        } => {
            assert_eq!(tensor, "w");
            assert!(end > file_len);
        }
        other => panic!("{other:?}"),
    }
    // An offset near u64::MAX must not wrap around.
    let mut t = tensor("w", &[8], 0, 32);
    t.offset = Some(u64::MAX - 31);
    let bytes = write(vec![], vec![t]);
    assert!(matches!(read(&bytes), Err(GgufError::OutOfFile { .. })));
}

#[test]
fn dims_overflow_and_bad_shapes() {
    for dims in [
        vec![u64::MAX, u64::MAX],
        vec![1 << 32, 1 << 32, 1 << 32],
        vec![u64::MAX],
    ] {
        let bytes = write(vec![], vec![tensor("w", &dims, 0, 32)]);
        let err = read(&bytes).unwrap_err();
        assert!(
            matches!(
                err,
                GgufError::BadShape { .. } | GgufError::OutOfFile { .. }
            ),
            "{dims:?}: {err:?}"
        );
    }
    // Q8_0 rows must be whole blocks of 32.
    let bytes = write(vec![], vec![tensor("w", &[33, 1], 8, 64)]);
    assert!(matches!(read(&bytes), Err(GgufError::BadShape { .. })));
    // Too many dims, unknown type, no dims.
    let bytes = write(vec![], vec![tensor("w", &[1, 1, 1, 1, 1], 0, 4)]);
    assert!(matches!(
        read(&bytes),
        Err(GgufError::Limit {
            what: "tensor dimensions",
            ..
        })
    ));
    let bytes = write(vec![], vec![tensor("w", &[32], 99, 32)]);
    assert!(matches!(
        read(&bytes),
        Err(GgufError::UnknownTensorType { type_id: 99, .. })
    ));
    let bytes = write(vec![], vec![tensor("w", &[], 0, 4)]);
    assert!(matches!(read(&bytes), Err(GgufError::BadShape { .. })));
    // Misaligned, overlapping, duplicate.
    let mut t = tensor("w", &[4], 0, 16);
    t.offset = Some(4);
    let bytes = write(vec![], vec![t]);
    assert!(matches!(read(&bytes), Err(GgufError::Misaligned { .. })));
    let mut b = tensor("b", &[16], 0, 64);
    b.offset = Some(32);
    let bytes = write(vec![], vec![tensor("a", &[16], 0, 64), b]);
    assert!(matches!(read(&bytes), Err(GgufError::Overlap(..))));
    let bytes = write(
        vec![],
        vec![tensor("a", &[8], 0, 32), tensor("a", &[8], 0, 32)],
    );
    assert!(matches!(read(&bytes), Err(GgufError::DuplicateTensor(_))));
}

#[test]
fn custom_alignment_is_honoured() {
    let bytes = write(vec![("general.alignment", W::U32(64))], vec![]);
    let g = read(&bytes).unwrap();
    assert!(g.data_offset.is_multiple_of(64));
}
