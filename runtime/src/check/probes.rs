//! The health scenario: every dependency answers and every eod process says it is ready.

use std::time::Duration;

use serde_json::{json, Map, Value};

use eod_sources::archive::Archive;
use eod_sources::kafka::partition_count;

use super::{block_on, CheckOptions, Scenario, Verdict};

const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Each dependency's answer: `Ok` or why not.
fn probe_all(options: &CheckOptions) -> Vec<(String, Result<(), String>)> {
    let mut probes = Vec::new();
    let gateway = std::net::ToSocketAddrs::to_socket_addrs(&options.gateway.as_str())
        .map_err(|e| e.to_string())
        .and_then(|mut addrs| addrs.next().ok_or_else(|| "no address".to_owned()))
        .and_then(|addr| {
            std::net::TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)
                .map(drop)
                .map_err(|e| e.to_string())
        });
    probes.push((format!("gateway {}", options.gateway), gateway));
    for topic in [&options.topics.trades, &options.topics.dead_letters] {
        let kafka = partition_count(&options.kafka, topic, PROBE_TIMEOUT)
            .map(drop)
            .map_err(|e| e.to_string());
        probes.push((format!("kafka topic {topic}"), kafka));
    }
    if let Some(url) = &options.redis {
        let redis = redis::Client::open(url.as_str())
            .and_then(|client| client.get_connection_with_timeout(PROBE_TIMEOUT))
            .and_then(|mut connection| redis::cmd("PING").query::<String>(&mut connection))
            .map(drop)
            .map_err(|e| e.to_string());
        probes.push(("redis".to_owned(), redis));
    }
    if let Some(books) = &options.books {
        let store = books
            .exec_ids_starting_with("CHK-health-")
            .map(drop)
            .map_err(|e| format!("{e:#}"));
        probes.push((format!("books {books}"), store));
    }
    if let Some(location) = &options.archive {
        let archive = Archive::open(location)
            .map_err(|e| e.to_string())
            .and_then(|archive| {
                block_on(async {
                    tokio::time::timeout(PROBE_TIMEOUT, archive.segments())
                        .await
                        .map_err(|_| format!("no answer within {PROBE_TIMEOUT:?}"))?
                        .map(drop)
                        .map_err(|e| e.to_string())
                })
                .map_err(|e| e.to_string())?
            });
        probes.push((format!("archive {location}"), archive));
    }
    let http = reqwest::blocking::Client::builder()
        .timeout(PROBE_TIMEOUT)
        .build();
    for addr in &options.views {
        let ready = match &http {
            Ok(http) => view_ready(http, addr),
            Err(e) => Err(e.to_string()),
        };
        probes.push((format!("eod {addr}"), ready));
    }
    probes
}

/// `/health/ready` of one eod process: 200, or the dependencies it names as not ready.
fn view_ready(http: &reqwest::blocking::Client, addr: &str) -> Result<(), String> {
    let response = http
        .get(format!("http://{addr}/health/ready"))
        .send()
        .map_err(|e| e.to_string())?;
    if response.status().is_success() {
        return Ok(());
    }
    let status = response.status();
    let body: Value = response.json().unwrap_or(Value::Null);
    let not_ready: Vec<&str> = body["dependencies"]
        .as_object()
        .map(|deps| {
            deps.iter()
                .filter(|(_, state)| state.as_str() != Some("ready"))
                .map(|(name, _)| name.as_str())
                .collect()
        })
        .unwrap_or_default();
    Err(if not_ready.is_empty() {
        format!(
            "{status}: {}",
            body["status"].as_str().unwrap_or("not ready")
        )
    } else {
        format!("{status}: not ready: {}", not_ready.join(", "))
    })
}

pub(super) fn health(options: &CheckOptions) -> Verdict {
    let probes = probe_all(options);
    let failures: Vec<String> = probes
        .iter()
        .filter_map(|(name, outcome)| outcome.as_ref().err().map(|e| format!("{name}: {e}")))
        .collect();
    let measurements: Map<String, Value> = probes
        .iter()
        .map(|(name, outcome)| {
            let state = match outcome {
                Ok(()) => json!("ready"),
                Err(e) => json!(e),
            };
            (name.clone(), state)
        })
        .collect();
    Verdict {
        scenario: Scenario::Health,
        passed: failures.is_empty(),
        summary: if failures.is_empty() {
            format!("all {} dependencies and processes ready", probes.len())
        } else {
            failures.join("; ")
        },
        measurements: Value::Object(measurements),
    }
}
