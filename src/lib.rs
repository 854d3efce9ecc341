//! The data layer: Diesel models over PostgreSQL, a deadpool pool of
//! diesel-async connections and embedded migrations. No libpq anywhere.
//!
//! Start with [`db::DbConfig::from_env`] and [`db::build_pool`]; every query is an associated
//! function of the model it returns, taking `&AsyncPgConnection` (`&mut` where it opens a
//! transaction).

// Every public item, fields and variants included, says what it is.
#![warn(missing_docs)]

// The data layer: tables, models, connections, their errors and settings.
pub mod db;
pub mod error;
pub mod models;
/// Tables as `diesel print-schema` prints them; regenerate, never edit.
pub mod schema;
pub mod settings;

// Tools over it.
pub mod backup;
pub mod bulk;
pub mod explain;
pub mod loaders;
pub mod migrations;
pub mod reports;
pub mod roles;
pub mod seed;

// What the binaries share (flags, logging, signals), behind the default `cli` feature:
// without it the library builds no subscriber, clap or progress bars.
#[cfg(feature = "cli")]
pub mod cli;
// The HTTP API over the models, behind the `http` feature (which `cli` brings).
#[cfg(feature = "http")]
pub mod http;

pub use error::{Error, Result};
