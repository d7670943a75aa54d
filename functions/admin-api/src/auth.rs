//! Admin authorisation: only members of the admin group (`ADMIN_GROUP`) are served.
//!
//! In AWS, the HTTP API's JWT authorizer has already validated the token; this layer
//! only decides whether the validated caller is an admin, from
//! `requestContext.authorizer.jwt.claims["cognito:groups"]`:
//! - no request context, no JWT authorizer, or no claims at all → 401;
//! - claims without the admin group → 403;
//! - claims with the group but without `sub` → 401 (every change is attributed).
//!
//! HTTP APIs pass an array claim as one bracketed, space-separated string
//! (`"[admin billing]"`) and a single value as the plain string (`"admin"`); both are
//! understood, and a group only matches by its whole name (`[administrators]` is not
//! `admin`). There is no bypass switch.

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use lambda_http::request::RequestContext;

use crate::{caller::Admin, problem::ApiError, state::AppState};

/// The claim API Gateway fills from the Cognito token.
pub const GROUPS_CLAIM: &str = "cognito:groups";

/// The groups of a `cognito:groups` claim as HTTP APIs deliver it.
pub fn parse_groups(raw: &str) -> Vec<&str> {
    let trimmed = raw.trim();
    let inner = trimmed.strip_prefix('[').and_then(|s| s.strip_suffix(']')).unwrap_or(trimmed);
    inner.split_whitespace().collect()
}

/// Whether the claim names `group` exactly.
pub fn claim_has_group(raw: &str, group: &str) -> bool {
    parse_groups(raw).contains(&group)
}

/// The admin behind a request, from its API Gateway v2 request context.
pub fn authorize(context: Option<&RequestContext>, admin_group: &str) -> Result<Admin, ApiError> {
    let claims = match context {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.authorizer.as_ref().and_then(|a| a.jwt.as_ref()).map(|jwt| &jwt.claims),
        #[allow(unreachable_patterns)]
        _ => None,
    };
    let claims = match claims {
        Some(claims) if !claims.is_empty() => claims,
        _ => return Err(ApiError::Unauthenticated("the request carries no JWT claims")),
    };
    let is_admin = claims.get(GROUPS_CLAIM).is_some_and(|groups| claim_has_group(groups, admin_group));
    if !is_admin {
        return Err(ApiError::Forbidden);
    }
    match claims.get("sub").map(|s| s.trim()).filter(|s| !s.is_empty()) {
        Some(sub) => Ok(Admin { subject: sub.to_owned() }),
        None => Err(ApiError::Unauthenticated("the token has no subject (sub)")),
    }
}

/// Middleware: lets only admins through, and hands the [`Admin`] to the handlers.
pub async fn require_admin(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    match authorize(request.extensions().get::<RequestContext>(), &state.admin_group) {
        Ok(admin) => {
            tracing::Span::current().record("admin", admin.subject.as_str());
            request.extensions_mut().insert(admin);
            next.run(request).await
        }
        Err(err) => err.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequestContext;

    fn context(claims: Option<serde_json::Value>) -> RequestContext {
        let mut ctx = serde_json::json!({
            "requestId": "r-1",
            "http": {"method": "GET", "path": "/users/u1/subscription", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "test"}
        });
        if let Some(claims) = claims {
            ctx["authorizer"] = serde_json::json!({"jwt": {"claims": claims, "scopes": null}});
        }
        RequestContext::ApiGatewayV2(serde_json::from_value::<ApiGatewayV2httpRequestContext>(ctx).unwrap())
    }

    #[test]
    fn parses_plain_and_bracketed_claims() {
        assert_eq!(parse_groups("admin"), ["admin"]);
        assert_eq!(parse_groups("[admin billing]"), ["admin", "billing"]);
        assert_eq!(parse_groups(" [ billing   admin ] "), ["billing", "admin"]);
        assert_eq!(parse_groups("[]"), Vec::<&str>::new());
        assert_eq!(parse_groups(""), Vec::<&str>::new());
    }

    #[test]
    fn matches_whole_group_names_only() {
        assert!(claim_has_group("admin", "admin"));
        assert!(claim_has_group("[admin]", "admin"));
        assert!(claim_has_group("[billing admin]", "admin"));
        assert!(!claim_has_group("[administrators]", "admin"));
        assert!(!claim_has_group("administrators", "admin"));
        assert!(!claim_has_group("[sysadmin]", "admin"));
        assert!(!claim_has_group("Admin", "admin"));
        assert!(!claim_has_group("[admin-billing]", "admin"));
        assert!(!claim_has_group("[\"admin\"]", "admin"), "JSON-quoted names are not what API Gateway sends");
    }

    #[test]
    fn decides_401_403_and_admin() {
        let status = |ctx: Option<&RequestContext>| authorize(ctx, "admin").map_err(|e| e.status().as_u16());
        assert_eq!(status(None), Err(401));
        assert_eq!(status(Some(&context(None))), Err(401));
        assert_eq!(status(Some(&context(Some(serde_json::json!({}))))), Err(401));
        assert_eq!(status(Some(&context(Some(serde_json::json!({"sub": "u", "cognito:groups": "[users]"}))))), Err(403));
        assert_eq!(status(Some(&context(Some(serde_json::json!({"sub": "u"}))))), Err(403));
        assert_eq!(status(Some(&context(Some(serde_json::json!({"sub": "u", "cognito:groups": "[administrators]"}))))), Err(403));
        assert_eq!(status(Some(&context(Some(serde_json::json!({"cognito:groups": "admin"}))))), Err(401));
        let admin =
            authorize(Some(&context(Some(serde_json::json!({"sub": "abc", "cognito:groups": "[admin billing]"})))), "admin").unwrap();
        assert_eq!(admin.actor(), "admin:abc");
    }

    #[test]
    fn the_group_name_is_configurable() {
        let ctx = context(Some(serde_json::json!({"sub": "u", "cognito:groups": "[billing-admins]"})));
        assert!(authorize(Some(&ctx), "billing-admins").is_ok());
        assert!(authorize(Some(&ctx), "admin").is_err());
    }
}
