//! What the tests share, in three parts: [`database`] (a database per test and reading
//! state back), [`servers`] (private clusters, replicas, pgbouncers) and [`fixtures`]
//! (rows, folders, the binaries and their output). Re-exported flat, so a test names what
//! it uses, not where it lives.

pub mod database;
pub mod fixtures;
pub mod servers;

pub use database::*;
pub use fixtures::*;
pub use servers::*;
