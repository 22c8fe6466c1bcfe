//! `eod reference`.

use super::options::*;
use anyhow::Result;
use clap::Args;
use eod_runtime::books::ReferenceData;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args, Debug)]
pub(crate) struct ReferenceArgs {
    #[command(flatten)]
    pub(crate) kafka: TopicArgs,
    /// Traders CSV (`trader_id,name,mpid,desk,strategy`) to publish.
    #[arg(long)]
    pub(crate) trader_reference: Option<PathBuf>,
    /// Securities CSV (`symbol,cusip,isin,name,exchange,currency`) to publish.
    #[arg(long)]
    pub(crate) security_reference: Option<PathBuf>,
    /// Withdraw these traders (tombstones).
    #[arg(long, value_delimiter = ',')]
    pub(crate) withdraw_traders: Vec<String>,
    /// Withdraw these securities (tombstones).
    #[arg(long, value_delimiter = ',')]
    pub(crate) withdraw_securities: Vec<String>,
}

pub(crate) fn publish_reference(args: ReferenceArgs) -> Result<()> {
    use eod_sources::reference_data::ReferenceRecord;
    let topic = args.kafka.reference_topic.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let kafka = args.kafka.connection()?;
    runtime.block_on(eod_sources::kafka::ensure_topics_with(
        &kafka,
        &[],
        &[(&topic, 1)],
    ))?;
    let data = ReferenceData::load(
        args.trader_reference.as_deref(),
        args.security_reference.as_deref(),
    )?;
    let producer = eod_sources::kafka::RecordProducer::new(&kafka)?;
    let records = data
        .traders
        .into_iter()
        .map(ReferenceRecord::Trader)
        .chain(data.securities.into_iter().map(ReferenceRecord::Security));
    let mut published = 0;
    for record in records {
        producer.send(&topic, record.key().as_bytes(), record.value().as_bytes())?;
        published += 1;
    }
    let tombstones = args
        .withdraw_traders
        .iter()
        .map(|id| format!("trader:{id}"))
        .chain(
            args.withdraw_securities
                .iter()
                .map(|s| format!("security:{s}")),
        );
    let mut withdrawn = 0;
    for key in tombstones {
        producer.send(&topic, key.as_bytes(), b"")?;
        withdrawn += 1;
    }
    producer.flush(Duration::from_secs(30))?;
    println!("published       {published}");
    println!("withdrawn       {withdrawn}");
    Ok(())
}
