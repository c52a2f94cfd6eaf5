//! A flame graph of a leak's suspects, as SVG: each suspect's stack from the outermost
//! frame (bottom) to the allocating call (top), each frame as wide as the growth per
//! iteration of the suspects that pass through it. Stacks start past allocator plumbing
//! ([`Suspect::readable`]), so the top of each flame is the call that allocated.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::fmt::{escape_html as escape, human_bytes};
use crate::heap::Suspect;

/// Width of the graph in SVG units.
pub const WIDTH: f64 = 1000.0;
/// Height of one frame.
pub const ROW: f64 = 17.0;

/// One frame of the merged stacks: its growth and its callees by name.
#[derive(Debug, Default)]
struct Node {
    growth: f64,
    children: BTreeMap<String, Node>,
}

impl Node {
    fn depth(&self) -> usize {
        1 + self.children.values().map(Node::depth).max().unwrap_or(0)
    }
}

/// The suspects' growth as a flame graph, or `None` when none of them grew.
pub fn flame_graph(suspects: &[Suspect]) -> Option<String> {
    let mut root = Node::default();
    for s in suspects.iter().filter(|s| s.growth_bytes_per_iter > 0.0) {
        let growth = s.growth_bytes_per_iter;
        root.growth += growth;
        let mut node = &mut root;
        for frame in s.readable().iter().rev() {
            node = node.children.entry(frame.clone()).or_default();
            node.growth += growth;
        }
    }
    if root.growth <= 0.0 {
        return None;
    }
    let rows = root.depth();
    let height = rows as f64 * ROW + 4.0;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        "<svg class=\"flame\" viewBox=\"0 0 {WIDTH} {height:.0}\" width=\"100%\" \
         role=\"img\" font-family=\"ui-monospace, monospace\" font-size=\"11\">\
         <title>growth per iteration by stack</title>"
    );
    let total = root.growth;
    draw(&mut svg, "all suspects", &root, 0.0, 0, rows, total);
    svg.push_str("</svg>\n");
    Some(svg)
}

/// Draws `node` at `x`, `level` rows up from the bottom, then its callees above it.
fn draw(svg: &mut String, name: &str, node: &Node, x: f64, level: usize, rows: usize, total: f64) {
    let width = node.growth / total * WIDTH;
    let y = (rows - 1 - level) as f64 * ROW + 2.0;
    let title = format!(
        "{name}: +{}/iteration ({:.0} %)",
        human_bytes(node.growth),
        node.growth / total * 100.0
    );
    // About 6.6 units per character at this font size.
    let fits = ((width - 6.0) / 6.6).floor().max(0.0) as usize;
    let label: String = if name.chars().count() <= fits {
        name.to_owned()
    } else if fits > 2 {
        name.chars().take(fits - 1).chain(['…']).collect()
    } else {
        String::new()
    };
    let _ = writeln!(
        svg,
        "<g class=\"frame\"><title>{}</title><rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" \
         height=\"{:.1}\" fill=\"{}\" stroke=\"#fff\" stroke-width=\"0.5\"/>\
         <text x=\"{:.1}\" y=\"{:.1}\">{}</text></g>",
        escape(&title),
        width.max(0.5),
        ROW - 1.0,
        colour(name),
        x + 3.0,
        y + ROW - 5.0,
        escape(&label)
    );
    let mut at = x;
    for (child, grandchildren) in &node.children {
        draw(svg, child, grandchildren, at, level + 1, rows, total);
        at += grandchildren.growth / total * WIDTH;
    }
}

/// A warm colour that depends only on the frame's name, so a function keeps its colour
/// across cases.
fn colour(name: &str) -> String {
    let hash = name.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    let red = 205 + (hash % 50);
    let green = 90 + (hash >> 8) % 120;
    let blue = 40 + (hash >> 16) % 40;
    format!("rgb({red},{green},{blue})")
}
