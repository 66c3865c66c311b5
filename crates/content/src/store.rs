//! On-disk model store keyed by CID, with atomic writes, a byte budget and LRU eviction.
//!
//! Layout under the store directory:
//! - `blobs/<cid>`: the model file bytes;
//! - `meta/<cid>.json`: size, sha256, timestamps;
//! - `tmp/`: files being written; anything left there at open is from a crash and is removed.
//!
//! A blob becomes visible only by `rename` after `fsync`, and only after its CID is known
//! (computed while copying, or verified by the fetcher), so a crash never exposes a partial
//! file. The store is safe for concurrent use within one process. Another process may add
//! models to the directory while it is open (`attesta models add` beside a running node): a
//! lookup that misses the in-memory index checks the disk for that CID. Removal and eviction
//! must stay with one process.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::cid::Cid;
use crate::importer::{ContentError, Importer, Profile};

/// Store failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A filesystem operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The model alone is larger than the store's byte budget.
    #[error("model of {size} bytes exceeds the store budget of {max} bytes")]
    TooLarge {
        /// Model size.
        size: u64,
        /// Budget.
        max: u64,
    },
    /// The model is pinned (in use) and cannot be removed.
    #[error("model {0} is in use")]
    Pinned(Cid),
    /// Computing the CID while copying failed.
    #[error(transparent)]
    Content(#[from] ContentError),
}

impl StoreError {
    fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
        move |source| StoreError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A source of wall-clock time, injectable so tests control LRU order.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> SystemTime + Send + Sync>);

impl Clock {
    /// A clock backed by `f`.
    pub fn from_fn(f: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        Clock(Arc::new(f))
    }

    /// The current time.
    pub fn now(&self) -> SystemTime {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::from_fn(SystemTime::now)
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

/// Store settings.
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    /// Disk budget in bytes for model files; `None` means unlimited.
    pub max_bytes: Option<u64>,
    /// Time source for `added_at` / `last_used`.
    pub clock: Clock,
}

/// A model present in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredModel {
    /// The model's CID.
    pub cid: Cid,
    /// Path of the model file (read-only by convention).
    pub path: PathBuf,
    /// File size in bytes.
    pub size: u64,
    /// SHA-256 of the file bytes.
    pub sha256: [u8; 32],
    /// When it was stored.
    pub added_at: SystemTime,
    /// When it was last added, fetched or looked up.
    pub last_used: SystemTime,
}

impl StoredModel {
    /// The SHA-256 as lower-case hex (OpenGradient's `model_hash`).
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }
}

/// What a garbage collection did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Models evicted to meet the budget, least recently used first.
    pub evicted: Vec<Cid>,
    /// Bytes freed by eviction.
    pub freed_bytes: u64,
    /// Stale temporary files removed.
    pub tmp_removed: usize,
    /// Bytes held after collection.
    pub total_bytes: u64,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Meta {
    cid: Cid,
    size: u64,
    sha256: String,
    added_at_ms: u64,
    last_used_ms: u64,
}

#[derive(Debug, Default)]
struct State {
    index: BTreeMap<Cid, Meta>,
    pins: HashMap<Cid, usize>,
    /// Temp files being written right now (gc must not touch them).
    active_tmp: HashSet<PathBuf>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    opts: StoreOptions,
    state: Mutex<State>,
    tmp_counter: AtomicU64,
}

/// A content-addressed model store; cheap to clone, shareable across threads and tasks.
#[derive(Debug, Clone)]
pub struct ModelStore {
    inner: Arc<Inner>,
}

fn to_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn from_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StoreError::io("fsync", dir))
}

impl ModelStore {
    /// Opens (creating if needed) a store at `dir`, removing leftovers of interrupted writes.
    pub fn open(dir: impl Into<PathBuf>, opts: StoreOptions) -> Result<ModelStore, StoreError> {
        let dir = dir.into();
        for sub in ["blobs", "meta", "tmp"] {
            let p = dir.join(sub);
            fs::create_dir_all(&p).map_err(StoreError::io("create", &p))?;
        }
        let store = ModelStore {
            inner: Arc::new(Inner {
                dir,
                opts,
                state: Mutex::new(State::default()),
                tmp_counter: AtomicU64::new(0),
            }),
        };
        store.clean_tmp()?;
        store.load_index()?;
        Ok(store)
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The configured byte budget.
    pub fn max_bytes(&self) -> Option<u64> {
        self.inner.opts.max_bytes
    }

    fn blob_path(&self, cid: &Cid) -> PathBuf {
        self.inner.dir.join("blobs").join(cid.to_string())
    }

    fn meta_path(&self, cid: &Cid) -> PathBuf {
        self.inner.dir.join("meta").join(format!("{cid}.json"))
    }

    fn tmp_dir(&self) -> PathBuf {
        self.inner.dir.join("tmp")
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the index half-updated in a way that
        // matters: every entry is written to disk before it is inserted.
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The metadata at `path` if it names a complete blob under its own file name.
    fn read_valid_meta(&self, path: &Path) -> Option<Meta> {
        let meta: Option<Meta> = fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        meta.filter(|m| {
            path.file_name().and_then(|n| n.to_str()) == Some(&format!("{}.json", m.cid))
                && fs::metadata(self.blob_path(&m.cid)).is_ok_and(|md| md.len() == m.size)
        })
    }

    /// Looks for a model another process (`attesta models add` on the same directory) has
    /// committed since the index was read. Its metadata is written last, by rename, after the
    /// blob: when it is there and valid, the blob is complete.
    fn discover(&self, state: &mut State, cid: &Cid) -> Option<Meta> {
        let meta = self.read_valid_meta(&self.meta_path(cid))?;
        if &meta.cid != cid {
            return None;
        }
        state.index.insert(cid.clone(), meta.clone());
        Some(meta)
    }

    fn load_index(&self) -> Result<(), StoreError> {
        let meta_dir = self.inner.dir.join("meta");
        let mut index = BTreeMap::new();
        for entry in fs::read_dir(&meta_dir).map_err(StoreError::io("list", &meta_dir))? {
            let entry = entry.map_err(StoreError::io("list", &meta_dir))?;
            let path = entry.path();
            match self.read_valid_meta(&path) {
                Some(m) => {
                    index.insert(m.cid.clone(), m);
                }
                // Metadata without a matching blob is from an interrupted commit.
                None => fs::remove_file(&path).map_err(StoreError::io("remove", &path))?,
            }
        }
        let blobs = self.inner.dir.join("blobs");
        for entry in fs::read_dir(&blobs).map_err(StoreError::io("list", &blobs))? {
            let entry = entry.map_err(StoreError::io("list", &blobs))?;
            let known = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<Cid>().ok())
                .is_some_and(|c| index.contains_key(&c));
            if !known {
                let p = entry.path();
                fs::remove_file(&p).map_err(StoreError::io("remove", &p))?;
            }
        }
        self.lock().index = index;
        Ok(())
    }

    fn clean_tmp(&self) -> Result<usize, StoreError> {
        let tmp = self.tmp_dir();
        let mut removed = 0;
        let state = self.lock();
        for entry in fs::read_dir(&tmp).map_err(StoreError::io("list", &tmp))? {
            let path = entry.map_err(StoreError::io("list", &tmp))?.path();
            if !state.active_tmp.contains(&path) {
                fs::remove_file(&path).map_err(StoreError::io("remove", &path))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn model(&self, m: &Meta) -> StoredModel {
        let mut sha = [0u8; 32];
        // The hex was written by us; a corrupt value simply reads as zeros.
        let _ = hex::decode_to_slice(&m.sha256, &mut sha);
        StoredModel {
            cid: m.cid.clone(),
            path: self.blob_path(&m.cid),
            size: m.size,
            sha256: sha,
            added_at: from_ms(m.added_at_ms),
            last_used: from_ms(m.last_used_ms),
        }
    }

    fn write_meta(&self, m: &Meta, durable: bool) -> Result<(), StoreError> {
        let path = self.meta_path(&m.cid);
        let tmp = self.tmp_path();
        let json = serde_json::to_vec(m)
            .map_err(|e| StoreError::io("encode", &path)(std::io::Error::other(e)))?;
        let mut f = File::create(&tmp).map_err(StoreError::io("create", &tmp))?;
        f.write_all(&json)
            .and_then(|()| if durable { f.sync_all() } else { Ok(()) })
            .map_err(StoreError::io("write", &tmp))?;
        fs::rename(&tmp, &path).map_err(StoreError::io("rename", &path))
    }

    fn tmp_path(&self) -> PathBuf {
        let n = self.inner.tmp_counter.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        self.tmp_dir()
            .join(format!("{}-{n}-{nanos}.part", std::process::id()))
    }

    /// True if the model is stored (does not touch `last_used`). Models committed by another
    /// process since the store was opened are found too.
    pub fn contains(&self, cid: &Cid) -> bool {
        let mut state = self.lock();
        state.index.contains_key(cid) || self.discover(&mut state, cid).is_some()
    }

    /// Looks a model up and marks it as used now. A miss looks on disk once more, so a model
    /// added by another process (`attesta models add` on this directory) is found without a
    /// restart.
    pub fn get(&self, cid: &Cid) -> Result<Option<StoredModel>, StoreError> {
        let mut state = self.lock();
        let now = to_ms(self.inner.opts.clock.now());
        if !state.index.contains_key(cid) && self.discover(&mut state, cid).is_none() {
            return Ok(None);
        }
        let Some(meta) = state.index.get_mut(cid) else {
            return Ok(None);
        };
        meta.last_used_ms = now;
        let meta = meta.clone();
        // Under the lock so a concurrent remove cannot be undone by this write.
        self.write_meta(&meta, false)?;
        Ok(Some(self.model(&meta)))
    }

    /// All stored models, ordered by CID.
    pub fn list(&self) -> Result<Vec<StoredModel>, StoreError> {
        Ok(self.lock().index.values().map(|m| self.model(m)).collect())
    }

    /// Total bytes of stored models.
    pub fn total_bytes(&self) -> u64 {
        self.lock().index.values().map(|m| m.size).sum()
    }

    /// Removes a model; returns whether it was present. Fails if it is pinned.
    pub fn remove(&self, cid: &Cid) -> Result<bool, StoreError> {
        let mut state = self.lock();
        if state.pins.get(cid).is_some_and(|&n| n > 0) {
            return Err(StoreError::Pinned(cid.clone()));
        }
        if state.index.remove(cid).is_none() {
            return Ok(false);
        }
        self.delete_files(cid)?;
        Ok(true)
    }

    fn delete_files(&self, cid: &Cid) -> Result<(), StoreError> {
        // Metadata first: a crash in between leaves an orphan blob, which open() removes.
        for p in [self.meta_path(cid), self.blob_path(cid)] {
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io("remove", &p)(e)),
            }
        }
        Ok(())
    }

    /// Protects a model (present or about to be) from eviction and removal until the guard drops.
    pub fn pin(&self, cid: &Cid) -> PinGuard {
        *self.lock().pins.entry(cid.clone()).or_insert(0) += 1;
        PinGuard {
            store: self.clone(),
            cid: cid.clone(),
        }
    }

    /// True while at least one [`PinGuard`] for `cid` is alive.
    pub fn is_pinned(&self, cid: &Cid) -> bool {
        self.lock().pins.get(cid).is_some_and(|&n| n > 0)
    }

    /// Removes stale temp files and evicts least recently used unpinned models over the budget.
    pub fn gc(&self) -> Result<GcReport, StoreError> {
        let tmp_removed = self.clean_tmp()?;
        let mut report = self.enforce_budget(&mut self.lock(), None)?;
        report.tmp_removed = tmp_removed;
        Ok(report)
    }

    fn enforce_budget(
        &self,
        state: &mut State,
        keep: Option<&Cid>,
    ) -> Result<GcReport, StoreError> {
        let mut total: u64 = state.index.values().map(|m| m.size).sum();
        let mut report = GcReport::default();
        if let Some(max) = self.inner.opts.max_bytes {
            let mut candidates: Vec<(u64, Cid, u64)> = state
                .index
                .values()
                .filter(|m| Some(&m.cid) != keep && state.pins.get(&m.cid).is_none_or(|&n| n == 0))
                .map(|m| (m.last_used_ms, m.cid.clone(), m.size))
                .collect();
            candidates.sort();
            for (_, cid, size) in candidates {
                if total <= max {
                    break;
                }
                state.index.remove(&cid);
                self.delete_files(&cid)?;
                total -= size;
                report.freed_bytes += size;
                report.evicted.push(cid);
            }
        }
        report.total_bytes = total;
        Ok(report)
    }

    /// Copies a file into the store, computing its CID under `profile` on the way (idempotent).
    pub fn add_file(&self, path: &Path, profile: Profile) -> Result<StoredModel, StoreError> {
        let mut src = File::open(path).map_err(StoreError::io("open", path))?;
        let mut pending = self.begin()?;
        let mut importer = Importer::new(profile);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match src.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(StoreError::io("read", path)(e)),
            };
            let data = buf.get(..n).unwrap_or_default();
            importer.write(data)?;
            pending
                .write_all(data)
                .map_err(StoreError::io("write", &pending.path))?;
        }
        let (cid, _) = importer.finish()?;
        pending.commit(&cid)
    }

    /// Starts writing a new blob into `tmp/`; it becomes visible only via [`PendingBlob::commit`].
    pub fn begin(&self) -> Result<PendingBlob, StoreError> {
        let path = self.tmp_path();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(StoreError::io("create", &path))?;
        let reader = file.try_clone().map_err(StoreError::io("open", &path))?;
        let writer = Writer::spawn(file).map_err(StoreError::io("spawn writer for", &path))?;
        self.lock().active_tmp.insert(path.clone());
        Ok(PendingBlob {
            store: self.clone(),
            writer: Some(writer),
            reader,
            path,
            size: 0,
        })
    }

    fn commit_tmp(
        &self,
        tmp: &Path,
        file: File,
        cid: &Cid,
        size: u64,
        sha256: [u8; 32],
    ) -> Result<StoredModel, StoreError> {
        if let Some(max) = self.inner.opts.max_bytes
            && size > max
        {
            return Err(StoreError::TooLarge { size, max });
        }
        file.sync_all().map_err(StoreError::io("fsync", tmp))?;
        drop(file);
        let now = to_ms(self.inner.opts.clock.now());
        // One critical section: two writers of the same CID cannot both publish it.
        let mut state = self.lock();
        state.active_tmp.remove(tmp);
        if let Some(m) = state.index.get_mut(cid) {
            m.last_used_ms = now;
            let meta = m.clone();
            fs::remove_file(tmp).map_err(StoreError::io("remove", tmp))?;
            self.write_meta(&meta, false)?;
            return Ok(self.model(&meta));
        }
        let blob = self.blob_path(cid);
        fs::rename(tmp, &blob).map_err(StoreError::io("rename", &blob))?;
        sync_dir(&self.inner.dir.join("blobs"))?;
        let meta = Meta {
            cid: cid.clone(),
            size,
            sha256: hex::encode(sha256),
            added_at_ms: now,
            last_used_ms: now,
        };
        self.write_meta(&meta, true)?;
        sync_dir(&self.inner.dir.join("meta"))?;
        state.index.insert(cid.clone(), meta.clone());
        self.enforce_budget(&mut state, Some(cid))?;
        Ok(self.model(&meta))
    }
}

/// Keeps a model from being evicted or removed while alive.
#[derive(Debug)]
pub struct PinGuard {
    store: ModelStore,
    cid: Cid,
}

impl PinGuard {
    /// The pinned CID.
    pub fn cid(&self) -> &Cid {
        &self.cid
    }
}

impl Drop for PinGuard {
    fn drop(&mut self) {
        let mut state = self.store.lock();
        if let Some(n) = state.pins.get_mut(&self.cid) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                state.pins.remove(&self.cid);
            }
        }
    }
}

/// Messages to the thread that writes and hashes a pending blob.
enum WriterMsg {
    Data(Vec<u8>),
    /// Reply once everything sent before has been written.
    Barrier(std::sync::mpsc::SyncSender<std::io::Result<()>>),
}

/// Writes and hashes on its own thread, so the file's SHA-256 and the disk writes overlap with
/// block verification (each byte is hashed twice: as part of its block, and as part of the file).
struct Writer {
    tx: std::sync::mpsc::SyncSender<WriterMsg>,
    handle: std::thread::JoinHandle<std::io::Result<(File, [u8; 32])>>,
}

impl Writer {
    fn spawn(file: File) -> std::io::Result<Writer> {
        // A few MiB in flight at most: memory stays bounded whatever the file size.
        let (tx, rx) = std::sync::mpsc::sync_channel::<WriterMsg>(8);
        let handle = std::thread::Builder::new()
            .name("blob-writer".into())
            .spawn(move || {
                let mut file = file;
                let mut hasher = Sha256::new();
                for msg in rx {
                    match msg {
                        WriterMsg::Data(d) => {
                            file.write_all(&d)?;
                            hasher.update(&d);
                        }
                        WriterMsg::Barrier(ack) => {
                            let _ = ack.send(Ok(()));
                        }
                    }
                }
                Ok((file, hasher.finalize().into()))
            })?;
        Ok(Writer { tx, handle })
    }

    /// Stops the thread and returns the file and its hash (or the write error).
    fn finish(self) -> std::io::Result<(File, [u8; 32])> {
        drop(self.tx);
        self.handle
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("blob writer panicked")))
    }
}

/// A blob being written to `tmp/`; dropped without commit, it is deleted.
pub struct PendingBlob {
    store: ModelStore,
    writer: Option<Writer>,
    /// A second handle on the same file for reading back (see [`PendingBlob::read_at`]).
    reader: File,
    path: PathBuf,
    size: u64,
}

impl std::fmt::Debug for PendingBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingBlob")
            .field("path", &self.path)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl PendingBlob {
    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.size
    }

    /// True when nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Reads back `buf.len()` bytes already written at `offset` (used to reuse deduplicated blocks).
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let end = offset
            .checked_add(buf.len() as u64)
            .ok_or_else(|| std::io::Error::other("range overflow"))?;
        if end > self.size {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "read past written data",
            ));
        }
        let writer = self
            .writer
            .as_ref()
            .ok_or_else(|| std::io::Error::other("blob already closed"))?;
        let (ack_tx, ack_rx) = std::sync::mpsc::sync_channel(1);
        writer
            .tx
            .send(WriterMsg::Barrier(ack_tx))
            .map_err(|_| std::io::Error::other("blob writer stopped"))?;
        ack_rx
            .recv()
            .map_err(|_| std::io::Error::other("blob writer stopped"))??;
        self.reader.read_exact_at(buf, offset)
    }

    /// Makes the blob visible under `cid` (the caller vouches that the bytes match it).
    pub fn commit(mut self, cid: &Cid) -> Result<StoredModel, StoreError> {
        let writer = self
            .writer
            .take()
            .ok_or_else(|| StoreError::io("commit", &self.path)(std::io::Error::other("closed")))?;
        let result = match writer.finish() {
            Ok((file, sha256)) => self
                .store
                .commit_tmp(&self.path, file, cid, self.size, sha256),
            Err(e) => Err(StoreError::io("write", &self.path)(e)),
        };
        if result.is_err() {
            let _ = fs::remove_file(&self.path);
            self.store.lock().active_tmp.remove(&self.path);
        }
        // Either renamed or removed: nothing is left for Drop.
        self.path = PathBuf::new();
        result
    }
}

impl Write for PendingBlob {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let writer = self
            .writer
            .as_ref()
            .ok_or_else(|| std::io::Error::other("blob already closed"))?;
        if writer.tx.send(WriterMsg::Data(buf.to_vec())).is_err() {
            // The thread stopped on an error: surface it.
            let err = self
                .writer
                .take()
                .map(Writer::finish)
                .and_then(Result::err)
                .unwrap_or_else(|| std::io::Error::other("blob writer stopped"));
            return Err(err);
        }
        self.size += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for PendingBlob {
    fn drop(&mut self) {
        if self.path.as_os_str().is_empty() {
            return;
        }
        if let Some(w) = self.writer.take() {
            let _ = w.finish();
        }
        let _ = fs::remove_file(&self.path);
        self.store.lock().active_tmp.remove(&self.path);
    }
}
