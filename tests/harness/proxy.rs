//! A small loopback HTTP/1.1 proxy between the code under test and one upstream (moto
//! server or stripe-sim) whose behaviour can be switched at runtime, to inject faults.
//!
//! Every client connection carries exactly one request: the proxy forwards it with
//! `Connection: close` and answers with `Connection: close`, so the client's pool never
//! reuses a connection across a mode switch and each request sees the mode current when
//! it arrived. Modes ([`Fault`]):
//! - `Pass`: forwarded unchanged;
//! - `Refuse`: the connection is reset as soon as it is accepted (nothing reaches upstream);
//! - `Delay(d)`: held for `d` (past the client's timeout), then forwarded — the upstream
//!   may still apply a request whose client has given up, as a slow network would;
//! - `Cut`: forwarded, so the upstream applies it, but the response is cut in the middle
//!   and the connection reset: the client cannot know whether it happened;
//! - `Status(500 | 429 | …)`: answered by the proxy with that status and a JSON error body
//!   that reads as an error to the AWS SDK and to the Stripe client; nothing reaches upstream;
//! - `Hold(d)`: forwarded and answered upstream, the answer then held for `d`: the upstream
//!   has acted, the client is still waiting (a process to kill "after Stripe said yes").
//!
//! [`Proxy::set_route`] applies a mode to one route only (`"POST /v1/subscriptions"`,
//! matched on the method and the path without its query); the rest follow [`Proxy::set`].
//!
//! A proxy started with [`Proxy::serial`] forwards one request at a time: moto server is
//! not isolated (its `TransactWriteItems` deep-copies the table and, when a condition
//! fails, restores that copy, erasing what other requests committed meanwhile), so a test
//! whose own code runs concurrently sends DynamoDB through one, and sees what real
//! DynamoDB would do; the code under test still races on reads, conditions and versions.
//!
//! A proxy started with [`Proxy::recording`] also keeps every forwarded request and its
//! response ([`Exchange`]), so a test can read what *it* sent at a cost of what it sent
//! (e.g. [`crate::mail::MailSink`]), instead of asking the upstream for its whole state.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Pass,
    Refuse,
    Delay(Duration),
    Cut,
    Status(u16),
    Hold(Duration),
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Pass => write!(f, "pass"),
            Fault::Refuse => write!(f, "refuse"),
            Fault::Delay(d) => write!(f, "delay {}ms", d.as_millis()),
            Fault::Cut => write!(f, "cut mid-response"),
            Fault::Status(code) => write!(f, "answer {code}"),
            Fault::Hold(d) => write!(f, "hold the answer {}ms", d.as_millis()),
        }
    }
}

/// One forwarded request and the upstream's answer, as a recording proxy kept them.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub method: String,
    /// The request target (path and query).
    pub path: String,
    pub request_body: Vec<u8>,
    pub status: u16,
    pub response_body: Vec<u8>,
}

struct Shared {
    upstream: SocketAddr,
    fault: Mutex<Fault>,
    /// Per-route modes, `("POST", "/v1/subscriptions")` → mode.
    routes: Mutex<Vec<((String, String), Fault)>>,
    requests: AtomicU64,
    injected: AtomicU64,
    /// `Some` for a recording proxy: every exchange that got an answer from upstream.
    recorded: Option<Mutex<Vec<Exchange>>>,
    /// `Some` for a serial proxy: held from forwarding a request to reading its answer.
    one_at_a_time: Option<tokio::sync::Mutex<()>>,
}

pub struct Proxy {
    /// `http://127.0.0.1:{port}`
    pub url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    /// A proxy in `Pass` mode in front of `upstream` (`http://127.0.0.1:port`).
    pub async fn start(upstream: &str) -> Proxy {
        Self::spawn(upstream, false, false).await
    }

    /// A proxy that also records every exchange (see [`Proxy::exchanges`]).
    pub async fn recording(upstream: &str) -> Proxy {
        Self::spawn(upstream, true, false).await
    }

    /// A proxy that forwards one request at a time (see the module docs).
    pub async fn serial(upstream: &str) -> Proxy {
        Self::spawn(upstream, false, true).await
    }

    async fn spawn(upstream: &str, record: bool, serial: bool) -> Proxy {
        let authority = upstream.trim_start_matches("http://").trim_end_matches('/');
        let upstream: SocketAddr = authority.parse().unwrap_or_else(|e| panic!("proxy upstream {authority}: {e}"));
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let shared = Arc::new(Shared {
            upstream,
            fault: Mutex::new(Fault::Pass),
            routes: Mutex::new(Vec::new()),
            requests: AtomicU64::new(0),
            injected: AtomicU64::new(0),
            recorded: record.then(|| Mutex::new(Vec::new())),
            one_at_a_time: serial.then(|| tokio::sync::Mutex::new(())),
        });
        let accept = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else { continue };
                let shared = accept.clone();
                tokio::spawn(async move {
                    let _ = handle(shared, client).await;
                });
            }
        });
        Proxy { url: format!("http://{addr}"), shared, task }
    }

    pub fn set(&self, fault: Fault) {
        *self.shared.fault.lock().expect("fault lock") = fault;
    }

    /// `fault` for requests on `route` (`"METHOD /path"`) only; `Fault::Pass` clears it.
    pub fn set_route(&self, route: &str, fault: Fault) {
        let (method, path) = route.split_once(' ').unwrap_or_else(|| panic!("a route is `METHOD /path`, not {route}"));
        let mut routes = self.shared.routes.lock().expect("routes lock");
        routes.retain(|((m, p), _)| (m.as_str(), p.as_str()) != (method, path));
        if fault != Fault::Pass {
            routes.push(((method.to_owned(), path.to_owned()), fault));
        }
    }

    pub fn fault(&self) -> Fault {
        *self.shared.fault.lock().expect("fault lock")
    }

    /// Requests (connections) seen, faulted or not.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Requests a fault was applied to.
    pub fn injected(&self) -> u64 {
        self.shared.injected.load(Ordering::SeqCst)
    }

    /// What a recording proxy forwarded and got answered, in the order the answers came
    /// (empty for a proxy started without recording).
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.shared.recorded.as_ref().map(|r| r.lock().expect("recording lock").clone()).unwrap_or_default()
    }
}

/// The method and target of a request head (`POST /v2/email/outbound-emails HTTP/1.1`).
/// The mode set for this request's route, if any.
fn route_fault(shared: &Shared, head: &[u8]) -> Option<Fault> {
    let routes = shared.routes.lock().expect("routes lock");
    if routes.is_empty() {
        return None;
    }
    let (method, target) = request_line(head);
    let path = target.split('?').next().unwrap_or_default();
    routes.iter().find(|((m, p), _)| *m == method && p == path).map(|(_, fault)| *fault)
}

fn request_line(head: &[u8]) -> (String, String) {
    let text = String::from_utf8_lossy(head);
    let mut parts = text.split("\r\n").next().unwrap_or_default().split(' ');
    (parts.next().unwrap_or_default().to_owned(), parts.next().unwrap_or_default().to_owned())
}

/// The status code of a response head (`HTTP/1.1 200 OK`); 0 when unreadable.
fn status_code(head: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(head);
    text.split("\r\n").next().and_then(|line| line.split(' ').nth(1)).and_then(|code| code.parse().ok()).unwrap_or(0)
}

/// A body as sent on the wire, without chunked framing.
fn dechunk(head: &[u8], body: &[u8]) -> Vec<u8> {
    let chunked = header_value(head, "transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if !chunked {
        return body.to_vec();
    }
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(end) = find(rest, b"\r\n") {
        let size_text = String::from_utf8_lossy(&rest[..end]);
        let Ok(size) = usize::from_str_radix(size_text.split(';').next().unwrap_or_default().trim(), 16) else { break };
        if size == 0 || rest.len() < end + 2 + size {
            break;
        }
        out.extend_from_slice(&rest[end + 2..end + 2 + size]);
        rest = &rest[(end + 4 + size).min(rest.len())..];
    }
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads until the end of the head; returns (head incl. CRLFCRLF, bytes read past it).
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<(Vec<u8>, Vec<u8>)>> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return Ok(Some((buf, rest)));
        }
        if buf.len() > 1 << 20 {
            return Ok(None);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn header_value(head: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(head);
    text.split("\r\n").skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
    })
}

/// The head with any `Connection` header replaced by `Connection: close`.
fn close_head(head: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(&head[..head.len() - 4]);
    let mut out = String::new();
    for line in text.split("\r\n") {
        let name = line.split_once(':').map(|(k, _)| k.trim().to_ascii_lowercase());
        if matches!(name.as_deref(), Some("connection" | "keep-alive")) {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    out.into_bytes()
}

/// Reads the rest of a message body framed by `head` (`rest` already read).
async fn read_body(stream: &mut TcpStream, head: &[u8], mut rest: Vec<u8>, until_eof: bool) -> std::io::Result<Vec<u8>> {
    let mut chunk = [0u8; 16384];
    if let Some(len) = header_value(head, "content-length").and_then(|v| v.parse::<usize>().ok()) {
        while rest.len() < len {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            rest.extend_from_slice(&chunk[..n]);
        }
        return Ok(rest);
    }
    let chunked = header_value(head, "transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        while !rest.ends_with(b"0\r\n\r\n") {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            rest.extend_from_slice(&chunk[..n]);
        }
        return Ok(rest);
    }
    if until_eof {
        loop {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            rest.extend_from_slice(&chunk[..n]);
        }
    }
    Ok(rest)
}

fn reset(stream: TcpStream) {
    // SO_LINGER 0: close with RST, as a refused or crashed peer looks (with 0 the drop
    // does not block, which is what the deprecation warns about).
    #[allow(deprecated)]
    let _ = stream.set_linger(Some(Duration::ZERO));
    drop(stream);
}

async fn handle(shared: Arc<Shared>, mut client: TcpStream) -> std::io::Result<()> {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    let fault = *shared.fault.lock().expect("fault lock");
    if fault != Fault::Pass {
        shared.injected.fetch_add(1, Ordering::SeqCst);
    }
    if fault == Fault::Refuse {
        reset(client);
        return Ok(());
    }
    let Some((head, rest)) = read_head(&mut client).await? else { return Ok(()) };
    let fault = match route_fault(&shared, &head) {
        Some(route) => {
            shared.injected.fetch_add(1, Ordering::SeqCst);
            route
        }
        None => fault,
    };
    if fault == Fault::Refuse {
        reset(client);
        return Ok(());
    }
    let body = read_body(&mut client, &head, rest, false).await?;
    match fault {
        Fault::Status(code) => {
            let (kind, stripe) =
                if code == 429 { ("ThrottlingException", "rate_limit_error") } else { ("InternalServerError", "api_error") };
            let payload = serde_json::json!({
                "__type": format!("com.amazonaws.dynamodb.v20120810#{kind}"),
                "message": "injected by the test proxy",
                "error": {"type": stripe, "message": "injected by the test proxy"},
            })
            .to_string();
            let response = format!(
                "HTTP/1.1 {code} Injected\r\nContent-Type: application/json\r\nx-amzn-ErrorType: {kind}\r\nRetry-After: 0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
                payload.len()
            );
            client.write_all(response.as_bytes()).await?;
            client.shutdown().await?;
            return Ok(());
        }
        Fault::Delay(d) => tokio::time::sleep(d).await,
        _ => {}
    }
    let one_at_a_time = match &shared.one_at_a_time {
        Some(lock) => Some(lock.lock().await),
        None => None,
    };
    let mut upstream = match TcpStream::connect(shared.upstream).await {
        Ok(s) => s,
        Err(_) => {
            reset(client);
            return Ok(());
        }
    };
    upstream.write_all(&close_head(&head)).await?;
    upstream.write_all(&body).await?;
    let Some((response_head, rest)) = read_head(&mut upstream).await? else {
        reset(client);
        return Ok(());
    };
    let response_body = read_body(&mut upstream, &response_head, rest, true).await?;
    drop(one_at_a_time);
    if let Some(recorded) = &shared.recorded {
        let (method, path) = request_line(&head);
        let exchange = Exchange {
            method,
            path,
            request_body: dechunk(&head, &body),
            status: status_code(&response_head),
            response_body: dechunk(&response_head, &response_body),
        };
        recorded.lock().expect("recording lock").push(exchange);
    }
    let head = close_head(&response_head);
    if let Fault::Hold(d) = fault {
        tokio::time::sleep(d).await;
    }
    if fault == Fault::Cut {
        // Half of the body (or of the head, when there is no body), then a reset.
        if response_body.len() >= 2 {
            client.write_all(&head).await?;
            client.write_all(&response_body[..response_body.len() / 2]).await?;
        } else {
            client.write_all(&head[..head.len() / 2]).await?;
        }
        client.flush().await?;
        reset(client);
        return Ok(());
    }
    client.write_all(&head).await?;
    client.write_all(&response_body).await?;
    client.shutdown().await?;
    Ok(())
}
