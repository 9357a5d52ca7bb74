//! Upload targets: the one trait over the schema's five copies of the storage oneof.
//!
//! The generated code has the same four-provider oneof (S3, GCP, Azure, Alibaba OSS) five
//! times: in `EncodedFileOutput`, `SegmentedFileOutput`, `ImageOutput`, `DirectFileOutput`
//! and the unified request's `StorageConfig`. [`UploadOneof`] is implemented for each of
//! them from a single list of variants, so converting between copies (outputs) and
//! summarising a target without its credentials (views) are written once.

use crate::proto;
use proto::storage_config::Provider;

/// The cloud storage service an upload goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StorageProvider {
    /// Amazon S3 or an S3-compatible service.
    S3,
    /// Google Cloud Storage.
    Gcp,
    /// Azure Blob Storage.
    Azure,
    /// Alibaba Cloud OSS.
    AliOss,
}

/// Where an upload goes, without any credentials.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StorageTarget {
    /// The storage service.
    pub provider: StorageProvider,
    /// Azure only: the storage account. A container name alone does not say whose
    /// storage it is (every account can have a `recordings` container); the account does.
    pub account: Option<String>,
    /// Bucket (S3, GCP, OSS) or container (Azure).
    pub bucket: Option<String>,
    /// Region (S3, OSS).
    pub region: Option<String>,
    /// Custom endpoint (S3-compatible services, OSS).
    pub endpoint: Option<String>,
}

pub(crate) fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// Each upload message's target: its provider, and which of its fields hold the account,
/// bucket, region and endpoint. A field the message lacks, or leaves empty, is `None`.
macro_rules! storage_target_from {
    ($($upload:ident => $provider:ident { $($field:ident: $source:ident),* }),* $(,)?) => {$(
        impl From<&proto::$upload> for StorageTarget {
            fn from(u: &proto::$upload) -> Self {
                Self {
                    $($field: non_empty(&u.$source),)*
                    ..Self::at(StorageProvider::$provider)
                }
            }
        }
    )*};
}

storage_target_from!(
    S3Upload => S3 { bucket: bucket, region: region, endpoint: endpoint },
    GcpUpload => Gcp { bucket: bucket },
    AzureBlobUpload => Azure { account: account_name, bucket: container_name },
    AliOssUpload => AliOss { bucket: bucket, region: region, endpoint: endpoint },
);

impl StorageTarget {
    /// A target at `provider` that names nothing else.
    fn at(provider: StorageProvider) -> Self {
        Self {
            provider,
            account: None,
            bucket: None,
            region: None,
            endpoint: None,
        }
    }
}

/// One generated copy of the upload-target oneof.
///
/// # Example
///
/// ```
/// use egress_core::proto;
/// use egress_core::storage::{StorageProvider, UploadOneof};
///
/// let upload = proto::image_output::Output::Gcp(proto::GcpUpload {
///     bucket: "thumbnails".into(),
///     ..Default::default()
/// });
/// assert_eq!(upload.target().provider, StorageProvider::Gcp);
/// let moved: proto::encoded_file_output::Output = UploadOneof::from_provider(upload.into_provider());
/// assert!(matches!(moved, proto::encoded_file_output::Output::Gcp(g) if g.bucket == "thumbnails"));
/// ```
pub trait UploadOneof: Sized {
    /// The same upload as the unified `StorageConfig`'s provider.
    fn into_provider(self) -> Provider;
    /// The unified `StorageConfig`'s provider as this copy of the oneof.
    fn from_provider(provider: Provider) -> Self;
    /// Where the upload goes, credentials left out.
    fn target(&self) -> StorageTarget;
}

macro_rules! upload_oneofs {
    ($($oneof:path),* ; $variants:tt) => {
        $(upload_oneofs!(@one $oneof, $variants);)*
    };
    (@one $oneof:path, [$($variant:ident),*]) => {
        impl UploadOneof for $oneof {
            fn into_provider(self) -> Provider {
                match self {
                    $(Self::$variant(u) => Provider::$variant(u),)*
                }
            }

            fn from_provider(provider: Provider) -> Self {
                match provider {
                    $(Provider::$variant(u) => Self::$variant(u),)*
                }
            }

            fn target(&self) -> StorageTarget {
                match self {
                    $(Self::$variant(u) => StorageTarget::from(u),)*
                }
            }
        }
    };
}

// The `StorageConfig` provider is in the list too (its conversions are the identity), so
// code generic over the oneof needs no special case for it.
upload_oneofs!(
    Provider,
    proto::encoded_file_output::Output,
    proto::segmented_file_output::Output,
    proto::image_output::Output,
    proto::direct_file_output::Output;
    [S3, Gcp, Azure, AliOss]
);

/// The upload target of a unified `StorageConfig`, if it names one.
pub fn config_target(config: &proto::StorageConfig) -> Option<StorageTarget> {
    config.provider.as_ref().map(UploadOneof::target)
}

/// Wraps any copy of the oneof as a unified `StorageConfig`.
pub fn to_storage_config(upload: impl UploadOneof) -> proto::StorageConfig {
    proto::StorageConfig {
        provider: Some(upload.into_provider()),
    }
}
