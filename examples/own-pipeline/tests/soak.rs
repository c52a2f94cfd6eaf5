//! The pipeline's soaks as ordinary tests: each `soak` runs its workload in a child of
//! this test binary, so the four run side by side under `cargo test` and alone under
//! nextest alike.

use avsoak::soak::Plan;
use avsoak::{assert_clean, assert_leaks};
use own_pipeline::{Mode, Pipeline};

fn plan() -> Plan {
    let mut plan = Plan::new(60);
    plan.warmup = 20;
    plan
}

#[test]
fn the_decode_loop_is_clean() {
    let soak = avsoak::testing::soak("decode", plan(), || Pipeline::new(Mode::Clean));
    assert_clean!(soak);
    assert_eq!(soak.result.iterations, 60);
    assert!(soak.result.throughput.frames_per_s > 0.0);
}

#[test]
fn forgotten_packets_are_caught_and_named() {
    let soak = avsoak::testing::soak("forget-packet-unref", plan(), || {
        // Denser sampling than the default, for packets of about 1 KB.
        avsoak::heap::set_sample_interval(16 << 10);
        Pipeline::new(Mode::ForgetPacketUnref)
    });
    assert_leaks!(soak);
    // One packet per frame, each an AVBufferRef, its buffer and the AVBuffer: 75 blocks
    // per decode of 25 frames, exactly.
    let blocks = soak.result.heap.leak_blocks_per_iter;
    assert!((blocks - 75.0).abs() < 0.5, "{blocks} blocks/iteration");
    // Suspects are the stacks that grew: about 1.5 samples of the leaked packets per
    // judged iteration at this interval, ~60 gained in the window and none lost. When
    // fewer stand out (below ~34, chance ~1e-4), the exact re-run samples every leaked
    // block with chance ≥ 99 % and names them; it misses with chance below 1e-15. Every
    // stack allocated inside an iteration passes through this crate's
    // `Pipeline::iterate`.
    let top = &soak.result.suspects[0];
    assert!(
        top.frames.iter().any(|f| f.contains("own_pipeline")),
        "{}",
        top.stack(24)
    );
}

#[test]
fn the_bounded_thumbnail_cache_is_clean() {
    let soak = avsoak::testing::soak("thumbnail-lru", plan(), || {
        Pipeline::new(Mode::ThumbnailLru)
    });
    assert_clean!(soak);
}

#[test]
fn the_unbounded_thumbnail_cache_is_caught() {
    let soak = avsoak::testing::soak("thumbnail-cache-never-evicts", plan(), || {
        Pipeline::new(Mode::ThumbnailCacheNeverEvicts)
    });
    assert_leaks!(soak);
    // One thumbnail per frame, 25 per iteration.
    let blocks = soak.result.heap.leak_blocks_per_iter;
    assert!((blocks - 25.0).abs() < 0.5, "{blocks} blocks/iteration");
    // The failure message a user reads names the verdict, the slope and p.
    let why = soak.check_clean().unwrap_err();
    assert!(
        why.contains("verdict leak") && why.contains("p = "),
        "{why}"
    );
}

/// A workload that dies takes only its child with it: the test gets a `crash` verdict
/// with the signal, not a dead test run.
#[test]
fn a_workload_that_crashes_is_a_verdict_not_a_dead_test_run() {
    struct Aborts(u32);
    impl avsoak::Workload for Aborts {
        fn iterate(&mut self) -> Result<avsoak::Work, avsoak::BoxError> {
            self.0 += 1;
            if self.0 == 30 {
                std::process::abort();
            }
            Ok(avsoak::Work::default())
        }
    }
    let soak = avsoak::testing::soak("aborts", plan(), || Ok(Aborts(0)));
    assert_eq!(soak.verdict(), avsoak::report::Verdict::Crash, "{soak}");
    let why = soak.check_clean().unwrap_err();
    assert!(why.contains("SIGABRT"), "{why}");
    assert_eq!(soak.result.iterations, 29, "{soak}");
}
