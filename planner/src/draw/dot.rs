//! The DOT writer: a [`Picture`] as a Graphviz digraph (`dot -Tsvg` draws it), with the
//! operators in full, since Graphviz sizes its boxes itself.

use std::fmt::Write;

use super::escape::dot;
use super::picture::Picture;

/// `picture` as DOT text: node `sN` per stage, one edge per shuffle.
pub(super) fn write(picture: &Picture) -> String {
    let mut out = String::from("digraph stages {\n");
    out.push_str("  rankdir=TB;\n");
    out.push_str("  node [shape=box, style=\"rounded,filled\", fillcolor=\"#eef4fb\", fontname=\"monospace\", fontsize=10];\n");
    out.push_str("  edge [fontname=\"monospace\", fontsize=10];\n");
    for stage in &picture.stages {
        // The heading centred (`\n`), the operators left-aligned (`\l` ends each line).
        let mut label = format!(
            "{}\\n{}\\n",
            dot(&stage.title()),
            dot(&stage.partitions_text())
        );
        for op in &stage.operators {
            label.push_str(&" ".repeat(op.depth * 2));
            label.push_str(&dot(&op.text));
            label.push_str("\\l");
        }
        let fill = if stage.is_final {
            ", fillcolor=\"#fdf1e4\""
        } else {
            ""
        };
        // Writing to a String cannot fail.
        let _ = writeln!(out, "  s{} [label=\"{label}\"{fill}];", stage.id);
    }
    for arrow in &picture.shuffles {
        let _ = writeln!(
            out,
            "  s{} -> s{} [label=\"{}\"];",
            arrow.from,
            arrow.to,
            dot(&arrow.label)
        );
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::super::picture::{OperatorLine, ShuffleArrow, StageBox};
    use super::*;

    #[test]
    fn nodes_and_edges_with_escaped_left_aligned_labels() {
        let picture = Picture {
            stages: vec![
                StageBox {
                    id: 0,
                    is_final: false,
                    partitions: 1,
                    inputs: vec![],
                    operators: vec![
                        OperatorLine {
                            depth: 0,
                            text: "Writer".into(),
                        },
                        OperatorLine {
                            depth: 1,
                            text: r##"Filter: a = "x\y""##.into(),
                        },
                    ],
                    status: None,
                },
                StageBox {
                    id: 1,
                    is_final: true,
                    partitions: 1,
                    inputs: vec![0],
                    operators: vec![],
                    status: None,
                },
            ],
            shuffles: vec![ShuffleArrow {
                from: 0,
                to: 1,
                label: "single".into(),
            }],
        };
        let text = write(&picture);
        assert!(text.contains(
            r##"  s0 [label="Stage 0\n1 partition\nWriter\l  Filter: a = \"x\\y\"\l"];"##
        ));
        assert!(
            text.contains(
                r##"  s1 [label="Stage 1 (final)\n1 partition\n", fillcolor="#fdf1e4"];"##
            )
        );
        assert!(text.contains(r##"  s0 -> s1 [label="single"];"##));
    }
}
