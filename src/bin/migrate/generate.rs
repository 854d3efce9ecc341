//! `generate model`: a table, its model, its test and its place in the project, in one
//! command (see `scaffold` for how, docs/first-model.md for what it writes).

use std::process::ExitCode;

use app::migrations::Target;
use app::{errln, outln};
use clap::Subcommand;

use super::scaffold::project::Project;
use super::scaffold::spec::Model;
use super::{Globals, project_dir};

/// The verbs that write code.
#[derive(Debug, Subcommand)]
pub enum Verb {
    /// Generate code: `generate model NAME field:type ...` (see `generate model --help`).
    #[command(display_order = 1, subcommand)]
    Generate(What),
}

/// What `generate` writes.
#[derive(Debug, Subcommand)]
pub enum What {
    /// A table and its model: the migration, src/models/NAME.rs, the mod.rs lines, a test
    /// in tests/app/; then applies the migration and prints src/schema.rs again.
    ///
    /// Fields are NAME:TYPE with TYPE one of text, string:N (TEXT with a length CHECK),
    /// int, bigint, bool, date, timestamptz, uuid, jsonb, text[], enum(a,b) (or enum:a,b),
    /// references:TABLE[:cascade|restrict|set-null] (a NAME_id BIGINT; RESTRICT by
    /// default). A `?` after the type makes it nullable (due:date?); `unique` and `index`
    /// may follow (code:string:20:unique).
    #[command(verbatim_doc_comment)]
    Model {
        /// The model, singular snake_case: `project` makes table `projects`, `Project`.
        name: String,
        /// The fields, e.g. name:string:120 owner:references:users due:date?
        #[arg(required = true, value_name = "FIELD")]
        fields: Vec<String>,
        /// Add created_at and updated_at (kept by the shared updated_at trigger).
        #[arg(long)]
        timestamps: bool,
        /// Add deleted_at: delete sets it, find and list skip such rows.
        #[arg(long)]
        soft_delete: bool,
        /// Also write the model's BulkRow impl (src/bulk/rows.rs) and a test of it.
        #[arg(long)]
        bulk: bool,
        /// The table name, when the plural of NAME is not NAME + s (person → people).
        #[arg(long, value_name = "TABLE")]
        table: Option<String>,
        /// Print every file and edit instead of writing them.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Runs `generate model`.
pub async fn run(verb: Verb, globals: &Globals) -> anyhow::Result<ExitCode> {
    let Verb::Generate(What::Model {
        name,
        fields,
        timestamps,
        soft_delete,
        bulk,
        table,
        dry_run,
    }) = verb;
    let mut model = Model::parse(&name, &fields, table.as_deref(), timestamps, soft_delete)?;
    if bulk {
        crate::scaffold::bulk::check(&model)?;
        model.bulk = true;
    }
    let root = project_dir();
    let project = Project::read(&root, &globals.dir())?;
    project.check(&model)?;
    let plan = project.plan(&model)?;
    if dry_run {
        plan.print();
        outln!("dry run: nothing written");
        return Ok(ExitCode::SUCCESS);
    }
    plan.write(&root)?;
    apply(globals, &root).await
}

/// Applies the new migration (read from the folder, with any other pending one) and prints
/// src/schema.rs again; without a database or diesel_cli, says the commands to run.
async fn apply(globals: &Globals, root: &std::path::Path) -> anyhow::Result<ExitCode> {
    let later = "then run:\n  scripts/migrate.sh upgrade\n  diesel print-schema > src/schema.rs";
    let url = match globals.url() {
        Ok(url) => url,
        Err(e) => {
            outln!("not applied ({e}); {later}");
            return Ok(ExitCode::SUCCESS);
        }
    };
    let migrator = globals.folder_migrator()?;
    match migrator.upgrade(&url, Target::Head).await {
        Ok(applied) => {
            for folder in applied {
                outln!("applied {folder}");
            }
        }
        Err(e) => {
            errln!("migrate: the files are written, but the migration did not apply: {e}");
            outln!("fix it, {later}");
            return Ok(ExitCode::FAILURE);
        }
    }
    match app::migrations::print_schema(&url, root) {
        Ok(schema) => {
            std::fs::write(root.join("src/schema.rs"), schema)?;
            outln!("printed src/schema.rs again (diesel print-schema)");
        }
        Err(e) => {
            outln!("src/schema.rs not printed ({e}); run:\n  diesel print-schema > src/schema.rs")
        }
    }
    Ok(ExitCode::SUCCESS)
}
