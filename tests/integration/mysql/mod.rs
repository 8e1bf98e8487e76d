//! MySQL/MariaDB as a source, against a real MariaDB (Debian's 10.11; MySQL 8 itself is not tested
//! here): the Kanary signal ([`kanary`]), every type and mapping feature ([`mapping`]), faults
//! ([`faults`]: a statement killed at its timeout, the pool exhausted), and `--check-rules --db`
//! ([`check`]), and `rules/mysql.yaml` beside Debian's mysqld_exporter ([`side_by_side`]).

mod check;
mod faults;
mod kanary;
mod mapping;
mod side_by_side;
mod tls;
