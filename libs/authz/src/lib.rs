//! Authorization decisions (`shared/spec/gateways.md`, "Authorization"): the Rego
//! policies of `policies/`, evaluated in-process by regorus, answer
//! `data.admin_gateway.authz.allow` and `.reason` for a request's user and route. The
//! policies' own Rego unit tests (`test_` rules in `*_test.rego`) run through the same
//! engine ([`Policies::run_tests`]). With `OPA_URL` set, an OPA server decides instead,
//! through its REST data API ([`OpaClient`]); [`Authorizer`] is either. No decision
//! (an error, an unreachable or malformed OPA) is an [`AuthzError`]: the gateway fails
//! closed.

use std::{path::Path, sync::Mutex};

use serde::Serialize;

/// The query of an allow decision.
pub const ALLOW: &str = "data.admin_gateway.authz.allow";
/// The query of its reason.
pub const REASON: &str = "data.admin_gateway.authz.reason";

/// Why no decision could be had (the gateway then fails closed: 503).
#[derive(Debug, thiserror::Error)]
pub enum AuthzError {
    /// A policy file could not be read or parsed.
    #[error("loading policy {file}: {message}")]
    Load {
        /// The file.
        file: String,
        /// What was wrong.
        message: String,
    },
    /// Evaluation failed, or the answer was not what the query promises.
    #[error("evaluating {query}: {message}")]
    Eval {
        /// The query.
        query: &'static str,
        /// What was wrong.
        message: String,
    },
}

/// Who asks.
#[derive(Debug, Clone, Serialize)]
pub struct User {
    /// `sub`.
    pub id: String,
    /// Roles (groups).
    pub roles: Vec<String>,
    /// E-mail, when known.
    pub email: Option<String>,
}

/// What is asked.
#[derive(Debug, Clone, Serialize)]
pub struct Request {
    /// Method.
    pub method: String,
    /// The normalised path.
    pub path: String,
    /// The matched route template.
    pub route: String,
}

/// The input document of a decision.
#[derive(Debug, Clone, Serialize)]
pub struct Input {
    /// Who.
    pub user: User,
    /// What.
    pub request: Request,
}

/// A decision and its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Allowed.
    pub allow: bool,
    /// Why, for the request log.
    pub reason: String,
}

/// One Rego unit test's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestOutcome {
    /// `data.<package>.<rule>`.
    pub name: String,
    /// It held.
    pub passed: bool,
}

/// The loaded policies.
#[derive(Debug)]
pub struct Policies {
    /// regorus evaluates with `&mut`; decisions take turns (a gateway keeps one per worker
    /// when that shows in its benchmark).
    engine: Mutex<regorus::Engine>,
    /// `data.<package>.test_…` of every `*_test.rego`.
    tests: Vec<String>,
}

impl Policies {
    /// Every `.rego` file under `dir` (not recursing into hidden folders).
    pub fn load_dir(dir: &Path) -> Result<Self, AuthzError> {
        let mut files = Vec::new();
        collect(dir, &mut files).map_err(|err| AuthzError::Load {
            file: dir.display().to_string(),
            message: err.to_string(),
        })?;
        files.sort();
        let mut sources = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(&file).map_err(|err| AuthzError::Load {
                file: file.display().to_string(),
                message: err.to_string(),
            })?;
            sources.push((file.display().to_string(), text));
        }
        Self::from_sources(sources)
    }

    /// Policies from `(file name, Rego text)` pairs.
    pub fn from_sources(sources: Vec<(String, String)>) -> Result<Self, AuthzError> {
        let mut engine = regorus::Engine::new();
        let mut tests = Vec::new();
        for (file, text) in sources {
            let package = text
                .lines()
                .find_map(|l| l.trim().strip_prefix("package "))
                .map(|p| p.trim().to_owned());
            if file.ends_with("_test.rego")
                && let Some(package) = &package
            {
                for line in text.lines() {
                    let Some(rest) = line.strip_prefix("test_") else {
                        continue;
                    };
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    tests.push(format!("data.{package}.test_{name}"));
                }
            }
            engine
                .add_policy(file.clone(), text)
                .map_err(|err| AuthzError::Load {
                    file,
                    message: err.to_string(),
                })?;
        }
        Ok(Self {
            engine: Mutex::new(engine),
            tests,
        })
    }

    /// The decision for `input`.
    pub fn decide(&self, input: &Input) -> Result<Decision, AuthzError> {
        let json = serde_json::to_string(input).map_err(|err| AuthzError::Eval {
            query: ALLOW,
            message: err.to_string(),
        })?;
        let mut engine = self.engine.lock().unwrap_or_else(|e| e.into_inner());
        engine
            .set_input_json(&json)
            .map_err(|err| AuthzError::Eval {
                query: ALLOW,
                message: err.to_string(),
            })?;
        let allow = eval(&mut engine, ALLOW)?;
        let allow = match allow {
            regorus::Value::Bool(allow) => allow,
            other => {
                return Err(AuthzError::Eval {
                    query: ALLOW,
                    message: format!("not a boolean: {other}"),
                });
            }
        };
        let reason = match eval(&mut engine, REASON)? {
            regorus::Value::String(reason) => reason.to_string(),
            _ => String::new(),
        };
        Ok(Decision { allow, reason })
    }

    /// Runs every `test_` rule of the `*_test.rego` files: each must be `true`
    /// (undefined, as a failed Rego test is, counts as failed).
    pub fn run_tests(&self) -> Result<Vec<TestOutcome>, AuthzError> {
        let mut engine = self.engine.lock().unwrap_or_else(|e| e.into_inner());
        engine.set_input(regorus::Value::new_object());
        let mut outcomes = Vec::new();
        for name in &self.tests {
            let passed = engine
                .eval_rule(name.clone())
                .is_ok_and(|value| value == regorus::Value::Bool(true));
            outcomes.push(TestOutcome {
                name: name.clone(),
                passed,
            });
        }
        Ok(outcomes)
    }
}

fn eval(engine: &mut regorus::Engine, query: &'static str) -> Result<regorus::Value, AuthzError> {
    engine
        .eval_rule(query.to_owned())
        .map_err(|err| AuthzError::Eval {
            query,
            message: err.to_string(),
        })
}

fn collect(dir: &Path, files: &mut Vec<std::path::PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let hidden = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if path.is_dir() && !hidden {
            collect(&path, files)?;
        } else if path.extension().is_some_and(|e| e == "rego") {
            files.push(path);
        }
    }
    Ok(())
}

/// An OPA server's data API (`POST /v1/data/admin_gateway/authz` with `{"input": …}`,
/// answered `{"result": {"allow": …, "reason": …}}`).
#[derive(Debug, Clone)]
pub struct OpaClient {
    http: reqwest::Client,
    url: String,
}

/// The path of the decision document on an OPA server.
pub const OPA_DATA_PATH: &str = "/v1/data/admin_gateway/authz";

impl OpaClient {
    /// A client for the OPA server at `base` (`http://opa:8181`), each decision given
    /// `timeout`. (The process has installed its TLS crypto provider.)
    pub fn new(base: &str, timeout: std::time::Duration) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .unwrap_or_default(),
            url: format!("{}{OPA_DATA_PATH}", base.trim_end_matches('/')),
        }
    }

    /// The server's decision for `input`.
    pub async fn decide(&self, input: &Input) -> Result<Decision, AuthzError> {
        let failed = |message: String| AuthzError::Eval {
            query: ALLOW,
            message,
        };
        let response = self
            .http
            .post(&self.url)
            .json(&serde_json::json!({ "input": input }))
            .send()
            .await
            .map_err(|err| failed(format!("OPA unreachable: {err}")))?;
        if !response.status().is_success() {
            return Err(failed(format!("OPA answered {}", response.status())));
        }
        let body: serde_json::Value = response
            .json()
            .await
            .map_err(|err| failed(format!("OPA's answer is not JSON: {err}")))?;
        // An undefined document (no `result`) or a non-boolean `allow` is no decision.
        let Some(allow) = body["result"]["allow"].as_bool() else {
            return Err(failed(format!(
                "OPA's answer has no boolean result.allow: {body}"
            )));
        };
        Ok(Decision {
            allow,
            reason: body["result"]["reason"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        })
    }
}

/// Who decides: the embedded policies, or an OPA server.
#[derive(Debug)]
pub enum Authorizer {
    /// `policies/`, evaluated in-process (boxed: the engine is large).
    Embedded(Box<Policies>),
    /// `OPA_URL`.
    Opa(OpaClient),
}

impl Authorizer {
    /// The decision for `input`; an error means none could be had (fail closed).
    pub async fn decide(&self, input: &Input) -> Result<Decision, AuthzError> {
        match self {
            Self::Embedded(policies) => policies.decide(input),
            Self::Opa(opa) => opa.decide(input).await,
        }
    }
}
