//! A listening gateway: connections in, segments out to the archive store.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eod_sources::archive_writer::{SegmentPolicy, SegmentUploader, SegmentWriter};

use crate::error::{io, GatewayError};
use crate::gateway::{Gateway, IngestSummary};
use crate::session_link::SessionConfig;

/// Where a listening gateway archives, and when it stops.
pub struct ListenOptions {
    pub listen: SocketAddr,
    pub spool: PathBuf,
    /// Directory the closed segments are uploaded to (object_store; S3 with the sinks issue).
    pub archive_to: String,
    pub policy: SegmentPolicy,
    /// Stop after serving this many connections (replays and tests); `None`: until stopped.
    pub connections: Option<usize>,
}

/// Accepts plain framed FIX streams over TCP until stopped (or the connection limit). Each
/// connection is read by its own thread; when Kafka or the archive is slow, that thread stops
/// reading and TCP pushes back on the sender: nothing is buffered without bound or dropped.
pub fn serve_tcp(
    gateway: Arc<Gateway>,
    listener: std::net::TcpListener,
    uploader: SegmentUploader,
    connections: Option<usize>,
    session: Option<SessionConfig>,
    stop: Arc<AtomicBool>,
) -> Result<IngestSummary, GatewayError> {
    let started = Instant::now();
    listener
        .set_nonblocking(true)
        .map_err(io("setting the listener non-blocking"))?;
    let totals = Arc::new(Mutex::new(IngestSummary::default()));
    let mut handles = Vec::new();
    let upload_stop = Arc::new(AtomicBool::new(false));
    let uploads = {
        let (gateway, stop) = (gateway.clone(), upload_stop.clone());
        // Named, as every thread of the gateway, so that `top -H`, `perf` and the Kafka bench's
        // CPU by thread can tell them apart.
        std::thread::Builder::new()
            .name("archive-upload".into())
            .spawn(move || -> Result<(), GatewayError> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(io("starting an I/O runtime"))?;
                loop {
                    let last = stop.load(Ordering::Acquire);
                    gateway.roll_if_old()?;
                    let round = runtime.block_on(uploader.upload_closed())?;
                    let metrics = gateway.metrics();
                    metrics
                        .archive_segments_uploaded
                        .inc_by(round.uploaded as u64);
                    metrics.archive_spool_segments.set(round.waiting as i64);
                    let waiting = round.waiting;
                    if last && waiting == 0 {
                        return Ok(());
                    }
                    std::thread::sleep(Duration::from_millis(if last { 1000 } else { 200 }));
                }
            })
            .map_err(io("starting the archive upload thread"))?
    };
    let mut accepted = 0usize;
    while !stop.load(Ordering::Acquire) && connections.is_none_or(|limit| accepted < limit) {
        match listener.accept() {
            Ok((stream, peer)) => {
                accepted += 1;
                stream
                    .set_nonblocking(false)
                    .map_err(io("setting a connection blocking"))?;
                let (gateway, totals, session) = (gateway.clone(), totals.clone(), session.clone());
                let connection = std::thread::Builder::new().name(format!("fix-conn-{accepted}"));
                handles.push(
                    connection
                        .spawn(move || {
                            let source = format!("tcp:{peer}");
                            let _span = tracing::info_span!("ingest_connection", %peer).entered();
                            let result = match &session {
                                Some(session) => gateway.ingest_session(&source, stream, session),
                                None => gateway.ingest_stream(&source, stream),
                            };
                            match result {
                                Ok(summary) => {
                                    if let Ok(mut totals) = totals.lock() {
                                        totals.add(&summary);
                                    }
                                    Ok(())
                                }
                                Err(error) => {
                                    tracing::error!(%peer, %error, "connection failed");
                                    Err(error)
                                }
                            }
                        })
                        .map_err(io("starting a connection thread"))?,
                );
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => return Err(io("accepting a connection")(e)),
        }
    }
    for handle in handles {
        handle
            .join()
            .map_err(|_| GatewayError::Broken("a connection thread panicked"))??;
    }
    let delivered = gateway.finish()?;
    upload_stop.store(true, Ordering::Release);
    uploads
        .join()
        .map_err(|_| GatewayError::Broken("the archive uploader panicked"))??;
    let mut summary = std::mem::take(
        &mut *totals
            .lock()
            .map_err(|_| GatewayError::Broken("totals lock poisoned"))?,
    );
    summary.delivered = delivered;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// Opens the spool and the archive store for a listening gateway.
pub fn open_archive(
    options: &ListenOptions,
) -> Result<(SegmentWriter, SegmentUploader), GatewayError> {
    let location = &options.archive_to;
    let local_archive = eod_sources::archive::local_directory(location);
    if let Some(path) = local_archive {
        std::fs::create_dir_all(path).map_err(io(format!("creating {path}")))?;
    }
    let store = eod_sources::archive::open_store(location)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io("starting an I/O runtime"))?;
    let writer = runtime.block_on(SegmentWriter::open(
        &options.spool,
        store,
        options.policy.clone(),
    ))?;
    let mut uploader = writer.uploader();
    if let Some(path) = local_archive {
        uploader = uploader.with_local_archive(path.into());
    }
    Ok((writer, uploader))
}
