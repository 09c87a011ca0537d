//! The emulator's socket layer: a listener that can really go away for a while (connects are
//! refused, not merely left unanswered) and streams that break when it does, so clients
//! holding pooled keep-alive connections see the outage too.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Shared switches between the control handles and the listener.
#[derive(Debug, Default)]
pub(crate) struct NetControl {
    refuse_until: Mutex<Option<Instant>>,
    wake: Notify,
    /// Bumped whenever open connections must die; each stream remembers the value it was
    /// accepted under.
    generation: Arc<AtomicU64>,
    stopped: AtomicBool,
}

impl NetControl {
    pub(crate) fn refuse_for(&self, duration: Duration) {
        let until = Instant::now() + duration;
        {
            let mut refuse_until = self
                .refuse_until
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            *refuse_until = Some(refuse_until.map_or(until, |earlier| earlier.max(until)));
        }
        self.generation.fetch_add(1, Ordering::SeqCst);
        // A stored permit covers the case where the listener is not waiting right now.
        self.wake.notify_one();
    }

    pub(crate) fn shut_down(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.wake.notify_one();
    }

    fn take_refusal(&self) -> Option<Instant> {
        let mut refuse_until = self
            .refuse_until
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        refuse_until.take().filter(|until| *until > Instant::now())
    }
}

/// The listener handed to `axum::serve`.
pub(crate) struct EmuListener {
    socket: Option<TcpListener>,
    addr: SocketAddr,
    control: Arc<super::Shared>,
}

impl EmuListener {
    pub(crate) fn new(socket: TcpListener, addr: SocketAddr, control: Arc<super::Shared>) -> Self {
        Self {
            socket: Some(socket),
            addr,
            control,
        }
    }

    fn net(&self) -> &NetControl {
        &self.control.net
    }
}

impl axum::serve::Listener for EmuListener {
    type Io = EmuStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            if self.net().stopped.load(Ordering::SeqCst) {
                self.socket = None;
                std::future::pending::<()>().await;
            }
            if let Some(until) = self.net().take_refusal() {
                // Dropping the socket closes the port: connects now get ECONNREFUSED.
                self.socket = None;
                tokio::time::sleep_until(until).await;
                continue;
            }
            let Some(socket) = self.socket.as_ref() else {
                match TcpListener::bind(self.addr).await {
                    Ok(socket) => self.socket = Some(socket),
                    Err(error) => {
                        tracing::warn!(%error, addr = %self.addr, "emulator could not bind its port again; retrying");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                continue;
            };
            tokio::select! {
                accepted = socket.accept() => match accepted {
                    Ok((stream, peer)) => {
                        // Small JSON answers must not wait for Nagle.
                        let _ = stream.set_nodelay(true);
                        let generation = Arc::clone(&self.net().generation);
                        let born = generation.load(Ordering::SeqCst);
                        return (EmuStream { inner: stream, generation, born }, peer);
                    }
                    Err(error) => {
                        // Out of file descriptors and the like: wait instead of spinning.
                        tracing::debug!(%error, "emulator accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
                _ = self.net().wake.notified() => {}
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

/// A TCP stream that fails once the emulator has gone down since it was accepted.
pub(crate) struct EmuStream {
    inner: TcpStream,
    generation: Arc<AtomicU64>,
    born: u64,
}

impl EmuStream {
    fn broken(&self) -> Option<io::Error> {
        (self.generation.load(Ordering::SeqCst) != self.born)
            .then(|| io::Error::new(io::ErrorKind::ConnectionReset, "emulator went down"))
    }
}

impl AsyncRead for EmuStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(error) = self.broken() {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for EmuStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(error) = self.broken() {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
