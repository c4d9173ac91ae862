//! A Lambda Runtime API emulator on loopback: the part of the Lambda service a custom runtime
//! talks to (<https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html>).
//!
//! - `GET /2018-06-01/runtime/invocation/next` waits for a queued event and returns it with the
//!   `Lambda-Runtime-*` headers;
//! - `POST /2018-06-01/runtime/invocation/{id}/response` and `.../{id}/error` take the result;
//! - `POST /2018-06-01/runtime/init/error` takes an initialization failure.
//!
//! Every request is recorded with the instant it arrived (after its body was read), so the
//! benchmark can time a process from its start to its first poll and its first response.
//! HTTP/1.1 with keep-alive, `Content-Length` and chunked request bodies: what the
//! `lambda_runtime` client sends.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

const PREFIX: &str = "/2018-06-01/runtime";

/// What the runtime told the emulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A `GET .../invocation/next` arrived (the runtime is ready for an event).
    Poll,
    /// The event `id` was handed to the runtime.
    Delivered { id: String },
    /// The result of invocation `id`.
    Response { id: String, body: Vec<u8> },
    /// The error of invocation `id`.
    Error { id: String, body: Vec<u8> },
    /// The runtime failed to initialize.
    InitError { body: Vec<u8> },
}

#[derive(Debug, Clone)]
pub struct Record {
    pub at: Instant,
    pub kind: Kind,
}

struct Shared {
    function_name: String,
    queue: Mutex<VecDeque<(String, Vec<u8>)>>,
    queued: Notify,
    log: Mutex<Vec<Record>>,
    changed: watch::Sender<u64>,
    next_id: Mutex<u64>,
}

impl Shared {
    fn record(&self, kind: Kind) {
        let at = Instant::now();
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Record { at, kind });
        self.changed.send_modify(|v| *v += 1);
    }
}

/// The outcome of one invocation.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// When the event was handed to the runtime.
    pub delivered: Instant,
    /// When the response (or error) arrived.
    pub done: Instant,
    /// `Ok(body)` for a response, `Err(body)` for an invocation error.
    pub result: Result<Vec<u8>, Vec<u8>>,
}

/// A running emulator; its tasks stop when it is dropped.
pub struct Emulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _tasks: JoinSet<()>,
}

impl Emulator {
    /// Starts an emulator on a free loopback port for function `function_name`.
    pub async fn start(function_name: &str) -> std::io::Result<Emulator> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            function_name: function_name.to_owned(),
            queue: Mutex::new(VecDeque::new()),
            queued: Notify::new(),
            log: Mutex::new(Vec::new()),
            changed: watch::channel(0).0,
            next_id: Mutex::new(0),
        });
        let mut tasks = JoinSet::new();
        let s = shared.clone();
        tasks.spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let s = s.clone();
                conns.spawn(async move {
                    let _ = serve(stream, &s).await;
                });
                // Reap finished connection tasks.
                while conns.try_join_next().is_some() {}
            }
        });
        Ok(Emulator {
            addr,
            shared,
            _tasks: tasks,
        })
    }

    /// `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub fn api(&self) -> String {
        self.addr.to_string()
    }

    /// Queues an event; returns its request id.
    pub fn push(&self, event: Vec<u8>) -> String {
        let id = {
            let mut n = self
                .shared
                .next_id
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            *n += 1;
            format!("{:08x}-0000-4000-8000-{:012x}", std::process::id(), *n)
        };
        self.shared
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back((id.clone(), event));
        self.shared.queued.notify_one();
        id
    }

    /// When the first poll arrived, if one did.
    pub fn first_poll(&self) -> Option<Instant> {
        self.shared
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|r| r.kind == Kind::Poll)
            .map(|r| r.at)
    }

    /// The outcome of invocation `id` if it is in the log: scanned under the lock, only the
    /// matching body copied (cloning the whole log on every change made waiting quadratic in
    /// the invocations: a 740 KB response 500 times over is 370 MB copied per invocation,
    /// CPU and memory bandwidth taken from the function being timed).
    fn find(&self, id: &str) -> Option<Result<Outcome, String>> {
        let log = self.shared.log.lock().unwrap_or_else(|e| e.into_inner());
        let mut delivered = None;
        for r in log.iter() {
            match &r.kind {
                Kind::Delivered { id: d } if d == id => delivered = Some(r.at),
                Kind::Response { id: d, body } if d == id => {
                    return Some(Ok(Outcome {
                        delivered: delivered.unwrap_or(r.at),
                        done: r.at,
                        result: Ok(body.clone()),
                    }));
                }
                Kind::Error { id: d, body } if d == id => {
                    return Some(Ok(Outcome {
                        delivered: delivered.unwrap_or(r.at),
                        done: r.at,
                        result: Err(body.clone()),
                    }));
                }
                Kind::InitError { body } => {
                    return Some(Err(format!(
                        "init error: {}",
                        String::from_utf8_lossy(body)
                    )));
                }
                _ => {}
            }
        }
        None
    }

    /// Waits (at most `timeout`) for the outcome of invocation `id`. An init error, or the
    /// timeout, is an `Err` with a description.
    pub async fn wait(&self, id: &str, timeout: Duration) -> Result<Outcome, String> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut rx = self.shared.changed.subscribe();
        loop {
            rx.borrow_and_update();
            if let Some(found) = self.find(id) {
                return found;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err("emulator stopped".into()),
                Err(_) => return Err(format!("no response to invocation {id} in {timeout:?}")),
            }
        }
    }
}

/// One HTTP request as read off the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    /// Lower-cased names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

const MAX_HEAD_LINE: usize = 16 * 1024;
const MAX_BODY: usize = 64 * 1024 * 1024;

fn bad(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.into())
}

async fn read_line<R: AsyncRead + Unpin>(r: &mut BufReader<R>) -> std::io::Result<String> {
    let mut line = String::new();
    let n = r.read_line(&mut line).await?;
    if n == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    if line.len() > MAX_HEAD_LINE {
        return Err(bad("line too long"));
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// Reads one request; `Ok(None)` at a clean end of the connection.
pub async fn read_request<R: AsyncRead + Unpin>(
    r: &mut BufReader<R>,
) -> std::io::Result<Option<HttpRequest>> {
    let line = match read_line(r).await {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
        return Err(bad(format!("bad request line {line:?}")));
    };
    let (method, path) = (method.to_owned(), path.to_owned());
    let mut headers = Vec::new();
    loop {
        let h = read_line(r).await?;
        if h.is_empty() {
            break;
        }
        let (k, v) = h
            .split_once(':')
            .ok_or_else(|| bad(format!("bad header {h:?}")))?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
    let mut req = HttpRequest {
        method,
        path,
        headers,
        body: Vec::new(),
    };
    let chunked = req
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        loop {
            let size_line = read_line(r).await?;
            let size_hex = size_line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_hex, 16)
                .map_err(|_| bad(format!("bad chunk size {size_line:?}")))?;
            if size == 0 {
                // Trailers, then the empty line.
                while !read_line(r).await?.is_empty() {}
                break;
            }
            if req.body.len() + size > MAX_BODY {
                return Err(bad("body too large"));
            }
            let start = req.body.len();
            req.body.resize(start + size, 0);
            r.read_exact(&mut req.body[start..]).await?;
            if !read_line(r).await?.is_empty() {
                return Err(bad("chunk not followed by CRLF"));
            }
        }
    } else if let Some(len) = req.header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| bad(format!("bad content-length {len:?}")))?;
        if len > MAX_BODY {
            return Err(bad("body too large"));
        }
        req.body.resize(len, 0);
        r.read_exact(&mut req.body).await?;
    }
    Ok(Some(req))
}

/// An HTTP/1.1 response with a body and extra headers.
pub fn response_bytes(
    status: u16,
    reason: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} {reason}\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    ));
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

fn epoch_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
}

async fn serve(stream: tokio::net::TcpStream, s: &Shared) -> std::io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    while let Some(req) = read_request(&mut r).await? {
        let rest = req.path.strip_prefix(PREFIX).unwrap_or("");
        let segments: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
        let out = match (req.method.as_str(), segments.as_slice()) {
            ("GET", ["invocation", "next"]) => {
                s.record(Kind::Poll);
                let (id, event) = loop {
                    let notified = s.queued.notified();
                    if let Some(e) = s
                        .queue
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .pop_front()
                    {
                        break e;
                    }
                    notified.await;
                };
                let headers = [
                    ("Lambda-Runtime-Aws-Request-Id", id.clone()),
                    (
                        "Lambda-Runtime-Deadline-Ms",
                        (epoch_ms() + 29_000).to_string(),
                    ),
                    (
                        "Lambda-Runtime-Invoked-Function-Arn",
                        format!(
                            "arn:aws:lambda:us-east-1:000000000000:function:{}",
                            s.function_name
                        ),
                    ),
                    (
                        "Lambda-Runtime-Trace-Id",
                        format!(
                            "Root=1-{:08x}-{:024x};Parent={:016x};Sampled=0",
                            epoch_ms() / 1000,
                            epoch_ms(),
                            std::process::id()
                        ),
                    ),
                ];
                let bytes = response_bytes(200, "OK", &headers, &event);
                s.record(Kind::Delivered { id });
                bytes
            }
            ("POST", ["invocation", id, "response"]) => {
                s.record(Kind::Response {
                    id: (*id).to_owned(),
                    body: req.body,
                });
                response_bytes(202, "Accepted", &[], br#"{"status":"OK"}"#)
            }
            ("POST", ["invocation", id, "error"]) => {
                s.record(Kind::Error {
                    id: (*id).to_owned(),
                    body: req.body,
                });
                response_bytes(202, "Accepted", &[], br#"{"status":"OK"}"#)
            }
            ("POST", ["init", "error"]) => {
                s.record(Kind::InitError { body: req.body });
                response_bytes(202, "Accepted", &[], br#"{"status":"OK"}"#)
            }
            _ => response_bytes(
                404,
                "Not Found",
                &[],
                br#"{"errorMessage":"unknown path","errorType":"InvalidRequest"}"#,
            ),
        };
        w.write_all(&out).await?;
        w.flush().await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpStream;

    async fn parse(raw: &[u8]) -> Vec<HttpRequest> {
        let mut r = BufReader::new(raw);
        let mut out = Vec::new();
        while let Some(req) = read_request(&mut r).await.expect("valid") {
            out.push(req);
        }
        out
    }

    #[tokio::test]
    async fn parses_content_length_and_chunked_bodies() {
        let raw = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
GET /b HTTP/1.1\r\n\r\n\
POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nX-T: 1\r\n\r\n";
        let reqs = parse(raw).await;
        assert_eq!(reqs.len(), 3);
        assert_eq!(
            (reqs[0].method.as_str(), reqs[0].path.as_str()),
            ("POST", "/a")
        );
        assert_eq!(reqs[0].body, b"hello");
        assert_eq!(reqs[0].header("host"), Some("x"));
        assert_eq!(reqs[1].body, b"");
        assert_eq!(reqs[2].body, b"abcde");
    }

    async fn roundtrip(stream: &mut TcpStream, raw: &[u8]) -> (String, Vec<u8>) {
        stream.write_all(raw).await.unwrap();
        let mut r = BufReader::new(&mut *stream);
        let status = read_line(&mut r).await.unwrap();
        let mut headers = String::new();
        let mut len = 0;
        loop {
            let h = read_line(&mut r).await.unwrap();
            if h.is_empty() {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
            headers.push_str(&h);
            headers.push('\n');
        }
        let mut body = vec![0; len];
        r.read_exact(&mut body).await.unwrap();
        (format!("{status}\n{headers}"), body)
    }

    #[tokio::test]
    async fn serves_the_runtime_protocol() {
        let emu = Emulator::start("fn").await.unwrap();
        let id = emu.push(br#"{"x":1}"#.to_vec());
        let mut c = TcpStream::connect(emu.api()).await.unwrap();
        let (head, body) = roundtrip(
            &mut c,
            b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: h\r\n\r\n",
        )
        .await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.contains(&format!("Lambda-Runtime-Aws-Request-Id: {id}")));
        assert!(head.contains("Lambda-Runtime-Deadline-Ms: "));
        assert!(head.contains("Lambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:"));
        assert!(head.contains("Lambda-Runtime-Trace-Id: Root=1-"));
        assert_eq!(body, br#"{"x":1}"#);
        // Same connection (keep-alive), chunked body.
        let post = format!(
            "POST /2018-06-01/runtime/invocation/{id}/response HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
        );
        let (head, _) = roundtrip(&mut c, post.as_bytes()).await;
        assert!(head.starts_with("HTTP/1.1 202"), "{head}");
        let out = emu.wait(&id, Duration::from_secs(5)).await.unwrap();
        assert_eq!(out.result, Ok(b"ok".to_vec()));
        assert!(out.done >= out.delivered);
        assert!(emu.first_poll().is_some_and(|p| p <= out.delivered));

        // An invocation error, and an unknown path.
        let id2 = emu.push(b"{}".to_vec());
        roundtrip(
            &mut c,
            b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n\r\n",
        )
        .await;
        let post = format!(
            "POST /2018-06-01/runtime/invocation/{id2}/error HTTP/1.1\r\nContent-Length: 4\r\n\r\nboom"
        );
        roundtrip(&mut c, post.as_bytes()).await;
        let out = emu.wait(&id2, Duration::from_secs(5)).await.unwrap();
        assert_eq!(out.result, Err(b"boom".to_vec()));
        let (head, _) = roundtrip(&mut c, b"GET /nope HTTP/1.1\r\n\r\n").await;
        assert!(head.starts_with("HTTP/1.1 404"), "{head}");

        // An init error ends every wait.
        let id3 = emu.push(b"{}".to_vec());
        roundtrip(
            &mut c,
            b"POST /2018-06-01/runtime/init/error HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
        )
        .await;
        assert!(emu.wait(&id3, Duration::from_secs(5)).await.is_err());
    }

    #[tokio::test]
    async fn a_poll_waits_for_an_event() {
        let emu = Emulator::start("fn").await.unwrap();
        let api = emu.api();
        let poll = tokio::spawn(async move {
            let mut c = TcpStream::connect(api).await.unwrap();
            roundtrip(
                &mut c,
                b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n\r\n",
            )
            .await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!poll.is_finished());
        assert!(emu.first_poll().is_some());
        emu.push(b"late".to_vec());
        let (_, body) = poll.await.unwrap();
        assert_eq!(body, b"late");
    }
}
