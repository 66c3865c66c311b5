//! Deliberate misbehaviour for demonstrations (`attesta devnet --faulty K`)
//! and validator testing. A node with a fault says so loudly in its logs and
//! on `/healthz`; nothing here is reachable unless the operator asks for it
//! with `--insecure-fault`.

use std::str::FromStr;
use std::time::Duration;

use attesta_engine::{NamedTensor, TensorData};

/// One way to misbehave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer inference with perturbed outputs.
    WrongOutput,
    /// Delay every inference answer by this long.
    Slow(Duration),
    /// Never answer inference requests (the connection stays open).
    Hang,
    /// Serve attestation evidence with a corrupted signature.
    BadEvidence,
}

impl FromStr for Fault {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "wrong-output" => Ok(Fault::WrongOutput),
            "hang" => Ok(Fault::Hang),
            "bad-evidence" => Ok(Fault::BadEvidence),
            _ => match s.strip_prefix("slow:") {
                Some(ms) => ms
                    .parse::<u64>()
                    .map(|ms| Fault::Slow(Duration::from_millis(ms)))
                    .map_err(|_| format!("bad delay in {s:?} (want slow:MILLISECONDS)")),
                None => Err(format!(
                    "unknown fault {s:?} (wrong-output, slow:MS, hang, bad-evidence)"
                )),
            },
        }
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::WrongOutput => f.write_str("wrong-output"),
            Fault::Slow(d) => write!(f, "slow:{}", d.as_millis()),
            Fault::Hang => f.write_str("hang"),
            Fault::BadEvidence => f.write_str("bad-evidence"),
        }
    }
}

/// Applied before an inference answer leaves the node.
pub async fn before_answer(fault: Option<Fault>) {
    match fault {
        Some(Fault::Slow(d)) => tokio::time::sleep(d).await,
        Some(Fault::Hang) => std::future::pending::<()>().await,
        _ => {}
    }
}

/// Perturbs outputs under [`Fault::WrongOutput`]: a plausible but wrong answer.
pub fn perturb(fault: Option<Fault>, outputs: &mut [NamedTensor]) {
    if fault != Some(Fault::WrongOutput) {
        return;
    }
    for o in outputs.iter_mut() {
        // A fault path: cloning keeps Tensor's shape invariant simple to uphold.
        let (shape, mut data) = o.tensor.clone().into_parts();
        match &mut data {
            TensorData::F32(v) => v.iter_mut().for_each(|x| *x += 0.5),
            TensorData::F64(v) => v.iter_mut().for_each(|x| *x += 0.5),
            TensorData::I64(v) => v.iter_mut().for_each(|x| *x = x.wrapping_add(1)),
            TensorData::I32(v) => v.iter_mut().for_each(|x| *x = x.wrapping_add(1)),
            TensorData::U8(v) => v.iter_mut().for_each(|x| *x = x.wrapping_add(1)),
            TensorData::Bool(v) => v.iter_mut().for_each(|x| *x = !*x),
            TensorData::String(v) => v.iter_mut().for_each(|x| x.push('!')),
            _ => {}
        }
        if let Ok(t) = attesta_engine::Tensor::new(shape, data) {
            o.tensor = t;
        }
    }
}

/// Corrupts evidence under [`Fault::BadEvidence`] (the last byte, inside the COSE signature).
pub fn corrupt_evidence(fault: Option<Fault>, evidence: &mut [u8]) {
    if fault == Some(Fault::BadEvidence)
        && let Some(b) = evidence.last_mut()
    {
        *b ^= 0x01;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        assert_eq!(
            "slow:250".parse(),
            Ok(Fault::Slow(Duration::from_millis(250)))
        );
        assert_eq!("hang".parse(), Ok(Fault::Hang));
        assert!("slow:x".parse::<Fault>().is_err());
        assert!("nope".parse::<Fault>().is_err());
        assert_eq!(Fault::Slow(Duration::from_millis(7)).to_string(), "slow:7");
    }
}
