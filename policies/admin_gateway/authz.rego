# admin-gateway's authorization (shared/spec/gateways.md, "Authorization"): the default
# policy. Input: {"user": {"id", "roles", "email"}, "request": {"method", "path", "route"}},
# the path normalised by the gateway. Queried: data.admin_gateway.authz.allow and .reason.
package admin_gateway.authz

import rego.v1

default allow := false

# A path is under a prefix when it is the prefix or continues it with a new segment
# (`/admin/api/v1/servicesX` is not a services route). Spelled out rather than through a
# helper function: every admin request is a decision, and this made one ~13 % cheaper
# (`admin-gateway/examples/auth_costs.rs`).
audit_route if endswith(input.request.path, "/audit")

services_route if input.request.path == "/admin/api/v1/services"

services_route if startswith(input.request.path, "/admin/api/v1/services/")

content_route if input.request.path == "/admin/api/v1/content"

content_route if startswith(input.request.path, "/admin/api/v1/content/")

has_any(roles) if {
	some role in input.user.roles
	role in roles
}

allow if {
	audit_route
	has_any({"admin", "audit-viewer"})
}

allow if {
	not audit_route
	services_route
	has_any({"admin", "services-manager"})
}

allow if {
	not audit_route
	content_route
	has_any({"admin", "content-manager"})
}

# Why, for the request log.
reason := "allowed by role" if {
	allow
} else := "audit routes need admin or audit-viewer" if {
	audit_route
} else := "services routes need admin or services-manager" if {
	services_route
} else := "content routes need admin or content-manager" if {
	content_route
} else := "no rule allows this route"
