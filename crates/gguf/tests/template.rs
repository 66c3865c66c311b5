//! Chat templates: ChatML and Llama-3 style templates written here, the templates shipped
//! in the real Qwen2 and Phi-3 vocabularies, and hostile templates (endless loop, huge
//! output, raise_exception, syntax errors) stopped with typed errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::time::Instant;

use attesta_gguf::{
    ChatMessage, ChatTemplate, Gguf, Limits, TemplateError, TemplateLimits, Tokenizer,
};

const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

const LLAMA3: &str = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";

fn conv() -> Vec<ChatMessage> {
    vec![
        ChatMessage::new("system", "Be brief."),
        ChatMessage::new("user", "  Hi there!  "),
        ChatMessage::new("assistant", "Hello."),
        ChatMessage::new("user", "Grüß dich 🦙"),
    ]
}

#[test]
fn chatml() {
    let t = ChatTemplate::new(CHATML, "", "<|im_end|>").unwrap();
    assert_eq!(
        t.render(&conv(), true).unwrap(),
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n  Hi there!  <|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nGrüß dich 🦙<|im_end|>\n<|im_start|>assistant\n"
    );
    assert!(!t.render(&conv(), false).unwrap().ends_with("assistant\n"));
    assert_eq!(t.render(&[], false).unwrap(), "");
}

#[test]
fn llama3_style() {
    let t = ChatTemplate::new(LLAMA3, "<|begin_of_text|>", "<|eot_id|>").unwrap();
    let msgs = &conv()[1..2];
    assert_eq!(
        t.render(msgs, true).unwrap(),
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi there!<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    );
}

#[test]
fn templates_from_real_vocabularies() {
    let g = common::vocab("qwen2");
    let tok = Tokenizer::from_gguf(&g).unwrap();
    let t = ChatTemplate::from_gguf(&g, &tok).unwrap();
    let out = t.render(&[ChatMessage::new("user", "Hi")], true).unwrap();
    assert_eq!(
        out,
        "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
    // The rendered prompt tokenises with its markers as control tokens.
    let ids = tok.encode(&out, false, true);
    assert_eq!(ids.first(), tok.token_id("<|im_start|>").as_ref());

    let g = common::vocab("phi-3");
    let tok = Tokenizer::from_gguf(&g).unwrap();
    let t = ChatTemplate::from_gguf(&g, &tok).unwrap();
    assert_eq!(t.bos_token(), "<s>");
    let out = t.render(&[ChatMessage::new("user", "Hi")], true).unwrap();
    assert!(
        out.starts_with("<s><|user|>\nHi<|end|>\n<|assistant|>\n"),
        "{out:?}"
    );
}

#[test]
fn no_template_is_an_error() {
    let g = common::vocab("llama-spm");
    let tok = Tokenizer::from_gguf(&g).unwrap();
    assert!(matches!(
        ChatTemplate::from_gguf(&g, &tok),
        Err(TemplateError::Missing)
    ));
    // Also on a file written here with a tokenizer but no template.
    let bytes = common::write(
        vec![
            ("tokenizer.ggml.model", common::s("llama")),
            (
                "tokenizer.ggml.tokens",
                common::strs(["<unk>", "<s>", "</s>"]),
            ),
        ],
        vec![],
    );
    let g = Gguf::read(
        std::io::Cursor::new(&bytes),
        bytes.len() as u64,
        &Limits::default(),
    )
    .unwrap();
    let tok = Tokenizer::from_gguf(&g).unwrap();
    assert!(matches!(
        ChatTemplate::from_gguf(&g, &tok),
        Err(TemplateError::Missing)
    ));
}

#[test]
fn endless_loop_runs_out_of_fuel() {
    let src = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}";
    let t = ChatTemplate::new(src, "", "").unwrap();
    let start = Instant::now();
    assert!(matches!(
        t.render(&conv(), true),
        Err(TemplateError::OutOfFuel(_))
    ));
    assert!(start.elapsed().as_secs() < 10);
    // Recursion through a macro is bounded too.
    let src = "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}";
    let t = ChatTemplate::new(src, "", "").unwrap();
    assert!(t.render(&conv(), true).is_err());
}

/// Strings built inside the template are paid for in fuel (minijinja charges every byte
/// it creates), and the Python methods this crate adds size their results before
/// allocating: neither doubling nor a `replace`/`split` bomb allocates without bound.
#[test]
fn memory_bombs_are_refused_before_they_allocate() {
    let doubling = "{% set ns = namespace(s='x' * 1000) %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}";
    let t = ChatTemplate::new(doubling, "", "").unwrap();
    assert!(matches!(
        t.render(&conv(), true),
        Err(TemplateError::OutOfFuel(_))
    ));
    // 100 000 x 100 000 bytes if it ran; two million pieces of a four-million-byte string.
    for bomb in [
        "{% set s = 'x' * 100000 %}{{ s.replace('x', s)|length }}",
        "{% set s = 'x,' * 2000001 %}{{ s.split(',')|length }}",
        "{% set s = 'x ' * 2000001 %}{{ s.split()|length }}",
    ] {
        let t = ChatTemplate::new(bomb, "", "").unwrap();
        let start = Instant::now();
        let err = t.render(&conv(), true).unwrap_err();
        assert!(
            format!("{:?}", err).contains("over its limit"),
            "{bomb}: {err:?}"
        );
        assert!(start.elapsed().as_secs() < 10);
    }
    // Under the limits the methods work as in Python.
    let t = ChatTemplate::new(
        "{{ 'a-b-c'.replace('-', '+') }}|{{ 'a b  c'.split()|length }}",
        "",
        "",
    )
    .unwrap();
    assert_eq!(t.render(&conv(), true).unwrap(), "a+b+c|3");
}

#[test]
fn huge_output_is_stopped() {
    let src = "{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}";
    let t = ChatTemplate::new(src, "", "").unwrap();
    assert!(matches!(
        t.render(&[], true),
        Err(TemplateError::OutputTooLarge(_))
    ));
    let t = ChatTemplate::new(CHATML, "", "")
        .unwrap()
        .with_limits(TemplateLimits {
            max_output: 64,
            ..TemplateLimits::default()
        });
    assert!(matches!(
        t.render(&conv(), true),
        Err(TemplateError::OutputTooLarge(64))
    ));
}

#[test]
fn raise_exception_is_typed() {
    let src = "{% if messages[0]['role'] != 'user' %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}ok";
    let t = ChatTemplate::new(src, "", "").unwrap();
    match t.render(&conv(), true) {
        Err(TemplateError::Raised(msg)) => {
            assert_eq!(
                msg,
                "Conversation roles must alternate user/assistant/user/assistant/..."
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(t.render(&conv()[1..], true).unwrap(), "ok");
}

#[test]
fn syntax_errors_and_render_errors() {
    assert!(matches!(
        ChatTemplate::new("{% for %}", "", ""),
        Err(TemplateError::Syntax(_))
    ));
    let t = ChatTemplate::new("{{ messages[0].content.frobnicate() }}", "", "").unwrap();
    assert!(matches!(
        t.render(&conv(), true),
        Err(TemplateError::Render(_))
    ));
}

#[test]
fn python_methods_and_strftime() {
    let src = "{{ messages[1].content.strip() }}|{{ messages[1].content.lstrip() }}|{{ messages[0].content.startswith('Be') }}|{{ messages[0].content.split()|length }}|{{ messages[0].content.upper() }}|{{ messages[0].get('role') }}|{{ messages[0].get('nope', 'd') }}|{% for k, v in messages[0].items() %}{{ k }}={{ v }};{% endfor %}|{% if strftime_now is defined %}{{ strftime_now('%d %b %Y') }}{% else %}26 Jul 2024{% endif %}";
    let t = ChatTemplate::new(src, "", "").unwrap();
    assert_eq!(
        t.render(&conv(), false).unwrap(),
        "Hi there!|Hi there!  |True|2|BE BRIEF.|system|d|content=Be brief.;role=system;|26 Jul 2024"
    );
    let t = ChatTemplate::new(src, "", "")
        .unwrap()
        .with_now(1_733_184_000);
    assert!(t.render(&conv(), false).unwrap().ends_with("|03 Dec 2024"));
}

#[test]
fn chat_message_json() {
    let m: ChatMessage = serde_json::from_str(r#"{"role":"user","content":"hi"}"#).unwrap();
    assert_eq!(m, ChatMessage::new("user", "hi"));
    assert_eq!(
        serde_json::to_string(&m).unwrap(),
        r#"{"role":"user","content":"hi"}"#
    );
}
