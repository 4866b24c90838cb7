//! The server's integration tests, one binary: HTTP handlers driven in process against a real SQLite file.

mod assessments;
mod cli;
mod demo;
mod durability;
mod experiments;
mod harness;
mod otlp;
mod robustness;
mod traces;
mod traces_v2;
mod ui;
