//! Webhook subscriptions (`shared/spec/broadcaster.md`, "Subscriptions"): parsed from
//! `WEBHOOK_SUBSCRIPTIONS_FILE` (YAML, or JSON, which is YAML too) or from `WEBHOOK_URL`
//! + `WEBHOOK_SECRET`, validated entry by entry; an error names the entry.

use std::{fmt, time::Duration};

use http::{HeaderName, HeaderValue};
use serde::Deserialize;
use url::Url;

use super::{
    retry::parse_duration,
    signing::{SecretError, WebhookSecret},
};

/// Default time allowed for one webhook call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest allowed webhook call.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(300);
/// Default concurrent calls per subscription.
pub const DEFAULT_MAX_CONCURRENCY: u32 = 4;
/// Highest allowed concurrency per subscription.
pub const MAX_CONCURRENCY: u32 = 256;

/// Headers a subscription may not set: the signature, framing and tracing are ours.
const RESERVED_HEADERS: [&str; 10] = [
    "content-type",
    "content-length",
    "host",
    "user-agent",
    "traceparent",
    "tracestate",
    ic_telemetry::X_CORRELATION_ID,
    "transfer-encoding",
    "connection",
    "authorization-signature",
];

/// A subscription id: 1..64 of `[A-Za-z0-9_-]` (it names a NATS subject token and a
/// durable consumer).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct SubscriptionId(String);

impl SubscriptionId {
    /// Validates an id.
    pub fn parse(text: &str) -> Result<Self, String> {
        if (1..=64).contains(&text.len())
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            Ok(Self(text.to_owned()))
        } else {
            Err("1 to 64 letters, digits, '-' or '_'".into())
        }
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SubscriptionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An event-type filter: `*` matches any run of characters (`org.internationalcenter.services.*`,
/// `*.published`, `*`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct TypeFilter(String);

impl TypeFilter {
    /// Validates a filter.
    pub fn parse(text: &str) -> Result<Self, String> {
        if (1..=255).contains(&text.len())
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-*".contains(&b))
        {
            Ok(Self(text.to_owned()))
        } else {
            Err(format!(
                "event type filter {text:?} may use letters, digits, '.', '_', '-' and '*'"
            ))
        }
    }

    /// Whether `event_type` matches.
    pub fn matches(&self, event_type: &str) -> bool {
        wildcard_match(self.0.as_bytes(), event_type.as_bytes())
    }
}

/// Glob matching with `*` only, iterative (no exponential backtracking).
fn wildcard_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|b| *b == b'*')
}

/// A validated subscription.
#[derive(Debug, Clone)]
pub struct Subscription {
    /// Its id.
    pub id: SubscriptionId,
    /// Where deliveries are POSTed.
    pub url: Url,
    /// Signing secrets (several during a rotation).
    pub secrets: Vec<WebhookSecret>,
    /// Event types delivered (any match).
    pub event_types: Vec<TypeFilter>,
    /// Extra headers sent with every delivery.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Whether it receives deliveries at all.
    pub enabled: bool,
    /// Concurrent calls at most.
    pub max_concurrency: u32,
    /// Time allowed per call.
    pub timeout: Duration,
}

impl Subscription {
    /// The URL for logs and reports: scheme, host and port only (paths and queries of
    /// webhook URLs often carry tokens).
    pub fn redacted_url(&self) -> String {
        let origin = self.url.origin().ascii_serialization();
        if self.url.path() == "/" && self.url.query().is_none() {
            format!("{origin}/")
        } else {
            format!("{origin}/…")
        }
    }

    /// Whether an event of `event_type` goes to this subscription.
    pub fn wants(&self, event_type: &str) -> bool {
        self.event_types.iter().any(|f| f.matches(event_type))
    }
}

/// A timeout written as `15s` or as a number of seconds.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawDuration {
    Seconds(u64),
    Text(String),
}

/// One secret or a list (rotation).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawSecrets {
    One(String),
    Many(Vec<String>),
}

/// One entry as written in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSubscription {
    id: String,
    url: String,
    #[serde(alias = "secrets")]
    secret: Option<RawSecrets>,
    #[serde(default, alias = "filters", alias = "event_type_filters")]
    event_types: Option<Vec<String>>,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    #[serde(default = "yes")]
    enabled: bool,
    max_concurrency: Option<u32>,
    timeout: Option<RawDuration>,
}

fn yes() -> bool {
    true
}

/// A subscription that failed validation: which entry, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("subscription {entry}: {message}")]
pub struct SubscriptionError {
    /// `"<id>"` or `#<position>` when the id itself is the problem.
    pub entry: String,
    /// What is wrong (never a secret).
    pub message: String,
}

impl RawSubscription {
    fn validate(self, position: usize) -> Result<Subscription, SubscriptionError> {
        let fail = |entry: String, message: String| SubscriptionError { entry, message };
        let id = SubscriptionId::parse(&self.id)
            .map_err(|m| fail(format!("#{position}"), format!("id {:?}: {m}", self.id)))?;
        let entry = format!("{:?}", id.as_str());
        let url = Url::parse(&self.url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| fail(entry.clone(), "url must be an absolute http(s) URL".into()))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(fail(
                entry,
                "url must not carry credentials; use headers".into(),
            ));
        }
        let secrets = match self.secret {
            None => Vec::new(),
            Some(RawSecrets::One(s)) => vec![s],
            Some(RawSecrets::Many(list)) => list,
        };
        if secrets.is_empty() {
            return Err(fail(entry, "a secret (whsec_…) is required".into()));
        }
        let secrets = secrets
            .iter()
            .enumerate()
            .map(|(i, s)| {
                WebhookSecret::parse(s).map_err(|e: SecretError| {
                    fail(entry.clone(), format!("secret #{}: {e}", i + 1))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let event_types = self
            .event_types
            .unwrap_or_else(|| vec!["*".into()])
            .iter()
            .map(|t| TypeFilter::parse(t).map_err(|m| fail(entry.clone(), m)))
            .collect::<Result<Vec<_>, _>>()?;
        if event_types.is_empty() {
            return Err(fail(entry, "event_types must not be empty".into()));
        }
        let headers = self
            .headers
            .iter()
            .map(|(name, value)| {
                let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                    fail(
                        entry.clone(),
                        format!("header {name:?} is not a valid name"),
                    )
                })?;
                if RESERVED_HEADERS.contains(&header.as_str())
                    || header.as_str().starts_with("webhook-")
                {
                    return Err(fail(
                        entry.clone(),
                        format!("header {name:?} is set by the broadcaster"),
                    ));
                }
                let value = HeaderValue::from_str(value).map_err(|_| {
                    fail(
                        entry.clone(),
                        format!("header {name:?} has an invalid value"),
                    )
                })?;
                Ok((header, value))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let max_concurrency = self.max_concurrency.unwrap_or(DEFAULT_MAX_CONCURRENCY);
        if !(1..=MAX_CONCURRENCY).contains(&max_concurrency) {
            return Err(fail(
                entry,
                format!("max_concurrency must be 1 to {MAX_CONCURRENCY}"),
            ));
        }
        let timeout = match self.timeout {
            None => Some(DEFAULT_TIMEOUT),
            Some(RawDuration::Seconds(s)) => Some(Duration::from_secs(s)),
            Some(RawDuration::Text(t)) => parse_duration(&t),
        }
        .filter(|t| *t >= Duration::from_millis(100) && *t <= MAX_TIMEOUT)
        .ok_or_else(|| {
            fail(
                entry.clone(),
                "timeout must be 100ms to 300s (e.g. 15s)".into(),
            )
        })?;
        Ok(Subscription {
            id,
            url,
            secrets,
            event_types,
            headers,
            enabled: self.enabled,
            max_concurrency,
            timeout,
        })
    }
}

/// Parses a subscriptions file (a YAML or JSON list).
pub fn parse_file(text: &str) -> Result<Vec<Subscription>, SubscriptionError> {
    let raw: Vec<serde_yaml::Value> =
        serde_yaml::from_str(text).map_err(|e| SubscriptionError {
            entry: "file".into(),
            message: format!(
                "not a YAML or JSON list of subscriptions ({})",
                first_line(&e.to_string())
            ),
        })?;
    let mut subscriptions: Vec<Subscription> = Vec::with_capacity(raw.len());
    for (i, value) in raw.into_iter().enumerate() {
        let position = i + 1;
        let entry = value
            .get("id")
            .and_then(serde_yaml::Value::as_str)
            .map_or_else(|| format!("#{position}"), |id| format!("{id:?}"));
        let raw: RawSubscription =
            serde_yaml::from_value(value).map_err(|e| SubscriptionError {
                entry: entry.clone(),
                message: first_line(&e.to_string()),
            })?;
        let subscription = raw.validate(position)?;
        if subscriptions.iter().any(|s| s.id == subscription.id) {
            return Err(SubscriptionError {
                entry,
                message: "the id is used twice".into(),
            });
        }
        subscriptions.push(subscription);
    }
    Ok(subscriptions)
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_owned()
}

/// The single subscription of `WEBHOOK_URL` + `WEBHOOK_SECRET`: every event.
pub fn from_url(url: &str, secret: &str) -> Result<Subscription, SubscriptionError> {
    RawSubscription {
        id: "default".into(),
        url: url.to_owned(),
        secret: Some(RawSecrets::One(secret.to_owned())),
        event_types: None,
        headers: Default::default(),
        enabled: true,
        max_concurrency: None,
        timeout: None,
    }
    .validate(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn wildcards_match_any_run_of_characters() {
        let f = |p: &str| TypeFilter::parse(p).unwrap();
        assert!(f("*").matches("org.internationalcenter.services.service.published"));
        assert!(
            f("org.internationalcenter.services.*")
                .matches("org.internationalcenter.services.category.deleted")
        );
        assert!(f("*.published").matches("org.internationalcenter.services.service.published"));
        assert!(!f("*.published").matches("org.internationalcenter.services.service.archived"));
        assert!(f("org.*.service.*").matches("org.internationalcenter.services.service.created"));
        assert!(
            !f("org.internationalcenter.content.*")
                .matches("org.internationalcenter.services.service.created")
        );
        assert!(f("a*b*c*d*e*f").matches("aXbXcXdXeXf"));
        assert!(
            !f("a*a*a*a*a*a*a*b").matches(&"a".repeat(5000)),
            "no blow-up"
        );
    }

    #[test]
    fn a_yaml_file_with_every_field_parses() {
        let file = format!(
            r#"
- id: crm
  url: https://crm.example.org/hooks
  secret: [{SECRET}, {SECRET}]
  event_types: ["org.internationalcenter.services.*"]
  headers: {{X-Api-Key: abc}}
  max_concurrency: 2
  timeout: 5s
- id: audit-sink
  url: http://127.0.0.1:9000/in
  secret: {SECRET}
  enabled: false
  timeout: 30
"#
        );
        let subs = parse_file(&file).unwrap();
        assert_eq!(subs.len(), 2);
        assert_eq!(subs[0].secrets.len(), 2);
        assert_eq!(subs[0].timeout, Duration::from_secs(5));
        assert_eq!(subs[0].headers[0].0, "x-api-key");
        assert!(subs[0].wants("org.internationalcenter.services.service.created"));
        assert!(!subs[0].wants("org.internationalcenter.content.content.uploaded"));
        assert!(!subs[1].enabled);
        assert!(subs[1].wants("anything"), "no filter means every event");
        assert_eq!(subs[0].redacted_url(), "https://crm.example.org/…");
        assert_eq!(subs[1].timeout, Duration::from_secs(30));
    }

    #[test]
    fn json_is_accepted_too() {
        let file = format!(r#"[{{"id":"a","url":"https://a.example/h","secret":"{SECRET}"}}]"#);
        assert_eq!(
            parse_file(&file).unwrap()[0].max_concurrency,
            DEFAULT_MAX_CONCURRENCY
        );
    }

    #[test]
    fn every_invalid_entry_is_named_and_secrets_never_echoed() {
        let bad = |entry: &str| {
            let err = parse_file(&format!("- {entry}")).unwrap_err();
            assert!(!err.to_string().contains("MfKQ"), "{err}");
            err.to_string()
        };
        let base = format!("url: https://a.example/h, secret: {SECRET}");
        assert!(
            bad(&format!("{{id: x, url: ftp://a/b, secret: {SECRET}}}")).contains("\"x\": url")
        );
        assert!(bad("{id: x, url: https://a.example/h}").contains("secret"));
        assert!(
            bad("{id: x, url: https://a.example/h, secret: whsec_short}")
                .contains("\"x\": secret #1")
        );
        assert!(bad(&format!("{{id: 'a.b', {base}}}")).contains("#1"));
        assert!(bad(&format!("{{id: x, {base}, max_concurrency: 0}}")).contains("max_concurrency"));
        assert!(bad(&format!("{{id: x, {base}, timeout: forever}}")).contains("timeout"));
        assert!(
            bad(&format!(
                "{{id: x, {base}, headers: {{webhook-id: 'one'}}}}"
            ))
            .contains("set by the broadcaster")
        );
        assert!(bad(&format!("{{id: x, {base}, colour: blue}}")).contains("\"x\": unknown field"));
        assert!(
            bad(&format!("{{id: x, {base}, event_types: ['a b']}}")).contains("event type filter")
        );
        let twice = parse_file(&format!("- {{id: x, {base}}}\n- {{id: x, {base}}}")).unwrap_err();
        assert_eq!(twice.entry, "\"x\"");
        assert!(
            parse_file("{not: a list}")
                .unwrap_err()
                .to_string()
                .contains("file")
        );
    }

    #[test]
    fn webhook_url_means_one_subscription_to_everything() {
        let sub = from_url("https://hooks.example/in", SECRET).unwrap();
        assert_eq!(sub.id.as_str(), "default");
        assert!(sub.wants("org.internationalcenter.services.service.published"));
    }
}
