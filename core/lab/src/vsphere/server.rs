//! The HTTP side: an accept loop on 127.0.0.1 that can cut a connection mid-request,
//! `/sdk` for SOAP and `/folder` for datastore files, with fault injection in front.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tracing::Instrument as _;

use super::Site;
use super::faults::Fault;
use super::folder::{self, COOKIE, session_cookie};
use super::methods::{self, Reply};
use super::soap;
use super::updates;

/// Cuts the connection the request arrived on.
#[derive(Clone)]
struct ConnKill(Arc<Notify>);

/// Largest SOAP body accepted; datastore uploads go through `/folder`, which streams.
const SOAP_BODY_LIMIT: usize = 16 << 20;

fn routes(site: Arc<Site>) -> Router {
    Router::new()
        .route("/sdk", post(soap_handler))
        .route("/folder/{*path}", get(folder_get).put(folder_put))
        .layer(axum::extract::DefaultBodyLimit::max(SOAP_BODY_LIMIT))
        .with_state(site)
}

/// Binds 127.0.0.1 on an ephemeral port and serves until `shutdown` fires or the returned
/// task is aborted; either way every open connection is closed.
pub async fn serve(
    site: Arc<Site>,
) -> std::io::Result<(SocketAddr, oneshot::Sender<()>, JoinHandle<()>)> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let (tx, mut rx) = oneshot::channel::<()>();
    let router = routes(site);
    let task = tokio::spawn(async move {
        // Owning the connections here means dropping this task (abort or shutdown) aborts them.
        let mut conns = JoinSet::new();
        loop {
            while conns.try_join_next().is_some() {}
            tokio::select! {
                _ = &mut rx => break,
                accepted = listener.accept() => {
                    let Ok((stream, peer)) = accepted else { continue };
                    let kill = Arc::new(Notify::new());
                    let app = router.clone().layer(Extension(ConnKill(kill.clone())));
                    conns.spawn(async move {
                        let conn = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
                        tokio::select! {
                            r = conn => if let Err(e) = r { tracing::debug!(%peer, error = %e, "connection ended") },
                            _ = kill.notified() => tracing::info!(%peer, "connection dropped by fault injection"),
                        }
                    });
                }
            }
        }
    });
    Ok((addr, tx, task))
}

/// Applies latency and connection drops; returns `true` when the connection is being cut.
async fn inject(site: &Site, kill: &ConnKill, method: &str) -> bool {
    let (delay, drop) = {
        let mut inj = site.injections.lock().unwrap_or_else(|e| e.into_inner());
        (inj.latency_for(method), inj.take_drop(method))
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if drop {
        kill.0.notify_one();
    }
    drop
}

fn take_fault(site: &Site, method: &str) -> Option<Fault> {
    site.injections
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take_fault(method)
}

fn xml(status: StatusCode, body: Vec<u8>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

fn fault_response(f: &Fault) -> Response {
    xml(StatusCode::INTERNAL_SERVER_ERROR, soap::fault_document(f))
}

async fn soap_handler(
    State(site): State<Arc<Site>>,
    Extension(kill): Extension<ConnKill>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let op = match soap::parse_request(&body) {
        Ok(op) => op,
        Err(e) => return fault_response(&Fault::invalid_request(&e.to_string())),
    };
    let method = op.name.clone();
    let span = tracing::info_span!("vsphere.soap", method = %method, this = tracing::field::Empty);
    if let Some(t) = op.child("_this").and_then(soap::Element::as_moref) {
        span.record("this", tracing::field::display(&t));
    }
    async move {
        if inject(&site, &kill, &method).await {
            // The connection task is being torn down; never answer.
            std::future::pending::<()>().await;
        }
        let throttled = site.injections.lock().unwrap_or_else(|e| e.into_inner()).take_throttle(&method);
        if let Some(secs) = throttled {
            tracing::info!(retry_after = secs, "injected throttle");
            return (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, secs.to_string())], "Too Many Requests").into_response();
        }
        if let Some(f) = take_fault(&site, &method) {
            tracing::info!(fault = f.kind, "injected fault");
            return fault_response(&f);
        }
        let cookie = session_cookie(&headers);
        if matches!(
            method.as_str(),
            "WaitForUpdatesEx" | "WaitForUpdates" | "CheckForUpdates"
        ) {
            // Waiting must not hold the inventory lock, so it runs outside `methods::call`.
            return match updates::wait(&site, &op, cookie.as_deref()).await {
                Ok(v) => xml(StatusCode::OK, soap::response(&method, &v)),
                Err(f) => fault_response(&f),
            };
        }
        match methods::call(&site, &op, cookie.as_deref()) {
            Ok(Reply::Values(v)) => xml(StatusCode::OK, soap::response(&method, &v)),
            Ok(Reply::LoggedIn { key, session }) => {
                let mut r = xml(StatusCode::OK, soap::response(&method, &[session]));
                // Not `Secure`: the lab serves plain HTTP on loopback.
                if let Ok(v) = format!("{COOKIE}=\"{key}\"; Path=/; HttpOnly").parse() {
                    r.headers_mut().insert(header::SET_COOKIE, v);
                }
                r
            }
            Ok(Reply::LoggedOut) => {
                let mut r = xml(StatusCode::OK, soap::response(&method, &[]));
                if let Ok(v) = format!("{COOKIE}=\"\"; Path=/; Max-Age=0").parse() {
                    r.headers_mut().insert(header::SET_COOKIE, v);
                }
                r
            }
            Err(f) => {
                tracing::debug!(fault = f.kind, message = %f.message, "fault");
                fault_response(&f)
            }
        }
    }
    .instrument(span)
    .await
}

async fn folder_get(
    State(site): State<Arc<Site>>,
    Extension(kill): Extension<ConnKill>,
    Path(path): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let span = tracing::info_span!("vsphere.folder", method = "GET", path = %path);
    async move {
        if inject(&site, &kill, "GET /folder").await {
            std::future::pending::<()>().await;
        }
        if let Some(f) = take_fault(&site, "GET /folder") {
            return (StatusCode::INTERNAL_SERVER_ERROR, f.message).into_response();
        }
        folder::get(site, path, query, headers).await
    }
    .instrument(span)
    .await
}

async fn folder_put(
    State(site): State<Arc<Site>>,
    Extension(kill): Extension<ConnKill>,
    Path(path): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let span = tracing::info_span!("vsphere.folder", method = "PUT", path = %path);
    async move {
        if inject(&site, &kill, "PUT /folder").await {
            std::future::pending::<()>().await;
        }
        if let Some(f) = take_fault(&site, "PUT /folder") {
            return (StatusCode::INTERNAL_SERVER_ERROR, f.message).into_response();
        }
        folder::put(site, path, query, headers, body).await
    }
    .instrument(span)
    .await
}
