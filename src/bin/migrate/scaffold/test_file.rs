//! The test file, `tests/app/<table>.rs`: creates, finds, lists, updates and deletes rows,
//! and hits each constraint the migration wrote, asserting the `Error` that names it.

use super::names::camel;
use super::rust::{borrows, fill};
use super::spec::{Field, Kind, Model};

/// How a test gets the id of a row a reference points at.
enum Parent {
    /// A fixture of `tests/app/support`, or a model of the template, makes one.
    Made(String),
    /// Nullable, and nothing known makes one: the valid row leaves it NULL.
    Null,
    /// Required, and nothing known makes one: the test writes a stub to fill in.
    Stub,
}

fn parent(model: &Model, field: &Field, table: &str) -> Parent {
    let c = &field.column;
    let email = format!("{}@example.com", c.replace('_', "-"));
    match table {
        "users" => Parent::Made(format!("user(&mut conn, \"{email}\").await.id")),
        "teams" => Parent::Made(fill(
            "Team::create(&conn, &NewTeam { name: \"__col__\" }).await.unwrap().id",
            &[("__col__", c)],
        )),
        "tasks" => Parent::Made(fill(
            "{\n        let owner = user(&mut conn, \"__email__\").await;\n        \
             task(&mut conn, &owner, \"__col__\").await.id\n    }",
            &[("__email__", &email), ("__col__", c)],
        )),
        _ if field.nullable || table == model.table => Parent::Null,
        _ => Parent::Stub,
    }
}

/// A valid value of the field as `NewX` takes it; `k` (0 to 2) varies it.
fn sample(model: &Model, field: &Field, k: usize, owned: bool) -> String {
    let words = ["first", "second", "third"];
    let v = match &field.kind {
        Kind::Text => format!("\"{}\"", words[k]),
        Kind::String(n) => {
            let w: String = words[k].chars().take(*n as usize).collect();
            format!("\"{w}\"")
        }
        Kind::Int => format!("{}", k + 1),
        Kind::BigInt => format!("{}", k + 1),
        Kind::Bool => "true".into(),
        Kind::Date => format!("NaiveDate::from_ymd_opt(2030, 1, {}).unwrap()", k + 1),
        Kind::Timestamptz => format!("DateTime::from_timestamp(1_900_000_00{k}, 0).unwrap()"),
        Kind::Uuid => format!("uuid::Uuid::from_u128({})", k + 1),
        Kind::Jsonb => "LazyLock::force(&DOCUMENT)".into(),
        Kind::TextArray => "&[]".into(),
        Kind::Enum(labels) => format!(
            "{}::{}",
            model.enum_name(field),
            camel(&labels[k % labels.len()])
        ),
        Kind::References { .. } => field.column.clone(),
    };
    let v = if owned {
        match &field.kind {
            Kind::Text | Kind::String(_) => format!("{v}.to_owned()"),
            Kind::Jsonb => "DOCUMENT.clone()".into(),
            Kind::TextArray => "vec![\"item\".to_owned()]".into(),
            _ => v,
        }
    } else {
        v
    };
    match field.nullable {
        true if matches!(field.kind, Kind::References { .. }) => v,
        true => format!("Some({v})"),
        false => v,
    }
}

/// The whole test file.
pub fn test_file(model: &Model) -> String {
    let s = model.struct_name();
    let t = &model.table;
    let refs: Vec<(&Field, Parent)> = (model.fields.iter())
        .filter_map(|f| match &f.kind {
            Kind::References { table, .. } => Some((f, parent(model, f, table))),
            _ => None,
        })
        .collect();
    let stubbed = refs.iter().any(|(_, p)| matches!(p, Parent::Stub));
    let has = |p: &dyn Fn(&Kind) -> bool| model.fields.iter().any(|f| p(&f.kind));

    let mut out = fill(
        "//! The `__table__` table through its model, written by `migrate generate model __name__`.\n\n",
        &[("__table__", t), ("__name__", &model.name)],
    );
    if has(&|k| *k == Kind::Jsonb) {
        out += "use std::sync::LazyLock;\n\n";
    }
    if model.bulk {
        out += "use app::bulk;\n";
    }
    out += "use app::Error;\n";
    let mut models = vec![
        format!("New{s}"),
        "PageRequest".into(),
        s.clone(),
        format!("{s}Changes"),
    ];
    models.extend(model.enums().map(|(f, _)| model.enum_name(f)));
    if refs
        .iter()
        .any(|(f, _)| matches!(&f.kind, Kind::References { table, .. } if table == "teams"))
    {
        models.extend(["NewTeam".into(), "Team".into()]);
    }
    models.sort();
    out += &(String::from("use app::models::{") + &models.join(", ") + "};\n");
    let mut chrono = Vec::new();
    if has(&|k| *k == Kind::Timestamptz) {
        chrono.push("DateTime");
    }
    if has(&|k| *k == Kind::Date) {
        chrono.push("NaiveDate");
    }
    match chrono.as_slice() {
        [] => {}
        [one] => out += &format!("use chrono::{one};\n"),
        many => out += &(String::from("use chrono::{") + &many.join(", ") + "};\n"),
    }
    if has(&|k| *k == Kind::TextArray) {
        out += "use diesel_async::RunQueryDsl;\n";
    }
    let checks = super::sql::checks(model);
    let mut support = vec!["TestDb"];
    let invalid = has(&|k| matches!(k, Kind::String(_) | Kind::TextArray | Kind::Enum(_)));
    if invalid {
        support.push("assert_invalid");
    }
    let made: Vec<&str> = refs
        .iter()
        .filter_map(|(f, p)| match (p, &f.kind) {
            (Parent::Made(_), Kind::References { table, .. }) => Some(table.as_str()),
            _ => None,
        })
        .collect();
    if made.contains(&"tasks") {
        support.push("task");
    }
    if made.iter().any(|t| *t == "users" || *t == "tasks") {
        support.push("user");
    }
    out += &(String::from("\nuse crate::support::{") + &support.join(", ") + "};\n");
    if has(&|k| *k == Kind::Jsonb) {
        out += "\n/// A JSON document the rows hold.\nstatic DOCUMENT: LazyLock<serde_json::Value> =\n    \
                LazyLock::new(|| serde_json::json!({ \"key\": \"value\" }));\n";
    }

    // valid(ids.., k)
    let params: Vec<String> = refs
        .iter()
        .filter(|(_, p)| !matches!(p, Parent::Null))
        .map(|(f, _)| format!("{}: i64", f.column))
        .collect();
    let uses_k = model.fields.iter().any(|f| {
        matches!(
            f.kind,
            Kind::Text
                | Kind::String(_)
                | Kind::Int
                | Kind::BigInt
                | Kind::Date
                | Kind::Timestamptz
                | Kind::Uuid
                | Kind::Enum(_)
        )
    });
    let k = if uses_k { "k" } else { "_k" };
    let lt = if borrows(model) { "<'static>" } else { "" };
    out += &format!(
        "\n/// A valid row; `k` (0 to 2) varies the values, so unique columns differ.\nfn valid({}{k}: usize) -> New{s}{lt} ",
        params.iter().map(|p| format!("{p}, ")).collect::<String>()
    );
    out += &(String::from("{\n    New") + &s + " {\n");
    for (i, f) in model.fields.iter().enumerate() {
        let null_ref = refs
            .iter()
            .any(|(r, p)| r.column == f.column && matches!(p, Parent::Null));
        let _ = i;
        let value = if null_ref {
            "None".into()
        } else if matches!(f.kind, Kind::References { .. }) && f.nullable {
            format!("Some({})", f.column)
        } else {
            sample(model, f, 0, false).replace("(0)", "(k)")
        };
        let value = value_for_k(model, f, &value);
        if value == f.column {
            out += &format!("        {value},\n");
        } else {
            out += &format!("        {}: {value},\n", f.column);
        }
    }
    out += "    }\n}\n";
    if stubbed {
        for (f, p) in &refs {
            if let (Parent::Stub, Kind::References { table, .. }) = (p, &f.kind) {
                out += &fill(
                    "\n/// A row of `__ref__` to refer to: write it, then drop the tests' `ignore`.\n\
                     async fn __col___row(_conn: &mut diesel_async::AsyncPgConnection) -> i64 {\n    \
                     todo!(\"insert a row of __ref__ and return its id\")\n}\n",
                    &[("__ref__", table), ("__col__", &f.column)],
                );
            }
        }
    }

    // The set-up both tests share: a database and the parent rows.
    let mut setup =
        String::from("    let db = TestDb::new().await;\n    let mut conn = db.conn().await;\n");
    let mut args = Vec::new();
    for (f, p) in &refs {
        match p {
            Parent::Made(expr) => {
                setup += &format!("    let {} = {expr};\n", f.column);
                args.push(f.column.clone());
            }
            Parent::Stub => {
                setup += &format!("    let {c} = {c}_row(&mut conn).await;\n", c = f.column);
                args.push(f.column.clone());
            }
            Parent::Null => {}
        }
    }
    let call = |k: usize| {
        let mut a: Vec<String> = args.clone();
        a.push(k.to_string());
        format!("valid({})", a.join(", "))
    };
    let ignore = if stubbed {
        "#[ignore = \"write the row the reference needs first (see the _row function)\"]\n"
    } else {
        ""
    };
    let conn_unused = !setup.contains("&mut conn") && !has(&|k| *k == Kind::TextArray);
    // The bulk test writes through `&mut conn` whatever the others do.
    let bulk_setup = setup.clone();
    let setup = if conn_unused {
        setup.replace("let mut conn", "let conn")
    } else {
        setup
    };

    // CRUD and keyset paging.
    let first = &model.fields[0];
    let new_value = sample(model, first, 2, true);
    let deleted = if model.soft_delete {
        "soft_deleted"
    } else {
        "deleted"
    };
    out += &fill(
        "\n#[tokio::test]\n__ignore__async fn __table___are_created_found_listed_updated_and___deleted__() {\n__setup__    \
         let created = __Struct__::create(&conn, &__v0__).await.unwrap();\n    \
         assert_eq!(__Struct__::find(&conn, created.id).await.unwrap(), created);\n    \
         let second = __Struct__::create(&conn, &__v1__).await.unwrap();\n    \
         let page = __Struct__::list(&conn, PageRequest::new(None, Some(1)).unwrap()).await.unwrap();\n    \
         assert_eq!(page.items, vec![created.clone()]);\n    \
         let next = PageRequest::new(page.next, Some(1)).unwrap();\n    \
         assert_eq!(__Struct__::list(&conn, next).await.unwrap().items, vec![second.clone()]);\n\n    \
         let changes = __Struct__Changes {\n        __first__: Some(__new__),\n        ..Default::default()\n    };\n    \
         let updated = __Struct__::update(&conn, created.id, &changes).await.unwrap();\n    \
         assert_eq!(updated.__first__, __new__);\n    \
         let unchanged = __Struct__::update(&conn, created.id, &__Struct__Changes::default()).await;\n    \
         assert_eq!(unchanged.unwrap(), updated);\n\n    \
         __Struct__::delete(&conn, created.id).await.unwrap();\n    \
         let gone = __Struct__::find(&conn, created.id).await;\n    \
         assert!(matches!(gone, Err(Error::NotFound)), \"{gone:?}\");\n    \
         let again = __Struct__::delete(&conn, created.id).await;\n    \
         assert!(matches!(again, Err(Error::NotFound)), \"{again:?}\");\n    \
         let left = __Struct__::list(&conn, PageRequest::default()).await.unwrap();\n    \
         assert_eq!(left.items, vec![second]);\n}\n",
        &[
            ("__ignore__", ignore),
            ("__setup__", &setup),
            ("__v0__", &call(0)),
            ("__v1__", &call(1)),
            ("__first__", &first.column),
            ("__new__", &new_value),
            ("__deleted__", deleted),
            ("__Struct__", &s),
            ("__table__", t),
        ],
    );

    if model.bulk {
        out += &fill(
            "\n#[tokio::test]\n__ignore__async fn __table___are_written_in_bulk_and_by_copy() {\n__setup__    \
             let rows = [__v0__, __v1__];\n    \
             assert_eq!(bulk::insert(&mut conn, &rows).await.unwrap(), 2);\n    \
             assert_eq!(bulk::copy_insert(&db.url, &[__v2__]).await.unwrap(), 1);\n    \
             let all = __Struct__::list(&conn, PageRequest::default()).await.unwrap();\n    \
             assert_eq!(all.items.len(), 3);\n}\n",
            &[
                ("__ignore__", ignore),
                ("__setup__", &bulk_setup),
                ("__v0__", &call(0)),
                ("__v1__", &call(1)),
                ("__v2__", &call(2)),
                ("__Struct__", &s),
                ("__table__", t),
            ],
        );
    }

    // Each constraint, by name.
    let mut hits = String::new();
    for f in &model.fields {
        let c = &f.column;
        let wrap = |v: &str| {
            if f.nullable {
                format!("Some({v})")
            } else {
                v.to_owned()
            }
        };
        let create = |value: &str, base: &str| {
            fill(
                "\n    let err = __S__::create(&conn, &New__S__ { __c__: __v__, ..__base__ })\n        .await\n        .unwrap_err();\n",
                &[
                    ("__S__", &s),
                    ("__c__", c),
                    ("__v__", value),
                    ("__base__", base),
                ],
            )
        };
        let named = |variant: &str, name: &str| {
            fill(
                "    assert!(\n        matches!(&err, Error::__V__ { constraint } if constraint == \"__n__\"),\n        \"{err:?}\"\n    );\n",
                &[("__V__", variant), ("__n__", name)],
            )
        };
        match &f.kind {
            Kind::String(n) => {
                hits += &format!("\n    let long = \"x\".repeat({});", n + 1);
                hits += &create(&wrap("&long"), &call(1));
                hits += &format!("    assert_invalid(&err, \"{t}_{c}_check\");\n");
            }
            Kind::TextArray => {
                hits += &fill(
                    "\n    // Rust's Vec<String> cannot hold a NULL element: SQL shows the CHECK.\n    \
                     let err = diesel::sql_query(\"UPDATE __table__ SET __col__ = ARRAY[NULL]::text[] WHERE id = $1\")\n        \
                     .bind::<diesel::sql_types::BigInt, _>(row.id)\n        .execute(&mut conn)\n        .await\n        \
                     .map_err(Error::from)\n        .unwrap_err();\n    \
                     assert_invalid(&err, \"__table_____col___no_nulls\");\n",
                    &[
                        ("__table_____col__", &format!("{t}_{c}")),
                        ("__table__", t),
                        ("__col__", c),
                    ],
                );
            }
            Kind::Enum(labels) => {
                let e = model.enum_name(f);
                hits += &format!(
                    "\n    assert_eq!({e}::parse(\"{}\").unwrap(), {e}::{});\n",
                    labels[0],
                    camel(&labels[0])
                );
                hits += &format!(
                    "    assert_invalid(&{e}::parse(\"no such value\").unwrap_err(), \"{}\");\n",
                    model.enum_type(f)
                );
            }
            Kind::References { .. } => {
                hits += &create(&wrap("-1"), &call(1));
                hits += &named("ForeignKey", &format!("{t}_{c}_fkey"));
            }
            _ => {}
        }
        if f.unique {
            hits += &create(&format!("{}.{c}", call(0)), &call(1));
            hits += &named("Conflict", &format!("{t}_{c}_key"));
        }
    }
    let _ = checks;
    if !hits.is_empty() {
        let row_used = hits.contains("row.id") || model.fields.iter().any(|f| f.unique);
        let row = if row_used { "let row" } else { "let _row" };
        out += &fill(
            "\n#[tokio::test]\n__ignore__async fn __table___constraints_come_back_as_errors_naming_them() {\n__setup__    \
             __row__ = __Struct__::create(&conn, &__v0__).await.unwrap();\n__hits__}\n",
            &[
                ("__ignore__", ignore),
                ("__setup__", &setup),
                ("__row__", row),
                ("__v0__", &call(0)),
                ("__hits__", &hits),
                ("__Struct__", &s),
                ("__table__", t),
            ],
        );
    }
    out
}

/// `sample(.., 0)` with the index made `k`, so one `valid` serves every row.
fn value_for_k(model: &Model, field: &Field, value: &str) -> String {
    match &field.kind {
        Kind::Text | Kind::String(_) => {
            let words: Vec<String> = (0..3).map(|k| sample(model, field, k, false)).collect();
            let bare: Vec<String> = words
                .iter()
                .map(|w| {
                    w.trim_start_matches("Some(")
                        .trim_end_matches(')')
                        .to_owned()
                })
                .collect();
            let pick = format!("[{}][k]", bare.join(", "));
            if field.nullable {
                format!("Some({pick})")
            } else {
                pick
            }
        }
        Kind::Int => wrap(field, "k as i32 + 1"),
        Kind::BigInt => wrap(field, "k as i64 + 1"),
        Kind::Date => wrap(
            field,
            "NaiveDate::from_ymd_opt(2030, 1, k as u32 + 1).unwrap()",
        ),
        Kind::Timestamptz => wrap(
            field,
            "DateTime::from_timestamp(1_900_000_000 + k as i64, 0).unwrap()",
        ),
        Kind::Uuid => wrap(field, "uuid::Uuid::from_u128(k as u128 + 1)"),
        Kind::Enum(labels) => {
            let e = model.enum_name(field);
            let all: Vec<String> = labels
                .iter()
                .map(|l| format!("{e}::{}", camel(l)))
                .collect();
            wrap(
                field,
                &format!("[{}][k % {}]", all.join(", "), labels.len()),
            )
        }
        _ => value.to_owned(),
    }
}

fn wrap(field: &Field, v: &str) -> String {
    if field.nullable {
        format!("Some({v})")
    } else {
        v.to_owned()
    }
}
