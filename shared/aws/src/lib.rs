//! The one way the project configures AWS SDK clients (DynamoDB and S3 in `storage`, Cognito in
//! `directory`): [`AwsConfig`] holds what a function's environment says about AWS (endpoint,
//! region, extra CA certificates), [`sdk_config`] turns it into the SDK configuration, and
//! [`LazyClient`] creates a client from it on first use.
//!
//! Cold start matters: reading an [`AwsConfig`] and wrapping it in a [`LazyClient`] does no I/O
//! and loads no credentials; the SDK configuration and the client are created on first use.
//!
//! The AWS clients' HTTPS client ([`http_client`]) is rustls on ring (the only crypto library in
//! the deployed binaries) trusting the Amazon Trust Services roots that every AWS endpoint
//! chains to, plus the certificates of `AWS_CA_BUNDLE` when it is set. The SDK's default client
//! would load and parse the system's whole CA store (about 140 certificates) on the first
//! request: several milliseconds of every cold start.

use aws_config::environment::EnvironmentVariableCredentialsProvider;
use aws_config::{BehaviorVersion, Region};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::sync::OnceCell;

pub use aws_config::SdkConfig;

/// The roots AWS endpoints chain to (see the file's header).
const AMAZON_ROOTS: &str = include_str!("amazon-roots.pem");

/// How a function reaches AWS. Which table, bucket or user pool it uses is the business of the
/// crate that owns that client (`storage::DynamoTable::from_env` reads `TABLE_NAME`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AwsConfig {
    /// Endpoint of a local emulator (moto, DynamoDB Local, MinIO); `None` for AWS. When set,
    /// S3 is addressed path-style.
    pub endpoint_url: Option<String>,
    /// The region; `None`: `AWS_REGION` or `AWS_DEFAULT_REGION` when the client is created.
    pub region: Option<String>,
    /// Extra trusted CA certificates (PEM), from the file `AWS_CA_BUNDLE` names: for endpoints
    /// behind a TLS-inspecting proxy or a private CA. Read and checked by [`AwsConfig::from_env`].
    pub ca_bundle: Option<String>,
}

/// The value of the environment variable `name`, unless it is unset or empty.
pub fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The value of the required environment variable `name`, or the message a function stops with
/// at start when it is unset or empty.
pub fn env_required(name: &str) -> Result<String, String> {
    env_nonempty(name).ok_or_else(|| format!("environment variable {name}: missing or empty"))
}

impl AwsConfig {
    /// The SDK's standard `AWS_ENDPOINT_URL`, `AWS_REGION` and `AWS_CA_BUNDLE` (all optional;
    /// see [`sdk_config`] for the rest, credentials included, read on first use). Fails when
    /// `AWS_CA_BUNDLE` names a file that is not a usable certificate bundle.
    pub fn from_env() -> Result<AwsConfig, String> {
        Ok(AwsConfig {
            endpoint_url: env_nonempty("AWS_ENDPOINT_URL"),
            region: env_nonempty("AWS_REGION").or_else(|| env_nonempty("AWS_DEFAULT_REGION")),
            ca_bundle: ca_bundle_from_env()?,
        })
    }

    /// The SDK configuration ([`sdk_config`]). Does no I/O; the clients read the credentials on
    /// their first request.
    pub fn sdk_config(&self) -> SdkConfig {
        sdk_config(
            self.endpoint_url.as_deref(),
            self.region.as_deref(),
            self.ca_bundle.as_deref(),
        )
    }
}

/// `AWS_CA_BUNDLE`'s certificates, checked: a file that cannot be read or holds no valid PEM
/// certificate is a configuration error at init, not a failure on the first request.
fn ca_bundle_from_env() -> Result<Option<String>, String> {
    let Some(path) = env_nonempty("AWS_CA_BUNDLE") else {
        return Ok(None);
    };
    let pem = std::fs::read_to_string(&path)
        .map_err(|e| format!("environment variable AWS_CA_BUNDLE: cannot read {path}: {e}"))?;
    check_pem_certificates(&pem)
        .map_err(|e| format!("environment variable AWS_CA_BUNDLE: {path}: {e}"))?;
    Ok(Some(pem))
}

/// The number of certificates in `pem`; an error unless there is at least one and all parse.
fn check_pem_certificates(pem: &str) -> Result<usize, String> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate bundle ({e})"))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| format!("unusable certificate ({e})"))?;
    }
    match roots.len() {
        0 => Err("no certificate in the bundle".into()),
        n => Ok(n),
    }
}

/// The HTTPS client of an SDK configuration (see the module's header). Each configuration gets
/// its own (HTTP connections belong to the Tokio runtime that opened them); its TLS
/// configuration, a few certificates, is built when the first connection is made.
fn http_client(ca_bundle: Option<&str>) -> SharedHttpClient {
    let mut trust = TrustStore::empty()
        .with_native_roots(false)
        .with_pem_certificate(AMAZON_ROOTS.as_bytes());
    if let Some(pem) = ca_bundle {
        trust.add_pem_certificate(pem.as_bytes());
    }
    let context = TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .expect("a TLS context of PEM certificates always builds");
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .tls_context(context)
        .build_https()
}

/// The SDK configuration of every AWS client in the project, built directly rather than by
/// `aws_config::defaults(..).load()`: that loader resolves a dozen settings through environment
/// variables and profile files and assembles every credential provider (profiles, SSO, web
/// identity, ECS, IMDS), about 0.6 ms of each cold start (README, Performance), for a Lambda
/// whose environment always holds its region and credentials. So:
/// - credentials: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` (what
///   Lambda, `sam local` and CI runners provide), read on first use and cached by the client;
/// - region: `region`, else `AWS_REGION` or `AWS_DEFAULT_REGION`;
/// - endpoint: `endpoint_url`, else `AWS_ENDPOINT_URL` (an emulator: moto, DynamoDB Local);
/// - `AWS_USE_FIPS_ENDPOINT` / `AWS_USE_DUALSTACK_ENDPOINT` (`true`) as the SDK reads them;
/// - the HTTPS client of [`http_client`], with the extra CA certificates `ca_bundle` (checked);
/// - retries, timeouts, sleep and time source: the SDK clients' defaults.
pub fn sdk_config(
    endpoint_url: Option<&str>,
    region: Option<&str>,
    ca_bundle: Option<&str>,
) -> SdkConfig {
    let flag = |name: &str| env_nonempty(name).is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let region = region
        .map(str::to_owned)
        .or_else(|| env_nonempty("AWS_REGION"))
        .or_else(|| env_nonempty("AWS_DEFAULT_REGION"));
    let mut builder = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .credentials_provider(SharedCredentialsProvider::new(
            EnvironmentVariableCredentialsProvider::new(),
        ))
        .http_client(http_client(ca_bundle))
        .use_fips(flag("AWS_USE_FIPS_ENDPOINT"))
        .use_dual_stack(flag("AWS_USE_DUALSTACK_ENDPOINT"));
    if let Some(region) = region {
        builder = builder.region(Region::new(region));
    }
    if let Some(url) = endpoint_url
        .map(str::to_owned)
        .or_else(|| env_nonempty("AWS_ENDPOINT_URL"))
    {
        builder = builder.endpoint_url(url);
    }
    builder.build()
}

/// Builds a client from the configuration and the loaded SDK configuration.
pub type MakeClient<C> = fn(&AwsConfig, &SdkConfig) -> C;

/// A client created on first use from an [`AwsConfig`], or given ready-made (tests, emulators).
pub struct LazyClient<C> {
    /// How to build the client; `None` when it was given ready-made (the cell is then set).
    source: Option<(AwsConfig, MakeClient<C>)>,
    cell: OnceCell<C>,
}

impl<C> LazyClient<C> {
    /// A client built by `make` from `config` on first use.
    pub fn lazy(config: AwsConfig, make: MakeClient<C>) -> Self {
        LazyClient {
            source: Some((config, make)),
            cell: OnceCell::new(),
        }
    }

    /// A ready client.
    pub fn ready(client: C) -> Self {
        LazyClient {
            source: None,
            cell: OnceCell::new_with(Some(client)),
        }
    }

    pub async fn get(&self) -> &C {
        self.cell
            .get_or_init(|| async {
                let (config, make) = self.source.as_ref().expect("an unset client has a source");
                make(config, &config.sdk_config())
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_amazon_roots_parse() {
        assert_eq!(check_pem_certificates(AMAZON_ROOTS), Ok(5));
    }

    #[test]
    fn the_sdk_configuration_takes_what_it_is_given() {
        let sdk = sdk_config(Some("http://127.0.0.1:1"), Some("eu-west-1"), None);
        assert_eq!(sdk.region().map(|r| r.as_ref()), Some("eu-west-1"));
        assert_eq!(sdk.endpoint_url(), Some("http://127.0.0.1:1"));
        assert!(sdk.http_client().is_some());
        assert!(sdk.credentials_provider().is_some());
        assert!(sdk.behavior_version().is_some());
        let with_bundle = sdk_config(None, Some("eu-west-1"), Some(AMAZON_ROOTS));
        assert!(with_bundle.http_client().is_some());
    }

    #[test]
    fn a_bad_ca_bundle_is_refused() {
        assert!(check_pem_certificates("").is_err());
        assert!(check_pem_certificates("hello").is_err());
        let broken = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(check_pem_certificates(broken).is_err());
    }
}
