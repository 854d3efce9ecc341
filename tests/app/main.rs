//! The application's tests, one program: a module per topic (`cargo test --test app
//! migrate::` runs one), each test against a database of its own (see `support`).
//!
//! One process for all of them, so a test must not change what the process shares: no
//! environment variables set, no current directory changed, no global tracing subscriber.
//! Children get their environment through `Command::env`; `tracing` tests install a
//! subscriber for their own thread only.

mod support;

mod app;
mod autofailover;
mod backup;
mod bench;
mod bench_script;
mod bugs;
mod bulk;
mod committed;
mod diesel_cli;
mod failover;
mod field_types;
mod http;
mod indexes;
mod inheritance;
mod init_db;
mod listing;
mod loaders;
mod migrate;
mod mixins;
mod models;
mod multihost;
mod no_libpq;
mod operator_input;
mod pgbouncer;
mod privileges;
mod queries;
mod reliability;
mod replica;
mod restart;
mod scaffold;
mod secrets;
mod tls;
mod tracing;
mod validation;
