//! Ember's integration tests, one binary with a module per topic.

mod bad_rows;
mod cluster;
mod dataset;
mod examples;
mod forest;
mod functions;
mod outputs;
mod prices;
mod retry;
mod shuffle;
mod spill;
mod stages;
mod streaming;
mod tpch;
mod typed;
