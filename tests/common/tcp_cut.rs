//! A TCP relay on loopback that a test can cut and heal: the network between a gateway and
//! a server (etcd) failing and coming back, without touching either process.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

pub struct TcpCut {
    addr: SocketAddr,
    open: Arc<AtomicBool>,
    stopped: Arc<AtomicBool>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
}

impl TcpCut {
    /// Relay connections made to [`Self::addr`] to `target`.
    pub fn start(target: SocketAddr) -> TcpCut {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        let addr = listener.local_addr().expect("relay address");
        let open = Arc::new(AtomicBool::new(true));
        let stopped = Arc::new(AtomicBool::new(false));
        let streams = Arc::new(Mutex::new(Vec::new()));
        let (open2, stopped2, streams2) = (open.clone(), stopped.clone(), streams.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stopped2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                if !open2.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                let pair = (client.try_clone(), server.try_clone());
                let (Ok(client2), Ok(server2)) = pair else {
                    continue;
                };
                if let Ok(mut held) = streams2.lock() {
                    held.extend(
                        [client.try_clone(), server.try_clone()]
                            .into_iter()
                            .flatten(),
                    );
                }
                relay(client, server2);
                relay(server, client2);
            }
        });
        TcpCut {
            addr,
            open,
            stopped,
            streams,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Break every relayed connection and refuse new ones until [`Self::heal`].
    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        if let Ok(mut held) = self.streams.lock() {
            for stream in held.drain(..) {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }

    pub fn heal(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

impl Drop for TcpCut {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.cut();
        // Wakes the accept loop, which then sees `stopped`.
        let _ = TcpStream::connect(self.addr);
    }
}

fn relay(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let _: io::Result<u64> = io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Both);
    });
}
