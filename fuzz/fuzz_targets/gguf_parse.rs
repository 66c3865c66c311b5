//! The GGUF reader on arbitrary bytes: it must return an error or a header whose every
//! tensor lies inside the input, never panic or allocate beyond the limits; a parsed
//! header is then fed to the tokenizer and chat-template loaders, which must not panic.
#![no_main]

use std::io::Cursor;

use attesta_gguf::{ChatMessage, ChatTemplate, Gguf, Limits, Tokenizer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_metadata_bytes: 4 << 20,
        ..Limits::default()
    };
    let len = data.len() as u64;
    if let Ok(g) = Gguf::read(Cursor::new(data), len, &limits) {
        for t in &g.tensors {
            assert!(t.offset >= g.data_offset && t.offset + t.size <= len);
        }
        let _ = (g.quantisation(), g.parameter_count(), g.arch_u32("context_length"));
        if let Ok(t) = Tokenizer::from_gguf(&g) {
            let ids = t.encode("Hello <s> wörld 123 \u{1F999}\n\t", true, true);
            let _ = t.decode(&ids, true);
            if let Ok(c) = ChatTemplate::from_gguf(&g, &t) {
                let _ = c.render(&[ChatMessage::new("user", "hi")], true);
            }
        }
    }
});
