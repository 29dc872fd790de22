//! Requests to responses, one function per flavour (the table of `wire.md` §5.4).
//!
//! Every request goes to [`handle`]; it routes by itself rather than through axum's router so
//! that the status, body and `Content-Type` of every answer, the 404s and 405s included, are
//! the ones the real server gives.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;

use super::query;
use super::table::{MetadataTable, PutOutcome};
use super::{Flavour, ServerOptions};

/// What every request handler shares.
pub(super) struct App {
    pub options: ServerOptions,
    pub table: Arc<MetadataTable>,
}

/// `Content-Type` of the wheel's text answers (aiohttp adds the charset).
const JSON_UTF8: &str = "application/json; charset=utf-8";
/// `Content-Type` of a stored value, in both servers.
const JSON: &str = "application/json";
/// `Content-Type` of aiohttp's own error pages (404, 413).
const TEXT_UTF8: &str = "text/plain; charset=utf-8";

/// The one handler: dispatches on the flavour.
pub(super) async fn handle(State(app): State<Arc<App>>, req: Request) -> Response {
    match app.options.flavour {
        Flavour::Standalone => standalone(&app, req).await,
        Flavour::MasterEmbedded => master_embedded(&app, req).await,
    }
}

/// The wheel's `mooncake_http_metadata_server`: one aiohttp route for every method on
/// `/metadata`; the key is checked before the method.
async fn standalone(app: &App, req: Request) -> Response {
    if query::decoded_path(req.uri().path()) != "/metadata" {
        return reply(StatusCode::NOT_FOUND, Some(TEXT_UTF8), "404: Not Found");
    }
    let key = query::decoded_key(req.uri().query().unwrap_or(""));
    let text = |status, body: &'static str| reply(status, Some(JSON_UTF8), body);
    if key.is_empty() {
        return text(StatusCode::BAD_REQUEST, "metadata key is required");
    }
    match *req.method() {
        Method::GET => match app.table.get(&key) {
            Some(value) => reply(StatusCode::OK, Some(JSON), value),
            None => text(StatusCode::NOT_FOUND, "metadata not found"),
        },
        Method::PUT => {
            let limit = app.options.max_body_bytes;
            let body = match read_body(req, limit).await {
                Ok(body) => body,
                Err(e) => return body_error(e, limit, Some(TEXT_UTF8)),
            };
            match app.table.put(&key, body, Flavour::Standalone) {
                PutOutcome::DuplicateRpcMeta => text(StatusCode::BAD_REQUEST, "Duplicate rpc_meta key not allowed"),
                _ => text(StatusCode::OK, "metadata updated"),
            }
        }
        Method::DELETE => match app.table.delete(&key) {
            true => text(StatusCode::OK, "metadata deleted"),
            false => text(StatusCode::NOT_FOUND, "metadata not found"),
        },
        _ => text(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed"),
    }
}

/// `mooncake_master --enable_http_metadata_server`: cinatra handlers for GET, PUT and DELETE
/// on `/metadata` and GET on `/health`; anything else is cinatra's 404. Only a stored value
/// carries a `Content-Type`.
async fn master_embedded(app: &App, req: Request) -> Response {
    let path = query::decoded_path(req.uri().path());
    let method = req.method().clone();
    if path == "/health" && method == Method::GET {
        return reply(StatusCode::OK, None, "OK");
    }
    if path != "/metadata" || !matches!(method, Method::GET | Method::PUT | Method::DELETE) {
        return reply(StatusCode::NOT_FOUND, None, "404 Not Found");
    }
    let key = query::raw_key(req.uri().query().unwrap_or("")).to_string();
    let text = |status, body: &'static str| reply(status, None, body);
    if key.is_empty() {
        return text(StatusCode::BAD_REQUEST, "Missing key parameter");
    }
    match method {
        Method::GET => match app.table.get(&key) {
            Some(value) => reply(StatusCode::OK, Some(JSON), value),
            None => text(StatusCode::NOT_FOUND, "metadata not found"),
        },
        Method::PUT => {
            let limit = app.options.max_body_bytes;
            let body = match read_body(req, limit).await {
                Ok(body) => body,
                Err(e) => return body_error(e, limit, None),
            };
            match app.table.put(&key, body, Flavour::MasterEmbedded) {
                PutOutcome::Updated => text(StatusCode::OK, "metadata updated"),
                PutOutcome::Unchanged => text(StatusCode::OK, "metadata unchanged"),
                PutOutcome::DuplicateRpcMeta => text(StatusCode::BAD_REQUEST, "Duplicate rpc_meta key not allowed"),
            }
        }
        _ => match app.table.delete(&key) {
            true => text(StatusCode::OK, "metadata deleted"),
            false => text(StatusCode::NOT_FOUND, "metadata not found"),
        },
    }
}

/// Why a PUT body was not read.
enum BodyError {
    /// Longer than the limit.
    TooLarge,
    /// The connection failed, or the body's framing was broken, before its end.
    Broken,
}

/// 413 with aiohttp's text (the master has no limit of its own; ours answers the same way), or
/// 400 for a body that did not arrive whole.
fn body_error(e: BodyError, limit: usize, content_type: Option<&'static str>) -> Response {
    match e {
        BodyError::TooLarge => {
            reply(StatusCode::PAYLOAD_TOO_LARGE, content_type, format!("Maximum request body size {limit} exceeded."))
        }
        BodyError::Broken => reply(StatusCode::BAD_REQUEST, content_type, "request body incomplete"),
    }
}

/// The whole body of `req`, at most `limit` bytes. Memory never exceeds `limit` (plus one
/// frame of hyper's buffer).
///
/// A body found too long is not left unread: a client that sends all of it before it reads
/// the answer (most do, unless they asked `Expect: 100-continue`) would otherwise meet a reset
/// connection instead of the 413. Like aiohttp (its "lingering" read), the rest is read and
/// dropped for up to [`LINGER`] while the answer goes out.
async fn read_body(req: Request, limit: usize) -> Result<Bytes, BodyError> {
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let expects_continue =
        req.headers().get(header::EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let mut body = req.into_body();
    if declared.is_some_and(|n| n > limit as u64) {
        if !expects_continue {
            tokio::spawn(linger(body));
        }
        return Err(BodyError::TooLarge);
    }
    let read = read_limited(&mut body, declared, limit).await;
    if matches!(read, Err(BodyError::TooLarge)) {
        tokio::spawn(linger(body));
    }
    read
}

/// How long the rest of a refused body is read (aiohttp's `lingering_time`).
const LINGER: Duration = Duration::from_secs(10);

/// Reads and drops what is left of `body`, for at most [`LINGER`].
async fn linger(mut body: Body) {
    let drain = async { while let Some(Ok(_)) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {} };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

async fn read_limited(body: &mut Body, declared: Option<u64>, limit: usize) -> Result<Bytes, BodyError> {
    let mut first: Option<Bytes> = None;
    let mut joined: Vec<u8> = Vec::new();
    while let Some(frame) = poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await {
        let Ok(data) = frame.map_err(|_| BodyError::Broken)?.into_data() else { continue };
        let len = first.as_ref().map_or(0, Bytes::len) + joined.len() + data.len();
        if len > limit {
            return Err(BodyError::TooLarge);
        }
        match first.take() {
            // A body in one frame (the usual case) is kept without a copy.
            None if joined.is_empty() => first = Some(data),
            Some(f) => {
                joined.reserve(declared.map_or(len, |n| n as usize));
                joined.extend_from_slice(&f);
                joined.extend_from_slice(&data);
            }
            None => joined.extend_from_slice(&data),
        }
    }
    Ok(first.unwrap_or_else(|| Bytes::from(joined)))
}

/// A response with exactly this status, `Content-Type` (or none) and body.
fn reply(status: StatusCode, content_type: Option<&'static str>, body: impl Into<Body>) -> Response {
    let mut resp = Response::new(body.into());
    *resp.status_mut() = status;
    if let Some(ct) = content_type {
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    }
    resp
}
