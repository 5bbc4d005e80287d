//! A report page: a title, a few lines about the run, key figures, and sections of text,
//! charts and tables, rendered as one self-contained HTML document (inline CSS, inline
//! SVG, one small script that sorts tables; nothing fetched from the network).

use std::fmt::Write as _;
use std::path::Path;

use super::format::escape;
use super::table::Table;
use crate::error::{EmberError, Result};

/// The page's style: readable on a laptop and on paper, charts scaled to the column.
const STYLE: &str = "\
:root{color-scheme:light;--ink:#1f2933;--muted:#616e7c;--rule:#d9dee3;--accent:#1f77b4}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:var(--ink);background:#fff}
header,main{max-width:1040px;margin:0 auto;padding:0 20px}
header{padding-top:24px;border-bottom:1px solid var(--rule);padding-bottom:12px}
h1{font-size:26px;margin:0 0 6px}
h2{font-size:19px;margin:28px 0 8px;padding-top:8px;border-top:1px solid var(--rule)}
p{margin:4px 0}
.muted{color:var(--muted)}
nav{margin:10px 0 0;font-size:14px}
nav a{margin-right:14px;color:var(--accent);text-decoration:none}
.facts{display:flex;flex-wrap:wrap;gap:10px;margin:14px 0 0;padding:0;list-style:none}
.facts li{border:1px solid var(--rule);border-radius:6px;padding:6px 12px;min-width:120px}
.facts b{display:block;font-size:18px}
.facts span{color:var(--muted);font-size:13px}
figure.chart{margin:8px 0 16px}
figure.chart svg{display:block;max-width:100%;height:auto}
figcaption{color:var(--muted);font-size:13px}
.scroll{max-height:420px;overflow:auto;border:1px solid var(--rule);border-radius:4px}
table{border-collapse:collapse;font-size:13px;width:100%}
caption{text-align:left;color:var(--muted);padding:4px 0}
th,td{padding:3px 8px;border-bottom:1px solid #eef1f4;white-space:nowrap}
th{position:sticky;top:0;background:#f5f7fa;text-align:left;cursor:pointer;user-select:none}
th.num,td.num{text-align:right;font-variant-numeric:tabular-nums}
th[aria-sort=ascending]::after{content:' \\25B2'}
th[aria-sort=descending]::after{content:' \\25BC'}
tbody tr:hover{background:#f8fafc}
footer{max-width:1040px;margin:24px auto;padding:0 20px 24px;color:var(--muted);font-size:12px}
";

/// Sorts a table when a header is clicked (again: the other way); numbers by value,
/// text by the reader's collation, blanks last. `#sort=TABLE:COLUMN:asc|desc` in the
/// address sorts one table as the page opens, so a sorted view can be linked to.
const SCRIPT: &str = "\
(function(){
'use strict';
function key(cell){var v=cell.getAttribute('data-sort');return v===null?cell.textContent:v;}
function sortTable(table,column,descending){
var head=table.tHead.rows[0];var numeric=head.cells[column].classList.contains('num');
var body=table.tBodies[0];var rows=Array.prototype.slice.call(body.rows);
rows.sort(function(a,b){
var x=key(a.cells[column]),y=key(b.cells[column]);
if(x===''||y===''){return x===y?0:(x===''?1:-1);}
var c=numeric?parseFloat(x)-parseFloat(y):x.localeCompare(y);
return descending?-c:c;});
rows.forEach(function(row){body.appendChild(row);});
Array.prototype.forEach.call(head.cells,function(th,i){
th.setAttribute('aria-sort',i===column?(descending?'descending':'ascending'):'none');});
}
Array.prototype.forEach.call(document.querySelectorAll('table.sortable'),function(table){
Array.prototype.forEach.call(table.tHead.rows[0].cells,function(th,i){
th.tabIndex=0;
var toggle=function(){sortTable(table,i,th.getAttribute('aria-sort')==='ascending');};
th.addEventListener('click',toggle);
th.addEventListener('keydown',function(e){if(e.key==='Enter'){toggle();}});
});
});
var wanted=/^#sort=([A-Za-z0-9_-]+):([0-9]+):(asc|desc)$/.exec(window.location.hash);
if(wanted){var table=document.getElementById(wanted[1]);
if(table&&table.tHead&&+wanted[2]<table.tHead.rows[0].cells.length){
sortTable(table,+wanted[2],wanted[3]==='desc');}}
})();
";

/// One part of a section.
enum Block {
    Text(String),
    Chart {
        id: String,
        caption: String,
        svg: String,
    },
    Table(Table),
}

/// A titled part of the page, linked from its header.
pub struct Section {
    id: String,
    title: String,
    blocks: Vec<Block>,
}

impl Section {
    /// A paragraph of plain text.
    pub fn text(&mut self, text: impl Into<String>) -> &mut Self {
        self.blocks.push(Block::Text(text.into()));
        self
    }

    /// A chart (`svg`, from [`super::chart`]) with its caption; `id` names it in the page
    /// (`chart-<id>`).
    pub fn chart(&mut self, id: &str, caption: impl Into<String>, svg: String) -> &mut Self {
        self.blocks.push(Block::Chart {
            id: id.to_string(),
            caption: caption.into(),
            svg,
        });
        self
    }

    /// A sortable table.
    pub fn table(&mut self, table: Table) -> &mut Self {
        self.blocks.push(Block::Table(table));
        self
    }
}

/// A report page.
pub struct Page {
    title: String,
    lines: Vec<String>,
    facts: Vec<(String, String)>,
    sections: Vec<Section>,
    footer: String,
}

impl Page {
    /// An empty page called `title`.
    pub fn new(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            lines: Vec::new(),
            facts: Vec::new(),
            sections: Vec::new(),
            footer: String::new(),
        }
    }

    /// A line under the title (what was read, how it ran).
    pub fn line(&mut self, text: impl Into<String>) -> &mut Self {
        self.lines.push(text.into());
        self
    }

    /// A key figure shown large under the title: its `value` and what it is.
    pub fn fact(&mut self, value: impl Into<String>, name: impl Into<String>) -> &mut Self {
        self.facts.push((value.into(), name.into()));
        self
    }

    /// The small print at the bottom.
    pub fn footer(&mut self, text: impl Into<String>) -> &mut Self {
        self.footer = text.into();
        self
    }

    /// A new section; `id` is its anchor.
    pub fn section(&mut self, id: &str, title: impl Into<String>) -> &mut Section {
        self.sections.push(Section {
            id: id.to_string(),
            title: title.into(),
            blocks: Vec::new(),
        });
        let last = self.sections.len() - 1;
        &mut self.sections[last]
    }

    /// The page as one HTML document.
    pub fn render(&self) -> String {
        let mut html = String::with_capacity(64 * 1024);
        let title = escape(&self.title);
        let _ = write!(
            html,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>{title}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n<header>\n\
             <h1>{title}</h1>\n"
        );
        for line in &self.lines {
            let _ = writeln!(html, "<p class=\"muted\">{}</p>", escape(line));
        }
        if !self.facts.is_empty() {
            html.push_str("<ul class=\"facts\">\n");
            for (value, name) in &self.facts {
                let _ = writeln!(
                    html,
                    "<li><b>{}</b><span>{}</span></li>",
                    escape(value),
                    escape(name)
                );
            }
            html.push_str("</ul>\n");
        }
        if self.sections.len() > 1 {
            html.push_str("<nav>");
            for section in &self.sections {
                let _ = write!(
                    html,
                    "<a href=\"#{}\">{}</a>",
                    escape(&section.id),
                    escape(&section.title)
                );
            }
            html.push_str("</nav>\n");
        }
        html.push_str("</header>\n<main>\n");
        for section in &self.sections {
            let _ = writeln!(
                html,
                "<section id=\"{}\">\n<h2>{}</h2>",
                escape(&section.id),
                escape(&section.title)
            );
            for block in &section.blocks {
                match block {
                    Block::Text(text) => {
                        let _ = writeln!(html, "<p>{}</p>", escape(text));
                    }
                    Block::Chart { id, caption, svg } => {
                        let _ = writeln!(
                            html,
                            "<figure class=\"chart\" id=\"chart-{}\">\n{svg}\n\
                             <figcaption>{}</figcaption>\n</figure>",
                            escape(id),
                            escape(caption)
                        );
                    }
                    Block::Table(table) => table.render_into(&mut html),
                }
            }
            html.push_str("</section>\n");
        }
        html.push_str("</main>\n");
        if !self.footer.is_empty() {
            let _ = writeln!(html, "<footer>{}</footer>", escape(&self.footer));
        }
        let _ = write!(html, "<script>\n{SCRIPT}</script>\n</body>\n</html>\n");
        html
    }

    /// Writes the page to `path` (its folder made when missing) through a temporary file
    /// and one rename, so a reader never sees half a report; returns the bytes written.
    pub fn write(&self, path: &Path) -> Result<u64> {
        let html = self.render();
        let io = |action: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| EmberError::Io {
                action,
                path,
                source,
            }
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
        }
        let mut temporary = path.as_os_str().to_owned();
        temporary.push(".tmp");
        let temporary = std::path::PathBuf::from(temporary);
        std::fs::write(&temporary, html.as_bytes()).map_err(io("writing", &temporary))?;
        std::fs::rename(&temporary, path).map_err(io("renaming to", path))?;
        Ok(html.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_is_one_document_with_its_parts_escaped() {
        let mut page = Page::new("Prices <2024>");
        page.line("read 3 files").fact("1,000", "sales");
        page.section("bars", "Revenue").text("a & b").chart(
            "revenue",
            "Revenue per category",
            "<svg></svg>".into(),
        );
        page.section("tables", "Tables");
        let html = page.render();
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("<title>Prices &lt;2024&gt;</title>"));
        assert!(html.contains("<p>a &amp; b</p>"));
        assert!(html.contains("<figure class=\"chart\" id=\"chart-revenue\">\n<svg></svg>"));
        assert!(html.contains("<a href=\"#tables\">Tables</a>"));
        assert!(!html.contains("http://") && !html.contains("https://"));
    }

    #[test]
    fn writing_replaces_the_file_in_one_step() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("nested/report.html");
        let mut page = Page::new("one");
        let bytes = page.write(&path).expect("written");
        assert_eq!(bytes, std::fs::metadata(&path).expect("a file").len());
        page.line("two");
        page.write(&path).expect("rewritten");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.contains("two"));
        let names: Vec<_> = std::fs::read_dir(path.parent().expect("a folder"))
            .expect("listed")
            .map(|e| e.expect("an entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("report.html")]);
    }
}
