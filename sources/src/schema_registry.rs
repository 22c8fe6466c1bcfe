//! The Confluent wire format on the protobuf topics, with the schema kept in a Schema Registry.
//!
//! The contract:
//! - **Off by default.** Without a registry URL, records are plain protobuf, as they always were.
//! - **At startup**, every process that writes `trades.raw`, `trades.dlq` or `prices` registers
//!   `proto/trade_envelope.proto` under the topic's value subject (`<topic>-value`, Confluent's
//!   topic-name strategy) and keeps the id the registry returns: one request per subject per
//!   process, never one per record. A subject whose compatibility level is `NONE` is set to
//!   `BACKWARD` first (a stricter level an operator chose stands), and a schema the registry
//!   finds incompatible with the subject's latest version stops the process before it writes
//!   anything, naming the subject.
//! - **Writing**, each record is `0x00`, the schema id (4 bytes, big-endian), the message
//!   indexes (Confluent's zig-zag varints; `[0]` as one zero byte) and the protobuf bytes.
//! - **Reading**, a record that starts with `0x00` is framed (a protobuf message never starts
//!   with a zero byte: field number 0 does not exist); any other record is plain protobuf, so
//!   topics written before the registry was turned on stay readable. A framed record's message
//!   index must name the topic's message type, and, with a registry configured, its schema id
//!   must be one the registry holds whose message at that index is that type: ids are looked up
//!   once and cached. A record that fails either check is refused (a dead letter, reason
//!   `deserialization`); a registry that cannot be reached is an error, not a refusal, so no
//!   good record is dead-lettered for an outage.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eod_fix::Reject;
use eod_proto::DeadLetterReason;
use serde::Deserialize;

use crate::kafka::Topics;

/// The schema every framed topic carries: one file, registered whole under each subject.
pub const SCHEMA: &str = eod_proto::SCHEMA;

/// The first byte of a framed record.
const MAGIC: u8 = 0;

/// How long one registry request may take: startup is the only place a request blocks a
/// writer, and a reader asks only for an id it has not seen.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum SchemaRegistryError {
    #[error("schema registry {url}: {source}")]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("schema registry {url}: {status} for {what}: {body}")]
    Refused {
        url: String,
        what: String,
        status: u16,
        body: String,
    },
    #[error(
        "schema registry: eod's schema is incompatible with the latest version of subject \
         {subject} (compatibility {level}); refusing to start. {detail}"
    )]
    Incompatible {
        subject: String,
        level: String,
        detail: String,
    },
    #[error("schema registry: the schema has no message {0}")]
    NoSuchMessage(&'static str),
}

/// Why a read record could not be taken as the topic's message.
#[derive(Debug)]
pub enum UnframeError {
    /// The record itself is at fault: it goes to the dead-letter topic.
    Rejected(Reject),
    /// The registry could not answer: the record may be good, so the reader stops instead.
    Registry(SchemaRegistryError),
}

impl From<Reject> for UnframeError {
    fn from(reject: Reject) -> Self {
        UnframeError::Rejected(reject)
    }
}

/// The top-level message names of a `.proto` file, in declaration order: a Confluent message
/// index is a position in this list. Comments and string literals are skipped, and anything
/// nested inside braces is not top level.
pub fn top_level_messages(schema: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut depth = 0usize;
    let mut words: Vec<String> = Vec::new();
    let mut chars = schema.chars().peekable();
    let mut word = String::new();
    let flush = |word: &mut String, words: &mut Vec<String>| {
        if !word.is_empty() {
            words.push(std::mem::take(word));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                flush(&mut word, &mut words);
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                flush(&mut word, &mut words);
                chars.next();
                let mut last = ' ';
                for c in chars.by_ref() {
                    if last == '*' && c == '/' {
                        break;
                    }
                    last = c;
                }
            }
            '"' | '\'' => {
                flush(&mut word, &mut words);
                let mut escaped = false;
                for s in chars.by_ref() {
                    if !escaped && s == c {
                        break;
                    }
                    escaped = !escaped && s == '\\';
                }
            }
            '{' => {
                flush(&mut word, &mut words);
                if depth == 0 && words.len() >= 2 && words[words.len() - 2] == "message" {
                    names.push(words[words.len() - 1].clone());
                }
                words.clear();
                depth += 1;
            }
            '}' => {
                flush(&mut word, &mut words);
                words.clear();
                depth = depth.saturating_sub(1);
            }
            ';' => {
                flush(&mut word, &mut words);
                words.clear();
            }
            c if c.is_alphanumeric() || c == '_' || c == '.' => word.push(c),
            _ => flush(&mut word, &mut words),
        }
    }
    names
}

/// Confluent's message indexes for a top-level message: its position, zig-zag varint encoded
/// after their count, with the common first message as a single zero byte.
fn encode_message_index(index: usize) -> Vec<u8> {
    if index == 0 {
        return vec![0];
    }
    let mut out = Vec::with_capacity(4);
    write_zigzag(&mut out, 1);
    write_zigzag(&mut out, index as i64);
    out
}

fn write_zigzag(out: &mut Vec<u8>, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn read_zigzag(bytes: &[u8], at: &mut usize) -> Option<i64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    None
}

/// A framed record's header, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub schema_id: u32,
    /// The path of message indexes: one entry for a top-level message.
    pub message_indexes: Vec<i64>,
}

/// Splits a record into its header (when framed) and its protobuf bytes.
pub fn split(payload: &[u8]) -> Result<(Option<Header>, &[u8]), Reject> {
    if payload.first() != Some(&MAGIC) {
        return Ok((None, payload));
    }
    let refuse = |what: &str| {
        Reject::new(
            DeadLetterReason::Deserialization,
            format!("Confluent wire format: {what}"),
        )
    };
    let id_bytes: [u8; 4] = payload
        .get(1..5)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| refuse("record shorter than its 5-byte header"))?;
    let schema_id = u32::from_be_bytes(id_bytes);
    let mut at = 5;
    let count = read_zigzag(payload, &mut at).ok_or_else(|| refuse("truncated message index"))?;
    let message_indexes = if count == 0 {
        vec![0]
    } else {
        if !(1..=16).contains(&count) {
            return Err(refuse(&format!("{count} message indexes")));
        }
        (0..count)
            .map(|_| read_zigzag(payload, &mut at))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| refuse("truncated message index"))?
    };
    Ok((
        Some(Header {
            schema_id,
            message_indexes,
        }),
        &payload[at..],
    ))
}

/// `payload` framed for schema `schema_id`, message `index`.
pub fn frame(schema_id: u32, index: usize, payload: &[u8]) -> Vec<u8> {
    let indexes = encode_message_index(index);
    let mut out = Vec::with_capacity(5 + indexes.len() + payload.len());
    out.push(MAGIC);
    out.extend_from_slice(&schema_id.to_be_bytes());
    out.extend_from_slice(&indexes);
    out.extend_from_slice(payload);
    out
}

/// A Confluent-compatible Schema Registry's REST API (Confluent, Apicurio's `ccompat/v6`,
/// Karapace): the four requests eod needs.
#[derive(Clone)]
pub struct RegistryClient {
    url: String,
    http: reqwest::blocking::Client,
}

#[derive(Deserialize)]
struct Id {
    id: u32,
}

#[derive(Deserialize)]
struct SchemaText {
    schema: String,
    #[serde(rename = "schemaType", default)]
    schema_type: Option<String>,
}

#[derive(Deserialize)]
struct Compatibility {
    #[serde(rename = "compatibilityLevel", alias = "compatibility")]
    level: String,
}

#[derive(Deserialize)]
struct Verdict {
    is_compatible: bool,
    #[serde(default)]
    messages: Vec<String>,
}

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

impl RegistryClient {
    pub fn new(url: &str) -> Result<RegistryClient, SchemaRegistryError> {
        let url = url.trim_end_matches('/').to_owned();
        let http = reqwest::blocking::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|source| SchemaRegistryError::Request {
                url: url.clone(),
                source,
            })?;
        Ok(RegistryClient { url, http })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends one request; `Ok(None)` for a 404 (no such subject or id).
    fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<Option<T>, SchemaRegistryError> {
        let failed = |source| SchemaRegistryError::Request {
            url: self.url.clone(),
            source,
        };
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.url))
            .header(reqwest::header::ACCEPT, CONTENT_TYPE);
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
                .body(body.to_string());
        }
        let response = request.send().map_err(failed)?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(SchemaRegistryError::Refused {
                url: self.url.clone(),
                what: format!("{method} {path}"),
                status: status.as_u16(),
                body: response.text().unwrap_or_default(),
            });
        }
        response.json().map(Some).map_err(failed)
    }

    fn protobuf(schema: &str) -> serde_json::Value {
        serde_json::json!({ "schemaType": "PROTOBUF", "schema": schema })
    }

    /// Registers `schema` under `subject` (or finds it already there) and returns its id,
    /// refusing a schema incompatible with the subject's latest version.
    pub fn register(&self, subject: &str, schema: &str) -> Result<u32, SchemaRegistryError> {
        let _span = tracing::info_span!("schema_register", subject).entered();
        let latest: Option<serde_json::Value> = self.call(
            reqwest::Method::GET,
            &format!("/subjects/{subject}/versions/latest"),
            None,
        )?;
        if latest.is_some() {
            let level = self.ensure_checked(subject)?;
            let verdict: Option<Verdict> = self
                .call(
                    reqwest::Method::POST,
                    &format!("/compatibility/subjects/{subject}/versions/latest"),
                    Some(Self::protobuf(schema)),
                )
                .map_err(|e| match e {
                    // Some registries answer a failed check with an error status, not a verdict.
                    SchemaRegistryError::Refused { body, .. } => {
                        SchemaRegistryError::Incompatible {
                            subject: subject.to_owned(),
                            level: level.clone(),
                            detail: body,
                        }
                    }
                    other => other,
                })?;
            if let Some(verdict) = verdict.filter(|v| !v.is_compatible) {
                return Err(SchemaRegistryError::Incompatible {
                    subject: subject.to_owned(),
                    level,
                    detail: verdict.messages.join("; "),
                });
            }
        }
        let registered: Id = self
            .call(
                reqwest::Method::POST,
                &format!("/subjects/{subject}/versions"),
                Some(Self::protobuf(schema)),
            )
            .map_err(|e| match e {
                SchemaRegistryError::Refused {
                    status: 409, body, ..
                } => SchemaRegistryError::Incompatible {
                    subject: subject.to_owned(),
                    level: "set on the registry".into(),
                    detail: body,
                },
                other => other,
            })?
            .ok_or_else(|| SchemaRegistryError::Refused {
                url: self.url.clone(),
                what: format!("POST /subjects/{subject}/versions"),
                status: 404,
                body: String::new(),
            })?;
        if latest.is_none() {
            self.ensure_checked(subject)?;
        }
        tracing::info!(subject, id = registered.id, "schema registered");
        Ok(registered.id)
    }

    /// The subject's effective compatibility level, set to `BACKWARD` when it was `NONE`: a
    /// registry that checks nothing could not refuse an incompatible change.
    fn ensure_checked(&self, subject: &str) -> Result<String, SchemaRegistryError> {
        let level: Option<Compatibility> = self.call(
            reqwest::Method::GET,
            &format!("/config/{subject}?defaultToGlobal=true"),
            None,
        )?;
        match level {
            Some(level) if level.level != "NONE" => Ok(level.level),
            _ => {
                let _: Option<serde_json::Value> = self.call(
                    reqwest::Method::PUT,
                    &format!("/config/{subject}"),
                    Some(serde_json::json!({ "compatibility": "BACKWARD" })),
                )?;
                tracing::info!(subject, "compatibility was NONE; set to BACKWARD");
                Ok("BACKWARD".into())
            }
        }
    }

    /// The top-level message names of the protobuf schema with this id; `None` when the
    /// registry holds no such id or it is not a protobuf schema.
    pub fn messages_of(&self, id: u32) -> Result<Option<Vec<String>>, SchemaRegistryError> {
        let text: Option<SchemaText> =
            self.call(reqwest::Method::GET, &format!("/schemas/ids/{id}"), None)?;
        Ok(text
            .filter(|t| t.schema_type.as_deref().unwrap_or("AVRO") == "PROTOBUF")
            .map(|t| top_level_messages(&t.schema)))
    }
}

/// [`SCHEMA`]'s top-level messages, parsed once: a reader without a registry checks every
/// framed record's index against them.
static SCHEMA_MESSAGES: std::sync::LazyLock<Vec<String>> =
    std::sync::LazyLock::new(|| top_level_messages(SCHEMA));

/// The message type each framed topic carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicMessage {
    TradeEnvelope,
    DeadLetter,
    PriceUpdate,
}

impl TopicMessage {
    pub fn name(self) -> &'static str {
        match self {
            TopicMessage::TradeEnvelope => "TradeEnvelope",
            TopicMessage::DeadLetter => "DeadLetter",
            TopicMessage::PriceUpdate => "PriceUpdate",
        }
    }

    fn index(self) -> Result<usize, SchemaRegistryError> {
        SCHEMA_MESSAGES
            .iter()
            .position(|m| m == self.name())
            .ok_or(SchemaRegistryError::NoSuchMessage(self.name()))
    }
}

/// One framed topic: the message index and schema id of the records eod writes to it.
struct FramedTopic {
    topic: String,
    index: usize,
    schema_id: u32,
}

struct Registered {
    registry: RegistryClient,
    /// Lookups by outcome, once [`WireFormat::observed`] gives it a place.
    lookups: Option<prometheus::IntCounterVec>,
    topics: Vec<FramedTopic>,
    /// Writer schemas seen on read, by id: their top-level message names, or `None` for an
    /// id the registry does not hold as protobuf.
    seen: Mutex<HashMap<u32, Option<Arc<[String]>>>>,
}

/// How records on the protobuf topics are written and read: plain protobuf, or framed with
/// ids from a Schema Registry. Cloning shares the registered ids and the cache.
#[derive(Clone, Default)]
pub struct WireFormat {
    registered: Option<Arc<Registered>>,
    /// The topics' message types, known with or without a registry (for reading framed
    /// records written by another process).
    messages: Arc<Vec<(String, TopicMessage)>>,
}

impl std::fmt::Debug for WireFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.registered {
            None => f.write_str("WireFormat::Plain"),
            Some(r) => f
                .debug_struct("WireFormat::Registry")
                .field("url", &r.registry.url)
                .field(
                    "ids",
                    &r.topics
                        .iter()
                        .map(|t| (t.topic.as_str(), t.schema_id))
                        .collect::<Vec<_>>(),
                )
                .finish(),
        }
    }
}

/// The protobuf topics of a deployment and what each carries.
pub fn protobuf_topics(topics: &Topics) -> Vec<(String, TopicMessage)> {
    vec![
        (topics.trades.clone(), TopicMessage::TradeEnvelope),
        (topics.dead_letters.clone(), TopicMessage::DeadLetter),
        (topics.prices.clone(), TopicMessage::PriceUpdate),
    ]
}

impl WireFormat {
    /// Plain protobuf records; framed ones are still read (their ids unchecked).
    pub fn plain(topics: &Topics) -> WireFormat {
        WireFormat::plain_on(protobuf_topics(topics))
    }

    /// [`WireFormat::plain`] for some topics only.
    pub fn plain_on(messages: Vec<(String, TopicMessage)>) -> WireFormat {
        WireFormat {
            registered: None,
            messages: Arc::new(messages),
        }
    }

    /// Registers the schema for the three protobuf topics (see the module's contract) and frames
    /// every record written to them.
    pub fn register(url: &str, topics: &Topics) -> Result<WireFormat, SchemaRegistryError> {
        WireFormat::register_on(url, protobuf_topics(topics))
    }

    /// [`WireFormat::register`] for the topics a process writes (the simulator: prices only).
    pub fn register_on(
        url: &str,
        messages: Vec<(String, TopicMessage)>,
    ) -> Result<WireFormat, SchemaRegistryError> {
        let registry = RegistryClient::new(url)?;
        let mut framed = Vec::new();
        for (topic, message) in &messages {
            let schema_id = registry.register(&format!("{topic}-value"), SCHEMA)?;
            framed.push(FramedTopic {
                topic: topic.clone(),
                index: message.index()?,
                schema_id,
            });
        }
        Ok(WireFormat {
            registered: Some(Arc::new(Registered {
                registry,
                lookups: None,
                topics: framed,
                seen: Mutex::new(HashMap::new()),
            })),
            messages: Arc::new(messages),
        })
    }

    /// Exports the registered ids (`eod_schema_registry_id`) and counts the lookups
    /// (`eod_schema_registry_lookups_total`). Call before cloning: clones made earlier keep
    /// counting nowhere.
    pub fn observed(mut self, metrics: &crate::metrics::SourceMetrics) -> WireFormat {
        if let Some(registered) = self.registered.as_mut().and_then(Arc::get_mut) {
            for t in &registered.topics {
                metrics
                    .schema_ids
                    .with_label_values(&[t.topic.as_str()])
                    .set(i64::from(t.schema_id));
            }
            registered.lookups = Some(metrics.schema_lookups.clone());
        }
        self
    }

    /// The bytes to write for `payload` on `topic`.
    pub fn frame<'a>(&self, topic: &str, payload: &'a [u8]) -> Cow<'a, [u8]> {
        let Some(registered) = &self.registered else {
            return Cow::Borrowed(payload);
        };
        match registered.topics.iter().find(|t| t.topic == topic) {
            Some(t) => Cow::Owned(frame(t.schema_id, t.index, payload)),
            None => Cow::Borrowed(payload),
        }
    }

    /// The protobuf bytes of a record read from `topic` (see the module's contract).
    pub fn unframe<'a>(&self, topic: &str, payload: &'a [u8]) -> Result<&'a [u8], UnframeError> {
        // Plain records (every record while no writer frames) leave before the topic lookup.
        if payload.first() != Some(&MAGIC) {
            return Ok(payload);
        }
        let Some(message) = self
            .messages
            .iter()
            .find(|(t, _)| t == topic)
            .map(|(_, m)| *m)
        else {
            return Ok(payload);
        };
        let (header, body) = split(payload)?;
        let Some(header) = header else {
            return Ok(body);
        };
        let refuse = |detail: String| {
            UnframeError::Rejected(Reject::new(DeadLetterReason::Deserialization, detail))
        };
        let [index] = header.message_indexes[..] else {
            return Err(refuse(format!(
                "message indexes {:?} name a nested message, not {}",
                header.message_indexes,
                message.name()
            )));
        };
        let Some(registered) = &self.registered else {
            let ours = message.index().map_err(UnframeError::Registry)?;
            if index != ours as i64 {
                return Err(refuse(format!(
                    "message index {index} is not {} (index {ours})",
                    message.name()
                )));
            }
            return Ok(body);
        };
        if registered
            .topics
            .iter()
            .any(|t| t.topic == topic && t.schema_id == header.schema_id && t.index as i64 == index)
        {
            return Ok(body);
        }
        let names = registered.messages_of(header.schema_id)?;
        let Some(names) = names else {
            return Err(refuse(format!(
                "schema id {} is not a protobuf schema in the registry",
                header.schema_id
            )));
        };
        match usize::try_from(index).ok().and_then(|i| names.get(i)) {
            Some(name) if name == message.name() => Ok(body),
            found => Err(refuse(format!(
                "schema id {} message index {index} is {}, not {}",
                header.schema_id,
                found.map_or("absent", |n| n.as_str()),
                message.name()
            ))),
        }
    }
}

impl Registered {
    fn messages_of(&self, id: u32) -> Result<Option<Arc<[String]>>, UnframeError> {
        if let Some(known) = self.seen.lock().ok().and_then(|s| s.get(&id).cloned()) {
            return Ok(known);
        }
        let looked_up = self
            .registry
            .messages_of(id)
            .map_err(UnframeError::Registry)?
            .map(Arc::from);
        tracing::info!(id, known = looked_up.is_some(), "schema id looked up");
        if let Some(lookups) = &self.lookups {
            let outcome = if looked_up.is_some() {
                "protobuf"
            } else {
                "unknown"
            };
            lookups.with_label_values(&[outcome]).inc();
        }
        if let Ok(mut seen) = self.seen.lock() {
            seen.insert(id, looked_up.clone());
        }
        Ok(looked_up)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_positions_follow_the_proto_file() {
        assert_eq!(
            top_level_messages(SCHEMA),
            [
                "TradeEnvelope",
                "ArchiveRef",
                "PriceUpdate",
                "PnlUpdate",
                "DeadLetter"
            ]
        );
        let tricky =
            "// message Commented {\n/* message Hidden { */\nmessage A { message Inner { } \
                      string s = 1 [default = \"message B {\"]; }\nenum E { X = 0; }\nmessage C {}";
        assert_eq!(top_level_messages(tricky), ["A", "C"]);
    }

    #[test]
    fn message_indexes_are_confluents_bytes() {
        // Confluent's serializer writes [0] as one zero byte, [2] as count 1 then 2, zig-zag.
        assert_eq!(encode_message_index(0), [0]);
        assert_eq!(encode_message_index(2), [2, 4]);
        assert_eq!(encode_message_index(4), [2, 8]);
        assert_eq!(encode_message_index(100), [2, 200, 1]);
        let framed = frame(0x0102_0304, 4, b"\x0a\x01x");
        assert_eq!(framed, b"\x00\x01\x02\x03\x04\x02\x08\x0a\x01x");
        let (header, body) = split(&framed).unwrap();
        assert_eq!(
            header,
            Some(Header {
                schema_id: 0x0102_0304,
                message_indexes: vec![4]
            })
        );
        assert_eq!(body, b"\x0a\x01x");
    }

    #[test]
    fn plain_records_pass_and_broken_headers_are_refused() {
        assert_eq!(split(b"\x0a\x01x").unwrap(), (None, &b"\x0a\x01x"[..]));
        assert_eq!(split(b"").unwrap(), (None, &b""[..]));
        for broken in [
            &b"\x00\x00\x01"[..],
            b"\x00\x00\x00\x00\x01",
            b"\x00\x00\x00\x00\x01\x02",
        ] {
            assert_eq!(
                split(broken).unwrap_err().reason,
                DeadLetterReason::Deserialization,
                "{broken:?}"
            );
        }
    }

    #[test]
    fn without_a_registry_framed_records_must_name_the_topics_message() {
        let topics = Topics::default();
        let wire = WireFormat::plain(&topics);
        assert_eq!(wire.frame("trades.raw", b"\x0a\x01x"), &b"\x0a\x01x"[..]);
        let envelope = frame(7, 0, b"\x0a\x01x");
        assert_eq!(wire.unframe("trades.raw", &envelope).unwrap(), b"\x0a\x01x");
        let price = frame(7, 2, b"\x0a\x01x");
        assert_eq!(wire.unframe("prices", &price).unwrap(), b"\x0a\x01x");
        match wire.unframe("trades.raw", &price) {
            Err(UnframeError::Rejected(r)) => {
                assert!(r.detail.contains("not TradeEnvelope"), "{}", r.detail)
            }
            other => panic!("a PriceUpdate passed as an envelope: {other:?}"),
        }
        // The reference topic is not protobuf: its records are never unframed.
        assert_eq!(wire.unframe("reference", b"\x00abc").unwrap(), b"\x00abc");
    }
}
