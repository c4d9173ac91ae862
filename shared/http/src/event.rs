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
    let authorizer_claims = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(c)) => c
            .authorizer
            .as_ref()
            .and_then(|a| a.jwt.as_ref())
            .filter(|jwt| !jwt.claims.is_empty())
            .map(|jwt| Claims::from_strings(&jwt.claims)),
        Some(RequestContext::ApiGatewayV1(c)) => match c.authorizer.fields.get("claims") {
            Some(Value::Object(m)) if !m.is_empty() => Some(Claims::new(m.clone())),
            // Some integrations deliver the claims object as a JSON string.
            Some(Value::String(s)) => serde_json::from_str(s).ok().map(Claims::new),
            _ => None,
        },
        _ => None,
    };
    Credentials {
        authorizer_claims,
        authorization: req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok()),
        fhir_base_url: fhir_base_url(req, config),
    }
}

/// The FHIR base URL of this deployment as the caller reached it: `FHIR_BASE_URL` when set,
/// else `https://<API Gateway domain>/fhir`, else `<scheme>://<Host>/fhir`.
pub fn fhir_base_url(req: &Request, config: &TenantConfig) -> Option<String> {
    if let Some(base) = &config.fhir_base_url {
        return Some(base.clone());
    }
    let domain = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(c)) => c.domain_name.as_deref(),
        Some(RequestContext::ApiGatewayV1(c)) => c.domain_name.as_deref(),
        _ => None,
    };
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let origin = match domain {
        Some(d) => format!("https://{d}"),
        None => {
            let host = header("host")?;
            let scheme = header("x-forwarded-proto").unwrap_or("http");
            format!("{scheme}://{host}")
        }
    };
    Some(format!("{origin}/fhir"))
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

/// A plain HTTP request, as the local server and tests receive it, to be turned into the event
/// API Gateway's HTTP API (payload format 2.0) would send for it.
#[derive(Debug, Clone, Default)]
pub struct HttpApiRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// The raw query string, without `?`.
    pub query: &'a str,
    /// Header names and values; names are lower-cased and repeated headers joined by `,`.
    pub headers: Vec<(String, String)>,
    pub body: Option<&'a [u8]>,
    /// Claims of the verified token, as the JWT authorizer passes them (`None`: no authorizer).
    pub claims: Option<&'a serde_json::Map<String, Value>>,
    /// `requestContext.domainName`, e.g. `127.0.0.1:8080`.
    pub domain: &'a str,
    pub request_id: &'a str,
}

/// The API Gateway HTTP API (v2) event for `r`: what a Lambda function behind API Gateway
/// receives. Query parameters repeated in the query string are joined by `,` and non-text
/// bodies base64-encoded, as API Gateway does.
pub fn http_api_event(r: &HttpApiRequest<'_>) -> Value {
    use base64::Engine;
    let mut headers = serde_json::Map::new();
    for (k, v) in &r.headers {
        let k = k.to_ascii_lowercase();
        match headers.get_mut(&k) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(v);
            }
            _ => {
                headers.insert(k, Value::String(v.clone()));
            }
        }
    }
    let mut query = serde_json::Map::new();
    for (k, v) in form_urlencoded::parse(r.query.as_bytes()) {
        match query.get_mut(k.as_ref()) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&v);
            }
            _ => {
                query.insert(k.into_owned(), Value::String(v.into_owned()));
            }
        }
    }
    let content_type = headers
        .get("content-type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_ascii_lowercase();
    let textual = content_type.is_empty()
        || content_type.starts_with("text/")
        || content_type.contains("json")
        || content_type.contains("xml")
        || content_type.contains("x-www-form-urlencoded");
    let (body, base64_encoded) = match r.body {
        None | Some([]) => (Value::Null, false),
        Some(b) => match std::str::from_utf8(b) {
            Ok(text) if textual => (Value::String(text.to_owned()), false),
            _ => (
                Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
                true,
            ),
        },
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut context = serde_json::json!({
        "accountId": "000000000000",
        "apiId": "local",
        "domainName": r.domain,
        "domainPrefix": r.domain.split('.').next().unwrap_or(r.domain),
        "http": {
            "method": r.method,
            "path": r.path,
            "protocol": "HTTP/1.1",
            "sourceIp": "127.0.0.1",
            "userAgent": headers.get("user-agent").cloned().unwrap_or(Value::String(String::new())),
        },
        "requestId": r.request_id,
        "routeKey": "$default",
        "stage": "$default",
        "time": "",
        "timeEpoch": now.as_millis() as i64,
    });
    if let Some(claims) = r.claims {
        context["authorizer"] = serde_json::json!({"jwt": {"claims": claims, "scopes": null}});
    }
    let mut event = serde_json::json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": r.path,
        "rawQueryString": r.query,
        "headers": headers,
        "requestContext": context,
        "isBase64Encoded": base64_encoded,
    });
    if !query.is_empty() {
        event["queryStringParameters"] = Value::Object(query);
    }
    if !body.is_null() {
        event["body"] = body;
    }
    event
}

/// Parses an API Gateway event (HTTP API v2 or REST v1) into a request, exactly as the Lambda
/// run loop does.
pub fn request_from_event(event: Value) -> Result<Request, String> {
    lambda_request(event).map(Request::from)
}

fn lambda_request(mut event: Value) -> Result<LambdaRequest, String> {
    normalize_event(&mut event);
    serde_json::from_value(event).map_err(|e| format!("not an API Gateway event: {e}"))
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

    fn parse(event: Value) -> Request {
        request_from_event(event).expect("parses")
    }

    #[test]
    fn built_events_parse_like_api_gateway_events() {
        let claims = json!({"cognito:username": "ann", "cognito:groups": ["a", "b_read"]});
        let body = br#"{"path":"x.txt"}"#;
        let event = http_api_event(&HttpApiRequest {
            method: "POST",
            path: "/documents",
            query: "siteId=a&tag=x&tag=y&q=a%20b",
            headers: vec![
                ("Content-Type".into(), "application/json".into()),
                ("X-Multi".into(), "1".into()),
                ("x-multi".into(), "2".into()),
            ],
            body: Some(body),
            claims: claims.as_object(),
            domain: "127.0.0.1:8080",
            request_id: "local-1",
        });
        let req = parse(event);
        assert_eq!(req.method(), "POST");
        assert_eq!(req.uri().path(), "/documents");
        assert_eq!(query_param(&req, "siteId"), Some("a"));
        assert_eq!(query_param(&req, "q"), Some("a b"));
        assert_eq!(req.headers()["x-multi"], "1,2");
        assert_eq!(req.body().as_ref(), body);
        let creds = credentials(&req, &TenantConfig::default());
        let c = creds.authorizer_claims.unwrap();
        assert_eq!(c.get_list("cognito:groups"), ["a", "b_read"]);
        assert_eq!(
            creds.fhir_base_url.as_deref(),
            Some("https://127.0.0.1:8080/fhir")
        );
        assert_eq!(request_id(&req), "local-1");

        // Binary bodies travel base64-encoded and arrive intact.
        let bin = [0u8, 159, 146, 150];
        let event = http_api_event(&HttpApiRequest {
            method: "PUT",
            path: "/x",
            headers: vec![("content-type".into(), "application/octet-stream".into())],
            body: Some(&bin),
            domain: "localhost",
            request_id: "r",
            ..Default::default()
        });
        assert_eq!(event["isBase64Encoded"], true);
        assert_eq!(parse(event).body().as_ref(), bin);
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
