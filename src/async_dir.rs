//! Async face for tokio users (feature `async`): an [`AsyncDirectory`] trait
//! and [`BlockingBridge`], which runs any [`Directory`]'s blocking calls on
//! tokio's blocking pool, plus [`append_durable`] for awaiting a durable WAL
//! append without blocking the runtime.
//!
//! ```
//! use zerodur::async_dir::{AsyncDirectory, BlockingBridge};
//! use zerodur::MemoryDirectory;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> zerodur::Result<()> {
//! let bridge = BlockingBridge::new(MemoryDirectory::new());
//! bridge.atomic_write("data.bin", b"hello".to_vec()).await?;
//! assert_eq!(bridge.read("data.bin").await?, b"hello");
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;

use crate::directory::Directory;
use crate::error::{Error, IoOp, Result};
use crate::wal::{EntryId, Wal};

/// A boxed, `Send` future, as returned by [`AsyncDirectory`] methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The async counterpart of the whole-file operations of [`Directory`]. Each
/// method promises the same durability as its blocking namesake.
pub trait AsyncDirectory: Send + Sync {
    /// [`Directory::read`].
    fn read(&self, path: &str) -> BoxFuture<'_, Result<Vec<u8>>>;
    /// [`Directory::atomic_write`]: durable (data and name) when it resolves.
    fn atomic_write(&self, path: &str, data: Vec<u8>) -> BoxFuture<'_, Result<()>>;
    /// [`Directory::exists`].
    fn exists(&self, path: &str) -> BoxFuture<'_, Result<bool>>;
    /// [`Directory::list`].
    fn list(&self, dir: &str) -> BoxFuture<'_, Result<Vec<String>>>;
    /// [`Directory::remove`].
    fn remove(&self, path: &str) -> BoxFuture<'_, Result<()>>;
    /// [`Directory::rename`].
    fn rename(&self, from: &str, to: &str) -> BoxFuture<'_, Result<()>>;
    /// [`Directory::sync_file`].
    fn sync_file(&self, path: &str) -> BoxFuture<'_, Result<()>>;
    /// [`Directory::sync_dir`].
    fn sync_dir(&self, dir: &str) -> BoxFuture<'_, Result<()>>;
    /// [`Directory::create_dir_all`].
    fn create_dir_all(&self, path: &str) -> BoxFuture<'_, Result<()>>;
}

/// Runs a blocking [`Directory`] on tokio's blocking pool.
#[derive(Debug, Clone)]
pub struct BlockingBridge {
    inner: Arc<dyn Directory>,
}

impl BlockingBridge {
    /// Bridges `dir`.
    pub fn new(dir: impl Directory + 'static) -> BlockingBridge {
        BlockingBridge {
            inner: Arc::new(dir),
        }
    }

    /// Bridges a shared directory.
    pub fn from_arc(dir: Arc<dyn Directory>) -> BlockingBridge {
        BlockingBridge { inner: dir }
    }

    /// The bridged directory.
    pub fn inner(&self) -> &Arc<dyn Directory> {
        &self.inner
    }

    fn run<T, F>(&self, op: IoOp, path: &str, f: F) -> BoxFuture<'static, Result<T>>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Directory, &str) -> Result<T> + Send + 'static,
    {
        let dir = Arc::clone(&self.inner);
        let path = path.to_owned();
        Box::pin(async move {
            let p = path.clone();
            tokio::task::spawn_blocking(move || f(&*dir, &p))
                .await
                .map_err(|e| join_error(op, &path, e))?
        })
    }
}

fn join_error(op: IoOp, path: &str, e: tokio::task::JoinError) -> Error {
    Error::io(
        op,
        path,
        io::Error::other(format!("blocking task failed: {e}")),
    )
}

impl AsyncDirectory for BlockingBridge {
    fn read(&self, path: &str) -> BoxFuture<'_, Result<Vec<u8>>> {
        self.run(IoOp::Read, path, |d, p| d.read(p))
    }

    fn atomic_write(&self, path: &str, data: Vec<u8>) -> BoxFuture<'_, Result<()>> {
        self.run(IoOp::Write, path, move |d, p| d.atomic_write(p, &data))
    }

    fn exists(&self, path: &str) -> BoxFuture<'_, Result<bool>> {
        self.run(IoOp::Metadata, path, |d, p| d.exists(p))
    }

    fn list(&self, dir: &str) -> BoxFuture<'_, Result<Vec<String>>> {
        self.run(IoOp::Directory, dir, |d, p| d.list(p))
    }

    fn remove(&self, path: &str) -> BoxFuture<'_, Result<()>> {
        self.run(IoOp::Remove, path, |d, p| d.remove(p))
    }

    fn rename(&self, from: &str, to: &str) -> BoxFuture<'_, Result<()>> {
        let to = to.to_owned();
        self.run(IoOp::Rename, from, move |d, p| d.rename(p, &to))
    }

    fn sync_file(&self, path: &str) -> BoxFuture<'_, Result<()>> {
        self.run(IoOp::SyncFile, path, |d, p| d.sync_file(p))
    }

    fn sync_dir(&self, dir: &str) -> BoxFuture<'_, Result<()>> {
        self.run(IoOp::SyncDir, dir, |d, p| d.sync_dir(p))
    }

    fn create_dir_all(&self, path: &str) -> BoxFuture<'_, Result<()>> {
        self.run(IoOp::Directory, path, |d, p| d.create_dir_all(p))
    }
}

/// Appends `payload` to a shared [`Wal`] and resolves once it is durable,
/// without blocking the async runtime: the append and the group-commit wait
/// run on the blocking pool, and concurrent callers share barriers exactly as
/// threads do.
///
/// ```
/// use std::sync::Arc;
/// use zerodur::wal::{Wal, WalOptions};
/// use zerodur::{Directory, MemoryDirectory};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> zerodur::Result<()> {
/// let dir: Arc<dyn Directory> = Arc::new(MemoryDirectory::new());
/// let wal = Arc::new(Wal::open(dir, WalOptions::new("wal"))?);
/// let id = zerodur::async_dir::append_durable(&wal, b"event".to_vec()).await?;
/// assert_eq!(wal.durable_entry_id(), Some(id));
/// # Ok(())
/// # }
/// ```
pub async fn append_durable(wal: &Arc<Wal>, payload: Vec<u8>) -> Result<EntryId> {
    let wal = Arc::clone(wal);
    tokio::task::spawn_blocking(move || wal.append_durable(&payload))
        .await
        .map_err(|e| join_error(IoOp::Write, "wal", e))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryDirectory;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bridge_keeps_blocking_semantics_and_errors() {
        let bridge = BlockingBridge::new(MemoryDirectory::new());
        bridge.create_dir_all("a/b").await.unwrap();
        bridge.atomic_write("a/b/f", b"x".to_vec()).await.unwrap();
        assert!(bridge.exists("a/b/f").await.unwrap());
        assert_eq!(bridge.list("a/b").await.unwrap(), ["f"]);
        bridge.rename("a/b/f", "a/g").await.unwrap();
        bridge.sync_dir("a").await.unwrap();
        assert_eq!(bridge.read("a/g").await.unwrap(), b"x");
        bridge.remove("a/g").await.unwrap();
        assert!(bridge.read("a/g").await.unwrap_err().is_not_found());
        assert!(matches!(
            bridge.read("../x").await,
            Err(Error::InvalidPath { .. })
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_async_appends_are_all_durable() {
        let dir: Arc<dyn Directory> = Arc::new(MemoryDirectory::new());
        let wal = Arc::new(Wal::open(dir, crate::wal::WalOptions::new("wal")).unwrap());
        let tasks: Vec<_> = (0..16u8)
            .map(|i| {
                let wal = Arc::clone(&wal);
                tokio::spawn(async move { append_durable(&wal, vec![i; 10]).await })
            })
            .collect();
        let mut ids = Vec::new();
        for t in tasks {
            ids.push(t.await.unwrap().unwrap().get());
        }
        ids.sort();
        assert_eq!(ids, (1..=16).collect::<Vec<_>>());
        assert_eq!(wal.durable_entry_id().map(|e| e.get()), Some(16));
    }
}
