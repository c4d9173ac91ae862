//! Configuration of the AWS backends ([`crate::DynamoTable`], [`crate::S3Blobs`]).
//!
//! Cold start matters: building a backend from an [`AwsConfig`] does no I/O and loads no
//! credentials; the SDK configuration and the client are created on first use.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use tokio::sync::OnceCell;

/// Where the AWS backends store their data.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AwsConfig {
    /// The DynamoDB table (`PK`/`SK` strings).
    pub table_name: String,
    /// The S3 bucket.
    pub bucket_name: String,
    /// Endpoint of a local emulator (moto, DynamoDB Local, MinIO); `None` for AWS. When set,
    /// S3 is addressed path-style.
    pub endpoint_url: Option<String>,
    /// The region; `None` leaves it to the SDK's provider chain.
    pub region: Option<String>,
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl AwsConfig {
    /// `TABLE_NAME` and `BUCKET_NAME` (both required), and the SDK's standard
    /// `AWS_ENDPOINT_URL` and `AWS_REGION` (optional; the SDK reads its usual variables and
    /// profiles for everything else, credentials included, on first use).
    pub fn from_env() -> Result<AwsConfig, String> {
        let required = |name: &str| {
            env_nonempty(name)
                .ok_or_else(|| format!("environment variable {name}: missing or empty"))
        };
        Ok(AwsConfig {
            table_name: required("TABLE_NAME")?,
            bucket_name: required("BUCKET_NAME")?,
            endpoint_url: env_nonempty("AWS_ENDPOINT_URL"),
            region: env_nonempty("AWS_REGION").or_else(|| env_nonempty("AWS_DEFAULT_REGION")),
        })
    }

    /// Loads the SDK configuration (region and credential chains, HTTP client). Does not fetch
    /// credentials itself; the clients resolve them on their first request.
    pub(crate) async fn load_sdk_config(&self) -> SdkConfig {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(url) = &self.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some(region) = &self.region {
            loader = loader.region(Region::new(region.clone()));
        }
        loader.load().await
    }
}

/// Builds a client from the configuration and the loaded SDK configuration.
pub(crate) type MakeClient<C> = fn(&AwsConfig, &SdkConfig) -> C;

/// A client created on first use from an [`AwsConfig`], or given ready-made.
pub(crate) struct LazyClient<C> {
    /// How to build the client; `None` when it was given ready-made (the cell is then set).
    source: Option<(AwsConfig, MakeClient<C>)>,
    cell: OnceCell<C>,
}

impl<C> LazyClient<C> {
    /// A client built by `make` from `config` on first use.
    pub(crate) fn lazy(config: AwsConfig, make: MakeClient<C>) -> Self {
        LazyClient {
            source: Some((config, make)),
            cell: OnceCell::new(),
        }
    }

    /// A ready client.
    pub(crate) fn ready(client: C) -> Self {
        LazyClient {
            source: None,
            cell: OnceCell::new_with(Some(client)),
        }
    }

    pub(crate) async fn get(&self) -> &C {
        self.cell
            .get_or_init(|| async {
                let (config, make) = self.source.as_ref().expect("an unset client has a source");
                let sdk = config.load_sdk_config().await;
                make(config, &sdk)
            })
            .await
    }
}
