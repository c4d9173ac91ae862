//! What the local-server tests share: tokens and HTTP requests to a running server.

use local_server::TokenSpec;

/// An ID token's claims for `user` in `groups`, valid for ten minutes.
pub fn spec(user: &str, groups: &[&str]) -> TokenSpec {
    TokenSpec {
        user: user.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        tenant: None,
        ttl_seconds: 600,
        access: false,
    }
}

/// A request to the server at `base` (`http://127.0.0.1:<port>`): status, headers and body text.
pub async fn http(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> (u16, reqwest::header::HeaderMap, String) {
    let client = reqwest::Client::new();
    let mut req = client.request(method.parse().unwrap(), format!("{base}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.body(b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.unwrap())
}
