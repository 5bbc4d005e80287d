//! Pictures of a [`StageGraph`]: SVG for people and the web UI, Graphviz DOT for tools.
//!
//! ```text
//!  StageGraph ──describe──▶ Picture ──layout──▶ Layout ──▶ svg::write  (self-contained SVG)
//!      (plans)               (text: boxes,       (positions,      dot::write   (Graphviz DOT)
//!                             labelled arrows)    no I/O)
//! ```
//!
//! [`describe`] and [`layout`] decide everything (what each box says, where it goes) with
//! no I/O, so they are unit-tested on their own; the writers only turn their result into
//! text. Stages sit in layers by depth: a stage that reads no shuffle is in the first
//! layer (at the top), every other one a layer below its deepest input, so the final stage
//! is last.

mod dot;
mod escape;
mod layout;
mod picture;
mod svg;

pub use escape::xml as escape_xml;
pub use layout::{Layout, Placed, Route, layout};
pub use picture::{
    OperatorLine, Picture, ShuffleArrow, StageBox, StageState, StageStatus, describe, shuffle_label,
};

use crate::stage::StageGraph;

/// `graph` as one self-contained SVG document: stages as boxes with their id, partition
/// count and operators, shuffles as arrows labelled with their partitioning. It needs no
/// network, fonts or style sheets; an operator line too long for its box is cut, and its
/// full text is the line's tooltip.
pub fn stage_graph_svg(graph: &StageGraph) -> String {
    let picture = describe(graph);
    let placed = layout(&picture);
    svg::write(&picture, &placed)
}

/// A [`Picture`] (with each stage's [`StageStatus`] when it has one, as the web UI draws a
/// job) as one self-contained SVG document, like [`stage_graph_svg`].
pub fn picture_svg(picture: &Picture) -> String {
    svg::write(picture, &layout(picture))
}

/// `graph` as a Graphviz DOT digraph: one node `sN` per stage (its id, partitions and
/// operators, in full), one edge per shuffle, labelled with its partitioning.
pub fn stage_graph_dot(graph: &StageGraph) -> String {
    dot::write(&describe(graph))
}
