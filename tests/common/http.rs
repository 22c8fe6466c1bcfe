//! HTTP against the query endpoint of a child `eod` process, and keeping that child in check.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Child;
use std::time::Duration;

pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A minimal HTTP/1.1 GET, enough for an endpoint on loopback. Generous timeout: the machine
/// may be busy (2 cores shared with the dataflow threads and whatever else runs).
pub fn try_get_text(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    try_get_with_headers(addr, path, &[])
}

/// A GET with extra request headers (`Name: value` lines).
pub fn try_get_with_headers(
    addr: &str,
    path: &str,
    headers: &[&str],
) -> std::io::Result<(u16, String)> {
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    exchange(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n"),
    )
}

/// A minimal HTTP/1.1 request with a JSON body (POST, PUT).
pub fn try_send_json(
    method: &str,
    addr: &str,
    path: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    exchange(
        addr,
        format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// Sends one request and reads the whole response: its status and body.
fn exchange(addr: &str, request: String) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.write_all(request.as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {response:?}")))?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    Ok((
        status,
        if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        },
    ))
}

pub fn get_with_headers(addr: &str, path: &str, headers: &[&str]) -> (u16, String) {
    try_get_with_headers(addr, path, headers).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// A port nothing listens on right now (for servers that cannot take port 0, such as timely's
/// hosts). Taken below the kernel's ephemeral range: a port bound to 0 and released comes from
/// that range, and any outgoing connection (Kafka clients open many) can take it before the
/// server binds it, which once failed a restarted `eod run`. Ports here are handed out once
/// per test process, starting at a point that differs between processes.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000; // below 32768, where Linux's ephemeral range starts
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % SPAN,
        Ordering::AcqRel,
        Ordering::Acquire,
    );
    for _ in 0..SPAN {
        let port = (LOW + NEXT.fetch_add(1, Ordering::AcqRel) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {LOW}..{}", LOW + SPAN)
}

/// The body of a `Transfer-Encoding: chunked` response (other servers than ours send them).
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// A child `eod` serving HTTP, its address read from its stderr, and everything it said.
pub struct Serving {
    pub child: KillOnDrop,
    pub addr: String,
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Serving {
    /// Spawns `command` and waits for the stderr line `<marker> http://ADDR...`.
    pub fn spawn(mut command: std::process::Command, marker: &str) -> Serving {
        use std::io::{BufRead, BufReader};
        let mut child = command
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let child = KillOnDrop(child);
        let mut lines = BufReader::new(stderr).lines();
        let mut addr = None;
        let mut log = Vec::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            log.push(line.clone());
            if let Some(rest) = line.trim().strip_prefix(marker) {
                let url = rest.trim().trim_start_matches("http://");
                addr = Some(url.split('/').next().unwrap_or(url).to_owned());
                break;
            }
        }
        let addr =
            addr.unwrap_or_else(|| panic!("eod prints its address; it said:\n{}", log.join("\n")));
        // Keep draining stderr so a failure can say what the child said.
        let log = std::sync::Arc::new(std::sync::Mutex::new(log));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Serving { child, addr, log }
    }

    pub fn said(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

pub fn get_text(addr: &str, path: &str) -> (u16, String) {
    try_get_text(addr, path).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

pub fn get(addr: &str, path: &str) -> (u16, serde_json::Value) {
    let (status, body) = get_text(addr, path);
    (
        status,
        serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
    )
}

pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            line.strip_prefix(name)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("metric {name} missing:\n{text}"))
}
