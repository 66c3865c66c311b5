//! Ctrl-C and SIGTERM, the two ways an operator or a supervisor asks us to stop.

/// Resolves when the process receives Ctrl-C (SIGINT) or SIGTERM.
pub async fn stop_requested() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            // Without a SIGTERM handler, Ctrl-C still works.
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Serves `app` until a stop signal, then lets in-flight requests drain for
/// at most `drain`: a request stuck behind a long model load or a hung run
/// must not keep the process alive.
pub async fn serve_until_stopped(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    drain: std::time::Duration,
) -> std::io::Result<()> {
    let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = attesta_node::serve(listener, app, async move {
        stop_requested().await;
        tracing::info!(drain_ms = drain.as_millis() as u64, "shutting down");
        let _ = stopped_tx.send(());
    });
    let deadline = async move {
        // Without a signal the sender lives as long as `serving`; pending forever.
        if stopped_rx.await.is_ok() {
            tokio::time::sleep(drain).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        served = serving => served,
        () = deadline => {
            tracing::warn!(drain_ms = drain.as_millis() as u64, "requests still in flight after the drain period; stopping anyway");
            Ok(())
        }
    }
}
