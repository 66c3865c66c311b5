//! The parent side of isolated loading against stand-in probe processes
//! (`sh` scripts): a probe past its deadline or no longer awaited is killed,
//! and its end is judged by kind (time, memory, refusal), not by text codes.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use attesta_content::importer::Profile;
use attesta_content::store::{ModelStore, StoreOptions};
use attesta_engine::tract::TractEngine;
use attesta_engine::{EngineError, Limits};
use attesta_node::cache::ModelCache;
use attesta_node::loader::{Isolation, LoadConfig, LoadError, Loader, ProbeCommand};
use attesta_node::metrics::Metrics;
use attesta_node::source::LocalStore;

fn loader(script: &str, timeout: Duration) -> Loader {
    let cmd = ProbeCommand {
        program: "sh".into(),
        // `sh -c SCRIPT sh FLAGS...`: the probe flags become $1.. and are ignored.
        args: vec!["-c".into(), script.into(), "sh".into()],
    };
    Loader::new(
        Arc::new(TractEngine::new(1)),
        Limits::default(),
        LoadConfig {
            timeout,
            max_memory: 1 << 30,
            max_concurrent: 1,
            isolation: Isolation::Process(cmd),
        },
    )
}

/// True while `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

async fn pid_in(file: &Path) -> u32 {
    for _ in 0..200 {
        if let Some(pid) = std::fs::read_to_string(file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            return pid;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the probe never wrote its pid");
}

async fn gone(pid: u32) -> bool {
    for _ in 0..200 {
        if !alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

#[tokio::test]
async fn a_probe_past_its_deadline_is_killed_and_judged_over_time() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let script = format!("echo $$ > {}; exec sleep 30", pidfile.display());
    let l = loader(&script, Duration::from_millis(500));
    let started = Instant::now();
    let e = l.probe(l.engine().as_ref(), b"model").await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(matches!(e, LoadError::OverTime { .. }), "{e:?}");
    assert!(e.is_verdict());
    assert!(e.to_string().contains("time budget"), "{e}");
    assert!(
        gone(pid_in(&pidfile).await).await,
        "the probe outlived its deadline"
    );
}

#[tokio::test]
async fn a_probe_nobody_waits_for_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let script = format!("echo $$ > {}; exec sleep 30", pidfile.display());
    let l = Arc::new(loader(&script, Duration::from_secs(60)));
    let task = tokio::spawn({
        let l = l.clone();
        async move { l.probe(l.engine().as_ref(), b"model").await.map(|_| ()) }
    });
    let pid = pid_in(&pidfile).await;
    assert!(alive(pid));
    task.abort();
    assert!(gone(pid).await, "an abandoned probe kept running");
}

#[tokio::test]
async fn an_allocation_failure_is_judged_over_memory() {
    let l = loader(
        "cat > /dev/null; echo 'memory allocation of 1048576 bytes failed' >&2; kill -ABRT $$",
        Duration::from_secs(10),
    );
    let e = l.probe(l.engine().as_ref(), b"model").await.unwrap_err();
    assert!(
        matches!(e, LoadError::OverMemory { budget } if budget == 1 << 30),
        "{e:?}"
    );
    assert!(e.is_verdict());
    assert!(e.to_string().contains("memory budget"), "{e}");
}

#[tokio::test]
async fn a_refusal_report_becomes_a_remembered_engine_error() {
    let l = loader(
        r#"cat > /dev/null; echo '{"outcome":"refused","message":"unsupported op Foo"}'"#,
        Duration::from_secs(10),
    );
    let e = l.probe(l.engine().as_ref(), b"model").await.unwrap_err();
    match &e {
        LoadError::Engine(inner) => {
            assert!(matches!(&**inner, EngineError::Load(m) if m == "unsupported op Foo"))
        }
        other => panic!("{other:?}"),
    }
    assert!(e.is_verdict());
}

#[tokio::test]
async fn a_probe_that_cannot_limit_itself_is_a_node_fault() {
    let l = loader(
        r#"cat > /dev/null; echo '{"outcome":"unavailable","message":"no rlimits"}'"#,
        Duration::from_secs(10),
    );
    let e = l.probe(l.engine().as_ref(), b"model").await.unwrap_err();
    assert!(matches!(e, LoadError::Unavailable { .. }), "{e:?}");
    assert!(
        !e.is_verdict(),
        "a node fault must not be remembered as the model's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_kills_a_probe_when_its_last_request_gives_up() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let script = format!("echo $$ > {}; exec sleep 30", pidfile.display());
    let store = ModelStore::open(dir.path().join("models"), StoreOptions::default()).unwrap();
    let file = dir.path().join("m.onnx");
    std::fs::write(&file, b"any bytes").unwrap();
    let cid = store.add_file(&file, Profile::KuboDefaultV0).unwrap().cid;
    let metrics = Arc::new(Metrics::new());
    let cache = ModelCache::new(
        loader(&script, Duration::from_secs(60)),
        1 << 30,
        Duration::from_millis(500),
        Arc::new(LocalStore::new(store)),
        metrics.clone(),
    );
    let e = match cache.get(&cid).await {
        Ok(_) => panic!("the stand-in probe cannot load anything"),
        Err(e) => e,
    };
    assert_eq!((e.status.as_u16(), e.code), (503, "timeout"));
    assert!(
        gone(pid_in(&pidfile).await).await,
        "the abandoned probe kept running"
    );
    assert_eq!(cache.loads_in_flight(), 0);
    // Giving up is not a verdict on the model.
    assert!(cache.failure(&cid).is_none());
    assert!(
        metrics
            .render()
            .contains("attesta_model_loads_abandoned_total 1")
    );
}
