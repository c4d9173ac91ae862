//! `moto_server` (moto from PyPI, installed into `.venv` by `scripts/ensure-venv.sh`) on a free
//! loopback port: DynamoDB, S3 and Cognito as AWS speaks them, for the AWS-backend tests.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
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

/// The `moto_server` executable: `$MOTO_SERVER`, else `<workspace>/.venv/bin/moto_server`.
fn executable() -> PathBuf {
    if let Ok(p) = std::env::var("MOTO_SERVER") {
        return PathBuf::from(p);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let p = root.join(".venv/bin/moto_server");
    assert!(
        p.exists(),
        "{} is missing: run scripts/ensure-venv.sh (scripts/test.sh does) to install moto",
        p.display()
    );
    p
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
        let child = Command::new(executable())
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
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "test", "test", None, None, "moto",
            ))
            .load()
            .await
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
        let name = format!("t-{}", uuid::Uuid::new_v4().simple());
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

    /// A fresh table and bucket as storage backends.
    pub async fn fresh_backends(&self) -> (DynamoTable, S3Blobs) {
        (self.create_table().await, self.create_bucket().await)
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
