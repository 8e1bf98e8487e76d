//! The in-flight guard: a query nobody waits for is cancelled on the server.

use std::time::Duration;

use tokio_util::task::TaskTracker;

use super::connect::Client;
use super::tls::MakeRustls;

/// A query on its way: unless [`InFlight::finish`] is called, dropping it cancels the query on the
/// server and discards the session. That covers the rule's timeout, a result abandoned past
/// `max_rows`, and an evaluation dropped by reload or shutdown: no backend is left running a query
/// nobody waits for.
pub(super) struct InFlight {
    client: Option<Client>,
    cancel: tokio_postgres::CancelToken,
    cancels: TaskTracker,
    tls: MakeRustls,
}

impl InFlight {
    pub(super) fn new(client: Client, cancels: TaskTracker, tls: MakeRustls) -> InFlight {
        let cancel = client.cancel_token();
        InFlight { client: Some(client), cancel, cancels, tls }
    }

    pub(super) fn client(&self) -> &Client {
        self.client.as_ref().expect("the client is present until finish or drop, both of which take self")
    }

    /// The query completed: the session goes back to the pool.
    pub(super) fn finish(&mut self) {
        self.client.take();
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else { return };
        // Its protocol state is mid-query: never reuse it.
        drop(deadpool::managed::Object::take(client));
        let cancel = self.cancel.clone();
        let tls = self.tls.clone();
        if tokio::runtime::Handle::try_current().is_ok() {
            self.cancels.spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(2), cancel.cancel_query(tls)).await;
            });
        }
    }
}
