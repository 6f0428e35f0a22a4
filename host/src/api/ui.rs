//! The web UI: a live view of the sagas, served at `/` by the host itself.
//!
//! | method and path | what |
//! |---|---|
//! | `GET /` | the page (`ui/index.html`) |
//! | `GET /ui/app.js` | its script: vanilla JavaScript, no framework |
//! | `GET /ui/app.css` | its style sheet |
//!
//! The three files are compiled into the binary (`include_str!`): nothing to install, build
//! or fetch from elsewhere (no CDN, no web fonts), and a page always matches its host.
//! They hold no data, so they are served without a token ([`is_public`]); the page sends
//! `Authorization: Bearer <token>` with every request for data, and when one answers 401 it
//! asks for the token, keeps it in the browser's `localStorage` and tries again.
//!
//! The page is an ordinary client of the API: the sagas (`GET /v1/sagas`, read again every
//! 10 s and on every `resync`), the live feed (`GET /v1/events`, read with `fetch` since an
//! `EventSource` cannot send a header), a saga, its history and its sub-sagas, the
//! workflows' outlines (`GET /v1/workflows[/{name}]`) to draw its state machine, and the
//! start, signal, cancel and retry routes. Its routing is in the URL's fragment (`#/`,
//! `#/sagas/ID`), so a reload or a shared link opens the same view.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The page.
const INDEX_HTML: &str = include_str!("ui/index.html");
/// Its script.
const APP_JS: &str = include_str!("ui/app.js");
/// Its style sheet.
const APP_CSS: &str = include_str!("ui/app.css");

/// The paths of the UI's files, served without a token.
const PATHS: [&str; 3] = ["/", "/ui/app.js", "/ui/app.css"];

/// What the page may load and talk to: its own host only. No script or style from elsewhere
/// and none inline, no frames; an image may be a `data:` URL (the icon).
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The routes of the UI's files (no state: they are static).
pub fn routes() -> Router {
    Router::new()
        .route(PATHS[0], get(|| async { file("text/html; charset=utf-8", INDEX_HTML) }))
        .route(PATHS[1], get(|| async { file("text/javascript; charset=utf-8", APP_JS) }))
        .route(PATHS[2], get(|| async { file("text/css; charset=utf-8", APP_CSS) }))
}

/// Whether `path` is one of the UI's files, which a host with a token serves without it:
/// they are the same for every host of a version and hold no data. Exact paths only, so an
/// unknown path under `/ui/` still answers 401 to a caller without the token.
pub fn is_public(path: &str) -> bool {
    PATHS.contains(&path)
}

/// A static file: its type, `Cache-Control: no-cache` (a browser checks again on every load,
/// so a host upgraded under an open tab serves the new page on the next reload) and, for
/// every file, the content security policy and `nosniff`.
fn file(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_ui_files_are_public() {
        for path in ["/", "/ui/app.js", "/ui/app.css"] {
            assert!(is_public(path), "{path}");
        }
        for path in ["/ui/", "/ui/other.js", "/v1/sagas", "/index.html", "//"] {
            assert!(!is_public(path), "{path}");
        }
    }

    #[test]
    fn the_page_loads_only_its_own_files() {
        assert!(INDEX_HTML.contains(r#"src="/ui/app.js""#));
        assert!(INDEX_HTML.contains(r#"href="/ui/app.css""#));
        for text in [INDEX_HTML, APP_JS, APP_CSS] {
            for remote in ["src=\"http", "href=\"http", "src=\"//", "href=\"//", "url(http", "url(//", "@import"] {
                assert!(!text.contains(remote), "no resource from elsewhere: {remote}");
            }
        }
    }
}
