//! A TCP proxy that fault tests put between two nodes, to make a link
//! slow, lossy, one-way or silent without closing it (`tc netem` is not
//! available on the machines we test on).
//!
//! ```text
//! cargo run --features test-util --example faultproxy -- \
//!     --listen 127.0.0.1:4000 --to 127.0.2.1:3270 [--control 127.0.0.1:4001]
//! ```
//!
//! It prints `faultproxy: listening on ADDR` once it accepts connections.
//! The faults apply at once to every connection, open or new:
//!
//! - **held** (SIGUSR1, or `hold` on the control port): nothing more is
//!   forwarded either way, and nothing is read, so the sender's socket
//!   fills as on a link that went silent. SIGUSR2 (or `pass`) lets it pass
//!   again. What it held is lost when the proxy is killed, as what was on a
//!   cable is when a switch dies.
//! - **one-way** (`hold up`, `hold down`): only one direction is held; "up"
//!   is from the side that connected to the proxy towards `--to`, "down"
//!   the answers. The other direction flows: a peer goes on hearing from
//!   a node that no longer hears it.
//! - **delay** (`delay MS`): every chunk read is written MS milliseconds
//!   later, in order, both ways, so one round trip takes 2 × MS more.
//! - **loss** (`loss PERCENT`): TCP does not lose bytes, it sends a lost
//!   segment again after a retransmission timeout, and what follows waits
//!   behind it. So each chunk, with that probability, is written
//!   [`RETRANSMIT`] later, and the chunks behind it wait for it.
//!
//! The control port takes one command per line (`pass`, `hold`,
//! `hold up`, `hold down`, `delay MS`, `loss PERCENT`) and answers `ok` or
//! `error: …`. `pass` clears every fault. What the proxy holds in flight is
//! bounded by [`IN_FLIGHT_CHUNKS`] chunks of at most 64 KiB per direction
//! of a connection; behind that, it stops reading.
//!
//! `scripts/replication-test.sh` puts it on the primary's stream to one
//! replica: a write in flight that reaches the other alone, and a slow,
//! lossy and one-way link.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// How much later a "lost" chunk is written: Linux's minimum
/// retransmission timeout.
const RETRANSMIT: Duration = Duration::from_millis(200);
/// Chunks read and not yet written, per direction of a connection.
const IN_FLIGHT_CHUNKS: usize = 64;
/// A control command longer than this is refused.
const MAX_COMMAND: usize = 64;

/// The faults on the link, for both directions of every connection.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Faults {
    hold_up: bool,
    hold_down: bool,
    delay: Duration,
    loss_percent: u8,
}

impl Faults {
    /// The faults after one control command, or why it is refused.
    fn apply(self, command: &str) -> Result<Faults, String> {
        let words: Vec<&str> = command.split_whitespace().collect();
        let mut next = self;
        match words.as_slice() {
            ["pass"] => next = Faults::default(),
            ["hold"] => (next.hold_up, next.hold_down) = (true, true),
            ["hold", "up"] => next.hold_up = true,
            ["hold", "down"] => next.hold_down = true,
            ["delay", ms] => {
                let ms: u64 = ms.parse().map_err(|_| format!("delay wants milliseconds, not {ms:?}"))?;
                if ms > 60_000 {
                    return Err("a delay is at most 60000 ms".into());
                }
                next.delay = Duration::from_millis(ms);
            }
            ["loss", pct] => {
                let pct: u8 = pct.parse().map_err(|_| format!("loss wants a percentage, not {pct:?}"))?;
                if pct > 100 {
                    return Err("a loss is at most 100 percent".into());
                }
                next.loss_percent = pct;
            }
            _ => return Err(format!("unknown command {command:?}")),
        }
        Ok(next)
    }

    fn held(&self, way: Way) -> bool {
        match way {
            Way::Up => self.hold_up,
            Way::Down => self.hold_down,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Way {
    Up,
    Down,
}

fn usage() -> ! {
    eprintln!("usage: faultproxy --listen ADDR --to ADDR [--control ADDR]");
    std::process::exit(2)
}

struct Args {
    listen: SocketAddr,
    to: SocketAddr,
    control: Option<SocketAddr>,
}

fn args() -> Args {
    let (mut listen, mut to, mut control) = (None, None, None);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| usage());
        match flag.as_str() {
            "--listen" => listen = Some(value),
            "--to" => to = Some(value),
            "--control" => control = Some(value),
            _ => usage(),
        }
    }
    Args { listen: listen.unwrap_or_else(|| usage()), to: to.unwrap_or_else(|| usage()), control }
}

/// Whether this chunk is "lost" (sent again after [`RETRANSMIT`]).
fn lost(percent: u8) -> bool {
    if percent == 0 {
        return false;
    }
    let mut b = [0u8; 2];
    getrandom::getrandom(&mut b).expect("random bytes");
    u16::from_le_bytes(b) % 100 < u16::from(percent)
}

/// Reads `from` while its direction is not held, and queues each chunk
/// with the time it may be written.
async fn read_side(
    mut from: OwnedReadHalf,
    way: Way,
    mut faults: watch::Receiver<Faults>,
    out: mpsc::Sender<(Instant, Vec<u8>)>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if faults.wait_for(|f| !f.held(way)).await.is_err() {
            return;
        }
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            // Held while waiting to read: stop reading.
            _ = faults.wait_for(|f| f.held(way)) => continue,
        };
        let now = *faults.borrow();
        let mut due = Instant::now() + now.delay;
        if lost(now.loss_percent) {
            due += RETRANSMIT;
        }
        if out.send((due, buf[..n].to_vec())).await.is_err() {
            return;
        }
    }
}

/// Writes each queued chunk once it is due and its direction not held.
async fn write_side(
    mut to: OwnedWriteHalf,
    way: Way,
    mut faults: watch::Receiver<Faults>,
    mut queue: mpsc::Receiver<(Instant, Vec<u8>)>,
) {
    // Chunks are queued in order; a late one holds back those behind it.
    let mut not_before = Instant::now();
    while let Some((due, chunk)) = queue.recv().await {
        not_before = not_before.max(due);
        tokio::time::sleep_until(not_before).await;
        if faults.wait_for(|f| !f.held(way)).await.is_err() {
            break;
        }
        if to.write_all(&chunk).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

async fn forward(from: OwnedReadHalf, to: OwnedWriteHalf, way: Way, faults: watch::Receiver<Faults>) {
    let (tx, rx) = mpsc::channel(IN_FLIGHT_CHUNKS);
    tokio::join!(read_side(from, way, faults.clone(), tx), write_side(to, way, faults, rx));
}

/// Serves one control connection: a command per line, an answer per line.
async fn control_session(stream: TcpStream, faults: watch::Sender<Faults>) {
    let (rd, mut wr) = stream.into_split();
    let mut lines = BufReader::new(rd.take(64 * 1024)).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let answer = if line.len() > MAX_COMMAND {
            "error: command too long".to_string()
        } else {
            let applied = faults.borrow().apply(line.trim());
            match applied {
                Ok(next) => {
                    faults.send_replace(next);
                    println!("faultproxy: {} -> {next:?}", line.trim());
                    "ok".to_string()
                }
                Err(why) => format!("error: {why}"),
            }
        };
        if wr.write_all(format!("{answer}\n").as_bytes()).await.is_err() {
            return;
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = args();
    let listener = TcpListener::bind(args.listen).await.unwrap_or_else(|e| {
        eprintln!("faultproxy: cannot listen on {}: {e}", args.listen);
        std::process::exit(1)
    });
    let control = match args.control {
        Some(addr) => Some(TcpListener::bind(addr).await.unwrap_or_else(|e| {
            eprintln!("faultproxy: cannot listen on {addr}: {e}");
            std::process::exit(1)
        })),
        None => None,
    };
    let (faults, watching) = watch::channel(Faults::default());
    let mut usr1 = signal(SignalKind::user_defined1()).expect("SIGUSR1");
    let mut usr2 = signal(SignalKind::user_defined2()).expect("SIGUSR2");
    println!("faultproxy: listening on {}", listener.local_addr().expect("bound"));
    loop {
        tokio::select! {
            _ = usr1.recv() => {
                faults.send_modify(|f| (f.hold_up, f.hold_down) = (true, true));
                println!("faultproxy: holding");
            }
            _ = usr2.recv() => {
                faults.send_replace(Faults::default());
                println!("faultproxy: passing");
            }
            accepted = async { control.as_ref().expect("guarded").accept().await }, if control.is_some() => {
                let Ok((stream, _)) = accepted else { continue };
                tokio::spawn(control_session(stream, faults.clone()));
            }
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { continue };
                let watching = watching.clone();
                let target = args.to;
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else { return };
                    let _ = (client.set_nodelay(true), server.set_nodelay(true));
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::join!(
                        forward(cr, sw, Way::Up, watching.clone()),
                        forward(sr, cw, Way::Down, watching),
                    );
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_change_the_faults() {
        let f = Faults::default();
        let f = f.apply("hold down").unwrap();
        assert!(f.hold_down && !f.hold_up);
        let f = f.apply("delay 25").unwrap().apply("loss 10").unwrap();
        assert_eq!((f.delay, f.loss_percent), (Duration::from_millis(25), 10));
        assert_eq!(f.apply("pass").unwrap(), Faults::default());
        assert!(f.apply("loss 101").is_err());
        assert!(f.apply("delay soon").is_err());
        assert!(f.apply("hold sideways").is_err());
    }
}
