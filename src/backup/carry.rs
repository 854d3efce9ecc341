//! The replaced database's own state, which lives in the shared catalogs and so is in no
//! backup: owner, connection limit, comment, grants and settings, carried over to the
//! restored database before it takes the name.

use diesel::prelude::*;
use diesel::sql_types::{Bool, Nullable, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::{failed, quote_literal};
use crate::Result;
use crate::db::fns::{pg_get_userbyid, shobj_description};
use crate::db::quote_ident;

/// Database-level state that lives outside the database, in the shared catalogs: a
/// backup of the database's contents does not carry it.
pub(super) struct DatabaseState {
    name: String,
    owner: String,
    connlimit: i32,
    comment: Option<String>,
    /// `None`: the default privileges.
    grants: Option<Vec<Grant>>,
    /// `(role, "name=value")`; no role: for everyone (`ALTER DATABASE … SET`).
    settings: Vec<(Option<String>, String)>,
}

#[derive(diesel::QueryableByName)]
struct Grant {
    /// `None`: PUBLIC.
    #[diesel(sql_type = Nullable<Text>)]
    grantee: Option<String>,
    #[diesel(sql_type = Text)]
    privilege: String,
    #[diesel(sql_type = Bool)]
    grantable: bool,
}

/// The state of database `name`, or `None` if it does not exist.
pub(super) async fn current_state(
    admin: &mut AsyncPgConnection,
    name: &str,
) -> Result<Option<DatabaseState>> {
    use super::catalog::{pg_database as d, pg_db_role_setting as s, pg_roles as r};

    let row: Option<(String, i32, Option<String>, bool)> = d::table
        .filter(d::datname.eq(name))
        .select((
            pg_get_userbyid(d::datdba),
            d::datconnlimit,
            shobj_description(d::oid, "pg_database"),
            d::datacl.is_not_null(),
        ))
        .first(admin)
        .await
        .optional()?;
    let Some((owner, connlimit, comment, has_acl)) = row else {
        return Ok(None);
    };
    let grants = match has_acl {
        false => None,
        // Diesel has no LATERAL join, nor set-returning functions in FROM.
        true => Some(
            diesel::sql_query(
                "SELECT r.rolname::text AS grantee, a.privilege_type AS privilege, \
                 a.is_grantable AS grantable \
                 FROM pg_database d CROSS JOIN LATERAL aclexplode(d.datacl) a \
                 LEFT JOIN pg_roles r ON r.oid = a.grantee WHERE d.datname = $1",
            )
            .bind::<Text, _>(name)
            .load(admin)
            .await?,
        ),
    };
    let settings: Vec<(Option<String>, Vec<String>)> = s::table
        .inner_join(d::table.on(d::oid.eq(s::setdatabase)))
        .left_join(r::table.on(r::oid.eq(s::setrole)))
        .filter(d::datname.eq(name))
        .select((r::rolname.nullable(), s::setconfig))
        .load(admin)
        .await?;
    Ok(Some(DatabaseState {
        name: name.to_owned(),
        owner,
        connlimit,
        comment,
        grants,
        settings: settings
            .into_iter()
            .flat_map(|(role, config)| config.into_iter().map(move |c| (role.clone(), c)))
            .collect(),
    }))
}

/// Gives `target` the owner, connection limit, comment, grants and settings of `state`.
pub(super) async fn carry_over(
    admin: &mut AsyncPgConnection,
    state: &DatabaseState,
    target: &str,
) -> Result<()> {
    // ALTER DATABASE, GRANT and COMMENT have no Diesel DSL and take no bind parameters.
    for sql in statements(state, target)? {
        diesel::sql_query(&sql)
            .execute(&mut *admin)
            .await
            .map_err(|e| {
                failed(format!(
                    "cannot carry {}'s database-level state over ({sql}): {e}",
                    state.name
                ))
            })?;
    }
    Ok(())
}

/// The statements [`carry_over`] runs: names quoted as identifiers, values as literals.
fn statements(state: &DatabaseState, target: &str) -> Result<Vec<String>> {
    let db = quote_ident(target);
    let mut statements = vec![
        format!("ALTER DATABASE {db} OWNER TO {}", quote_ident(&state.owner)),
        format!("ALTER DATABASE {db} CONNECTION LIMIT {}", state.connlimit),
    ];
    if let Some(comment) = &state.comment {
        statements.push(format!(
            "COMMENT ON DATABASE {db} IS {}",
            quote_literal(comment)
        ));
    }
    if let Some(grants) = &state.grants {
        statements.push(format!("REVOKE ALL ON DATABASE {db} FROM PUBLIC"));
        for g in grants {
            // From the server's own catalog, but checked: it is put into SQL as is.
            let privilege = match g.privilege.as_str() {
                p @ ("CREATE" | "CONNECT" | "TEMPORARY") => p,
                other => return Err(failed(format!("unknown database privilege {other:?}"))),
            };
            let to = g.grantee.as_deref().map_or("PUBLIC".into(), quote_ident);
            let option = if g.grantable {
                " WITH GRANT OPTION"
            } else {
                ""
            };
            statements.push(format!(
                "GRANT {privilege} ON DATABASE {db} TO {to}{option}"
            ));
        }
    }
    for (role, setting) in &state.settings {
        let Some((key, value)) = setting.split_once('=') else {
            continue;
        };
        let values = match GUC_LIST_QUOTE.contains(&key.to_ascii_lowercase().as_str()) {
            true => split_guc_list(value),
            false => vec![value.to_owned()],
        };
        let values: Vec<String> = values.iter().map(|v| quote_literal(v)).collect();
        let whom = match role {
            Some(role) => format!("ROLE {} IN DATABASE {db}", quote_ident(role)),
            None => format!("DATABASE {db}"),
        };
        statements.push(format!(
            "ALTER {whom} SET {} TO {}",
            quote_ident(key),
            values.join(", ")
        ));
    }
    Ok(statements)
}

/// Settings whose stored value is a list of double-quoted names (PostgreSQL's
/// GUC_LIST_QUOTE; pg_dump's list): each element becomes a literal of its own.
const GUC_LIST_QUOTE: [&str; 6] = [
    "local_preload_libraries",
    "search_path",
    "session_preload_libraries",
    "shared_preload_libraries",
    "temp_tablespaces",
    "unix_socket_directories",
];

/// `"$user", public` → `$user`, `public`: a stored list setting's elements.
fn split_guc_list(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut element = String::new();
    let mut quoted = false;
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                element.push('"');
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut element)),
            c if c.is_whitespace() && !quoted => {}
            c => element.push(c),
        }
    }
    out.push(element);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_settings_split_into_elements() {
        assert_eq!(split_guc_list("\"$user\", public"), ["$user", "public"]);
        assert_eq!(split_guc_list("\"a,\"\"b\", c"), ["a,\"b", "c"]);
        assert_eq!(split_guc_list("\"\""), [""]);
    }

    #[test]
    fn the_state_is_carried_over_as_quoted_statements() {
        let grant = |grantee: Option<&str>, privilege: &str, grantable| Grant {
            grantee: grantee.map(str::to_owned),
            privilege: privilege.to_owned(),
            grantable,
        };
        let state = DatabaseState {
            name: "app".into(),
            owner: "App \"Owner\"".into(),
            connlimit: -1,
            comment: Some("it's ours".into()),
            grants: Some(vec![
                grant(None, "CONNECT", false),
                grant(Some("reader"), "TEMPORARY", true),
            ]),
            settings: vec![
                (None, "search_path=\"$user\", public".into()),
                (Some("reader".into()), "work_mem=64MB".into()),
                (None, "no equals sign".into()),
            ],
        };
        let db = "\"app_restoring_20250101000000\"";
        assert_eq!(
            statements(&state, "app_restoring_20250101000000").unwrap(),
            [
                format!("ALTER DATABASE {db} OWNER TO \"App \"\"Owner\"\"\""),
                format!("ALTER DATABASE {db} CONNECTION LIMIT -1"),
                format!("COMMENT ON DATABASE {db} IS 'it''s ours'"),
                format!("REVOKE ALL ON DATABASE {db} FROM PUBLIC"),
                format!("GRANT CONNECT ON DATABASE {db} TO PUBLIC"),
                format!("GRANT TEMPORARY ON DATABASE {db} TO \"reader\" WITH GRANT OPTION"),
                format!("ALTER DATABASE {db} SET \"search_path\" TO '$user', 'public'"),
                format!("ALTER ROLE \"reader\" IN DATABASE {db} SET \"work_mem\" TO '64MB'"),
            ]
        );
    }

    #[test]
    fn an_unknown_privilege_is_refused_not_put_into_sql() {
        let state = DatabaseState {
            name: "app".into(),
            owner: "app".into(),
            connlimit: 5,
            comment: None,
            grants: Some(vec![Grant {
                grantee: None,
                privilege: "ALL; DROP".into(),
                grantable: false,
            }]),
            settings: vec![],
        };
        let err = statements(&state, "copy").unwrap_err().to_string();
        assert!(err.contains("unknown database privilege"), "{err}");
    }
}
