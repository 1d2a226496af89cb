//! Giving the memory of sessions' dropped `SSL`s back to the operating system.
//!
//! OpenSSL allocates with the C library's `malloc` whatever allocator the Rust side uses. A
//! session that moves to its own record layer (`session.rs`) frees its `SSL`, but glibc keeps
//! freed chunks in its arenas: the heap only shrinks from the top, and the top rarely is free
//! while other sessions live. `malloc_trim` returns every whole free page inside the arenas
//! (`madvise(MADV_DONTNEED)`), so 20,000 sessions leaving OpenSSL show in the process's
//! resident memory, which is what the operator of a small box watches. It walks the free
//! lists, so the transport calls it at most once a second, and only after enough sessions
//! moved ([`TRIM_AFTER`]).
//!

//! A trim takes 20–70 ms on the heap of 20,000 sessions (docs/benchmarks.md), so it runs on a
//! blocking thread, one at a time.

use std::sync::atomic::{AtomicBool, Ordering};

/// Sessions moved since the last trim before another is worth its walk (~30 KB each, so
/// ~8 MB).
pub(crate) const TRIM_AFTER: u64 = 256;

static TRIMMING: AtomicBool = AtomicBool::new(false);

/// Return free heap pages to the OS on a blocking thread, unless a trim is running already;
/// a no-op where the C library has no `malloc_trim`.
pub(crate) fn return_free_memory_in_background() {
    if TRIMMING.swap(true, Ordering::AcqRel) {
        return;
    }
    let trim = || {
        let started = std::time::Instant::now();
        return_free_memory();
        log::debug!("dtls: heap trimmed in {:?}", started.elapsed());
        TRIMMING.store(false, Ordering::Release);
    };
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn_blocking(trim);
        }
        Err(_) => trim(),
    }
}

fn return_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers; it only locks glibc's arenas and madvises free
    // pages, safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}
