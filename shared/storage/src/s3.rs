//! The S3 backend of [`Blobs`].

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::operation::head_object::HeadObjectError;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;

use aws_setup::{AwsConfig, LazyClient, SdkConfig};

use crate::blob::check_blob_key;
use crate::{BlobMeta, Blobs, StorageError};

/// [`Blobs`] in an S3 bucket.
///
/// The deployed role may read and write objects but not list the bucket; S3 then answers a
/// read of a missing object with 403 AccessDenied instead of 404, so [`Blobs::get`] and
/// [`Blobs::head`] read AccessDenied as "no such blob".
pub struct S3Blobs {
    client: LazyClient<Client>,
    bucket: String,
}

fn make_client(config: &AwsConfig, sdk: &SdkConfig) -> Client {
    let mut builder = aws_sdk_s3::config::Builder::from(sdk);
    // Emulators (moto, MinIO) serve buckets on paths, not on virtual hosts.
    if config.endpoint_url.is_some() || sdk.endpoint_url().is_some() {
        builder = builder.force_path_style(true);
    }
    Client::from_conf(builder.build())
}

impl S3Blobs {
    /// The bucket `bucket`, reached with `aws`. Does no I/O: the SDK configuration (region,
    /// credentials) is loaded and the client created on first use.
    pub fn new(aws: &AwsConfig, bucket: impl Into<String>) -> S3Blobs {
        S3Blobs {
            client: LazyClient::lazy(aws.clone(), make_client),
            bucket: bucket.into(),
        }
    }

    /// The bucket named by `BUCKET_NAME` (required), reached with `aws`.
    pub fn from_env(aws: &AwsConfig) -> Result<S3Blobs, String> {
        Ok(Self::new(aws, aws_setup::env_required("BUCKET_NAME")?))
    }

    /// The bucket `bucket` through a ready client (tests and local tooling, e.g. against
    /// moto; such a client needs `force_path_style(true)`).
    pub fn with_client(client: Client, bucket: impl Into<String>) -> S3Blobs {
        S3Blobs {
            client: LazyClient::ready(client),
            bucket: bucket.into(),
        }
    }

    /// The bucket's name.
    pub fn bucket_name(&self) -> &str {
        &self.bucket
    }

    async fn client(&self) -> &Client {
        self.client.get().await
    }
}

fn sdk_error<E>(op: &str, err: SdkError<E, HttpResponse>) -> StorageError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let msg = match (err.code(), err.message()) {
        (Some(code), Some(m)) => format!("S3 {op}: {code}: {m}"),
        (Some(code), None) => format!("S3 {op}: {code}"),
        _ => format!("S3 {op}: {}", DisplayErrorContext(&err)),
    };
    tracing::warn!(error = %msg, "S3 call failed");
    StorageError::Unavailable(msg)
}

fn status(err: &SdkError<impl std::error::Error, HttpResponse>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

fn presign_config(expires: Duration) -> Result<PresigningConfig, StorageError> {
    PresigningConfig::expires_in(expires)
        .map_err(|e| StorageError::InvalidRequest(format!("presigned URL lifetime: {e}")))
}

#[async_trait]
impl Blobs for S3Blobs {
    async fn put(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<(), StorageError> {
        check_blob_key(key)?;
        self.client()
            .await
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| sdk_error("PutObject", e))?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        check_blob_key(key)?;
        let out = match self
            .client()
            .await
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if matches!(e.as_service_error(), Some(GetObjectError::NoSuchKey(_))) => {
                return Ok(None);
            }
            Err(e) if e.code() == Some("AccessDenied") => {
                tracing::debug!(key, "GetObject: AccessDenied, read as a missing object");
                return Ok(None);
            }
            Err(e) => return Err(sdk_error("GetObject", e)),
        };
        let body = out.body.collect().await.map_err(|e| {
            StorageError::Unavailable(format!("S3 GetObject: reading the body: {e}"))
        })?;
        Ok(Some(body.into_bytes().to_vec()))
    }

    async fn head(&self, key: &str) -> Result<Option<BlobMeta>, StorageError> {
        check_blob_key(key)?;
        match self
            .client()
            .await
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(Some(BlobMeta {
                size: out
                    .content_length()
                    .and_then(|n| u64::try_from(n).ok())
                    .unwrap_or(0),
                content_type: out.content_type().map(str::to_owned),
            })),
            Err(e) if matches!(e.as_service_error(), Some(HeadObjectError::NotFound(_))) => {
                Ok(None)
            }
            // A HEAD response has no body, so AccessDenied shows only as its status.
            Err(e) if e.code() == Some("AccessDenied") || status(&e) == Some(403) => {
                tracing::debug!(key, "HeadObject: 403, read as a missing object");
                Ok(None)
            }
            Err(e) => Err(sdk_error("HeadObject", e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        check_blob_key(key)?;
        self.client()
            .await
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| sdk_error("DeleteObject", e))?;
        Ok(())
    }

    async fn presign_put(
        &self,
        key: &str,
        content_type: Option<&str>,
        expires: Duration,
    ) -> Result<String, StorageError> {
        check_blob_key(key)?;
        let config = presign_config(expires)?;
        let req = self
            .client()
            .await
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .set_content_type(content_type.map(str::to_owned))
            .presigned(config)
            .await
            .map_err(|e| sdk_error("PutObject (presign)", e))?;
        Ok(req.uri().to_owned())
    }

    async fn presign_get(&self, key: &str, expires: Duration) -> Result<String, StorageError> {
        check_blob_key(key)?;
        let config = presign_config(expires)?;
        let req = self
            .client()
            .await
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(config)
            .await
            .map_err(|e| sdk_error("GetObject (presign)", e))?;
        Ok(req.uri().to_owned())
    }
}
