//! What a benchmark prints: Markdown lines echoed to stdout as they come and kept, so that
//! `ember-bench suite --write BENCHMARKS.md` can put the whole run into the file between
//! its markers, and the figures the chart is drawn from (`--figures`, read by
//! `bench/chart`).

use std::path::Path;

use anyhow::Context;

/// The line before the suite's section in `BENCHMARKS.md`.
pub const BEGIN: &str = "<!-- ember-bench suite: begin (rewritten by bench/run) -->";
/// The line after it.
pub const END: &str = "<!-- ember-bench suite: end -->";

/// Markdown lines, printed as they are added.
#[derive(Default)]
pub struct Report {
    lines: Vec<String>,
    /// Times per workload and engine, for the chart.
    pub figures: Vec<Figure>,
}

/// One workload's times per engine (milliseconds; `None` where the engine did not run it
/// or its result was wrong).
pub struct Figure {
    /// The workload, as the chart labels it.
    pub workload: String,
    /// `(engine, time)` in column order.
    pub times: Vec<(String, Option<f64>)>,
}

impl Report {
    /// Prints `line` and keeps it.
    pub fn line(&mut self, line: impl Into<String>) {
        let line = line.into();
        println!("{line}");
        self.lines.push(line);
    }

    /// An empty line.
    pub fn blank(&mut self) {
        self.line("");
    }

    /// The lines so far.
    pub fn text(&self) -> String {
        let mut text = self.lines.join("\n");
        text.push('\n');
        text
    }

    /// The figures as JSON: `[{"workload": .., "times": [[engine, ms or null], ..]}, ..]`.
    pub fn figures_json(&self) -> String {
        let figures: Vec<serde_json::Value> = self
            .figures
            .iter()
            .map(|f| serde_json::json!({"workload": f.workload, "times": f.times}))
            .collect();
        serde_json::Value::Array(figures).to_string()
    }

    /// Puts the report between [`BEGIN`] and [`END`] in `file`, replacing what was there;
    /// a file without the markers gets them after its first heading. The file is replaced
    /// whole (written aside, then renamed), so a failed run leaves it as it was.
    pub fn rewrite(&self, file: &Path) -> anyhow::Result<()> {
        let old = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => "# Benchmarks\n".to_string(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
        };
        let new = splice(&old, &self.text());
        let aside = file.with_extension("md.partial");
        std::fs::write(&aside, new).with_context(|| format!("writing {}", aside.display()))?;
        std::fs::rename(&aside, file).with_context(|| format!("replacing {}", file.display()))
    }
}

/// `old` with `section` between the markers.
fn splice(old: &str, section: &str) -> String {
    let block = format!("{BEGIN}\n{section}{END}\n");
    if let (Some(begin), Some(end)) = (old.find(BEGIN), old.find(END))
        && begin < end
    {
        let after = &old[end + END.len()..];
        return format!(
            "{}{block}\n{}",
            &old[..begin],
            after.trim_start_matches('\n')
        );
    }
    // After the first heading's paragraph: the first blank line after a `# ` line.
    let heading = old.find("# ").unwrap_or(0);
    let at = old[heading..]
        .find("\n\n")
        .map_or(old.len(), |i| heading + i + 2);
    format!("{}{block}\n{}", &old[..at], &old[at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_goes_between_the_markers_and_replaces_the_last_one() {
        let first = splice("# Benchmarks\n\nintro\n\n## Older\n", "| a |\n");
        assert!(first.starts_with(&format!("# Benchmarks\n\n{BEGIN}\n| a |\n{END}\n\nintro")));
        assert!(first.ends_with("## Older\n"));
        let second = splice(&first, "| b |\n");
        assert!(second.contains("| b |") && !second.contains("| a |"));
        assert_eq!(second.matches(BEGIN).count(), 1);
        assert!(second.ends_with("intro\n\n## Older\n"));
    }
}
