//! `moto_server` (moto from PyPI, installed into `.venv` by `scripts/ensure-venv.sh`) on a free
//! loopback port: DynamoDB, S3 and Cognito as AWS speaks them, for the AWS-backend tests.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::config::SharedCredentialsProvider;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use aws_setup::SdkConfig;
use storage::{DynamoTable, S3Blobs};
use tokio::sync::OnceCell;

/// A running `moto_server`, killed when dropped (the shared one: when the process exits).
pub struct Moto {
    pub endpoint: String,
    child: std::sync::Mutex<Child>,
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Ok(c) = self.child.get_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// How to start moto: `$MOTO_SERVER` if set (a `moto_server` executable), else the
/// repository's `scripts/moto_server.py` (moto's app serving one request at a time, so that
/// conditional writes are atomic as in DynamoDB) with `<workspace>/.venv/bin/python`.
fn command() -> Command {
    if let Ok(p) = std::env::var("MOTO_SERVER") {
        return Command::new(p);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = root.join(".venv/bin/python");
    assert!(
        root.join(".venv/bin/moto_server").exists(),
        "moto is not installed in {}: run scripts/ensure-venv.sh (scripts/test.sh does)",
        root.join(".venv").display()
    );
    let mut c = Command::new(python);
    c.arg(root.join("scripts/moto_server.py"));
    c
}

/// Kills the shared server at exit (statics are never dropped).
extern "C" fn kill_shared() {
    if let Some(m) = SHARED.get()
        && let Ok(mut c) = m.child.lock()
    {
        let _ = c.kill();
        let _ = c.wait();
    }
}

unsafe extern "C" {
    fn atexit(f: extern "C" fn()) -> i32;
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Moto {
    /// Starts a new `moto_server` and waits until it answers (at most 60 s).
    pub async fn start() -> Moto {
        let port = free_port();
        let child = command()
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let moto = Moto {
            endpoint: format!("http://127.0.0.1:{port}"),
            child: std::sync::Mutex::new(child),
        };
        let endpoint = moto.endpoint.clone();
        let deadline = Instant::now() + Duration::from_secs(60);
        let client = reqwest::Client::new();
        loop {
            if client
                .get(format!("{endpoint}/moto-api/"))
                .send()
                .await
                .is_ok()
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not start on {endpoint}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        moto
    }

    /// SDK configuration for this server. Built anew for every caller: HTTP connections belong
    /// to the Tokio runtime that opened them, and every test has its own runtime.
    pub async fn sdk(&self) -> SdkConfig {
        moto_sdk_config(&self.endpoint, "moto")
    }

    pub async fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.sdk().await)
    }

    pub async fn s3(&self) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::config::Builder::from(&self.sdk().await)
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// A new table (`PK`/`SK`, on demand) with a unique name.
    pub async fn create_table(&self) -> DynamoTable {
        self.create_table_named("t").await
    }

    /// A new table whose name begins with `prefix`. `scripts/moto_server.py` gives some prefixes a fault to inject.
    pub async fn create_table_named(&self, prefix: &str) -> DynamoTable {
        let name = format!("{prefix}-{}", uuid::Uuid::new_v4().simple());
        self.dynamodb()
            .await
            .create_table()
            .table_name(&name)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("PK")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .expect("attr"),
            )
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("SK")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .expect("attr"),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("PK")
                    .key_type(KeyType::Hash)
                    .build()
                    .expect("key"),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("SK")
                    .key_type(KeyType::Range)
                    .build()
                    .expect("key"),
            )
            .send()
            .await
            .expect("create table on moto");
        DynamoTable::with_client(self.dynamodb().await, name)
    }

    /// A new bucket with a unique name.
    pub async fn create_bucket(&self) -> S3Blobs {
        let name = format!("b-{}", uuid::Uuid::new_v4().simple());
        let s3 = self.s3().await;
        s3.create_bucket()
            .bucket(&name)
            .send()
            .await
            .expect("create bucket on moto");
        S3Blobs::with_client(s3, name)
    }

    /// A fresh table and bucket as storage backends, configured as in production.
    pub async fn fresh_backends(&self) -> (DynamoTable, S3Blobs) {
        (
            self.create_table_named("t").await,
            self.create_bucket().await,
        )
    }
}

static SHARED: OnceCell<Moto> = OnceCell::const_new();

/// One `moto_server` per test process, started on first use.
pub async fn shared() -> &'static Moto {
    SHARED
        .get_or_init(|| async {
            // SAFETY: registers a plain function that captures nothing.
            unsafe { atexit(kill_shared) };
            Moto::start().await
        })
        .await
}

// ---------------------------------------------------------------------------------------------
// Cognito

/// The password every test user gets (meets Cognito's default policy).
pub const TEST_PASSWORD: &str = "Test-Passw0rd!";

/// A user pool on moto, as the template creates it: custom attribute `tenantId` (not writable
/// by the app client) and an app client with ADMIN_USER_PASSWORD_AUTH and REFRESH_TOKEN_AUTH.
pub struct CognitoPool {
    pub client: aws_sdk_cognitoidentityprovider::Client,
    pub endpoint: String,
    pub pool_id: String,
    pub client_id: String,
}

impl Moto {
    /// A Cognito client for this server (built anew per caller, like the others).
    pub async fn cognito(&self) -> aws_sdk_cognitoidentityprovider::Client {
        aws_sdk_cognitoidentityprovider::Client::new(&self.sdk().await)
    }

    /// A new user pool with its app client.
    pub async fn create_user_pool(&self) -> CognitoPool {
        use aws_sdk_cognitoidentityprovider::types::{
            AttributeDataType, ExplicitAuthFlowsType, SchemaAttributeType,
        };
        let client = self.cognito().await;
        let pool = client
            .create_user_pool()
            .pool_name(format!("pool-{}", uuid::Uuid::new_v4().simple()))
            .schema(
                SchemaAttributeType::builder()
                    .name("tenantId")
                    .attribute_data_type(AttributeDataType::String)
                    .mutable(true)
                    .build(),
            )
            .send()
            .await
            .expect("create user pool on moto");
        let pool_id = pool
            .user_pool()
            .and_then(|p| p.id())
            .expect("pool id")
            .to_owned();
        let app = client
            .create_user_pool_client()
            .user_pool_id(&pool_id)
            .client_name("app")
            .explicit_auth_flows(ExplicitAuthFlowsType::AllowAdminUserPasswordAuth)
            .explicit_auth_flows(ExplicitAuthFlowsType::AllowRefreshTokenAuth)
            .write_attributes("email")
            .send()
            .await
            .expect("create app client on moto");
        let client_id = app
            .user_pool_client()
            .and_then(|c| c.client_id())
            .expect("client id")
            .to_owned();
        CognitoPool {
            client,
            endpoint: self.endpoint.clone(),
            pool_id,
            client_id,
        }
    }
}

impl CognitoPool {
    /// The `iss` of this pool's tokens. moto uses the AWS form (region of the request), not its
    /// own endpoint.
    pub fn issuer(&self) -> String {
        format!(
            "https://cognito-idp.us-east-1.amazonaws.com/{}",
            self.pool_id
        )
    }

    /// Where moto serves the pool's JWKS (`<endpoint>/<poolId>/.well-known/jwks.json`).
    pub fn jwks_url(&self) -> String {
        format!("{}/{}/.well-known/jwks.json", self.endpoint, self.pool_id)
    }

    /// Bearer-token verification for this pool and app client.
    pub fn jwt_config(&self) -> tenant_context::JwtConfig {
        let mut c = tenant_context::JwtConfig::new(self.issuer(), vec![self.client_id.clone()]);
        c.jwks_url = self.jwks_url();
        c
    }

    pub async fn create_group(&self, name: &str) {
        self.client
            .create_group()
            .user_pool_id(&self.pool_id)
            .group_name(name)
            .send()
            .await
            .expect("create group on moto");
    }

    /// Creates a confirmed user with [`TEST_PASSWORD`], an optional `custom:tenantId`, in
    /// `groups` (which must exist).
    pub async fn create_user(&self, username: &str, tenant: Option<&str>, groups: &[&str]) {
        use aws_sdk_cognitoidentityprovider::types::{AttributeType, MessageActionType};
        let mut req = self
            .client
            .admin_create_user()
            .user_pool_id(&self.pool_id)
            .username(username)
            .message_action(MessageActionType::Suppress);
        if let Some(t) = tenant {
            req = req.user_attributes(
                AttributeType::builder()
                    .name("custom:tenantId")
                    .value(t)
                    .build()
                    .expect("attribute"),
            );
        }
        req.send().await.expect("create user on moto");
        self.client
            .admin_set_user_password()
            .user_pool_id(&self.pool_id)
            .username(username)
            .password(TEST_PASSWORD)
            .permanent(true)
            .send()
            .await
            .expect("set password on moto");
        for g in groups {
            self.client
                .admin_add_user_to_group()
                .user_pool_id(&self.pool_id)
                .username(username)
                .group_name(*g)
                .send()
                .await
                .expect("add user to group on moto");
        }
    }

    /// Signs in with ADMIN_USER_PASSWORD_AUTH: (ID token, access token).
    pub async fn sign_in(&self, username: &str) -> (String, String) {
        use aws_sdk_cognitoidentityprovider::types::AuthFlowType;
        let out = self
            .client
            .admin_initiate_auth()
            .user_pool_id(&self.pool_id)
            .client_id(&self.client_id)
            .auth_flow(AuthFlowType::AdminUserPasswordAuth)
            .auth_parameters("USERNAME", username)
            .auth_parameters("PASSWORD", TEST_PASSWORD)
            .send()
            .await
            .expect("sign in on moto");
        let result = out
            .authentication_result()
            .expect("tokens, not a challenge");
        (
            result.id_token().expect("id token").to_owned(),
            result.access_token().expect("access token").to_owned(),
        )
    }

    /// The ID token of `username`.
    pub async fn id_token(&self, username: &str) -> String {
        self.sign_in(username).await.0
    }
}

/// The project's SDK configuration ([`aws_setup::sdk_config`]) for a moto endpoint, with moto's
/// dummy credentials.
pub fn moto_sdk_config(endpoint: &str, credentials_name: &'static str) -> SdkConfig {
    aws_setup::sdk_config(Some(endpoint), Some("us-east-1"), None)
        .into_builder()
        .credentials_provider(SharedCredentialsProvider::new(
            aws_sdk_dynamodb::config::Credentials::new(
                "test",
                "test",
                None,
                None,
                credentials_name,
            ),
        ))
        .build()
}
