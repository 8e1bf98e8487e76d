//! A TCP proxy for tests, between the exporter and PostgreSQL, that on command stalls (holds every
//! byte, keeps every connection open: a network that silently stops) or drops its connections; and
//! a server that accepts TCP but never says a word (a hung PostgreSQL during startup).
//!
//! Plain threads and std sockets, so it needs no runtime and cannot be slowed by the code under test.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Default)]
struct Control {
    stalled: AtomicBool,
    /// Connections opened before the last drop are closed.
    generation: AtomicU64,
    closed: AtomicBool,
    accepted: AtomicU64,
}

pub struct Proxy {
    pub addr: SocketAddr,
    control: Arc<Control>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let control = Arc::new(Control::default());
        let c = control.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if c.closed.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                c.accepted.fetch_add(1, Ordering::SeqCst);
                let Ok(server) = TcpStream::connect(upstream) else { continue };
                let generation = c.generation.load(Ordering::SeqCst);
                for (from, to) in [(&client, &server), (&server, &client)] {
                    let (from, to, c) = (from.try_clone().expect("clone"), to.try_clone().expect("clone"), c.clone());
                    std::thread::spawn(move || pump(from, to, &c, generation));
                }
            }
        });
        Proxy { addr, control }
    }

    /// Holds every byte in both directions from now on; connections stay open.
    pub fn stall(&self) {
        self.control.stalled.store(true, Ordering::SeqCst);
    }

    /// Forwards again (held bytes included).
    pub fn heal(&self) {
        self.control.stalled.store(false, Ordering::SeqCst);
    }

    /// Closes every connection open now (FIN both ways); new ones are forwarded.
    pub fn drop_connections(&self) {
        self.control.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.control.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.control.closed.store(true, Ordering::SeqCst);
        self.drop_connections();
        let _ = TcpStream::connect(self.addr); // wakes the accept loop
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, c: &Control, generation: u64) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(50)));
    let dropped = || c.generation.load(Ordering::SeqCst) != generation;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if dropped() {
            break;
        }
        if c.stalled.load(Ordering::SeqCst) {
            // Not synchronisation: a stalled proxy holds the bytes, which is the fault under test; it
            // looks again for a heal or a drop every 20 ms.
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                while c.stalled.load(Ordering::SeqCst) && !dropped() {
                    std::thread::sleep(Duration::from_millis(20)); // holding the bytes, as above
                }
                if dropped() || to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

/// A server that accepts connections and never answers; keeps them open until dropped.
pub struct Silent {
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicU64>,
}

impl Silent {
    pub fn start() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address");
        let accepted = Arc::new(AtomicU64::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for conn in listener.incoming().flatten() {
                count.fetch_add(1, Ordering::SeqCst);
                held.push(conn);
            }
        });
        Silent { addr, accepted }
    }
}
