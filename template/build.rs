//! `embed_migrations!` reads the folder at compile time; tell Cargo to rebuild when it changes.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
