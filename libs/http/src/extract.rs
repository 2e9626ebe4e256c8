//! Extractors whose rejections are envelopes naming the offending field
//! (`shared/spec/README.md`: malformed JSON, wrong types, unknown enum values, bad UUIDs
//! and out-of-range paging are 400 with the field named).

use axum::{
    extract::{
        FromRequest, FromRequestParts, RawPathParams, Request, path::ErrorKind,
        rejection::PathRejection,
    },
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use http::{StatusCode, header, request::Parts};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::json;

use crate::{ApiError, ErrorCode};

/// A JSON body. Requires `Content-Type: application/json` (415 otherwise), rejects
/// malformed JSON, wrong types, unknown fields and trailing data with a 400 naming the
/// field, and bodies over the route's limit with a 413. Also a JSON response.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

fn field_from_message(message: &str) -> Option<String> {
    ["unknown field `", "missing field `", "duplicate field `"]
        .iter()
        .find_map(|prefix| {
            let rest = message.split_once(prefix)?.1;
            Some(rest.split('`').next()?.to_owned())
        })
}

/// Parses JSON bytes into `T`, with the envelope rejection of [`Json`].
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::new(
                ErrorCode::ValidationError,
                format!(
                    "malformed JSON body at line {} column {}",
                    inner.line(),
                    inner.column()
                ),
            )
            .with_details(json!({ "field": "body" }));
        }
        // Strip serde's " at line X column Y" suffix: positions mean little to API users.
        let text = inner.to_string();
        let text = text.split(" at line ").next().unwrap_or(&text).to_owned();
        let field = match (path.as_str(), field_from_message(&text)) {
            (".", Some(name)) => name,
            (".", None) => "body".to_owned(),
            // serde_path_to_error's path already ends with an unknown field's name but
            // stops at the parent of a missing one.
            (p, Some(name)) if text.starts_with("missing field") => format!("{p}.{name}"),
            // A top-level array given where an object is expected.
            (p, _) if p.starts_with('[') => "body".to_owned(),
            (p, _) => p.to_owned(),
        };
        ApiError::new(
            ErrorCode::ValidationError,
            format!("invalid field `{field}`: {text}"),
        )
        .with_details(json!({ "field": field }))
    })?;
    de.end().map_err(|_| {
        ApiError::new(
            ErrorCode::ValidationError,
            "unexpected data after the JSON body",
        )
        .with_details(json!({ "field": "body" }))
    })?;
    Ok(value)
}

fn is_json_content_type(parts: &http::HeaderMap) -> bool {
    parts
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
        .unwrap_or(false)
}

impl<S, T> FromRequest<S> for Json<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json_content_type(req.headers()) {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "expected Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(ErrorCode::PayloadTooLarge, "request body is too large")
            } else {
                ApiError::new(
                    ErrorCode::ValidationError,
                    "could not read the request body",
                )
            }
        })?;
        parse_json(&bytes).map(Json)
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Path parameters; a parameter that does not parse (a bad UUID, say) is a 400 naming it.
#[derive(Debug, Clone, Copy)]
pub struct Path<T>(pub T);

fn friendly_type(expected: &str) -> &'static str {
    if expected.contains("Uuid") {
        "a UUID"
    } else if expected.contains("u8")
        || expected.contains("u16")
        || expected.contains("u32")
        || expected.contains("u64")
    {
        "a non-negative integer"
    } else if expected.contains("i16") || expected.contains("i32") || expected.contains("i64") {
        "an integer"
    } else {
        "a valid value"
    }
}

impl<S, T> FromRequestParts<S> for Path<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // A single-value `Path<T>` error carries no key: name the route's only parameter.
        let only_key = RawPathParams::from_request_parts(parts, state)
            .await
            .ok()
            .and_then(|raw| raw.iter().next().map(|(k, _)| k.to_owned()))
            .unwrap_or_else(|| "path".to_owned());
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(PathRejection::FailedToDeserializePathParams(err)) => Err(match err.into_kind() {
                ErrorKind::ParseErrorAtKey {
                    key, expected_type, ..
                } => ApiError::validation(
                    &key,
                    format!(
                        "path parameter `{key}` must be {}",
                        friendly_type(expected_type)
                    ),
                ),
                ErrorKind::ParseError { expected_type, .. } => ApiError::validation(
                    &only_key,
                    format!(
                        "path parameter `{only_key}` must be {}",
                        friendly_type(expected_type)
                    ),
                ),
                ErrorKind::InvalidUtf8InPathParam { key } => {
                    ApiError::validation(&key, format!("path parameter `{key}` is not valid UTF-8"))
                }
                ErrorKind::ParseErrorAtIndex { expected_type, .. } => ApiError::validation(
                    &only_key,
                    format!(
                        "path parameter `{only_key}` must be {}",
                        friendly_type(expected_type)
                    ),
                ),
                _ => ApiError::validation(&only_key, "invalid path parameter"),
            }),
            Err(other) => Err(ApiError::internal(other)),
        }
    }
}

/// Query parameters; a value of the wrong type is a 400 naming the parameter. Unknown
/// parameters are ignored (caches and trackers add their own).
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

/// Parses a query string into `T`, with the rejection of [`Query`].
pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner().to_string();
        let field = if path == "." {
            field_from_message(&inner).unwrap_or_else(|| "query".to_owned())
        } else {
            path
        };
        ApiError::validation(
            &field,
            format!("invalid query parameter `{field}`: {inner}"),
        )
    })
}

impl<S, T> FromRequestParts<S> for Query<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parse_query(parts.uri.query().unwrap_or_default()).map(Query)
    }
}

/// Middleware (`from_fn_with_state(limit, read_whole_body)`): reads each request's whole
/// body, up to `limit` bytes, before the handler runs, and hands it the bytes.
///
/// Why: a handler that answers without reading the body (a publish that takes none, a
/// 404 before the JSON is parsed) leaves hyper with unread bytes on the connection, and it
/// then closes the connection after the answer, sometimes after having promised
/// keep-alive. A gateway that pooled that connection and writes its next request to it
/// gets a broken pipe: a 502 for a POST, which it never retries. Read whole, every body
/// leaves the connection clean. Only for APIs whose bodies are small (JSON); an
/// over-long body is 413, a client that stops sending is 400.
pub async fn read_whole_body(
    axum::extract::State(limit): axum::extract::State<usize>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    use http_body::Body as _;
    if request.body().is_end_stream() {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    match http_body_util::BodyExt::collect(http_body_util::Limited::new(body, limit)).await {
        Ok(collected) => {
            let body = axum::body::Body::from(collected.to_bytes());
            next.run(Request::from_parts(parts, body)).await
        }
        Err(err) if err.is::<http_body_util::LengthLimitError>() => {
            ApiError::new(ErrorCode::PayloadTooLarge, "request body is too large").into_response()
        }
        Err(_) => ApiError::new(
            ErrorCode::ValidationError,
            "the request body could not be read whole",
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use uuid::Uuid;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        title: String,
        order_number: Option<i32>,
        inner: Option<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        id: Uuid,
    }

    fn field_of(err: &ApiError) -> String {
        err.envelope()["error"]["details"]["field"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn json_errors_name_the_field() {
        let err = parse_json::<Body>(br#"{"title": 5}"#).unwrap_err();
        assert_eq!(field_of(&err), "title");
        let err = parse_json::<Body>(br#"{"title": "a", "nope": 1}"#).unwrap_err();
        assert_eq!(field_of(&err), "nope");
        let err = parse_json::<Body>(br#"{}"#).unwrap_err();
        assert_eq!(field_of(&err), "title");
        let err = parse_json::<Body>(br#"{"title": "a", "inner": {"id": "x"}}"#).unwrap_err();
        assert_eq!(field_of(&err), "inner.id");
        let err =
            parse_json::<Body>(br#"{"title": "a", "order_number": 99999999999}"#).unwrap_err();
        assert_eq!(field_of(&err), "order_number");
        let err = parse_json::<Body>(br#"{"title": "#).unwrap_err();
        assert_eq!(field_of(&err), "body");
        let err = parse_json::<Body>(br#"{"title": "a"} x"#).unwrap_err();
        assert_eq!(field_of(&err), "body");
        assert_eq!(err.code(), ErrorCode::ValidationError);
    }

    #[tokio::test]
    async fn a_bad_single_path_parameter_is_named() {
        use axum::{Router, body::Body, routing::get};
        use tower::ServiceExt;
        let app = Router::new().route(
            "/items/{id}",
            get(|Path(id): Path<Uuid>| async move { id.to_string() }),
        );
        let res = app
            .oneshot(
                http::Request::get("/items/nope")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(res.status(), 400);
        let body = axum::body::to_bytes(res.into_body(), 1 << 16)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["details"]["field"], "id", "{v}");
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Paging {
        page: Option<u32>,
        category_id: Option<Uuid>,
    }

    #[test]
    fn query_errors_name_the_parameter() {
        let err = parse_query::<Paging>("page=abc").unwrap_err();
        assert_eq!(field_of(&err), "page");
        let err = parse_query::<Paging>("page=-1").unwrap_err();
        assert_eq!(field_of(&err), "page");
        let err = parse_query::<Paging>("category_id=zzz").unwrap_err();
        assert_eq!(field_of(&err), "category_id");
        assert!(parse_query::<Paging>("page=2&utm_source=x").is_ok());
    }
}
