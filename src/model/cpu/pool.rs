//! The thread pool the CPU kernels split their rows over. One call hands out chunks of an
//! index range through a shared cursor; the calling thread works too and returns as soon
//! as every chunk is done. A worker that is late (descheduled on a busy machine) simply
//! finds no chunk left: the caller never waits for a worker to show up, only for chunks a
//! worker has claimed. Workers spin briefly between calls (decode calls come every few
//! tens of microseconds), then yield, then park.
//! Input: a range size and a `Fn(Range<usize>)`. Must not depend on candle or the model.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Mutex, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// How long an idle worker polls for the next call before parking.
const SPIN: Duration = Duration::from_millis(2);

/// One call's work: a type-erased `&dyn Fn(Range<usize>)` plus its chunking.
#[derive(Clone, Copy)]
struct Job {
    f: *const (dyn Fn(Range<usize>) + Sync),
    len: usize,
    chunk: usize,
}

struct Shared {
    /// Incremented by every call; workers watch it.
    generation: AtomicUsize,
    /// Whether the current call still accepts helpers (cleared before the caller returns).
    open: AtomicBool,
    /// Workers between checking `open` and leaving the call.
    active: AtomicUsize,
    next_chunk: AtomicUsize,
    chunks_done: AtomicUsize,
    /// A chunk panicked (a kernel bug): reported by the caller once every chunk is done,
    /// instead of a worker dying with chunks the caller would wait for forever.
    panicked: AtomicBool,
    job: Mutex<Option<Job>>,
    workers: OnceLock<Vec<Thread>>,
}

// SAFETY: the job pointer is only dereferenced while the call that set it is running: a
// worker registers in `active` before checking `open`, and the caller clears `open` and
// waits for `active == 0` before returning (see `Pool::run`).
unsafe impl Send for Shared {}
// SAFETY: as for `Send`.
unsafe impl Sync for Shared {}

pub(crate) struct Pool {
    shared: &'static Shared,
    threads: usize,
    /// Serializes callers (one inference worker calls; tests may call from several).
    call: Mutex<()>,
}

impl Pool {
    fn new(threads: usize) -> Self {
        let shared: &'static Shared = Box::leak(Box::new(Shared {
            generation: AtomicUsize::new(0),
            open: AtomicBool::new(false),
            active: AtomicUsize::new(0),
            next_chunk: AtomicUsize::new(0),
            chunks_done: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            job: Mutex::new(None),
            workers: OnceLock::new(),
        }));
        let handles = (1..threads)
            .filter_map(|i| {
                std::thread::Builder::new()
                    .name(format!("wick-cpu-{i}"))
                    .spawn(move || worker(shared))
                    .ok()
            })
            .map(|h| h.thread().clone())
            .collect::<Vec<_>>();
        let threads = handles.len() + 1;
        let _ = shared.workers.set(handles);
        Pool {
            shared,
            threads,
            call: Mutex::new(()),
        }
    }

    /// Threads that run work (the caller's included).
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f` over `0..len` in chunks on all threads; returns when all of it is done.
    pub fn run(&self, len: usize, f: &(dyn Fn(Range<usize>) + Sync)) {
        if len == 0 {
            return;
        }
        if self.threads == 1 || len == 1 {
            f(0..len);
            return;
        }
        let _serial = self.call.lock().unwrap_or_else(|e| e.into_inner());
        let s = self.shared;
        // A few chunks per thread: a late or slow thread leaves little tail behind.
        let chunk = len.div_ceil(self.threads * 4).max(1);
        let chunks = len.div_ceil(chunk);
        // SAFETY: the lifetime is erased only for the duration of this call (see Shared).
        let f_static: *const (dyn Fn(Range<usize>) + Sync) = unsafe { std::mem::transmute(f) };
        *s.job.lock().unwrap_or_else(|e| e.into_inner()) = Some(Job {
            f: f_static,
            len,
            chunk,
        });
        s.next_chunk.store(0, SeqCst);
        s.chunks_done.store(0, SeqCst);
        s.open.store(true, SeqCst);
        s.generation.fetch_add(1, SeqCst);
        if let Some(ws) = s.workers.get() {
            for w in ws {
                w.unpark();
            }
        }
        work(s, f, len, chunk);
        // Only chunks a worker has claimed can be outstanding.
        wait_until(|| s.chunks_done.load(SeqCst) >= chunks);
        s.open.store(false, SeqCst);
        wait_until(|| s.active.load(SeqCst) == 0);
        *s.job.lock().unwrap_or_else(|e| e.into_inner()) = None;
        if s.panicked.swap(false, SeqCst) {
            panic!("a CPU kernel panicked on a pool thread");
        }
    }
}

/// Claims and runs chunks until none is left, counting each one done even if it panics
/// (so nobody waits for it forever; the caller reports the panic).
fn work(s: &Shared, f: &(dyn Fn(Range<usize>) + Sync), len: usize, chunk: usize) {
    loop {
        let start = s.next_chunk.fetch_add(1, SeqCst) * chunk;
        if start >= len {
            return;
        }
        let range = start..len.min(start + chunk);
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(range))).is_ok();
        if !ok {
            s.panicked.store(true, SeqCst);
        }
        s.chunks_done.fetch_add(1, SeqCst);
    }
}

fn wait_until(cond: impl Fn() -> bool) {
    let mut spins = 0u32;
    while !cond() {
        spins += 1;
        if spins < 4096 {
            std::hint::spin_loop();
        } else {
            // The thread we wait for may be descheduled: give it the core.
            std::thread::yield_now();
        }
    }
}

fn worker(s: &'static Shared) {
    let mut seen = s.generation.load(SeqCst);
    loop {
        let start = Instant::now();
        let mut spins = 0u32;
        while s.generation.load(SeqCst) == seen {
            spins += 1;
            if !spins.is_multiple_of(64) {
                std::hint::spin_loop();
            } else if start.elapsed() > SPIN {
                std::thread::park_timeout(Duration::from_millis(50));
            } else if spins > 4096 {
                std::thread::yield_now();
            }
        }
        seen = s.generation.load(SeqCst);
        s.active.fetch_add(1, SeqCst);
        if s.open.load(SeqCst) {
            let job = *s.job.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(job) = job {
                // SAFETY: `open` was set after this job was stored and is cleared before the
                // caller returns, which waits for `active` to drop to 0 first.
                let f = unsafe { &*job.f };
                work(s, f, job.len, job.chunk);
            }
        }
        s.active.fetch_sub(1, SeqCst);
    }
}

static POOL: OnceLock<Pool> = OnceLock::new();

/// The process-wide pool, sized on first use to candle's thread count (`--threads`).
pub(crate) fn pool() -> &'static Pool {
    POOL.get_or_init(|| Pool::new(candle_core::utils::get_num_threads().max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn every_index_runs_exactly_once() {
        let pool = Pool::new(3);
        for len in [1usize, 2, 7, 100, 1000] {
            for _ in 0..50 {
                let hits: Vec<AtomicU64> = (0..len).map(|_| AtomicU64::new(0)).collect();
                pool.run(len, &|r: Range<usize>| {
                    for i in r {
                        hits[i].fetch_add(1, SeqCst);
                    }
                });
                assert!(hits.iter().all(|h| h.load(SeqCst) == 1), "len {len}");
            }
        }
    }

    #[test]
    fn a_panicking_chunk_is_reported_not_hung() {
        let pool = Pool::new(2);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.run(64, &|r: Range<usize>| assert!(!r.contains(&40), "boom"));
        }));
        assert!(r.is_err());
        // The pool still works afterwards.
        let hits = AtomicU64::new(0);
        pool.run(10, &|r: Range<usize>| {
            hits.fetch_add(r.len() as u64, SeqCst);
        });
        assert_eq!(hits.load(SeqCst), 10);
    }
}
