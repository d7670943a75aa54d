//! A TCP forwarder on loopback that counts the connections it accepts: what tells a test
//! whether a client opened a new connection or reused one from its pool. Bytes pass
//! through unchanged, so one HTTP/1.1 connection carries as many requests as the client
//! sends on it (unlike [`crate::proxy::Proxy`], which takes one request per connection).
//!
//! `Forwarder::with` lets a caller wrap each accepted stream first (the bench terminates
//! TLS there) and still share the accept loop and the count.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Instant,
};

use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, TcpStream},
};

/// A stream the forwarder can copy from and to.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

pub type Wrapped = Pin<Box<dyn Future<Output = std::io::Result<Box<dyn Stream>>> + Send>>;

pub struct Forwarder {
    /// `127.0.0.1:<port>`.
    pub addr: String,
    accepted: Arc<AtomicU64>,
    accepted_at: Arc<Mutex<Vec<Instant>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Forwarder {
    /// Forwards to `upstream` (`http://host:port` or `host:port`) unchanged.
    pub async fn start(upstream: &str) -> Forwarder {
        Self::with(upstream, |stream| Box::pin(async move { Ok(Box::new(stream) as Box<dyn Stream>) })).await
    }

    /// Forwards to `upstream` what `wrap` makes of each accepted connection.
    pub async fn with(upstream: &str, wrap: impl Fn(TcpStream) -> Wrapped + Send + Sync + 'static) -> Forwarder {
        let upstream = upstream.trim_start_matches("http://").trim_end_matches('/').to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the forwarder");
        let addr = listener.local_addr().expect("forwarder address").to_string();
        let accepted = Arc::new(AtomicU64::new(0));
        let accepted_at = Arc::new(Mutex::new(Vec::new()));
        let (count, times) = (accepted.clone(), accepted_at.clone());
        let wrap = Arc::new(wrap);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                times.lock().expect("lock").push(Instant::now());
                let (upstream, wrap) = (upstream.clone(), wrap.clone());
                tokio::spawn(async move {
                    let _ = client.set_nodelay(true);
                    let Ok(mut client) = wrap(client).await else { return };
                    let Ok(mut server) = TcpStream::connect(&upstream).await else { return };
                    let _ = server.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
            }
        });
        Forwarder { addr, accepted, accepted_at, task }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// When the first connection after `since` was accepted.
    pub fn first_accepted_after(&self, since: Instant) -> Option<Instant> {
        self.accepted_at.lock().expect("lock").iter().copied().find(|t| *t >= since)
    }
}
