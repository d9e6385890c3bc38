//! The web console: plain HTML, CSS and JavaScript modules, embedded in the binary
//! with `include_str!` and served under `/console/`. No build step, no CDN, nothing
//! fetched at run time: the browser loads these files and talks to `/v1` with the
//! API key the user pasted (kept in the tab's sessionStorage).
//!
//! The console holds no authority of its own: every page is a view over API calls,
//! so what a key may see and do is decided by the API, never here. The pages send
//! no inline script (a strict Content-Security-Policy forbids it) and insert API
//! text as text nodes only.

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

/// One embedded file.
struct Asset {
    /// The path under `/console/`.
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

macro_rules! asset {
    ($path:literal, $content_type:expr) => {
        Asset {
            path: $path,
            content_type: $content_type,
            body: include_str!(concat!("../assets/", $path)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file the console serves; a test checks that every module one imports is here.
const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("console.css", "text/css; charset=utf-8"),
    asset!("js/app.js", JS),
    asset!("js/api.js", JS),
    asset!("js/dom.js", JS),
    asset!("js/format.js", JS),
    asset!("js/chart.js", JS),
    asset!("js/pages/customer.js", JS),
    asset!("js/pages/fees.js", JS),
    asset!("js/pages/payroll.js", JS),
    asset!("js/pages/dlq.js", JS),
    asset!("js/pages/flags.js", JS),
    asset!("js/pages/audit.js", JS),
    asset!("js/pages/approvals.js", JS),
    asset!("js/pages/keys.js", JS),
];

/// Scripts and styles only from this origin, no framing, no plugins. Inline style
/// attributes stay allowed: progress bars and chart swatches set widths and colours.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; \
     font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The console's routes: `/` and `/console` redirect to `/console/`.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/") }))
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route("/console/", get(|| async { serve("index.html") }))
        .route(
            "/console/{*path}",
            get(|Path(path): Path<String>| async move { serve(&path) }),
        )
}

fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.path == path)
}

fn serve(path: &str) -> Response {
    let Some(asset) = find(path) else {
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"code":"not_found","message":"no such console file","details":null}"#,
        )
            .into_response();
    };
    (
        [
            (header::CONTENT_TYPE, asset.content_type),
            // The files change only with the binary; a reload after an upgrade must
            // not mix old and new modules.
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        asset.body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Relative module paths a file imports (`from "./x.js"`, `from "../api.js"`),
    /// resolved against the file's folder.
    fn imports(asset: &Asset) -> Vec<String> {
        let folder = asset.path.rsplit_once('/').map_or("", |(dir, _)| dir);
        asset
            .body
            .split("from \"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .filter(|target| target.starts_with('.'))
            .map(|target| resolve(folder, target))
            .collect()
    }

    fn resolve(folder: &str, target: &str) -> String {
        let mut parts: Vec<&str> = folder.split('/').filter(|p| !p.is_empty()).collect();
        for part in target.split('/') {
            match part {
                "." => {}
                ".." => {
                    parts.pop();
                }
                name => parts.push(name),
            }
        }
        parts.join("/")
    }

    #[test]
    fn every_imported_module_is_served() {
        let mut checked = 0;
        for asset in ASSETS.iter().filter(|a| a.path.ends_with(".js")) {
            for target in imports(asset) {
                assert!(
                    find(&target).is_some(),
                    "{} imports {target}, which is not in ASSETS",
                    asset.path
                );
                checked += 1;
            }
        }
        assert!(
            checked > 10,
            "only {checked} imports found: is the parser broken?"
        );
    }

    #[test]
    fn the_index_loads_only_served_files() {
        let index = find("index.html").map(|a| a.body).unwrap_or_default();
        let mut checked = 0;
        for link in index.split("\"/console/").skip(1) {
            let path = link.split('"').next().unwrap_or_default();
            assert!(
                find(path).is_some(),
                "index.html links {path}, which is not served"
            );
            checked += 1;
        }
        assert_eq!(checked, 2, "the stylesheet and the app module");
    }

    #[test]
    fn no_file_loads_anything_from_another_origin() {
        for asset in ASSETS {
            for needle in ["http://", "https://", "//cdn", "<script>"] {
                let hits = asset.body.matches(needle).count();
                let allowed = if needle == "http://" {
                    // The SVG namespace is a name, not a fetch.
                    asset.body.matches("http://www.w3.org/2000/svg").count()
                } else {
                    0
                };
                assert_eq!(hits, allowed, "{} contains {needle}", asset.path);
            }
        }
    }

    #[test]
    fn unknown_files_are_404_and_known_ones_have_their_type() {
        assert_eq!(serve("js/nope.js").status(), StatusCode::NOT_FOUND);
        assert_eq!(serve("../Cargo.toml").status(), StatusCode::NOT_FOUND);
        let app = serve("js/app.js");
        assert_eq!(app.status(), StatusCode::OK);
        assert_eq!(
            app.headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            Some(JS)
        );
    }
}
