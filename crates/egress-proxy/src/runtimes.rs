//! Connection runtimes (`--io-threads N`): client connections served on N single-threaded
//! tokio runtimes, one thread each, every connection on one of them for its whole life.
//!
//! On the shared multi-threaded runtime a call's tasks (the connection, its streams, the
//! upstream exchange) move between worker threads: idle workers are woken to steal work,
//! and memory allocated on one thread is freed on another. Measured on two cores, the same
//! load costs up to a fifth more CPU per call with two workers than with one (README,
//! "CPU per call by worker threads"). Pinning each connection to one thread keeps a call's
//! work on the thread that accepted it. The accept loop, the admin and webhook listeners and
//! the background tasks stay on the main runtime.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// The connection runtimes; dropping this stops them (their connections with them).
#[derive(Debug)]
pub struct IoRuntimes {
    handles: Vec<Handle>,
    next: AtomicUsize,
    /// Dropped with `self`: each runtime's thread then returns and drops its runtime.
    _stop: Vec<oneshot::Sender<()>>,
}

impl IoRuntimes {
    /// Starts `threads` runtimes (at least one).
    pub fn start(threads: usize) -> std::io::Result<Self> {
        let mut handles = Vec::with_capacity(threads);
        let mut stop = Vec::with_capacity(threads);
        for index in 0..threads.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            handles.push(runtime.handle().clone());
            let (stop_tx, stop_rx) = oneshot::channel::<()>();
            stop.push(stop_tx);
            std::thread::Builder::new()
                .name(format!("egress-io-{index}"))
                .spawn(move || {
                    // Either a stop or the sender dropped ends it.
                    runtime.block_on(async move {
                        let _ = stop_rx.await;
                    });
                })?;
        }
        Ok(Self {
            handles,
            next: AtomicUsize::new(0),
            _stop: stop,
        })
    }

    /// Serves `stream` with `serve` on the next runtime in turn. The socket moves to that
    /// runtime's reactor, so its readiness wakes that thread only.
    pub fn spawn<F>(&self, stream: TcpStream, serve: impl FnOnce(TcpStream) -> F + Send + 'static)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(err) => {
                tracing::warn!(error = %err, "cannot move a connection to its runtime");
                return;
            }
        };
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        self.handles[index].spawn(async move {
            match TcpStream::from_std(stream) {
                Ok(stream) => serve(stream).await,
                Err(err) => tracing::warn!(error = %err, "cannot register a connection"),
            }
        });
    }
}
