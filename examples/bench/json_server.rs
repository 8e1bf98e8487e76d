//! A JSON document served on loopback for the endpoint rules of the memory section: one fixed body
//! on every path, HTTP/1.1 with `Connection: close`, one connection at a time (the exporter makes
//! one request per evaluation).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Result;

pub struct JsonServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl JsonServer {
    /// Serves `body` as `application/json` until dropped.
    pub fn start(body: Vec<u8>) -> Result<JsonServer> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    // A client that hangs up early is no failure of the document.
                    let _ = answer(conn, &body);
                }
            }
        });
        Ok(JsonServer { addr, stop })
    }

    pub fn url(&self) -> String {
        format!("http://{}/doc", self.addr)
    }
}

impl Drop for JsonServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn answer(mut conn: TcpStream, body: &[u8]) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut chunk = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let status = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(status.as_bytes())?;
    conn.write_all(body)?;
    conn.flush()
}
