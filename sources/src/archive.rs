//! The raw FIX archive as a replay source, through `object_store`: a local directory, a
//! `file://` URL, or S3 (`s3://bucket/prefix`, any S3-compatible server).

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::{ClientOptions, RetryConfig};
use object_store::{ObjectStore, ObjectStoreExt};

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("archive location {location:?}: {source}")]
    Open {
        location: String,
        source: object_store::Error,
    },
    #[error("archive object {key}: {source}")]
    Object {
        key: String,
        source: object_store::Error,
    },
    #[error("archive segment {key}: {source}")]
    Read { key: String, source: std::io::Error },
    #[error("unsupported archive URL {0:?} (use a directory, file:// or s3://bucket/prefix)")]
    Unsupported(String),
}

/// The object store behind an archive location, with keys relative to the location:
/// - a directory path or `file://` URL: the local file system (the directory must exist);
/// - `s3://bucket[/prefix]`: S3 or any S3-compatible server, configured from the usual
///   environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT`
///   for a server other than AWS, `AWS_ALLOW_HTTP=true` for plain HTTP), path-style requests.
///
/// S3 requests give up after a few quick retries instead of object_store's three minutes: the
/// archive writer keeps segments spooled and tries again itself, and a replay should fail fast.
pub fn open_store(location: &str) -> Result<Arc<dyn ObjectStore>, ArchiveError> {
    if let Some(rest) = location.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(ArchiveError::Unsupported(location.into()));
        }
        let retry = RetryConfig {
            max_retries: 2,
            retry_timeout: Duration::from_secs(10),
            ..RetryConfig::default()
        };
        // object_store's from_env does not read AWS_ALLOW_HTTP; plain HTTP stays opt-in.
        let allow_http = std::env::var("AWS_ALLOW_HTTP").is_ok_and(|v| v == "true" || v == "1");
        let client = ClientOptions::new()
            .with_allow_http(allow_http)
            .with_connect_timeout(Duration::from_secs(3))
            .with_timeout(Duration::from_secs(30));
        let store = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_virtual_hosted_style_request(false)
            .with_retry(retry)
            .with_client_options(client)
            .build()
            .map_err(open_error(location))?;
        let prefix = prefix.trim_matches('/');
        return Ok(if prefix.is_empty() {
            Arc::new(store)
        } else {
            Arc::new(PrefixStore::new(store, prefix))
        });
    }
    Ok(open_local(location)?)
}

/// The directory a local archive location names: a path, or a `file://` URL's path; `None`
/// for any other scheme.
pub fn local_directory(location: &str) -> Option<&str> {
    match location.strip_prefix("file://") {
        Some(path) => Some(path),
        None => (!location.contains("://")).then_some(location),
    }
}

/// The local file system under a directory path or `file://` URL.
fn open_local(location: &str) -> Result<Arc<LocalFileSystem>, ArchiveError> {
    let path =
        local_directory(location).ok_or_else(|| ArchiveError::Unsupported(location.into()))?;
    let store = LocalFileSystem::new_with_prefix(path).map_err(open_error(location))?;
    Ok(Arc::new(store))
}

/// An object_store error opening `location`.
fn open_error(location: &str) -> impl FnOnce(object_store::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Open {
        location: location.into(),
        source,
    }
}

/// A FIX archive: every object under a prefix, replayed in name order.
#[derive(Clone, Debug)]
pub struct Archive {
    store: Arc<dyn ObjectStore>,
    prefix: Option<ObjectPath>,
    location: String,
    /// For an archive on the local file system: its store, to find a segment's file, and the
    /// buffers its segments are read into.
    local: Option<(Arc<LocalFileSystem>, Arc<SegmentBuffers>)>,
}

/// One archived segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    pub key: String,
    pub size: u64,
}

impl Archive {
    /// Opens a directory path, a `file://` URL or an `s3://bucket/prefix` URL (see
    /// [`open_store`]).
    pub fn open(location: &str) -> Result<Archive, ArchiveError> {
        if location.starts_with("s3://") {
            return Ok(Archive::from_store(open_store(location)?, None, location));
        }
        let local = open_local(location)?;
        Ok(Archive {
            local: Some((local.clone(), Arc::default())),
            ..Archive::from_store(local, None, location)
        })
    }

    pub fn from_store(
        store: Arc<dyn ObjectStore>,
        prefix: Option<ObjectPath>,
        location: &str,
    ) -> Archive {
        Archive {
            store,
            prefix,
            location: location.to_owned(),
            local: None,
        }
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    /// All segments in name order (the replay order), hidden files left out.
    pub async fn segments(&self) -> Result<Vec<Segment>, ArchiveError> {
        let listed: Vec<_> = self
            .store
            .list(self.prefix.as_ref())
            .try_collect()
            .await
            .map_err(|source| ArchiveError::Open {
                location: self.location.clone(),
                source,
            })?;
        let mut segments: Vec<Segment> = listed
            .into_iter()
            .filter(|meta| {
                !meta
                    .location
                    .filename()
                    .is_some_and(|name| name.starts_with('.'))
            })
            .map(|meta| Segment {
                key: meta.location.to_string(),
                size: meta.size,
            })
            .collect();
        segments.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(segments)
    }

    /// Every segment's bytes, in name order: the archive held in memory at once, as the
    /// benchmarks that time its stages apart read it.
    pub async fn read_all(&self) -> Result<Vec<Bytes>, ArchiveError> {
        let mut all = Vec::new();
        for segment in self.segments().await? {
            all.push(self.read(&segment.key).await?);
        }
        Ok(all)
    }

    /// The whole segment. Segments are bounded in size by the writer, so one read is fine.
    ///
    /// A local segment is read on the caller's thread, into a buffer an earlier segment gave
    /// back (see `SegmentBuffers`).
    pub async fn read(&self, key: &str) -> Result<Bytes, ArchiveError> {
        let path = ObjectPath::from(key);
        let err = |source| ArchiveError::Object {
            key: key.to_owned(),
            source,
        };
        if let Some((local, buffers)) = &self.local {
            let file = local.path_to_filesystem(&path).map_err(err)?;
            return buffers.read(&file).map_err(|source| ArchiveError::Read {
                key: key.to_owned(),
                source,
            });
        }
        self.store
            .get(&path)
            .await
            .map_err(err)?
            .bytes()
            .await
            .map_err(err)
    }
}

/// Buffers that local segments are read into, given back when the last holder of a segment's
/// bytes lets them go. A replay reads a segment of several MiB per worker in turn: in a fresh
/// buffer (object_store's read), each one's pages were faulted in and zeroed by the kernel,
/// zeroed again by the read's `resize`, and unmapped once framed (12,000 of the 1M replay's
/// 105,000 page faults, `perf record -e minor-faults`, and 3.7% of its CPU samples).
#[derive(Debug, Default)]
struct SegmentBuffers {
    free: Mutex<Vec<Vec<u8>>>,
}

/// Buffers kept for later segments: enough for each of a few workers' segments in flight.
const KEPT_SEGMENT_BUFFERS: usize = 4;

impl SegmentBuffers {
    fn read(self: &Arc<Self>, path: &std::path::Path) -> std::io::Result<Bytes> {
        let mut buffer = self
            .free
            .lock()
            .ok()
            .and_then(|mut free| free.pop())
            .unwrap_or_default();
        buffer.clear();
        // `read_to_end` reads into the spare capacity as it is, without zeroing it first, and
        // reserves the file's size up front.
        std::fs::File::open(path)?.read_to_end(&mut buffer)?;
        Ok(Bytes::from_owner(ReusedBuffer {
            buffer,
            buffers: self.clone(),
        }))
    }
}

/// A segment's bytes, whose buffer goes back to its [`SegmentBuffers`] when dropped.
struct ReusedBuffer {
    buffer: Vec<u8>,
    buffers: Arc<SegmentBuffers>,
}

impl AsRef<[u8]> for ReusedBuffer {
    fn as_ref(&self) -> &[u8] {
        &self.buffer
    }
}

impl Drop for ReusedBuffer {
    fn drop(&mut self) {
        if let Ok(mut free) = self.buffers.free.lock() {
            if free.len() < KEPT_SEGMENT_BUFFERS {
                free.push(std::mem::take(&mut self.buffer));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lists_in_name_order_and_reads() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.fix"), b"second").unwrap();
        std::fs::write(dir.path().join("a.fix"), b"first").unwrap();
        std::fs::write(dir.path().join(".hidden"), b"x").unwrap();
        let archive = Archive::open(dir.path().to_str().unwrap()).unwrap();
        let segments = archive.segments().await.unwrap();
        let keys: Vec<_> = segments.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(keys, ["a.fix", "b.fix"]);
        assert_eq!(&archive.read("a.fix").await.unwrap()[..], b"first");
        assert!(archive.read("missing.fix").await.is_err());
        let all = archive.read_all().await.unwrap();
        let all: Vec<&[u8]> = all.iter().map(|b| &b[..]).collect();
        assert_eq!(all, [&b"first"[..], &b"second"[..]]);
    }

    #[tokio::test]
    async fn a_segment_buffer_is_reused_once_its_bytes_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.fix"), vec![b'a'; 100_000]).unwrap();
        std::fs::write(dir.path().join("b.fix"), b"short").unwrap();
        let archive = Archive::open(dir.path().to_str().unwrap()).unwrap();
        let (_, buffers) = archive.local.clone().unwrap();
        let kept = || buffers.free.lock().unwrap().len();
        let first = archive.read("a.fix").await.unwrap();
        let held = first.slice(10..20);
        drop(first);
        // A slice still holds the buffer.
        assert_eq!(kept(), 0);
        let second = archive.read("b.fix").await.unwrap();
        assert_eq!(&second[..], b"short");
        drop(second);
        drop(held);
        assert_eq!(kept(), 2);
        // The big buffer (given back last) now holds a short segment, then the short one a
        // long segment: each read has exactly its file's bytes.
        let again = archive.read("b.fix").await.unwrap();
        let third = archive.read("a.fix").await.unwrap();
        assert_eq!(kept(), 0);
        assert_eq!(&again[..], b"short");
        assert_eq!(third.len(), 100_000);
        assert!(third.iter().all(|b| *b == b'a'));
        drop((again, third));
        for _ in 0..KEPT_SEGMENT_BUFFERS + 2 {
            drop(archive.read("b.fix").await.unwrap());
        }
        let many: Vec<_> = futures::future::try_join_all(
            (0..KEPT_SEGMENT_BUFFERS + 2).map(|_| archive.read("b.fix")),
        )
        .await
        .unwrap();
        drop(many);
        assert_eq!(kept(), KEPT_SEGMENT_BUFFERS);
    }

    #[test]
    fn refuses_unknown_schemes() {
        assert!(matches!(
            Archive::open("ftp://x/y"),
            Err(ArchiveError::Unsupported(_))
        ));
    }
}
