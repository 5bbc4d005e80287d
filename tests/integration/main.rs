//! Ember's integration tests, one binary with a module per topic.

mod cli;
mod dataset;
mod retry;
mod shuffle;
mod stages;
mod tpch;
