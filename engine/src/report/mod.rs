//! Self-contained HTML reports of the example pipelines: one file with its CSS, its charts
//! (inline SVG drawn by `plotters`) and a small hand-written script that sorts its tables,
//! so that it opens anywhere, offline, without a server.
//!
//! - [`page`]: the page ([`Page`]): a header, sections of figures, tables and text, and
//!   [`Page::write`], which replaces the file in one rename;
//! - [`table`]: [`Table`], a sortable HTML table, from a query result or by hand;
//! - [`chart`]: the charts (bars, box plots, lines, scatter, heat map) as SVG strings;
//! - [`format`]: how numbers read in the reports and the terminal summaries (money to the
//!   cent, counts with thousands separated).

pub mod chart;
pub mod format;
pub mod page;
pub mod table;

pub use page::Page;
pub use table::Table;

/// Text made safe for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn markup_in_text_is_escaped() {
        assert_eq!(
            escape(r#"<b>"Tom" & 'Jerry'</b>"#),
            "&lt;b&gt;&quot;Tom&quot; &amp; &#39;Jerry&#39;&lt;/b&gt;"
        );
    }
}
