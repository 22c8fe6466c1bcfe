//! `eod simulate`: drives a gateway over TCP with the seeded simulator, paced by its simulated
//! clock (scaled by `speed`), including the 16:00 burst. Prices go to the prices topic. On a
//! plain stream what a dying gateway had not read is gone; in a FIX session
//! ([`InitiatorOptions`]) it is sent again after the next Logon.

use std::io::{BufWriter, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use eod_sources::kafka::{KafkaConnection, RecordProducer};
use eod_sources::schema_registry::WireFormat;
use eod_sources::simulator::{SimConfig, SimEvent, Simulator};
use prost::Message;

use crate::error::{io, GatewayError};
use crate::initiator_link::{InitiatorLink, InitiatorOptions, SessionSummary};

/// How long the end of a session may take to confirm (resends and reconnects included).
const FINISH_PATIENCE: Duration = Duration::from_secs(300);

pub struct SimulateOptions {
    /// `HOST:PORT`; a name is resolved at each connection attempt (containers start in any order).
    pub to: String,
    pub sim: SimConfig,
    pub messages: u64,
    /// Simulated seconds per wall-clock second; 0 sends as fast as the gateway takes them.
    pub speed: f64,
    /// Where prices go: (cluster, topic). Without it prices are not sent.
    pub prices_to: Option<(KafkaConnection, String)>,
    /// How prices are written: plain protobuf, or framed with a Schema Registry id.
    pub wire: WireFormat,
    /// Send in a FIX session (Logon, sequence numbers, resends) instead of a plain stream.
    pub session: Option<InitiatorOptions>,
}

#[derive(Debug, Default)]
pub struct SimulateSummary {
    pub fix_messages: u64,
    /// Bytes of the simulator's messages as written the first time (resends not counted).
    pub fix_bytes: u64,
    pub prices: u64,
    pub elapsed: Duration,
    /// In a FIX session: what the session did.
    pub session: Option<SessionSummary>,
}

/// Where the simulator's FIX bytes go.
enum Wire {
    Plain(BufWriter<TcpStream>),
    Session(Box<InitiatorLink>),
}

impl Wire {
    /// Sends one message; the bytes written (the session's header changes them).
    fn send(&mut self, bytes: &[u8]) -> Result<u64, GatewayError> {
        match self {
            Wire::Plain(out) => {
                out.write_all(bytes).map_err(io("sending to the gateway"))?;
                Ok(bytes.len() as u64)
            }
            Wire::Session(link) => link.send(bytes),
        }
    }

    /// Waits until `due` with what was sent on its way (a session answers the gateway meanwhile).
    fn pause_until(&mut self, due: Instant) -> Result<(), GatewayError> {
        match self {
            Wire::Plain(out) => {
                out.flush().map_err(io("sending to the gateway"))?;
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
                Ok(())
            }
            Wire::Session(link) => {
                link.flush()?;
                link.serve_until(due)
            }
        }
    }
}

fn connect(to: &str) -> Result<TcpStream, GatewayError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match TcpStream::connect(to) {
            Ok(stream) => return Ok(stream),
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(io(format!("connecting to the gateway at {to}"))(e)),
        }
    }
}

pub fn run_simulate(options: SimulateOptions) -> Result<SimulateSummary, GatewayError> {
    let mut wire = match &options.session {
        Some(session) => Wire::Session(Box::new(InitiatorLink::connect(
            &options.to,
            session.clone(),
        )?)),
        None => {
            let stream = connect(&options.to)?;
            stream
                .set_nodelay(true)
                .map_err(io("setting TCP_NODELAY"))?;
            Wire::Plain(BufWriter::with_capacity(64 * 1024, stream))
        }
    };
    let producer = options
        .prices_to
        .as_ref()
        .map(|(kafka, _)| {
            RecordProducer::new(kafka).map(|p| p.with_wire_format(options.wire.clone()))
        })
        .transpose()?;
    let started = Instant::now();
    let sim_start = options.sim.start;
    let mut summary = SimulateSummary::default();
    for message in Simulator::new(options.sim).take(options.messages as usize) {
        if options.speed > 0.0 {
            let due =
                Duration::from_secs_f64((message.time - sim_start) as f64 / 1e9 / options.speed);
            if due > started.elapsed() + Duration::from_millis(1) {
                // Let the gateway see what is due before waiting.
                wire.pause_until(started + due)?;
            }
        }
        match message.event {
            SimEvent::Fix(bytes) => {
                summary.fix_bytes += wire.send(&bytes)?;
                summary.fix_messages += 1;
            }
            SimEvent::Price(price) => {
                if let (Some(producer), Some((_, topic))) = (&producer, &options.prices_to) {
                    let update = eod_sources::prices::price_to_proto(&price);
                    producer.send(topic, update.symbol.as_bytes(), &update.encode_to_vec())?;
                    summary.prices += 1;
                }
            }
        }
    }
    match wire {
        Wire::Plain(mut out) => {
            out.flush().map_err(io("sending to the gateway"))?;
            let stream = out
                .into_inner()
                .map_err(|e| io("sending to the gateway")(e.into_error()))?;
            stream
                .shutdown(Shutdown::Write)
                .map_err(io("closing the connection"))?;
            // Wait for the gateway to finish reading: it closes its side once done.
            let mut sink = [0u8; 64];
            let _ = std::io::Read::read(&mut &stream, &mut sink);
        }
        Wire::Session(mut link) => {
            link.flush()?;
            summary.session = Some(link.finish(FINISH_PATIENCE)?);
        }
    }
    if let Some(producer) = &producer {
        producer.flush(Duration::from_secs(60))?;
    }
    summary.elapsed = started.elapsed();
    Ok(summary)
}
