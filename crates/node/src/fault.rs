//! Deliberate misbehaviour for demonstrations (`attesta devnet --faulty K`)
//! and validator testing. A node with a fault says so loudly in its logs and
//! on `/healthz`; nothing here is reachable unless the operator asks for it
//! with `--insecure-fault`.
//!
//! A [`Fault`] is only a parsed flag. What the node applies is an
//! [`ActiveFault`], which exists only for a node without attestation or bound
//! to a [`DevAttester`] that declares the fault in every document it signs.
//! Hardware attesters cannot produce one, so no hardware-attested answer is
//! ever perturbed, whatever the caller forgets to check.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use attesta_attester::dev::DevAttester;
use attesta_attester::{AttestError, Attester};
use attesta_engine::{NamedTensor, TensorData};

/// One way to misbehave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer inference with perturbed outputs (a language model: another token in place
    /// of the first one generated).
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

/// A fault the node may apply (see the module docs for why it cannot be
/// attached to a hardware attester).
#[derive(Clone)]
pub struct ActiveFault {
    fault: Fault,
    scope: Scope,
}

#[derive(Clone)]
enum Scope {
    /// The node serves no attestation: nothing vouches for its answers.
    Unattested,
    /// Every document of this dev attester declares the fault.
    Declared(Arc<DevAttester>),
}

impl std::fmt::Debug for ActiveFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scope = match self.scope {
            Scope::Unattested => "unattested",
            Scope::Declared(_) => "declared by the dev TEE",
        };
        f.debug_struct("ActiveFault")
            .field("fault", &self.fault)
            .field("scope", &scope)
            .finish()
    }
}

impl ActiveFault {
    /// Declares `fault` in every document `dev` signs and returns the fault
    /// with the attester to serve (the two belong together: the fault only
    /// takes effect on a node attesting with exactly this attester).
    pub fn declare(
        fault: Fault,
        mut dev: DevAttester,
    ) -> Result<(Self, Arc<DevAttester>), AttestError> {
        dev.declare_insecure_fault(&fault.to_string())?;
        let dev = Arc::new(dev);
        let active = ActiveFault {
            fault,
            scope: Scope::Declared(Arc::clone(&dev)),
        };
        Ok((active, dev))
    }

    /// A fault for a node without attestation (`--tee none`): its answers
    /// carry no receipt, so no verifier can be misled by them.
    pub fn unattested(fault: Fault) -> Self {
        ActiveFault {
            fault,
            scope: Scope::Unattested,
        }
    }

    /// The configured fault, whether or not it takes effect.
    pub fn fault(&self) -> Fault {
        self.fault
    }

    /// The fault to apply on a node attesting with `attester`: only when the
    /// node has no attestation and the fault was made for that, or when
    /// `attester` is the very dev attester that declares it. Anything else
    /// (a hardware attester, another dev attester) disables the fault.
    pub fn effective(&self, attester: Option<&Arc<dyn Attester>>) -> Option<Fault> {
        let ok = match (&self.scope, attester) {
            (Scope::Unattested, None) => true,
            (Scope::Declared(dev), Some(a)) => std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(dev)),
            _ => false,
        };
        ok.then_some(self.fault)
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

    /// Stands in for any hardware attester (it never gets as far as producing evidence).
    struct Hardware;
    impl Attester for Hardware {
        fn platform(&self) -> attesta_attester::Platform {
            attesta_attester::Platform::Nitro
        }
        fn attest(
            &self,
            _: &attesta_attester::AttestRequest,
        ) -> Result<attesta_attester::Evidence, AttestError> {
            Err(AttestError::DeviceMissing {
                path: "/dev/nsm".into(),
            })
        }
    }

    fn dev(dir: &std::path::Path) -> DevAttester {
        let exe = dir.join("exe");
        std::fs::write(&exe, b"pretend executable").unwrap();
        let mut opts = attesta_attester::dev::DevOptions::new(dir.join("data")).unwrap();
        opts.executable = exe;
        DevAttester::open(opts).unwrap()
    }

    #[test]
    fn a_fault_never_applies_under_a_hardware_attester() {
        let hw: Arc<dyn Attester> = Arc::new(Hardware);
        let unattested = ActiveFault::unattested(Fault::WrongOutput);
        assert_eq!(unattested.effective(None), Some(Fault::WrongOutput));
        assert_eq!(unattested.effective(Some(&hw)), None);

        let dir = tempfile::tempdir().unwrap();
        let (declared, dev_attester) =
            ActiveFault::declare(Fault::WrongOutput, dev(dir.path())).unwrap();
        let served: Arc<dyn Attester> = dev_attester.clone();
        assert_eq!(declared.effective(Some(&served)), Some(Fault::WrongOutput));
        assert_eq!(declared.effective(Some(&hw)), None);
        assert_eq!(declared.effective(None), None);
        // Another dev attester does not declare it: no effect there either.
        let other: Arc<dyn Attester> = Arc::new(dev(dir.path()));
        assert_eq!(declared.effective(Some(&other)), None);
    }

    #[test]
    fn the_dev_attester_declares_the_fault_in_its_documents() {
        let dir = tempfile::tempdir().unwrap();
        let slow = Fault::Slow(Duration::from_millis(250));
        let (_, dev_attester) = ActiveFault::declare(slow, dev(dir.path())).unwrap();
        let req = attesta_attester::AttestRequest {
            nonce: vec![1; 16],
            user_data: None,
            public_key: None,
            report_data: [0; 64],
        };
        let now = attesta_seal::UnixTime::from_system(std::time::SystemTime::now());
        let doc = dev_attester.document(&req, now).unwrap();
        assert_eq!(doc.insecure_fault.as_deref(), Some("slow:250"));
        assert_eq!(dev_attester.insecure_fault(), Some("slow:250"));
    }
}
