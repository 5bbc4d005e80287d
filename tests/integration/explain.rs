//! `ember explain --format text|svg|dot`: the stage graph of a TPC-H query as a picture with
//! one box per stage and one labelled arrow per shuffle, the same graph as DOT, and the
//! SVG opened in headless Chromium (no console errors, a picture that is not blank). Also
//! that the Chromium check itself fails on a page whose script throws.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use ember::datasets::tpch_tables;
use ember_tests::{open_in_chromium, png_colours, png_size, tpch_dir, tpch_query};
use quick_xml::events::{BytesStart, Event};

use crate::cluster::NODE;

/// `ember explain ARGS` over the TPC-H test tables, on an embedded cluster of 2 executors.
fn ember_explain(args: &[&str]) -> Output {
    ember_over_tpch(&["explain"], args)
}

/// `ember COMMAND... --executors 2 --table ... ARGS` over the TPC-H test tables.
pub(crate) fn ember_over_tpch(command: &[&str], args: &[&str]) -> Output {
    let tables: Vec<String> = tpch_tables()
        .iter()
        .flat_map(|t| {
            [
                "--table".to_string(),
                format!("{t}={}:parquet", tpch_dir().join(t).display()),
            ]
        })
        .collect();
    Command::new(NODE)
        .args(command)
        .args(["--executors", "2"])
        .args(&tables)
        .args(args)
        .env_remove("EMBER_SCHEDULER")
        .stdin(Stdio::null())
        .output()
        .expect("ember runs")
}

/// Standard output of a successful `ember explain ARGS`.
fn explain_stdout(args: &[&str]) -> String {
    let output = ember_explain(args);
    assert!(
        output.status.success(),
        "ember explain {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// The stage graph of the text form: each stage's partition count, and the shuffle edges
/// (writer, reader), read from lines like `Stage 5: partitions=2, inputs=stage 1, stage 4, output=…`.
fn text_graph(text: &str) -> (BTreeMap<usize, usize>, BTreeSet<(usize, usize)>) {
    let mut stages = BTreeMap::new();
    let mut edges = BTreeSet::new();
    for line in text.lines().filter(|l| l.starts_with("Stage ")) {
        let (head, rest) = line.split_once(": partitions=").expect("a stage line");
        let id: usize = head["Stage ".len()..]
            .trim_end_matches(" (final)")
            .parse()
            .expect("a stage id");
        let (partitions, rest) = rest.split_once(", inputs=").expect("inputs");
        stages.insert(id, partitions.parse().expect("a partition count"));
        let (inputs, _) = rest.split_once(", output=").expect("output");
        for input in inputs.split(", ").filter(|i| *i != "-") {
            let from = input
                .trim_start_matches("stage ")
                .parse()
                .expect("an input id");
            edges.insert((from, id));
        }
    }
    (stages, edges)
}

/// One element of an SVG document: its name, attributes and own text.
#[derive(Debug)]
struct Element {
    name: String,
    attributes: BTreeMap<String, String>,
    text: String,
}

impl Element {
    fn class(&self) -> &str {
        self.attributes.get("class").map_or("", String::as_str)
    }

    fn attribute(&self, name: &str) -> &str {
        self.attributes
            .get(name)
            .unwrap_or_else(|| panic!("{} has no {name}: {self:?}", self.name))
    }
}

/// The elements of `svg` in document order, after checking that it is well-formed XML
/// with one `svg` root and that every entity is one of XML's own.
fn svg_elements(svg: &str) -> Vec<Element> {
    let mut reader = quick_xml::Reader::from_str(svg);
    reader.config_mut().check_end_names = true;
    let mut elements: Vec<Element> = Vec::new();
    let mut open: Vec<usize> = Vec::new();
    let mut roots = 0;
    let start = |e: &BytesStart| Element {
        name: String::from_utf8(e.name().as_ref().to_vec()).expect("a UTF-8 name"),
        attributes: e
            .attributes()
            .map(|a| {
                let a = a.expect("a well-formed attribute");
                (
                    String::from_utf8(a.key.as_ref().to_vec()).expect("a UTF-8 key"),
                    a.unescape_value().expect("an escaped value").into_owned(),
                )
            })
            .collect(),
        text: String::new(),
    };
    loop {
        match reader.read_event() {
            Err(e) => panic!(
                "not well-formed at byte {}: {e}\n{svg}",
                reader.buffer_position()
            ),
            Ok(Event::Eof) => break,
            Ok(Event::Start(e)) => {
                roots += usize::from(open.is_empty());
                elements.push(start(&e));
                open.push(elements.len() - 1);
            }
            Ok(Event::Empty(e)) => {
                roots += usize::from(open.is_empty());
                elements.push(start(&e));
            }
            Ok(Event::End(_)) => {
                open.pop();
            }
            Ok(Event::Text(t)) => {
                if let Some(&i) = open.last() {
                    elements[i].text.push_str(&t.decode().expect("UTF-8 text"));
                }
            }
            Ok(Event::GeneralRef(r)) => {
                let name = r.decode().expect("UTF-8 entity name");
                let c = quick_xml::escape::resolve_predefined_entity(&name)
                    .unwrap_or_else(|| panic!("entity &{name}; is not XML's own"));
                if let Some(&i) = open.last() {
                    elements[i].text.push_str(c);
                }
            }
            Ok(_) => {}
        }
    }
    assert!(open.is_empty(), "unclosed elements at the end");
    assert_eq!(roots, 1, "one root element");
    assert_eq!(elements[0].name, "svg");
    elements
}

/// TPC-H q5 (six tables, five joins) makes eight stages with hash, broadcast and
/// preserving shuffles.
#[test]
fn explain_svg_of_tpch_q5_has_a_box_per_stage_and_a_labelled_arrow_per_shuffle() {
    let query = tpch_query(5);
    let (stages, edges) = text_graph(&explain_stdout(&[&query]));
    assert!(
        stages.len() >= 5 && edges.len() >= 4,
        "{stages:?} {edges:?}"
    );
    let svg = explain_stdout(&["--format", "svg", &query]);
    let elements = svg_elements(&svg);

    let boxes: Vec<&Element> = elements.iter().filter(|e| e.class() == "stage").collect();
    let ids: BTreeSet<String> = boxes
        .iter()
        .map(|e| e.attribute("id").to_string())
        .collect();
    let expected_ids: BTreeSet<String> = stages.keys().map(|s| format!("stage-{s}")).collect();
    assert_eq!(ids, expected_ids);
    let titles: Vec<&str> = elements
        .iter()
        .filter(|e| e.class() == "stage-title")
        .map(|e| e.text.as_str())
        .collect();
    let last = stages.keys().max().expect("stages");
    let expected_titles: Vec<String> = stages
        .keys()
        .map(|s| match s == last {
            true => format!("Stage {s} (final)"),
            false => format!("Stage {s}"),
        })
        .collect();
    assert_eq!(titles, expected_titles);
    let partitions: Vec<&str> = elements
        .iter()
        .filter(|e| e.class() == "stage-partitions")
        .map(|e| e.text.as_str())
        .collect();
    let expected_partitions: Vec<String> = stages
        .values()
        .map(|&p| match p {
            1 => "1 partition".to_string(),
            p => format!("{p} partitions"),
        })
        .collect();
    assert_eq!(partitions, expected_partitions);

    let arrows: BTreeSet<(usize, usize)> = elements
        .iter()
        .filter(|e| e.class() == "shuffle")
        .map(|e| {
            assert_eq!(e.name, "path");
            (
                e.attribute("data-from").parse().expect("an id"),
                e.attribute("data-to").parse().expect("an id"),
            )
        })
        .collect();
    assert_eq!(arrows, edges);
    let labels: Vec<&Element> = elements
        .iter()
        .filter(|e| e.class() == "shuffle-label")
        .collect();
    assert_eq!(labels.len(), edges.len());
    for label in &labels {
        let text = label.text.as_str();
        let known = text == "broadcast"
            || text == "single"
            || ["hash(", "round-robin x ", "preserve x "]
                .iter()
                .any(|p| text.starts_with(p));
        assert!(known, "unexpected shuffle label {text:?}");
    }
    // q5 groups by nation name, and builds its joins from broadcast sides.
    assert!(labels.iter().any(|l| l.text == "hash(n_name) x 2"), "{svg}");
    assert!(labels.iter().any(|l| l.text == "broadcast"), "{svg}");

    // Operators are there, one text per line of the text form, markup escaped.
    let operators: Vec<&Element> = elements
        .iter()
        .filter(|e| e.class() == "operator")
        .collect();
    assert!(
        operators
            .iter()
            .any(|o| o.text.starts_with("HashJoinExec: "))
    );
    assert!(
        operators.iter().any(|o| o
            .text
            .starts_with("FilterExec: o_orderdate@2 >= 1994-01-01")),
        "{svg}"
    );
    // Self-contained: the namespace is the only address in it.
    assert_eq!(svg.matches("http").count(), 1);
}

#[test]
fn explain_dot_has_the_same_stages_and_shuffles_as_the_text() {
    let query = tpch_query(5);
    let (stages, edges) = text_graph(&explain_stdout(&[&query]));
    let dot = explain_stdout(&["--format", "dot", &query]);
    assert!(
        dot.starts_with("digraph stages {\n") && dot.ends_with("}\n"),
        "{dot}"
    );
    let nodes: BTreeSet<usize> = dot
        .lines()
        .filter(|l| !l.contains(" -> "))
        .filter_map(|l| l.trim().strip_prefix('s')?.split_once(" [label=\""))
        .map(|(id, _)| id.parse().expect("a node id"))
        .collect();
    assert_eq!(nodes, stages.keys().copied().collect());
    let arrows: BTreeSet<(usize, usize)> = dot
        .lines()
        .filter_map(|l| l.trim().split_once(" -> "))
        .map(|(from, to)| {
            let to = to.split_once(' ').map_or(to, |(t, _)| t);
            (
                from.trim_start_matches('s').parse().expect("an id"),
                to.trim_start_matches('s').parse().expect("an id"),
            )
        })
        .collect();
    assert_eq!(arrows, edges);
    assert!(dot.contains("[label=\"hash(n_name) x 2\"]"), "{dot}");
    // Quotes inside labels are escaped: every line has an even number of bare quotes.
    for line in dot.lines() {
        let bare = line.replace("\\\\", "").replace("\\\"", "");
        assert_eq!(bare.matches('"').count() % 2, 0, "{line}");
    }
}

#[test]
fn explain_rejects_an_unknown_format_in_one_line_naming_the_option() {
    let output = ember_explain(&["--format", "png", "SELECT 1"]);
    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("--format") && stderr.contains("'png'") && stderr.contains("svg"),
        "{stderr}"
    );
}

/// Where the screenshot of q5's stage graph goes: `docs/explain-q5.png` when
/// `EMBER_UPDATE_SCREENSHOTS` is set, else a temp file.
fn screenshot_path(scratch: &Path) -> PathBuf {
    if std::env::var_os("EMBER_UPDATE_SCREENSHOTS").is_some() {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/explain-q5.png")
    } else {
        scratch.join("explain-q5.png")
    }
}

#[test]
fn chromium_draws_the_q5_stage_graph_without_console_errors() {
    let query = tpch_query(5);
    let svg = explain_stdout(&["--format", "svg", &query]);
    let root = &svg_elements(&svg)[0];
    let size = |name: &str| root.attribute(name).parse::<f64>().expect("a size").ceil() as u32;
    let (width, height) = (size("width"), size("height"));
    let scratch = tempfile::tempdir().expect("a temp dir");
    let file = scratch.path().join("q5.svg");
    std::fs::write(&file, &svg).expect("the SVG is written");

    let page = open_in_chromium(&file, width, height);
    assert!(page.errors.is_empty(), "{:?}", page.errors);
    let (stages, _) = text_graph(&explain_stdout(&[&query]));
    assert_eq!(
        page.dom.matches("class=\"stage\"").count(),
        stages.len(),
        "{}",
        page.dom
    );
    assert_eq!(png_size(&page.screenshot), Some((width, height)));
    let colours = png_colours(&page.screenshot).expect("an RGB(A) PNG");
    // White, box fills and borders, arrows, and antialiased text: far more than a blank page.
    assert!(colours > 20, "{colours} colours");
    std::fs::write(screenshot_path(scratch.path()), &page.screenshot)
        .expect("the screenshot is written");
}

#[test]
fn chromium_check_reports_a_throwing_script_and_broken_xml() {
    let scratch = tempfile::tempdir().expect("a temp dir");
    let page = scratch.path().join("broken.html");
    std::fs::write(
        &page,
        "<!doctype html><title>t</title><p>hello</p>\
         <script>undefinedFunction();</script>",
    )
    .expect("written");
    let load = open_in_chromium(&page, 400, 300);
    assert!(
        load.errors
            .iter()
            .any(|e| e.contains("Uncaught ReferenceError: undefinedFunction")),
        "{:?}",
        load.errors
    );
    assert!(png_colours(&load.screenshot).expect("a PNG") > 1);

    let svg = scratch.path().join("broken.svg");
    std::fs::write(
        &svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\"><rect></svg>",
    )
    .expect("written");
    let load = open_in_chromium(&svg, 400, 300);
    assert!(
        load.errors.iter().any(|e| e.starts_with("XML parse error")),
        "{:?}",
        load.errors
    );

    let blank = scratch.path().join("blank.html");
    std::fs::write(&blank, "<!doctype html><title>t</title>").expect("written");
    let load = open_in_chromium(&blank, 400, 300);
    assert!(load.errors.is_empty(), "{:?}", load.errors);
    assert_eq!(png_colours(&load.screenshot), Some(1));
}
