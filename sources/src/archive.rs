//! The raw FIX archive as a replay source, through `object_store`: a local directory by
//! default, any URL object_store understands (`file://`, and `s3://` with the S3 sink issue).

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
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
    #[error("unsupported archive URL {0:?} (use a directory path or file:// URL)")]
    Unsupported(String),
}

/// A FIX archive: every object under a prefix, replayed in name order.
#[derive(Clone, Debug)]
pub struct Archive {
    store: Arc<dyn ObjectStore>,
    prefix: Option<ObjectPath>,
    location: String,
}

/// One archived segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    pub key: String,
    pub size: u64,
}

impl Archive {
    /// Opens a directory path or `file://` URL.
    pub fn open(location: &str) -> Result<Archive, ArchiveError> {
        let path = match location.strip_prefix("file://") {
            Some(path) => path,
            None if location.contains("://") => {
                return Err(ArchiveError::Unsupported(location.into()))
            }
            None => location,
        };
        let store =
            LocalFileSystem::new_with_prefix(path).map_err(|source| ArchiveError::Open {
                location: location.into(),
                source,
            })?;
        Ok(Archive::from_store(Arc::new(store), None, location))
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

    /// The whole segment. Segments are bounded in size by the writer, so one read is fine.
    pub async fn read(&self, key: &str) -> Result<Bytes, ArchiveError> {
        let path = ObjectPath::from(key);
        let err = |source| ArchiveError::Object {
            key: key.to_owned(),
            source,
        };
        self.store
            .get(&path)
            .await
            .map_err(err)?
            .bytes()
            .await
            .map_err(err)
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
    }

    #[test]
    fn refuses_unknown_schemes() {
        assert!(matches!(
            Archive::open("ftp://x/y"),
            Err(ArchiveError::Unsupported(_))
        ));
    }
}
