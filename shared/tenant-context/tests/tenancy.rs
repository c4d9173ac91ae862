//! Table-driven tests of the tenant model (`docs/architecture.md`, "Tenant model"): every row of
//! the grants table, every step of target resolution, and the FHIR Works on AWS and FormKiQ
//! tenant cases.
//! Claims enter as an API Gateway authorizer would deliver them; token verification itself is
//! covered in `jwt.rs`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use tenant_context::*;

const BASE: &str = "https://api.example.com/fhir";

type GroupGrants = HashMap<String, Vec<(String, Vec<Permission>)>>;

/// An in-memory defined-site store (the table-backed one belongs to the sites function).
#[derive(Default)]
struct MemSites {
    sites: Mutex<Vec<String>>,
    perms: Mutex<GroupGrants>,
    lookups: AtomicUsize,
}

impl MemSites {
    fn new(sites: &[&str], grants: &[(&str, &str, &[Permission])]) -> Self {
        let m = MemSites::default();
        *m.sites.lock().unwrap() = sites.iter().map(|s| s.to_string()).collect();
        for (group, site, perms) in grants {
            m.grant(group, site, perms);
        }
        m
    }

    fn grant(&self, group: &str, site: &str, perms: &[Permission]) {
        let mut p = self.perms.lock().unwrap();
        let e = p.entry(group.to_string()).or_default();
        e.retain(|(s, _)| s != site);
        if !perms.is_empty() {
            e.push((site.to_string(), perms.to_vec()));
        }
    }
}

#[async_trait]
impl DefinedSites for MemSites {
    async fn group_permissions(
        &self,
        group: &str,
    ) -> Result<Vec<(SiteId, PermissionSet)>, LookupError> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        Ok(self
            .perms
            .lock()
            .unwrap()
            .get(group)
            .into_iter()
            .flatten()
            .map(|(s, p)| (SiteId::parse(s).unwrap(), PermissionSet::of(p)))
            .collect())
    }

    async fn site_defined(&self, site: &SiteId) -> Result<bool, LookupError> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        Ok(self
            .sites
            .lock()
            .unwrap()
            .iter()
            .any(|s| s == site.as_str()))
    }
}

/// A store that is down.
struct DownSites;

#[async_trait]
impl DefinedSites for DownSites {
    async fn group_permissions(
        &self,
        _: &str,
    ) -> Result<Vec<(SiteId, PermissionSet)>, LookupError> {
        Err(LookupError("table unreachable".into()))
    }
    async fn site_defined(&self, _: &SiteId) -> Result<bool, LookupError> {
        Err(LookupError("table unreachable".into()))
    }
}

fn claims(v: Value) -> Claims {
    let mut m = v.as_object().expect("object").clone();
    m.entry("cognito:username").or_insert(json!("user1"));
    Claims::new(m)
}

fn automatic() -> TenantConfig {
    TenantConfig::default()
}

fn defined() -> TenantConfig {
    TenantConfig {
        site_mode: SiteMode::Defined,
        ..TenantConfig::default()
    }
}

fn single_tenant() -> TenantConfig {
    TenantConfig {
        multi_tenancy: false,
        ..TenantConfig::default()
    }
}

async fn principal(ctx: &TenantContext, c: Value) -> Result<Principal, TenantError> {
    ctx.authenticate(Credentials {
        authorizer_claims: Some(claims(c)),
        authorization: None,
        fhir_base_url: Some(BASE.into()),
    })
    .await
}

/// Grants rendered as `site=PERMS` strings, `*` for every site.
async fn grants(ctx: &TenantContext, c: Value) -> Result<Vec<String>, u16> {
    let p = principal(ctx, c).await.map_err(|e| e.status())?;
    let g = ctx.grants(&p).await.map_err(|e| e.status())?;
    let mut out: Vec<String> = g
        .sites()
        .map(|(s, p)| format!("{s}={}", p.names().join(",")))
        .collect();
    if !g.every_site().is_empty() {
        out.insert(0, format!("*={}", g.every_site().names().join(",")));
    }
    Ok(out)
}

const RWD: &str = "READ,WRITE,DELETE";
const ALL: &str = "READ,WRITE,DELETE,GOVERN,ADMIN";

#[tokio::test]
async fn grants_table_automatic_mode() {
    let ctx = TenantContext::new(automatic());
    let cases: Vec<(&str, Value, Vec<String>)> = vec![
        (
            "admin group: ADMIN on every site",
            json!({"cognito:groups": ["Admins"]}),
            vec![format!("*={ALL}")],
        ),
        (
            "X_read: READ on X",
            json!({"cognito:groups": ["marketing_read"]}),
            vec!["marketing=READ".into()],
        ),
        (
            "X_govern: READ WRITE DELETE GOVERN on X",
            json!({"cognito:groups": ["finance_govern"]}),
            vec!["finance=READ,WRITE,DELETE,GOVERN".into()],
        ),
        (
            "X: READ WRITE DELETE on X",
            json!({"cognito:groups": ["finance"]}),
            vec![format!("finance={RWD}")],
        ),
        (
            "e-mail address as a personal site",
            json!({"cognito:groups": ["jane@example.com"]}),
            vec![format!("jane@example.com={RWD}")],
        ),
        (
            "X and X_read together: the larger grant",
            json!({"cognito:groups": ["hr_read", "hr"]}),
            vec![format!("hr={RWD}")],
        ),
        (
            "authentication_only grants nothing",
            json!({"cognito:groups": ["authentication_only"]}),
            vec![],
        ),
        (
            "groups that are not site ids grant nothing",
            json!({"cognito:groups": ["has space", "a#b", "a/b", "_read", "-x", "_govern", ""]}),
            vec![],
        ),
        (
            "underscores are part of site ids; only _read and _govern are suffixes",
            json!({"cognito:groups": ["x_owner", "team_a_read"]}),
            vec!["team_a=READ".into(), format!("x_owner={RWD}")],
        ),
        (
            "reserved id global is never a site",
            json!({"cognito:groups": ["global", "global_read", "global_govern"]}),
            vec![],
        ),
        (
            "tenant claim: READ WRITE DELETE on that tenant",
            json!({"custom:tenantId": "acme"}),
            vec![format!("acme={RWD}")],
        ),
        (
            "aud tenant entry: same as the tenant claim",
            json!({"aud": format!("{BASE}/tenant/acme")}),
            vec![format!("acme={RWD}")],
        ),
        (
            "aud of another FHIR server is not a tenant",
            json!({"aud": "https://other.example.com/fhir/tenant/acme"}),
            vec![],
        ),
        (
            "groups and tenant claim add up",
            json!({"cognito:groups": ["marketing_read"], "custom:tenantId": "acme"}),
            vec![format!("acme={RWD}"), "marketing=READ".into()],
        ),
        (
            "[a b] string from API Gateway is two groups",
            json!({"cognito:groups": "[default other_read]"}),
            vec![format!("default={RWD}"), "other=READ".into()],
        ),
    ];
    for (name, c, want) in cases {
        assert_eq!(grants(&ctx, c).await, Ok(want), "{name}");
    }
}

#[tokio::test]
async fn grants_table_tenant_claim_errors_are_401() {
    let ctx = TenantContext::new(automatic());
    let cases = [
        (
            "tenant claim with invalid id",
            json!({"custom:tenantId": "a#b"}),
        ),
        (
            "tenant claim reserved",
            json!({"custom:tenantId": "global"}),
        ),
        (
            "tenant claim not a string",
            json!({"custom:tenantId": {"x": 1}}),
        ),
        (
            "aud tenant invalid",
            json!({"aud": format!("{BASE}/tenant/a b")}),
        ),
        (
            "aud tenant with extra path",
            json!({"aud": format!("{BASE}/tenant/a/b")}),
        ),
        (
            "aud and claim differ",
            json!({"custom:tenantId": "t1", "aud": format!("{BASE}/tenant/t2")}),
        ),
        (
            "aud array with two tenants",
            json!({"aud": [format!("{BASE}/tenant/t1"), format!("{BASE}/tenant/t2")]}),
        ),
        ("no user", json!({"cognito:username": "", "sub": ""})),
    ];
    for (name, c) in cases {
        assert_eq!(grants(&ctx, c).await, Err(401), "{name}");
    }
}

#[tokio::test]
async fn grants_table_defined_mode() {
    use Permission::*;
    let store = std::sync::Arc::new(MemSites::new(
        &["acme", "finance", "marketing"],
        &[
            ("finance-team", "finance", &[Read, Write]),
            ("finance-team", "marketing", &[Read]),
            ("auditors", "finance", &[Govern]),
            // A group named like a site means nothing by itself in defined mode.
        ],
    ));
    let ctx = TenantContext::new(defined()).with_defined_sites(store.clone());
    let cases: Vec<(&str, Value, Vec<String>)> = vec![
        (
            "stored permissions for every site of the group",
            json!({"cognito:groups": ["finance-team"]}),
            vec!["finance=READ,WRITE".into(), "marketing=READ".into()],
        ),
        (
            "permissions of several groups add up",
            json!({"cognito:groups": ["finance-team", "auditors"]}),
            vec!["finance=READ,WRITE,GOVERN".into(), "marketing=READ".into()],
        ),
        (
            "a group named like a site grants nothing",
            json!({"cognito:groups": ["finance"]}),
            vec![],
        ),
        (
            "admin: ADMIN everywhere",
            json!({"cognito:groups": ["Admins"]}),
            vec![format!("*={ALL}")],
        ),
        (
            "tenant claim of a defined site",
            json!({"custom:tenantId": "acme"}),
            vec![format!("acme={RWD}")],
        ),
        (
            "tenant claim of an undefined site",
            json!({"custom:tenantId": "ghost"}),
            vec![],
        ),
        (
            "authentication_only",
            json!({"cognito:groups": ["authentication_only"]}),
            vec![],
        ),
    ];
    for (name, c, want) in cases {
        assert_eq!(grants(&ctx, c).await, Ok(want), "{name}");
    }

    // A store that is down is a 503, not a silent "no access".
    let down = TenantContext::new(defined()).with_defined_sites(DownSites);
    assert_eq!(
        grants(&down, json!({"cognito:groups": ["finance-team"]})).await,
        Err(503)
    );
}

#[tokio::test]
async fn grants_table_multi_tenancy_off() {
    let ctx = TenantContext::new(single_tenant());
    let cases: Vec<(&str, Value, Vec<String>)> = vec![
        (
            "any user: READ WRITE DELETE on default",
            json!({}),
            vec![format!("default={RWD}")],
        ),
        (
            "any group: READ WRITE DELETE on default",
            json!({"cognito:groups": ["default"]}),
            vec![format!("default={RWD}")],
        ),
        (
            "default_read only: READ",
            json!({"cognito:groups": ["default_read"]}),
            vec!["default=READ".into()],
        ),
        (
            "default_read and another group: READ WRITE DELETE",
            json!({"cognito:groups": ["default_read", "default"]}),
            vec![format!("default={RWD}")],
        ),
        (
            "admin: ADMIN on default",
            json!({"cognito:groups": ["Admins"]}),
            vec![format!("default={ALL}")],
        ),
        (
            "authentication_only: nothing",
            json!({"cognito:groups": ["authentication_only"]}),
            vec![],
        ),
        (
            "site groups do not make other sites",
            json!({"cognito:groups": ["marketing"]}),
            vec![format!("default={RWD}")],
        ),
        (
            "tenant claims are ignored, even invalid ones",
            json!({"custom:tenantId": "a#b", "aud": [format!("{BASE}/tenant/x"), format!("{BASE}/tenant/y")]}),
            vec![format!("default={RWD}")],
        ),
    ];
    for (name, c, want) in cases {
        assert_eq!(grants(&ctx, c).await, Ok(want), "{name}");
    }
}

#[tokio::test]
async fn custom_admin_group_name_and_claim_path() {
    let ctx = TenantContext::new(TenantConfig {
        admin_group: "Root".into(),
        tenant_claim_path: "ext.tenant.id".into(),
        ..automatic()
    });
    assert_eq!(
        grants(&ctx, json!({"cognito:groups": ["Root"]})).await,
        Ok(vec![format!("*={ALL}")])
    );
    // The default admin group name is now an ordinary (valid) site group.
    assert_eq!(
        grants(&ctx, json!({"cognito:groups": ["Admins"]})).await,
        Ok(vec![format!("Admins={RWD}")])
    );
    assert_eq!(
        grants(&ctx, json!({"ext": {"tenant": {"id": "nested"}}})).await,
        Ok(vec![format!("nested={RWD}")])
    );
    // API Gateway delivers nested claims as JSON text.
    assert_eq!(
        grants(&ctx, json!({"ext": "{\"tenant\":{\"id\":\"nested\"}}"})).await,
        Ok(vec![format!("nested={RWD}")])
    );
}

/// Resolves a request and renders the outcome as `site PERMS` or the status code.
async fn resolve(
    ctx: &TenantContext,
    c: Value,
    path_tenant: Option<&str>,
    site_id: Option<&str>,
    method: &str,
) -> Result<String, (u16, String)> {
    let p = principal(ctx, c)
        .await
        .map_err(|e| (e.status(), e.to_string()))?;
    let scope = ctx
        .authorize(
            &p,
            RequestTarget {
                path_tenant,
                site_id,
            },
            Permission::for_method(method),
        )
        .await
        .map_err(|e| (e.status(), e.to_string()))?;
    Ok(scope.site().to_string())
}

#[tokio::test]
async fn target_resolution_steps_in_order() {
    let ctx = TenantContext::new(automatic());
    let two = json!({"cognito:groups": ["a", "b"]});
    let tenant_a = json!({"custom:tenantId": "a", "cognito:groups": ["b"]});
    let admin = json!({"cognito:groups": ["Admins"]});
    type Case<'a> = (
        &'a str,
        Value,
        Option<&'a str>,
        Option<&'a str>,
        Result<&'a str, u16>,
    );
    let cases: Vec<Case> = vec![
        (
            "1. path tenant first",
            two.clone(),
            Some("b"),
            None,
            Ok("b"),
        ),
        (
            "1. path tenant equal to siteId",
            two.clone(),
            Some("b"),
            Some("b"),
            Ok("b"),
        ),
        (
            "1. path tenant conflicting with siteId",
            two.clone(),
            Some("a"),
            Some("b"),
            Err(400),
        ),
        (
            "1. invalid path tenant",
            two.clone(),
            Some("a#b"),
            None,
            Err(400),
        ),
        ("2. siteId", two.clone(), None, Some("a"), Ok("a")),
        (
            "2. invalid siteId",
            two.clone(),
            None,
            Some("a/b"),
            Err(400),
        ),
        (
            "2. siteId=global",
            admin.clone(),
            None,
            Some("global"),
            Err(400),
        ),
        (
            "2. siteId of a site without grant",
            two.clone(),
            None,
            Some("c"),
            Err(403),
        ),
        ("3. tenant claim", tenant_a.clone(), None, None, Ok("a")),
        (
            "3. tenant claim agrees with siteId",
            tenant_a.clone(),
            None,
            Some("a"),
            Ok("a"),
        ),
        (
            "3. tenant claim disagrees with siteId",
            tenant_a.clone(),
            None,
            Some("b"),
            Err(401),
        ),
        (
            "3. tenant claim disagrees with path",
            tenant_a.clone(),
            Some("b"),
            None,
            Err(401),
        ),
        (
            "4. the only site",
            json!({"cognito:groups": ["solo_read"]}),
            None,
            None,
            Ok("solo"),
        ),
        (
            "5. default for admins",
            admin.clone(),
            None,
            None,
            Ok("default"),
        ),
        (
            "5. default for admins in other groups too",
            json!({"cognito:groups": ["Admins", "x"]}),
            None,
            None,
            Ok("default"),
        ),
        (
            "6. several sites without siteId",
            two.clone(),
            None,
            None,
            Err(400),
        ),
        (
            "no grant at all",
            json!({"cognito:groups": ["authentication_only"]}),
            None,
            None,
            Err(401),
        ),
        (
            "no grant at all, with siteId",
            json!({}),
            None,
            Some("a"),
            Err(401),
        ),
    ];
    for (name, c, path, site, want) in cases {
        let got = resolve(&ctx, c, path, site, "GET")
            .await
            .map_err(|(s, _)| s);
        assert_eq!(got, want.map(str::to_string), "{name}");
    }
}

#[tokio::test]
async fn required_permission_is_checked_on_the_target() {
    let ctx = TenantContext::new(automatic());
    let reader = json!({"cognito:groups": ["m_read"]});
    let writer = json!({"cognito:groups": ["m"]});
    let governor = json!({"cognito:groups": ["m_govern"]});
    let cases = [
        (&reader, "GET", Ok("m")),
        (&reader, "HEAD", Ok("m")),
        (&reader, "POST", Err(403)),
        (&reader, "PUT", Err(403)),
        (&reader, "PATCH", Err(403)),
        (&reader, "DELETE", Err(403)),
        (&writer, "POST", Ok("m")),
        (&writer, "DELETE", Ok("m")),
        (&governor, "DELETE", Ok("m")),
    ];
    for (c, method, want) in cases {
        let got = resolve(&ctx, c.clone(), None, None, method)
            .await
            .map_err(|(s, _)| s);
        assert_eq!(got, want.map(str::to_string), "{c} {method}");
    }

    // GOVERN and ADMIN are checked on the scope by the routes that need them.
    let scope = |c: Value| {
        let ctx = &ctx;
        async move {
            let p = principal(ctx, c).await.unwrap();
            ctx.authorize(&p, RequestTarget::site(Some("m")), Permission::Read)
                .await
                .unwrap()
        }
    };
    let w = scope(writer.clone()).await;
    assert_eq!(w.require(Permission::Govern).unwrap_err().status(), 403);
    let g = scope(governor.clone()).await;
    assert!(g.require(Permission::Govern).is_ok());
    assert_eq!(g.require(Permission::Admin).unwrap_err().status(), 403);
    let a = scope(json!({"cognito:groups": ["Admins"]})).await;
    assert!(a.require(Permission::Admin).is_ok() && a.allows(Permission::Govern));
}

#[tokio::test]
async fn fhir_works_tenant_cases() {
    let ctx = TenantContext::new(automatic());
    let t = |id: &str| format!("{BASE}/tenant/{id}");
    type Case = (
        &'static str,
        Value,
        Option<&'static str>,
        Result<&'static str, u16>,
    );
    let cases: Vec<Case> = vec![
        (
            "custom claim",
            json!({"custom:tenantId": "t1"}),
            None,
            Ok("t1"),
        ),
        ("aud as a string", json!({"aud": t("t1")}), None, Ok("t1")),
        (
            "aud as an array",
            json!({"aud": ["app-client", t("t1")]}),
            None,
            Ok("t1"),
        ),
        (
            "aud as API Gateway's [a b] string",
            json!({"aud": format!("[app-client {}]", t("t1"))}),
            None,
            Ok("t1"),
        ),
        (
            "custom claim and aud present and equal",
            json!({"custom:tenantId": "t1", "aud": [t("t1"), "app-client"]}),
            None,
            Ok("t1"),
        ),
        (
            "path tenant equal to token tenant",
            json!({"custom:tenantId": "t1"}),
            Some("t1"),
            Ok("t1"),
        ),
        ("no tenant", json!({"aud": "app-client"}), None, Err(401)),
        (
            "no tenant, with a path tenant",
            json!({}),
            Some("t1"),
            Err(401),
        ),
        (
            "invalid tenant id in claim",
            json!({"custom:tenantId": "t/1"}),
            None,
            Err(401),
        ),
        (
            "invalid tenant id in aud",
            json!({"aud": t("t#1")}),
            None,
            Err(401),
        ),
        (
            "path tenant differs from token tenant",
            json!({"custom:tenantId": "t1"}),
            Some("t2"),
            Err(401),
        ),
        (
            "aud differs from the custom claim",
            json!({"custom:tenantId": "t1", "aud": t("t2")}),
            None,
            Err(401),
        ),
        (
            "aud array without a tenant entry uses the claim",
            json!({"custom:tenantId": "t1", "aud": ["app-client", "other"]}),
            None,
            Ok("t1"),
        ),
        (
            "aud array without a tenant entry and no claim",
            json!({"aud": ["app-client", "other"]}),
            None,
            Err(401),
        ),
        (
            "aud array with two different tenants",
            json!({"aud": [t("t1"), t("t2")]}),
            None,
            Err(401),
        ),
        (
            "aud array with the same tenant twice",
            json!({"aud": [t("t1"), t("t1")]}),
            None,
            Ok("t1"),
        ),
    ];
    for (name, c, path, want) in cases {
        let got = resolve(&ctx, c, path, None, "POST")
            .await
            .map_err(|(s, _)| s);
        assert_eq!(got, want.map(str::to_string), "{name}");
    }

    // Nested claim path.
    let nested = TenantContext::new(TenantConfig {
        tenant_claim_path: "ext.tenant".into(),
        ..automatic()
    });
    let got = resolve(&nested, json!({"ext": {"tenant": "t3"}}), None, None, "GET").await;
    assert_eq!(got, Ok("t3".into()));
}

#[tokio::test]
async fn formkiq_cases() {
    let ctx = TenantContext::new(automatic());

    // A user in `default` and `other` without siteId: 400 naming both sites.
    let (status, msg) = resolve(
        &ctx,
        json!({"cognito:groups": ["default", "other"]}),
        None,
        None,
        "GET",
    )
    .await
    .unwrap_err();
    assert_eq!(status, 400);
    assert!(
        msg.contains("siteId") && msg.contains("default") && msg.contains("other"),
        "{msg}"
    );

    // A marketing_read user writing: 403.
    let (status, msg) = resolve(
        &ctx,
        json!({"cognito:groups": ["marketing_read"]}),
        None,
        Some("marketing"),
        "POST",
    )
    .await
    .unwrap_err();
    assert_eq!(status, 403);
    assert!(msg.contains("WRITE") && msg.contains("marketing"), "{msg}");

    // Admin without siteId: default; with siteId=x: x.
    let admin = json!({"cognito:groups": ["Admins"]});
    assert_eq!(
        resolve(&ctx, admin.clone(), None, None, "DELETE").await,
        Ok("default".into())
    );
    assert_eq!(
        resolve(&ctx, admin.clone(), None, Some("x"), "DELETE").await,
        Ok("x".into())
    );

    // siteId=global refused.
    let (status, msg) = resolve(&ctx, admin, None, Some("global"), "GET")
        .await
        .unwrap_err();
    assert_eq!(status, 400);
    assert!(msg.contains("reserved"), "{msg}");

    // API Gateway's `[default other]` string is two groups.
    let p = principal(&ctx, json!({"cognito:groups": "[default other]"}))
        .await
        .unwrap();
    assert_eq!(p.groups(), ["default", "other"]);
    let got = resolve(
        &ctx,
        json!({"cognito:groups": "[default other]"}),
        None,
        Some("other"),
        "PUT",
    )
    .await;
    assert_eq!(got, Ok("other".into()));
}

#[tokio::test]
async fn single_tenant_deployment_targets_default() {
    let ctx = TenantContext::new(single_tenant());
    assert_eq!(
        resolve(&ctx, json!({}), None, None, "POST").await,
        Ok("default".into())
    );
    assert_eq!(
        resolve(&ctx, json!({}), None, Some("default"), "POST").await,
        Ok("default".into())
    );
    assert_eq!(
        resolve(
            &ctx,
            json!({"cognito:groups": ["default_read"]}),
            None,
            None,
            "POST"
        )
        .await
        .map_err(|e| e.0),
        Err(403)
    );
    assert_eq!(
        resolve(&ctx, json!({}), None, Some("other"), "GET")
            .await
            .map_err(|e| e.0),
        Err(403)
    );
    assert_eq!(
        resolve(
            &ctx,
            json!({"cognito:groups": ["Admins"]}),
            None,
            None,
            "DELETE"
        )
        .await,
        Ok("default".into())
    );
}

#[tokio::test]
async fn admin_scope_only_for_admins() {
    let ctx = TenantContext::new(automatic());
    let admin = principal(&ctx, json!({"cognito:groups": ["Admins"]}))
        .await
        .unwrap();
    assert_eq!(
        ctx.authorize_admin(&admin).await.unwrap().username(),
        "user1"
    );
    for groups in [json!(["default"]), json!(["default_govern"]), json!([])] {
        let p = principal(
            &ctx,
            json!({"cognito:groups": groups, "custom:tenantId": "t"}),
        )
        .await
        .unwrap();
        let e = ctx.authorize_admin(&p).await.unwrap_err();
        assert_eq!(e.status(), 403, "{groups}");
    }
}

#[tokio::test]
async fn scope_keys_never_reach_another_tenant() {
    let ctx = TenantContext::new(automatic());
    let p = principal(&ctx, json!({"cognito:groups": ["a"]}))
        .await
        .unwrap();
    let scope = ctx
        .authorize(&p, RequestTarget::default(), Permission::Read)
        .await
        .unwrap();
    assert_eq!(scope.key_prefix(), "a#");
    assert_eq!(scope.username(), "user1");
    assert!(scope.owns_key("a#doc#1"));
    assert!(scope.owns_key("a#"));
    for other in ["ab#doc", "a", "b#a#doc", "A#doc", "", "#a#"] {
        assert!(!scope.owns_key(other), "{other}");
    }
}

#[tokio::test]
async fn defined_grants_are_cached_at_most_permission_cache_seconds() {
    use Permission::*;
    let store = std::sync::Arc::new(MemSites::new(&["s"], &[("team", "s", &[Read, Write])]));
    let ttl = Duration::from_millis(1000);
    let ctx = TenantContext::new(TenantConfig {
        permission_cache: ttl,
        ..defined()
    })
    .with_defined_sites(store.clone());
    let user = json!({"cognito:groups": ["team"]});
    let cached_at = std::time::Instant::now();
    assert_eq!(
        resolve(&ctx, user.clone(), None, Some("s"), "POST").await,
        Ok("s".into())
    );
    let lookups = store.lookups.load(Ordering::SeqCst);

    // Revoke WRITE: within the cache bound the old grant may still apply, and no lookup happens
    // (checked only when this machine was quick enough to stay inside the bound).
    store.grant("team", "s", &[Read]);
    let _ = resolve(&ctx, user.clone(), None, Some("s"), "POST").await;
    if cached_at.elapsed() < ttl / 2 {
        assert_eq!(
            store.lookups.load(Ordering::SeqCst),
            lookups,
            "served from cache"
        );
    }

    // After the bound, the revocation bites.
    tokio::time::sleep(ttl + Duration::from_millis(50)).await;
    assert_eq!(
        resolve(&ctx, user.clone(), None, Some("s"), "POST")
            .await
            .map_err(|e| e.0),
        Err(403)
    );
    assert_eq!(
        resolve(&ctx, user.clone(), None, Some("s"), "GET").await,
        Ok("s".into())
    );

    // PermissionCacheSeconds = 0: every request looks up.
    let uncached = TenantContext::new(TenantConfig {
        permission_cache: Duration::ZERO,
        ..defined()
    })
    .with_defined_sites(store.clone());
    let before = store.lookups.load(Ordering::SeqCst);
    for _ in 0..3 {
        let _ = resolve(&uncached, user.clone(), None, Some("s"), "GET").await;
    }
    assert_eq!(store.lookups.load(Ordering::SeqCst), before + 3);
    store.grant("team", "s", &[]);
    assert_eq!(
        resolve(&uncached, user, None, Some("s"), "GET")
            .await
            .map_err(|e| e.0),
        Err(401),
        "no grant left at all"
    );
}
