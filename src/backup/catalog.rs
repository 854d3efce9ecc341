//! The shared catalogs a restore reads, declared for Diesel's DSL: they are no part of
//! `schema.rs` (print-schema leaves `pg_catalog` out), and only the columns used are named.

/// `aclitem`, the type of an access-control list entry: only tested for NULL here.
#[derive(diesel::sql_types::SqlType)]
#[diesel(postgres_type(name = "aclitem"))]
pub struct AclItem;

diesel::table! {
    use diesel::sql_types::*;
    use super::AclItem;

    /// The databases of the cluster.
    pg_catalog.pg_database (oid) {
        oid -> Oid,
        datname -> Text,
        datdba -> Oid,
        datconnlimit -> Integer,
        /// `None`: the default privileges.
        datacl -> Nullable<Array<AclItem>>,
    }
}

diesel::table! {
    /// `ALTER DATABASE … SET` and `ALTER ROLE … IN DATABASE … SET` settings.
    pg_catalog.pg_db_role_setting (setdatabase, setrole) {
        setdatabase -> Oid,
        /// 0: for every role.
        setrole -> Oid,
        setconfig -> Array<Text>,
    }
}

diesel::table! {
    /// The roles, without their passwords.
    pg_catalog.pg_roles (oid) {
        oid -> Oid,
        rolname -> Text,
    }
}

diesel::table! {
    /// One row per server process, with the database it is connected to.
    pg_catalog.pg_stat_activity (pid) {
        pid -> Integer,
        datname -> Nullable<Text>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(pg_database, pg_db_role_setting, pg_roles);
