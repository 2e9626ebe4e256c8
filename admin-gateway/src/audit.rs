//! The audit stage: what the record of a request needs, gathered as the request goes
//! through the pipeline ([`Draft`]), and a tap on the request body that keeps its first
//! bytes for the record while the body streams to the upstream untouched ([`Tap`]). The
//! record is built (the captured JSON parsed and redacted) and queued once the answer's
//! head is known; serialising and publishing it is the publisher's, in the background.
//! The copy is bounded by [`JSON_CAPTURE`] / [`UPLOAD_CAPTURE`].

use std::{
    net::IpAddr,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll},
    time::Instant,
};

use axum::{body::Body, extract::Request};
use bytes::Bytes;
use http::{HeaderMap, header};
use http_body::{Body as _, Frame, SizeHint};
use ic_audit::{RequestRecord, redact, redact_query};
use serde_json::{Value, json};
use uuid::Uuid;

/// The most of a JSON body kept for the record.
pub const JSON_CAPTURE: usize = 64 * 1024;
/// The most of an upload kept to find its file name and type.
pub const UPLOAD_CAPTURE: usize = 8 * 1024;

/// What a tap saw.
#[derive(Debug, Default)]
struct Seen {
    head: Vec<u8>,
    total: u64,
}

/// A request body that keeps its first `cap` bytes for the audit record.
pub struct Tap {
    inner: Body,
    cap: usize,
    seen: Arc<Mutex<Seen>>,
}

impl http_body::Body for Tap {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            seen.total += data.len() as u64;
            let room = self.cap.saturating_sub(seen.head.len());
            seen.head.extend_from_slice(&data[..room.min(data.len())]);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// How the body is summarised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Json,
    Upload,
}

/// The record of one request, filled in as it goes through the pipeline.
#[derive(Debug)]
pub struct Draft {
    started: Instant,
    /// The user (`sub`), once authenticated.
    pub user_id: Option<String>,
    /// Their roles.
    pub roles: Vec<String>,
    method: String,
    /// The route template, once matched.
    pub route: Option<&'static str>,
    /// The normalised path (the raw one until normalised).
    pub path: String,
    query: Option<String>,
    client_ip: IpAddr,
    correlation_id: String,
    trace_id: String,
    /// Why it was refused or allowed.
    pub reason: Option<String>,
    body: Option<(BodyKind, Option<String>, Arc<Mutex<Seen>>)>,
}

impl Draft {
    /// The draft of `request` from `client_ip`, started now.
    pub fn new(request: &Request, client_ip: IpAddr) -> Self {
        let context = request.extensions().get::<ic_http::RequestContext>();
        Self {
            started: Instant::now(),
            user_id: None,
            roles: Vec::new(),
            method: request.method().as_str().to_owned(),
            route: None,
            path: request.uri().path().to_owned(),
            query: request.uri().query().map(redact_query),
            client_ip,
            correlation_id: context.map_or_else(String::new, |c| c.correlation_id.to_string()),
            trace_id: context.map_or_else(String::new, |c| c.trace.trace_id.to_string()),
            reason: None,
            body: None,
        }
    }

    /// Puts a tap on the body of a request about to be forwarded: an upload
    /// (`upload`: its file name, size and type are recorded) or a JSON body.
    pub fn tap(&mut self, request: Request, upload: bool) -> Request {
        if request.body().is_end_stream() {
            return request;
        }
        let (kind, cap) = if upload {
            (BodyKind::Upload, UPLOAD_CAPTURE)
        } else {
            (BodyKind::Json, JSON_CAPTURE)
        };
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let seen: Arc<Mutex<Seen>> = Arc::default();
        self.body = Some((kind, content_type, seen.clone()));
        request.map(|inner| Body::new(Tap { inner, cap, seen }))
    }

    /// The record, for an answer with `status`, made now.
    pub fn finish(self, service: &str, environment: &str, status: u16) -> RequestRecord {
        let body = self.body.map(|(kind, content_type, seen)| {
            let seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
            summarise(kind, content_type.as_deref(), &seen)
        });
        RequestRecord {
            audit_id: Uuid::now_v7(),
            audit_timestamp: chrono::Utc::now(),
            service: service.to_owned(),
            environment: environment.to_owned(),
            entity_type: "request".to_owned(),
            entity_id: self.correlation_id.clone(),
            user_id: self.user_id.unwrap_or_else(|| "unauthenticated".to_owned()),
            roles: self.roles,
            method: self.method,
            route: self.route.unwrap_or("unmatched").to_owned(),
            path: self.path,
            query: self.query,
            status,
            latency_ms: self.started.elapsed().as_secs_f64() * 1000.0,
            client_ip: self.client_ip.to_string(),
            correlation_id: self.correlation_id,
            trace_id: self.trace_id,
            reason: self.reason,
            body,
        }
    }
}

fn summarise(kind: BodyKind, content_type: Option<&str>, seen: &Seen) -> Value {
    match kind {
        BodyKind::Upload => {
            let (file_name, file_type) = first_file(content_type, &seen.head);
            json!({"file_name": file_name, "size": seen.total, "type": file_type})
        }
        BodyKind::Json if (seen.total as usize) > seen.head.len() => {
            json!({"truncated": true, "size": seen.total})
        }
        BodyKind::Json => match serde_json::from_slice::<Value>(&seen.head) {
            Ok(mut value) => {
                redact(&mut value);
                value
            }
            // Not JSON: its size only (it could be anything, secrets included).
            Err(_) => json!({"unparsed": true, "size": seen.total}),
        },
    }
}

/// The file name and type of the first part with a file name in the start of a
/// multipart body.
fn first_file(content_type: Option<&str>, head: &[u8]) -> (Option<String>, Option<String>) {
    let boundary = content_type.and_then(|ct| {
        ct.split(';')
            .map(str::trim)
            .find_map(|p| p.strip_prefix("boundary="))
            .map(|b| b.trim_matches('"').to_owned())
    });
    let Some(boundary) = boundary else {
        return (None, None);
    };
    let text = String::from_utf8_lossy(head);
    for part in text.split(&format!("--{boundary}")) {
        let Some((part_headers, _)) = part.split_once("\r\n\r\n") else {
            continue;
        };
        let mut headers = HeaderMap::new();
        for line in part_headers.lines() {
            if let Some((name, value)) = line.split_once(':')
                && let (Ok(name), Ok(value)) = (
                    http::HeaderName::from_bytes(name.trim().as_bytes()),
                    http::HeaderValue::from_str(value.trim()),
                )
            {
                headers.insert(name, value);
            }
        }
        let file_name = headers
            .get(header::CONTENT_DISPOSITION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.split(';')
                    .map(str::trim)
                    .find_map(|p| p.strip_prefix("filename="))
                    .map(|f| f.trim_matches('"').to_owned())
            });
        if file_name.is_some() {
            let file_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            return (file_name, file_type);
        }
    }
    (None, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(bytes: &[u8]) -> Seen {
        Seen {
            head: bytes.to_vec(),
            total: bytes.len() as u64,
        }
    }

    #[test]
    fn a_json_body_is_kept_redacted_and_anything_else_only_measured() {
        let body = seen(br#"{"title":"x","client_secret":"s"}"#);
        assert_eq!(
            summarise(BodyKind::Json, Some("application/json"), &body),
            json!({"title": "x", "client_secret": "[REDACTED]"})
        );
        let text = seen(b"password=hunter2");
        assert_eq!(
            summarise(BodyKind::Json, None, &text),
            json!({"unparsed": true, "size": 16})
        );
        let mut long = seen(b"{\"a\":");
        long.total = 10 * 1024 * 1024;
        assert_eq!(
            summarise(BodyKind::Json, None, &long),
            json!({"truncated": true, "size": 10 * 1024 * 1024})
        );
    }

    #[test]
    fn an_upload_is_its_file_name_size_and_type() {
        let body = "--XyZ\r\nContent-Disposition: form-data; name=\"alt_text\"\r\n\r\nA chart\r\n\
                    --XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"report.pdf\"\r\n\
                    Content-Type: application/pdf\r\n\r\n%PDF-1.7 ...";
        let summary = summarise(
            BodyKind::Upload,
            Some("multipart/form-data; boundary=XyZ"),
            &seen(body.as_bytes()),
        );
        assert_eq!(
            summary,
            json!({"file_name": "report.pdf", "size": body.len(), "type": "application/pdf"})
        );
    }
}
