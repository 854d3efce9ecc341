//! The template repository's own checks, one program: the root generated under several
//! names, the quickstart script, a model copied into another project, the first-model
//! walkthrough and every documented command (`docs.rs`, `runbook.rs`). Not declared in
//! Cargo.toml (cargo finds it), and cargo-generate.toml leaves this folder out, so a
//! generated project has none of it.
//!
//! The checks that build or run a project take [`helpers::shared_target`] first.

mod copy_model;
mod docs;
mod first_model;
mod generate;
mod helpers;
mod quickstart;
mod runbook;
mod scaffold;

// The databases, clusters and temp folders the application's tests use; this program needs
// a few of them, the app program the rest.
#[allow(dead_code)]
#[path = "../app/support/mod.rs"]
mod support;
