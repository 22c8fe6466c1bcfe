//! `eod simulate`.

use super::options::*;
use anyhow::Result;
use clap::Args;

#[derive(Args, Debug)]
pub(crate) struct SimulateArgs {
    /// The gateway's address, `HOST:PORT` (`eod ingest --listen`).
    #[arg(long)]
    pub(crate) to: String,
    /// Simulator events to send (FIX messages and prices).
    #[arg(long, default_value_t = 100_000)]
    pub(crate) messages: u64,
    /// Messages per simulated second outside the burst.
    #[arg(long, default_value_t = 1_000.0)]
    pub(crate) rate: f64,
    /// Rate multiplier during the 16:00 burst.
    #[arg(long, default_value_t = 10.0)]
    pub(crate) burst_multiplier: f64,
    /// Simulated seconds per wall second; 0 sends as fast as the gateway takes them.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) speed: f64,
    #[command(flatten)]
    pub(crate) market: MarketArgs,
    /// Fraction of deliberately broken messages (bad checksums, missing fields, ...).
    #[arg(long, default_value_t = 0.0)]
    pub(crate) broken_ratio: f64,
    /// Send prices to this Kafka cluster's prices topic.
    #[arg(long, env = "EOD_KAFKA_BROKERS")]
    pub(crate) brokers: Option<String>,
    #[command(flatten)]
    pub(crate) kafka_security: KafkaSecurityArgs,
    #[command(flatten)]
    pub(crate) telemetry: TelemetryArgs,
    /// The prices topic of --brokers.
    #[arg(long, env = "EOD_PRICES_TOPIC", default_value = "prices")]
    pub(crate) prices_topic: String,
    /// Register the schema with this Schema Registry and frame prices in the Confluent wire
    /// format (as `eod ingest --schema-registry`).
    #[arg(long, env = "EOD_SCHEMA_REGISTRY_URL")]
    pub(crate) schema_registry: Option<String>,
    /// Send in a FIX 4.4 session as this SenderCompID (the gateway runs --fix-session with it
    /// as a --counterparty): Logon, sequence numbers, and what a gateway that went away did not
    /// keep sent again after the next Logon. Without it the stream is plain FIX bytes.
    #[arg(long, value_name = "SENDERCOMPID")]
    pub(crate) fix_session: Option<String>,
    /// The gateway's CompID (our TargetCompID) in a FIX session.
    #[arg(long, default_value = "EOD")]
    pub(crate) target_comp_id: String,
    /// Heartbeat interval of the FIX session, seconds.
    #[arg(long, default_value_t = 30)]
    pub(crate) heartbeat_s: u64,
    /// Seconds to keep trying to log on again to a gateway that went away.
    #[arg(long, default_value_t = 60)]
    pub(crate) reconnect_for_s: u64,
}

pub(crate) fn simulate(args: SimulateArgs) -> Result<()> {
    let mut sim = args.market.sim_config();
    sim.base_rate = args.rate.max(1.0);
    sim.burst_multiplier = args.burst_multiplier.max(1.0);
    sim.broken_ratio = args.broken_ratio.clamp(0.0, 1.0);
    let session = args.fix_session.map(|comp_id| {
        // A session has one BeginString: its fills are all FIX 4.4.
        sim.fix42_ratio = 0.0;
        eod_gateway::InitiatorOptions {
            settings: eod_fix::initiator::InitiatorSettings {
                begin_string: "FIX.4.4".into(),
                comp_id,
                counterparty: args.target_comp_id.clone(),
                heartbeat: std::time::Duration::from_secs(args.heartbeat_s.max(1)),
            },
            reconnect_for: std::time::Duration::from_secs(args.reconnect_for_s),
        }
    });
    let priced = vec![(
        args.prices_topic.clone(),
        eod_sources::schema_registry::TopicMessage::PriceUpdate,
    )];
    let wire = match (&args.schema_registry, &args.brokers) {
        (Some(url), Some(_)) => eod_sources::schema_registry::WireFormat::register_on(url, priced)?,
        _ => eod_sources::schema_registry::WireFormat::plain_on(priced),
    };
    let summary = eod_gateway::simulate::run_simulate(eod_gateway::simulate::SimulateOptions {
        to: args.to,
        sim,
        messages: args.messages,
        speed: args.speed.max(0.0),
        prices_to: args
            .brokers
            .map(|b| args.kafka_security.connection(&b))
            .transpose()?
            .map(|kafka| (kafka, args.prices_topic)),
        wire,
        session,
    })?;
    println!("fix messages    {}", summary.fix_messages);
    println!("fix bytes       {}", summary.fix_bytes);
    println!("prices          {}", summary.prices);
    if let Some(session) = &summary.session {
        println!("last seq        {}", session.last_sequence);
        println!("resent          {}", session.resent);
        println!("reconnects      {}", session.reconnects);
        println!("rejects         {}", session.rejects);
    }
    println!("elapsed         {:.3} s", summary.elapsed.as_secs_f64());
    Ok(())
}
