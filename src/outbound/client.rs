//! The HTTP client the outbox posts with: hyper-util's pooled client over TLS from
//! hyper-tls (the OpenSSL libgit2 already links, with the system's root store), a
//! connect timeout and a whole-attempt timeout, `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY`
//! honoured (a proxied request goes through a `CONNECT` tunnel, for http:// and
//! https:// alike), and at most `concurrency` idle connections kept per host.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tower_service::Service;

use crate::config::OutboxConfig;

/// Most of a reply body kept (enough for any forge's error message).
const MAX_REPLY: usize = 64 * 1024;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A forge's answer, read whole.
#[derive(Debug)]
pub(crate) struct Reply {
    /// Its status.
    pub(crate) status: StatusCode,
    /// Its headers (Retry-After, rate limits).
    pub(crate) headers: HeaderMap,
    /// Its body as text, at most [`MAX_REPLY`] bytes.
    pub(crate) body: String,
}

/// The outbox's HTTP client; cheap to clone.
#[derive(Clone)]
pub(crate) struct Client {
    /// Pooled connections over the proxy-aware TLS connector.
    http: hyper_util::client::legacy::Client<hyper_tls::HttpsConnector<Direct>, Full<Bytes>>,
    /// Deadline for one whole attempt.
    timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

impl Client {
    /// A client with the `[outbox]` timeouts and bound, and the proxy settings of the
    /// environment.
    pub(crate) fn new(settings: &OutboxConfig) -> Result<Self, String> {
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_connect_timeout(Some(settings.connect_timeout));
        let direct = Direct {
            tcp,
            proxies: Arc::new(Matcher::from_env()),
        };
        let tls = hyper_tls::native_tls::TlsConnector::new()
            .map_err(|e| format!("cannot set up TLS: {e}"))?;
        let https = hyper_tls::HttpsConnector::from((direct, tls.into()));
        let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(settings.concurrency)
            .pool_idle_timeout(Duration::from_secs(60))
            .build(https);
        Ok(Self {
            http,
            timeout: settings.request_timeout,
        })
    }

    /// Sends one request and reads the reply, within the whole-attempt timeout; the
    /// error says what failed (never a header: the token is in one).
    pub(crate) async fn send(&self, request: Request<Bytes>) -> Result<Reply, String> {
        let request = request.map(Full::new);
        let attempt = async {
            let response = self.http.request(request).await.map_err(describe)?;
            let (parts, body) = response.into_parts();
            let bytes = Limited::new(body, MAX_REPLY)
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            Ok(Reply {
                status: parts.status,
                headers: parts.headers,
                body: String::from_utf8_lossy(&bytes).into_owned(),
            })
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "no reply within {}s",
                self.timeout.as_secs_f64().round()
            )),
        }
    }
}

/// An error and its causes on one line ("client error (Connect): tcp connect error:
/// Connection refused (os error 111)").
fn describe(error: impl std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Connects to the destination, or through a `CONNECT` tunnel when the environment
/// names a proxy for it.
#[derive(Clone)]
pub(crate) struct Direct {
    /// Plain TCP, with the connect timeout.
    tcp: HttpConnector,
    /// `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` as read at start.
    proxies: Arc<Matcher>,
}

impl Service<Uri> for Direct {
    type Response = TokioIo<tokio::net::TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.tcp.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let mut tcp = self.tcp.clone();
        let Some(proxy) = self.proxies.intercept(&dst) else {
            return Box::pin(async move { tcp.call(dst).await.map_err(Into::into) });
        };
        let mut tunnel = Tunnel::new(proxy.uri().clone(), tcp);
        if let Some(auth) = proxy.basic_auth() {
            tunnel = tunnel.with_auth(auth.clone());
        }
        let dst = with_port(dst);
        Box::pin(async move { tunnel.call(dst).await.map_err(Into::into) })
    }
}

/// The destination with its port written out (the tunnel assumes 443 otherwise).
fn with_port(dst: Uri) -> Uri {
    if dst.port().is_some() {
        return dst;
    }
    let port = if dst.scheme_str() == Some("http") {
        80
    } else {
        443
    };
    let host = dst.host().unwrap_or_default();
    let authority = format!("{host}:{port}");
    let mut parts = dst.clone().into_parts();
    match authority.parse() {
        Ok(authority) => {
            parts.authority = Some(authority);
            Uri::from_parts(parts).unwrap_or(dst)
        }
        Err(_) => dst,
    }
}
