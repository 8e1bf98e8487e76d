//! JSON shaped like the real APIs: a three-replica DTR cluster (cluster_status and a page of jobs)
//! and a Spring Boot actuator info document.

use serde_json::{json, Value};

pub const REPLICAS: [&str; 3] = ["378171528545", "595fe3ff470e", "724936901731"];
pub const TABLES: [(&str, &str); 4] =
    [("dtr2", "blob_links"), ("dtr2", "repositories"), ("dtr2", "tags"), ("enzi", "accounts")];

fn server(i: usize) -> String {
    format!("dtr_rethinkdb_{}", REPLICAS[i])
}

pub fn cluster_status() -> Value {
    let mut stats = vec![json!({
        "id": ["cluster"],
        "query_engine": {"client_connections": 231, "clients_active": 181, "queries_per_sec": 5,
                         "read_docs_per_sec": 4.5, "written_docs_per_sec": 0}
    })];
    for i in 0..3 {
        stats.push(json!({
            "id": ["server", format!("uuid-s{i}")],
            "server": server(i),
            "query_engine": {"client_connections": 77 + i, "clients_active": 70 + i, "queries_per_sec": i * 2,
                             "queries_total": 12730 + 10 * i, "read_docs_per_sec": 4 - i,
                             "read_docs_total": 39686 - 1000 * i, "written_docs_per_sec": 0,
                             "written_docs_total": 5184 + i}
        }));
    }
    let mut table_status = Vec::new();
    for (t, (db, table)) in TABLES.iter().enumerate() {
        stats.push(json!({
            "id": ["table", format!("uuid-t{t}")], "db": db, "table": table,
            "query_engine": {"read_docs_per_sec": t, "written_docs_per_sec": 0.5}
        }));
        let mut replicas = Vec::new();
        for i in 0..3 {
            let mut storage = json!({
                "cache": {"in_use_bytes": 45376 + t},
                "disk": {"read_bytes_per_sec": 0, "written_bytes_per_sec": 512 * i,
                         "space_usage": {"data_bytes": 2097152, "garbage_bytes": 0,
                                         "metadata_bytes": 8388608, "preallocated_bytes": 2097152}}
            });
            if t == 3 && i == 2 {
                // An absent number reads as 0.
                storage["disk"]["space_usage"].as_object_mut().unwrap().remove("garbage_bytes");
            }
            stats.push(json!({
                "id": ["table_server", format!("uuid-t{t}"), format!("uuid-s{i}")],
                "db": db, "table": table, "server": server(i),
                "query_engine": {"read_docs_per_sec": i, "written_docs_per_sec": 0},
                "storage_engine": storage
            }));
            let state = if t == 2 && i == 1 { "backfilling" } else { "ready" };
            replicas.push(json!({"server": server(i), "state": state}));
        }
        table_status.push(json!({"db": db, "name": table, "id": format!("uuid-t{t}"), "shards": [{"primary_replicas": [server(0)], "replicas": replicas}]}));
    }
    json!({
        "replica_health": {REPLICAS[0]: "OK", REPLICAS[1]: "OK", REPLICAS[2]: "OK"},
        "replica_timestamp": {REPLICAS[0]: "2026-12-01T10:00:00Z"},
        "rethink_system_tables": {"table_status": table_status, "stats": stats, "server_status": []},
        "gc_lock_holder": ""
    })
}

pub fn jobs() -> Value {
    let job = |id: u32, action: &str, status: &str| {
        json!({"id": format!("job-{id}"), "retryFromID": "", "workerID": "w1", "status": status, "scheduledAt": "2026-12-01T10:00:00Z",
               "lastUpdated": "2026-12-01T10:00:01Z", "action": action, "retriesLeft": 0, "retriesTotal": 0,
               "capacityMap": null, "parameters": null, "deadline": "", "stopTimeout": ""})
    };
    json!({"jobs": [job(1, "poll_mirror", "done"), job(2, "poll_mirror", "done"), job(3, "tag_prune", "done"),
                    job(4, "tag_prune", "errored"), job(5, "poll_mirror", "done"), job(6, "onlinegc", "running")]})
}

pub fn actuator_info() -> Value {
    json!({
        "buildInfo": {"version": "1.2.3", "commitHash": "abc123", "buildTimestamp": 1234567890},
        "agentStatus": "RUNNING",
        "activeTaskCount": 5,
        "activeRequestCount": 3,
        "openSessionsCount": 2,
        "agentId": "a-1"
    })
}
