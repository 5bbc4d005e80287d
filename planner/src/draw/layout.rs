//! [`layout`]: where every box and arrow of a [`Picture`] goes. Pure geometry from the
//! text alone (a monospace font of known width), so the same picture always gets the same
//! drawing and the rules are unit-tested without rendering anything.

use super::picture::Picture;

/// Font size of operator text, in pixels.
pub(super) const FONT_PX: f64 = 12.0;
/// Advance of one character of the monospace font at [`FONT_PX`] (DejaVu Sans Mono and
/// Liberation Mono are 0.6 em).
pub(super) const CHAR_PX: f64 = 7.2;
/// Height of one line of text in a box.
pub(super) const LINE_PX: f64 = 16.0;
/// Space between a box's border and its text.
pub(super) const PAD_PX: f64 = 10.0;
/// Lines above the operators: the title and the partition count.
const HEADER_LINES: f64 = 2.0;
/// Characters of an operator line (with its indentation) shown in a box; longer lines
/// are cut, and the full line is its tooltip.
pub(super) const MAX_LINE_CHARS: usize = 84;
/// Indentation of one level of the operator tree, in characters.
pub(super) const INDENT_CHARS: usize = 2;
/// Space between boxes of one layer.
const GAP_X: f64 = 40.0;
/// Space between layers, where the arrows and their labels run.
const GAP_Y: f64 = 80.0;
/// Space around the whole drawing.
const MARGIN: f64 = 20.0;

/// Where everything of a [`Picture`] goes, in pixels from the top-left corner.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// Width of the whole drawing.
    pub width: f64,
    /// Height of the whole drawing.
    pub height: f64,
    /// One box per stage, in the order of [`Picture::stages`].
    pub boxes: Vec<Placed>,
    /// One route per arrow, in the order of [`Picture::shuffles`].
    pub routes: Vec<Route>,
}

/// A stage's box.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placed {
    /// Left edge.
    pub x: f64,
    /// Top edge.
    pub y: f64,
    /// Width.
    pub width: f64,
    /// Height.
    pub height: f64,
    /// The layer: 0 for stages that read no shuffle, else one more than the deepest input.
    pub layer: usize,
}

impl Placed {
    /// The horizontal middle.
    fn center_x(&self) -> f64 {
        self.x + self.width / 2.0
    }
}

/// An arrow from the bottom of the writing stage's box to the top of the reading one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Route {
    /// Where the arrow leaves the writer's box.
    pub start: (f64, f64),
    /// Where it enters the reader's box (its head).
    pub end: (f64, f64),
    /// The middle of the arrow's label, just below the writer's box.
    pub label_at: (f64, f64),
}

/// Characters shown of an operator line at `depth` with `chars` characters.
pub(super) fn shown_chars(depth: usize, chars: usize) -> usize {
    (depth * INDENT_CHARS + chars).min(MAX_LINE_CHARS)
}

/// Lays `picture` out in layers by depth, inputs at the top and the final stage last.
/// Within a layer, boxes are ordered by the mean position of their inputs (stages of the
/// first layer by id), so arrows cross little, and each layer is centred.
pub fn layout(picture: &Picture) -> Layout {
    let index_of = |id| picture.stages.iter().position(|s| s.id == id);
    // Layers: stage inputs always have smaller ids, so one pass in id order suffices.
    let mut layer = vec![0usize; picture.stages.len()];
    for (i, stage) in picture.stages.iter().enumerate() {
        layer[i] = stage
            .inputs
            .iter()
            .filter_map(|&id| index_of(id))
            .map(|j| layer[j] + 1)
            .max()
            .unwrap_or(0);
    }
    let sizes: Vec<(f64, f64)> = picture
        .stages
        .iter()
        .map(|stage| {
            let header = stage.title().len().max(stage.partitions_text().len());
            let widest = stage
                .operators
                .iter()
                .map(|op| shown_chars(op.depth, op.text.chars().count()))
                .chain([header])
                .max()
                .unwrap_or(0);
            let status = stage.status.as_ref().map_or(0, |s| s.line.chars().count());
            let widest = widest.max(status.min(MAX_LINE_CHARS));
            let lines = HEADER_LINES
                + f64::from(u8::from(stage.status.is_some()))
                + stage.operators.len() as f64;
            (
                widest as f64 * CHAR_PX + 2.0 * PAD_PX,
                lines * LINE_PX + 2.0 * PAD_PX,
            )
        })
        .collect();
    let layers = layer.iter().max().map_or(0, |&l| l + 1);
    let layer = &layer;
    let members = |l: usize| (0..picture.stages.len()).filter(move |&i| layer[i] == l);
    let row_width = |l: usize| {
        let boxes: Vec<usize> = members(l).collect();
        boxes.iter().map(|&i| sizes[i].0).sum::<f64>()
            + GAP_X * boxes.len().saturating_sub(1) as f64
    };
    let content_width = (0..layers).map(row_width).fold(0.0, f64::max);
    let mut boxes = vec![
        Placed {
            x: 0.0,
            y: 0.0,
            width: 0.0,
            height: 0.0,
            layer: 0,
        };
        picture.stages.len()
    ];
    let mut y = MARGIN;
    for l in 0..layers {
        let mut row: Vec<(f64, usize)> = members(l)
            .map(|i| {
                let centers: Vec<f64> = picture.stages[i]
                    .inputs
                    .iter()
                    .filter_map(|&id| index_of(id))
                    .map(|j| boxes[j].center_x())
                    .collect();
                let key = if centers.is_empty() {
                    i as f64
                } else {
                    centers.iter().sum::<f64>() / centers.len() as f64
                };
                (key, i)
            })
            .collect();
        row.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut x = MARGIN + (content_width - row_width(l)) / 2.0;
        let mut tallest: f64 = 0.0;
        for &(_, i) in &row {
            let (width, height) = sizes[i];
            boxes[i] = Placed {
                x,
                y,
                width,
                height,
                layer: l,
            };
            x += width + GAP_X;
            tallest = tallest.max(height);
        }
        y += tallest + GAP_Y;
    }
    let height = if layers == 0 {
        2.0 * MARGIN
    } else {
        y - GAP_Y + MARGIN
    };
    let routes = routes(picture, &boxes, index_of);
    Layout {
        width: content_width + 2.0 * MARGIN,
        height,
        boxes,
        routes,
    }
}

/// The arrows between placed boxes. Several arrows into one box arrive at points spread
/// over its top edge (left to right as their writers sit), several out of one box leave
/// spread over its bottom edge, so no two arrows share an end.
fn routes(
    picture: &Picture,
    boxes: &[Placed],
    index_of: impl Fn(usize) -> Option<usize>,
) -> Vec<Route> {
    let ends: Vec<Option<(usize, usize)>> = picture
        .shuffles
        .iter()
        .map(|a| index_of(a.from).zip(index_of(a.to)))
        .collect();
    // The share of a box's edge that arrow `k` uses, of those at that edge, ordered by
    // where the other end of each arrow sits.
    let slot = |k: usize, mine: usize, at_start: bool| -> (usize, usize) {
        let mut peers: Vec<(f64, usize)> = ends
            .iter()
            .enumerate()
            .filter_map(|(n, e)| {
                let (from, to) = (*e)?;
                let (this, other) = if at_start { (from, to) } else { (to, from) };
                (this == mine).then(|| (boxes[other].center_x(), n))
            })
            .collect();
        peers.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let position = peers.iter().position(|&(_, n)| n == k).unwrap_or(0);
        (position, peers.len())
    };
    let spread = |placed: &Placed, (position, count): (usize, usize)| {
        placed.x + placed.width * (position + 1) as f64 / (count + 1) as f64
    };
    ends.iter()
        .enumerate()
        .map(|(k, e)| match *e {
            Some((from, to)) => {
                let start = (spread(&boxes[from], slot(k, from, true)), {
                    boxes[from].y + boxes[from].height
                });
                let end = (spread(&boxes[to], slot(k, to, false)), boxes[to].y);
                Route {
                    start,
                    end,
                    label_at: (start.0, start.1 + GAP_Y / 4.0),
                }
            }
            None => Route {
                start: (0.0, 0.0),
                end: (0.0, 0.0),
                label_at: (0.0, 0.0),
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::picture::{OperatorLine, ShuffleArrow, StageBox};
    use super::*;

    fn stage(id: usize, inputs: &[usize], ops: &[&str]) -> StageBox {
        StageBox {
            id,
            is_final: false,
            partitions: 2,
            inputs: inputs.to_vec(),
            operators: ops
                .iter()
                .enumerate()
                .map(|(depth, text)| OperatorLine {
                    depth,
                    text: text.to_string(),
                })
                .collect(),
            status: None,
        }
    }

    fn arrow(from: usize, to: usize) -> ShuffleArrow {
        ShuffleArrow {
            from,
            to,
            label: "single".into(),
        }
    }

    /// Two scans, a join of both, and a final stage: a diamond without the top.
    fn join() -> Picture {
        Picture {
            stages: vec![
                stage(0, &[], &["Writer", "Scan a"]),
                stage(1, &[], &["Writer", "Scan b", "x"]),
                stage(2, &[0, 1], &["Writer", "Join"]),
                stage(3, &[2], &["Writer"]),
            ],
            shuffles: vec![arrow(0, 2), arrow(1, 2), arrow(2, 3)],
        }
    }

    #[test]
    fn stages_sit_in_layers_by_depth_inputs_first() {
        let placed = layout(&join());
        let layers: Vec<usize> = placed.boxes.iter().map(|b| b.layer).collect();
        assert_eq!(layers, [0, 0, 1, 2]);
        assert_eq!(placed.boxes[0].y, placed.boxes[1].y);
        assert!(placed.boxes[0].x + placed.boxes[0].width < placed.boxes[1].x);
        // Each layer starts below the tallest box of the one above.
        let tallest = placed.boxes[0].height.max(placed.boxes[1].height);
        assert!(placed.boxes[2].y >= placed.boxes[0].y + tallest);
        assert!(placed.boxes[3].y > placed.boxes[2].y + placed.boxes[2].height);
        for b in &placed.boxes {
            assert!(b.x >= 0.0 && b.x + b.width <= placed.width);
            assert!(b.y >= 0.0 && b.y + b.height <= placed.height);
        }
    }

    #[test]
    fn arrows_run_from_the_writer_bottom_to_the_reader_top() {
        let placed = layout(&join());
        for (route, arrow) in placed.routes.iter().zip(&join().shuffles) {
            let (from, to) = (&placed.boxes[arrow.from], &placed.boxes[arrow.to]);
            assert_eq!(route.start.1, from.y + from.height);
            assert_eq!(route.end.1, to.y);
            assert!(route.start.0 > from.x && route.start.0 < from.x + from.width);
            assert!(route.end.0 > to.x && route.end.0 < to.x + to.width);
        }
        // Two arrows into the join arrive at different points, left one left.
        assert!(placed.routes[0].end.0 < placed.routes[1].end.0);
    }

    #[test]
    fn long_lines_are_cut_and_widen_the_box_only_up_to_the_limit() {
        let long = "y".repeat(500);
        let picture = Picture {
            stages: vec![stage(0, &[], &["Writer", &long])],
            shuffles: vec![],
        };
        let placed = layout(&picture);
        assert_eq!(
            placed.boxes[0].width,
            MAX_LINE_CHARS as f64 * CHAR_PX + 2.0 * PAD_PX
        );
    }
}
