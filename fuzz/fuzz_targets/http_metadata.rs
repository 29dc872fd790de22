//! The HTTP metadata server's request handling (`src/metadata/http_server`: routing, the key
//! of the query as each flavour reads it, the body limit), driven in-process through
//! `answer_for_fuzzing`. The input is a byte stream of HTTP/1.1 requests, as a client sends
//! them on one connection; each is split off with hyper's parser (`httparse`) and answered in
//! order by one server of each flavour, each with its own table, so that PUTs, GETs and
//! DELETEs of one input meet. Checked: only the statuses the real servers give, a stored value
//! comes back byte for byte, and nothing above the body limit is stored.
#![no_main]

#[path = "common.rs"]
mod common;

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{Method, Request, StatusCode};
use libfuzzer_sys::fuzz_target;
use mooncake::metadata::http_server::{Flavour, MetadataTable, ServerOptions, answer_for_fuzzing};

/// Small limits, so that inputs of a few KiB reach the 413 path of both flavours.
const LIMITS: [(Flavour, usize); 2] = [(Flavour::Standalone, 512), (Flavour::MasterEmbedded, 2048)];

struct Parsed {
    method: Vec<u8>,
    target: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

/// The next request of `rest` (its body: `Content-Length` bytes, or what is left), or `None`.
fn next(rest: &mut &[u8]) -> Option<Parsed> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(head_len) = req.parse(rest).ok()? else { return None };
    let mut content_length = None;
    let mut out = Parsed {
        method: req.method?.as_bytes().to_vec(),
        target: req.path?.as_bytes().to_vec(),
        headers: Vec::new(),
        body: Vec::new(),
    };
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            content_length = std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse::<usize>().ok());
        }
        out.headers.push((h.name.to_string(), h.value.to_vec()));
    }
    let after = &rest[head_len..];
    let take = content_length.unwrap_or(after.len()).min(after.len());
    out.body = after[..take].to_vec();
    *rest = &after[take..];
    Some(out)
}

fn build(p: &Parsed) -> Option<Request<Body>> {
    let mut b = Request::builder().method(Method::from_bytes(&p.method).ok()?).uri(p.target.as_slice());
    for (name, value) in &p.headers {
        b = b.header(name.as_str(), value.as_slice());
    }
    b.body(Body::from(p.body.clone())).ok()
}

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    let mut requests = Vec::new();
    while requests.len() < 16 {
        let Some(p) = next(&mut rest) else { break };
        requests.push(p);
    }
    if requests.is_empty() {
        return;
    }
    common::runtime().block_on(async {
        for (flavour, limit) in LIMITS {
            let table = Arc::new(MetadataTable::new());
            let options = ServerOptions { max_body_bytes: limit, ..ServerOptions::new(flavour) };
            for p in &requests {
                let Some(req) = build(p) else { continue };
                let method = req.method().clone();
                let resp = answer_for_fuzzing(options.clone(), Arc::clone(&table), req).await;
                let status = resp.status();
                let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.expect("an answer's body");
                assert!(
                    [
                        StatusCode::OK,
                        StatusCode::BAD_REQUEST,
                        StatusCode::NOT_FOUND,
                        StatusCode::METHOD_NOT_ALLOWED,
                        StatusCode::PAYLOAD_TOO_LARGE
                    ]
                    .contains(&status),
                    "{flavour:?} answered {status}"
                );
                let stored = table.snapshot();
                assert!(stored.values().all(|v| v.len() <= limit), "a value above the limit was stored");
                if status == StatusCode::OK && method == Method::PUT {
                    assert!(p.body.len() <= limit);
                    assert!(
                        stored.values().any(|v| v.as_slice() == p.body.as_slice()),
                        "a PUT answered 200 stored its body"
                    );
                }
                if status == StatusCode::OK && method == Method::GET && body != Bytes::from_static(b"OK") {
                    assert!(stored.values().any(|v| v.as_slice() == body.as_ref()), "a GET answered a stored value");
                }
                if status == StatusCode::PAYLOAD_TOO_LARGE {
                    assert_eq!(method, Method::PUT);
                }
            }
            // Let the drains of refused bodies finish before the next input.
            tokio::task::yield_now().await;
        }
    });
});
