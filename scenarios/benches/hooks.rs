//! What the heap hooks cost per allocation: a `malloc` + `free` pair through glibc
//! directly (`__libc_malloc`/`__libc_free`, the hooks off), through the hooks with
//! sampling off (counting), and with sampling at the default 512 KiB interval; on one
//! thread, and on two threads at once (the counters are shared atomics, so two threads
//! contend for their cache lines).
//!
//! And what one sample costs: a pair with every allocation sampled (interval 1 byte), made
//! 16 calls deep, so the stack unwinds through frames as a pipeline's would; and turning
//! the process's stack table into names (`RawProfile::symbolize`, what a child does once
//! at the end of a case) for a table of 64 stacks that share their frames, as a profile's
//! do.

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

/// Calls `f` from `depth` more frames down the stack.
#[inline(never)]
fn deep(depth: usize, f: &mut dyn FnMut()) {
    if depth == 0 {
        f();
    } else {
        deep(black_box(depth - 1), f);
    }
    // Not a tail call: every level keeps its frame.
    black_box(depth);
}

fn samples(c: &mut Criterion) {
    let mut group = c.benchmark_group("hooks");
    group.throughput(Throughput::Elements(1));
    // The table first: 64 stacks (one per depth) of blocks kept live, sampled each.
    heap::set_sample_interval(1);
    let mut kept: Vec<Vec<u8>> = Vec::new();
    for depth in 0..64 {
        deep(depth, &mut || kept.push(black_box(vec![1u8; 64])));
    }
    heap::set_sample_interval(0);
    let stacks = avsoak::profile::RawProfile::now().symbolize().stacks.len();
    println!("hooks/symbolize-profile: the table holds {stacks} stacks");
    let (id, full) = support::id("hooks", "symbolize-profile", 64);
    support::heap_figures(&full, 3, || {
        black_box(avsoak::profile::RawProfile::now().symbolize());
    });
    group.bench_function(id, |b| {
        b.iter(|| black_box(avsoak::profile::RawProfile::now().symbolize()))
    });
    drop(kept);

    // One sampled pair: the unwind and the table insert at malloc, the removal at free.
    heap::set_sample_interval(1);
    let (id, full) = support::id("hooks", "pair-sampled-16-deep", 64);
    support::heap_figures(&full, 1_000, || deep(16, &mut || pair(Mode::Sampling, 64)));
    group.bench_function(id, |b| {
        b.iter(|| deep(16, &mut || pair(Mode::Sampling, 64)))
    });
    heap::set_sample_interval(512 * 1024);
    group.finish();
}

criterion_group!(benches, hooks, samples);
criterion_main!(benches);
