//! A fixed port for the embedded cluster (`kafka.embedded.port`): librdkafka's mock brokers
//! listen on a port the kernel picks, so a forwarder listens on the fixed one, the broker
//! advertises it, and every connection is relayed to the broker's own port.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Relays connections from a fixed loopback port to the broker until dropped.
pub(super) struct Forwarder {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Forwarder {
    /// Listens on `127.0.0.1:port` and relays each connection to `broker`.
    pub(super) fn start(port: u16, broker: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        let address = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("kafka-embedded-port".to_owned())
            .spawn(move || {
                for client in listener.incoming() {
                    if stopping.load(Ordering::Acquire) {
                        return;
                    }
                    // A connection that cannot be relayed is dropped: the client reconnects.
                    if let Ok(client) = client {
                        let _ = relay(client, broker);
                    }
                }
            })?;
        Ok(Forwarder { address, stop })
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wakes the accepting thread, which then sees `stop`.
        let _ = TcpStream::connect(self.address);
    }
}

/// Copies both ways between `client` and a new connection to `broker`, a thread per direction;
/// each ends when its side closes.
fn relay(client: TcpStream, broker: SocketAddr) -> io::Result<()> {
    let upstream = TcpStream::connect(broker)?;
    client.set_nodelay(true)?;
    upstream.set_nodelay(true)?;
    let (client_in, upstream_out) = (client.try_clone()?, upstream.try_clone()?);
    std::thread::Builder::new()
        .name("kafka-embedded-relay".to_owned())
        .spawn(move || pipe(client_in, upstream_out))?;
    std::thread::Builder::new()
        .name("kafka-embedded-relay".to_owned())
        .spawn(move || pipe(upstream, client))?;
    Ok(())
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let _ = io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Both);
}
