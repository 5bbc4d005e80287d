//! Ember's integration tests, one binary with a module per topic.

mod adaptive;
mod bad_rows;
mod cluster;
mod dataset;
mod examples;
mod explain;
mod flight_sql;
mod forest;
mod functions;
mod hosts;
mod input_errors;
mod liveness;
mod outputs;
mod prices;
mod reports;
mod retry;
mod scheduler_events;
mod setup;
mod shuffle;
mod spill;
mod sql;
mod stages;
mod streaming;
mod tpch;
mod typed;
mod ui;
