//! The primary's stream to one replica: connect, say hello with the
//! placement (cluster, volume, epoch, primary, replica), then carry the
//! frames the state machine queues and bring back the replica's answers.
//! In a cluster node the connection runs inside the node's
//! [`StreamGuard`] (mutual TLS), which must show that the other end is
//! the copy's node; on its own, the engine proves the replication key
//! ([`auth`]).
//!
//! A replica that does not answer a ping within [`SILENCE`], that answers
//! pings but none of the work sent to it for [`STALL`] (a stuck apply, or
//! an answer lost on the replica's side), whose socket fails, or that
//! cannot be reached within [`CONNECT`] is lost for the state machine
//! (which then has it marked out of sync); the link keeps
//! trying to connect again, from 200 ms up to 2 s apart, until the volume
//! goes away.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use super::auth;
use super::backend::{LinkMessage, PrimaryVolume};
use super::core::ops::ReplicaId;
use super::core::primary::FromReplica;
use super::frame::{self, Frame, Refusal};
use super::guard::StreamGuard;

/// Time to connect and be answered hello.
pub const CONNECT: Duration = Duration::from_secs(2);
/// A stream quiet for this long (no answer, no pong) is lost.
pub const SILENCE: Duration = Duration::from_secs(3);
/// A stream with work unanswered and no answer to any for this long is
/// lost, pongs or not: a resync would otherwise wait for that copy for ever.
pub const STALL: Duration = Duration::from_secs(30);
/// How often an idle stream is pinged.
const PING: Duration = Duration::from_secs(1);
/// A socket write that makes no progress for this long fails the stream.
const WRITE: Duration = Duration::from_secs(5);

/// Who the link speaks for.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    pub cluster: String,
    pub me: ReplicaId,
    pub replica: ReplicaId,
    pub address: SocketAddr,
    pub key: auth::Key,
    /// The node's guard: the stream runs inside it, and the key is not
    /// used.
    pub guard: Option<Arc<dyn StreamGuard>>,
}

/// Starts the link; it runs until `stop` changes.
pub fn spawn(volume: Arc<PrimaryVolume>, cfg: LinkConfig, mut stop: watch::Receiver<bool>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    volume.attach_link(cfg.replica, tx);
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(200);
        let started = tokio::time::Instant::now();
        loop {
            let ended = tokio::select! {
                r = session(&volume, &cfg, &mut rx) => r,
                _ = stop.changed() => return,
            };
            // Just after a hand-over, the old primary's node may not have
            // reopened its copy as a replica yet: a replica whose activity
            // log is awaited (nothing is numbered meanwhile, so nothing is
            // queued for it) is not lost for that, for a moment.
            if matches!(ended, Ended::NotKeptYet)
                && started.elapsed() < NOT_KEPT_GRACE
                && volume.awaits_log(cfg.replica)
            {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    _ = stop.changed() => return,
                }
                continue;
            }
            // Lost: what was queued for the old stream is for nobody now.
            volume.lost(cfg.replica);
            while rx.try_recv().is_ok() {}
            match ended {
                Ended::Refused => {}
                Ended::NotKeptYet => {
                    tracing::info!(volume = %volume.name, replica = cfg.replica, addr = %cfg.address, "replication stream: the replica does not keep this volume")
                }
                Ended::Failed(why) => {
                    tracing::info!(volume = %volume.name, replica = cfg.replica, addr = %cfg.address, "replication stream: {why}")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    });
}

enum Ended {
    Refused,
    /// The replica's node does not keep the volume (yet).
    NotKeptYet,
    Failed(String),
}

/// How long after a link starts a replica awaited by a new primary may
/// answer that it does not keep the volume yet.
const NOT_KEPT_GRACE: Duration = Duration::from_secs(3);

/// Writes one frame of the opening exchange; whether it went within the
/// connect deadline.
async fn send_one<W: AsyncWrite + Unpin>(wr: &mut W, f: &Frame) -> bool {
    let mut out = BytesMut::new();
    frame::encode(f, &mut out);
    let sent = async {
        wr.write_all(&out).await?;
        wr.flush().await
    };
    matches!(tokio::time::timeout(CONNECT, sent).await, Ok(Ok(())))
}

/// One connection, from hello to its end.
async fn session(
    volume: &Arc<PrimaryVolume>,
    cfg: &LinkConfig,
    rx: &mut mpsc::UnboundedReceiver<LinkMessage>,
) -> Ended {
    let stream = match tokio::time::timeout(CONNECT, TcpStream::connect(cfg.address)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Ended::Failed(format!("cannot connect: {e}")),
        Err(_) => return Ended::Failed("cannot connect: timed out".into()),
    };
    let _ = stream.set_nodelay(true);
    match &cfg.guard {
        Some(guard) => {
            let guarded = match tokio::time::timeout(CONNECT, guard.connect(stream, cfg.replica)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return Ended::Failed(e),
                Err(_) => return Ended::Failed("the connection was not secured in time".into()),
            };
            let (rd, wr) = tokio::io::split(guarded);
            run(volume, cfg, rx, rd, wr).await
        }
        None => {
            let (rd, wr) = stream.into_split();
            run(volume, cfg, rx, rd, wr).await
        }
    }
}

/// The stream from hello to its end.
async fn run<R, W>(
    volume: &Arc<PrimaryVolume>,
    cfg: &LinkConfig,
    rx: &mut mpsc::UnboundedReceiver<LinkMessage>,
    mut rd: R,
    mut wr: W,
) -> Ended
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let epoch = volume.epoch();
    let primary_nonce = auth::nonce();
    let hello = Frame::Hello {
        cluster: cfg.cluster.clone(),
        volume: volume.name.clone(),
        epoch,
        primary: cfg.me,
        replica: cfg.replica,
        nonce: primary_nonce,
    };
    if !send_one(&mut wr, &hello).await {
        return Ended::Failed("cannot say hello".into());
    }
    let mut buf = BytesMut::with_capacity(64 * 1024);
    if cfg.guard.is_none() {
        if let Err(e) = prove_key(volume, cfg, epoch, (&mut rd, &mut wr), &mut buf, primary_nonce).await {
            return e;
        }
    }
    let unsettled = match tokio::time::timeout(CONNECT, frame::read(&mut rd, &mut buf, "replica")).await {
        Ok(Ok(Frame::HelloOk { unsettled })) => unsettled,
        Ok(Ok(Frame::Refused(Refusal::StaleEpoch(current)))) => {
            tracing::warn!(volume = %volume.name, replica = cfg.replica, ours = %epoch, theirs = %current, "the replica refused the stream");
            volume.received(cfg.replica, FromReplica::StaleEpoch { current });
            return Ended::Refused;
        }
        Ok(Ok(Frame::Refused(Refusal::UnknownVolume))) => return Ended::NotKeptYet,
        Ok(Ok(Frame::Refused(Refusal::Unauthenticated))) => {
            return Ended::Failed(match cfg.guard {
                Some(_) => "the replica did not take this node as the volume's primary".into(),
                None => "the replica did not take this end's proof: the nodes' replication keys differ".into(),
            });
        }
        Ok(Ok(other)) => return Ended::Failed(format!("unexpected answer to hello: {other:?}")),
        Ok(Err(e)) => return Ended::Failed(e),
        Err(_) => return Ended::Failed("no answer to hello".into()),
    };
    tracing::info!(volume = %volume.name, replica = cfg.replica, %epoch, "replication stream open");
    volume.connected(cfg.replica, unsettled);

    // The writer: frames in the order they were queued, a ping when idle.
    let (wtx, wrx) = mpsc::unbounded_channel::<Frame>();
    let writer = tokio::spawn(frame::write_all(wrx, wr, WRITE));
    let mut ping = tokio::time::interval(PING);
    let mut nonce = 0u64;
    let mut last_heard = tokio::time::Instant::now();
    let mut work = Unanswered::new(last_heard);
    let ended = loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(LinkMessage::Frame(f)) => {
                    if matches!(f, Frame::ToReplica(_)) {
                        work.sent(tokio::time::Instant::now());
                    }
                    if wtx.send(f).is_err() {
                        break Ended::Failed("cannot write to the replica".into());
                    }
                }
                Some(LinkMessage::Drop) => break Ended::Failed("closed by the primary".into()),
                None => break Ended::Failed("the volume went away".into()),
            },
            f = frame::read(&mut rd, &mut buf, "replica") => match f {
                Ok(Frame::FromReplica(answer)) => {
                    last_heard = tokio::time::Instant::now();
                    work.answered(last_heard);
                    volume.received(cfg.replica, answer);
                }
                Ok(Frame::Pong(_)) => last_heard = tokio::time::Instant::now(),
                Ok(other) => break Ended::Failed(format!("unexpected frame {other:?}")),
                Err(e) => break Ended::Failed(e),
            },
            _ = ping.tick() => {
                if last_heard.elapsed() > SILENCE {
                    break Ended::Failed(format!("silent for {SILENCE:?}"));
                }
                if work.stalled(tokio::time::Instant::now()) {
                    break Ended::Failed(format!("{} frames unanswered for {STALL:?}, though pings are", work.count));
                }
                nonce += 1;
                let _ = wtx.send(Frame::Ping(nonce));
            }
        }
    };
    writer.abort();
    ended
}

/// The key-file exchange (the engine on its own): the replica proves it
/// holds the key, then this end does.
async fn prove_key<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    volume: &Arc<PrimaryVolume>,
    cfg: &LinkConfig,
    epoch: super::core::ops::Epoch,
    (rd, wr): (&mut R, &mut W),
    buf: &mut BytesMut,
    primary_nonce: [u8; auth::NONCE],
) -> Result<(), Ended> {
    let (replica_nonce, proof) = match tokio::time::timeout(CONNECT, frame::read(rd, buf, "replica")).await {
        Ok(Ok(Frame::Challenge { nonce, proof })) => (nonce, proof),
        Ok(Ok(other)) => return Err(Ended::Failed(format!("unexpected answer to hello: {other:?}"))),
        Ok(Err(e)) => return Err(Ended::Failed(e)),
        Err(_) => return Err(Ended::Failed("no answer to hello".into())),
    };
    let exchange = auth::Exchange {
        cluster: &cfg.cluster,
        volume: &volume.name,
        epoch: epoch.0,
        primary: cfg.me,
        replica: cfg.replica,
        primary_nonce: &primary_nonce,
        replica_nonce: &replica_nonce,
    };
    if !exchange.verify(&cfg.key, auth::Side::Replica, &proof) {
        return Err(Ended::Failed("the replica did not prove that it holds the replication key".into()));
    }
    if !send_one(wr, &Frame::Proof(exchange.proof(&cfg.key, auth::Side::Primary))).await {
        return Err(Ended::Failed("cannot send this end's proof".into()));
    }
    Ok(())
}

/// Work sent on a stream and not answered yet, and since when nothing of
/// it has been: each operation, copy or verification gets one answer.
#[derive(Debug)]
struct Unanswered {
    count: u64,
    since: tokio::time::Instant,
}

impl Unanswered {
    fn new(now: tokio::time::Instant) -> Self {
        Unanswered { count: 0, since: now }
    }

    fn sent(&mut self, now: tokio::time::Instant) {
        if self.count == 0 {
            self.since = now;
        }
        self.count += 1;
    }

    fn answered(&mut self, now: tokio::time::Instant) {
        self.count = self.count.saturating_sub(1);
        self.since = now;
    }

    fn stalled(&self, now: tokio::time::Instant) -> bool {
        self.count > 0 && now.duration_since(self.since) > STALL
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_is_stalled_only_while_work_waits_with_no_answer_for_the_whole_time() {
        let t0 = tokio::time::Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut work = Unanswered::new(t0);
        assert!(!work.stalled(at(100)), "an idle stream is not stalled");
        work.sent(at(100));
        work.sent(at(101));
        assert!(!work.stalled(at(130)));
        assert!(work.stalled(at(131)), "nothing answered for 31 s");
        work.answered(at(131));
        assert!(!work.stalled(at(160)), "one answer starts the clock again");
        assert!(work.stalled(at(162)), "the other is still unanswered");
        work.answered(at(162));
        assert!(!work.stalled(at(1000)), "all answered");
        work.sent(at(1000));
        assert!(!work.stalled(at(1030)), "the clock starts at the first unanswered frame");
    }
}
