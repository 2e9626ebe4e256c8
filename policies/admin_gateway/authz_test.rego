# Unit tests of the default policy, run by `cargo xtask test` through the same engine
# the gateway evaluates it with (regorus): every `test_` rule must hold.
package admin_gateway.authz_test

import rego.v1

import data.admin_gateway.authz

request(roles, method, path) := {
	"user": {"id": "u-1", "roles": roles, "email": "u@example.org"},
	"request": {"method": method, "path": path, "route": path},
}

test_an_admin_writes_services if {
	authz.allow with input as request(["admin"], "POST", "/admin/api/v1/services")
}

test_a_services_manager_writes_services if {
	authz.allow with input as request(["services-manager"], "PUT", "/admin/api/v1/services/abc")
}

test_a_services_manager_cannot_touch_content if {
	not authz.allow with input as request(["services-manager"], "POST", "/admin/api/v1/content")
}

test_a_content_manager_writes_content if {
	authz.allow with input as request(["content-manager"], "POST", "/admin/api/v1/content/abc")
}

test_a_content_manager_cannot_touch_services if {
	not authz.allow with input as request(["content-manager"], "DELETE", "/admin/api/v1/services/abc")
}

test_audit_needs_admin_or_audit_viewer if {
	not authz.allow with input as request(["services-manager"], "GET", "/admin/api/v1/services/abc/audit")
	authz.allow with input as request(["audit-viewer"], "GET", "/admin/api/v1/services/abc/audit")
	authz.allow with input as request(["admin"], "GET", "/admin/api/v1/content/abc/audit")
}

test_an_audit_viewer_reads_only_audit if {
	not authz.allow with input as request(["audit-viewer"], "GET", "/admin/api/v1/services")
}

test_no_roles_no_access if {
	not authz.allow with input as request([], "GET", "/admin/api/v1/services")
}

test_a_look_alike_prefix_is_no_route if {
	not authz.allow with input as request(["services-manager"], "GET", "/admin/api/v1/servicesX")
}

test_anything_else_is_denied if {
	not authz.allow with input as request(["admin"], "GET", "/admin/api/v1/other")
}

test_the_reason_says_what_was_missing if {
	authz.reason == "services routes need admin or services-manager" with input as request(["content-manager"], "GET", "/admin/api/v1/services")
	authz.reason == "allowed by role" with input as request(["admin"], "GET", "/admin/api/v1/services")
	authz.reason == "no rule allows this route" with input as request(["admin"], "GET", "/elsewhere")
}
