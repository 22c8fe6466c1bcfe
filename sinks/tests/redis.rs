//! The Redis sink against a real Redis (EOD_REDIS_URL, from scripts/redis.sh): the first write
//! replaces whatever Redis held, changes land as HSET/HDEL in one transaction per snapshot, and
//! subscribers get each trader's change. The outage and resynchronisation after a Redis restart
//! are tested end to end in the workspace's tests/redis.rs.

use std::time::{Duration, Instant};

use std::collections::BTreeSet;

use eod_dataflow::{Diff, Money, PositionView, Totals, ViewRecord, ViewSnapshot, ViewStore};
use eod_sinks::redis_sink::{RedisOptions, RedisSink};
use eod_sinks::SinkMetrics;

fn redis_url(db: u32) -> Option<String> {
    let Ok(url) = std::env::var("EOD_REDIS_URL") else {
        eprintln!("skipped: EOD_REDIS_URL is not set (scripts/redis.sh start)");
        return None;
    };
    Some(format!("{}/{db}", url.trim_end_matches('/')))
}

fn row(trader: &str, symbol: &str, qty: i128) -> PositionView {
    PositionView {
        trader: trader.into(),
        symbol: symbol.into(),
        net_qty: qty,
        trades: 1,
        avg_cost: Some(Money(100_000_000)),
        mark: Some(Money(110_000_000)),
        mark_source: None,
        realized_pnl: Some(Money(0)),
        unrealized_pnl: Some(Money(qty * 10_000_000)),
        total_pnl: Some(Money(qty * 10_000_000)),
    }
}

fn snapshot(time: u64, rows: &[PositionView]) -> ViewSnapshot {
    let mut snapshot = ViewSnapshot::default();
    for r in rows {
        snapshot
            .positions
            .insert((r.trader.clone(), r.symbol.clone()), r.clone());
    }
    for r in rows {
        let mine: Vec<&PositionView> = rows.iter().filter(|x| x.trader == r.trader).collect();
        snapshot.traders.insert(r.trader.clone(), Totals::sum(mine));
    }
    snapshot.firm = (!rows.is_empty()).then(|| Totals::sum(rows));
    snapshot.as_of.time = time;
    snapshot
}

fn records(snapshot: &ViewSnapshot) -> BTreeSet<ViewRecord> {
    let positions = snapshot
        .positions
        .values()
        .cloned()
        .map(ViewRecord::Position);
    let traders =
        (snapshot.traders.iter()).map(|(t, totals)| ViewRecord::Trader(t.clone(), totals.clone()));
    let firm = snapshot.firm.clone().map(ViewRecord::Firm);
    positions.chain(traders).chain(firm).collect()
}

/// Publishes `next` with the changes the dataflow would have sent to get there from the
/// store's current snapshot.
fn publish(store: &ViewStore, next: ViewSnapshot) {
    let (old, new) = (records(&store.snapshot()), records(&next));
    let changes: Vec<(ViewRecord, Diff)> = (old.difference(&new).map(|r| (r.clone(), -1)))
        .chain(new.difference(&old).map(|r| (r.clone(), 1)))
        .collect();
    store.publish(next, changes);
}

fn wait_for(mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready() {
        assert!(Instant::now() < deadline, "redis never caught up");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn snapshots_become_hset_hdel_and_publish_per_trader() {
    let Some(url) = redis_url(5) else { return };
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_connection().unwrap();
    redis::cmd("FLUSHDB").query::<()>(&mut conn).unwrap();
    // Stale state from "before": the first write must replace it, not merge with it.
    redis::cmd("HSET")
        .arg("positions:GHOST")
        .arg("X")
        .arg("{}")
        .query::<()>(&mut conn)
        .unwrap();
    let mut subscriber = client.get_connection().unwrap();
    let mut pubsub = subscriber.as_pubsub();
    pubsub.psubscribe("pnl.*").unwrap();
    pubsub
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();

    let store = ViewStore::new();
    let registry = prometheus::Registry::new();
    let sink = RedisSink::spawn(
        RedisOptions::new(&url),
        store.clone(),
        SinkMetrics::register(&registry).unwrap(),
    )
    .unwrap();
    publish(
        &store,
        snapshot(
            1,
            &[row("T1", "X", 5), row("T1", "Y", 7), row("T2", "X", 1)],
        ),
    );
    let as_of = |conn: &mut redis::Connection| -> Option<String> {
        redis::cmd("GET").arg("pnl:as_of").query(conn).unwrap()
    };
    wait_for(|| as_of(&mut conn).is_some_and(|a| a.contains("\"time\":1")));
    let ghost: i64 = redis::cmd("EXISTS")
        .arg("positions:GHOST")
        .query(&mut conn)
        .unwrap();
    assert_eq!(ghost, 0, "the first write resynchronises: stale keys go");

    // T1/Y closes out of the view, T1/X changes, T2 is untouched.
    publish(&store, snapshot(2, &[row("T1", "X", 6), row("T2", "X", 1)]));
    wait_for(|| as_of(&mut conn).is_some_and(|a| a.contains("\"time\":2")));
    let t1: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
        .arg("positions:T1")
        .query(&mut conn)
        .unwrap();
    assert_eq!(t1.len(), 1, "{t1:?}");
    let x: serde_json::Value = serde_json::from_str(&t1["X"]).unwrap();
    assert_eq!(x["net_qty"], 6);
    assert_eq!(x["total_pnl"], "0.6", "money as decimal strings");
    let firm: String = redis::cmd("GET").arg("pnl:firm").query(&mut conn).unwrap();
    assert!(firm.contains("\"positions\":2"), "{firm}");

    // Subscribers: the full state per trader after the resync, then T1's change only.
    let mut messages = Vec::new();
    while messages.len() < 3 {
        let message = pubsub.get_message().unwrap();
        let channel: String = message.get_channel_name().to_owned();
        let payload: serde_json::Value =
            serde_json::from_str(&message.get_payload::<String>().unwrap()).unwrap();
        messages.push((channel, payload));
    }
    let channels: Vec<&str> = messages.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(channels, ["pnl.T1", "pnl.T2", "pnl.T1"]);
    assert_eq!(messages[0].1["full"], true);
    assert_eq!(messages[2].1["full"], false);
    assert_eq!(messages[2].1["removed"], serde_json::json!(["Y"]));
    assert_eq!(messages[2].1["positions"][0]["symbol"], "X");
    sink.finish();
}
