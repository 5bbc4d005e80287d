//! SQL beyond one query: scripts cut into numbered statements ([`script`]), Ember's own
//! statements told apart from DataFusion's ([`statement`]), and the catalog that keeps
//! table and view definitions between sessions ([`catalog`]).

pub mod catalog;
pub mod files;
pub(crate) mod run;
pub mod script;
pub mod statement;
pub(crate) mod time_travel;
