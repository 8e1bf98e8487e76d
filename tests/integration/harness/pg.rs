//! PostgreSQL for the tests: a fresh database on the process's shared server, or a private server
//! for the few tests that need one (the policy is in the [harness docs](super)).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};

use tempdb::{TempPostgres, TempPostgresOptions};

/// How many private servers may run at once.
pub const MAX_PRIVATE_SERVERS: usize = 3;
/// The database every shared test database is copied from: the Kanary schema, loaded once.
const TEMPLATE: &str = "template_kanary";
/// The database a private server's tests use (tempdb creates it).
const PRIVATE_DATABASE: &str = "demo";

static SHARED: OnceLock<&'static TempPostgres> = OnceLock::new();
/// `CREATE DATABASE ... TEMPLATE` fails while another session uses the template; one at a time.
static CREATING: Mutex<()> = Mutex::new(());
/// Numbers the databases made on the shared server.
static NEXT_DATABASE: AtomicUsize = AtomicUsize::new(0);
static PRIVATE_SLOTS: Slots = Slots { free: Mutex::new(MAX_PRIVATE_SERVERS), freed: Condvar::new() };

/// The shared server, started (with the template) by the first caller.
fn shared_server() -> &'static TempPostgres {
    SHARED.get_or_init(|| {
        let pg = TempPostgres::start().expect("start the shared PostgreSQL");
        pg.create_database(TEMPLATE).expect("create the template database");
        pg.psql(TEMPLATE, &super::kanary_schema()).expect("load the Kanary schema into the template");
        pg.psql("postgres", &format!("ALTER DATABASE {TEMPLATE} IS_TEMPLATE true")).expect("mark the template");
        pg.keep_until_exit()
    })
}

/// A counting semaphore (std has none).
struct Slots {
    free: Mutex<usize>,
    freed: Condvar,
}

/// One taken slot; given back on drop.
struct Slot(&'static Slots);

impl Slots {
    fn take(&'static self) -> Slot {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
        Slot(self)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.0.freed.notify_one();
    }
}

enum Server {
    Shared(&'static TempPostgres),
    Private(Box<TempPostgres>),
}

/// A test's database: on the shared server, or on a private one.
pub struct Db {
    /// Fields drop in order: a private server stops before its slot is given back.
    server: Server,
    _slot: Option<Slot>,
    name: String,
    /// Further databases made by [`Db::create_database`], dropped with this one.
    extra: Mutex<Vec<String>>,
}

impl Db {
    /// A fresh database with the Kanary schema on the shared server, dropped again with the `Db`.
    pub fn shared() -> Db {
        let pg = shared_server();
        let name = format!("t{}", NEXT_DATABASE.fetch_add(1, Ordering::Relaxed));
        {
            let _one_at_a_time = CREATING.lock().unwrap_or_else(|e| e.into_inner());
            pg.create_database_from(&name, TEMPLATE).expect("create a test database");
        }
        Db { server: Server::Shared(pg), _slot: None, name, extra: Mutex::new(Vec::new()) }
    }

    /// A private server (waiting for one of [`MAX_PRIVATE_SERVERS`] slots) with `opts`, and the
    /// Kanary schema in its database `demo`.
    pub fn private(opts: TempPostgresOptions) -> Db {
        let slot = PRIVATE_SLOTS.take();
        let pg = TempPostgres::start_with(opts).expect("start a private PostgreSQL");
        pg.psql(PRIVATE_DATABASE, &super::kanary_schema()).expect("load the Kanary schema");
        Db {
            server: Server::Private(Box::new(pg)),
            _slot: Some(slot),
            name: PRIVATE_DATABASE.to_string(),
            extra: Mutex::new(Vec::new()),
        }
    }

    /// [`Db::private`] with the default options.
    pub fn private_default() -> Db {
        Db::private(TempPostgresOptions::default())
    }

    /// The server, for what the shared one offers to everybody (psql, DSNs of other databases).
    pub fn server(&self) -> &TempPostgres {
        match &self.server {
            Server::Shared(pg) => pg,
            Server::Private(pg) => pg,
        }
    }

    /// The server, to stop or restart it: private servers only.
    pub fn server_mut(&mut self) -> &mut TempPostgres {
        match &mut self.server {
            Server::Shared(_) => panic!("a test that stops or restarts the server needs Db::private"),
            Server::Private(pg) => pg,
        }
    }

    /// This database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The exporter role's DSN for this database.
    pub fn dsn(&self) -> String {
        self.server().dsn(&self.name)
    }

    /// The exporter role's password.
    pub fn password(&self) -> &str {
        self.server().password()
    }

    /// `psql` as the superuser in this database.
    pub fn psql(&self, sql: &str) -> anyhow::Result<String> {
        self.server().psql(&self.name, sql)
    }

    /// Creates another (empty) database `<name>_<suffix>` on the same server and returns its name.
    pub fn create_database(&self, suffix: &str) -> String {
        let name = format!("{}_{suffix}", self.name);
        self.server().create_database(&name).expect("create a database");
        self.extra.lock().unwrap_or_else(|e| e.into_inner()).push(name.clone());
        name
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Server::Shared(pg) = &self.server {
            let extra = std::mem::take(&mut *self.extra.lock().unwrap_or_else(|e| e.into_inner()));
            for name in extra.iter().chain([&self.name]) {
                // Best effort: the server goes away at exit anyway.
                let _ = pg.psql("postgres", &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"));
            }
        }
    }
}

/// The limit holds: of many threads wanting a slot, never more than the limit hold one at once.
#[test]
fn slots_limit_how_many_run_at_once() {
    use std::time::Duration;
    static SLOTS: Slots = Slots { free: Mutex::new(MAX_PRIVATE_SERVERS), freed: Condvar::new() };
    let (now, peak) = (AtomicUsize::new(0), AtomicUsize::new(0));
    std::thread::scope(|s| {
        for _ in 0..4 * MAX_PRIVATE_SERVERS {
            s.spawn(|| {
                let _slot = SLOTS.take();
                peak.fetch_max(now.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                // Not synchronisation: holding the slot a while is what lets the others pile up.
                std::thread::sleep(Duration::from_millis(20));
                now.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    assert_eq!(peak.into_inner(), MAX_PRIVATE_SERVERS);
    assert_eq!(*SLOTS.free.lock().unwrap(), MAX_PRIVATE_SERVERS, "every slot was given back");
}
