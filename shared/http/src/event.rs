//! From API Gateway events to requests and credentials, and the Lambda run loop.

use std::future::Future;

use lambda_http::request::{LambdaRequest, RequestContext};
use lambda_http::{Adapter, Body, LambdaEvent, Request, RequestExt, Response, Service, service_fn};
use serde_json::Value;
use tenant_context::{Claims, Credentials, TenantConfig};

/// The value of query parameter `name`, if present.
pub fn query_param<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.query_string_parameters_ref()?.first(name)
}

/// The API Gateway request id (or the Lambda request id, or `-`), for log spans.
pub fn request_id(req: &Request) -> String {
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(c)) => c.request_id.clone(),
        Some(RequestContext::ApiGatewayV1(c)) => c.request_id.clone(),
        _ => None,
    }
    .or_else(|| req.lambda_context_ref().map(|c| c.request_id.clone()))
    .unwrap_or_else(|| "-".into())
}

/// What the request presents as identity: the claims API Gateway's authorizer verified (HTTP
/// API v2 JWT authorizer, REST v1 Cognito authorizer), else its `Authorization` header; and the
/// FHIR base URL that `aud` tenant entries are matched against (`FHIR_BASE_URL`, else
/// `https://<API domain>/fhir`, else `http://<Host>/fhir` for local requests).
pub fn credentials<'a>(req: &'a Request, config: &TenantConfig) -> Credentials<'a> {
    let mut domain = None;
    let authorizer_claims = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(c)) => {
            domain = c.domain_name.as_deref().map(|d| format!("https://{d}"));
            c.authorizer
                .as_ref()
                .and_then(|a| a.jwt.as_ref())
                .filter(|jwt| !jwt.claims.is_empty())
                .map(|jwt| Claims::from_strings(&jwt.claims))
        }
        Some(RequestContext::ApiGatewayV1(c)) => {
            domain = c.domain_name.as_deref().map(|d| format!("https://{d}"));
            match c.authorizer.fields.get("claims") {
                Some(Value::Object(m)) if !m.is_empty() => Some(Claims::new(m.clone())),
                // Some integrations deliver the claims object as a JSON string.
                Some(Value::String(s)) => serde_json::from_str(s).ok().map(Claims::new),
                _ => None,
            }
        }
        _ => None,
    };
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let origin = domain.or_else(|| {
        let host = header("host")?;
        let scheme = header("x-forwarded-proto").unwrap_or("http");
        Some(format!("{scheme}://{host}"))
    });
    Credentials {
        authorizer_claims,
        authorization: header("authorization"),
        fhir_base_url: config
            .fhir_base_url
            .clone()
            .or_else(|| origin.map(|o| format!("{o}/fhir"))),
    }
}

/// Rewrites an API Gateway HTTP API (v2) event so that lambda_http can parse it: the JWT
/// authorizer's claims must be strings there, but tools and some integrations send real JSON
/// arrays, numbers or objects. Arrays become API Gateway's own `[a b]` form (which the tenant
/// library reads back as a list); numbers and booleans their text; objects their JSON.
pub fn normalize_event(event: &mut Value) {
    let Some(claims) = event
        .pointer_mut("/requestContext/authorizer/jwt/claims")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    for v in claims.values_mut() {
        let text = match &*v {
            Value::String(_) => continue,
            Value::Array(items) => {
                let parts: Vec<String> = items
                    .iter()
                    .map(|i| match i {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect();
                format!("[{}]", parts.join(" "))
            }
            Value::Null => String::new(),
            other => other.to_string(),
        };
        *v = Value::String(text);
    }
}

/// Runs `handler` as the function's Lambda handler until the runtime stops it.
pub async fn run<F, Fut>(handler: F) -> Result<(), lambda_http::Error>
where
    F: Fn(Request) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let http = service_fn(move |req: Request| {
        let handler = handler.clone();
        async move { Ok::<_, std::convert::Infallible>(handler(req).await) }
    });
    let adapter = Adapter::from(http);
    lambda_http::lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let mut adapter = adapter.clone();
        async move {
            let LambdaEvent {
                mut payload,
                context,
            } = event;
            normalize_event(&mut payload);
            let request: LambdaRequest = serde_json::from_value(payload)
                .map_err(|e| lambda_http::Error::from(format!("not an API Gateway event: {e}")))?;
            match adapter.call(LambdaEvent::new(request, context)).await {
                Ok(response) => Ok::<_, lambda_http::Error>(response),
                Err(never) => match never {},
            }
        }
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tenant_context::Claims;

    fn v2_event(claims: Value) -> Value {
        json!({
            "version": "2.0",
            "routeKey": "GET /documents",
            "rawPath": "/documents",
            "rawQueryString": "siteId=finance",
            "headers": {"host": "abc.execute-api.us-east-1.amazonaws.com"},
            "queryStringParameters": {"siteId": "finance"},
            "requestContext": {
                "accountId": "123456789012",
                "apiId": "abc",
                "domainName": "abc.execute-api.us-east-1.amazonaws.com",
                "domainPrefix": "abc",
                "http": {"method": "GET", "path": "/documents", "protocol": "HTTP/1.1",
                         "sourceIp": "127.0.0.1", "userAgent": "test"},
                "requestId": "req-1",
                "routeKey": "GET /documents",
                "stage": "$default",
                "time": "22/Nov/2026:10:00:00 +0000",
                "timeEpoch": 1795000000000i64,
                "authorizer": {"jwt": {"claims": claims, "scopes": null}}
            },
            "isBase64Encoded": false
        })
    }

    fn parse(mut event: Value) -> Request {
        normalize_event(&mut event);
        let lr: LambdaRequest = serde_json::from_value(event).expect("parses");
        lr.into()
    }

    #[test]
    fn v2_string_claims_pass_through() {
        let req = parse(v2_event(json!({
            "cognito:username": "jane",
            "cognito:groups": "[finance finance_read]",
        })));
        let creds = credentials(&req, &TenantConfig::default());
        let claims = creds.authorizer_claims.expect("claims");
        assert_eq!(
            claims.get_list("cognito:groups"),
            ["finance", "finance_read"]
        );
        assert_eq!(
            creds.fhir_base_url.as_deref(),
            Some("https://abc.execute-api.us-east-1.amazonaws.com/fhir")
        );
        assert_eq!(query_param(&req, "siteId"), Some("finance"));
        assert_eq!(request_id(&req), "req-1");
    }

    #[test]
    fn v2_array_claims_are_normalized_not_rejected() {
        let req = parse(v2_event(json!({
            "cognito:username": "jane",
            "cognito:groups": ["default", "other"],
            "aud": ["client", "https://x/fhir/tenant/t1"],
            "exp": 1795000000,
            "email_verified": true,
            "ext": {"tenant": "t9"},
        })));
        let claims: Claims = credentials(&req, &TenantConfig::default())
            .authorizer_claims
            .unwrap();
        assert_eq!(claims.get_list("cognito:groups"), ["default", "other"]);
        assert_eq!(
            claims.get_list("aud"),
            ["client", "https://x/fhir/tenant/t1"]
        );
        assert_eq!(claims.get_str("exp").as_deref(), Some("1795000000"));
        assert_eq!(claims.get_str("ext.tenant").as_deref(), Some("t9"));
    }

    #[test]
    fn v1_cognito_claims_are_read() {
        let event = json!({
            "resource": "/documents",
            "path": "/documents",
            "httpMethod": "GET",
            "headers": {"Host": "abc.execute-api.us-east-1.amazonaws.com"},
            "multiValueHeaders": {},
            "queryStringParameters": null,
            "multiValueQueryStringParameters": null,
            "pathParameters": null,
            "stageVariables": null,
            "requestContext": {
                "resourcePath": "/documents",
                "httpMethod": "GET",
                "path": "/prod/documents",
                "accountId": "123456789012",
                "stage": "prod",
                "requestId": "r-v1",
                "domainName": "abc.execute-api.us-east-1.amazonaws.com",
                "identity": {"sourceIp": "127.0.0.1"},
                "authorizer": {"claims": {"cognito:username": "bob", "cognito:groups": "marketing,finance"}},
                "apiId": "abc"
            },
            "body": null,
            "isBase64Encoded": false
        });
        let req = parse(event);
        let claims = credentials(&req, &TenantConfig::default())
            .authorizer_claims
            .unwrap();
        assert_eq!(claims.get_str("cognito:username").as_deref(), Some("bob"));
        assert_eq!(claims.get_list("cognito:groups"), ["marketing", "finance"]);
        assert_eq!(request_id(&req), "r-v1");
    }

    #[test]
    fn no_authorizer_means_bearer_header() {
        let mut e = v2_event(json!({}));
        e["requestContext"]
            .as_object_mut()
            .unwrap()
            .remove("authorizer");
        e["headers"]["authorization"] = json!("Bearer abc");
        let req = parse(e);
        let cfg = TenantConfig {
            fhir_base_url: Some("https://api.example.com/fhir".into()),
            ..TenantConfig::default()
        };
        let creds = credentials(&req, &cfg);
        assert!(creds.authorizer_claims.is_none());
        assert_eq!(creds.authorization, Some("Bearer abc"));
        assert_eq!(
            creds.fhir_base_url.as_deref(),
            Some("https://api.example.com/fhir")
        );
    }
}
