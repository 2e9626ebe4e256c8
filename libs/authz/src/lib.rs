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

/// Both, as one rule of a module added to the policies (for one run of the VM).
const DECISION: &str = "data.ic_gateway_decision.decision";
const DECISION_MODULE: &str = "package ic_gateway_decision\n\
    import rego.v1\n\
    default reason := \"\"\n\
    reason := data.admin_gateway.authz.reason\n\
    decision := {\"allow\": data.admin_gateway.authz.allow, \"reason\": reason}\n";

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

impl Input {
    /// As regorus' value, built directly (no JSON text in between).
    fn to_value(&self) -> regorus::Value {
        use regorus::Value;
        fn object<const N: usize>(fields: [(&str, Value); N]) -> Value {
            Value::from(
                fields
                    .into_iter()
                    .map(|(name, value)| (Value::from(name), value))
                    .collect::<std::collections::BTreeMap<_, _>>(),
            )
        }
        let text = |s: &str| Value::from(s);
        object([
            (
                "user",
                object([
                    ("id", text(&self.user.id)),
                    (
                        "roles",
                        Value::from(self.user.roles.iter().map(|r| text(r)).collect::<Vec<_>>()),
                    ),
                    (
                        "email",
                        self.user.email.as_deref().map_or(Value::Null, text),
                    ),
                ]),
            ),
            (
                "request",
                object([
                    ("method", text(&self.request.method)),
                    ("path", text(&self.request.path)),
                    ("route", text(&self.request.route)),
                ]),
            ),
        ])
    }
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
pub struct Policies {
    /// The interpreter, for the Rego unit tests.
    engine: Mutex<regorus::Engine>,
    /// The decision's rules (`allow`, `reason`) compiled for regorus' VM: what every
    /// request runs (about 50x faster than interpreting them, measured by `cargo xtask
    /// bench admin-gateway`).
    /// None when the policies define no decision (only tests, say): every decision is
    /// then an error, and the gateway fails closed.
    program: Option<std::sync::Arc<regorus::rvm::program::Program>>,
    /// Idle VMs with the program loaded (a VM evaluates with `&mut`): a decision takes
    /// one, or makes one when none is idle, and puts it back.
    vms: Mutex<Vec<regorus::rvm::vm::RegoVM>>,
    /// `data.<package>.test_…` of every `*_test.rego`.
    tests: Vec<String>,
}

impl std::fmt::Debug for Policies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policies")
            .field("tests", &self.tests)
            .finish_non_exhaustive()
    }
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
        fn compile_error(err: impl std::fmt::Display) -> AuthzError {
            AuthzError::Load {
                file: "(the policies)".into(),
                message: format!("compiling {ALLOW} and {REASON}: {err}"),
            }
        }
        // A set of policies without the rule (only tests, say) has no decision.
        let program = match engine.compile_with_entrypoint(&regorus::Rc::from(ALLOW)) {
            Ok(_) => {
                // Both answers from one run of the VM (`allow` evaluated once).
                engine
                    .add_policy("(decision).rego".into(), DECISION_MODULE.into())
                    .map_err(compile_error)?;
                let compiled = engine
                    .compile_with_entrypoint(&regorus::Rc::from(DECISION))
                    .map_err(compile_error)?;
                Some(
                    regorus::languages::rego::compiler::Compiler::compile_from_policy(
                        &compiled,
                        &[DECISION],
                    )
                    .map_err(compile_error)?,
                )
            }
            Err(_) => None,
        };
        Ok(Self {
            engine: Mutex::new(engine),
            program,
            vms: Mutex::default(),
            tests,
        })
    }

    /// The decision for `input`.
    pub fn decide(&self, input: &Input) -> Result<Decision, AuthzError> {
        fn failed<E: std::fmt::Display>(query: &'static str) -> impl Fn(E) -> AuthzError {
            move |err| AuthzError::Eval {
                query,
                message: err.to_string(),
            }
        }
        let Some(program) = &self.program else {
            return Err(AuthzError::Eval {
                query: ALLOW,
                message: "the policies define neither rule".into(),
            });
        };
        let input = input.to_value();
        let idle = self.vms.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut vm = idle.unwrap_or_else(|| {
            let mut vm = regorus::rvm::vm::RegoVM::new();
            vm.load_program(program.clone());
            vm
        });
        vm.set_input(input);
        let decision = vm.execute_entry_point_by_name(DECISION);
        self.vms.lock().unwrap_or_else(|e| e.into_inner()).push(vm);
        let decision = decision.map_err(failed(ALLOW))?;
        let allow = match &decision["allow"] {
            regorus::Value::Bool(allow) => *allow,
            regorus::Value::Undefined => {
                return Err(AuthzError::Eval {
                    query: ALLOW,
                    message: "undefined for this input".into(),
                });
            }
            other => {
                return Err(AuthzError::Eval {
                    query: ALLOW,
                    message: format!("not a boolean: {other}"),
                });
            }
        };
        let reason = match &decision["reason"] {
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
