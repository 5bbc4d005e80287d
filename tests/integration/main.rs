//! Ember's integration tests, one binary with a module per topic.

mod dataset;
mod examples;
mod cluster;
mod functions;
mod retry;
mod shuffle;
mod stages;
mod tpch;
mod typed;
