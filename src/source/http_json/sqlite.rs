//! SQL over JSON responses, in an embedded SQLite that is fresh for every evaluation.
//!
//! Each response is checked to be strict JSON (`json_valid(x, 1)`: SQLite's JSON functions also
//! accept JSON5, which no API should send) and converted once to JSONB, bound to every query as
//! `:name`, so `json_each` over it does not re-parse text per branch. A signal's targets are the
//! temporary table `targets`, one TEXT column per label.
//!
//! Hardening: an in-memory database with `temp_store=MEMORY` (nothing touches the disk), no
//! attached databases (`SQLITE_LIMIT_ATTACHED` 0 and an authorizer denying ATTACH, pragmas and
//! `load_extension`), user statements must be read-only (which refuses `VACUUM INTO`), a process-wide
//! heap limit ([`HEAP_LIMIT`]), and [`rusqlite::InterruptHandle`] for the caller to stop a statement
//! at the rule's timeout. All of this blocks: the caller runs it off the runtime threads.

use std::sync::Once;

use rusqlite::functions::FunctionFlags;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::limits::Limit;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, InterruptHandle, Statement};

use crate::eval::cell::Cell;
use crate::rules::server::{Flavour, ServerIdentity};

/// Most memory all SQLite connections of the process may hold together.
pub const HEAP_LIMIT: i64 = 512 << 20;

/// The SQLite this process runs an endpoint's queries in, as templates see it (`server.*`): the
/// library itself, so it is always known, with or without `--db`.
pub fn identity() -> ServerIdentity {
    ServerIdentity::reported(Flavour::Sqlite, rusqlite::version().to_string(), i64::from(rusqlite::version_number()))
}

/// One response, by request name.
pub struct Response {
    pub name: String,
    pub body: Vec<u8>,
}

/// What a run emits, in order, for the caller to push into its sink.
pub enum Emit {
    Query(String),
    Columns(Vec<String>),
    Row(Vec<Cell>),
}

/// A database ready for one evaluation: responses bound, targets loaded.
pub struct Db {
    conn: Connection,
    /// JSONB of each response, by request name.
    jsonb: Vec<(String, Vec<u8>)>,
}

/// A fresh, hardened database with the `targets` table (when the rule has labels).
pub fn open(labels: &[String], targets: &[Vec<String>]) -> Result<Db, String> {
    static HEAP: Once = Once::new();
    // SAFETY: sqlite3_hard_heap_limit64 only sets a process-wide limit; any value is valid.
    HEAP.call_once(|| unsafe {
        rusqlite::ffi::sqlite3_hard_heap_limit64(HEAP_LIMIT);
    });
    let mut conn = Connection::open_in_memory().map_err(|e| format!("cannot open SQLite: {e}"))?;
    conn.execute_batch("PRAGMA temp_store = MEMORY;").map_err(|e| format!("SQLite: {e}"))?;
    conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0).map_err(|e| format!("SQLite: {e}"))?;
    register_functions(&conn).map_err(|e| format!("SQLite: {e}"))?;
    if !labels.is_empty() {
        let cols: Vec<String> = labels.iter().map(|l| format!("\"{l}\" TEXT")).collect();
        conn.execute_batch(&format!("CREATE TEMP TABLE targets ({});", cols.join(", ")))
            .map_err(|e| format!("SQLite: {e}"))?;
        let marks = vec!["?"; labels.len()].join(", ");
        let mut insert =
            conn.prepare(&format!("INSERT INTO targets VALUES ({marks})")).map_err(|e| format!("SQLite: {e}"))?;
        for t in targets {
            insert.execute(rusqlite::params_from_iter(t.iter())).map_err(|e| format!("SQLite: {e}"))?;
        }
    }
    conn.authorizer(Some(authorize)).map_err(|e| format!("SQLite: {e}"))?;
    Ok(Db { conn, jsonb: Vec::new() })
}

fn authorize(ctx: AuthContext<'_>) -> Authorization {
    match ctx.action {
        AuthAction::Attach { .. } | AuthAction::Detach { .. } | AuthAction::Pragma { .. } => Authorization::Deny,
        AuthAction::Function { function_name } if function_name.eq_ignore_ascii_case("load_extension") => {
            Authorization::Deny
        }
        _ => Authorization::Allow,
    }
}

/// Functions PostgreSQL users expect.
fn register_functions(conn: &Connection) -> rusqlite::Result<()> {
    // split_part(text, delimiter, n): the n-th field (1-based; negative counts from the end), '' past
    // the end, as in PostgreSQL.
    conn.create_scalar_function(
        "split_part",
        3,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let text: Option<String> = ctx.get(0)?;
            let delim: String = ctx.get(1)?;
            let n: i64 = ctx.get(2)?;
            let Some(text) = text else { return Ok(None) };
            let fields: Vec<&str> =
                if delim.is_empty() { vec![text.as_str()] } else { text.split(delim.as_str()).collect() };
            let i = if n > 0 {
                Some(n as usize - 1)
            } else if n < 0 {
                fields.len().checked_sub(n.unsigned_abs() as usize)
            } else {
                None
            };
            match i {
                None if n == 0 => {
                    Err(rusqlite::Error::UserFunctionError("split_part: field position must not be zero".into()))
                }
                i => Ok(Some(i.and_then(|i| fields.get(i)).map(|s| s.to_string()).unwrap_or_default())),
            }
        },
    )
}

impl Db {
    /// Interrupts the statement running on this database, from any thread.
    pub fn interrupt_handle(&self) -> InterruptHandle {
        self.conn.get_interrupt_handle()
    }

    /// Checks that `body` is strict JSON and keeps its JSONB under `name`.
    pub fn bind_response(&mut self, r: Response) -> Result<(), String> {
        let text =
            String::from_utf8(r.body).map_err(|_| format!("request '{}': the response is not UTF-8 text", r.name))?;
        let valid: bool = self
            .conn
            .query_row("SELECT json_valid(?1, 1)", [&text], |row| row.get(0))
            .map_err(|e| format!("request '{}': SQLite: {e}", r.name))?;
        if !valid {
            let start: String = text.trim_start().chars().take(1).collect();
            let hint = if start == "<" { " (it looks like HTML)" } else { "" };
            return Err(format!("request '{}': the response is not strict JSON{hint}", r.name));
        }
        let jsonb: Vec<u8> = self
            .conn
            .query_row("SELECT jsonb(?1)", [&text], |row| row.get(0))
            .map_err(|e| format!("request '{}': SQLite: {e}", r.name))?;
        self.jsonb.push((r.name, jsonb));
        Ok(())
    }

    /// Runs each query, emitting its rows; `emit` returning false stops the run.
    pub fn run(&self, queries: &[(String, String)], mut emit: impl FnMut(Emit) -> bool) -> Result<(), String> {
        let names: Vec<String> = self.jsonb.iter().map(|(n, _)| n.clone()).collect();
        for (name, sql) in queries {
            let on = |m: String| format!("query '{name}': {m}");
            let mut stmt = checked(&self.conn, sql, &names).map_err(on)?;
            for (i, (_, jsonb)) in self.jsonb.iter().enumerate() {
                if let Some(at) = stmt.parameter_index(&format!(":{}", names[i])).map_err(|e| on(e.to_string()))? {
                    stmt.raw_bind_parameter(at, jsonb).map_err(|e| on(e.to_string()))?;
                }
            }
            let columns: Vec<String> = stmt.column_names().map(|c| c.to_string()).collect();
            let width = columns.len();
            if !emit(Emit::Query(name.clone())) || !emit(Emit::Columns(columns)) {
                return Ok(());
            }
            let mut rows = stmt.raw_query();
            while let Some(row) = rows.next().map_err(|e| on(describe(&e, sql)))? {
                let cells = (0..width).map(|i| row.get_ref(i).map(cell).unwrap_or(Cell::Null)).collect();
                if !emit(Emit::Row(cells)) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

/// Prepares `sql` and checks what SQLite can tell before running it: read-only, and only
/// `:request` parameters of this rule. Also what `--check-rules` does, without any response.
pub fn checked<'c>(conn: &'c Connection, sql: &str, requests: &[String]) -> Result<Statement<'c>, String> {
    let stmt = conn.prepare(sql).map_err(|e| describe(&e, sql))?;
    if !stmt.readonly() {
        return Err("the statement writes; a query over responses may only read (SELECT or WITH)".into());
    }
    for i in 1..=stmt.parameter_count() {
        let param = stmt.parameter_name(i).unwrap_or("?").to_string();
        if !param.strip_prefix(':').is_some_and(|p| requests.iter().any(|r| r == p)) {
            let known: Vec<String> = requests.iter().map(|r| format!(":{r}")).collect();
            return Err(format!(
                "the query uses the parameter {param}, which is no request of this rule (its responses are {})",
                known.join(", ")
            ));
        }
    }
    Ok(stmt)
}

/// Prepares every query of a rule on an empty database (no network): `--check-rules`.
pub fn prepare(sql: &str, requests: &[String], labels: &[String]) -> Result<Vec<String>, String> {
    let db = open(labels, &[])?;
    let stmt = checked(&db.conn, sql, requests)?;
    Ok(stmt.column_names().map(|c| c.to_string()).collect())
}

fn cell(v: ValueRef<'_>) -> Cell {
    match v {
        ValueRef::Null => Cell::Null,
        ValueRef::Integer(i) => Cell::Int(i),
        ValueRef::Real(f) => Cell::Float(f),
        ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(_) => Cell::Unsupported("blob (JSONB: wrap it in json() or use ->>)".into()),
    }
}

/// An SQLite error, with the line of the SQL it points at when SQLite tells.
fn describe(e: &rusqlite::Error, sql: &str) -> String {
    match e {
        rusqlite::Error::SqlInputError { msg, offset, .. } if *offset >= 0 => {
            let line = sql[..(*offset as usize).min(sql.len())].matches('\n').count() + 1;
            format!("{msg} (line {line} of the rendered SQL)")
        }
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::OperationInterrupted => {
            "interrupted at the rule's timeout".into()
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_is_the_linked_sqlite_and_not_older_than_the_assumed_one() {
        let told = identity();
        assert_eq!(told.flavour, Flavour::Sqlite);
        let [major, minor, patch] = crate::rules::server::version_parts(&told.version).unwrap_or_default();
        assert_eq!(told.version_num, major * 1_000_000 + minor * 1_000 + patch, "{told:?}");
        // Loading renders an endpoint's templates with the assumption: it must not be newer than
        // the SQLite that runs them.
        assert!(ServerIdentity::assumed(Flavour::Sqlite).version_num <= told.version_num, "{told:?}");
    }

    fn db(doc: &str) -> Db {
        let mut db = open(&["job".to_string()], &[vec!["a".to_string()], vec!["b".to_string()]]).unwrap();
        db.bind_response(Response { name: "doc".into(), body: doc.as_bytes().to_vec() }).unwrap();
        db
    }

    fn rows(db: &Db, sql: &str) -> Result<Vec<Vec<Cell>>, String> {
        let mut out = Vec::new();
        db.run(&[("q".into(), sql.into())], |e| {
            if let Emit::Row(r) = e {
                out.push(r);
            }
            true
        })?;
        Ok(out)
    }

    #[test]
    fn the_database_cannot_reach_outside_itself() {
        let d = db("{}");
        let dir = std::env::temp_dir().join(format!("sqlite-escape-{}", std::process::id()));
        let file = dir.display().to_string();
        for sql in [
            format!("ATTACH DATABASE '{file}' AS x"),
            format!("VACUUM INTO '{file}'"),
            "SELECT load_extension('/tmp/x.so')".to_string(),
            "PRAGMA temp_store = FILE".to_string(),
            "CREATE TABLE t (a)".to_string(),
            "INSERT INTO targets VALUES ('c')".to_string(),
        ] {
            assert!(rows(&d, &sql).is_err(), "{sql} must fail");
        }
        assert!(!dir.exists(), "nothing was written");
    }

    #[test]
    fn responses_targets_and_functions() {
        let d = db(r#"{"server": "dtr_rethinkdb_378171528545", "n": [1, 2, 3]}"#);
        let got = rows(&d, "SELECT split_part(:doc ->> 'server', '_', 3), split_part('a_b', '_', 5), split_part('a_b_c', '_', -1), json_array_length(:doc, '$.n')").unwrap();
        assert_eq!(
            got,
            vec![vec![Cell::Text("378171528545".into()), Cell::Text("".into()), Cell::Text("c".into()), Cell::Int(3)]]
        );
        assert_eq!(rows(&d, "SELECT count(*) FROM targets").unwrap(), vec![vec![Cell::Int(2)]]);
        let e = rows(&d, "SELECT :other").unwrap_err();
        assert!(e.contains("the parameter :other, which is no request of this rule (its responses are :doc)"), "{e}");
        let e = rows(&d, "SELECT\n  nope(1)").unwrap_err();
        assert!(e.contains("no such function: nope"), "{e}");
    }

    #[test]
    fn only_strict_json_is_bound() {
        let mut d = open(&[], &[]).unwrap();
        for (body, want) in [
            ("{a: 1}", "not strict JSON"),
            ("<html></html>", "it looks like HTML"),
            ("[1, 2,]", "not strict JSON"),
            ("", "not strict JSON"),
        ] {
            let e = d.bind_response(Response { name: "r".into(), body: body.into() }).unwrap_err();
            assert!(e.contains(want) && e.starts_with("request 'r'"), "{body}: {e}");
        }
        d.bind_response(Response { name: "r".into(), body: b"[1, 2]".to_vec() }).unwrap();
    }

    #[test]
    fn interrupt_stops_a_runaway_query() {
        let d = db("{}");
        let handle = d.interrupt_handle();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(200));
            handle.interrupt();
        });
        let endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";
        let e = rows(&d, endless).unwrap_err();
        assert!(e.contains("interrupted"), "{e}");
        t.join().unwrap();
    }
}
