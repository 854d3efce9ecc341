//! `embed_migrations!` cannot see a new migration folder or an edited metadata.toml by itself:
//! this tells Cargo to rebuild when anything under migrations/ changes.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
