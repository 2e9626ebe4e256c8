//! Header hygiene, the first stage of every gateway and the only one that removes what a
//! client sent: hop-by-hop headers (RFC 9110 §7.6.1), the names a `Connection` header
//! lists, and client-sent identity headers (`X-User-*`). Done once per request, before
//! anything reads the headers (the request context, its log line), so a name a client
//! lists in `Connection` can never remove a header a later stage sets (the identity
//! headers), and an identity header is only ever the gateway's.

use http::{HeaderMap, HeaderName, header};

/// The hygiene stage: strips a request's hop-by-hop headers, the names its `Connection`
/// lists, and its identity headers.
pub fn sanitize(headers: &mut HeaderMap) {
    // One pass over the names first: clients seldom send any of them.
    let (mut hop, mut identity) = (false, false);
    for name in headers.keys() {
        hop |= is_hop_by_hop(name);
        identity |= name.as_str().starts_with("x-user-");
    }
    if hop {
        strip_listed_and_hop_by_hop(headers);
    }
    if identity {
        let forged: Vec<HeaderName> = headers
            .keys()
            .filter(|name| name.as_str().starts_with("x-user-"))
            .cloned()
            .collect();
        for name in forged {
            headers.remove(name);
        }
    }
}

/// Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded. One `match` on the name's
/// text: cheaper than comparing it with each of them as a `HeaderName`.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// Drops hop-by-hop headers and the names a `Connection` header lists (and the
/// `Connection` header itself): on a client's request in [`sanitize`], and on an
/// upstream's answer in the proxy.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Usually there are none: one pass over the names instead of a lookup per name.
    if headers.keys().any(is_hop_by_hop) {
        strip_listed_and_hop_by_hop(headers);
    }
}

/// An upstream's answer as the client gets it: its hop-by-hop headers (and those its
/// `Connection` lists) and its `Server` (what answered is nobody's business) dropped, in
/// one pass over the names when there are none.
pub fn strip_answer(headers: &mut HeaderMap) {
    let (mut hop, mut server) = (false, false);
    for name in headers.keys() {
        hop |= is_hop_by_hop(name);
        server |= name == header::SERVER;
    }
    if hop {
        strip_listed_and_hop_by_hop(headers);
    }
    if server {
        headers.remove(header::SERVER);
    }
}

/// [`strip_hop_by_hop`] once one is known to be there.
fn strip_listed_and_hop_by_hop(headers: &mut HeaderMap) {
    // Names the `Connection` header lists go too; its usual `keep-alive` and `close` are
    // options, not names to look for (`Keep-Alive` is removed below anyway).
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        // Framing and `Host` are the connection's own business, read by the server before
        // any of this: a client listing them must not hide them from the route check.
        .filter(|token| {
            !["keep-alive", "close", "content-length", "host"]
                .iter()
                .any(|kept| token.eq_ignore_ascii_case(kept))
        })
        .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    // Only the names present.
    while let Some(name) = headers.keys().find(|name| is_hop_by_hop(name)).cloned() {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use ic_http::headers::{X_USER_EMAIL, X_USER_ID, X_USER_ROLES};

    use super::*;

    #[test]
    fn client_identity_headers_are_dropped() {
        let mut headers = HeaderMap::new();
        headers.insert(X_USER_ID, HeaderValue::from_static("admin"));
        headers.insert(X_USER_ROLES, HeaderValue::from_static("admin"));
        headers.insert(X_USER_EMAIL, HeaderValue::from_static("a@b.c"));
        headers.insert("x-user-name", HeaderValue::from_static("root"));
        headers.insert("x-user-anything", HeaderValue::from_static("x"));
        headers.insert("accept", HeaderValue::from_static("*/*"));
        sanitize(&mut headers);
        assert_eq!(headers.len(), 1);
    }

    #[test]
    fn hop_by_hop_headers_and_those_named_in_connection_are_stripped() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("accept", HeaderValue::from_static("application/json"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("accept"));
    }
}
