//! The limits every request passes and the last word on error bodies: a body cap
//! (413), a request timeout (504), and [`json_errors`], which turns any error
//! response that is not already our JSON shape — axum's own rejections, the
//! limit and timeout layers, the method router's 405 — into
//! `{"code", "message", "details"}`, so no plain-text error ever leaves the server.
//!
//! CORS is off: no layer adds `Access-Control-Allow-*`, so browsers refuse
//! cross-origin reads; the console is served from the same origin.

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::AppState;
use crate::error::ApiError;

/// Middleware on `/v1`: a POST waits its turn for one of the write permits.
pub(crate) async fn write_permit(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if request.method() != axum::http::Method::POST {
        return next.run(request).await;
    }
    match state.inner.writes.clone().acquire_owned().await {
        Ok(_permit) => next.run(request).await,
        Err(_) => ApiError::new("unavailable", "the server is shutting down").into_response(),
    }
}

/// Middleware: rewrites a non-JSON error response into the API's error shape.
pub(crate) async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(&response) {
        return response;
    }
    let retry_after = response.headers().get(header::RETRY_AFTER).cloned();
    let code = match status {
        StatusCode::NOT_FOUND => "route_not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_json",
        StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => "timeout",
        StatusCode::TOO_MANY_REQUESTS => "rate_limited",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        s if s.is_client_error() => "invalid_input",
        _ => "internal_error",
    };
    let message = match code {
        "route_not_found" => "no such endpoint",
        "method_not_allowed" => "this endpoint does not take this method",
        "body_too_large" => "the body exceeds the limit",
        "unsupported_media_type" => "send bodies as Content-Type: application/json",
        "invalid_json" => "the body is not valid JSON of the expected shape",
        "timeout" => "the request took longer than the server's limit",
        "rate_limited" => "too many requests",
        "unavailable" => "a dependency did not answer; try again",
        "invalid_input" => "the request is malformed",
        _ => "the request failed inside the server",
    };
    let mut rewritten = ApiError::new(code, message)
        .with_details(json!({ "status": status.as_u16() }))
        .into_response();
    if let Some(value) = retry_after {
        rewritten.headers_mut().insert(header::RETRY_AFTER, value);
    }
    if status == StatusCode::METHOD_NOT_ALLOWED
        && let Some(allow) = response.headers().get(header::ALLOW)
    {
        rewritten.headers_mut().insert(header::ALLOW, allow.clone());
    }
    rewritten
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// The fallback for a path no route matches.
pub(crate) async fn no_route() -> ApiError {
    ApiError::new("route_not_found", "no such endpoint")
}
