// `sqlx::migrate!` embeds `migrations/sqlite/` at compile time; without this
// a migration file added later would not be picked up by an incremental
// build.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
