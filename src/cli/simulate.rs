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
}

pub(crate) fn simulate(args: SimulateArgs) -> Result<()> {
    let mut sim = args.market.sim_config();
    sim.base_rate = args.rate.max(1.0);
    sim.burst_multiplier = args.burst_multiplier.max(1.0);
    sim.broken_ratio = args.broken_ratio.clamp(0.0, 1.0);
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
    })?;
    println!("fix messages    {}", summary.fix_messages);
    println!("fix bytes       {}", summary.fix_bytes);
    println!("prices          {}", summary.prices);
    println!("elapsed         {:.3} s", summary.elapsed.as_secs_f64());
    Ok(())
}
