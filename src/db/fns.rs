//! SQL functions the queries call, declared once for Diesel's DSL (as crates.io's `fns.rs`).
//! Only what Diesel does not ship: its own `dsl` already has `count`, `max`, `now` and the like.

use diesel::sql_types::{BigInt, Integer, Oid, Text};

diesel::define_sql_function! {
    /// `lower(text)`: the case-insensitive unique index on email is on it.
    fn lower(x: Text) -> Text;
}

diesel::define_sql_function! {
    /// `hashtext(text)`: PostgreSQL's internal string hash, to turn a name into a lock key.
    fn hashtext(text: Text) -> Integer;
}

diesel::define_sql_function! {
    /// `to_regclass(name)`: the table's OID if one by that name exists, else NULL.
    fn to_regclass(name: Text) -> Nullable<Oid>;
}

diesel::define_sql_function! {
    /// `pg_try_advisory_lock(bigint)`: takes a session advisory lock if free; true when taken.
    fn pg_try_advisory_lock(key: BigInt) -> Bool;
}

diesel::define_sql_function! {
    /// `pg_advisory_lock(bigint)`: waits for a session advisory lock. It returns void in SQL;
    /// the Bool is never read, only the error awaited.
    fn pg_advisory_lock(key: BigInt) -> Bool;
}

diesel::define_sql_function! {
    /// `pg_advisory_unlock(bigint)`: releases a session advisory lock; false if not held.
    fn pg_advisory_unlock(key: BigInt) -> Bool;
}

diesel::define_sql_function! {
    /// `pg_try_advisory_lock(int, int)`: the two-key form, a key space and a key in it.
    #[sql_name = "pg_try_advisory_lock"]
    fn pg_try_advisory_lock_pair(space: Integer, key: Integer) -> Bool;
}

diesel::define_sql_function! {
    /// `pg_advisory_unlock(int, int)`: releases a two-key session advisory lock.
    #[sql_name = "pg_advisory_unlock"]
    fn pg_advisory_unlock_pair(space: Integer, key: Integer) -> Bool;
}

diesel::define_sql_function! {
    /// `pg_advisory_xact_lock(bigint)`: waits for an advisory lock held until the
    /// transaction ends. Void in SQL, like `pg_advisory_lock`. Takes `hashtext`'s int,
    /// which PostgreSQL widens to the bigint key.
    fn pg_advisory_xact_lock(key: Integer) -> Bool;
}

diesel::define_sql_function! {
    /// `shobj_description(oid, catalog)`: the comment on a shared object, such as a database.
    fn shobj_description(object: Oid, catalog: Text) -> Nullable<Text>;
}

diesel::define_sql_function! {
    /// `pg_get_userbyid(oid)`: the name of the role with that OID.
    fn pg_get_userbyid(role: Oid) -> Text;
}

diesel::define_sql_function! {
    /// `pg_is_in_recovery()`: true on a standby, which takes no writes.
    fn pg_is_in_recovery() -> Bool;
}

diesel::define_sql_function! {
    /// `pg_backend_pid()`: the server process of this session.
    fn pg_backend_pid() -> Integer;
}
