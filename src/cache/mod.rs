//! The open-file cache (SPEC §9.5, `open_file_cache`): per process, owned by
//! the event loop, read by the static handler through [`FileCache::open`].
//!
//! What it keeps, per mapped file system path: the kind and metadata of
//! what is there, the ETag, `Last-Modified` and content type, the header
//! lines of a 200 answer rendered once, and the body: the bytes of a file up
//! to `small`, else the open descriptor (shared, so a response in flight
//! keeps it while the entry goes), and the file gzipped once a response
//! wants it ([`FileCache::gzipped`]: always for a file in memory, and for a
//! file up to [`GZIP_IN_ONE_GO`] when its copy is at most `small`). A
//! missing path (ENOENT, ENOTDIR) is kept too, as a 404 answer. Bounds:
//! `max` entries and `memory` bytes (compressed copies included), the
//! least recently used going first, an entry unused for `inactive`
//! dropped, and at most a quarter of the process's descriptor limit held
//! open.
//!
//! Never stale. Every directory from `/` down to a cached path's parent is
//! watched with inotify *before* the path is opened and read, so any change
//! after that read queues an event; changes before it are in what was read.
//! The kernel queues an event, and puts the inotify descriptor on the
//! poll's ready list, before the changing system call returns. The ready
//! list is in order: a socket made ready by a request sent after a change
//! completed is reported in the same `epoll_wait` as the descriptor, or in
//! a later one than the descriptor's. The loop drains the queue
//! ([`FileCache::refresh`]) as soon as a wait reports the descriptor,
//! before it reads any request of that batch. So a request whose first
//! byte was in the socket when `epoll_wait` reported it was sent after any
//! change its client saw complete, and that change was drained before the
//! request is answered; a wait without changes costs no system call.
//! Over TLS the same holds of the record that carries a request's first
//! byte, when it is the first record read after the wait, the bytes
//! handed to rustls before it ended at a record boundary, and rustls held
//! no plaintext: that record's first byte was then at the head of the
//! socket's queue when the wait reported it, and its client encrypted it
//! after it saw the change complete (the
//! transport follows the record framing from the 5-byte record headers;
//! `Transport::read_fresh`). A record read before it in the same read,
//! even one without plaintext (a key update, an empty fragment), may have
//! been sent before the change, so then the request does not count. Any
//! other request (pipelined behind another one, read without a new
//! readiness report, or over TLS out of records read earlier or behind
//! another record) drains the queue once more before the cache is read:
//! the caller says which with `drained`.
//!
//! An event about a directory's entry drops the entry for that path (and,
//! when the entry is a directory, everything under it, whose watches are
//! dropped too: the path no longer names what was watched). An event about
//! a watched directory itself (renamed, deleted, its mode changed) drops
//! everything under it. A full queue (`IN_Q_OVERFLOW`) drops everything.
//! A path that cannot be watched (the watch limit, a file system without
//! inotify, a symbolic link on the way) is served but not cached.

mod inotify;

use std::borrow::{Borrow, Cow};
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs::{File, Metadata, OpenOptions};
use std::hash::{Hash, Hasher};
use std::io::{self, Read};
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crate::http::conditional;
use crate::http::date::fmt_http_date;
use crate::http::gzip;
use crate::http::response::{write_header, Compressed, GzipCopy};
use crate::routing::OpenFileCache;
use inotify::Inotify;

/// Per entry, besides its path, head and bytes: the map and list slots.
const ENTRY_OVERHEAD: u64 = 256;
/// Room for a few hundred events per read.
const EVENT_BUFFER: usize = 16 * 1024;
/// The largest file kept as a descriptor that is read and compressed in
/// one go, for a copy to keep: at gzip level 1 (some 100-300 MB/s) that
/// blocks the loop a few milliseconds, once per version of the file, and
/// its copy must still fit in `small` (a 16x ratio at the default 64k,
/// which repetitive HTML reaches). A larger file is compressed as it is
/// sent, piece by piece between writes, every time.
pub const GZIP_IN_ONE_GO: u64 = 1024 * 1024;

/// What a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    /// A FIFO, socket or device: never served.
    Other,
}

/// An opened path: what a 200, 206 or 304 needs.
#[derive(Debug)]
pub struct Entry {
    pub kind: Kind,
    pub len: u64,
    pub mtime: SystemTime,
    pub etag: String,
    pub last_modified: String,
    /// `Content-Type`, `Last-Modified`, `ETag` and `Accept-Ranges` lines
    /// of a 200 answer, rendered once.
    pub head: Arc<[u8]>,
    pub body: Stored,
    /// The body gzipped, made by the first response that wants it and
    /// kept through [`FileCache::gzipped`] (SPEC §9.5: compressed copies
    /// of cached files are cached too), counted in the slot's cost.
    pub gzipped: GzipCopy,
}

/// A file's body as the cache holds it.
#[derive(Debug)]
pub enum Stored {
    /// The whole file (at most `small` bytes).
    Bytes(Arc<[u8]>),
    /// The open file, read with `sendfile` or at an offset.
    File(Arc<File>),
    /// Not a regular file.
    None,
}

/// What the cache knows about a path.
enum Found {
    Entry(Rc<Entry>),
    /// The `errno` of a failed open: ENOENT or ENOTDIR.
    Missing(i32),
}

struct Slot {
    found: Found,
    /// When it was last used, in [`FileCache::tick`]s.
    tick: u64,
    /// Its place in [`Store::lru`]: the tick it was listed at. A hit does
    /// not move it (two tree updates per request); it moves to `tick` when
    /// it reaches the front ([`Store::least_recent`]).
    listed: u64,
    used: Instant,
    cost: u64,
}

/// A path as a map key: its bytes, hashed in one go. `Path`'s own `Hash`
/// walks the components and feeds the hasher once per name, which cost
/// more than the rest of a cache hit. The map keeps std's randomly keyed
/// SipHash: the paths come from request URIs, which a client chooses.
/// Keys are spelt as [`spelling`] gives, so two paths that are equal as
/// `Path`s are equal as keys.
#[derive(Clone)]
struct Key(Rc<Path>);

impl Key {
    fn bytes(&self) -> &[u8] {
        self.0.as_os_str().as_bytes()
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As `[u8]` hashes, so a lookup by `&[u8]` finds the key.
        self.bytes().hash(state);
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.bytes() == other.bytes()
    }
}

impl Eq for Key {}

impl Borrow<[u8]> for Key {
    fn borrow(&self) -> &[u8] {
        self.bytes()
    }
}

/// `path` as its components join: without `//`, a `.` component or a
/// trailing `/`, which `Path` equality ignores and byte equality would not.
/// A mapped path is spelt so already (it is rebuilt from plain names);
/// any other path is rebuilt (a name starting with `.` too, unchanged).
fn spelling(path: &Path) -> Cow<'_, Path> {
    let bytes = path.as_os_str().as_bytes();
    let odd = bytes
        .windows(2)
        .any(|pair| pair[0] == b'/' && matches!(pair[1], b'/' | b'.'))
        || (bytes.len() > 1 && bytes.ends_with(b"/"));
    if odd {
        Cow::Owned(path.components().collect::<PathBuf>())
    } else {
        Cow::Borrowed(path)
    }
}

/// The key bytes of a path already in its [`spelling`].
fn key_bytes(path: &Path) -> &[u8] {
    path.as_os_str().as_bytes()
}

/// The entries cached under one `open_file_cache` setting.
struct Store {
    settings: OpenFileCache,
    map: HashMap<Key, Slot>,
    /// Least recently listed first; see [`Store::least_recent`].
    lru: BTreeMap<u64, Key>,
    bytes: u64,
    descriptors: usize,
    /// No entry goes idle before then: the least recently used one was
    /// used last at this time less `inactive`, and every other one later.
    /// The loop asks after every wait; a path's hash is not free.
    quiet_until: Option<Instant>,
}

/// The per-process cache: its stores (one per distinct setting in use) and
/// the inotify descriptor that keeps them fresh.
pub struct FileCache {
    /// `None`: inotify is unavailable, so nothing is cached.
    inotify: Option<Inotify>,
    stores: Vec<Store>,
    tick: u64,
    max_descriptors: usize,
    events: Vec<u8>,
}

impl Default for FileCache {
    fn default() -> Self {
        FileCache::new()
    }
}

impl FileCache {
    pub fn new() -> FileCache {
        FileCache {
            inotify: Inotify::new().ok(),
            stores: Vec::new(),
            tick: 0,
            max_descriptors: descriptor_limit() / 4,
            events: Vec::new(),
        }
    }

    /// The inotify descriptor, for the event loop to poll.
    pub fn fd(&self) -> Option<RawFd> {
        self.inotify.as_ref().map(Inotify::raw_fd)
    }

    /// How many entries are cached.
    pub fn len(&self) -> usize {
        self.stores.iter().map(|s| s.map.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.stores.iter().all(|s| s.map.is_empty())
    }

    /// Opens `path` (mapped from a request, absolute) through the cache:
    /// `settings` `None` is `open_file_cache off`. `drained`: the queue of
    /// changes was drained after the request arrived (see the module doc);
    /// if not, it is drained now.
    pub fn open(
        &mut self,
        path: &Path,
        settings: Option<&OpenFileCache>,
        drained: bool,
        now: Instant,
    ) -> io::Result<Rc<Entry>> {
        let Some(settings) = settings.filter(|_| self.inotify.is_some()) else {
            return open_uncached(path, None).map(Rc::new);
        };
        if !drained {
            self.refresh();
        }
        let index = self.store_for(settings);
        self.tick += 1;
        if let Some(found) = self.stores[index].hit(path, self.tick, now) {
            return found;
        }
        // A path spelt otherwise (`//`, `/./`) is cached under its
        // spelling; a mapped path has it already and costs no second look.
        let path = spelling(path);
        if let Cow::Owned(spelt) = &path {
            if let Some(found) = self.stores[index].hit(spelt, self.tick, now) {
                return found;
            }
        }
        self.fill(index, &path, now)
    }

    /// Opens `path`, and caches what it found when the path can be watched.
    fn fill(&mut self, index: usize, path: &Path, now: Instant) -> io::Result<Rc<Entry>> {
        let small = self.stores[index].settings.small;
        let watched = self.watch(path);
        let opened = open_uncached(path, watched.then_some(small));
        if !watched {
            return opened.map(Rc::new);
        }
        let (found, result) = match opened {
            // A FIFO or device is answered, never kept.
            Ok(entry) if entry.kind == Kind::Other => return Ok(Rc::new(entry)),
            Ok(entry) => {
                let entry = Rc::new(entry);
                (Found::Entry(Rc::clone(&entry)), Ok(entry))
            }
            Err(err) => match err.raw_os_error() {
                Some(errno @ (libc::ENOENT | libc::ENOTDIR)) => (Found::Missing(errno), Err(err)),
                _ => return Err(err),
            },
        };
        let cost = ENTRY_OVERHEAD
            + path.as_os_str().len() as u64
            + match &found {
                Found::Entry(entry) => entry.cost(),
                Found::Missing(_) => 0,
            };
        let max_descriptors = self.max_descriptors;
        let store = &mut self.stores[index];
        if cost <= store.settings.memory && store.settings.max > 0 {
            store.insert(path, found, cost, self.tick, now);
            store.evict(max_descriptors);
        }
        result
    }

    /// Watches the directories above `path`, when it has no symbolic link
    /// on the way (a link's target changes where no watch sees it).
    fn watch(&mut self, path: &Path) -> bool {
        let Some(inotify) = &mut self.inotify else {
            return false;
        };
        let plain = path.is_absolute()
            && path
                .parent()
                .is_some_and(|p| std::fs::canonicalize(p).is_ok_and(|real| real == p))
            && !std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
        plain && inotify.watch_ancestors(path).is_ok()
    }

    fn store_for(&mut self, settings: &OpenFileCache) -> usize {
        if let Some(i) = self.stores.iter().position(|s| s.settings == *settings) {
            return i;
        }
        self.stores.push(Store {
            settings: *settings,
            map: HashMap::new(),
            lru: BTreeMap::new(),
            bytes: 0,
            descriptors: 0,
            quiet_until: None,
        });
        self.stores.len() - 1
    }

    /// Applies every change the kernel queued: one `read` that finds none
    /// when nothing changed. Called by the loop after each wait, and when
    /// the descriptor is readable.
    pub fn refresh(&mut self) {
        let Some(inotify) = &mut self.inotify else {
            return;
        };
        if self.events.len() < EVENT_BUFFER {
            self.events.resize(EVENT_BUFFER, 0);
        }
        loop {
            let n = match inotify.read(&mut self.events) {
                Ok(0) => return,
                Ok(n) => n,
                Err(_) => {
                    // The queue cannot be read: nothing cached can be
                    // trusted any more.
                    self.stores.iter_mut().for_each(Store::clear);
                    return;
                }
            };
            for event in inotify::events(&self.events[..n]) {
                apply(inotify, &mut self.stores, &event);
            }
        }
    }

    /// Drops the entries unused for their `inactive` time.
    pub fn expire(&mut self, now: Instant) {
        for store in &mut self.stores {
            if store.quiet_until.is_some_and(|until| now < until) {
                continue;
            }
            let inactive = store.settings.inactive;
            // What comes in later is used from now on.
            store.quiet_until = Some(now + inactive);
            while let Some(key) = store.least_recent() {
                let used = store.map.get(&key).map(|s| s.used);
                if let Some(used) = used.filter(|&u| now.saturating_duration_since(u) <= inactive) {
                    store.quiet_until = Some(used + inactive);
                    break;
                }
                store.remove(&key.0);
            }
        }
    }

    /// The whole body of a cached file gzipped, for a 200 that wants it:
    /// the kept copy, or one made now from the entry's bytes or its
    /// descriptor (read in one go, from the start) and kept with the entry
    /// when it fits: at most `small` (any size for a file in memory, whose
    /// copy is about as small) and within `memory` once the slot's cost
    /// grows by it, less recently used entries going. `None`: compress as
    /// the response goes (the entry is no longer cached, the file is
    /// larger than [`GZIP_IN_ONE_GO`], the copy was found too large
    /// before, or the file no longer reads whole).
    ///
    /// Never stale: the entry is still cached, so its path was watched
    /// before it was opened; a change since then, even one that the bytes
    /// read here see, is queued and drops the entry, and its copy with it,
    /// before a later request reads the cache.
    pub fn gzipped(&mut self, copy: &GzipCopy) -> Option<Arc<[u8]>> {
        match copy.cell.get() {
            Some(Compressed::Kept(data)) => return Some(Arc::clone(data)),
            Some(Compressed::NotKept) => return None,
            None => {}
        }
        let max_descriptors = self.max_descriptors;
        let store = self.stores.iter_mut().find(|s| {
            s.map.get(key_bytes(&copy.path)).is_some_and(|slot| {
                matches!(&slot.found, Found::Entry(e) if Rc::ptr_eq(&e.gzipped.cell, &copy.cell))
            })
        })?;
        let slot = store.map.get_mut(key_bytes(&copy.path))?;
        let Found::Entry(entry) = &slot.found else {
            return None;
        };
        let data: Arc<[u8]> = match &entry.body {
            Stored::Bytes(bytes) => gzip::compress(bytes).into(),
            Stored::File(_) if entry.len > GZIP_IN_ONE_GO => {
                let _ = copy.cell.set(Compressed::NotKept);
                return None;
            }
            Stored::File(file) => {
                let mut bytes = vec![0; usize::try_from(entry.len).ok()?];
                // A short read (the file shrank) is left to the streamed
                // response, which ends it as a truncated body.
                file.read_exact_at(&mut bytes, 0).ok()?;
                gzip::compress(&bytes).into()
            }
            Stored::None => return None,
        };
        let in_memory = matches!(entry.body, Stored::Bytes(_));
        let size = data.len() as u64;
        let fits = (in_memory || size <= store.settings.small)
            && slot.cost + size <= store.settings.memory;
        if !fits {
            let _ = copy.cell.set(Compressed::NotKept);
            return Some(data);
        }
        let _ = copy.cell.set(Compressed::Kept(Arc::clone(&data)));
        slot.cost += size;
        store.bytes += size;
        store.evict(max_descriptors);
        Some(data)
    }

    /// Whether `path` would be cached under `settings` (for `webserv
    /// route`): the cache is on and inotify can watch it.
    pub fn would_cache(&mut self, path: &Path, settings: Option<&OpenFileCache>) -> bool {
        settings.is_some() && self.watch(path)
    }
}

/// One inotify event applied to the stores.
fn apply(inotify: &mut Inotify, stores: &mut [Store], event: &inotify::Event) {
    if event.mask & libc::IN_Q_OVERFLOW != 0 {
        stores.iter_mut().for_each(Store::clear);
        return;
    }
    let Some(dir) = inotify.dir(event.wd).cloned() else {
        return;
    };
    if event.mask & libc::IN_IGNORED != 0 {
        stores.iter_mut().for_each(|s| s.remove_under(&dir));
        inotify.forget(event.wd);
        return;
    }
    if event.name.is_empty() {
        // The watched directory itself: renamed, deleted, or its mode
        // changed (which may close the way to everything under it).
        stores.iter_mut().for_each(|s| s.remove_under(&dir));
        if event.mask & (libc::IN_DELETE_SELF | libc::IN_MOVE_SELF) != 0 {
            inotify.unwatch_under(&dir);
        }
        return;
    }
    let path = dir.join(OsStr::from_bytes(event.name));
    for store in stores.iter_mut() {
        store.remove(&path);
    }
    if event.mask & libc::IN_ISDIR != 0 {
        stores.iter_mut().for_each(|s| s.remove_under(&path));
        if event.mask & (libc::IN_MOVED_FROM | libc::IN_MOVED_TO | libc::IN_DELETE) != 0 {
            inotify.unwatch_under(&path);
        }
    }
}

impl Store {
    /// What is cached for `path` as spelt, marked used at `tick`. `None`:
    /// nothing, or an entry unused for `inactive` (dropped now).
    fn hit(&mut self, path: &Path, tick: u64, now: Instant) -> Option<io::Result<Rc<Entry>>> {
        let slot = self.map.get_mut(key_bytes(path))?;
        if now.saturating_duration_since(slot.used) > self.settings.inactive {
            self.remove(path);
            return None;
        }
        slot.tick = tick;
        slot.used = now;
        Some(match &slot.found {
            Found::Entry(entry) => Ok(Rc::clone(entry)),
            Found::Missing(errno) => Err(io::Error::from_raw_os_error(*errno)),
        })
    }

    /// `path` is in its [`spelling`].
    fn insert(&mut self, path: &Path, found: Found, cost: u64, tick: u64, now: Instant) {
        let key = Key(Rc::from(path));
        self.bytes += cost;
        if found.holds_descriptor() {
            self.descriptors += 1;
        }
        self.lru.insert(tick, key.clone());
        let slot = Slot {
            found,
            tick,
            listed: tick,
            used: now,
            cost,
        };
        if let Some(old) = self.map.insert(key, slot) {
            // Not expected (a lookup came first), but keep the sums right.
            self.lru.remove(&old.listed);
            self.forget(&old);
        }
    }

    fn remove(&mut self, path: &Path) {
        if let Some(slot) = self.map.remove(key_bytes(&spelling(path))) {
            self.lru.remove(&slot.listed);
            self.forget(&slot);
        }
    }

    /// The key of the least recently used entry. Entries used since they
    /// were listed are listed again at their last use on the way, so the
    /// order is the one a list moved on every hit would have.
    fn least_recent(&mut self) -> Option<Key> {
        loop {
            let (&listed, key) = self.lru.first_key_value()?;
            let last_use = match self.map.get(key) {
                Some(slot) if slot.tick == listed => return Some(key.clone()),
                Some(slot) => slot.tick,
                // Not expected: every listed key is in the map.
                None => {
                    self.lru.pop_first();
                    continue;
                }
            };
            let (_, key) = self.lru.pop_first()?;
            if let Some(slot) = self.map.get_mut(&key) {
                slot.listed = last_use;
            }
            self.lru.insert(last_use, key);
        }
    }

    fn forget(&mut self, slot: &Slot) {
        self.bytes -= slot.cost;
        if slot.found.holds_descriptor() {
            self.descriptors -= 1;
        }
    }

    /// Drops `dir` and everything under it.
    fn remove_under(&mut self, dir: &Path) {
        let gone: Vec<Key> = self
            .map
            .keys()
            .filter(|key| key.0.starts_with(dir))
            .cloned()
            .collect();
        for key in gone {
            self.remove(&key.0);
        }
    }

    fn clear(&mut self) {
        self.map.clear();
        self.lru.clear();
        self.bytes = 0;
        self.descriptors = 0;
    }

    /// Drops the least recently used entries until within the bounds.
    fn evict(&mut self, max_descriptors: usize) {
        while self.map.len() > self.settings.max
            || self.bytes > self.settings.memory
            || self.descriptors > max_descriptors
        {
            let Some(key) = self.least_recent() else {
                return;
            };
            self.remove(&key.0);
        }
    }
}

impl Found {
    fn holds_descriptor(&self) -> bool {
        matches!(self, Found::Entry(e) if matches!(e.body, Stored::File(_)))
    }
}

impl Entry {
    /// The bytes the entry holds.
    fn cost(&self) -> u64 {
        let body = match &self.body {
            Stored::Bytes(bytes) => bytes.len() as u64,
            Stored::File(_) | Stored::None => 0,
        };
        body + self.head.len() as u64 + (self.etag.len() + self.last_modified.len()) as u64
    }
}

/// Opens `path` without blocking on a FIFO and stats the open file, so the
/// kind checked is the kind served. `keep_small`: read a regular file of at
/// most that many bytes into memory.
pub fn open_uncached(path: &Path, keep_small: Option<u64>) -> io::Result<Entry> {
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    let kind = if meta.is_file() {
        Kind::File
    } else if meta.is_dir() {
        Kind::Dir
    } else {
        Kind::Other
    };
    let body = match kind {
        Kind::File if keep_small.is_some_and(|small| meta.len() <= small) => {
            let mut bytes = Vec::with_capacity(meta.len() as usize);
            (&mut file).take(meta.len()).read_to_end(&mut bytes)?;
            if bytes.len() as u64 == meta.len() {
                Stored::Bytes(bytes.into())
            } else {
                // It shrank while read: serve the descriptor; the change
                // is queued and drops the entry.
                Stored::File(Arc::new(file))
            }
        }
        Kind::File => Stored::File(Arc::new(file)),
        Kind::Dir | Kind::Other => Stored::None,
    };
    Ok(Entry::new(path, kind, &meta, body))
}

impl Entry {
    fn new(path: &Path, kind: Kind, meta: &Metadata, body: Stored) -> Entry {
        let len = meta.len();
        let mtime = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
        let etag = conditional::etag(mtime, len);
        let last_modified = fmt_http_date(mtime);
        let mut head = Vec::new();
        if kind == Kind::File {
            let content_type = mime_guess::from_path(path)
                .first_raw()
                .unwrap_or("application/octet-stream");
            write_header(&mut head, "Content-Type", content_type.as_bytes());
            write_header(&mut head, "Last-Modified", last_modified.as_bytes());
            write_header(&mut head, "ETag", etag.as_bytes());
            write_header(&mut head, "Accept-Ranges", b"bytes");
        }
        Entry {
            kind,
            len,
            mtime,
            etag,
            last_modified,
            head: head.into(),
            body,
            gzipped: GzipCopy {
                path: Rc::from(path),
                cell: Rc::default(),
            },
        }
    }
}

/// The soft limit on open descriptors.
fn descriptor_limit() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, exclusively borrowed rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024;
    }
    usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests;
