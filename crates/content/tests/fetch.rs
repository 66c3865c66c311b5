//! Fetching through gateways on 127.0.0.1: fixtures by CAR and by raw blocks, failover, lying
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers: failing loudly is the point
//! and broken gateways, retries, timeouts, single-flight, budgets and pins.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use attesta_content::car::CarError;
use attesta_content::fetch::{AttemptError, FetchStats};
use attesta_content::{
    Cid, FetchError, Fetcher, GatewayConfig, ModelStore, NoProgress, Profile, StoreOptions,
    VerifyError, cid_of_bytes,
};
use common::gateway::{Gateway, Mode};

fn config(urls: &[&Gateway]) -> GatewayConfig {
    GatewayConfig {
        urls: urls.iter().map(|g| g.url.clone()).collect(),
        timeout: Duration::from_secs(5),
        retries: 2,
        backoff: Duration::from_millis(10),
        ..GatewayConfig::default()
    }
}

fn store(dir: &tempfile::TempDir) -> ModelStore {
    ModelStore::open(dir.path(), StoreOptions::default()).unwrap()
}

/// Nothing visible and nothing half-written after a failure.
fn assert_empty(dir: &tempfile::TempDir, s: &ModelStore) {
    assert!(s.list().unwrap().is_empty());
    for sub in ["blobs", "meta", "tmp"] {
        assert_eq!(
            std::fs::read_dir(dir.path().join(sub)).unwrap().count(),
            0,
            "{sub} not empty"
        );
    }
}

fn all_failed(e: FetchError) -> Vec<attesta_content::fetch::GatewayFailure> {
    match e {
        FetchError::AllGatewaysFailed(f) => f,
        other => panic!("expected AllGatewaysFailed, got {other}"),
    }
}

#[tokio::test]
async fn every_fixture_vector_fetches_by_car_and_by_raw_blocks() {
    let mut checked = 0;
    for v in common::vectors() {
        let data = common::input(&v.file, v.bytes);
        for (profile, cid, _) in v
            .profiles
            .iter()
            .filter(|p| common::CAR_PROFILES.contains(&p.0.as_str()))
        {
            let root: Cid = cid.parse().unwrap();
            // The gateway serves exactly the fixture CAR's blocks.
            let car = std::fs::read(common::car_path(&v.file, profile)).unwrap();
            let gw = Gateway::start(Mode::Honest).await;
            gw.add_blocks(
                &root,
                common::car_blocks(&car)
                    .into_iter()
                    .map(|(c, b)| (c, b.to_vec())),
            );
            for prefer_car in [true, false] {
                let dir = tempfile::tempdir().unwrap();
                let f = Fetcher::new(
                    GatewayConfig {
                        prefer_car,
                        ..config(&[&gw])
                    },
                    store(&dir),
                );
                let m = f.fetch(&root, &NoProgress).await.unwrap();
                assert_eq!(m.cid, root);
                assert_eq!(
                    std::fs::read(&m.path).unwrap(),
                    data,
                    "{} {profile} car={prefer_car}",
                    v.file
                );
                assert_eq!(m.sha256_hex(), v.sha256);
                assert_eq!(
                    std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
                    0
                );
            }
            assert_eq!(gw.counters.car.load(Ordering::SeqCst), 1);
            assert!(gw.counters.raw.load(Ordering::SeqCst) >= 1);
            checked += 1;
        }
    }
    assert_eq!(checked, 10);
}

#[tokio::test]
async fn a_lying_gateway_first_is_detected_and_skipped() {
    let data = common::det(175 * 262_144 + 99);
    let liar = Gateway::start(Mode::Lying).await;
    let honest = Gateway::start(Mode::Honest).await;
    let root = liar.add(&data, Profile::KuboDefaultV0);
    assert_eq!(honest.add(&data, Profile::KuboDefaultV0), root);
    for prefer_car in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let stats = FetchStats::default();
        let f = Fetcher::new(
            GatewayConfig {
                prefer_car,
                ..config(&[&liar, &honest])
            },
            store(&dir),
        )
        .with_observer(Arc::new(stats.clone()));
        let m = f.fetch(&root, &NoProgress).await.unwrap();
        assert!(std::fs::read(&m.path).unwrap() == data);
        let snap = stats.snapshot();
        assert_eq!(snap[&liar.url].failed, 1);
        assert_eq!(
            snap[&liar.url].verification_failures.get("bad_block_hash"),
            Some(&1)
        );
        assert_eq!(snap[&honest.url].ok, 1);
        assert!(snap[&honest.url].bytes >= data.len() as u64);
    }
    // One CAR request and one raw block request: a failed check is never retried.
    assert_eq!(liar.counters.car.load(Ordering::SeqCst), 1);
    assert_eq!(liar.counters.raw.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn when_all_gateways_fail_each_failure_is_named_and_nothing_is_stored() {
    let liar = Gateway::start(Mode::Lying).await;
    let empty = Gateway::start(Mode::Empty).await;
    let data = common::det(307_200);
    let root = liar.add(&data, Profile::KuboCidV1RawLeaves);
    // A port nobody listens on: bind, note it, close.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir);
    let mut cfg = config(&[&liar, &empty]);
    cfg.urls.push(dead.clone());
    cfg.retries = 1;
    let err = Fetcher::new(cfg, s.clone())
        .fetch(&root, &NoProgress)
        .await
        .unwrap_err();
    let text = err.to_string();
    let failures = all_failed(err);
    assert_eq!(failures.len(), 3);
    assert_eq!(failures[0].gateway, liar.url);
    assert!(matches!(
        failures[0].error,
        AttemptError::Verify(VerifyError::BadBlockHash { .. })
    ));
    assert!(matches!(failures[1].error, AttemptError::NotFound));
    assert!(
        matches!(failures[2].error, AttemptError::Transport(_)),
        "{:?}",
        failures[2]
    );
    assert_eq!(failures[2].attempts, 2, "transport errors are retried");
    for url in [&liar.url, &empty.url, &dead] {
        assert!(text.contains(url.as_str()), "{text}");
    }
    assert_empty(&dir, &s);
}

#[tokio::test]
async fn no_gateways_is_its_own_error() {
    let dir = tempfile::tempdir().unwrap();
    let f = Fetcher::new(GatewayConfig::default(), store(&dir));
    let cid = cid_of_bytes(b"x", Profile::KuboDefaultV0);
    assert!(matches!(
        f.fetch(&cid, &NoProgress).await,
        Err(FetchError::NoGateways)
    ));
}

/// Serves `car` for `root` and expects the named verification error, with nothing stored.
async fn expect_car_failure(root: &Cid, car: Vec<u8>, check: impl Fn(&VerifyError) -> bool) {
    let gw = Gateway::start(Mode::FixedCar(car)).await;
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir);
    let err = Fetcher::new(config(&[&gw]), s.clone())
        .fetch(root, &NoProgress)
        .await
        .unwrap_err();
    let failures = all_failed(err);
    match &failures[0].error {
        AttemptError::Verify(v) => assert!(check(v), "unexpected {v}"),
        other => panic!("expected a verification error, got {other}"),
    }
    assert_eq!(
        failures[0].attempts, 1,
        "verification failures are not retried"
    );
    assert_eq!(gw.counters.car.load(Ordering::SeqCst), 1);
    assert_empty(&dir, &s);
}

#[tokio::test]
async fn tampered_cars_fail_with_named_errors_and_leave_nothing() {
    let v = common::vectors()
        .into_iter()
        .find(|v| v.file == "det_300KiB.bin")
        .unwrap();
    let root: Cid = v.profiles[0].1.parse().unwrap();
    let car = std::fs::read(common::car_path("det_300KiB.bin", "kubo-default-v0")).unwrap();
    let blocks: Vec<(Cid, Vec<u8>)> = common::car_blocks(&car)
        .into_iter()
        .map(|(c, b)| (c, b.to_vec()))
        .collect();

    // A flipped byte in each block.
    for i in 0..blocks.len() {
        let mut bad = blocks.clone();
        let mid = bad[i].1.len() / 2;
        bad[i].1[mid] ^= 1;
        expect_car_failure(&root, common::encode_car(&root, &bad), |e| {
            matches!(e, VerifyError::BadBlockHash { .. })
        })
        .await;
    }
    // Truncated mid-block and at a block boundary.
    expect_car_failure(&root, car[..car.len() / 2].to_vec(), |e| {
        matches!(e, VerifyError::Car(CarError::Truncated))
    })
    .await;
    let without_last = common::encode_car(&root, &blocks[..2]);
    expect_car_failure(&root, without_last, |e| {
        matches!(e, VerifyError::Truncated { .. })
    })
    .await;
    // Wrong root: a valid CAR of another file.
    let (_, other) = common::make_car(b"not the model", Profile::KuboDefaultV0);
    expect_car_failure(
        &root,
        other,
        |e| matches!(e, VerifyError::Truncated { next } if *next == root),
    )
    .await;
    // A lying blocksize (consistent totals, wrong child).
    let mut lying = blocks.clone();
    let tail = lying[0].1.len();
    let fs_at = lying[0]
        .1
        .windows(4)
        .rposition(|w| w == [0x18, 0x80, 0xe0, 0x12])
        .unwrap();
    lying[0].1[fs_at + 1] += 1;
    lying[0].1[tail - 3] += 1;
    let lying_root = lying[0].0.with_same_prefix_for(&lying[0].1);
    lying[0].0 = lying_root.clone();
    expect_car_failure(&lying_root, common::encode_car(&lying_root, &lying), |e| {
        matches!(e, VerifyError::ChildSizeMismatch { .. })
    })
    .await;
    // Hash-length bomb.
    let mut bomb = car[..car[0] as usize + 1].to_vec();
    bomb.extend([40, 0x01, 0x55, 0x12, 0xff, 0xff, 0xff, 0xff, 0x0f]);
    bomb.extend([0u8; 35]);
    expect_car_failure(&root, bomb, |e| {
        matches!(e, VerifyError::Car(CarError::DigestTooLong(_)))
    })
    .await;
    // An extra unrelated block does not hurt.
    let mut extra = blocks.clone();
    extra.insert(
        1,
        (
            cid_of_bytes(b"junk", Profile::KuboDefaultV0),
            attesta_content::unixfs::file_node(Some(b"junk"), 4, &[]),
        ),
    );
    let gw = Gateway::start(Mode::FixedCar(common::encode_car(&root, &extra))).await;
    let dir = tempfile::tempdir().unwrap();
    let m = Fetcher::new(config(&[&gw]), store(&dir))
        .fetch(&root, &NoProgress)
        .await
        .unwrap();
    assert_eq!(std::fs::read(m.path).unwrap(), common::det(307_200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_fetches_of_one_cid_share_one_download() {
    let gw = Gateway::start(Mode::Slow(Duration::from_millis(300))).await;
    let data = common::det(1_000_000);
    let root = gw.add(&data, Profile::KuboCidV1RawLeaves);
    let dir = tempfile::tempdir().unwrap();
    let f = Fetcher::new(config(&[&gw]), store(&dir));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let f = f.clone();
            let root = root.clone();
            tokio::spawn(async move { f.fetch(&root, &NoProgress).await })
        })
        .collect();
    let mut paths = Vec::new();
    for t in tasks {
        paths.push(t.await.unwrap().unwrap().path);
    }
    assert!(paths.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(
        gw.counters.car.load(Ordering::SeqCst),
        1,
        "one download for 8 callers"
    );
    // Already stored: no further requests.
    f.fetch(&root, &NoProgress).await.unwrap();
    assert_eq!(gw.counters.car.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn transient_errors_are_retried_then_fail_over() {
    let data = common::det(5000);
    let flaky = Gateway::start(Mode::Flaky(2)).await;
    let root = flaky.add(&data, Profile::KuboDefaultV0);
    let dir = tempfile::tempdir().unwrap();
    let m = Fetcher::new(config(&[&flaky]), store(&dir))
        .fetch(&root, &NoProgress)
        .await
        .unwrap();
    assert_eq!(std::fs::read(m.path).unwrap(), data);
    assert_eq!(flaky.counters.car.load(Ordering::SeqCst), 3);

    let broken = Gateway::start(Mode::Flaky(100)).await;
    broken.add(&data, Profile::KuboDefaultV0);
    let slow = Gateway::start(Mode::Slow(Duration::from_secs(3))).await;
    slow.add(&data, Profile::KuboDefaultV0);
    let honest = Gateway::start(Mode::Honest).await;
    honest.add(&data, Profile::KuboDefaultV0);
    let dir = tempfile::tempdir().unwrap();
    let stats = FetchStats::default();
    let cfg = GatewayConfig {
        retries: 1,
        timeout: Duration::from_millis(300),
        ..config(&[&broken, &slow, &honest])
    };
    let f = Fetcher::new(cfg, store(&dir)).with_observer(Arc::new(stats.clone()));
    f.fetch(&root, &NoProgress).await.unwrap();
    assert_eq!(
        broken.counters.car.load(Ordering::SeqCst),
        2,
        "1 try + 1 retry"
    );
    assert_eq!(slow.counters.car.load(Ordering::SeqCst), 2);
    let snap = stats.snapshot();
    assert_eq!(
        (
            snap[&broken.url].failed,
            snap[&slow.url].failed,
            snap[&honest.url].ok
        ),
        (1, 1, 1)
    );

    let dir = tempfile::tempdir().unwrap();
    let cfg = GatewayConfig {
        retries: 0,
        timeout: Duration::from_millis(300),
        ..config(&[&broken, &slow])
    };
    let failures = all_failed(
        Fetcher::new(cfg, store(&dir))
            .fetch(&root, &NoProgress)
            .await
            .unwrap_err(),
    );
    assert!(matches!(failures[0].error, AttemptError::Status(503)));
    assert!(matches!(failures[1].error, AttemptError::Timeout));
}

#[tokio::test]
async fn gateways_without_car_support_are_used_block_by_block() {
    let gw = Gateway::start(Mode::NoCar).await;
    let data = common::det(3 * 262_144 + 5);
    let root = gw.add(&data, Profile::KuboDefaultV0);
    let dir = tempfile::tempdir().unwrap();
    let m = Fetcher::new(config(&[&gw]), store(&dir))
        .fetch(&root, &NoProgress)
        .await
        .unwrap();
    assert!(std::fs::read(m.path).unwrap() == data);
    assert_eq!(gw.counters.car.load(Ordering::SeqCst), 1);
    assert_eq!(gw.counters.raw.load(Ordering::SeqCst), 5, "root + 4 leaves");
}

#[tokio::test]
async fn size_caps_refuse_large_models_before_storing() {
    let gw = Gateway::start(Mode::Honest).await;
    let data = common::det(307_200);
    let root = gw.add(&data, Profile::KuboDefaultV0);
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir);
    let cfg = GatewayConfig {
        max_model_bytes: 300_000,
        ..config(&[&gw])
    };
    let failures = all_failed(
        Fetcher::new(cfg, s.clone())
            .fetch(&root, &NoProgress)
            .await
            .unwrap_err(),
    );
    assert!(matches!(
        failures[0].error,
        AttemptError::Verify(VerifyError::FileTooLarge {
            size: 307_200,
            max: 300_000
        })
    ));
    assert_empty(&dir, &s);
    let cfg = GatewayConfig {
        max_block_bytes: 1000,
        prefer_car: false,
        ..config(&[&gw])
    };
    let failures = all_failed(
        Fetcher::new(cfg, s.clone())
            .fetch(&root, &NoProgress)
            .await
            .unwrap_err(),
    );
    assert!(matches!(
        failures[0].error,
        AttemptError::Verify(VerifyError::BlockTooLarge { .. })
    ));
    assert_empty(&dir, &s);
}

#[tokio::test]
async fn the_budget_evicts_lru_models_but_never_a_pinned_one() {
    let gw = Gateway::start(Mode::Honest).await;
    let files: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i; 400_000]).collect();
    let roots: Vec<Cid> = files
        .iter()
        .map(|d| gw.add(d, Profile::KuboDefaultV0))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let s = ModelStore::open(
        dir.path(),
        StoreOptions {
            max_bytes: Some(900_000),
            ..Default::default()
        },
    )
    .unwrap();
    let f = Fetcher::new(config(&[&gw]), s.clone());
    let (_, pin0) = f.fetch_pinned(&roots[0], &NoProgress).await.unwrap();
    f.fetch(&roots[1], &NoProgress).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    // Model 0 is the least recently used but pinned: model 1 goes.
    f.fetch(&roots[2], &NoProgress).await.unwrap();
    assert!(s.contains(&roots[0]) && !s.contains(&roots[1]) && s.contains(&roots[2]));
    drop(pin0);
    let report = s.gc().unwrap();
    assert!(report.evicted.is_empty(), "within budget");
    // A model larger than the whole budget is refused by the store, after verification.
    let big = gw.add(&vec![7u8; 1_000_000], Profile::KuboDefaultV0);
    let err = f.fetch(&big, &NoProgress).await.unwrap_err();
    assert!(matches!(err, FetchError::Store(_)), "{err}");
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0
    );
}

#[test]
fn gateway_list_from_env_value_goes_first() {
    let cfg = GatewayConfig {
        urls: vec!["http://127.0.0.1:2".into(), "http://127.0.0.1:3".into()],
        ..Default::default()
    }
    .with_env_value(Some("http://127.0.0.1:1, http://127.0.0.1:3"));
    assert_eq!(
        cfg.urls,
        [
            "http://127.0.0.1:1",
            "http://127.0.0.1:3",
            "http://127.0.0.1:2"
        ]
    );
}

#[test]
fn fetch_futures_are_send() {
    fn send<T: Send>(_: &T) {}
    let dir = tempfile::tempdir().unwrap();
    let f = Fetcher::new(GatewayConfig::default(), store(&dir));
    let cid = cid_of_bytes(b"x", Profile::KuboDefaultV0);
    let fut = f.fetch(&cid, &NoProgress);
    send(&fut);
}

#[tokio::test]
async fn a_gateway_missing_a_block_fails_with_missing_block_or_truncated() {
    let data = common::det(4 * 262_144);
    let (root, mut blocks) =
        attesta_content::import_reader(&data[..], Profile::KuboCidV1RawLeaves, Vec::new()).unwrap();
    blocks.remove(2); // the third leaf
    let gw = Gateway::start(Mode::Honest).await;
    gw.add_blocks(&root, blocks);
    for (prefer_car, expect) in [(false, "missing_block"), (true, "truncated")] {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        let cfg = GatewayConfig {
            prefer_car,
            ..config(&[&gw])
        };
        let failures = all_failed(
            Fetcher::new(cfg, s.clone())
                .fetch(&root, &NoProgress)
                .await
                .unwrap_err(),
        );
        assert_eq!(failures[0].error.kind(), expect, "{:?}", failures[0]);
        assert_empty(&dir, &s);
    }
}

#[tokio::test]
async fn a_gateway_that_drips_bytes_is_cut_off() {
    let data = common::det(5000);
    let drip = Gateway::start(Mode::Drip(Duration::from_millis(20))).await;
    let root = drip.add(&data, Profile::KuboDefaultV0);
    let honest = Gateway::start(Mode::Honest).await;
    honest.add(&data, Profile::KuboDefaultV0);
    for prefer_car in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = GatewayConfig {
            retries: 0,
            timeout: Duration::from_millis(200),
            min_bytes_per_sec: 1_000_000,
            prefer_car,
            ..config(&[&drip, &honest])
        };
        let stats = FetchStats::default();
        let started = std::time::Instant::now();
        let m = Fetcher::new(cfg, store(&dir))
            .with_observer(Arc::new(stats.clone()))
            .fetch(&root, &NoProgress)
            .await
            .unwrap();
        assert_eq!(std::fs::read(m.path).unwrap(), data);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "cut off early, not after the whole drip"
        );
        assert_eq!(stats.snapshot()[&drip.url].failed, 1);
    }
}

#[tokio::test]
async fn repeated_blocks_are_replayed_from_the_temp_file() {
    // Identical chunks: the DAG (and the CAR) holds the leaf once, the file holds it 5 times.
    let mut data = vec![0u8; 5 * 262_144];
    data.extend_from_slice(b"tail");
    let gw = Gateway::start(Mode::Honest).await;
    for profile in [Profile::KuboDefaultV0, Profile::KuboCidV1RawLeaves] {
        let root = gw.add(&data, profile);
        for prefer_car in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let cfg = GatewayConfig {
                prefer_car,
                ..config(&[&gw])
            };
            let m = Fetcher::new(cfg, store(&dir))
                .fetch(&root, &NoProgress)
                .await
                .unwrap();
            assert!(
                std::fs::read(&m.path).unwrap() == data,
                "{profile} car={prefer_car}"
            );
            assert_eq!(m.sha256_hex(), common::sha256_hex(&data));
        }
    }
}

#[tokio::test]
async fn redirects_are_followed_within_the_gateway_origin_only() {
    let data = common::det(300_000);

    // Same origin: followed, the model arrives verified.
    let same = Gateway::start(Mode::RedirectSameOrigin).await;
    let cid = same.add(&data, Profile::KuboDefaultV0);
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir);
    let m = Fetcher::new(config(&[&same]), s.clone())
        .fetch(&cid, &NoProgress)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&m.path).unwrap(), data);

    // Another origin (another port on the same host) holding the very same content: refused
    // with a typed error, the target is never asked, nothing is stored.
    let elsewhere = Gateway::start(Mode::Honest).await;
    assert_eq!(elsewhere.add(&data, Profile::KuboDefaultV0), cid);
    let bouncer = Gateway::start(Mode::RedirectTo(elsewhere.url.clone())).await;
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir);
    let err = Fetcher::new(config(&[&bouncer]), s.clone())
        .fetch(&cid, &NoProgress)
        .await
        .unwrap_err();
    let failures = all_failed(err);
    assert_eq!(failures.len(), 1);
    match &failures[0].error {
        AttemptError::CrossOriginRedirect { from, to } => {
            assert_eq!(from, &bouncer.url);
            assert_eq!(to, &elsewhere.url);
        }
        other => panic!("expected a cross-origin redirect error, got {other}"),
    }
    assert!(!failures[0].error.is_retryable());
    assert_eq!(failures[0].error.kind(), "cross_origin_redirect");
    let asked = elsewhere.counters.car.load(Ordering::SeqCst)
        + elsewhere.counters.raw.load(Ordering::SeqCst);
    assert_eq!(asked, 0, "the other origin must not be contacted");
    assert_empty(&dir, &s);
}
