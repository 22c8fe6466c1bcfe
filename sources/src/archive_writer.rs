//! The raw FIX archive, written before anything else is done with the bytes.
//!
//! Bytes are appended to a local spool segment and fsynced before the caller acts on them,
//! so an acknowledged message is on disk even if the object store is down. Segments roll by
//! size or age; closed segments are uploaded in order through `object_store` and removed from
//! the spool only once the store has them. A store outage only grows the spool. An archive on
//! the spool's own file system takes a closed segment as a second name of its file (a hard
//! link), not as a copy.
//!
//! A full segment is sealed, but it becomes a closed segment (`.fix`, for the uploader) only
//! once the broker has acknowledged every record made from its bytes. Until then it keeps its
//! `.open` name: a gateway killed meanwhile finds it in the spool on restart and sends what the
//! topics lack, where an uploaded segment would be gone from the spool with its dead letters
//! (and, for a plain stream, which nobody resends, its trades) never delivered.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutMode, PutPayload};
use tracing::Instrument;

use crate::kafka::{Deliveries, DeliveryHold};

#[derive(Debug, thiserror::Error)]
pub enum ArchiveWriteError {
    #[error("archive spool {path}: {source}")]
    Spool {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where and how segments are written.
#[derive(Clone, Debug)]
pub struct SegmentPolicy {
    pub gateway_id: String,
    /// Trading date, `YYYYMMDD`; part of every key.
    pub trading_date: String,
    pub max_bytes: usize,
    pub max_age: Duration,
}

struct OpenSegment {
    file: File,
    path: PathBuf,
    size: usize,
    opened: Instant,
    deliveries: Arc<Deliveries>,
}

/// Where appended bytes landed, and a hold on their segment: it stays out of the uploader's
/// reach while the hold lives and until every record sent with the hold's deliveries is
/// acknowledged. Drop the hold once the bytes' records are all sent.
pub struct Appended {
    /// The segment's object key.
    pub key: String,
    /// Where the bytes start in the segment.
    pub offset: u64,
    pub hold: DeliveryHold,
}

/// Appends raw bytes to size/age-bounded segments named `{gateway}/{date}/{gateway}-{date}-{seq}.fix`
/// (name order is replay order).
pub struct SegmentWriter {
    store: Arc<dyn ObjectStore>,
    spool: PathBuf,
    policy: SegmentPolicy,
    seq: u64,
    open: Option<OpenSegment>,
    /// Full segments, oldest first, whose records the broker has not all acknowledged yet.
    sealed: VecDeque<(PathBuf, Arc<Deliveries>)>,
    /// Bytes in the spool not yet uploaded (open and closed segments): the uploader takes off
    /// what it removes, so the gateway can push back on senders when the spool is full.
    spooled: Arc<AtomicU64>,
    /// Segments a previous run left in the spool, oldest first, with their object keys.
    leftovers: Vec<(String, PathBuf)>,
}

impl SegmentWriter {
    /// Opens the spool, closing a segment a previous run left open and continuing its numbering.
    pub async fn open(
        spool: &Path,
        store: Arc<dyn ObjectStore>,
        policy: SegmentPolicy,
    ) -> Result<SegmentWriter, ArchiveWriteError> {
        let err = |source| ArchiveWriteError::Spool {
            path: spool.to_owned(),
            source,
        };
        fs::create_dir_all(spool).map_err(err)?;
        let mut seq = 0;
        let mut spooled = 0;
        let mut leftovers = Vec::new();
        for entry in fs::read_dir(spool).map_err(err)? {
            let mut path = entry.map_err(err)?.path();
            if let Some(n) = segment_seq(&path) {
                seq = seq.max(n + 1);
                spooled += fs::metadata(&path).map_err(err)?.len();
                if path.extension().is_some_and(|e| e == "open") {
                    // Everything in it was fsynced before use; close it as it is.
                    let closed = path.with_extension("fix");
                    fs::rename(&path, &closed).map_err(err)?;
                    path = closed;
                }
                leftovers.push(path);
            }
        }
        leftovers.sort();
        let mut writer = SegmentWriter {
            store,
            spool: spool.to_owned(),
            seq,
            open: None,
            sealed: VecDeque::new(),
            spooled: Arc::new(AtomicU64::new(spooled)),
            leftovers: leftovers
                .into_iter()
                .filter_map(|path| {
                    let name = path.file_name()?.to_str()?;
                    Some((segment_key(&policy, name).to_string(), path))
                })
                .collect(),
            policy,
        };
        writer.seq = writer.seq.max(writer.next_seq_in_store().await);
        Ok(writer)
    }

    fn file_stem(&self, seq: u64) -> String {
        format!(
            "{}-{}-{seq:08}",
            self.policy.gateway_id, self.policy.trading_date
        )
    }

    /// Continue after the highest segment already in the store (a fresh spool on a new host).
    async fn next_seq_in_store(&self) -> u64 {
        use futures::TryStreamExt;
        let prefix = ObjectPath::from(format!(
            "{}/{}",
            self.policy.gateway_id, self.policy.trading_date
        ));
        // An unreachable store here only means numbering continues from the spool.
        let listed: Vec<_> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .unwrap_or_default();
        listed
            .iter()
            .filter_map(|meta| {
                meta.location
                    .filename()
                    .and_then(|name| segment_seq(Path::new(name)))
            })
            .map(|n| n + 1)
            .max()
            .unwrap_or(0)
    }

    /// Appends bytes to the open segment (opening one if needed) and says where they landed.
    /// Not durable until `sync`.
    pub fn append(&mut self, bytes: &[u8]) -> Result<Appended, ArchiveWriteError> {
        if self.open.is_none() {
            let path = self
                .spool
                .join(format!("{}.open", self.file_stem(self.seq)));
            self.seq += 1;
            let file = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(&path)
                .map_err(|source| ArchiveWriteError::Spool {
                    path: path.clone(),
                    source,
                })?;
            self.open = Some(OpenSegment {
                file,
                path,
                size: 0,
                opened: Instant::now(),
                deliveries: Arc::default(),
            });
        }
        let Some(segment) = self.open.as_mut() else {
            unreachable!("a segment was opened above")
        };
        segment
            .file
            .write_all(bytes)
            .map_err(|source| ArchiveWriteError::Spool {
                path: segment.path.clone(),
                source,
            })?;
        let offset = segment.size as u64;
        segment.size += bytes.len();
        self.spooled
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        let closed_name = segment.path.with_extension("fix");
        let name = closed_name
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        Ok(Appended {
            key: segment_key(&self.policy, name).to_string(),
            offset,
            hold: segment.deliveries.hold(),
        })
    }

    /// Segments a previous run left in the spool (not uploaded yet), oldest first, with the
    /// object keys they will have: until the uploader runs, their bytes are here to read.
    pub fn leftover_segments(&self) -> &[(String, PathBuf)] {
        &self.leftovers
    }

    /// When the oldest leftover segment was created (a segment's bytes all arrived after its
    /// file was made), where the file system keeps creation times.
    pub fn leftovers_created(&self) -> Option<std::time::SystemTime> {
        let created: Option<Vec<_>> = self
            .leftovers
            .iter()
            .map(|(_, path)| fs::metadata(path).and_then(|m| m.created()).ok())
            .collect();
        created?.into_iter().min()
    }

    /// An uploader for this writer's spool, to run beside it (appends never wait on uploads).
    pub fn uploader(&self) -> SegmentUploader {
        SegmentUploader {
            store: self.store.clone(),
            spool: self.spool.clone(),
            policy: self.policy.clone(),
            spooled: self.spooled.clone(),
            local_archive: None,
        }
    }

    /// Bytes in the spool not yet uploaded, kept current by appends and uploads.
    pub fn spooled_bytes(&self) -> Arc<AtomicU64> {
        self.spooled.clone()
    }

    /// Makes everything appended so far durable; then rolls the segment if it is full or old,
    /// and hands sealed segments whose records are all delivered to the uploader.
    pub fn sync(&mut self) -> Result<(), ArchiveWriteError> {
        let roll = match &self.open {
            Some(segment) => {
                segment
                    .file
                    .sync_data()
                    .map_err(|source| ArchiveWriteError::Spool {
                        path: segment.path.clone(),
                        source,
                    })?;
                segment.size >= self.policy.max_bytes
                    || segment.opened.elapsed() >= self.policy.max_age
            }
            None => false,
        };
        if roll {
            self.close_segment()
        } else {
            self.release_delivered()
        }
    }

    /// Seals the open segment (if any); it is uploaded once its records are all delivered.
    pub fn close_segment(&mut self) -> Result<(), ArchiveWriteError> {
        if let Some(segment) = self.open.take() {
            segment
                .file
                .sync_all()
                .map_err(|source| ArchiveWriteError::Spool {
                    path: segment.path.clone(),
                    source,
                })?;
            self.sealed.push_back((segment.path, segment.deliveries));
        }
        self.release_delivered()
    }

    /// Closes (`.fix`) the sealed segments whose records the broker has all acknowledged, in
    /// order: the store receives segments in name order, which is replay order.
    fn release_delivered(&mut self) -> Result<(), ArchiveWriteError> {
        while let Some((path, deliveries)) = self.sealed.front() {
            if !deliveries.all_acknowledged() {
                break;
            }
            fs::rename(path, path.with_extension("fix")).map_err(|source| {
                ArchiveWriteError::Spool {
                    path: path.clone(),
                    source,
                }
            })?;
            self.sealed.pop_front();
        }
        Ok(())
    }

    /// Sealed segments waiting for the broker to acknowledge their records.
    pub fn awaiting_delivery(&self) -> usize {
        self.sealed.len()
    }
}

/// What one upload round did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UploadRound {
    pub uploaded: usize,
    /// Closed segments still in the spool (the store failed on the first of them).
    pub waiting: usize,
}

/// Uploads closed spool segments to the object store, in order.
#[derive(Clone)]
pub struct SegmentUploader {
    store: Arc<dyn ObjectStore>,
    spool: PathBuf,
    policy: SegmentPolicy,
    spooled: Arc<AtomicU64>,
    /// The directory of a local archive (the store's root), where closed segments are linked.
    local_archive: Option<PathBuf>,
}

impl SegmentUploader {
    /// The store is the local directory `root` (a `LocalFileSystem` rooted there): a closed
    /// segment on the same file system goes into it as a hard link of its spool file. Reading
    /// a segment back and writing it again cost the gateway's upload thread 0.65 s of an 8 s
    /// run at 50k msg/s and 1.37 s flat out (`perf`, bench/RESULTS.md 2026-12-07), most of it
    /// the fresh 64 MiB buffer's page faults and the two copies.
    pub fn with_local_archive(mut self, root: PathBuf) -> SegmentUploader {
        self.local_archive = Some(root);
        self
    }

    /// Uploads closed segments in order; stops at the first failure and keeps it spooled.
    pub async fn upload_closed(&self) -> Result<UploadRound, ArchiveWriteError> {
        let err = |source| ArchiveWriteError::Spool {
            path: self.spool.clone(),
            source,
        };
        let mut closed: Vec<PathBuf> = fs::read_dir(&self.spool)
            .map_err(err)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "fix"))
            .collect();
        closed.sort();
        for (done, path) in closed.iter().enumerate() {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            let spool_error = |source| ArchiveWriteError::Spool {
                path: path.clone(),
                source,
            };
            let size = fs::metadata(path).map_err(spool_error)?.len();
            let key = segment_key(&self.policy, &name);
            let stored = match &self.local_archive {
                Some(root) => {
                    let _span = tracing::info_span!("archive_link", %key, bytes = size).entered();
                    link_segment(root, &key, path)
                }
                None => Ok(false),
            };
            let stored = match stored {
                Ok(true) => Ok(()),
                Ok(false) => {
                    let bytes = fs::read(path).map_err(spool_error)?;
                    let span = tracing::info_span!("archive_upload", %key, bytes = bytes.len());
                    // Create-only: a segment that is already there (an upload whose
                    // acknowledgement was lost) is left as it is; its content is the same
                    // spooled bytes.
                    match self
                        .store
                        .put_opts(&key, PutPayload::from(bytes), PutMode::Create.into())
                        .instrument(span)
                        .await
                    {
                        Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
                        Err(error) => Err(error.to_string()),
                    }
                }
                Err(error) => Err(error.to_string()),
            };
            if let Err(error) = stored {
                tracing::warn!(%error, segment = %name, "archive upload failed; segment stays spooled");
                return Ok(UploadRound {
                    uploaded: done,
                    waiting: closed.len() - done,
                });
            }
            fs::remove_file(path).map_err(spool_error)?;
            let _ = self
                .spooled
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |spooled| {
                    Some(spooled.saturating_sub(size))
                });
        }
        Ok(UploadRound {
            uploaded: closed.len(),
            waiting: 0,
        })
    }
}

/// Gives the closed spool segment `path` the name `key` under the local archive `root`, as a
/// second name of the same file, made durable (the directory synced) before the spool's name
/// may go. Create-only, as the store's put: a segment already there is left as it is. `false`
/// when `root` is on another file system, where only a copy will do.
fn link_segment(root: &Path, key: &ObjectPath, path: &Path) -> std::io::Result<bool> {
    let target = key.parts().fold(root.to_path_buf(), |target, part| {
        target.join(part.as_ref())
    });
    let Some(directory) = target.parent() else {
        return Ok(false);
    };
    fs::create_dir_all(directory)?;
    match fs::hard_link(path, &target) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => return Ok(false),
        Err(e) => return Err(e),
    }
    File::open(directory)?.sync_all()?;
    Ok(true)
}

/// The object key of the spool file `file_name`: `{gateway}/{date}/{file_name}`.
fn segment_key(policy: &SegmentPolicy, file_name: &str) -> ObjectPath {
    ObjectPath::from(format!(
        "{}/{}/{file_name}",
        policy.gateway_id, policy.trading_date
    ))
}

fn segment_seq(path: &Path) -> Option<u64> {
    let stem = path.file_stem()?.to_str()?;
    stem.rsplit('-').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::local::LocalFileSystem;

    fn policy(max_bytes: usize) -> SegmentPolicy {
        SegmentPolicy {
            gateway_id: "gw1".into(),
            trading_date: "20261125".into(),
            max_bytes,
            max_age: Duration::from_secs(3600),
        }
    }

    /// Writes `bytes` as one closed segment of a writer archiving to the local directory
    /// `bucket`; returns the writer and the segment's spool file.
    async fn one_closed_segment(
        spool: &Path,
        bucket: &Path,
        bytes: &[u8],
    ) -> (SegmentWriter, PathBuf) {
        let store: Arc<dyn ObjectStore> =
            Arc::new(LocalFileSystem::new_with_prefix(bucket).unwrap());
        let mut writer = SegmentWriter::open(spool, store, policy(1 << 20))
            .await
            .unwrap();
        writer.append(bytes).unwrap();
        writer.sync().unwrap();
        writer.close_segment().unwrap();
        let closed = fs::read_dir(spool).unwrap().next().unwrap().unwrap().path();
        (writer, closed)
    }

    fn archived(bucket: &Path) -> PathBuf {
        bucket.join("gw1/20261125/gw1-20261125-00000000.fix")
    }

    #[tokio::test]
    async fn a_local_archive_takes_a_closed_segment_as_its_spool_file_not_a_copy() {
        use std::os::unix::fs::MetadataExt;
        let (spool, bucket) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (writer, closed) = one_closed_segment(spool.path(), bucket.path(), b"8=FIX").await;
        let inode = fs::metadata(&closed).unwrap().ino();
        let uploader = writer
            .uploader()
            .with_local_archive(bucket.path().to_owned());
        let round = uploader.upload_closed().await.unwrap();
        assert_eq!((round.uploaded, round.waiting), (1, 0));
        let archived = archived(bucket.path());
        assert_eq!(fs::read(&archived).unwrap(), b"8=FIX");
        assert_eq!(
            fs::metadata(&archived).unwrap().ino(),
            inode,
            "linked, not copied"
        );
        assert!(!closed.exists(), "the spool's name is gone");
        assert_eq!(writer.spooled_bytes().load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_segment_already_in_the_local_archive_is_left_as_it_is() {
        let (spool, bucket) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (writer, closed) = one_closed_segment(spool.path(), bucket.path(), b"again").await;
        let archived = archived(bucket.path());
        fs::create_dir_all(archived.parent().unwrap()).unwrap();
        fs::write(&archived, b"first").unwrap();
        let uploader = writer
            .uploader()
            .with_local_archive(bucket.path().to_owned());
        let round = uploader.upload_closed().await.unwrap();
        assert_eq!((round.uploaded, round.waiting), (1, 0));
        assert_eq!(
            fs::read(&archived).unwrap(),
            b"first",
            "create-only, as a put"
        );
        assert!(!closed.exists());
    }

    /// A local archive on another file system than the spool takes a copy.
    #[tokio::test]
    async fn a_local_archive_on_another_file_system_takes_a_copy() {
        use std::os::unix::fs::MetadataExt;
        let Ok(spool) = tempfile::tempdir_in("/dev/shm") else {
            eprintln!("no /dev/shm: another file system than the temporary directory's is needed");
            return;
        };
        let bucket = tempfile::tempdir().unwrap();
        let device = |path: &Path| fs::metadata(path).unwrap().dev();
        if device(spool.path()) == device(bucket.path()) {
            eprintln!("/dev/shm is on the temporary directory's file system here");
            return;
        }
        let (writer, closed) = one_closed_segment(spool.path(), bucket.path(), b"copied").await;
        let uploader = writer
            .uploader()
            .with_local_archive(bucket.path().to_owned());
        let round = uploader.upload_closed().await.unwrap();
        assert_eq!((round.uploaded, round.waiting), (1, 0));
        assert_eq!(fs::read(archived(bucket.path())).unwrap(), b"copied");
        assert!(!closed.exists());
    }

    fn spool_files(spool: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(spool)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    /// The bug this guards against: a segment rolled and was uploaded (and removed from the
    /// spool) before the broker had the dead letter of a bad message in it; the gateway was
    /// killed, and its restart, which recovers only what the spool holds, never sent it.
    #[tokio::test]
    async fn a_full_segment_leaves_the_spool_only_once_its_records_are_acknowledged() {
        let (spool, bucket) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let store: Arc<dyn ObjectStore> =
            Arc::new(LocalFileSystem::new_with_prefix(bucket.path()).unwrap());
        let mut writer = SegmentWriter::open(spool.path(), store, policy(4))
            .await
            .unwrap();
        let uploader = writer.uploader();
        let first = writer.append(b"8=FIX|").unwrap();
        writer.sync().unwrap();
        assert_eq!(writer.awaiting_delivery(), 1, "full, so sealed at its sync");
        // The read's records: one sent and not yet acknowledged, then the read is done.
        let unacknowledged = first.hold.deliveries().hold();
        drop(first);
        let second = writer.append(b"8=FIX|").unwrap();
        writer.sync().unwrap();
        drop(second);
        assert_eq!(writer.awaiting_delivery(), 2, "in order: behind the first");
        assert_eq!(uploader.upload_closed().await.unwrap().uploaded, 0);
        assert_eq!(
            spool_files(spool.path()),
            ["gw1-20261125-00000000.open", "gw1-20261125-00000001.open"]
        );
        drop(unacknowledged);
        writer.release_delivered().unwrap();
        assert_eq!(writer.awaiting_delivery(), 0);
        let round = uploader.upload_closed().await.unwrap();
        assert_eq!((round.uploaded, round.waiting), (2, 0));
        assert!(spool_files(spool.path()).is_empty());
    }

    #[tokio::test]
    async fn a_restart_recovers_a_sealed_segment_whose_records_were_not_acknowledged() {
        let (spool, bucket) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let store: Arc<dyn ObjectStore> =
            Arc::new(LocalFileSystem::new_with_prefix(bucket.path()).unwrap());
        let mut writer = SegmentWriter::open(spool.path(), store.clone(), policy(4))
            .await
            .unwrap();
        let appended = writer.append(b"8=FIX|").unwrap();
        writer.sync().unwrap();
        let _unacknowledged = appended.hold.deliveries().hold();
        drop(appended);
        writer.uploader().upload_closed().await.unwrap();
        // Killed here: the next run finds the segment for its recovery.
        let restarted = SegmentWriter::open(spool.path(), store, policy(4))
            .await
            .unwrap();
        let leftovers: Vec<_> = restarted
            .leftover_segments()
            .iter()
            .map(|(key, _)| key.as_str())
            .collect();
        assert_eq!(leftovers, ["gw1/20261125/gw1-20261125-00000000.fix"]);
    }

    #[tokio::test]
    async fn segments_roll_upload_in_order_and_numbering_survives_a_restart() {
        let spool = tempfile::tempdir().unwrap();
        let bucket = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> =
            Arc::new(LocalFileSystem::new_with_prefix(bucket.path()).unwrap());
        let mut writer = SegmentWriter::open(spool.path(), store.clone(), policy(10))
            .await
            .unwrap();
        let mut landed = Vec::new();
        for chunk in [&b"hello "[..], b"world", b"!!", b"tail"] {
            let appended = writer.append(chunk).unwrap();
            landed.push((appended.key, appended.offset));
            writer.sync().unwrap();
        }
        assert_eq!(landed[1].1, 6, "offset within the segment");
        assert_eq!(landed[0].0, landed[1].0, "same segment until it rolls");
        assert_ne!(landed[1].0, landed[2].0, "rolled after 10 bytes");
        let spooled = writer.spooled_bytes();
        assert_eq!(
            spooled.load(Ordering::Relaxed),
            17,
            "every byte appended is spooled"
        );
        assert!(
            landed[0].0.ends_with("gw1-20261125-00000000.fix"),
            "{}",
            landed[0].0
        );
        let round = writer.uploader().upload_closed().await.unwrap();
        assert_eq!(round.waiting, 0);
        assert!(round.uploaded > 0);
        // The closed segment is gone; "!!tail" waits in the open one.
        assert_eq!(spooled.load(Ordering::Relaxed), 6);
        // A crash here leaves "tail" in an open segment: the next run closes and uploads it.
        drop(writer);
        let mut restarted = SegmentWriter::open(spool.path(), store.clone(), policy(10))
            .await
            .unwrap();
        assert_eq!(
            restarted.spooled_bytes().load(Ordering::Relaxed),
            6,
            "a restart counts what the spool still holds"
        );
        restarted.append(b"after").unwrap();
        restarted.sync().unwrap();
        restarted.close_segment().unwrap();
        restarted.uploader().upload_closed().await.unwrap();
        let archive = crate::archive::Archive::from_store(store, None, "test");
        let segments = archive.segments().await.unwrap();
        let keys: Vec<_> = segments.iter().map(|s| s.key.clone()).collect();
        assert_eq!(keys.len(), 3, "{keys:?}");
        let mut all = Vec::new();
        for key in &keys {
            assert!(key.starts_with("gw1/20261125/gw1-20261125-"));
            all.extend_from_slice(&archive.read(key).await.unwrap());
        }
        assert_eq!(
            all,
            b"hello world!!tailafter".to_vec(),
            "every byte, in order, once"
        );
        assert_eq!(
            fs::read_dir(spool.path()).unwrap().count(),
            0,
            "spool drained"
        );
    }
}
