//! The HTTP listener: poem's endpoint served over hyper with the connection limits poem's
//! own server lacks. A client must finish a request's headers within the header timeout
//! (a connection that sends nothing at all included), an idle keep-alive connection
//! closes after the idle timeout, and at most `max_connections` are open: the next one
//! is accepted when one closes, and idle keep-alive connections are closed at once to
//! make room, so slow clients keep others out for no longer than the header timeout.
//! HTTP/1.1 only: h2c would let control frames pass for request traffic.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, SizeHint};
use hyper_util::rt::TokioIo;
use poem::http::uri::Scheme;
use poem::web::{LocalAddr, RemoteAddr};
use poem::{Addr, Endpoint, Response};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::time::Instant;

/// How long clients may take, and how many may be connected at once.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// Serves `endpoint` on `listener` until `stop` resolves, then lets in-flight requests
/// finish for up to `grace` and closes idle connections at once.
pub async fn serve<E>(
    listener: TcpListener,
    endpoint: E,
    limits: ConnectionLimits,
    stop: impl Future<Output = ()>,
    grace: Duration,
) -> io::Result<()>
where
    E: Endpoint<Output = Response> + 'static,
{
    let local_addr = listener.local_addr()?;
    let endpoint = Arc::new(endpoint);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let slot_wanted = Arc::new(Notify::new());
    let (shutdown, shutting_down) = watch::channel(false);
    tokio::pin!(stop);
    loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                // Full: idle keep-alive connections make room; slow ones time out.
                slot_wanted.notify_waiters();
                tokio::select! {
                    () = &mut stop => break,
                    slot = slots.clone().acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => break, // the semaphore is never closed
                    },
                }
            }
        };
        let accepted = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, remote_addr) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!(error = %err, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            endpoint: endpoint.clone(),
            local_addr,
            remote_addr,
            limits,
            slot_wanted: slot_wanted.clone(),
        };
        let shutting_down = shutting_down.clone();
        tokio::spawn(async move {
            connection.serve(stream, shutting_down).await;
            drop(slot);
        });
    }
    drop(listener);
    let _ = shutdown.send(true);
    // Every connection holds a slot until it closes.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(grace, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period over; dropping open connections");
    }
    Ok(())
}

struct Connection<E> {
    endpoint: Arc<E>,
    local_addr: SocketAddr,
    remote_addr: SocketAddr,
    limits: ConnectionLimits,
    slot_wanted: Arc<Notify>,
}

impl<E: Endpoint<Output = Response> + 'static> Connection<E> {
    async fn serve(self, stream: TcpStream, mut shutting_down: watch::Receiver<bool>) {
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Watched {
            inner: stream,
            activity: activity.clone(),
        });
        let local = LocalAddr(Addr::SocketAddr(self.local_addr));
        let remote = RemoteAddr(Addr::SocketAddr(self.remote_addr));
        let endpoint = self.endpoint;
        let requests = activity.clone();
        let service = hyper::service::service_fn(move |request| {
            let (endpoint, local, remote) = (endpoint.clone(), local.clone(), remote.clone());
            let in_flight = InFlight::start(requests.clone());
            async move {
                let request = poem::Request::from((request, local, remote, Scheme::HTTP));
                let response = endpoint.get_response(request).await;
                // In flight until the last byte of the body is written.
                let response = hyper::Response::from(response).map(|body| Tracked {
                    body,
                    _in_flight: in_flight,
                });
                Ok::<_, Infallible>(response)
            }
        });
        let connection = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
        tokio::pin!(connection);
        let stopping = async move {
            let _ = shutting_down.wait_for(|stopping| *stopping).await;
        };
        tokio::select! {
            _ = connection.as_mut() => return,
            () = activity.expired(self.limits, &self.slot_wanted) => {
                // Dropping the connection closes the socket.
                tracing::debug!(remote_addr = %self.remote_addr, "closing a slow or idle connection");
                return;
            }
            () = stopping => {}
        }
        connection.as_mut().graceful_shutdown();
        // Requests in flight finish; a slow client does not hold the shutdown up.
        tokio::select! {
            _ = connection => {}
            () = activity.expired(self.limits, &self.slot_wanted) => {}
        }
    }
}

/// What a connection is doing, to tell a slow client from a busy or idle one.
struct Activity {
    state: Mutex<ActivityState>,
}

struct ActivityState {
    requests_in_flight: usize,
    /// When the bytes of a request whose headers are not complete began to arrive
    /// (or the connection opened): the header timeout runs from here.
    awaiting_headers_since: Option<Instant>,
    last_active: Instant,
}

impl Activity {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            state: Mutex::new(ActivityState {
                requests_in_flight: 0,
                awaiting_headers_since: Some(now),
                last_active: now,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ActivityState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bytes_read(&self) {
        let mut state = self.lock();
        let now = Instant::now();
        if state.requests_in_flight == 0 && state.awaiting_headers_since.is_none() {
            state.awaiting_headers_since = Some(now);
        }
        state.last_active = now;
    }

    /// When the connection is to be closed unless something happens first; `None` while
    /// a request is being handled (the request timeout bounds that).
    fn deadline(&self, limits: ConnectionLimits) -> Option<Instant> {
        let state = self.lock();
        if state.requests_in_flight > 0 {
            return None;
        }
        Some(match state.awaiting_headers_since {
            Some(since) => since + limits.header_timeout,
            None => state.last_active + limits.idle_timeout,
        })
    }

    /// Between requests, with no bytes of the next one.
    fn is_idle(&self) -> bool {
        let state = self.lock();
        state.requests_in_flight == 0 && state.awaiting_headers_since.is_none()
    }

    /// Resolves once the connection has been too slow or idle for too long, or is idle
    /// while a new client waits for a slot.
    async fn expired(&self, limits: ConnectionLimits, slot_wanted: &Notify) {
        loop {
            // Registered before the state is read, so no call in between is missed.
            let wanted = slot_wanted.notified();
            let wait = match self.deadline(limits) {
                Some(deadline) if deadline <= Instant::now() => return,
                Some(deadline) => deadline,
                None => Instant::now() + limits.header_timeout,
            };
            tokio::select! {
                () = tokio::time::sleep_until(wait) => {}
                () = wanted => if self.is_idle() {
                    return;
                },
            }
        }
    }
}

/// A request being handled, from complete headers to the response.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: Arc<Activity>) -> Self {
        {
            let mut state = activity.lock();
            state.requests_in_flight += 1;
            state.awaiting_headers_since = None;
        }
        Self(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.requests_in_flight = state.requests_in_flight.saturating_sub(1);
        state.last_active = Instant::now();
    }
}

/// A response body that keeps its request in flight until it is written or dropped.
struct Tracked<B> {
    body: B,
    _in_flight: InFlight,
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The client's stream, noting when bytes arrive.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
