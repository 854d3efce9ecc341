//! The data layer: Diesel models over PostgreSQL, a deadpool pool of
//! diesel-async connections and embedded migrations. No libpq anywhere.
//!
//! Start with [`db::DbConfig::from_env`] and [`db::build_pool`]; every query is an associated
//! function of the model it returns, taking `&AsyncPgConnection` (`&mut` where it opens a
//! transaction).

// Every public item, fields and variants included, says what it is.
#![warn(missing_docs)]

pub mod backup;
pub mod bulk;
#[cfg(feature = "cli")]
pub mod cli;
pub mod db;
pub mod error;
pub mod explain;
pub mod instrument;
pub mod loaders;
pub mod migrations;
pub mod models;
pub mod replicas;
pub mod reports;
pub mod roles;
/// Tables as `diesel print-schema` prints them; regenerate, never edit.
pub mod schema;
pub mod seed;
mod settings;
mod tls;

pub use error::{Error, Result};
