//! A backend on a (sparse) regular file.
//!
//! Positioned I/O (`pread`/`pwrite`) runs on tokio's blocking pool so the
//! async workers never wait on the disk. Durability (FUA, SYNCHRONIZE CACHE,
//! SBC-3 §5.22) is `fdatasync`. Unmap punches holes with
//! `fallocate(PUNCH_HOLE)` and falls back to writing zeros where the file
//! system cannot.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};

use super::{BackendError, BlockBackend, Run};

/// A volume stored in one file.
#[derive(Debug)]
pub struct FileBackend {
    file: Arc<File>,
    path: PathBuf,
    size: AtomicU64,
    read_only: bool,
}

impl FileBackend {
    /// Opens `path` as a volume of `size` bytes, creating it sparse if it is
    /// missing and extending it (sparse) if it is shorter. A longer file is
    /// left alone; only its first `size` bytes are used.
    pub fn open(path: impl AsRef<Path>, size: u64, read_only: bool) -> Result<Self, BackendError> {
        let path = path.as_ref().to_path_buf();
        let file = if read_only {
            OpenOptions::new().read(true).open(&path)?
        } else {
            // A new image is private to the node (mode 0600).
            OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(&path)?
        };
        if !read_only && file.metadata()?.len() < size {
            file.set_len(size)?;
        }
        Ok(FileBackend { file: Arc::new(file), path, size: AtomicU64::new(size), read_only })
    }

    /// The path the volume lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn check(&self, offset: u64, len: u64) -> Result<(), BackendError> {
        let size = self.size();
        match offset.checked_add(len) {
            Some(end) if end <= size => Ok(()),
            _ => Err(BackendError::OutOfRange { offset, len, size }),
        }
    }

    fn check_writable(&self) -> Result<(), BackendError> {
        if self.read_only {
            Err(BackendError::ReadOnly)
        } else {
            Ok(())
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&File) -> std::io::Result<T> + Send + 'static,
    ) -> Result<T, BackendError> {
        let file = Arc::clone(&self.file);
        match tokio::task::spawn_blocking(move || f(&file)).await {
            Ok(r) => Ok(r?),
            Err(e) => Err(BackendError::Io(std::io::Error::other(e))),
        }
    }
}

/// Reads as much as the file holds; whatever lies past its end stays zero.
fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn punch_hole(file: &File, offset: u64, len: u64) -> std::io::Result<()> {
    let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    // SAFETY: fallocate only reads its integer arguments; the descriptor is
    // owned by `file`, which outlives the call.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), mode, offset as libc::off_t, len as libc::off_t) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn zero_fill(file: &File, offset: u64, len: u64) -> std::io::Result<()> {
    const STEP: u64 = 1 << 20;
    let zeros = vec![0u8; STEP.min(len) as usize];
    let mut pos = offset;
    while pos < offset + len {
        let n = STEP.min(offset + len - pos) as usize;
        file.write_all_at(&zeros[..n], pos)?;
        pos += n as u64;
    }
    Ok(())
}

/// `lseek` with SEEK_DATA / SEEK_HOLE; `None` when there is no more data.
fn seek(file: &File, pos: u64, whence: libc::c_int) -> std::io::Result<Option<u64>> {
    // SAFETY: lseek only reads its integer arguments; the descriptor is owned by `file`.
    let r = unsafe { libc::lseek(file.as_raw_fd(), pos as libc::off_t, whence) };
    if r >= 0 {
        return Ok(Some(r as u64));
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ENXIO) {
        Ok(None)
    } else {
        Err(e)
    }
}

fn allocation_runs(file: &File, offset: u64, len: u64, max_runs: usize) -> std::io::Result<Vec<Run>> {
    let end = offset + len;
    let mut runs = Vec::new();
    let mut pos = offset;
    while pos < end && runs.len() < max_runs {
        let data = match seek(file, pos, libc::SEEK_DATA) {
            Ok(d) => d.unwrap_or(end).min(end),
            // No SEEK_DATA support: everything counts as allocated.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => pos,
            Err(e) => return Err(e),
        };
        if data > pos {
            runs.push(Run { len: data - pos, mapped: false });
            pos = data;
            continue;
        }
        let hole = match seek(file, pos, libc::SEEK_HOLE) {
            Ok(h) => h.unwrap_or(end).min(end),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => end,
            Err(e) => return Err(e),
        };
        let hole = hole.max(pos + 1);
        runs.push(Run { len: hole - pos, mapped: true });
        pos = hole;
    }
    Ok(runs)
}

#[async_trait]
impl BlockBackend for FileBackend {
    fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    async fn read(&self, offset: u64, len: usize) -> Result<BytesMut, BackendError> {
        self.check(offset, len as u64)?;
        self.blocking(move |f| {
            let mut buf = BytesMut::zeroed(len);
            read_full_at(f, &mut buf, offset)?;
            Ok(buf)
        })
        .await
    }

    async fn write(&self, offset: u64, data: Bytes, fua: bool) -> Result<(), BackendError> {
        self.check_writable()?;
        self.check(offset, data.len() as u64)?;
        self.blocking(move |f| {
            f.write_all_at(&data, offset)?;
            if fua {
                f.sync_data()?;
            }
            Ok(())
        })
        .await
    }

    async fn flush(&self) -> Result<(), BackendError> {
        if self.read_only {
            return Ok(());
        }
        self.blocking(|f| f.sync_data()).await
    }

    async fn unmap(&self, offset: u64, len: u64) -> Result<(), BackendError> {
        self.check_writable()?;
        self.check(offset, len)?;
        self.blocking(move |f| match punch_hole(f, offset, len) {
            Ok(()) => Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS)) => {
                zero_fill(f, offset, len)
            }
            Err(e) => Err(e),
        })
        .await
    }

    async fn allocation(&self, offset: u64, len: u64, max_runs: usize) -> Result<Vec<Run>, BackendError> {
        self.check(offset, len)?;
        self.blocking(move |f| allocation_runs(f, offset, len, max_runs)).await
    }

    async fn resize(&self, new_size: u64) -> Result<(), BackendError> {
        self.check_writable()?;
        let old = self.size();
        if new_size < old {
            return Err(BackendError::Resize { requested: new_size, reason: "shrinking is not supported".into() });
        }
        self.blocking(move |f| {
            if f.metadata()?.len() < new_size {
                f.set_len(new_size)?;
            }
            Ok(())
        })
        .await?;
        self.size.store(new_size, Ordering::Release);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("portico-file-backend-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        dir
    }

    #[tokio::test]
    async fn creates_sparse_and_round_trips() {
        let p = temp_path("rt");
        let b = FileBackend::open(&p, 16 << 20, false).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 16 << 20);
        assert!(b.read(1 << 20, 4096).await.unwrap().iter().all(|&x| x == 0));
        b.write(4096, Bytes::from(vec![0xabu8; 8192]), true).await.unwrap();
        b.flush().await.unwrap();
        let back = b.read(4000, 8400).await.unwrap();
        assert!(back[..96].iter().all(|&x| x == 0));
        assert!(back[96..96 + 8192].iter().all(|&x| x == 0xab));
        assert!(matches!(b.read(16 << 20, 1).await, Err(BackendError::OutOfRange { .. })));
        let _ = std::fs::remove_file(&p);
    }

    #[tokio::test]
    async fn unmap_reads_back_zero() {
        let p = temp_path("unmap");
        let b = FileBackend::open(&p, 1 << 20, false).unwrap();
        b.write(0, Bytes::from(vec![1u8; 1 << 20]), false).await.unwrap();
        b.unmap(4096, 65536).await.unwrap();
        let back = b.read(0, 1 << 20).await.unwrap();
        assert!(back[..4096].iter().all(|&x| x == 1));
        assert!(back[4096..69632].iter().all(|&x| x == 0));
        assert!(back[69632..].iter().all(|&x| x == 1));
        let _ = std::fs::remove_file(&p);
    }

    #[tokio::test]
    async fn allocation_sees_holes() {
        let p = temp_path("alloc");
        let b = FileBackend::open(&p, 1 << 20, false).unwrap();
        b.write(65536, Bytes::from(vec![1u8; 65536]), false).await.unwrap();
        let runs = b.allocation(0, 1 << 20, 16).await.unwrap();
        assert_eq!(runs.iter().map(|r| r.len).sum::<u64>(), 1 << 20);
        // Where the file system reports holes, the written range is the mapped one.
        if runs.len() > 1 {
            assert!(!runs[0].mapped);
            assert_eq!(runs[0].len, 65536);
            assert!(runs[1].mapped);
        }
        let _ = std::fs::remove_file(&p);
    }

    #[tokio::test]
    async fn read_only_refuses_writes_and_existing_file_keeps_data() {
        let p = temp_path("ro");
        {
            let b = FileBackend::open(&p, 8192, false).unwrap();
            b.write(0, Bytes::from_static(b"hello"), false).await.unwrap();
        }
        let b = FileBackend::open(&p, 8192, true).unwrap();
        assert_eq!(&b.read(0, 5).await.unwrap()[..], b"hello");
        assert!(matches!(b.write(0, Bytes::from_static(b"x"), false).await, Err(BackendError::ReadOnly)));
        assert!(matches!(b.resize(1 << 20).await, Err(BackendError::ReadOnly)));
        let _ = std::fs::remove_file(&p);
    }

    #[tokio::test]
    async fn resize_grows_file() {
        let p = temp_path("grow");
        let b = FileBackend::open(&p, 4096, false).unwrap();
        b.resize(1 << 20).await.unwrap();
        assert_eq!(b.size(), 1 << 20);
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 1 << 20);
        assert!(b.read((1 << 20) - 512, 512).await.is_ok());
        assert!(b.resize(100).await.is_err());
        let _ = std::fs::remove_file(&p);
    }
}
