//! Model store: atomic adds, persistence, crash leftovers, budget, LRU and pins.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers: failing loudly is the point

use crate::common;

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use attesta_content::store::Clock;
use attesta_content::{ModelStore, Profile, StoreError, StoreOptions, cid_of_bytes};

fn write(dir: &Path, name: &str, data: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

/// A clock that advances one second per reading, so LRU order is deterministic.
fn ticking() -> Clock {
    let t = Arc::new(AtomicU64::new(1_700_000_000));
    Clock::from_fn(move || UNIX_EPOCH + Duration::from_secs(t.fetch_add(1, Ordering::SeqCst)))
}

fn tmp_entries(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("tmp")).unwrap().count()
}

#[test]
fn add_file_stores_under_the_cid_and_is_idempotent() {
    let src = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let store = ModelStore::open(root.path(), StoreOptions::default()).unwrap();
    let data = common::det(700_000);
    let path = write(src.path(), "m.onnx", &data);
    for profile in Profile::ALL {
        let m = store.add_file(&path, profile).unwrap();
        assert_eq!(m.cid, cid_of_bytes(&data, profile));
        assert_eq!(m.size, data.len() as u64);
        assert_eq!(m.sha256_hex(), common::sha256_hex(&data));
        assert_eq!(std::fs::read(&m.path).unwrap(), data);
        let again = store.add_file(&path, profile).unwrap();
        assert_eq!(again.cid, m.cid);
        assert_eq!(again.added_at, m.added_at);
    }
    assert_eq!(store.list().unwrap().len(), 3);
    assert_eq!(tmp_entries(root.path()), 0);
}

#[test]
fn reopen_keeps_models_and_cleans_crash_leftovers() {
    let src = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let data = b"hello world";
    let path = write(src.path(), "hello", data);
    let cid = {
        let store = ModelStore::open(root.path(), StoreOptions::default()).unwrap();
        store.add_file(&path, Profile::KuboDefaultV0).unwrap().cid
    };
    // Simulated crashes: a half-written temp file, an orphan blob, metadata without a blob.
    std::fs::write(root.path().join("tmp/123-0-0.part"), b"partial").unwrap();
    let orphan = cid_of_bytes(b"orphan", Profile::KuboDefaultV0);
    std::fs::write(
        root.path().join("blobs").join(orphan.to_string()),
        b"orphan",
    )
    .unwrap();
    let ghost = cid_of_bytes(b"ghost", Profile::KuboDefaultV0);
    let other = std::fs::read_to_string(root.path().join(format!("meta/{cid}.json"))).unwrap();
    std::fs::write(
        root.path().join(format!("meta/{ghost}.json")),
        other.replace(&cid.to_string(), &ghost.to_string()),
    )
    .unwrap();
    // A blob whose size no longer matches its metadata (truncated by a crash or by hand).
    let store = ModelStore::open(root.path(), StoreOptions::default()).unwrap();
    let listed: Vec<_> = store.list().unwrap().into_iter().map(|m| m.cid).collect();
    assert_eq!(listed, vec![cid.clone()]);
    assert_eq!(tmp_entries(root.path()), 0);
    assert!(!root.path().join("blobs").join(orphan.to_string()).exists());
    assert!(!root.path().join(format!("meta/{ghost}.json")).exists());
    let m = store.get(&cid).unwrap().unwrap();
    assert_eq!(std::fs::read(m.path).unwrap(), data);

    std::fs::OpenOptions::new()
        .append(true)
        .open(root.path().join("blobs").join(cid.to_string()))
        .unwrap()
        .write_all(b"x")
        .unwrap();
    let store = ModelStore::open(root.path(), StoreOptions::default()).unwrap();
    assert!(
        store.list().unwrap().is_empty(),
        "a blob that changed size is dropped"
    );
}

#[test]
fn get_touches_last_used_and_missing_is_none() {
    let src = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let store = ModelStore::open(
        root.path(),
        StoreOptions {
            max_bytes: None,
            clock: ticking(),
        },
    )
    .unwrap();
    let m = store
        .add_file(&write(src.path(), "a", b"aaa"), Profile::KuboDefaultV0)
        .unwrap();
    let later = store.get(&m.cid).unwrap().unwrap();
    assert!(later.last_used > m.last_used);
    assert_eq!(later.added_at, m.added_at);
    assert!(
        store
            .get(&cid_of_bytes(b"nope", Profile::KuboDefaultV0))
            .unwrap()
            .is_none()
    );
    assert!(store.contains(&m.cid));
    assert!(store.remove(&m.cid).unwrap());
    assert!(!store.contains(&m.cid));
    assert!(!store.remove(&m.cid).unwrap());
    assert!(!m.path.exists());
}

#[test]
fn budget_evicts_least_recently_used_but_never_pinned() {
    let src = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let store = ModelStore::open(
        root.path(),
        StoreOptions {
            max_bytes: Some(2500),
            clock: ticking(),
        },
    )
    .unwrap();
    let add = |name: &str, fill: u8| {
        store
            .add_file(
                &write(src.path(), name, &[fill; 1000]),
                Profile::KuboDefaultV0,
            )
            .unwrap()
    };
    let a = add("a", 1);
    let b = add("b", 2);
    let pin_a = store.pin(&a.cid);
    // a is the least recently used, but pinned: adding c must evict b instead.
    let c = add("c", 3);
    assert!(store.contains(&a.cid));
    assert!(!store.contains(&b.cid), "b should have been evicted");
    assert!(store.contains(&c.cid));
    assert!(matches!(store.remove(&a.cid), Err(StoreError::Pinned(_))));
    drop(pin_a);
    assert!(!store.is_pinned(&a.cid));
    // Touch a so c becomes the LRU, then d evicts c.
    store.get(&a.cid).unwrap();
    let d = add("d", 4);
    assert!(store.contains(&a.cid) && store.contains(&d.cid) && !store.contains(&c.cid));
    assert_eq!(store.total_bytes(), 2000);
    let report = store.gc().unwrap();
    assert!(report.evicted.is_empty());
    assert_eq!(report.total_bytes, 2000);
}

#[test]
fn gc_with_everything_pinned_evicts_nothing_and_cleans_tmp() {
    let src = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let big = ModelStore::open(root.path(), StoreOptions::default()).unwrap();
    let a = big
        .add_file(&write(src.path(), "a", &[1; 1000]), Profile::KuboDefaultV0)
        .unwrap();
    let b = big
        .add_file(&write(src.path(), "b", &[2; 1000]), Profile::KuboDefaultV0)
        .unwrap();
    drop(big);
    let store = ModelStore::open(
        root.path(),
        StoreOptions {
            max_bytes: Some(500),
            clock: ticking(),
        },
    )
    .unwrap();
    let _pa = store.pin(&a.cid);
    let _pb = store.pin(&b.cid);
    let in_flight = store.begin().unwrap();
    std::fs::write(root.path().join("tmp/stale.part"), b"x").unwrap();
    let report = store.gc().unwrap();
    assert!(report.evicted.is_empty());
    assert_eq!(
        report.tmp_removed, 1,
        "only the stale file, not the in-flight one"
    );
    assert_eq!(tmp_entries(root.path()), 1);
    drop(in_flight);
    assert_eq!(tmp_entries(root.path()), 0);
    drop(_pa);
    let report = store.gc().unwrap();
    assert_eq!(report.evicted, vec![a.cid.clone()]);
    assert_eq!(report.freed_bytes, 1000);
}

#[test]
fn a_model_larger_than_the_budget_is_refused_and_leaves_nothing() {
    let src = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let store = ModelStore::open(
        root.path(),
        StoreOptions {
            max_bytes: Some(100),
            ..Default::default()
        },
    )
    .unwrap();
    let err = store
        .add_file(&write(src.path(), "big", &[9; 101]), Profile::KuboDefaultV0)
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::TooLarge {
                size: 101,
                max: 100
            }
        ),
        "{err}"
    );
    assert!(store.list().unwrap().is_empty());
    assert_eq!(tmp_entries(root.path()), 0);
    assert_eq!(
        std::fs::read_dir(root.path().join("blobs"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn missing_source_is_a_typed_error() {
    let root = tempfile::tempdir().unwrap();
    let store = ModelStore::open(root.path(), StoreOptions::default()).unwrap();
    let err = store
        .add_file(Path::new("/nonexistent/model.onnx"), Profile::KuboDefaultV0)
        .unwrap_err();
    assert!(matches!(err, StoreError::Io { op: "open", .. }), "{err}");
}

#[test]
fn concurrent_adds_from_many_threads() {
    let src = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let store = ModelStore::open(root.path(), StoreOptions::default()).unwrap();
    let paths: Vec<_> = (0..4u8)
        .map(|i| write(src.path(), &format!("f{i}"), &vec![i; 300_000]))
        .collect();
    std::thread::scope(|s| {
        for t in 0..8 {
            let store = store.clone();
            let paths = &paths;
            s.spawn(move || {
                for i in 0..4 {
                    let p = &paths[(i + t) % 4];
                    let m = store.add_file(p, Profile::KuboDefaultV0).unwrap();
                    let _pin = store.pin(&m.cid);
                    assert_eq!(std::fs::read(&m.path).unwrap().len(), 300_000);
                }
            });
        }
    });
    assert_eq!(store.list().unwrap().len(), 4);
    assert_eq!(tmp_entries(root.path()), 0);
    let _ = SystemTime::now();
}

#[test]
fn a_model_added_by_another_handle_on_the_directory_is_found_on_a_miss() {
    let src = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    // The serving handle opens the directory first and indexes it (empty).
    let serving = ModelStore::open(root.path(), StoreOptions::default()).unwrap();
    let data = common::det(300_000);
    let cid = cid_of_bytes(&data, Profile::KuboDefaultV0);
    assert!(serving.get(&cid).unwrap().is_none());

    // Another handle (as `attesta models add` in another process) commits the model.
    let adder = ModelStore::open(root.path(), StoreOptions::default()).unwrap();
    let path = write(src.path(), "m.onnx", &data);
    adder.add_file(&path, Profile::KuboDefaultV0).unwrap();

    // The serving handle finds it without reopening.
    assert!(serving.contains(&cid));
    let m = serving
        .get(&cid)
        .unwrap()
        .expect("found on disk after a miss");
    assert_eq!(std::fs::read(&m.path).unwrap(), data);
    assert_eq!(m.sha256_hex(), common::sha256_hex(&data));
    assert_eq!(serving.list().unwrap().len(), 1);

    // A half-committed model (blob without metadata, or metadata naming a short blob) is not.
    let other = common::det(1000);
    let other_cid = cid_of_bytes(&other, Profile::KuboDefaultV0);
    std::fs::write(
        root.path().join("blobs").join(other_cid.to_string()),
        &other,
    )
    .unwrap();
    assert!(serving.get(&other_cid).unwrap().is_none());
    let meta = serde_json::json!({
        "cid": other_cid.to_string(), "size": 5000, "sha256": common::sha256_hex(&other),
        "added_at_ms": 1, "last_used_ms": 1,
    });
    std::fs::write(
        root.path().join("meta").join(format!("{other_cid}.json")),
        meta.to_string(),
    )
    .unwrap();
    assert!(serving.get(&other_cid).unwrap().is_none());
    assert!(!serving.contains(&other_cid));
}
