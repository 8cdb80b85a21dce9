//! The cache on real files: hits, freshness after each kind of change (the
//! change's system call has returned, then [`FileCache::open`] with
//! `drained: false` sees it), and the bounds.

use super::*;
use crate::http::gzip::gunzip;
use std::fs;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::PathBuf;
use std::time::Duration;

fn settings() -> OpenFileCache {
    OpenFileCache::default()
}

fn setup() -> (tempfile::TempDir, PathBuf, FileCache) {
    let dir = tempfile::tempdir().unwrap();
    let root = fs::canonicalize(dir.path()).unwrap();
    (dir, root, FileCache::new())
}

fn body(cache: &mut FileCache, path: &Path) -> io::Result<Vec<u8>> {
    let entry = cache.open(path, Some(&settings()), false, Instant::now())?;
    Ok(match &entry.body {
        Stored::Bytes(bytes) => bytes.to_vec(),
        Stored::File(file) => {
            let mut out = vec![0; entry.len as usize];
            file.read_exact_at(&mut out, 0).unwrap();
            out
        }
        Stored::None => Vec::new(),
    })
}

#[test]
fn a_second_open_is_a_hit() {
    let (_dir, root, mut cache) = setup();
    let file = root.join("a.html");
    fs::write(&file, b"hello").unwrap();
    let now = Instant::now();
    let first = cache.open(&file, Some(&settings()), true, now).unwrap();
    let second = cache.open(&file, Some(&settings()), true, now).unwrap();
    assert!(Rc::ptr_eq(&first, &second));
    assert!(matches!(&first.body, Stored::Bytes(b) if &b[..] == b"hello"));
    assert!(std::str::from_utf8(&first.head)
        .unwrap()
        .contains("Content-Type: text/html\r\n"));
}

#[test]
fn every_kind_of_change_is_seen_at_once() {
    let (_dir, root, mut cache) = setup();
    let file = root.join("f.txt");
    fs::write(&file, b"one").unwrap();
    assert_eq!(body(&mut cache, &file).unwrap(), b"one");
    // Written in place (same inode, same length).
    fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .write_all_at(b"two", 0)
        .unwrap();
    assert_eq!(body(&mut cache, &file).unwrap(), b"two");
    // Truncated.
    fs::File::create(&file).unwrap();
    assert_eq!(body(&mut cache, &file).unwrap(), b"");
    // Renamed over.
    let other = root.join("g.txt");
    fs::write(&other, b"three").unwrap();
    fs::rename(&other, &file).unwrap();
    assert_eq!(body(&mut cache, &file).unwrap(), b"three");
    // Deleted, then created again.
    fs::remove_file(&file).unwrap();
    assert_eq!(
        body(&mut cache, &file).unwrap_err().kind(),
        io::ErrorKind::NotFound
    );
    assert_eq!(
        body(&mut cache, &file).unwrap_err().kind(),
        io::ErrorKind::NotFound
    );
    fs::write(&file, b"four").unwrap();
    assert_eq!(body(&mut cache, &file).unwrap(), b"four");
    // Made unreadable (root reads anything: only check it is dropped).
    assert!(!cache.is_empty());
    fs::set_permissions(&file, fs::Permissions::from_mode(0o000)).unwrap();
    cache.refresh();
    assert_eq!(cache.len(), 0);
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
}

#[test]
fn a_renamed_directory_drops_what_is_under_it() {
    let (_dir, root, mut cache) = setup();
    fs::create_dir_all(root.join("a/b")).unwrap();
    let file = root.join("a/b/c.txt");
    fs::write(&file, b"old").unwrap();
    assert_eq!(body(&mut cache, &file).unwrap(), b"old");
    fs::rename(root.join("a"), root.join("x")).unwrap();
    fs::create_dir_all(root.join("a/b")).unwrap();
    fs::write(&file, b"new").unwrap();
    assert_eq!(body(&mut cache, &file).unwrap(), b"new");
    // The new directories are watched in turn.
    fs::write(&file, b"newer").unwrap();
    assert_eq!(body(&mut cache, &file).unwrap(), b"newer");
}

#[test]
fn large_files_keep_a_descriptor() {
    let (_dir, root, mut cache) = setup();
    let file = root.join("big.bin");
    fs::write(&file, vec![7u8; 100_000]).unwrap();
    let entry = cache
        .open(&file, Some(&settings()), true, Instant::now())
        .unwrap();
    assert!(matches!(entry.body, Stored::File(_)));
    fs::write(&file, vec![8u8; 10]).unwrap();
    assert_eq!(body(&mut cache, &file).unwrap(), vec![8u8; 10]);
}

#[test]
fn bounded_by_max_and_memory() {
    let (_dir, root, mut cache) = setup();
    let tight = OpenFileCache {
        max: 5,
        memory: 10_000,
        ..OpenFileCache::default()
    };
    for i in 0..20 {
        let file = root.join(format!("{i}.txt"));
        fs::write(&file, vec![b'x'; 3000]).unwrap();
        cache
            .open(&file, Some(&tight), true, Instant::now())
            .unwrap();
        let store = &cache.stores[0];
        assert!(store.map.len() <= 5 && store.bytes <= 10_000, "{i}");
        assert_eq!(store.map.len(), store.lru.len());
    }
    // The most recent stayed.
    assert!(cache.stores[0]
        .map
        .contains_key(key_bytes(&root.join("19.txt"))));
}

#[test]
fn idle_entries_expire() {
    let (_dir, root, mut cache) = setup();
    let file = root.join("a.txt");
    fs::write(&file, b"a").unwrap();
    let now = Instant::now();
    cache.open(&file, Some(&settings()), true, now).unwrap();
    cache.expire(now + Duration::from_secs(30));
    assert_eq!(cache.len(), 1);
    cache.expire(now + Duration::from_secs(61));
    assert_eq!(cache.len(), 0);
}

#[test]
fn expire_skips_quiet_turns_yet_drops_each_entry_in_time() {
    let (_dir, root, mut cache) = setup();
    let (a, b) = (root.join("a.txt"), root.join("b.txt"));
    fs::write(&a, b"a").unwrap();
    fs::write(&b, b"b").unwrap();
    let t0 = Instant::now();
    let at = |secs| t0 + Duration::from_secs(secs);
    cache.open(&a, Some(&settings()), true, at(5)).unwrap();
    cache.open(&b, Some(&settings()), true, at(10)).unwrap();
    cache.expire(at(64));
    assert_eq!(cache.len(), 2);
    // `a` used again: `b` is now the least recently used.
    cache.open(&a, Some(&settings()), true, at(64)).unwrap();
    cache.expire(at(71));
    assert_eq!(cache.len(), 1, "b idle for 61 s goes, a used at 64 stays");
    cache.expire(at(124));
    assert_eq!(cache.len(), 1);
    cache.expire(at(125));
    assert_eq!(cache.len(), 0);
    // Emptied at 125: what comes in later still goes in time.
    cache.open(&b, Some(&settings()), true, at(130)).unwrap();
    cache.expire(at(190));
    assert_eq!(cache.len(), 1);
    cache.expire(at(191));
    assert_eq!(cache.len(), 0);
}

#[test]
fn off_caches_nothing() {
    let (_dir, root, mut cache) = setup();
    let file = root.join("a.txt");
    fs::write(&file, b"a").unwrap();
    cache.open(&file, None, true, Instant::now()).unwrap();
    assert!(cache.is_empty());
}

/// `len` bytes of HTML-like rows that gzip to some 15-25% of their size.
fn page(len: usize, seed: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut i = seed;
    while out.len() < len {
        let row = format!(
            "<p class=\"r{}\">Row {i}: {}</p>\n",
            i % 7,
            i.wrapping_mul(2_654_435_761)
        );
        out.extend_from_slice(row.as_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}

/// The sum of the slots' costs, which `bytes` must stay equal to.
fn costs(cache: &FileCache) -> u64 {
    cache.stores[0].map.values().map(|s| s.cost).sum()
}

#[test]
fn a_large_files_compressed_copy_is_kept_and_counted() {
    let (_dir, root, mut cache) = setup();
    let file = root.join("page.html");
    let content = page(100 * 1024, 0);
    fs::write(&file, &content).unwrap();
    let entry = cache
        .open(&file, Some(&settings()), true, Instant::now())
        .unwrap();
    assert!(matches!(entry.body, Stored::File(_)));
    let before = cache.stores[0].bytes;
    let copy = cache.gzipped(&entry.gzipped).unwrap();
    assert!(copy.len() < 64 * 1024);
    assert_eq!(gunzip(&copy), content);
    assert_eq!(cache.stores[0].bytes, before + copy.len() as u64);
    assert_eq!(cache.stores[0].bytes, costs(&cache));
    // Made once, then from memory.
    let again = cache.gzipped(&entry.gzipped).unwrap();
    assert!(Arc::ptr_eq(&copy, &again));
    // A change drops the entry and its copy; the new version gets its own.
    let changed = page(100 * 1024, 7);
    fs::write(&file, &changed).unwrap();
    let fresh = cache
        .open(&file, Some(&settings()), false, Instant::now())
        .unwrap();
    assert_eq!(cache.stores[0].bytes, before);
    assert_eq!(gunzip(&cache.gzipped(&fresh.gzipped).unwrap()), changed);
}

#[test]
fn a_copy_for_a_dropped_entry_or_too_large_is_not_kept() {
    let (_dir, root, mut cache) = setup();
    let file = root.join("page.html");
    fs::write(&file, page(100 * 1024, 0)).unwrap();
    let entry = cache
        .open(&file, Some(&settings()), true, Instant::now())
        .unwrap();
    fs::write(&file, page(100 * 1024, 3)).unwrap();
    cache.refresh();
    assert!(cache.gzipped(&entry.gzipped).is_none());
    assert!(entry.gzipped.cell.get().is_none());
    assert_eq!(cache.stores[0].bytes, 0);
    // Bytes gzip cannot shrink: made for one response, then never again.
    let noise = root.join("noise.html");
    let mut state = 1u64;
    let bytes: Vec<u8> = (0..100 * 1024)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            (state >> 56) as u8
        })
        .collect();
    fs::write(&noise, &bytes).unwrap();
    let entry = cache
        .open(&noise, Some(&settings()), true, Instant::now())
        .unwrap();
    let before = cache.stores[0].bytes;
    assert_eq!(gunzip(&cache.gzipped(&entry.gzipped).unwrap()), bytes);
    assert_eq!(cache.stores[0].bytes, before);
    assert!(cache.gzipped(&entry.gzipped).is_none());
    // Above the bound for compressing in one go: streamed, never read here.
    let huge = root.join("huge.html");
    fs::write(&huge, page(GZIP_IN_ONE_GO as usize + 1, 0)).unwrap();
    let entry = cache
        .open(&huge, Some(&settings()), true, Instant::now())
        .unwrap();
    assert!(cache.gzipped(&entry.gzipped).is_none());
}

#[test]
fn compressed_copies_count_against_memory() {
    let (_dir, root, mut cache) = setup();
    let tight = OpenFileCache {
        memory: 40_000,
        ..OpenFileCache::default()
    };
    let files = 20;
    for i in 0..files {
        let file = root.join(format!("{i}.html"));
        fs::write(&file, page(100 * 1024, i * 1000)).unwrap();
        let entry = cache
            .open(&file, Some(&tight), true, Instant::now())
            .unwrap();
        let copy = cache.gzipped(&entry.gzipped).unwrap();
        assert!(copy.len() > 4000, "{}", copy.len());
        let store = &cache.stores[0];
        assert!(store.bytes <= 40_000, "{i}: {}", store.bytes);
        assert_eq!(store.bytes, costs(&cache));
        assert_eq!(store.map.len(), store.lru.len());
        // The newest kept its copy.
        assert!(matches!(
            entry.gzipped.cell.get(),
            Some(Compressed::Kept(_))
        ));
        assert!(store.map.contains_key(key_bytes(&file)));
    }
    // Without the copies all twenty would fit.
    assert!(cache.len() < files as usize, "{}", cache.len());
}

#[test]
fn spelling_is_the_components_joined() {
    let cases: &[(&str, &str)] = &[
        ("/a/b", "/a/b"),
        ("/", "/"),
        ("/a//b", "/a/b"),
        ("/a/./b", "/a/b"),
        ("/a/b/", "/a/b"),
        ("/a/b/.", "/a/b"),
        ("//a", "/a"),
        ("/a/.hidden", "/a/.hidden"),
        ("/a/../b", "/a/../b"),
    ];
    for (path, expected) in cases {
        let spelt = spelling(Path::new(path));
        assert_eq!(key_bytes(&spelt), expected.as_bytes(), "{path}");
        assert_eq!(&*spelt, Path::new(path), "{path}");
    }
}

#[test]
fn another_spelling_hits_and_is_dropped_alike() {
    let (_dir, root, mut cache) = setup();
    let file = root.join("f.txt");
    fs::write(&file, "one").unwrap();
    let odd = PathBuf::from(format!("{}//./f.txt", root.display()));
    let first = cache
        .open(&file, Some(&settings()), true, Instant::now())
        .unwrap();
    let again = cache
        .open(&odd, Some(&settings()), true, Instant::now())
        .unwrap();
    assert!(Rc::ptr_eq(&first, &again));
    assert_eq!(cache.len(), 1);
    fs::write(&file, "two").unwrap();
    assert_eq!(body(&mut cache, &odd).unwrap(), b"two");
}

#[test]
fn the_least_recently_used_goes_first() {
    let (_dir, root, mut cache) = setup();
    let three = OpenFileCache {
        max: 3,
        ..OpenFileCache::default()
    };
    for name in ["a", "b", "c", "d", "e"] {
        fs::write(root.join(name), name).unwrap();
    }
    let open = |cache: &mut FileCache, name: &str| {
        cache
            .open(&root.join(name), Some(&three), true, Instant::now())
            .unwrap();
    };
    for name in ["a", "b", "c"] {
        open(&mut cache, name);
    }
    // Hits on `a` and `b` leave `c` the least recently used.
    open(&mut cache, "a");
    open(&mut cache, "b");
    open(&mut cache, "d");
    let store = &cache.stores[0];
    let cached = |name: &str| store.map.contains_key(key_bytes(&root.join(name)));
    assert!(cached("a") && cached("b") && cached("d") && !cached("c"));
    assert_eq!(store.map.len(), store.lru.len());
    // `a` now is.
    open(&mut cache, "e");
    let store = &cache.stores[0];
    let cached = |name: &str| store.map.contains_key(key_bytes(&root.join(name)));
    assert!(!cached("a") && cached("b") && cached("d") && cached("e"));
}
