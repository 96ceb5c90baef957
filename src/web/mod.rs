//! The read-only web side: JSON API (`/api/v1/…`), badges (`/badge/…`, `/cc.xml`) and
//! server-rendered HTML pages. It sees the daemon only through a [`Source`] it is
//! handed (the admin server's own reads), so it holds no store, repository or runner
//! code, and no request it answers changes state.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};

/// The reads the web side may make, defined by the admin side that answers them
/// (so admin never imports web: the dependency points one way).
pub(crate) use crate::admin::reads::{ReadError, Source};
pub(crate) use stream::{Body, Streams};

mod badge;
mod html;
mod live;
mod pages;
mod stream;
mod tail;

/// Builds listed per page of a feed page.
const BUILDS_PER_PAGE: usize = 25;
/// Deliveries shown on a feed page.
const DELIVERIES_SHOWN: usize = 50;
/// `?limit=` of the list APIs when none is given: the admin CLI's default.
const API_LIMIT: usize = 20;
/// Largest `?limit=` the list APIs honour.
const API_LIMIT_MAX: usize = 1000;
/// Largest log tail shown on a build page (the whole log is at `/builds/ID/log`).
const PAGE_LOG_BYTES: u64 = 256 * 1024;

/// A web reply: a whole body, or a stream (live views).
pub(crate) type Reply = Response<Body>;

/// Answers one request for a web path; `None` when the path is not one of ours.
/// Live views take a slot of `streams`.
pub(crate) async fn handle(
    source: &Arc<dyn Source>,
    streams: &Streams,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Option<Reply> {
    let page = Page::parse(path, query)?;
    if method != Method::GET && method != Method::HEAD {
        return Some(error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed; the web side is read-only",
        ));
    }
    if let Some(live) = page.live() {
        let head = method == Method::HEAD;
        let reply = live::answer(source, streams, live, headers, query, head).await;
        return Some(secure(reply));
    }
    let source = source.clone();
    let if_none_match = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let reply =
        tokio::task::spawn_blocking(move || page.answer(&*source, if_none_match.as_deref()))
            .await
            .unwrap_or_else(|_| error(StatusCode::SERVICE_UNAVAILABLE, "daemon is shutting down"));
    Some(secure(reply))
}

/// Every web path.
#[derive(Debug)]
enum Page {
    ApiFeeds,
    ApiFeed(String),
    ApiBuilds(String, usize),
    ApiDeliveries(String, usize),
    ApiBuild(u64),
    ApiQueue,
    ApiStatus,
    ApiUnknown,
    BadgeSvg(String, Option<String>),
    BadgeJson(String, Option<String>),
    CcTray,
    Style,
    Script,
    Overview,
    Feed(String, usize),
    Build(u64),
    Log(u64),
    BuildEvents(u64),
    Events,
}

impl Page {
    fn parse(path: &str, query: Option<&str>) -> Option<Self> {
        let parts: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
        let id = |s: &str| s.parse::<u64>().ok();
        let limit = query_param(query, "limit")
            .and_then(|l| l.parse().ok())
            .unwrap_or(API_LIMIT)
            .min(API_LIMIT_MAX);
        Some(match parts.as_slice() {
            [""] => Self::Overview,
            ["feeds", name] => Self::Feed(
                name.to_string(),
                query_param(query, "page")
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0),
            ),
            ["builds", n] => Self::Build(id(n)?),
            ["builds", n, "log"] => Self::Log(id(n)?),
            ["builds", n, "events"] => Self::BuildEvents(id(n)?),
            ["events"] => Self::Events,
            ["cc.xml"] => Self::CcTray,
            ["style.css"] => Self::Style,
            ["app.js"] => Self::Script,
            ["badge", file] => {
                let branch = query_param(query, "branch");
                if let Some(name) = file.strip_suffix(".svg") {
                    Self::BadgeSvg(name.to_owned(), branch)
                } else {
                    Self::BadgeJson(file.strip_suffix(".json")?.to_owned(), branch)
                }
            }
            ["api", "v1", rest @ ..] => match rest {
                ["feeds"] => Self::ApiFeeds,
                ["feeds", name] => Self::ApiFeed(name.to_string()),
                ["feeds", name, "builds"] => Self::ApiBuilds(name.to_string(), limit),
                ["feeds", name, "deliveries"] => Self::ApiDeliveries(name.to_string(), limit),
                ["builds", n] => id(n).map_or(Self::ApiUnknown, Self::ApiBuild),
                ["queue"] => Self::ApiQueue,
                ["status"] => Self::ApiStatus,
                _ => Self::ApiUnknown,
            },
            _ => return None,
        })
    }

    /// The live view a path names, if it names one.
    fn live(&self) -> Option<live::Live> {
        match *self {
            Self::Events => Some(live::Live::Events),
            Self::BuildEvents(id) => Some(live::Live::BuildEvents(id)),
            Self::Log(id) => Some(live::Live::Log(id)),
            _ => None,
        }
    }

    fn answer(self, source: &dyn Source, if_none_match: Option<&str>) -> Reply {
        let result = match self {
            Self::ApiFeeds => source.feeds().map(|v| json(&v)),
            Self::ApiFeed(name) => source.feed(&name).map(|v| json(&v)),
            Self::ApiBuilds(name, limit) => source.builds(&name, 0, limit).map(|v| json(&v)),
            Self::ApiDeliveries(name, limit) => source.deliveries(&name, limit).map(|v| json(&v)),
            Self::ApiBuild(id) => source.build(id).map(|v| json(&v)),
            Self::ApiQueue => source.queue().map(|v| json(&v)),
            Self::ApiStatus => source.status().map(|v| json(&v)),
            Self::ApiUnknown => Err(ReadError::NotFound("no such API path".into())),
            Self::BadgeSvg(name, branch) => {
                let form = badge::Form::Svg;
                badge::badge(source, &name, branch.as_deref(), form, if_none_match)
            }
            Self::BadgeJson(name, branch) => {
                let form = badge::Form::Json;
                badge::badge(source, &name, branch.as_deref(), form, if_none_match)
            }
            Self::CcTray => badge::cctray(source),
            Self::Style => Ok(with_type(
                StatusCode::OK,
                html::STYLE.as_bytes().to_vec(),
                "text/css; charset=utf-8",
            )),
            Self::Script => Ok(with_type(
                StatusCode::OK,
                html::SCRIPT.as_bytes().to_vec(),
                "text/javascript; charset=utf-8",
            )),
            Self::Overview => pages::overview(source),
            Self::Feed(name, page) => pages::feed(source, &name, page),
            Self::Build(id) => pages::build(source, id),
            Self::Log(_) | Self::BuildEvents(_) | Self::Events => {
                Err(ReadError::NotFound("a live view".into()))
            }
        };
        result.unwrap_or_else(read_error)
    }
}

/// The reply to a read that failed.
fn read_error(e: ReadError) -> Reply {
    match e {
        ReadError::NotFound(m) => error(StatusCode::NOT_FOUND, &m),
        ReadError::Unavailable(m) => {
            tracing::warn!(error = %m, "web read failed");
            error(StatusCode::SERVICE_UNAVAILABLE, "store unavailable")
        }
    }
}

/// A query parameter's value (percent-decoding is not needed for branch names and
/// numbers hookd accepts; `+` and `%2F` are decoded for the common cases).
fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn json<T: serde::Serialize>(value: &T) -> Reply {
    match serde_json::to_vec(value) {
        Ok(body) => with_type(StatusCode::OK, body, "application/json"),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// A JSON error: `{"status":"not_found","reason":"…"}` with the HTTP status.
fn error(status: StatusCode, reason: &str) -> Reply {
    let word = match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        _ => "error",
    };
    let body = serde_json::json!({ "status": word, "reason": reason }).to_string();
    with_type(status, body.into_bytes(), "application/json")
}

fn with_type(status: StatusCode, body: Vec<u8>, content_type: &'static str) -> Reply {
    let mut response = Response::new(Bytes::from(body).into());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// The headers every web reply carries: nothing from elsewhere may run or load, and
/// no content type is guessed.
fn secure(mut response: Reply) -> Reply {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_pages() {
        assert!(matches!(Page::parse("/", None), Some(Page::Overview)));
        assert!(matches!(
            Page::parse("/api/v1/builds/7", None),
            Some(Page::ApiBuild(7))
        ));
        assert!(matches!(
            Page::parse("/api/v1/nope", None),
            Some(Page::ApiUnknown)
        ));
        assert!(matches!(
            Page::parse("/badge/web.svg", Some("branch=release%2F1")),
            Some(Page::BadgeSvg(n, Some(b))) if n == "web" && b == "release/1"
        ));
        assert!(Page::parse("/builds/x", None).is_none());
        assert!(Page::parse("/hooks/abc", None).is_none());
        assert!(Page::parse("/metrics", None).is_none());
    }
}
