//! The web console (owned by the console work): a placeholder until its pages land.

use axum::Router;
use axum::response::{Html, Redirect};
use axum::routing::get;

use crate::AppState;

/// The console's routes, merged into the app by [`crate::app`].
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/") }))
        .route(
            "/console/",
            get(|| async {
                Html("<!doctype html><title>settle console</title><p>console coming</p>")
            }),
        )
}
