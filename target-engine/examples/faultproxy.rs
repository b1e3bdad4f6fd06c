//! A TCP proxy that fault tests put between two nodes, to hold a link
//! without closing it: SIGUSR1 holds it (nothing more is forwarded either
//! way, and nothing is read, so the sender's socket fills as on a link
//! that went silent), SIGUSR2 lets it pass again. What it held is lost
//! when the proxy is killed, as what was on a cable is when a switch dies.
//!
//! ```text
//! cargo run --features test-util --example faultproxy -- \
//!     --listen 127.0.0.1:4000 --to 127.0.2.1:3270
//! ```
//!
//! It prints `faultproxy: listening on ADDR` once it accepts connections.
//! `scripts/replication-test.sh` holds the old primary's stream to one
//! replica with it, so that a write in flight reaches the other alone.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

fn usage() -> ! {
    eprintln!("usage: faultproxy --listen ADDR --to ADDR");
    std::process::exit(2)
}

fn args() -> (SocketAddr, SocketAddr) {
    let mut listen = None;
    let mut to = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| usage());
        match flag.as_str() {
            "--listen" => listen = Some(value),
            "--to" => to = Some(value),
            _ => usage(),
        }
    }
    (listen.unwrap_or_else(|| usage()), to.unwrap_or_else(|| usage()))
}

/// Copies `from` to `to` while the link is not held.
async fn pass(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut held: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if held.wait_for(|h| !*h).await.is_err() {
            return;
        }
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
            // Held while waiting to read: stop reading.
            _ = held.wait_for(|h| *h) => continue,
        };
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let (listen, target) = args();
    let listener = TcpListener::bind(listen).await.unwrap_or_else(|e| {
        eprintln!("faultproxy: cannot listen on {listen}: {e}");
        std::process::exit(1)
    });
    let (hold, held) = watch::channel(false);
    let mut usr1 = signal(SignalKind::user_defined1()).expect("SIGUSR1");
    let mut usr2 = signal(SignalKind::user_defined2()).expect("SIGUSR2");
    println!("faultproxy: listening on {}", listener.local_addr().expect("bound"));
    loop {
        tokio::select! {
            _ = usr1.recv() => {
                let _ = hold.send(true);
                println!("faultproxy: holding");
            }
            _ = usr2.recv() => {
                let _ = hold.send(false);
                println!("faultproxy: passing");
            }
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { continue };
                let held = held.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else { return };
                    let _ = (client.set_nodelay(true), server.set_nodelay(true));
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::join!(pass(cr, sw, held.clone()), pass(sr, cw, held));
                });
            }
        }
    }
}
