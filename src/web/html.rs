//! The one place text becomes markup: [`escape`] and a page builder whose only way
//! to add non-constant text escapes it, so nothing from a payload or a log can end
//! up as markup.

/// Escapes text for HTML and XML element content and quoted attribute values.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// An HTML document being written.
pub(super) struct Html(String);

impl Html {
    /// Starts a page: doctype, head with the title, and the heading linking home.
    pub(super) fn page(site: &str, title: &str) -> Self {
        let mut h = Self(String::with_capacity(8 * 1024));
        h.tag("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">")
            .tag("<meta name=\"viewport\" content=\"width=device-width\"><title>")
            .text(title)
            .tag(" · ")
            .text(site)
            .tag("</title><link rel=\"stylesheet\" href=\"/style.css\">")
            .tag("<script src=\"/app.js\" defer></script></head><body><header><a href=\"/\">")
            .text(site)
            .tag("</a></header><main><h1>")
            .text(title)
            .tag("</h1>");
        h
    }

    /// Constant markup (a `'static` string: never data).
    pub(super) fn tag(&mut self, markup: &'static str) -> &mut Self {
        self.0.push_str(markup);
        self
    }

    /// Text, escaped.
    pub(super) fn text(&mut self, text: &str) -> &mut Self {
        self.0.push_str(&escape(text));
        self
    }

    /// A link to `href` (escaped) showing `text` (escaped).
    pub(super) fn link(&mut self, href: &str, text: &str) -> &mut Self {
        self.tag("<a href=\"")
            .text(href)
            .tag("\">")
            .text(text)
            .tag("</a>")
    }

    /// A status word in a span its style colours.
    pub(super) fn status(&mut self, word: &str) -> &mut Self {
        self.tag("<span class=\"s-")
            .text(word)
            .tag("\">")
            .text(word)
            .tag("</span>")
    }

    /// A table row of cells already written by `cells`.
    pub(super) fn row(&mut self, cells: impl FnOnce(&mut Self)) -> &mut Self {
        self.tag("<tr>");
        cells(self);
        self.tag("</tr>")
    }

    /// A header row.
    pub(super) fn head_row(&mut self, names: &[&'static str]) -> &mut Self {
        self.tag("<tr>");
        for name in names {
            self.tag("<th>").tag(name).tag("</th>");
        }
        self.tag("</tr>")
    }

    /// A cell holding escaped text.
    pub(super) fn cell(&mut self, text: &str) -> &mut Self {
        self.tag("<td>").text(text).tag("</td>")
    }

    /// Ends the page.
    pub(super) fn finish(mut self) -> String {
        self.tag("</main></body></html>\n");
        self.0
    }
}

/// The pages' script, served at `/app.js` (the CSP allows no inline script): live
/// updates over the event streams; the pages are complete without it.
pub(super) const SCRIPT: &str = include_str!("app.js");

/// The pages' whole style, served at `/style.css` (the CSP allows no inline style).
pub(super) const STYLE: &str =
    "body{font-family:system-ui,sans-serif;margin:0 auto;max-width:72rem;padding:0 1rem}\
header{padding:.5rem 0;border-bottom:1px solid #ccc}table{border-collapse:collapse;width:100%}\
td,th{text-align:left;padding:.2rem .5rem;border-bottom:1px solid #eee;vertical-align:top}\
pre{background:#f6f6f6;padding:.5rem;overflow-x:auto;white-space:pre-wrap}\
.s-succeeded{color:#2a7d2a}.s-failed,.s-timed_out,.s-error{color:#b00}.s-running{color:#06c}\
.s-cancelled,.s-interrupted,.s-queued{color:#666}dt{font-weight:bold}dd{margin:0 0 .3rem 1rem}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_text_is_escaped() {
        assert_eq!(
            escape("<script>alert('x' & \"y\")</script>"),
            "&lt;script&gt;alert(&#39;x&#39; &amp; &quot;y&quot;)&lt;/script&gt;"
        );
        let mut page = Html::page("t", "<b>");
        page.text("<i>");
        let out = page.finish();
        assert!(out.contains("&lt;b&gt;") && out.contains("&lt;i&gt;") && !out.contains("<i>"));
    }
}
