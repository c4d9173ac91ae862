//! A deployment on `moto_server` for the function processes: table, bucket and user pool, a
//! seeded document, FHIR Patient and groups, the template's environment, and the event each
//! function gets.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use integration_tests::moto::{self, CognitoPool};
use serde_json::{Value, json};
use storage::{DynamoTable, PageTokens, S3Blobs};
use tenant_context::TenantConfig;

use crate::fixtures::{self, PAGING_SECRET};
use crate::lambda::Target;

/// The site the seeded document lives in, and its member.
pub const SITE: &str = "bench";
const MEMBER: &str = "alice";
const ADMIN: &str = "root";

/// The functions of the workspace: the package names of `functions/*/Cargo.toml`, sorted.
pub fn functions(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root.join("functions"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let manifest = std::fs::read_to_string(e.path().join("Cargo.toml")).ok()?;
            package_name(&manifest)
        })
        .collect();
    names.sort();
    names
}

/// `name` of the `[package]` table of a manifest.
pub fn package_name(manifest: &str) -> Option<String> {
    let mut in_package = false;
    for line in manifest.lines() {
        let l = line.trim();
        if l.starts_with('[') {
            in_package = l == "[package]";
        } else if in_package
            && let Some(rest) = l.strip_prefix("name")
            && let Some(v) = rest.trim_start().strip_prefix('=')
        {
            return Some(v.trim().trim_matches('"').to_owned());
        }
    }
    None
}

/// What the functions run against.
pub struct Deployment {
    pub env: Vec<(String, String)>,
    pub pool: CognitoPool,
    pub document_id: String,
    /// A Patient of tenant [`crate::fhir_bench::TENANT`].
    pub patient_id: String,
}

impl Deployment {
    /// A fresh table, bucket and user pool on the shared `moto_server`, with one document in
    /// site `bench` (seeded through the documents handler), one Patient of tenant `bench-fhir`
    /// (through the FHIR handler) and groups `Admins` and `bench`.
    pub async fn create() -> Deployment {
        let moto = moto::shared().await;
        let table = moto.create_table().await;
        let blobs = moto.create_bucket().await;
        let pool = moto.create_user_pool().await;
        pool.create_group("Admins").await;
        pool.create_group(SITE).await;
        let env: Vec<(String, String)> = [
            ("ENABLE_MULTI_TENANCY", "true"),
            ("SITE_MODE", "automatic"),
            ("USE_TENANT_SPECIFIC_URL", "false"),
            ("TENANT_ID_CLAIM_PATH", "custom:tenantId"),
            ("ADMIN_GROUP_NAME", "Admins"),
            ("PERMISSION_CACHE_SECONDS", "30"),
            ("LOG_LEVEL", "info"),
            ("FHIR_BASE_URL", ""),
            ("JWT_ISSUER", &pool.issuer()),
            ("JWT_AUDIENCE", &pool.client_id),
            ("TABLE_NAME", table.table_name()),
            ("BUCKET_NAME", blobs.bucket_name()),
            ("PAGING_TOKEN_SECRET", PAGING_SECRET),
            ("AWS_ENDPOINT_URL", &moto.endpoint),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let table: Arc<DynamoTable> = Arc::new(table);
        let blobs: Arc<S3Blobs> = Arc::new(blobs);
        let document_id = seed(table.clone(), blobs.clone(), &pool).await;
        let patient_id = seed_patient(table, blobs).await;
        Deployment {
            env,
            pool,
            document_id,
            patient_id,
        }
    }

    fn member(&self) -> serde_json::Map<String, Value> {
        fixtures::claims(MEMBER, &[SITE], &self.pool.issuer(), &self.pool.client_id)
    }

    fn admin(&self) -> serde_json::Map<String, Value> {
        fixtures::claims(
            ADMIN,
            &["Admins"],
            &self.pool.issuer(),
            &self.pool.client_id,
        )
    }

    fn fhir_user(&self) -> serde_json::Map<String, Value> {
        crate::fhir_bench::tenant_claims(
            MEMBER,
            crate::fhir_bench::TENANT,
            &self.pool.issuer(),
            &self.pool.client_id,
        )
    }

    /// The hello-world baseline and every function, with their events. `fhir_bundle` is the
    /// transaction Bundle of the FHIR function's second memory run (skipped when unreadable).
    pub fn targets(
        &self,
        lambda_dir: &Path,
        functions: &[String],
        fhir_bundle: &Path,
    ) -> Vec<Target> {
        let ev = |method: &str,
                  path: &str,
                  body: Option<Value>,
                  claims: Option<&serde_json::Map<String, Value>>| {
            serde_json::to_vec(&fixtures::event(method, path, body.as_ref(), claims)).expect("json")
        };
        let member = self.member();
        let admin = self.admin();
        let fhir_user = self.fhir_user();
        let bootstrap = |name: &str| -> PathBuf { lambda_dir.join(name).join("bootstrap") };
        let mut out = vec![Target {
            name: "hello".into(),
            bootstrap: bootstrap("hello"),
            route: "GET /hello".into(),
            cold_event: ev("GET", "/hello", None, None),
            warm_events: Vec::new(),
            expect: vec![200],
            env: self.env.clone(),
            heavy: None,
        }];
        for f in functions {
            let mut env = self.env.clone();
            let mut heavy = None;
            let (route, cold, warm, expect) = match f.as_str() {
                "documents" => {
                    let get = format!("/documents/{}?siteId={SITE}", self.document_id);
                    (
                        "GET /documents/{documentId}".to_owned(),
                        ev("GET", &get, None, Some(&member)),
                        vec![
                            ev("GET", &get, None, Some(&member)),
                            ev(
                                "GET",
                                &format!("/documents?siteId={SITE}"),
                                None,
                                Some(&member),
                            ),
                            ev(
                                "POST",
                                &format!("/search?siteId={SITE}"),
                                Some(json!({"query": {"tag": {"key": "status", "eq": "draft"}}})),
                                Some(&member),
                            ),
                        ],
                        vec![200],
                    )
                }
                "sites" => (
                    "GET /sites".to_owned(),
                    ev("GET", "/sites", None, Some(&member)),
                    Vec::new(),
                    vec![200],
                ),
                "groups" => {
                    env.push(("USER_POOL_ID".into(), self.pool.pool_id.clone()));
                    (
                        "GET /groups (admin)".to_owned(),
                        ev("GET", "/groups", None, Some(&admin)),
                        Vec::new(),
                        vec![200],
                    )
                }
                // Cold: the capability statement (public in the template; no backend call). Warm
                // (the memory run): it and a read of the seeded Patient, in turn; a second
                // memory run loads the example transaction Bundle first.
                "fhir" => {
                    // The template's default of the function's own parameter.
                    env.push(("FHIR_MAX_BUNDLE_ENTRIES".into(), "1000".into()));
                    let fev =
                        |method: &str,
                         path: &str,
                         body: Option<&[u8]>,
                         who: Option<&serde_json::Map<String, Value>>| {
                            serde_json::to_vec(&crate::fhir_bench::event(method, path, body, who))
                                .expect("json")
                        };
                    let metadata = fev("GET", "/fhir/metadata", None, None);
                    if let Ok(b) = crate::fhir_bench::load_bundle(fhir_bundle) {
                        let n = b["entry"].as_array().map_or(0, Vec::len);
                        let body = serde_json::to_vec(&b).expect("json");
                        heavy = Some((
                            format!("POST /fhir (transaction, {n} entries) once, first"),
                            fev("POST", "/fhir", Some(&body), Some(&fhir_user)),
                        ));
                    }
                    let read = format!("/fhir/Patient/{}", self.patient_id);
                    (
                        "GET /fhir/metadata".to_owned(),
                        metadata.clone(),
                        vec![fev("GET", &read, None, Some(&fhir_user)), metadata],
                        vec![200],
                    )
                }
                // Cold: a search-type request by name (a Query of the name index and a BatchGet
                // of the seeded Patient's head). Warm: it, a patient-scoped search and an
                // `_id` search with `_revinclude`, in turn.
                "fhir-search" => {
                    let search = |path: &str| ev("GET", path, None, Some(&fhir_user));
                    let by_name = "/fhir/Patient?name=seed".to_owned();
                    (
                        format!("GET {by_name}"),
                        search(&by_name),
                        vec![
                            search(&by_name),
                            search(&format!(
                                "/fhir/Observation?patient={}&_count=20",
                                self.patient_id
                            )),
                            search(&format!(
                                "/fhir/Patient?_id={}&_revinclude=Provenance:target",
                                self.patient_id
                            )),
                        ],
                        vec![200],
                    )
                }
                // A function the benchmark does not know yet: its own prefix, as an admin.
                other => (
                    format!("GET /{other} (generic)"),
                    ev("GET", &format!("/{other}"), None, Some(&admin)),
                    Vec::new(),
                    (200..500).collect(),
                ),
            };
            out.push(Target {
                name: f.clone(),
                bootstrap: bootstrap(f),
                route,
                cold_event: cold,
                warm_events: warm,
                expect,
                env,
                heavy,
            });
        }
        out
    }
}

/// Creates the document the cold `GET /documents/{id}` reads, through the handler.
async fn seed(table: Arc<DynamoTable>, blobs: Arc<S3Blobs>, pool: &CognitoPool) -> String {
    let deps = documents::Deps::new(
        TenantConfig::default(),
        table,
        blobs,
        PageTokens::new(PAGING_SECRET.as_bytes()),
        documents::Limits::default(),
    );
    let member = fixtures::claims(MEMBER, &[SITE], &pool.issuer(), &pool.client_id);
    let body = json!({
        "path": "bench/seed.txt",
        "contentType": "text/plain",
        "content": "cold start document",
        "tags": [{"key": "status", "value": "draft"}],
    });
    let req = fixtures::request(fixtures::event(
        "POST",
        &format!("/documents?siteId={SITE}"),
        Some(&body),
        Some(&member),
    ));
    let (status, body) = fixtures::read(documents::handle(req, &deps).await);
    assert_eq!(status, 201, "seeding a document: {body}");
    body["documentId"]
        .as_str()
        .expect("a document id")
        .to_owned()
}

/// Creates the Patient the FHIR function's warm invocations read, through the handler.
async fn seed_patient(table: Arc<DynamoTable>, blobs: Arc<S3Blobs>) -> String {
    let deps = fhir::Deps::new(
        TenantConfig::default(),
        table,
        blobs,
        PageTokens::new(PAGING_SECRET.as_bytes()),
        fhir::Limits::default(),
    );
    let who = crate::fhir_bench::tenant_claims(
        MEMBER,
        crate::fhir_bench::TENANT,
        fixtures::ISSUER,
        fixtures::AUDIENCE,
    );
    let body = serde_json::to_vec(&json!({
        "resourceType": "Patient",
        "name": [{"family": "Seed", "given": ["Ann"]}],
        "birthDate": "1970-01-01",
    }))
    .expect("json");
    let req = fixtures::request(crate::fhir_bench::event(
        "POST",
        "/fhir/Patient",
        Some(&body),
        Some(&who),
    ));
    let resp = fhir::handle(req, &deps).await;
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (status, body) = fixtures::read(resp);
    assert_eq!(status, 201, "seeding a Patient: {body}");
    let location = location.expect("a Location header");
    let path = location.split("/_history").next().unwrap_or_default();
    path.rsplit('/').next().unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn package_names() {
        let m = "[package]\nname = \"documents\"\nversion = \"0.1.0\"\n\n[dependencies]\nname = \"x\"\n";
        assert_eq!(super::package_name(m).as_deref(), Some("documents"));
        assert_eq!(super::package_name("[dependencies]\nname = \"x\"\n"), None);
    }
}
