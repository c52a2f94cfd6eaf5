//! What the heap hooks cost per allocation: a `malloc` + `free` pair through glibc
//! directly (`__libc_malloc`/`__libc_free`, the hooks off), through the hooks with
//! sampling off (counting), and with sampling at the default 512 KiB interval; on one
//! thread, and on two threads at once (the counters are shared atomics, so two threads
//! contend for their cache lines).

mod support;

use std::hint::black_box;
use std::time::{Duration, Instant};

use avsoak::heap;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

extern "C" {
    fn __libc_malloc(size: usize) -> *mut libc::c_void;
    fn __libc_free(ptr: *mut libc::c_void);
}

#[derive(Clone, Copy)]
enum Mode {
    Off,
    Counting,
    Sampling,
}

impl Mode {
    const ALL: [Mode; 3] = [Mode::Off, Mode::Counting, Mode::Sampling];

    fn name(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Counting => "counting",
            Mode::Sampling => "sampling",
        }
    }

    /// Sets the sampling interval the mode needs (the hooks read it per allocation).
    fn apply(self) {
        heap::set_sample_interval(match self {
            Mode::Sampling => 512 * 1024,
            _ => 0,
        });
    }
}

#[inline(always)]
fn pair(mode: Mode, size: usize) {
    match mode {
        Mode::Off => {
            // SAFETY: glibc's own entry points, as the hooks call them; the block is
            // freed right away by the same allocator, so the books stay balanced.
            unsafe { __libc_free(black_box(__libc_malloc(black_box(size)))) }
        }
        // SAFETY: plain libc malloc/free (the hooks, in this binary); the block is freed
        // right away.
        _ => unsafe { libc::free(black_box(libc::malloc(black_box(size)))) },
    }
}

/// `iters` pairs on each of `threads` threads at once; the wall time.
fn pairs(mode: Mode, size: usize, threads: usize, iters: u64) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for _ in 0..iters {
                    pair(mode, size);
                }
            });
        }
    });
    start.elapsed()
}

fn hooks(c: &mut Criterion) {
    let mut group = c.benchmark_group("hooks");
    group.throughput(Throughput::Elements(1));
    for size in [64usize, 4096] {
        for mode in Mode::ALL {
            mode.apply();
            let (id, full) = support::id("hooks", &format!("pair-{}", mode.name()), size);
            support::heap_figures(&full, 10_000, || pair(mode, size));
            group.bench_function(id, |b| b.iter(|| pair(mode, size)));
        }
    }
    for mode in Mode::ALL {
        mode.apply();
        let (id, full) = support::id("hooks", &format!("pair-2-threads-{}", mode.name()), 64);
        support::heap_figures_per_item(&full, 3, 20_000, || {
            pairs(mode, 64, 2, 10_000);
        });
        group.bench_function(id, |b| b.iter_custom(|iters| pairs(mode, 64, 2, iters)));
    }
    heap::set_sample_interval(512 * 1024);
    group.finish();
}

criterion_group!(benches, hooks);
criterion_main!(benches);
