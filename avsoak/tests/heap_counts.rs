//! The counters see Rust and C allocations in a test binary.
//!
//! Heap counters are process-wide: run these under nextest (`cargo xtask test`), which
//! gives each test its own process, or with `--test-threads=1`.

use std::ffi::c_void;
use std::hint::black_box;
use std::process::Command;
use std::time::{Duration, Instant};

use avsoak::heap::{self, HeapError, Snapshot};
use avsoak::probe::{Naming, Probe, Warmup, Work};
use avsoak::protocol::Message;

#[test]
fn instrumentation_is_active_in_test_binaries() {
    avsoak::heap::settle();
    heap::check().expect("hooks must be active in every binary that links the harness");
}

#[test]
fn rust_allocations_are_counted_and_released() {
    avsoak::heap::settle();
    let before = Snapshot::now();
    let buffer: Vec<u8> = black_box(Vec::with_capacity(1 << 20));
    let held = Snapshot::now().since(&before);
    assert_eq!(held.live_blocks, 1, "{held:?}");
    assert_eq!(held.allocs, 1, "{held:?}");
    assert!(
        (1 << 20..(1 << 20) + 8192).contains(&held.live_bytes),
        "{held:?}"
    );
    drop(buffer);
    let after = Snapshot::now().since(&before);
    assert_eq!(
        (after.live_blocks, after.live_bytes, after.frees),
        (0, 0, 1),
        "{after:?}"
    );
}

#[test]
fn libc_allocation_functions_are_counted() {
    avsoak::heap::settle();
    let before = Snapshot::now();
    // SAFETY: plain libc allocation calls; every block is freed below.
    unsafe {
        let a = black_box(libc::malloc(1000));
        let b = black_box(libc::calloc(10, 100));
        let mut c: *mut c_void = std::ptr::null_mut();
        assert_eq!(libc::posix_memalign(&mut c, 64, 5000), 0);
        let d = black_box(libc::memalign(4096, 300_000));
        let e = black_box(libc::aligned_alloc(32, 64));
        let f = black_box(libc::strdup(c"reached malloc through the PLT".as_ptr()));
        let held = Snapshot::now().since(&before);
        assert_eq!(held.live_blocks, 6, "{held:?}");
        assert!(
            held.live_bytes >= 1000 + 1000 + 5000 + 300_000 + 64 + 31,
            "{held:?}"
        );
        for p in [a, b, c, d, e, f.cast()] {
            libc::free(p);
        }
    }
    let after = Snapshot::now().since(&before);
    assert_eq!((after.live_blocks, after.live_bytes), (0, 0), "{after:?}");
    assert_eq!(after.allocs, after.frees);
}

#[test]
fn realloc_keeps_the_books_balanced() {
    avsoak::heap::settle();
    let before = Snapshot::now();
    // SAFETY: a realloc chain on one block, freed at the end.
    unsafe {
        let mut p = black_box(libc::malloc(16));
        for size in [64, 4096, 1 << 20, 32, 3 << 20] {
            p = black_box(libc::realloc(p, size));
            assert!(!p.is_null());
            let held = Snapshot::now().since(&before);
            assert_eq!(held.live_blocks, 1, "after realloc to {size}: {held:?}");
            assert!(
                held.live_bytes as usize >= size,
                "after realloc to {size}: {held:?}"
            );
        }
        libc::free(p);
    }
    let after = Snapshot::now().since(&before);
    assert_eq!((after.live_blocks, after.live_bytes), (0, 0), "{after:?}");
}

#[inline(never)]
fn leak_megabytes(count: usize) -> Vec<Vec<u8>> {
    (0..count).map(|_| black_box(vec![1u8; 1 << 20])).collect()
}

#[test]
fn sampled_stacks_estimate_live_bytes_and_name_the_allocating_function() {
    avsoak::heap::settle();
    heap::set_sample_interval(64 * 1024);
    heap::set_epoch(7);
    let kept = leak_megabytes(64);
    let suspects = heap::suspects(7, 5);
    let top = suspects
        .first()
        .expect("64 MiB at a 64 KiB interval must be sampled");
    let estimate = top.bytes as f64 / (64u64 << 20) as f64;
    assert!(
        (0.9..1.1).contains(&estimate),
        "estimate {estimate}: {top:?}"
    );
    assert!(
        top.frames.iter().any(|f| f.contains("leak_megabytes")),
        "frames: {:?}",
        top.frames
    );
    assert!(
        top.frames[0].contains("malloc") || top.frames[0].contains("alloc"),
        "{:?}",
        top.frames
    );
    // Freed blocks leave the table, and older epochs are filtered out.
    drop(kept);
    assert!(heap::suspects(7, 5)
        .iter()
        .all(|s| !s.frames.iter().any(|f| f.contains("leak_megabytes"))));
}

#[test]
fn fork_while_other_threads_sample_does_not_hang_the_child() {
    avsoak::heap::settle();
    heap::set_sample_interval(1024);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    black_box(vec![0u8; 4096]);
                }
            })
        })
        .collect();
    for _ in 0..50 {
        // SAFETY: the child only calls malloc/free (which must not deadlock: that is what
        // this test checks) and `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // SAFETY: in the forked child: allocate through the hooks, then leave.
            unsafe {
                for _ in 0..100 {
                    libc::free(black_box(libc::malloc(4096)));
                }
                libc::_exit(0);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut status = 0;
            // SAFETY: waiting for our own child.
            let done = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if done == pid {
                assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
                break;
            }
            if Instant::now() > deadline {
                // SAFETY: killing our own hung child before failing.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                panic!("a forked child hung in the allocator");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
}

/// Run by `refuses_to_judge_next_to_a_preloaded_allocator` in a child process (ignored
/// otherwise: alone it checks nothing).
#[test]
#[ignore = "run by refuses_to_judge_next_to_a_preloaded_allocator, in a child"]
fn preload_probe() {
    avsoak::heap::settle();
    match heap::check() {
        Ok(()) => println!("probe: ok"),
        Err(e) => println!("probe: refused: {e}"),
    }
}

#[test]
fn refuses_to_judge_next_to_a_preloaded_allocator() {
    avsoak::heap::settle();
    let library = "libc_malloc_debug.so.0";
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "preload_probe",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("LD_PRELOAD", library)
        .output()
        .expect("re-running the test binary");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let expected = HeapError::Preloaded {
        library: library.into(),
    }
    .to_string();
    assert!(
        stdout.contains(&format!("probe: refused: {expected}")),
        "stdout: {stdout}"
    );

    // The positive twin: the same probe without LD_PRELOAD is accepted.
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "preload_probe",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env_remove("LD_PRELOAD")
        .output()
        .expect("re-running the test binary");
    assert!(String::from_utf8_lossy(&output.stdout).contains("probe: ok"));
}

#[test]
fn mallinfo_cross_check_moves_with_the_counters() {
    avsoak::heap::settle();
    let before_glibc = heap::glibc_in_use_bytes();
    let before = Snapshot::now();
    let kept = leak_megabytes(16);
    let counted = Snapshot::now().since(&before).live_bytes as f64;
    let glibc = (heap::glibc_in_use_bytes() - before_glibc) as f64;
    assert!(
        (glibc / counted - 1.0).abs() < 0.05,
        "hooks {counted} vs mallinfo2 {glibc}"
    );
    drop(kept);
}

#[inline(never)]
fn one_small_block() -> Box<[u8; 100]> {
    black_box(Box::new([3u8; 100]))
}

#[test]
fn a_new_sampling_interval_applies_at_the_next_allocation() {
    avsoak::heap::settle();
    // A countdown drawn for an enormous interval would, if kept, never sample again.
    heap::set_sample_interval(1 << 40);
    black_box(vec![0u8; 64]);
    heap::set_sample_interval(1);
    heap::set_epoch(3);
    let kept = one_small_block();
    let suspects = heap::suspects(3, 10);
    assert!(
        suspects
            .iter()
            .any(|s| s.frames.iter().any(|f| f.contains("one_small_block"))),
        "{suspects:?}"
    );
    drop(kept);
}

#[test]
fn per_iteration_counts_what_one_run_costs() {
    avsoak::heap::settle();
    heap::check().expect("hooks must be active in every binary that links the harness");
    let mut kept = Vec::new();
    let figures = heap::per_iteration(100, || {
        // One block of 1000 bytes per run, kept: a leak of exactly one block.
        kept.push(std::hint::black_box(vec![7u8; 1000]).into_boxed_slice());
    });
    assert_eq!(figures.iterations, 100);
    // The Vec of kept boxes grows too: a few reallocations over 100 runs.
    assert!((1.0..1.2).contains(&figures.allocs), "{figures:?}");
    assert!(
        (1000.0..1100.0).contains(&figures.live_bytes),
        "{figures:?}"
    );
    assert!(figures.bytes >= 1000.0, "{figures:?}");
    drop(kept);
}

/// The top suspect names `function`, lost no sample and grows `bytes` an iteration
/// within the `band` of ratios; no suspect names `innocent`.
fn assert_top_suspect(
    suspects: &[heap::Suspect],
    function: &str,
    bytes: f64,
    band: std::ops::Range<f64>,
    innocent: &str,
) {
    let top = suspects.first().expect("the leak is a suspect");
    assert!(
        top.frames.iter().any(|f| f.contains(function)),
        "{suspects:?}"
    );
    assert_eq!(top.lost, 0, "{top:?}");
    assert!(
        band.contains(&(top.growth_bytes_per_iter / bytes)),
        "{top:?}"
    );
    assert!(
        suspects
            .iter()
            .all(|s| !s.frames.iter().any(|f| f.contains(innocent))),
        "{innocent} at rest is no suspect: {suspects:?}"
    );
}

#[inline(never)]
fn at_rest_queue_push(queue: &mut std::collections::VecDeque<Box<[u8]>>) {
    queue.push_back(black_box(vec![5u8; 50_000].into_boxed_slice()));
}

#[inline(never)]
fn growth_leak(kept: &mut Vec<Box<[u8]>>) {
    kept.push(black_box(vec![9u8; 20_000].into_boxed_slice()));
}

#[test]
fn growth_ranked_suspects_name_the_growing_stack_and_never_the_one_at_rest() {
    avsoak::heap::settle();
    // A queue that holds 200 buffers of 50 KB (10 MB) at rest, every one replaced in the
    // window, beside a leak of 20 KB per iteration, a fifth of one queue buffer. At a
    // 16 KiB interval a leaked block is sampled with chance 1 - e^-1.22 = 0.70: about 84
    // of 120 are gained, none lost; at-rest, the queue gains and loses ~190 samples each.
    heap::set_sample_interval(16 * 1024);
    let mut queue = std::collections::VecDeque::new();
    let mut kept = Vec::with_capacity(1000);
    // One loop through the probe a soak's child and a watched program share: the same
    // call sites before and after warm-up, so the queue's buffers are one stack
    // throughout; the window opens after 100 iterations.
    let warmup = Warmup {
        iterations: 100,
        time: Duration::ZERO,
    };
    let mut probe = Probe::new(warmup, u64::MAX, 10);
    for i in 0..220 {
        probe.end_warmup();
        probe.begin();
        for _ in 0..2 {
            if queue.len() == 200 {
                queue.pop_front();
            }
            at_rest_queue_push(&mut queue);
        }
        if i >= 100 {
            growth_leak(&mut kept);
        }
        let reading = probe.end();
        let (sample, cap) = probe.sample(&reading, Work::default());
        assert!(cap.is_none() && sample.i == i, "{sample:?}");
    }
    let (done, _) = probe.finish(move || drop((queue, kept)), Naming::Here, false);
    let Message::Done { suspects, .. } = done else {
        panic!("{done:?}")
    };
    // Fails when fewer than 40 of the 120 leaked blocks are sampled (Binomial(120, 0.70):
    // chance below 1e-20), or when the queue's sign test passes the family threshold
    // (at most 1e-9 by construction). The estimate from ~84 samples of weight 1.43: its
    // relative sd is ~6 %, so a ±40 % band fails with chance below 1e-9.
    assert_top_suspect(
        &suspects,
        "growth_leak",
        20_000.0,
        0.6..1.4,
        "at_rest_queue_push",
    );
}

#[test]
fn the_window_frozen_before_teardown_keeps_growth_the_teardown_frees() {
    avsoak::heap::settle();
    // The same queue at rest and 20 KB leak as above, through the watch mode's window:
    // opened at epoch 1, frozen after every iteration, then the "program" frees
    // everything it kept, as a watched program's exit does. The frozen window must
    // still name the leak (same failure chances as above), and never the queue.
    heap::set_sample_interval(16 * 1024);
    let mut queue = std::collections::VecDeque::new();
    let mut kept = Vec::with_capacity(1000);
    for i in 0..220 {
        if i == 100 {
            heap::set_epoch(1);
            heap::open_window(1);
        }
        for _ in 0..2 {
            if queue.len() == 200 {
                queue.pop_front();
            }
            at_rest_queue_push(&mut queue);
        }
        if i >= 100 {
            growth_leak(&mut kept);
            heap::snapshot_window();
        }
    }
    drop((queue, kept));
    let suspects = heap::window_growth(120).suspects(10);
    assert_top_suspect(
        &suspects,
        "growth_leak",
        20_000.0,
        0.6..1.4,
        "at_rest_queue_push",
    );
    // The live sums themselves lost it all: frozen again after the teardown, the window
    // holds no growth.
    heap::snapshot_window();
    let now = heap::window_growth(120).suspects(10);
    assert!(
        now.iter()
            .all(|s| !s.frames.iter().any(|f| f.contains("growth_leak"))),
        "after teardown the live sums hold no leak: {now:?}"
    );
}

/// Grows one index block by 256 bytes, as an index that gains an entry an iteration does.
#[inline(never)]
fn grow_index(index: *mut c_void, len: usize) -> *mut c_void {
    // SAFETY: `index` is null or the live block this test grows; the result replaces it.
    let grown = unsafe { libc::realloc(black_box(index), len) };
    assert!(!grown.is_null());
    grown
}

/// A scratch buffer grown by realloc to 64 KiB in eight steps, then freed: bounded.
#[inline(never)]
fn bounded_scratch() {
    let mut scratch = std::ptr::null_mut();
    for step in 1..=8 {
        // SAFETY: `scratch` is null or the live block grown on the step before.
        scratch = unsafe { libc::realloc(black_box(scratch), step * 8192) };
        assert!(!scratch.is_null());
    }
    // SAFETY: the block grown above, freed once.
    unsafe { libc::free(scratch) };
}

#[test]
fn a_block_grown_by_realloc_names_the_growing_call_and_a_bounded_one_is_no_suspect() {
    avsoak::heap::settle();
    // One block grows 256 B an iteration and is never freed; a scratch buffer grows to
    // 64 KiB an iteration and is freed. The block count never moves, so only the growth
    // samples can name the leak: at a 64 B interval each 256 B growth is sampled with
    // chance 1 - e^-4 = 0.98, about 118 of 120 gained and none lost. The scratch buffer's
    // growth samples are all freed within their iteration.
    heap::set_sample_interval(64);
    let mut index = grow_index(std::ptr::null_mut(), 256);
    for i in 0..220 {
        if i == 100 {
            heap::set_epoch(1);
            heap::open_window(1);
        }
        bounded_scratch();
        if i >= 100 {
            index = grow_index(index, 256 * (i - 98));
            heap::snapshot_window();
        }
    }
    heap::set_sample_interval(0);
    let suspects = heap::window_growth(120).suspects(10);
    // SAFETY: the index grown above, freed once, after its growth was read.
    unsafe { libc::free(index) };
    // Fails when fewer than 40 of the 120 growths are sampled (Binomial(120, 0.98): far
    // below 1e-50), or when the scratch buffer's sign test passes the family threshold
    // (at most 1e-9 by construction: it gains no sample that outlives its iteration).
    // ~118 samples of weight 1.02: the estimate's relative sd is about 1.3 %.
    assert_top_suspect(&suspects, "grow_index", 256.0, 0.8..1.2, "bounded_scratch");
    assert!(
        suspects[0]
            .readable()
            .first()
            .is_some_and(|f| f.ends_with("grow_index")),
        "the stack starts at the growing call: {suspects:?}"
    );
}

#[test]
fn a_sample_taken_inside_the_programs_teardown_does_not_end_the_window() {
    avsoak::heap::settle();
    // A time-mode tick may land after a watched program freed what it kept and before
    // it exits. The leak of the test above, then the teardown, then one more sample:
    // the window ends at the sample before the teardown, which read the most live heap,
    // and names the leak with the failure chances stated above.
    heap::set_sample_interval(16 * 1024);
    let mut kept = Vec::with_capacity(1000);
    let warmup = Warmup {
        iterations: 20,
        time: Duration::ZERO,
    };
    let mut probe = Probe::new(warmup, u64::MAX, 10);
    for i in 0..140 {
        probe.end_warmup();
        probe.begin();
        if i >= 20 {
            growth_leak(&mut kept);
        }
        let reading = probe.end();
        probe.sample(&reading, Work::default());
    }
    drop(std::mem::take(&mut kept));
    probe.begin();
    let reading = probe.end();
    probe.sample(&reading, Work::default());
    let (done, _) = probe.finish(|| (), Naming::Here, false);
    let Message::Done { suspects, .. } = done else {
        panic!("{done:?}")
    };
    assert_top_suspect(
        &suspects,
        "growth_leak",
        20_000.0,
        0.6..1.4,
        "at_rest_queue_push",
    );
}

#[test]
fn the_trough_is_the_heap_held_throughout_a_window_not_its_transients() {
    avsoak::heap::settle();
    let start = Snapshot::now();
    avsoak::hooks::take_trough();
    // A window with a 1 MiB block kept and a 2 MiB transient: its low-water mark is the
    // start, and the window after it starts with the kept block.
    let kept: Vec<u8> = black_box(Vec::with_capacity(1 << 20));
    let transient: Vec<u8> = black_box(Vec::with_capacity(2 << 20));
    drop(transient);
    let (bytes, blocks) = avsoak::hooks::take_trough();
    assert!(bytes <= start.live_bytes, "{bytes} vs {start:?}");
    assert!(blocks <= start.live_blocks, "{blocks} vs {start:?}");
    // The next window: another transient over the kept block. Its trough holds the kept
    // block and none of the transient.
    let transient: Vec<u8> = black_box(Vec::with_capacity(2 << 20));
    drop(transient);
    let (bytes, blocks) = avsoak::hooks::take_trough();
    let held = bytes - start.live_bytes;
    assert!(
        (1 << 20..(1 << 20) + 8192).contains(&held),
        "the kept block and nothing of the 2 MiB transient: {held}"
    );
    assert_eq!(blocks - start.live_blocks, 1);
    // Freeing the kept block takes the next window's trough back to the start.
    drop(kept);
    let (bytes, _) = avsoak::hooks::take_trough();
    assert!(bytes <= start.live_bytes, "{bytes} vs {start:?}");
}
