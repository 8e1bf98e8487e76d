//! MariaDB for the tests, as [`super::pg`] is for PostgreSQL: a fresh database (with the MySQL
//! Kanary schema, `examples/kanary/mysql/schema.sql`) on the one server of this test process, or a
//! private server for a test that stops it or needs a server option. Outside CI a missing MariaDB
//! skips the test ([`super::tool`]); under CI it fails it.
//!
//! Only MariaDB is tested here: it is what Debian packages (10.11); MySQL 8 itself is not.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use tempdb::{TempMariaDb, TempMariaDbOptions};

static SHARED: OnceLock<&'static TempMariaDb> = OnceLock::new();
/// Numbers the databases made on the shared server.
static NEXT_MY_DATABASE: AtomicUsize = AtomicUsize::new(0);

enum MyServer {
    Shared(&'static TempMariaDb),
    Private(Box<TempMariaDb>),
}

/// A test's MariaDB database: on the shared server, or on a private one.
pub struct MyDb {
    server: MyServer,
    name: String,
}

/// The Kanary schema for MySQL.
pub fn mysql_kanary_schema() -> String {
    std::fs::read_to_string(super::repo_root().join("examples/kanary/mysql/schema.sql"))
        .expect("examples/kanary/mysql/schema.sql")
}

/// Whether MariaDB is installed; when not, skips (outside CI) or fails (under CI).
fn mariadb_installed() -> bool {
    let there = TempMariaDb::available();
    if !there {
        super::tool::missing("MariaDB (mariadb-install-db, mariadbd)", "apt-get install mariadb-server");
    }
    there
}

impl MyDb {
    /// A fresh database with the Kanary schema on the shared server; `None` when MariaDB is
    /// missing outside CI (the test is skipped).
    pub fn shared() -> Option<MyDb> {
        if !mariadb_installed() {
            return None;
        }
        let server = *SHARED.get_or_init(|| TempMariaDb::start().expect("start the shared MariaDB").keep_until_exit());
        let name = format!("t{}", NEXT_MY_DATABASE.fetch_add(1, Ordering::Relaxed));
        server.create_database(&name).expect("create a test database");
        let db = MyDb { server: MyServer::Shared(server), name };
        db.mariadb(&mysql_kanary_schema()).expect("load the Kanary schema");
        Some(db)
    }

    /// A private server with `opts` and the Kanary schema in `demo`; `None` as for [`MyDb::shared`].
    pub fn private(opts: TempMariaDbOptions) -> Option<MyDb> {
        if !mariadb_installed() {
            return None;
        }
        let server = TempMariaDb::start_with(opts).expect("start a private MariaDB");
        let name = server.demo_database().to_string();
        let db = MyDb { server: MyServer::Private(Box::new(server)), name };
        db.mariadb(&mysql_kanary_schema()).expect("load the Kanary schema");
        Some(db)
    }

    pub fn server(&self) -> &TempMariaDb {
        match &self.server {
            MyServer::Shared(s) => s,
            MyServer::Private(s) => s,
        }
    }

    /// The server, to stop or restart it: private servers only.
    pub fn private_server(&self) -> &TempMariaDb {
        match &self.server {
            MyServer::Shared(_) => panic!("a test that stops or restarts the server needs MyDb::private"),
            MyServer::Private(s) => s,
        }
    }

    /// The exporter user's DSN for this database.
    pub fn dsn(&self) -> String {
        self.server().dsn(&self.name)
    }

    pub fn password(&self) -> &str {
        self.server().password()
    }

    /// `sql` as root in this database (tab-separated rows, no header).
    pub fn mariadb(&self, sql: &str) -> anyhow::Result<String> {
        self.server().mariadb(&self.name, sql)
    }
}

impl Drop for MyDb {
    fn drop(&mut self) {
        if let MyServer::Shared(s) = &self.server {
            // Best effort: the server goes away at exit anyway.
            let _ = s.mariadb("mysql", &format!("DROP DATABASE IF EXISTS `{}`", self.name));
        }
    }
}
