//! The suspects' flame graph: merged stacks, widths in proportion to growth.

use avsoak::flame::{flame_graph, WIDTH};
use avsoak::heap::Suspect;

fn suspect(growth: f64, frames: &[&str]) -> Suspect {
    Suspect {
        growth_bytes_per_iter: growth,
        frames: frames.iter().map(|f| f.to_string()).collect(),
        ..Suspect::default()
    }
}

/// The width of the frame named `name` (its `<title>` starts with the name).
fn width_of(svg: &str, name: &str) -> f64 {
    let at = svg
        .find(&format!("<title>{name}: "))
        .unwrap_or_else(|| panic!("no {name} in {svg}"));
    let rest = &svg[at..];
    let w = rest.find("width=\"").unwrap() + 7;
    rest[w..w + rest[w..].find('"').unwrap()].parse().unwrap()
}

#[test]
fn shared_callers_merge_and_widths_follow_growth() {
    let svg = flame_graph(&[
        suspect(
            300.0,
            &[
                "malloc",
                "x264_malloc",
                "x264_picture_alloc",
                "camera_loop",
                "main_loop",
            ],
        ),
        suspect(
            100.0,
            &["malloc", "av_malloc", "av_packet_alloc", "main_loop"],
        ),
        // Nothing grew: not drawn.
        suspect(0.0, &["malloc", "idle"]),
    ])
    .unwrap();
    assert!((width_of(&svg, "all suspects") - WIDTH).abs() < 0.1);
    // Both stacks share their outermost frame, drawn once at full width.
    assert_eq!(svg.matches("<title>main_loop: ").count(), 1);
    assert!((width_of(&svg, "main_loop") - WIDTH).abs() < 0.1);
    assert!((width_of(&svg, "x264_picture_alloc") - 0.75 * WIDTH).abs() < 0.1);
    assert!((width_of(&svg, "av_packet_alloc") - 0.25 * WIDTH).abs() < 0.1);
    // Stacks start past the plumbing; nothing that did not grow is drawn.
    assert!(!svg.contains("x264_malloc") && !svg.contains("<title>malloc"));
    assert!(!svg.contains("idle"));
    // Markup in names stays text.
    let escaped = flame_graph(&[suspect(1.0, &["<alloc::vec::Vec<u8> as Clone>::clone"])]).unwrap();
    assert!(
        escaped.contains("&lt;alloc::vec::Vec&lt;u8&gt;"),
        "{escaped}"
    );
    assert!(!escaped.contains("<alloc::"));
}

#[test]
fn no_growth_no_graph() {
    assert_eq!(flame_graph(&[]), None);
    assert_eq!(flame_graph(&[suspect(0.0, &["f"])]), None);
}
