//! Panic isolation (SPEC §9.1): a panic while one connection is handled
//! ends that connection only.
//!
//! 1. [`install_hook`] replaces the default panic hook once, at start: a
//!    panic inside [`catch`] is recorded (message and source location) for
//!    the caller to log in the error log, instead of the default hook's
//!    lines on stderr; any other panic still reaches the default hook.
//! 2. [`catch`] runs one connection step under `catch_unwind` (the release
//!    profile keeps `panic = "unwind"`) and returns the recorded message.
//!
//! The event loop is single-threaded, so the "inside `catch`" flag and the
//! last message live in thread-locals.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    /// Depth of [`catch`] calls on this thread.
    static GUARDED: Cell<u32> = const { Cell::new(0) };
    /// What the hook recorded about the last guarded panic.
    static LAST: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs the recording hook (once per process; forked workers keep it).
pub fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if GUARDED.with(Cell::get) == 0 {
                return default(info);
            }
            let message = payload_text(info.payload());
            let text = match info.location() {
                Some(at) => format!("{message} at {}:{}", at.file(), at.line()),
                None => message,
            };
            LAST.with(|last| *last.borrow_mut() = Some(text));
        }));
    });
}

/// Runs `f`; a panic in it becomes `Err(message)`.
pub fn catch<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    GUARDED.with(|g| g.set(g.get() + 1));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(g.get() - 1));
    result.map_err(|payload| {
        LAST.with(|last| last.borrow_mut().take())
            .unwrap_or_else(|| payload_text(&*payload))
    })
}

fn payload_text(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caught_panic_gives_its_message_and_place() {
        install_hook();
        let err = catch(|| -> u8 { panic!("boom {}", 7) }).expect_err("it panicked");
        assert!(err.starts_with("boom 7 at src/server/panic.rs:"), "{err}");
        assert_eq!(catch(|| 5), Ok(5));
    }
}
