//! Self-contained HTML reports of the example pipelines: one file with its CSS, its charts
//! (inline SVG drawn by `plotters`) and a small hand-written script that sorts its tables,
//! so that it opens anywhere, offline, without a server.
//!
//! - [`page`]: the page ([`Page`]): a header, sections of figures, tables and text, and
//!   [`Page::write`], which replaces the file in one rename;
//! - [`table`]: [`Table`], a sortable HTML table, from a query result or by hand;
//! - [`chart`]: the charts (bars, box plots, lines, scatter, heat map) as SVG strings;
//! - [`format`]: how numbers read in the reports and the terminal summaries (money to the
//!   cent, counts with thousands separated), and text made safe for HTML.

pub mod chart;
pub mod format;
pub mod page;
pub mod table;

pub use format::escape;
pub use page::Page;
pub use table::Table;
