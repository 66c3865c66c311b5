//! Differential tests of the request decoder's single-pass fast path: every
//! body, valid or not, decodes through `parse_request` exactly as through the
//! general decoder alone (`parse_request_general`), down to the typed error.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use attesta_engine::og::{
    parse_inputs, parse_inputs_general, parse_request, parse_request_general,
};

/// The two decoders' answers agree: equal requests, or errors of the same
/// kind and message.
fn same(body: &[u8]) {
    let fast = parse_request(body);
    let general = parse_request_general(body);
    match (&fast, &general) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "{}", String::from_utf8_lossy(body)),
        (Err(a), Err(b)) => {
            assert_eq!(a.code(), b.code(), "{}", String::from_utf8_lossy(body));
            assert_eq!(
                a.to_string(),
                b.to_string(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        _ => panic!(
            "fast {fast:?} vs general {general:?} for {}",
            String::from_utf8_lossy(body)
        ),
    }
}

fn same_inputs(text: &str) {
    match (parse_inputs(text), parse_inputs_general(text)) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "{text}"),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{text}"),
        (a, b) => panic!("fast {a:?} vs general {b:?} for {text}"),
    }
}

/// `{"ipfs_hash":"Qm","model_inputs":<inputs>}`, with `inputs` embedded as a
/// JSON string (OpenGradient's form) or as the object.
fn bodies(inputs: &str) -> Vec<String> {
    vec![
        serde_json::json!({"ipfs_hash": "Qm", "model_inputs": inputs}).to_string(),
        format!(r#"{{"ipfs_hash":"Qm","model_inputs":{inputs}}}"#),
        format!(r#"{{ "model_inputs" : {inputs} , "ipfs_hash" : "Qm" }}"#),
    ]
}

fn numbers(values: &str) -> String {
    format!(r#"{{"numbers":[{{"name":"x","shape":[1],"values":[{values}]}}]}}"#)
}

#[test]
fn handpicked_bodies_agree() {
    let fixed = [
        r#"{"value":15,"decimals":1}"#,
        r#"{"decimals":1,"value":15}"#,
        r#"{"value":"-25","decimals":"2"}"#,
        r#"{"value":"1.25","decimals":0}"#,
        r#"{"value":1.25,"decimals":0}"#,
        r#"{"value":-0,"decimals":0}"#,
        r#"{"value":"-0.0","decimals":0}"#,
        r#"{"value":0,"decimals":18}"#,
        r#"{"value":1,"decimals":19}"#,
        r#"{"value":1,"decimals":-1}"#,
        r#"{"value":1,"decimals":1.0}"#,
        r#"{"value":1e5,"decimals":0}"#,
        r#"{"value":1E5,"decimals":0}"#,
        r#"{"value":01,"decimals":0}"#,
        r#"{"value":"01","decimals":0}"#,
        r#"{"value":"+1","decimals":0}"#,
        r#"{"value":+1,"decimals":0}"#,
        r#"{"value":1.,"decimals":0}"#,
        r#"{"value":"1.","decimals":0}"#,
        r#"{"value":-,"decimals":0}"#,
        r#"{"value":"","decimals":0}"#,
        r#"{"value":" 1","decimals":0}"#,
        r#"{"value":null,"decimals":0}"#,
        r#"{"value":true,"decimals":0}"#,
        r#"{"value":[1],"decimals":0}"#,
        r#"{"value":1}"#,
        r#"{"decimals":1}"#,
        r#"{}"#,
        r#"{"value":1,"decimals":0,"extra":3}"#,
        r#"{"value":1,"value":2,"decimals":0}"#,
        r#"{"value":1,"decimals":0,"decimals":0}"#,
        r#"{"value":"\u0031","decimals":0}"#,
        r#"{"val\u0075e":1,"decimals":0}"#,
        r#"{"value"	:	1 ,"decimals":	0 }"#,
        r#"{"value":1,"decimals":0,}"#,
        r#"{"value":1 "decimals":0}"#,
        r#"{"value":1,"decimals":000}"#,
        r#"{"value":1,"decimals":"018"}"#,
        r#"{"value":1,"decimals":"0018"}"#,
        "1",
    ];
    let long = [
        "9".repeat(19),
        "9".repeat(20),
        "9".repeat(64),
        "9".repeat(65),
        format!("0.{}1", "0".repeat(70)),
        format!("-{}", "1".repeat(40)),
        "18446744073709551616".into(),
    ];
    let mut singles: Vec<String> = fixed.iter().map(|s| s.to_string()).collect();
    for digits in &long {
        singles.push(format!(r#"{{"value":{digits},"decimals":3}}"#));
        singles.push(format!(r#"{{"value":"{digits}","decimals":3}}"#));
    }
    for v in &singles {
        for body in bodies(&numbers(v)) {
            same(body.as_bytes());
        }
        same_inputs(&numbers(v));
    }
    // Every position of the structure, including valid variants the fast
    // path handles and ones it leaves to serde.
    let inputs = [
        "{}".to_string(),
        r#"{"numbers":[]}"#.into(),
        r#"{"numbers":[],"strings":[]}"#.into(),
        r#"{"strings":[],"numbers":[]}"#.into(),
        r#"{"numbers":[],"numbers":[]}"#.into(),
        r#"{"strings":[],"strings":[]}"#.into(),
        r#"{"numbers":null}"#.into(),
        r#"{"numbers":[{"name":"x","shape":[1],"values":[]}]}"#.into(),
        r#"{"numbers":[{"values":[],"shape":[0],"name":"x"}]}"#.into(),
        r#"{"numbers":[{"name":"x","shape":[],"values":[]}]}"#.into(),
        r#"{"numbers":[{"name":"x","shape":[-0],"values":[]}]}"#.into(),
        r#"{"numbers":[{"name":"x","shape":[01],"values":[]}]}"#.into(),
        r#"{"numbers":[{"name":"x","shape":[1.0],"values":[]}]}"#.into(),
        r#"{"numbers":[{"name":"x","shape":[18446744073709551615],"values":[]}]}"#.into(),
        r#"{"numbers":[{"name":"x","shape":[18446744073709551616],"values":[]}]}"#.into(),
        r#"{"numbers":[{"name":"x","shape":[1]}]}"#.into(),
        r#"{"numbers":[{"name":"x","name":"y","shape":[1],"values":[]}]}"#.into(),
        r#"{"numbers":[{"name":"é ☃","shape":[1],"values":[]}]}"#.into(),
        r#"{"numbers":[{"name":"a\"b","shape":[1],"values":[]}]}"#.into(),
        r#"{"numbers":[{"name":"a\nb","shape":[1],"values":[]}]}"#.into(),
        "{\"numbers\":[{\"name\":\"a\tb\",\"shape\":[1],\"values\":[]}]}".into(),
        r#"{"numbers":[{"name":1,"shape":[1],"values":[]}]}"#.into(),
        r#"{"numbers":[{"name":"x","shape":[1],"values":[]}],"strings":[{"name":"s","shape":[1],"values":["hi"]}]}"#.into(),
        r#"{"numbers":[{"name":"x","shape":[1],"values":[]},]}"#.into(),
        r#"{"numbers":[{"name":"x","shape":[1],"values":[]}] , "other": 1}"#.into(),
        format!(
            " \n{{ \"numbers\" : [ {{ \"name\" : \"x\" , \"shape\" : [ 1 , 2 ] , \"values\" : [ {} , {} ] }} ] }}\t",
            r#"{ "value" : 1 , "decimals" : 0 }"#, r#"{"value":-7,"decimals":2}"#
        ),
        format!(r#""{}""#, r#"{\"numbers\":[]}"#),
    ];
    for i in &inputs {
        for body in bodies(i) {
            same(body.as_bytes());
        }
        same_inputs(i);
    }
    // The body's own structure.
    for body in [
        "",
        " ",
        "{",
        "{}",
        "null",
        r#"{"ipfs_hash":"Qm"}"#,
        r#"{"model_inputs":{}}"#,
        r#"{"ipfs_hash":"Qm","model_inputs":{}}"#,
        r#"{"ipfs_hash":"Qm","model_inputs":{}} "#,
        r#"{"ipfs_hash":"Qm","model_inputs":{}} x"#,
        r#"{"ipfs_hash":"Qm","model_inputs":{}}{}"#,
        r#"{"ipfs_hash":null,"model_inputs":{}}"#,
        r#"{"ipfs_hash":"Q\u006d","model_inputs":{}}"#,
        r#"{"ipfs_hash":"Qm","ipfs_hash":"Qm","model_inputs":{}}"#,
        r#"{"ipfs_hash":"Qm","model_inputs":{},"model_inputs":{}}"#,
        r#"{"ipfs_hash":"Qm","model_inputs":{},"num_inputs":[]}"#,
        r#"{"ipfs_hash":"Qm","num_inputs":[]}"#,
        r#"{"ipfs_hash":"Qm","model_inputs":"{}"}"#,
        r#"{"ipfs_hash":"Qm","model_inputs":" {} "}"#,
        r#"{"ipfs_hash":"Qm","model_inputs":"{}\n"}"#,
        "{\"ipfs_hash\":\"Qm\",\"model_inputs\":\"{}\t\"}",
        r#"{"ipfs_hash":"Qm","model_inputs":"\"{}\""}"#,
        r#"{"ipfs_hash":"Qm","model_inputs":"{\"numbers\":[]}"#,
        r#"{"ipfs_hash":"Qm","model_inputs":"{"numbers":[]}"}"#,
        r#"{"ipfs_hash":"Qm","model_inputs":"{\"numbers\":[]}"}"#,
        r#"{"ipfs_hash":"Qm","model_inputs":"{\"numbers\":[]}\\"}"#,
        r#"{"ipfs_hash":"Qm","model_inputs":"{\"numbers\":[]}","x":1}"#,
        r#"{"ipfs_hash":"Qm","model_inputs":"{\u0022numbers\":[]}"}"#,
    ] {
        same(body.as_bytes());
    }
    same(b"\xff");
}

#[test]
fn valid_bodies_take_the_fast_path_and_agree() {
    // Sanity that the plain form decodes (so agreement is not vacuous).
    let body = &bodies(&numbers(r#"{"value":-1234567,"decimals":4}"#))[0];
    same(body.as_bytes());
    let req = parse_request(body.as_bytes()).unwrap();
    assert_eq!(req.inputs.numbers[0].values[0].to_f64(), -123.4567);
}

/// Random bodies near the plain form: generated valid bodies, then mutated
/// bytewise (every prefix truncation included), all through both decoders.
#[test]
fn random_and_mutated_bodies_agree() {
    let mut state = 0x2545f4914f6cdd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..10_000 {
        let n = (next() % 5) as usize;
        let values: Vec<String> = (0..n)
            .map(|_| {
                let v = match next() % 6 {
                    0 => format!("{}", next() as i64),
                    1 => format!("\"{}\"", next() % 1000),
                    2 => format!("{}.{}", next() % 100, next() % 1000),
                    3 => "9".repeat((next() % 70) as usize + 1),
                    4 => "-0".into(),
                    _ => format!("{}", (next() % 2_000_001) as i64 - 1_000_000),
                };
                let d = match next() % 4 {
                    0 => format!("\"{}\"", next() % 20),
                    _ => format!("{}", next() % 20),
                };
                if next() % 5 == 0 {
                    format!(r#"{{"decimals":{d},"value":{v}}}"#)
                } else {
                    format!(r#"{{"value":{v},"decimals":{d}}}"#)
                }
            })
            .collect();
        let inputs = format!(
            r#"{{"numbers":[{{"name":"x{round}","shape":[{n}],"values":[{}]}}]}}"#,
            values.join(", ")
        );
        for body in bodies(&inputs) {
            let bytes = body.into_bytes();
            same(&bytes);
            if round % 50 == 0 {
                for cut in 0..bytes.len() {
                    same(bytes.get(..cut).unwrap());
                }
            }
            for _ in 0..4 {
                let mut m = bytes.clone();
                for _ in 0..(next() % 3 + 1) {
                    let pos = (next() as usize) % m.len().max(1);
                    let alphabet = b"{}[]\",:0123456789-+.eE \\\t\nxu";
                    let c = alphabet[(next() as usize) % alphabet.len()];
                    match next() % 3 {
                        0 if pos < m.len() => m[pos] = c,
                        1 if pos < m.len() => {
                            m.remove(pos);
                        }
                        _ => m.insert(pos.min(m.len()), c),
                    }
                }
                same(&m);
            }
        }
    }
}
