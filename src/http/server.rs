//! The HTTP/1.1 server loop: accepts connections on the given listener and serves the router on
//! each, until shutdown.
//!
//! `axum::serve` would do, but its connection setup (HTTP version detection, socket wrapping)
//! costs about twice the memory per idle connection of a plain hyper HTTP/1.1 connection: 20 KB
//! against 11 KB, measured with 8,000 idle event streams. A gateway keeps one event stream open per
//! watching visitor, so that is the difference between meeting the memory budget and not.
//! HTTP/2, when wanted, belongs to the reverse proxy in front.
//!
//! The loop also protects the process from its clients:
//! - at most `max_connections` connections are open; further clients wait in the listen backlog
//!   instead of exhausting the process's file descriptors (which would stop `accept`, the
//!   database and the health check alike). The cap is set below the open-files limit, which is
//!   raised to its maximum at start ([`raise_open_files_limit`]); one client address may hold at
//!   most `max_per_address` of them (further connections are closed at once);
//! - request headers (and the pause between two requests of a keep-alive connection) must arrive
//!   within `header_timeout`, a request body within `body_timeout` of its headers (a client
//!   trickling a body byte by byte holds its connection no longer than that);
//! - failing `accept` calls back off instead of spinning.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use axum::{Router, body::Body, extract::ConnectInfo};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::{body::Incoming, server::conn::http1};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{net::TcpListener, sync::Semaphore, time::Instant};
use tower::Service;
use tracing::{debug, warn};

/// How the server treats its clients.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Open connections at most.
    pub max_connections: usize,
    /// Open connections of one client address at most (0: no limit), so that one client cannot
    /// take every place; addresses in `unlimited` (trusted proxies, and this machine when it is
    /// exempt from limits) are not counted.
    pub max_per_address: usize,
    /// Peers the per-address limit does not apply to.
    pub unlimited: Arc<[ipnet::IpNet]>,
    /// Longest time for a request's headers, and longest pause between two requests.
    pub header_timeout: Duration,
    /// Longest time for a request's body, from its headers.
    pub body_timeout: Duration,
}

/// File descriptors kept free of connections: the database, media files, outbound calls to
/// providers and models, the listener.
const RESERVED_DESCRIPTORS: u64 = 512;

/// The most connections by default, whatever the open-files limit (which is often a million):
/// an idle connection costs about 12 KB, so this bounds their memory near 800 MB.
const DEFAULT_MAX_CONNECTIONS: u64 = 65_536;

/// Raises the soft open-files limit to the hard one (a server needs one descriptor per
/// connection; the default soft limit is often 1,024) and returns the limit in force.
pub fn raise_open_files_limit() -> u64 {
    #[cfg(unix)]
    {
        match rlimit::increase_nofile_limit(u64::MAX) {
            Ok(limit) => limit,
            Err(e) => {
                warn!(error = %e, "cannot raise the open-files limit");
                rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
            }
        }
    }
    #[cfg(not(unix))]
    {
        8192
    }
}

/// The connection cap: the configured one, but never more than the open-files limit allows; by
/// default what the limit allows, up to 65,536.
pub fn connection_cap(configured: usize, open_files: u64) -> usize {
    let allowed =
        usize::try_from(open_files.saturating_sub(RESERVED_DESCRIPTORS).max(64)).unwrap_or(64);
    match configured {
        0 => allowed.min(DEFAULT_MAX_CONNECTIONS as usize),
        n if n > allowed => {
            warn!(
                configured = n,
                allowed, "server.max_connections is above what the open-files limit allows"
            );
            allowed
        }
        n => n,
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting and waits for open
/// connections to finish their responses (the caller bounds that wait).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()>,
    options: ServeOptions,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_timeout)
        .keep_alive(true);
    // Told to every connection at shutdown; the server waits until every connection has dropped
    // its receiver. (hyper-util's `GracefulShutdown` does the same, for connections that cannot
    // be upgraded to WebSockets.)
    let (closing, _) = tokio::sync::watch::channel(());
    let connections = Arc::new(Semaphore::new(options.max_connections.max(1)));
    let per_address = Arc::new(PerAddress::default());
    let mut backoff = Duration::from_millis(5);
    tokio::pin!(shutdown);
    loop {
        // Wait for a free place before accepting: beyond the cap, clients queue in the backlog.
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    backoff = Duration::from_millis(5);
                    let limited = options.max_per_address > 0
                        && !options.unlimited.iter().any(|net| net.contains(&peer.ip().to_canonical()));
                    let slot = if limited {
                        match per_address.take(&per_address, peer.ip(), options.max_per_address) {
                            Some(slot) => Some(slot),
                            None => {
                                // Closed at once: the client has its share of connections.
                                debug!(%peer, "too many connections from one address; closing");
                                continue;
                            }
                        }
                    } else {
                        None
                    };
                    if let Err(e) = stream.set_nodelay(true) {
                        debug!(%peer, error = %e, "cannot disable Nagle's algorithm");
                    }
                    // The service is one pointer, as the bare router is: the connection's task
                    // holds it, and capturing several values side by side pushes the task into a
                    // larger allocator size class — 0.4 KB more for every idle event stream,
                    // measured with the benchmark. The connection's places go in the same box.
                    let routed = Arc::new((app.clone(), peer, (permit, slot)));
                    let body_timeout = options.body_timeout;
                    let service = TowerToHyperService::new(tower::service_fn(
                        move |request: axum::http::Request<Incoming>| {
                            let (app, peer, _) = &*routed;
                            let mut request = request.map(|body| {
                                Body::new(DeadlineBody::new(body, body_timeout))
                            });
                            // The peer's address, for limits and the audit log.
                            request.extensions_mut().insert(ConnectInfo(*peer));
                            // A WebSocket outlives its HTTP connection (hyper hands the socket
                            // over on upgrade): it keeps the connection's places.
                            request.extensions_mut().insert(ConnectionPlaces {
                                _places: routed.clone(),
                            });
                            // The router is always ready: no need to wait for it.
                            app.clone().call(request)
                        },
                    ));
                    let connection = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades();
                    let mut shutdown = closing.subscribe();
                    tokio::spawn(async move {
                        tokio::pin!(connection);
                        // At shutdown the connection finishes the response under way; an upgraded
                        // one (a WebSocket) is on its own already, and ends when the hub closes.
                        let ended = tokio::select! {
                            ended = connection.as_mut() => ended,
                            _ = shutdown.changed() => {
                                connection.as_mut().graceful_shutdown();
                                connection.await
                            }
                        };
                        if let Err(e) = ended {
                            debug!(%peer, error = %e, "connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors, typically: back off (up to a second) instead of
                    // spinning, and let connections end meanwhile.
                    warn!(error = %e, wait = ?backoff, "cannot accept a connection");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            },
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let _ = closing.send(());
    closing.closed().await;
}

/// A connection's places (among all connections and among its address's): whoever holds this
/// keeps them taken. An upgraded connection (a WebSocket) holds them for as long as it is open,
/// so sockets count against `max_connections` like any connection.
#[derive(Clone)]
pub struct ConnectionPlaces {
    _places: Arc<dyn std::any::Any + Send + Sync>,
}

/// Open connections by client address (IPv6: by /64).
#[derive(Default)]
struct PerAddress(std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, u32>>);

/// A connection's place among its address's; given back when dropped.
struct AddressSlot {
    counts: Arc<PerAddress>,
    key: std::net::IpAddr,
}

impl PerAddress {
    /// A place for another connection of `address`, unless it has `max` already.
    fn take(
        &self,
        this: &Arc<PerAddress>,
        address: std::net::IpAddr,
        max: usize,
    ) -> Option<AddressSlot> {
        let key = crate::limits::address_key(address);
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(key).or_default();
        if *count as usize >= max {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            counts: this.clone(),
            key,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// A request body that must arrive before a deadline, set when its headers arrived.
struct DeadlineBody {
    inner: Incoming,
    deadline: Instant,
    /// Armed the first time the body is not ready (most bodies are complete at once).
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl DeadlineBody {
    fn new(inner: Incoming, timeout: Duration) -> Self {
        Self {
            inner,
            deadline: Instant::now() + timeout,
            timer: None,
        }
    }
}

/// The error a body that missed its deadline ends with.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimeout;

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => {
                let deadline = self.deadline;
                let timer = self
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout)))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether a body extraction failed because the body missed its deadline.
pub(crate) fn is_body_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if e.is::<BodyTimeout>() {
            return true;
        }
        cause = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_cap_stays_below_the_open_files_limit() {
        assert_eq!(connection_cap(0, 20_000), 19_488);
        assert_eq!(
            connection_cap(0, 1_048_576),
            65_536,
            "a default bound on memory"
        );
        assert_eq!(connection_cap(1000, 20_000), 1000);
        assert_eq!(connection_cap(50_000, 20_000), 19_488);
        assert_eq!(connection_cap(0, 100), 64, "a floor for tiny limits");
    }

    #[test]
    fn a_timeout_is_found_in_an_error_chain() {
        #[derive(Debug, thiserror::Error)]
        #[error("wrapped")]
        struct Wrapped(#[source] BodyTimeout);
        assert!(is_body_timeout(&Wrapped(BodyTimeout)));
        assert!(!is_body_timeout(&std::io::Error::other("x")));
    }
}
