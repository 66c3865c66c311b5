//! configfs-tsm, Gramine and NSM backends against directories that behave
//! like the real interfaces (a FIFO `outblob`/`quote` served by a fake
//! "kernel" thread), including the configfs-tsm generation race.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use attesta_attester::{
    AttestError, AttestRequest, Attester, Platform, SelectOptions, TeeKind, gramine, nitro, select,
    tsm,
};

fn mkfifo(path: &Path) {
    let st = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo runs");
    assert!(st.success());
}

fn req(rd: u8) -> AttestRequest {
    AttestRequest {
        nonce: vec![1; 32],
        user_data: None,
        public_key: None,
        report_data: [rd; 64],
    }
}

/// Waits (bounded) until the producer has written a request into `path`,
/// takes it and empties the file. This keeps the fake in lock-step with the
/// reader: a FIFO writer reopened before the reader closed would otherwise
/// append a second answer to the first one.
fn take_request(path: &Path) -> Vec<u8> {
    for _ in 0..10_000 {
        let data = std::fs::read(path).unwrap();
        if !data.is_empty() {
            std::fs::write(path, b"").unwrap();
            return data;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    panic!("no request written to {} within 10 s", path.display());
}

fn read_u64(p: &Path) -> u64 {
    std::fs::read_to_string(p).unwrap().trim().parse().unwrap()
}

/// A configfs-tsm report entry. The fake kernel serves `reads` reads of
/// `outblob`; on the first `races` it also bumps `generation` once more, as
/// a concurrent writer would. `wrong_data` makes it answer with other report data.
fn fake_tsm(
    dir: &Path,
    provider: &str,
    reads: usize,
    races: usize,
    wrong_data: bool,
) -> JoinHandle<()> {
    let entry = dir.join(tsm::ENTRY_NAME);
    std::fs::create_dir_all(&entry).unwrap();
    std::fs::write(entry.join("provider"), format!("{provider}\n")).unwrap();
    std::fs::write(entry.join("generation"), "0\n").unwrap();
    std::fs::write(entry.join("inblob"), b"").unwrap();
    mkfifo(&entry.join("outblob"));
    let tdx = provider == "tdx_guest";
    std::thread::spawn(move || {
        for i in 0..reads {
            let inblob = take_request(&entry.join("inblob"));
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .open(entry.join("outblob"))
                .unwrap();
            let gen_path = entry.join("generation");
            let bump = if i < races { 2 } else { 1 };
            std::fs::write(&gen_path, format!("{}\n", read_u64(&gen_path) + bump)).unwrap();
            let (len, at) = if tdx { (1024, 568) } else { (1184, 0x50) };
            let mut blob = vec![0u8; len];
            if tdx {
                blob[0] = 4;
            }
            blob[at..at + 64].copy_from_slice(&inblob);
            if wrong_data {
                blob[at] ^= 0xff;
            }
            out.write_all(&blob).unwrap();
        }
    })
}

#[test]
fn tsm_tdx_and_snp_produce_reports() {
    for (provider, platform) in [
        ("tdx_guest", Platform::Tdx),
        ("sev_guest", Platform::SevSnp),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let kernel = fake_tsm(dir.path(), provider, 2, 0, false);
        let a = tsm::TsmAttester::open(dir.path()).unwrap();
        assert_eq!(a.platform(), platform);
        for rd in [3u8, 4] {
            let ev = a.attest(&req(rd)).unwrap();
            assert_eq!(ev.platform, platform);
            assert!(ev.bytes.windows(64).any(|w| w == [rd; 64]));
        }
        kernel.join().unwrap();
        assert_eq!(read_u64(&dir.path().join("attesta/generation")), 2);
    }
}

#[test]
fn tsm_generation_race_is_retried_then_reported() {
    // Two racing attempts, then a clean one: succeeds on the third.
    let dir = tempfile::tempdir().unwrap();
    let kernel = fake_tsm(dir.path(), "tdx_guest", 3, 2, false);
    let a = tsm::TsmAttester::open(dir.path()).unwrap();
    assert!(a.attest(&req(9)).is_ok());
    kernel.join().unwrap();

    // Racing on every attempt: bounded retries, then a typed, retryable error.
    let dir = tempfile::tempdir().unwrap();
    let n = tsm::MAX_ATTEMPTS as usize;
    let kernel = fake_tsm(dir.path(), "sev_guest", n, n, false);
    let a = tsm::TsmAttester::open(dir.path()).unwrap();
    let err = a.attest(&req(9)).unwrap_err();
    assert!(
        matches!(err, AttestError::TsmRace { attempts } if attempts == tsm::MAX_ATTEMPTS),
        "{err:?}"
    );
    assert!(err.is_retryable());
    kernel.join().unwrap();
}

#[test]
fn tsm_rejects_foreign_report_data_and_unknown_provider() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = fake_tsm(dir.path(), "tdx_guest", 1, 0, true);
    let a = tsm::TsmAttester::open(dir.path()).unwrap();
    assert!(matches!(
        a.attest(&req(1)),
        Err(AttestError::ReportDataMismatch(_))
    ));
    kernel.join().unwrap();

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(tsm::ENTRY_NAME)).unwrap();
    std::fs::write(
        dir.path().join(tsm::ENTRY_NAME).join("provider"),
        "arm_cca_guest\n",
    )
    .unwrap();
    assert!(
        matches!(tsm::TsmAttester::open(dir.path()), Err(AttestError::UnknownProvider(p)) if p == "arm_cca_guest")
    );
    assert!(matches!(
        tsm::TsmAttester::open(&dir.path().join("absent")),
        Err(AttestError::DeviceMissing { .. })
    ));
}

fn fake_gramine(dir: &Path, reads: usize) -> JoinHandle<()> {
    std::fs::write(dir.join("attestation_type"), "dcap").unwrap();
    std::fs::write(dir.join("user_report_data"), b"").unwrap();
    mkfifo(&dir.join("quote"));
    let dir: PathBuf = dir.to_owned();
    std::thread::spawn(move || {
        for _ in 0..reads {
            let urd = take_request(&dir.join("user_report_data"));
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .open(dir.join("quote"))
                .unwrap();
            let mut q = vec![0u8; 1200];
            q[0] = 3;
            q[368..432].copy_from_slice(&urd);
            out.write_all(&q).unwrap();
        }
    })
}

#[test]
fn gramine_produces_sgx_quotes() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = fake_gramine(dir.path(), 2);
    let a = gramine::GramineAttester::open(dir.path()).unwrap();
    for rd in [5u8, 6] {
        let ev = a.attest(&req(rd)).unwrap();
        assert_eq!(ev.platform, Platform::Sgx);
        assert_eq!(&ev.bytes[368..432], &[rd; 64]);
    }
    kernel.join().unwrap();
    let none = tempfile::tempdir().unwrap();
    std::fs::write(none.path().join("quote"), b"").unwrap();
    std::fs::write(none.path().join("attestation_type"), "none\n").unwrap();
    assert!(matches!(
        gramine::GramineAttester::open(none.path()),
        Err(AttestError::Malformed { .. })
    ));
}

#[test]
fn nitro_device_missing_and_request_building() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nsm");
    assert!(
        matches!(nitro::NitroAttester::open(&missing), Err(AttestError::DeviceMissing { path }) if path == missing)
    );
    let r = nitro::nsm_request(&AttestRequest {
        nonce: vec![],
        user_data: Some(vec![1]),
        public_key: None,
        report_data: [0; 64],
    })
    .unwrap();
    match r {
        aws_nitro_enclaves_nsm_api::api::Request::Attestation {
            user_data,
            nonce,
            public_key,
        } => {
            assert_eq!(user_data.map(|b| b.into_vec()), Some(vec![1]));
            assert!(nonce.is_none() && public_key.is_none());
        }
        other => panic!("{other:?}"),
    }
    let big = AttestRequest {
        nonce: vec![0; 1025],
        user_data: None,
        public_key: None,
        report_data: [0; 64],
    };
    assert!(matches!(
        nitro::nsm_request(&big),
        Err(AttestError::TooLarge { field: "nonce", .. })
    ));
}

#[test]
fn auto_never_falls_back_to_dev() {
    let dir = tempfile::tempdir().unwrap();
    let opts = SelectOptions {
        nsm_device: dir.path().join("nsm"),
        tsm_dir: dir.path().join("tsm"),
        gramine_dir: dir.path().join("attestation"),
        dev: Some(attesta_attester::dev::DevOptions::new(dir.path().join("data")).unwrap()),
    };
    assert!(matches!(
        select(TeeKind::Auto, opts.clone()),
        Err(AttestError::NoTeeFound { .. })
    ));
    // With a tsm directory present, auto picks tsm.
    std::fs::create_dir_all(dir.path().join("tsm")).unwrap();
    let kernel = fake_tsm(&dir.path().join("tsm"), "sev_guest", 1, 0, false);
    let a = select(TeeKind::Auto, opts.clone()).unwrap();
    assert_eq!(a.platform(), Platform::SevSnp);
    assert!(a.attest(&req(2)).is_ok());
    kernel.join().unwrap();
    // Dev only when asked for by name.
    let d = select(TeeKind::Dev, opts).unwrap();
    assert_eq!(d.platform(), Platform::Dev);
    assert_eq!("dev".parse::<TeeKind>(), Ok(TeeKind::Dev));
    assert!("sgx".parse::<TeeKind>().is_err());
}
