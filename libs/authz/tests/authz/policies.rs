//! The repository's policies (`policies/`): their Rego unit tests, and a decision table
//! over roles × route families through the same engine.

use std::path::Path;

use ic_authz::{Input, Policies, Request, User};

fn policies() -> Policies {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies");
    Policies::load_dir(&dir).expect("the policies load")
}

#[test]
fn every_rego_unit_test_of_the_policies_holds() {
    let outcomes = policies().run_tests().unwrap();
    assert!(outcomes.len() >= 10, "the tests were found: {outcomes:?}");
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|o| !o.passed)
        .map(|o| o.name.as_str())
        .collect();
    assert!(failed.is_empty(), "failing Rego tests: {failed:?}");
}

#[test]
fn a_failing_rego_test_is_reported_as_failed() {
    let policies = Policies::from_sources(vec![(
        "x_test.rego".to_owned(),
        "package x_test\nimport rego.v1\ntest_holds if 1 == 1\ntest_fails if 1 == 2\n".to_owned(),
    )])
    .unwrap();
    let outcomes = policies.run_tests().unwrap();
    let passed: Vec<(String, bool)> = outcomes.into_iter().map(|o| (o.name, o.passed)).collect();
    assert_eq!(
        passed,
        [
            ("data.x_test.test_holds".to_owned(), true),
            ("data.x_test.test_fails".to_owned(), false)
        ]
    );
}

#[test]
fn roles_by_route_family_as_the_spec_decides() {
    let policies = policies();
    let decide = |roles: &[&str], path: &str| {
        policies
            .decide(&Input {
                user: User {
                    id: "u-1".into(),
                    roles: roles.iter().map(|r| (*r).to_owned()).collect(),
                    email: None,
                },
                request: Request {
                    method: "GET".into(),
                    path: path.into(),
                    route: path.into(),
                },
            })
            .unwrap()
    };
    let services = "/admin/api/v1/services/abc";
    let content = "/admin/api/v1/content/abc";
    let audit = "/admin/api/v1/services/abc/audit";
    let table: &[(&[&str], [bool; 3])] = &[
        (&["admin"], [true, true, true]),
        (&["services-manager"], [true, false, false]),
        (&["content-manager"], [false, true, false]),
        (&["audit-viewer"], [false, false, true]),
        (&["public"], [false, false, false]),
        (&[], [false, false, false]),
    ];
    for (roles, expected) in table {
        let got = [services, content, audit].map(|path| decide(roles, path).allow);
        assert_eq!(&got, expected, "{roles:?}");
    }
    let denied = decide(&["content-manager"], services);
    assert_eq!(
        denied.reason,
        "services routes need admin or services-manager"
    );
}
