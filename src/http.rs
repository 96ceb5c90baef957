//! The HTTP side: hyper 1 accept loop (connection slots and idle closes are in
//! `connections`), header and request deadlines, body limit and graceful drain; routes;
//! and the one place where replies become HTTP responses.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioTimer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::intake;
use crate::reply::HookReply;
use crate::web::Body;

mod body;
mod connections;

use body::{BodyError, Budget};
use connections::Slots;

/// How long in-flight requests get to finish once shutdown starts.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// `Retry-After` when the body budget is spent: a burst of large posts is over in
/// about that long.
const BUSY_RETRY_AFTER_SECS: u64 = 5;

/// What a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// The hook listener: hooks, health, metrics, and the web side unless `[web]
    /// listen` gives it its own.
    Hooks,
    /// `[web] listen`: the web side only.
    Web,
}

/// The routes hookd answers.
enum Route<'a> {
    /// `POST /hooks/{token}`.
    Hook(&'a str),
    /// `GET /healthz`.
    Health,
    /// `GET /metrics`.
    Metrics,
    /// A known path with the wrong method.
    WrongMethod,
    /// Anything else.
    NotFound,
}

fn route<'a>(method: &Method, path: &'a str) -> Route<'a> {
    let hook = path
        .strip_prefix("/hooks/")
        .filter(|t| !t.is_empty() && !t.contains('/'));
    match (method, path, hook) {
        (&Method::POST, _, Some(token)) => Route::Hook(token),
        (_, _, Some(_)) => Route::WrongMethod,
        (&Method::GET | &Method::HEAD, "/healthz", _) => Route::Health,
        (&Method::GET | &Method::HEAD, "/metrics", _) => Route::Metrics,
        (_, "/healthz" | "/metrics", _) => Route::WrongMethod,
        _ => Route::NotFound,
    }
}

/// Accepts connections until `shutdown` fires, then lets in-flight requests finish
/// (up to a deadline) and returns.
pub(crate) async fn serve(
    listener: TcpListener,
    app: App,
    role: Role,
    shutdown: CancellationToken,
) {
    let reads: Arc<dyn crate::web::Source> = Arc::new(crate::admin::reads::Reads(app.clone()));
    let streams = crate::web::Streams::new(app.config().web.max_streams, shutdown.clone());
    let slots = Slots::new();
    let budget = Arc::new(Budget::default());
    loop {
        tokio::select! {
            _ = slots.room(app.config().max_connections) => {}
            _ = shutdown.cancelled() => break,
        }
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        // Replies are small and single-write: never hold them back for Nagle.
        let _ = stream.set_nodelay(true);
        let config = app.config();
        let slot = slots.take(config.max_connections);
        let io = slot.watch(stream);
        let service = {
            let (app, budget, requests) = (app.clone(), budget.clone(), slot.requests());
            let (reads, streams) = (reads.clone(), streams.clone());
            service_fn(move |req| {
                let request = requests.start();
                let (app, budget) = (app.clone(), budget.clone());
                let (reads, streams) = (reads.clone(), streams.clone());
                async move {
                    let response = handle(app, budget, &reads, &streams, role, req).await;
                    // A stream keeps its request in progress until it ends, so its
                    // connection is neither closed as idle nor given away at the cap.
                    Ok::<_, Infallible>(response.map(|body| body.holding(request)))
                }
            })
        };
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(config.header_timeout)
            .max_buf_size(64 * 1024)
            .serve_connection(io, service);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = connections::drive(conn, slot, config.idle_timeout, shutdown).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_DEADLINE, slots.drained())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests did not finish within the drain deadline");
    }
}

async fn handle(
    app: App,
    budget: Arc<Budget>,
    reads: &Arc<dyn crate::web::Source>,
    streams: &crate::web::Streams,
    role: Role,
    req: Request<Incoming>,
) -> Response<Body> {
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let route = match role {
        Role::Hooks => route(req.method(), req.uri().path()),
        Role::Web => Route::NotFound,
    };
    let response = match route {
        Route::Hook(token) => {
            let token = token.to_owned();
            hook(&app, &budget, &token, req).await
        }
        Route::Health => health(&app).await,
        Route::Metrics => metrics(&app).await,
        Route::WrongMethod => json(
            StatusCode::METHOD_NOT_ALLOWED,
            r#"{"status":"method_not_allowed"}"#,
        ),
        Route::NotFound => web(&app, reads, streams, role, &req)
            .await
            .unwrap_or_else(|| json(StatusCode::NOT_FOUND, r#"{"status":"not_found"}"#)),
    };
    tracing::debug!(%method, status = response.status().as_u16(), micros = started.elapsed().as_micros() as u64, "request");
    response
}

/// The web side's reply, when this listener serves it and the path is one of its.
async fn web(
    app: &App,
    reads: &Arc<dyn crate::web::Source>,
    streams: &crate::web::Streams,
    role: Role,
    req: &Request<Incoming>,
) -> Option<Response<Body>> {
    let web = &app.config().web;
    let here = web.enabled && (role == Role::Web || web.listen.is_none());
    if !here {
        return None;
    }
    let uri = req.uri();
    let (method, headers) = (req.method(), req.headers());
    crate::web::handle(reads, streams, method, uri.path(), uri.query(), headers).await
}

/// `POST /hooks/{token}`: check the declared size and the token, read the body within
/// the limits, then hand it to the intake.
async fn hook(
    app: &App,
    budget: &Arc<Budget>,
    token: &str,
    req: Request<Incoming>,
) -> Response<Body> {
    let config = app.config();
    if body::declared_length(req.headers()).is_some_and(|len| len > config.max_body_bytes) {
        return body_refused(&BodyError::TooLarge, config.max_body_bytes);
    }
    let Some(target) = intake::target(&app.routes, &app.key(), token) else {
        // The body is never read, so the connection cannot carry another request.
        return close(hook_response(HookReply::NotFound));
    };
    let (parts, body) = req.into_parts();
    let limits = body::Limits {
        max_bytes: config.max_body_bytes,
        budget_bytes: config.body_budget_bytes,
        deadline: config.request_timeout,
    };
    let body = match body::read(body, &parts.headers, budget, &limits).await {
        Ok(body) => body,
        Err(e) => return body_refused(&e, config.max_body_bytes),
    };
    let ctx = intake::Context {
        scheduler: &app.scheduler,
        store: &app.store,
        metrics: &app.metrics,
        allow_sha1: config.allow_sha1,
    };
    let reply = intake::handle(ctx, target, &parts.headers, parts.uri.query(), body.bytes).await;
    hook_response(reply)
}

/// The reply to a body that was not read to its end; the connection cannot carry
/// another request.
fn body_refused(error: &BodyError, limit: u64) -> Response<Body> {
    let reply = match error {
        BodyError::TooLarge => HookReply::TooLarge { limit },
        BodyError::OverBudget => {
            tracing::warn!("request body budget exhausted; answering 503");
            HookReply::Busy {
                retry_after_secs: BUSY_RETRY_AFTER_SECS,
            }
        }
        BodyError::Timeout => HookReply::TimedOut,
        BodyError::Unreadable(e) => {
            tracing::debug!(error = %e, "request body read failed");
            HookReply::Unreadable
        }
    };
    close(hook_response(reply))
}

/// Turns an intake reply into the HTTP response the forge sees.
fn hook_response(reply: HookReply) -> Response<Body> {
    let parts = reply.parts();
    let mut response = json(parts.status, &parts.body);
    if let Some(secs) = parts.retry_after {
        if let Ok(value) = header::HeaderValue::from_str(&secs.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
    }
    response
}

async fn metrics(app: &App) -> Response<Body> {
    let store = app.store.clone();
    let counts = tokio::task::spawn_blocking(move || {
        let queue = store.queue_counts(crate::clock::now_ms())?;
        Ok::<_, crate::store::StoreError>((queue, store.outbox_pending_count()?))
    })
    .await;
    let (queue, outbox_pending) = counts.ok().and_then(Result::ok).unwrap_or_default();
    let gauges = crate::metrics::Gauges {
        started: app.started,
        running: app.scheduler.running_count(),
        queue,
        outbox_pending,
    };
    text(StatusCode::OK, crate::metrics::render(&app.metrics, gauges))
}

async fn health(app: &App) -> Response<Body> {
    let store = app.store.clone();
    let ok = tokio::task::spawn_blocking(move || store.check_writable()).await;
    match ok {
        Ok(Ok(())) => json(StatusCode::OK, r#"{"status":"ok"}"#),
        _ => json(
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"status":"unavailable","reason":"store is not writable"}"#,
        ),
    }
}

fn json(status: StatusCode, body: &str) -> Response<Body> {
    with_type(status, body.to_owned(), "application/json")
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    with_type(status, body, "text/plain; version=0.0.4; charset=utf-8")
}

fn with_type(status: StatusCode, body: String, content_type: &'static str) -> Response<Body> {
    let mut response = Response::new(Bytes::from(body).into());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}

/// Marks a response as the connection's last (the rest of its body is never read).
fn close(mut response: Response<Body>) -> Response<Body> {
    response.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert!(matches!(
            route(&Method::POST, "/hooks/abc"),
            Route::Hook("abc")
        ));
        assert!(matches!(
            route(&Method::GET, "/hooks/abc"),
            Route::WrongMethod
        ));
        assert!(matches!(route(&Method::POST, "/hooks/"), Route::NotFound));
        assert!(matches!(
            route(&Method::POST, "/hooks/a/b"),
            Route::NotFound
        ));
        assert!(matches!(route(&Method::GET, "/healthz"), Route::Health));
        assert!(matches!(route(&Method::GET, "/metrics"), Route::Metrics));
        assert!(matches!(route(&Method::GET, "/"), Route::NotFound));
    }
}
