//! SQL over JSON responses, in an embedded SQLite that is fresh for every evaluation.
//!
//! Each response is checked to be strict JSON (`json_valid(x, 1)`: SQLite's JSON functions also
//! accept JSON5, which no API should send) and converted once to JSONB, bound to every query as
//! `:name`, so `json_each` over it does not re-parse text per branch. A signal's targets are the
//! temporary table `targets`, one TEXT column per label.
//!
//! Memory: a document is held as few times as SQLite allows (an endpoint rule's peak is its largest
//! response a few times over). SQLite reads the text in place ([`first_value`]); [`IS_STRICT_JSON`]
//! validates it, then [`TO_JSONB`] parses it through `jsonb_tree`, which keeps no parse cache
//! (`jsonb(x)` and `json_valid(x)` cache the parse with their own copy of the text, until their
//! statement ends: hence two statements); the JSONB is copied out, the statement finalized and the
//! text dropped, so only that copy is left. Each query gets its own copy
//! bound (rusqlite binds `SQLITE_TRANSIENT`), and the JSONB is dropped once bound to the last query
//! that reads it.
//!
//! Hardening: an in-memory database with `temp_store=MEMORY` (nothing touches the disk), no
//! attached databases (`SQLITE_LIMIT_ATTACHED` 0 and an authorizer denying ATTACH, pragmas and
//! `load_extension`), user statements must be read-only (which refuses `VACUUM INTO`), a process-wide
//! heap limit ([`HEAP_LIMIT`]), and [`rusqlite::InterruptHandle`] for the caller to stop a statement
//! at the rule's timeout. All of this blocks: the caller runs it off the runtime threads.

use std::ffi::{CStr, CString};
use std::sync::Once;

use rusqlite::functions::FunctionFlags;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::limits::Limit;
use rusqlite::types::ValueRef;
use rusqlite::{ffi, Connection, InterruptHandle, Statement};

use crate::eval::cell::Cell;
use crate::rules::server::{Flavour, ServerIdentity};

/// Most memory all SQLite connections of the process may hold together.
pub const HEAP_LIMIT: i64 = 512 << 20;

/// One row when the response bound as `?1` is strict JSON. Its own statement: `json_valid` caches
/// the parse of a valid text, with its own copy of the text, until its statement is finalized.
const IS_STRICT_JSON: &CStr = c"SELECT 1 WHERE json_valid(?1, 1)";

/// The JSONB of the (strict JSON) response bound as `?1`, parsed once, through `jsonb_tree`, which
/// caches nothing: its first row is the whole document, its value the document's JSONB when it is an
/// object or an array (a scalar's value is an SQL value: `jsonb(?1)`, small; its argument names a
/// column, or SQLite would evaluate it up front as a constant, caching a parse of every document).
const TO_JSONB: &CStr = c"SELECT CASE WHEN type IN ('object', 'array') THEN value \
                         ELSE jsonb(CASE WHEN type IS NOT NULL THEN ?1 END) END \
                         FROM jsonb_tree(?1) LIMIT 1";

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
        let Response { name, body } = r;
        let Ok(text) = std::str::from_utf8(&body) else {
            return Err(format!("request '{name}': the response is not UTF-8 text"));
        };
        let hint = if text.trim_start().starts_with('<') { " (it looks like HTML)" } else { "" };
        let not_json = || format!("request '{name}': the response is not strict JSON{hint}");
        // A NUL byte is never part of JSON text (and would end SQLite's reading of it).
        let text = CString::new(body).map_err(|_| not_json())?;
        let sqlite = |e: String| format!("request '{name}': SQLite: {e}");
        if first_value(&self.conn, IS_STRICT_JSON, &text).map_err(sqlite)?.is_none() {
            return Err(not_json());
        }
        let jsonb = first_value(&self.conn, TO_JSONB, &text).map_err(sqlite)?.ok_or_else(not_json)?;
        drop(text);
        self.jsonb.push((name, jsonb));
        Ok(())
    }

    /// Runs each query, emitting its rows; `emit` returning false stops the run. Every query is
    /// prepared first, so that each response is dropped once bound to the last query that reads it.
    pub fn run(self, queries: &[(String, String)], mut emit: impl FnMut(Emit) -> bool) -> Result<(), String> {
        let Db { conn, jsonb } = self;
        let names: Vec<String> = jsonb.iter().map(|(n, _)| n.clone()).collect();
        let mut docs: Vec<Option<Vec<u8>>> = jsonb.into_iter().map(|(_, doc)| Some(doc)).collect();
        let mut prepared = Vec::with_capacity(queries.len());
        for (name, sql) in queries {
            let on = |m: String| format!("query '{name}': {m}");
            let stmt = checked(&conn, sql, &names).map_err(on)?;
            let at = names
                .iter()
                .map(|n| stmt.parameter_index(&format!(":{n}")))
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(|e| on(e.to_string()))?;
            prepared.push((stmt, at));
        }
        let last_reader: Vec<Option<usize>> =
            (0..names.len()).map(|i| prepared.iter().rposition(|(_, at)| at[i].is_some())).collect();
        for (k, ((name, sql), (mut stmt, at))) in queries.iter().zip(prepared).enumerate() {
            let on = |m: String| format!("query '{name}': {m}");
            for (i, at) in at.into_iter().enumerate() {
                let (Some(at), Some(doc)) = (at, &docs[i]) else { continue };
                stmt.raw_bind_parameter(at, doc.as_slice()).map_err(|e| on(e.to_string()))?;
                if last_reader[i] == Some(k) {
                    docs[i] = None;
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

/// Runs `sql` over `text` as `?1`, read in place: bound `SQLITE_STATIC` and `SQLITE_UTF8_ZT`, so SQLite
/// copies it neither at the bind (rusqlite binds `SQLITE_TRANSIENT`) nor at each use of the parameter
/// (text bound with a length is copied again to be NUL-terminated). The first column of the first
/// row, as bytes; `None` when there is no row.
fn first_value(conn: &Connection, sql: &CStr, text: &CStr) -> Result<Option<Vec<u8>>, String> {
    /// Finalizes the statement however the conversion ends, before `text` can go.
    struct Finalized(*mut ffi::sqlite3_stmt);
    impl Drop for Finalized {
        fn drop(&mut self) {
            // SAFETY: the statement was prepared on this connection and is finalized once, here.
            unsafe { ffi::sqlite3_finalize(self.0) };
        }
    }
    // SAFETY: the raw handle is used on this thread only, while `conn` is borrowed, and no rusqlite
    // call runs on the connection meanwhile. The statement is finalized (`Finalized`) before this
    // function returns, so it never outlives `text`, which SQLITE_STATIC lets it read in place;
    // `text` ends with the NUL that SQLITE_UTF8_ZT promises. The blob read is copied before the
    // statement steps again or is finalized.
    unsafe {
        let db = conn.handle();
        let failed = || CStr::from_ptr(ffi::sqlite3_errmsg(db)).to_string_lossy().into_owned();
        let mut raw = std::ptr::null_mut();
        let rc = ffi::sqlite3_prepare_v2(db, sql.as_ptr(), -1, &mut raw, std::ptr::null_mut());
        let stmt = Finalized(raw);
        if rc != ffi::SQLITE_OK || stmt.0.is_null() {
            return Err(failed());
        }
        let len = text.to_bytes().len() as u64;
        let zt = ffi::SQLITE_UTF8_ZT as u8;
        if ffi::sqlite3_bind_text64(stmt.0, 1, text.as_ptr(), len, ffi::SQLITE_STATIC(), zt) != ffi::SQLITE_OK {
            return Err(failed());
        }
        match ffi::sqlite3_step(stmt.0) {
            ffi::SQLITE_DONE => Ok(None),
            ffi::SQLITE_ROW => {
                let at = ffi::sqlite3_column_blob(stmt.0, 0).cast::<u8>();
                let n = usize::try_from(ffi::sqlite3_column_bytes(stmt.0, 0)).unwrap_or(0);
                Ok(Some(if at.is_null() { Vec::new() } else { std::slice::from_raw_parts(at, n).to_vec() }))
            }
            _ => Err(failed()),
        }
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

    fn rows(db: Db, sql: &str) -> Result<Vec<Vec<Cell>>, String> {
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
            assert!(rows(db("{}"), &sql).is_err(), "{sql} must fail");
        }
        assert!(!dir.exists(), "nothing was written");
    }

    #[test]
    fn responses_targets_and_functions() {
        let d = || db(r#"{"server": "dtr_rethinkdb_378171528545", "n": [1, 2, 3]}"#);
        let got = rows(d(), "SELECT split_part(:doc ->> 'server', '_', 3), split_part('a_b', '_', 5), split_part('a_b_c', '_', -1), json_array_length(:doc, '$.n')").unwrap();
        assert_eq!(
            got,
            vec![vec![Cell::Text("378171528545".into()), Cell::Text("".into()), Cell::Text("c".into()), Cell::Int(3)]]
        );
        assert_eq!(rows(d(), "SELECT count(*) FROM targets").unwrap(), vec![vec![Cell::Int(2)]]);
        let e = rows(d(), "SELECT :other").unwrap_err();
        assert!(e.contains("the parameter :other, which is no request of this rule (its responses are :doc)"), "{e}");
        let e = rows(d(), "SELECT\n  nope(1)").unwrap_err();
        assert!(e.contains("no such function: nope"), "{e}");
    }

    #[test]
    fn only_strict_json_is_bound() {
        let mut d = open(&[], &[]).unwrap();
        for (body, want) in [
            ("{a: 1}", "not strict JSON"),
            ("<html></html>", "it looks like HTML"),
            (" \n <!doctype html>", "it looks like HTML"),
            ("{\"a\": 1} x", "not strict JSON"),
            ("null x", "not strict JSON"),
            ("[1, 2,]", "not strict JSON"),
            ("", "not strict JSON"),
        ] {
            let e = d.bind_response(Response { name: "r".into(), body: body.into() }).unwrap_err();
            assert!(e.contains(want) && e.starts_with("request 'r'"), "{body}: {e}");
        }
        let e = d.bind_response(Response { name: "r".into(), body: vec![b'[', 0xff, b']'] }).unwrap_err();
        assert_eq!(e, "request 'r': the response is not UTF-8 text");
        d.bind_response(Response { name: "r".into(), body: b"[1, 2]".to_vec() }).unwrap();
    }

    #[test]
    fn the_jsonb_bound_is_what_jsonb_makes_of_the_text_for_every_kind_of_document() {
        for doc in [
            r#"{"pods": [{"pod": "a", "n": 1.5}, {"pod": "b", "n": null}], "e": {}}"#,
            " [1, \"two\", [3], {\"four\": true}] \n",
            "42",
            "-0.5e3",
            r#""a string""#,
            "null",
            "true",
            "[]",
        ] {
            let mut d = open(&[], &[]).unwrap();
            d.bind_response(Response { name: "r".into(), body: doc.into() }).unwrap();
            let want: Vec<u8> = d.conn.query_row("SELECT jsonb(?1)", [doc], |row| row.get(0)).unwrap();
            assert_eq!(d.jsonb, vec![("r".to_string(), want)], "{doc}");
        }
    }

    #[test]
    fn every_query_reads_its_responses_after_an_earlier_query_was_the_last_to_read_another() {
        let mut d = open(&[], &[]).unwrap();
        d.bind_response(Response { name: "a".into(), body: br#"{"x": 1}"#.to_vec() }).unwrap();
        d.bind_response(Response { name: "b".into(), body: br#"{"y": 2}"#.to_vec() }).unwrap();
        let queries = [
            ("both".to_string(), "SELECT :a ->> 'x', :b ->> 'y'".to_string()),
            ("a".to_string(), "SELECT :a ->> 'x', json_type(:a)".to_string()),
            ("none".to_string(), "SELECT 3".to_string()),
        ];
        let mut got = Vec::new();
        d.run(&queries, |e| {
            if let Emit::Row(r) = e {
                got.push(r);
            }
            true
        })
        .unwrap();
        assert_eq!(
            got,
            vec![vec![Cell::Int(1), Cell::Int(2)], vec![Cell::Int(1), Cell::Text("object".into())], vec![Cell::Int(3)]]
        );
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
        let e = rows(d, endless).unwrap_err();
        assert!(e.contains("interrupted"), "{e}");
        t.join().unwrap();
    }
}
