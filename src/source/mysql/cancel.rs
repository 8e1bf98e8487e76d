//! The in-flight guard: a MySQL statement nobody waits for is killed on the server.
//!
//! MySQL has no out-of-band cancel request as PostgreSQL has: the way to stop a statement is
//! `KILL QUERY <id>` from another session of the same user. So a statement abandoned (past the
//! rule's timeout, past `max_rows`, or dropped by a reload or shutdown) costs one short connection
//! that kills it; the abandoned session itself is never reused.

use std::time::Duration;

use tokio_util::task::TaskTracker;

use super::connect::{MySqlConn, MySqlPool};

/// How long a kill may take (its own connection included) before it is given up.
const KILL_TIMEOUT: Duration = Duration::from_secs(5);

/// A statement on its way: unless [`MySqlInFlight::finish`] is called, dropping it kills the
/// statement on the server and discards the session.
pub(super) struct MySqlInFlight {
    conn: Option<MySqlConn>,
    /// The session's id on the server (`CONNECTION_ID()`), what `KILL QUERY` names.
    id: u32,
    pool: MySqlPool,
    kills: TaskTracker,
}

impl MySqlInFlight {
    pub(super) fn new(conn: MySqlConn, pool: MySqlPool, kills: TaskTracker) -> MySqlInFlight {
        let id = conn.id();
        MySqlInFlight { conn: Some(conn), id, pool, kills }
    }

    pub(super) fn conn(&mut self) -> &mut mysql_async::Conn {
        self.conn.as_mut().expect("the session is present until finish or drop, both of which take self")
    }

    /// The statement completed: the session goes back to the pool.
    pub(super) fn finish(&mut self) {
        self.conn.take();
    }
}

impl Drop for MySqlInFlight {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        // Its protocol state is mid-result: never reuse it (the driver closes it in the background).
        drop(deadpool::managed::Object::take(conn));
        let (id, pool) = (self.id, self.pool.clone());
        if tokio::runtime::Handle::try_current().is_ok() {
            self.kills.spawn(async move {
                match tokio::time::timeout(KILL_TIMEOUT, pool.manager().kill_query(id)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "could not kill an abandoned MySQL statement"),
                    Err(_) => tracing::warn!("could not kill an abandoned MySQL statement within 5s"),
                }
            });
        }
    }
}
