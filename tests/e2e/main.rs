//! Black-box end-to-end tests: the real `tollgate` binary, the bundled
//! policies, and hostile plugins. One integration binary, a module per area.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod approvals;
mod backtest;
mod backtest_jobs;
mod canary;
mod ci_client;
mod ci_gates;
mod cli_errors;
mod cold_start;
mod decision_log;
mod flagger;
mod gate_metrics;
mod hardening;
mod hostile;
mod layers;
mod load;
mod new_user;
mod notifications;
mod otlp;
mod plugin_kit;
mod plugins;
mod prometheus;
mod readme;
mod readme_examples;
mod replicas;
mod reports;
mod rollout;
mod schemas;
mod server_binary;
mod server_router;
mod signatures;
mod source_plugins;
mod source_servers;
mod sources_contract;
mod sources_hostile;
mod sources_real;
mod summaries;
mod support;
mod three_languages;
mod time_of_decision;
mod tls;
mod trust;
mod ui;
mod wasi;
mod web_view;
