//! The heap profile a child writes: DHAT JSON v2 that reads back with every field the
//! viewer needs, C and Rust frames by name, and estimates that tell a leaking stack (live
//! at the end) from a churning one (allocated and freed). One process: one test.

use std::hint::black_box;

use avsoak::heap;
use avsoak::scenario::{BoxError, Case, Expect, Scenario, Work, Workload};
use avsoak::soak::{run_child, Plan};
use serde_json::Value;

const ITERATIONS: u64 = 200;
const PER_ITERATION: usize = 16;
const BLOCK: usize = 1024;

struct Twins {
    kept: Vec<Vec<u8>>,
}

/// Allocations kept for ever: the leak.
#[inline(never)]
fn keep_frame_buffers(kept: &mut Vec<Vec<u8>>) {
    for _ in 0..PER_ITERATION {
        kept.push(black_box(vec![1u8; BLOCK - 16]));
    }
}

/// Allocations freed in the same iteration: churn, not a leak.
#[inline(never)]
fn scratch_buffers() {
    for _ in 0..PER_ITERATION {
        black_box(vec![2u8; BLOCK - 16]);
    }
}

impl Workload for Twins {
    fn iterate(&mut self) -> Result<Work, BoxError> {
        keep_frame_buffers(&mut self.kept);
        scratch_buffers();
        Ok(Work {
            frames: 1,
            bytes: 0,
        })
    }
}

struct Fake;

impl Scenario for Fake {
    fn name(&self) -> &'static str {
        "fake"
    }
    fn about(&self) -> &'static str {
        "a leak and a churn side by side"
    }
    fn cases(&self) -> Vec<Case> {
        vec![case()]
    }
    fn start(&self, _: &Case) -> Result<Box<dyn Workload>, BoxError> {
        Ok(Box::new(Twins {
            kept: Vec::with_capacity((ITERATIONS as usize + 1) * PER_ITERATION),
        }))
    }
}

fn case() -> Case {
    Case::new("fake", "twins", Expect::Leak, "")
}

/// The program point whose frames name `function`.
fn point<'a>(dhat: &'a Value, function: &str) -> &'a Value {
    let ftbl = dhat["ftbl"].as_array().unwrap();
    dhat["pps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|pp| {
            pp["fs"].as_array().unwrap().iter().any(|f| {
                ftbl[f.as_u64().unwrap() as usize]
                    .as_str()
                    .unwrap()
                    .contains(function)
            })
        })
        .unwrap_or_else(|| panic!("no program point names {function}"))
}

fn within(estimate: f64, truth: f64, tolerance: f64) -> bool {
    (estimate - truth).abs() <= tolerance * truth
}

#[test]
fn a_profile_reads_back_and_tells_the_leak_from_the_churn() {
    if heap::check().is_err() {
        panic!("the heap hooks are not active in this test binary");
    }
    // One sample per ~16 KiB: a 1 KiB block is sampled about one time in 16.
    heap::set_sample_interval(16 * 1024);
    let path =
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("profile/fake.twins.dhat.json");
    let _ = std::fs::remove_file(&path);
    let plan = Plan::new(ITERATIONS);
    let mut out = Vec::with_capacity(1 << 20);
    assert_eq!(run_child(&Fake, &case(), &plan, &mut out, Some(&path)), 0);

    let dhat: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(dhat["dhatFileVersion"], 2);
    assert_eq!(dhat["mode"], "heap");
    assert_eq!(dhat["bklt"], true);
    assert_eq!(dhat["bkacc"], false);
    for key in ["verb", "tu", "Mtu", "cmd"] {
        assert!(dhat[key].is_string(), "{key}");
    }
    for key in ["pid", "tg", "te"] {
        assert!(dhat[key].is_u64(), "{key}");
    }
    // It says it is sampled, in its own fields.
    assert!(dhat["verb"].as_str().unwrap().contains("sampled estimate"));
    assert!(dhat["cmd"]
        .as_str()
        .unwrap()
        .contains("every count is an estimate"));
    assert_eq!(dhat["avsoak"]["sampled"], true);
    assert_eq!(dhat["avsoak"]["sample_interval_bytes"], 16 * 1024);
    let ftbl = dhat["ftbl"].as_array().unwrap();
    assert_eq!(ftbl[0], "[root]");
    let pps = dhat["pps"].as_array().unwrap();
    assert!(!pps.is_empty());
    for pp in pps {
        for key in ["tb", "tbk", "tl", "mb", "mbk", "gb", "gbk", "eb", "ebk"] {
            assert!(pp[key].is_u64(), "{key} in {pp}");
        }
        let fs = pp["fs"].as_array().unwrap();
        assert!(!fs.is_empty());
        assert!(fs
            .iter()
            .all(|f| (f.as_u64().unwrap() as usize) < ftbl.len()));
        assert!(pp["eb"].as_u64() <= pp["mb"].as_u64(), "{pp}");
        assert!(pp["mb"].as_u64() <= pp["tb"].as_u64(), "{pp}");
    }

    let allocated = (ITERATIONS as usize * PER_ITERATION * BLOCK) as f64;
    let leak = point(&dhat, "keep_frame_buffers");
    let churn = point(&dhat, "scratch_buffers");
    let f = |pp: &Value, key: &str| pp[key].as_u64().unwrap() as f64;
    // The leak: everything it allocated is live at the end.
    assert!(within(f(leak, "tb"), allocated, 0.3), "{leak}");
    assert!(within(f(leak, "eb"), allocated, 0.3), "{leak}");
    // The churn: as much allocated, almost nothing live at the end or at once.
    assert!(within(f(churn, "tb"), allocated, 0.3), "{churn}");
    assert!(f(churn, "eb") < 0.05 * allocated, "{churn}");
    assert!(f(churn, "mb") < 0.05 * allocated, "{churn}");
    // Frames are names: the allocator's and ours in one stack.
    let names: Vec<&str> = leak["fs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| ftbl[i.as_u64().unwrap() as usize].as_str().unwrap())
        .collect();
    assert!(names.iter().any(|n| n.contains("malloc")), "{names:?}");
}
