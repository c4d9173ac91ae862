//! A moto_server on a free loopback port, for testing the DynamoDB and S3 backends without AWS.
//!
//! The executable is `$MOTO_SERVER`, else `<workspace>/.venv/bin/moto_server` (installed by
//! `scripts/ensure-venv.sh`). A missing moto_server fails the test; it is never skipped.

use std::fs::File;
use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::{Credentials, SharedCredentialsProvider};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use storage::{DynamoTable, S3Blobs};

/// How long moto_server may take to answer its first request.
const STARTUP: Duration = Duration::from_secs(30);

/// A running moto_server, killed on drop.
pub struct Moto {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    child: Child,
    log: PathBuf,
}

fn moto_executable() -> PathBuf {
    if let Some(path) = std::env::var_os("MOTO_SERVER").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            path.exists(),
            "MOTO_SERVER={} does not exist",
            path.display()
        );
        return path;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let path = root.join(".venv/bin/moto_server");
    assert!(
        path.exists(),
        "moto_server not found at {}: run scripts/ensure-venv.sh (or set MOTO_SERVER)",
        path.display()
    );
    path
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

impl Moto {
    /// Starts moto_server and waits until it answers HTTP.
    pub async fn start() -> Moto {
        let exe = moto_executable();
        let mut last_error = String::new();
        // The port is free when chosen but could be taken before moto binds it: retry.
        for _ in 0..3 {
            let port = free_port();
            let log = std::env::temp_dir().join(format!("moto-{port}-{}.log", std::process::id()));
            let child = Command::new(&exe)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(File::create(&log).expect("a moto log file"))
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", exe.display()));
            let mut moto = Moto {
                endpoint: format!("http://127.0.0.1:{port}"),
                child,
                log,
            };
            match moto.wait_ready().await {
                Ok(()) => return moto,
                Err(e) => last_error = e,
            }
        }
        panic!("moto_server did not start: {last_error}");
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "moto_server exited with {status}: {}",
                    self.log_tail()
                ));
            }
            if http
                .get(format!("{}/moto-api/", self.endpoint))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("no answer within {STARTUP:?}: {}", self.log_tail()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = log.len().saturating_sub(2000);
        log.get(start..).unwrap_or(&log).to_owned()
    }

    /// SDK configuration for this server: dummy static credentials, us-east-1.
    pub fn sdk_config(&self) -> SdkConfig {
        SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "test", "test", None, None, "moto",
            )))
            .build()
    }

    pub fn dynamo_client(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.sdk_config())
    }

    pub fn s3_client(&self) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::config::Builder::from(&self.sdk_config())
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// A new table (`PK`/`SK` strings, on demand) with a unique name.
    pub async fn create_table(&self) -> DynamoTable {
        let name = format!("t-{}", uuid::Uuid::new_v4().simple());
        let client = self.dynamo_client();
        let attr = |n: &str| {
            AttributeDefinition::builder()
                .attribute_name(n)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap()
        };
        let key = |n: &str, t: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(n)
                .key_type(t)
                .build()
                .unwrap()
        };
        client
            .create_table()
            .table_name(&name)
            .attribute_definitions(attr("PK"))
            .attribute_definitions(attr("SK"))
            .key_schema(key("PK", KeyType::Hash))
            .key_schema(key("SK", KeyType::Range))
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "CreateTable: {}",
                    aws_sdk_dynamodb::error::DisplayErrorContext(e)
                )
            });
        DynamoTable::with_client(client, name)
    }

    /// A new bucket with a unique name.
    pub async fn create_bucket(&self) -> S3Blobs {
        let name = format!("b-{}", uuid::Uuid::new_v4().simple());
        let client = self.s3_client();
        client
            .create_bucket()
            .bucket(&name)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "CreateBucket: {}",
                    aws_sdk_s3::error::DisplayErrorContext(e)
                )
            });
        S3Blobs::with_client(client, name)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}
