//! Badges: shields "flat" SVG, the shields.io endpoint JSON and CCTray XML. A feed
//! that did not opt in and a feed that does not exist give the same `unknown` badge,
//! so names cannot be probed; every badge carries an ETag for GitHub's image proxy.

use http::{header, HeaderValue, StatusCode};

use super::html::escape;
use super::{with_type, ReadError, Reply, Source};

/// The badge's left half, the same for every feed (a name would tell feeds apart).
const LABEL: &str = "build";

/// What a badge says, from a build's status word (`None`: nothing to show).
fn message(status: Option<&str>) -> (&'static str, &'static str) {
    match status {
        Some("succeeded") => ("passing", "#4c1"),
        Some("failed" | "timed_out") => ("failing", "#e05d44"),
        Some("running") => ("running", "#007ec6"),
        Some("error" | "interrupted") => ("error", "#fe7d37"),
        Some("cancelled") => ("cancelled", "#9f9f9f"),
        _ => ("unknown", "#9f9f9f"),
    }
}

/// Width of a text in Verdana 11px, close enough for a badge (widths in tenths of
/// a pixel of the characters badges use; others count as wide).
fn text_width(text: &str) -> u32 {
    let tenths: u32 = text
        .chars()
        .map(|c| match c {
            'i' | 'l' | 'j' => 31,
            'f' | 't' | 'r' => 43,
            'm' | 'w' => 106,
            'a'..='z' => 68,
            _ => 80,
        })
        .sum();
    tenths.div_ceil(10)
}

/// The flat-style SVG for a message (label and layout as shields.io draws them).
pub(super) fn render_svg(message: &str, color: &str) -> String {
    let (lw, mw) = (text_width(LABEL) + 10, text_width(message) + 10);
    let w = lw + mw;
    let (lx, mx) = (lw * 5, lw * 10 + mw * 5);
    format!(
        concat!(
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="20" role="img" aria-label="{l}: {m}">"##,
            r##"<title>{l}: {m}</title>"##,
            r##"<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient>"##,
            r##"<clipPath id="r"><rect width="{w}" height="20" rx="3" fill="#fff"/></clipPath>"##,
            r##"<g clip-path="url(#r)"><rect width="{lw}" height="20" fill="#555"/><rect x="{lw}" width="{mw}" height="20" fill="{c}"/><rect width="{w}" height="20" fill="url(#s)"/></g>"##,
            r##"<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="110">"##,
            r##"<text x="{lx}" y="150" fill="#010101" fill-opacity=".3" transform="scale(.1)">{l}</text><text x="{lx}" y="140" transform="scale(.1)">{l}</text>"##,
            r##"<text x="{mx}" y="150" fill="#010101" fill-opacity=".3" transform="scale(.1)">{m}</text><text x="{mx}" y="140" transform="scale(.1)">{m}</text>"##,
            r##"</g></svg>"##
        ),
        w = w,
        lw = lw,
        mw = mw,
        lx = lx,
        mx = mx,
        l = escape(LABEL),
        m = escape(message),
        c = color,
    )
}

/// What a feed's badge says, and its colour: `unknown` for a feed without a badge,
/// without a started build, or no feed at all.
fn said(
    source: &dyn Source,
    name: &str,
    branch: Option<&str>,
) -> Result<(&'static str, &'static str), ReadError> {
    let status = source.badge(name, branch)?.flatten();
    Ok(message(status.as_deref()))
}

/// A feed's badge as an image, or as data for shields.io to draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Form {
    /// `/badge/NAME.svg`.
    Svg,
    /// `/badge/NAME.json`: the shields.io endpoint format.
    Json,
}

/// A feed's badge in `form`.
pub(super) fn badge(
    source: &dyn Source,
    name: &str,
    branch: Option<&str>,
    form: Form,
    if_none_match: Option<&str>,
) -> Result<Reply, ReadError> {
    let (text, color) = said(source, name, branch)?;
    let (body, content_type) = match form {
        Form::Svg => (render_svg(text, color), "image/svg+xml"),
        Form::Json => {
            let body = serde_json::json!({
                "schemaVersion": 1,
                "label": LABEL,
                "message": text,
                "color": color,
            });
            (body.to_string(), "application/json")
        }
    };
    Ok(cached(body, content_type, if_none_match))
}

/// `/cc.xml`: CCTray's project list, opted-in feeds only.
pub(super) fn cctray(source: &dyn Source) -> Result<Reply, ReadError> {
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Projects>\n");
    for (name, build) in source.badge_feeds()? {
        let status = build.as_ref().map(|b| b.status.as_str());
        let (activity, last) = match message(status).0 {
            "running" => ("Building", "Unknown"),
            "passing" => ("Sleeping", "Success"),
            "failing" => ("Sleeping", "Failure"),
            "error" => ("Sleeping", "Exception"),
            _ => ("Sleeping", "Unknown"),
        };
        let (label, time) = build
            .as_ref()
            .map(|b| {
                let time = b.finished_at.clone().or(b.started_at.clone());
                (
                    b.id.to_string(),
                    time.unwrap_or_else(|| b.queued_at.clone()),
                )
            })
            .unwrap_or_default();
        xml.push_str(&format!(
            "<Project name=\"{n}\" activity=\"{activity}\" lastBuildStatus=\"{last}\" lastBuildLabel=\"{label}\" lastBuildTime=\"{t}\" webUrl=\"/feeds/{n}\"/>\n",
            n = escape(&name),
            label = escape(&label),
            t = escape(&time),
        ));
    }
    xml.push_str("</Projects>\n");
    Ok(with_type(
        StatusCode::OK,
        xml.into_bytes(),
        "application/xml",
    ))
}

/// A badge reply: always 200 (or 304 when the client's copy is current), never
/// cached without asking, with an ETag over the body.
fn cached(body: String, content_type: &'static str, if_none_match: Option<&str>) -> Reply {
    let etag = format!("\"{:016x}\"", fnv1a(body.as_bytes()));
    let fresh =
        if_none_match.is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut reply = match fresh {
        true => with_type(StatusCode::NOT_MODIFIED, Vec::new(), content_type),
        false => with_type(StatusCode::OK, body.into_bytes(), content_type),
    };
    let headers = reply.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    reply
}

/// FNV-1a: a stable, dependency-free hash; an ETag needs no more.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_a_message() {
        assert_eq!(message(Some("succeeded")).0, "passing");
        assert_eq!(message(Some("timed_out")).0, "failing");
        assert_eq!(message(Some("queued")).0, "unknown");
        assert_eq!(message(None).0, "unknown");
        assert!(render_svg("passing", "#4c1").contains(">passing</text>"));
    }
}
