//! Listeners and request dispatch: one axum server per service, all on a private runtime
//! thread so the lab works the same from synchronous and asynchronous callers.

use super::faults::{FaultKind, take_request_faults};
use super::http::{Req, respond};
use super::{Service, Shared};
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::Response;
use std::sync::Arc;
use tracing::Instrument;

/// Requests bigger than this are refused before buffering; Put Page's own 4 MiB limit is
/// checked afterwards so the client gets the service's error instead of a reset.
const MAX_BUFFERED_BODY: usize = 64 << 20;

/// Serves `listener` as `service` until the runtime is shut down.
pub(crate) async fn serve(shared: Arc<Shared>, service: Service, listener: tokio::net::TcpListener) {
    let router = Router::new().fallback(move |req: Request<Body>| {
        let shared = shared.clone();
        async move { dispatch(shared, service, req).await }
    });
    if let Err(e) = axum::serve(listener, router).await {
        tracing::error!(%service, error = %e, "lab listener stopped");
    }
}

async fn dispatch(shared: Arc<Shared>, service: Service, req: Request<Body>) -> Response {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BUFFERED_BODY).await {
        Ok(b) => b,
        Err(_) => return respond(StatusCode::PAYLOAD_TOO_LARGE, &[], "request body too large"),
    };
    let req = Req::new(
        parts.method,
        parts.uri.path(),
        parts.uri.query().unwrap_or(""),
        parts.headers,
        body,
    );
    let span = tracing::info_span!(
        "azure_request",
        %service,
        method = %req.method,
        path = %req.raw_path,
        request_id = %req.request_id,
        status = tracing::field::Empty,
    );
    async move {
        let triggered = take_request_faults(&mut shared.lock().faults, service, &req);
        if !triggered.delay.is_zero() {
            tokio::time::sleep(triggered.delay).await;
        }
        let resp = match triggered.respond {
            Some(FaultKind::DropConnection) => {
                tracing::debug!("dropping the connection (injected fault)");
                // Unwinding ends the connection task that axum spawned for this socket, so the
                // socket closes with no response at all; the runtime contains the unwind.
                // `resume_unwind` skips the panic hook: nothing is reported as a crash.
                std::panic::resume_unwind(Box::new("homeward-lab: injected dropped connection"));
            }
            Some(kind) => fault_response(service, &req, &kind),
            None => match service {
                Service::Login => super::token::handle(&shared, &req),
                Service::ResourceManager => super::arm::handle(&shared, &req),
                Service::Classic => super::classic::handle(&shared, &req),
                Service::Blob => super::blob::handle(&shared, &req),
            },
        };
        tracing::Span::current().record("status", resp.status().as_u16());
        let record = super::RecordedRequest {
            service,
            method: req.method.to_string(),
            path: super::http::decode(&req.raw_path),
            query: req.raw_query.clone(),
            status: resp.status().as_u16(),
            at: std::time::SystemTime::now(),
        };
        let mut st = shared.lock();
        if st.log.len() >= super::state::REQUEST_LOG_LIMIT {
            st.log.pop_front();
        }
        st.log.push_back(record);
        drop(st);
        tracing::debug!("answered");
        resp
    }
    .instrument(span)
    .await
}

/// The throttling or server-error answer a fault asks for, in the service's own dialect.
fn fault_response(service: Service, req: &Req, kind: &FaultKind) -> Response {
    let (status, retry_after, code, message) = match kind {
        FaultKind::Throttle { retry_after_secs } => (
            StatusCode::TOO_MANY_REQUESTS,
            Some(*retry_after_secs),
            if service == Service::Blob { "ServerBusy" } else { "TooManyRequests" },
            "The request is being throttled as the limit has been reached for operation type. Retry after the time in the Retry-After header.".to_string(),
        ),
        FaultKind::ServerError { status } => (
            StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            matches!(status, 503).then_some(1),
            match status {
                503 => "ServiceUnavailable",
                504 => "GatewayTimeout",
                _ => "InternalServerError",
            },
            "The server encountered an internal error. Please retry the request.".to_string(),
        ),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, None, "InternalServerError", String::new()),
    };
    let mut headers: Vec<(&str, String)> = vec![("x-ms-request-id", req.request_id.clone())];
    if let Some(s) = retry_after {
        headers.push(("retry-after", s.to_string()));
    }
    match service {
        Service::ResourceManager => super::arm::error_response(status, code, &message, &headers),
        Service::Login => {
            headers.push(("content-type", "application/json; charset=utf-8".into()));
            let body = serde_json::json!({"error": "temporarily_unavailable", "error_description": format!("AADSTS50196: {message}")});
            respond(status, &headers, body.to_string())
        }
        Service::Classic => super::classic::error_response(status, code, &message, &headers),
        Service::Blob => super::blob::error_response(status, code, &message, &headers),
    }
}
