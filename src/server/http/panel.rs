//! The panel pages: `/panel/{id}` (objects like this one), `/embed/{id}` (the same for an
//! `<iframe>`, which posts its height to the host page) and `/panel/anomalies` (a signed-in
//! expert's top anomalies, re-ranked by their votes). The HTML, JavaScript and CSS are built
//! into the binary (`include_str!`, no CDN, no Node at build time), with uPlot 1.6.32 (MIT,
//! vendored from npm under `assets/vendor/uplot/` with its licence); the page's script lays out
//! each plot with uPlot, draws the photometry on its canvas and reads everything from the JSON
//! API. Each page is
//! sent with a Content-Security-Policy: scripts, styles and requests from this origin only,
//! and `frame-ancestors` the server's own origin plus, for `/embed`, the configured ones.

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::Shared;

const PAGE: &str = include_str!("assets/panel.html");
const SCRIPT: &str = include_str!("assets/panel.js");
const STYLE: &str = include_str!("assets/panel.css");
const UPLOT_SCRIPT: &str = include_str!("assets/vendor/uplot/uPlot.iife.min.js");
const UPLOT_STYLE: &str = include_str!("assets/vendor/uplot/uPlot.min.css");
const UPLOT_LICENSE: &str = include_str!("assets/vendor/uplot/LICENSE");

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/panel/anomalies", get(anomalies_page))
        .route("/panel/{id}", get(panel_page))
        .route("/embed/{id}", get(embed_page))
        .route("/assets/panel.js", get(script))
        .route("/assets/panel.css", get(style))
        .route("/assets/uplot/uPlot.iife.min.js", get(uplot_script))
        .route("/assets/uplot/uPlot.min.css", get(uplot_style))
        .route("/assets/uplot/LICENSE", get(uplot_license))
}

/// Escapes text for an HTML attribute value or element content.
fn escape(text: &str) -> String {
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

/// The page for `mode` (`panel`, `embed`, `anomalies`) about `object_id`.
fn page(shared: &Shared, mode: &str, object_id: &str, embedded: bool) -> Response {
    let title = match mode {
        "anomalies" => "Tonight's anomalies".to_string(),
        _ => format!("Objects like {object_id}"),
    };
    let html = PAGE
        .replace("{{title}}", &escape(&title))
        .replace("{{mode}}", mode)
        .replace("{{object_id}}", &escape(object_id))
        .replace(
            "{{object_url}}",
            &escape(shared.config.object_url.as_deref().unwrap_or("")),
        );
    let mut ancestors = vec!["'self'".to_string()];
    if embedded {
        ancestors.extend(shared.config.frame_ancestors.iter().cloned());
    }
    let csp = format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors {}",
        ancestors.join(" ")
    );
    let mut response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        )],
        html,
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&csp) {
        response
            .headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, v);
    }
    response
}

async fn panel_page(State(shared): State<Shared>, Path(id): Path<String>) -> Response {
    page(&shared, "panel", &id, false)
}

async fn embed_page(State(shared): State<Shared>, Path(id): Path<String>) -> Response {
    page(&shared, "embed", &id, true)
}

async fn anomalies_page(State(shared): State<Shared>) -> Response {
    page(&shared, "anomalies", "", false)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            ),
        ],
        body,
    )
        .into_response()
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

async fn uplot_script() -> Response {
    asset("text/javascript; charset=utf-8", UPLOT_SCRIPT)
}

async fn uplot_style() -> Response {
    asset("text/css; charset=utf-8", UPLOT_STYLE)
}

async fn uplot_license() -> Response {
    asset("text/plain; charset=utf-8", UPLOT_LICENSE)
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn an_object_id_cannot_close_the_attribute_it_is_written_in() {
        assert_eq!(
            escape(r#"x"><script>alert('1')</script>"#),
            "x&quot;&gt;&lt;script&gt;alert(&#39;1&#39;)&lt;/script&gt;"
        );
    }
}
