//! Strong ETags for public GETs: `ETag` (SHA-256 of the body), `Cache-Control: public,
//! max-age=60`, and `If-None-Match` answered with 304 (`shared/spec/services-api.md`).

use axum::{
    body::Body,
    extract::Request,
    middleware::Next,
    response::{IntoResponse, Response},
};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};

use crate::ApiError;

/// The `Cache-Control` of public reads.
pub const PUBLIC_CACHE_CONTROL: &str = "public, max-age=60";

/// Largest body this layer hashes; public JSON pages are far below it.
const MAX_HASHED_BODY: usize = 8 * 1024 * 1024;

/// The strong ETag of a body.
pub fn etag_of(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    format!("\"{}\"", hex::encode(&digest[..16]))
}

/// Whether an `If-None-Match` header matches `etag` (weak comparison, as RFC 9110 asks
/// for `If-None-Match`).
pub fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    let bare = etag.trim_start_matches("W/");
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|candidate| candidate == "*" || candidate.trim_start_matches("W/") == bare)
}

/// Middleware for public GET routes.
pub async fn public_cache(request: Request, next: Next) -> Response {
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        return next.run(request).await;
    }
    let conditional = request.headers().clone();
    let response = next.run(request).await;
    if response.status() != StatusCode::OK {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = match http_body_util::Limited::new(body, MAX_HASHED_BODY)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(err) => return ApiError::internal(err).into_response(),
    };
    // A handler whose body holds volatile parts (timings) sets its own ETag over the
    // stable ones; otherwise the ETag is the hash of the body.
    let etag = match parts
        .headers
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
    {
        Some(own) => own.to_owned(),
        None => {
            let etag = etag_of(&bytes);
            let value = HeaderValue::from_str(&etag).expect("hex ETag is a valid header value");
            parts.headers.insert(header::ETAG, value);
            etag
        }
    };
    parts.headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(PUBLIC_CACHE_CONTROL),
    );
    if if_none_match(&conditional, &etag) {
        parts.status = StatusCode::NOT_MODIFIED;
        parts.headers.remove(header::CONTENT_LENGTH);
        parts.headers.remove(header::CONTENT_TYPE);
        return Response::from_parts(parts, Body::empty());
    }
    Response::from_parts(parts, Body::from(bytes))
}

#[cfg(test)]
mod tests {
    use axum::{Router, middleware::from_fn, routing::get};
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn a_matching_if_none_match_gets_304_and_another_gets_the_body() {
        let app = Router::new()
            .route("/x", get(|| async { "hello" }))
            .layer(from_fn(public_cache));
        let first = app
            .clone()
            .oneshot(http::Request::get("/x").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(first.status(), 200);
        assert_eq!(first.headers()[header::CACHE_CONTROL], PUBLIC_CACHE_CONTROL);
        let etag = first.headers()[header::ETAG].to_str().unwrap().to_owned();
        assert_eq!(etag, etag_of(b"hello"));

        for (value, expected) in [
            (etag.clone(), 304),
            (format!("W/{etag}"), 304),
            (format!("\"other\", {etag}"), 304),
            ("*".to_owned(), 304),
            ("\"other\"".to_owned(), 200),
        ] {
            let res = app
                .clone()
                .oneshot(
                    http::Request::get("/x")
                        .header(header::IF_NONE_MATCH, value.as_str())
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap();
            assert_eq!(res.status(), expected, "If-None-Match: {value}");
            assert_eq!(res.headers()[header::ETAG], etag.as_str());
        }
    }
}
