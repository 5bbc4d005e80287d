//! The SVG writer: a [`Picture`] placed by a [`Layout`] as one self-contained document
//! (inline styles only: no fonts, style sheets or scripts from anywhere else).
//!
//! Stages are `<g class="stage">` groups (a `rect`, the title, the partition count and one
//! `text` per operator); shuffles are `<path class="shuffle">` arrows with a
//! `<text class="shuffle-label">` each, so tools and tests can find them.

use std::fmt::Write;

use super::escape::xml;
use super::layout::{
    CHAR_PX, FONT_PX, INDENT_CHARS, LINE_PX, Layout, MAX_LINE_CHARS, PAD_PX, Placed,
};
use super::picture::{Picture, StageBox, StageState};

/// Font size of arrow labels, in pixels.
const LABEL_FONT_PX: f64 = 11.0;
/// Fill and border of an ordinary stage's box, and of the final stage's.
const STAGE_COLORS: (&str, &str) = ("#eef4fb", "#4a78b0");
const FINAL_COLORS: (&str, &str) = ("#fdf1e4", "#c27a2c");
/// Fill and border of a stage box by its state in a job (the web UI's drawing).
fn state_colors(state: StageState) -> (&'static str, &'static str) {
    match state {
        StageState::Waiting => ("#f4f4f4", "#9a9a9a"),
        StageState::Running => ("#e6f0ff", "#2f6fd6"),
        StageState::Done => ("#e8f6ea", "#2e8b47"),
        StageState::Failed => ("#fdeaea", "#c0392b"),
    }
}
/// Colour of arrows and their labels.
const ARROW_COLOR: &str = "#555555";

/// `picture`, placed by `layout`, as SVG text.
pub(super) fn write(picture: &Picture, layout: &Layout) -> String {
    let mut out = String::new();
    let (w, h) = (layout.width.ceil(), layout.height.ceil());
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="monospace" font-size="{FONT_PX}">"##
    );
    let _ = writeln!(
        out,
        "<title>Stage graph: {} stages, {} shuffles</title>",
        picture.stages.len(),
        picture.shuffles.len()
    );
    let _ = writeln!(
        out,
        r##"<defs><marker id="arrow-head" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="{ARROW_COLOR}"/></marker></defs>"##
    );
    let _ = writeln!(
        out,
        r##"<rect width="100%" height="100%" fill="#ffffff"/>"##
    );
    // Arrows under the boxes, labels over everything.
    out.push_str("<g class=\"shuffles\">\n");
    for (arrow, route) in picture.shuffles.iter().zip(&layout.routes) {
        let ((x1, y1), (x2, y2)) = (route.start, route.end);
        let bend = (y2 - y1) / 2.0;
        let _ = writeln!(
            out,
            r##"<path class="shuffle" data-from="{}" data-to="{}" d="M{x1:.1},{y1:.1} C{x1:.1},{:.1} {x2:.1},{:.1} {x2:.1},{y2:.1}" fill="none" stroke="{ARROW_COLOR}" stroke-width="1.5" marker-end="url(#arrow-head)"/>"##,
            arrow.from,
            arrow.to,
            y1 + bend,
            y2 - bend,
        );
    }
    out.push_str("</g>\n<g class=\"stages\">\n");
    for (stage, placed) in picture.stages.iter().zip(&layout.boxes) {
        write_stage(&mut out, stage, placed);
    }
    out.push_str("</g>\n<g class=\"labels\">\n");
    for (arrow, route) in picture.shuffles.iter().zip(&layout.routes) {
        let (x, y) = route.label_at;
        let width = arrow.label.chars().count() as f64 * LABEL_FONT_PX * 0.6 + 8.0;
        let _ = writeln!(
            out,
            r##"<rect x="{:.1}" y="{:.1}" width="{width:.1}" height="{:.1}" rx="3" fill="#ffffff" fill-opacity="0.9"/>"##,
            x - width / 2.0,
            y - LABEL_FONT_PX,
            LABEL_FONT_PX * 1.5,
        );
        let _ = writeln!(
            out,
            r##"<text class="shuffle-label" data-from="{}" data-to="{}" x="{x:.1}" y="{y:.1}" text-anchor="middle" font-size="{LABEL_FONT_PX}" fill="{ARROW_COLOR}">{}</text>"##,
            arrow.from,
            arrow.to,
            xml(&arrow.label)
        );
    }
    out.push_str("</g>\n</svg>\n");
    out
}

/// One stage's group: its box, heading and operators.
fn write_stage(out: &mut String, stage: &StageBox, placed: &Placed) {
    let (fill, stroke) = match &stage.status {
        Some(status) => state_colors(status.state),
        None if stage.is_final => FINAL_COLORS,
        None => STAGE_COLORS,
    };
    let state = stage
        .status
        .as_ref()
        .map(|s| format!(r#" data-state="{}""#, s.state.as_str()))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        r##"<g class="stage" id="stage-{}" data-stage="{}"{state}>"##,
        stage.id, stage.id
    );
    let _ = writeln!(
        out,
        r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" rx="6" fill="{fill}" stroke="{stroke}" stroke-width="1.5"/>"##,
        placed.x, placed.y, placed.width, placed.height
    );
    let left = placed.x + PAD_PX;
    // Baseline of line `k` (0 is the title).
    let baseline = |k: usize| placed.y + PAD_PX + (k + 1) as f64 * LINE_PX - 4.0;
    let _ = writeln!(
        out,
        r##"<text class="stage-title" x="{left:.1}" y="{:.1}" font-weight="bold">{}</text>"##,
        baseline(0),
        xml(&stage.title())
    );
    let _ = writeln!(
        out,
        r##"<text class="stage-partitions" x="{left:.1}" y="{:.1}" fill="{stroke}">{}</text>"##,
        baseline(1),
        xml(&stage.partitions_text())
    );
    let mut first_operator = 2;
    if let Some(status) = &stage.status {
        let _ = writeln!(
            out,
            r##"<text class="stage-status" x="{left:.1}" y="{:.1}" fill="{stroke}" font-weight="bold">{}</text>"##,
            baseline(2),
            xml(&status.line)
        );
        first_operator = 3;
    }
    for (k, op) in stage.operators.iter().enumerate() {
        let indent = op.depth * INDENT_CHARS;
        let room = MAX_LINE_CHARS.saturating_sub(indent).max(1);
        let x = left + indent as f64 * CHAR_PX;
        let y = baseline(k + first_operator);
        if op.text.chars().count() > room {
            let cut: String = op.text.chars().take(room - 1).collect();
            let _ = writeln!(
                out,
                r##"<text class="operator" x="{x:.1}" y="{y:.1}"><title>{}</title>{}…</text>"##,
                xml(&op.text),
                xml(&cut)
            );
        } else {
            let _ = writeln!(
                out,
                r##"<text class="operator" x="{x:.1}" y="{y:.1}">{}</text>"##,
                xml(&op.text)
            );
        }
    }
    out.push_str("</g>\n");
}

#[cfg(test)]
mod tests {
    use super::super::layout::layout;
    use super::super::picture::{OperatorLine, ShuffleArrow, StageStatus};
    use super::*;

    #[test]
    fn operator_text_is_escaped_and_long_lines_keep_their_full_text_as_tooltip() {
        let long = format!("FilterExec: a < 1 & b > \"2\" {}", "z".repeat(200));
        let picture = Picture {
            stages: vec![
                StageBox {
                    id: 0,
                    is_final: false,
                    partitions: 2,
                    inputs: vec![],
                    operators: vec![OperatorLine {
                        depth: 0,
                        text: long.clone(),
                    }],
                    status: None,
                },
                StageBox {
                    id: 1,
                    is_final: true,
                    partitions: 1,
                    inputs: vec![0],
                    operators: vec![],
                    status: Some(StageStatus {
                        state: StageState::Running,
                        line: "1/2 tasks <1>".into(),
                    }),
                },
            ],
            shuffles: vec![ShuffleArrow {
                from: 0,
                to: 1,
                label: "hash(a<b) x 2".into(),
            }],
        };
        let svg = write(&picture, &layout(&picture));
        assert!(svg.contains("FilterExec: a &lt; 1 &amp; b &gt; &quot;2&quot;"));
        assert!(svg.contains(&format!("<title>{}</title>", xml(&long))));
        assert!(svg.contains("…</text>"));
        assert!(svg.contains(">hash(a&lt;b) x 2</text>"));
        assert!(svg.contains("Stage 1 (final)"));
        assert!(svg.contains(r#"data-state="running""#));
        assert!(svg.contains(">1/2 tasks &lt;1&gt;</text>"));
        assert_eq!(svg.matches("<g class=\"stage\"").count(), 2);
        assert_eq!(svg.matches("<path class=\"shuffle\"").count(), 1);
        // Nothing from outside: the only address is the SVG namespace.
        assert_eq!(svg.matches("http").count(), 1);
    }
}
