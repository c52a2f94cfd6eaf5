//! A loopback object store and the client that uploads parts to it, one connection per
//! part, as object-storage SDKs send each part of a multipart upload as its own request.
//!
//! The store refuses the first attempt at every [`REFUSE_EVERY`]th part (an object
//! store's "503 Slow Down"); the client aborts that request and sends the part again on a
//! new connection. What the abort path does with the refused connection is the point:
//! [`OnAbort::Close`] closes it, [`OnAbort::KeepOpen`] (the positive control) forgets it
//! open, one descriptor per refusal, and nothing on the heap.
//!
//! The wire format is avsoak's own, minimal: a part number and a length (`u32`
//! little-endian each), the bytes, then one byte back, `K` (stored) or `R` (refused),
//! after which the store closes the connection. The client reads to that close, so a
//! connection is gone on both sides when its upload returns.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// The store refuses the first attempt at every part whose number is a multiple of this.
pub const REFUSE_EVERY: u32 = 2;
/// Attempts at one part before the client gives up.
pub const MAX_ATTEMPTS: u32 = 3;

const STORED: u8 = b'K';
const REFUSED: u8 = b'R';

/// What the client does with a connection whose part was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnAbort {
    /// Closes it, then retries on a new one.
    Close,
    /// Control: retries on a new one and leaves the refused one open.
    KeepOpen,
}

/// What the store took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Connections accepted.
    pub connections: u64,
    /// Parts stored.
    pub stored: u64,
    /// Attempts refused.
    pub refused: u64,
    /// Bytes of the stored parts.
    pub bytes: u64,
}

/// A store on `127.0.0.1`, served by one thread until dropped.
#[derive(Debug)]
pub struct LoopbackStore {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    server: Option<JoinHandle<io::Result<StoreStats>>>,
}

impl LoopbackStore {
    /// Listens on a free loopback port and starts serving.
    pub fn start() -> io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let server = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("loopback-store".into())
                .spawn(move || serve(&listener, &stop))?
        };
        Ok(LoopbackStore {
            addr,
            stop,
            server: Some(server),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving and returns what the store took.
    pub fn stop(mut self) -> io::Result<StoreStats> {
        self.shut_down()
    }

    fn shut_down(&mut self) -> io::Result<StoreStats> {
        let Some(server) = self.server.take() else {
            return Ok(StoreStats::default());
        };
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept; refused when the server already ended on an error.
        let _ = TcpStream::connect(self.addr);
        server
            .join()
            .map_err(|_| io::Error::other("the loopback store's thread panicked"))?
    }
}

impl Drop for LoopbackStore {
    fn drop(&mut self) {
        let _ = self.shut_down();
    }
}

fn serve(listener: &TcpListener, stop: &AtomicBool) -> io::Result<StoreStats> {
    let mut stats = StoreStats::default();
    let mut part = 0u32;
    let mut attempts = 0u32;
    let mut payload = Vec::new();
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let mut conn = conn?;
        stats.connections += 1;
        let mut header = [0u8; 8];
        conn.read_exact(&mut header)?;
        let number = u32::from_le_bytes(header[..4].try_into().expect("4 bytes"));
        let length = u32::from_le_bytes(header[4..].try_into().expect("4 bytes")) as usize;
        payload.resize(length, 0);
        conn.read_exact(&mut payload)?;
        if number != part {
            (part, attempts) = (number, 0);
        }
        attempts += 1;
        let refuse = number.is_multiple_of(REFUSE_EVERY) && attempts == 1;
        if refuse {
            stats.refused += 1;
        } else {
            stats.stored += 1;
            stats.bytes += length as u64;
        }
        conn.write_all(&[if refuse { REFUSED } else { STORED }])?;
        // Closed here, before the client's read of the close returns.
        drop(conn);
    }
    Ok(stats)
}

/// A multipart upload's client: parts numbered from 0, each sent on a new connection.
#[derive(Debug)]
pub struct Uploader {
    store: SocketAddr,
    on_abort: OnAbort,
    next_part: u32,
}

impl Uploader {
    /// A client of the store at `store`.
    pub fn new(store: SocketAddr, on_abort: OnAbort) -> Self {
        Uploader {
            store,
            on_abort,
            next_part: 0,
        }
    }

    /// Uploads `bytes` as the next part, again on a new connection when the store
    /// refuses it, at most [`MAX_ATTEMPTS`] times.
    pub fn upload_part(&mut self, bytes: &[u8]) -> io::Result<()> {
        let number = self.next_part;
        self.next_part += 1;
        for _ in 0..MAX_ATTEMPTS {
            let mut conn = TcpStream::connect(self.store)?;
            if send(&mut conn, number, bytes)? {
                return Ok(());
            }
            match self.on_abort {
                OnAbort::Close => drop(conn),
                // The control's mistake: the aborted request's connection is never closed.
                OnAbort::KeepOpen => std::mem::forget(conn),
            }
        }
        Err(io::Error::other(format!(
            "the store refused part {number} {MAX_ATTEMPTS} times"
        )))
    }
}

/// Sends one part; whether the store stored it. Returns once the store has closed.
fn send(conn: &mut TcpStream, number: u32, bytes: &[u8]) -> io::Result<bool> {
    let length = u32::try_from(bytes.len())
        .map_err(|_| io::Error::other(format!("a part of {} bytes is over 4 GiB", bytes.len())))?;
    conn.write_all(&number.to_le_bytes())?;
    conn.write_all(&length.to_le_bytes())?;
    conn.write_all(bytes)?;
    conn.shutdown(Shutdown::Write)?;
    let mut answer = [0u8; 1];
    conn.read_exact(&mut answer)?;
    // The store closes after its answer: reading to the close means it has.
    let mut rest = [0u8; 1];
    if conn.read(&mut rest)? != 0 {
        return Err(io::Error::other("the store sent more than its answer"));
    }
    match answer[0] {
        STORED => Ok(true),
        REFUSED => Ok(false),
        other => Err(io::Error::other(format!(
            "the store answered {other:#04x} (expected K or R)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_parts_are_sent_again_and_every_part_is_stored_once() {
        let store = LoopbackStore::start().unwrap();
        let mut client = Uploader::new(store.addr(), OnAbort::Close);
        for i in 0..5u8 {
            client.upload_part(&[i; 1000]).unwrap();
        }
        let stats = store.stop().unwrap();
        assert_eq!(
            stats,
            StoreStats {
                connections: 8,
                stored: 5,
                refused: 3,
                bytes: 5000
            }
        );
    }
}
