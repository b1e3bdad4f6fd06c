//! Portal listeners (RFC 7143 §3.4.1 network portals).
//!
//! One listener per configured address, shared by every target that lists
//! it; each accepted connection is served on its own task, so a misbehaving
//! initiator only ever costs its own connection.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::iscsi::{conn, registry::Registry};

/// A bound portal; dropping it stops accepting (live sessions carry on).
#[derive(Debug)]
pub struct Portal {
    pub configured: SocketAddr,
    pub bound: SocketAddr,
    task: JoinHandle<()>,
}

impl Portal {
    pub async fn open(addr: SocketAddr, registry: Arc<Registry>) -> std::io::Result<Portal> {
        let sock = match addr {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        sock.set_reuseaddr(true)?;
        sock.bind(addr)?;
        let listener: TcpListener = sock.listen(1024)?;
        let bound = listener.local_addr()?;
        tracing::info!(portal = %bound, "listening");
        let task = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((s, peer)) => {
                        let local = s.local_addr().unwrap_or(bound);
                        tokio::spawn(conn::serve(s, peer, local, registry.clone()));
                    }
                    Err(e) => {
                        tracing::warn!(portal = %bound, "accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                }
            }
        });
        Ok(Portal { configured: addr, bound, task })
    }
}

impl Portal {
    /// Stops accepting and waits until the listening socket is closed, so
    /// the address can be bound again right away.
    pub async fn close(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Portal {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Raises this process's soft limit on open files to its hard limit, so
/// that a flood of connections runs into the engine's own caps
/// ([`crate::iscsi::admission::Limits`]) long before the process runs out
/// of descriptors for its database, its HTTP listener or its files.
/// Returns the (old, new) soft limit.
pub fn raise_open_file_limit() -> std::io::Result<(u64, u64)> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read or write the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let old = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok((old, lim.rlim_cur))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_open_file_limit_is_raised_to_the_hard_limit() {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: as in raise_open_file_limit.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        if lim.rlim_max > 256 {
            // Start from a low soft limit, as a default service manager might.
            let low = libc::rlimit { rlim_cur: 256, rlim_max: lim.rlim_max };
            assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &low) }, 0);
        }
        let (old, new) = super::raise_open_file_limit().unwrap();
        assert!(old <= new);
        assert_eq!(new, lim.rlim_max, "the soft limit is the hard one now");
        let mut after = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut after) }, 0);
        assert_eq!(after.rlim_cur, after.rlim_max);
    }
}
