//! What a query template knows of the server it is rendered for: one [`ServerIdentity`] for every
//! kind of source, so that one rules file can serve PostgreSQL, MySQL and MariaDB alike by
//! branching on `server.flavour` and `server.version_num`.
//!
//! Each kind fills the identity in from what its server reports, in its own folder of
//! `src/source/`. Until a server has told, the identity assumed for the database's kind is used
//! ([`ServerIdentity::assumed`], one per [`Flavour`], defined here once); loading and
//! `--check-rules` without `--db` render with it. The flavour becomes text only in the template
//! context ([`Flavour::as_str`]).

/// Which server a template renders for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Flavour {
    #[default]
    Postgresql,
    Mysql,
    Mariadb,
    /// The SQLite an endpoint rule's queries run in.
    Sqlite,
}

impl Flavour {
    /// Every flavour, for documentation and tests.
    pub const ALL: [Flavour; 4] = [Flavour::Postgresql, Flavour::Mysql, Flavour::Mariadb, Flavour::Sqlite];

    /// What a template sees as `server.flavour`.
    pub fn as_str(self) -> &'static str {
        match self {
            Flavour::Postgresql => "postgresql",
            Flavour::Mysql => "mysql",
            Flavour::Mariadb => "mariadb",
            Flavour::Sqlite => "sqlite",
        }
    }

    /// The version assumed until a server of this flavour tells its own: the text and the
    /// flavour's own number for it.
    fn assumed_version(self) -> (&'static str, i64) {
        match self {
            // The oldest PostgreSQL the exporter is tested on.
            Flavour::Postgresql => ("15.0", 150_000),
            // The first MySQL with JSON_TABLE, which binds a rule's targets.
            Flavour::Mysql => ("8.0.0", 80_000),
            // The MariaDB long-term release Debian ships (JSON_TABLE needs 10.6).
            Flavour::Mariadb => ("10.11.0", 101_100),
            // The SQLite with JSONB, which an endpoint's responses are bound as.
            Flavour::Sqlite => ("3.45.0", 3_045_000),
        }
    }
}

/// Whether a [`ServerIdentity`] came from the server or is the assumption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Told {
    /// The server reported it.
    Reported,
    /// No server has been asked yet (loading, `--check-rules` without `--db`, before a connection).
    Assumed,
}

/// The server a template renders for (`server.*` in the template).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerIdentity {
    pub flavour: Flavour,
    /// The version as the server reports it: `15.18 (Debian 15.18-0+deb12u1)`,
    /// `10.11.19-MariaDB-0+deb12u1`, `8.0.36`, `3.46.0`.
    pub version: String,
    /// The flavour's own number for the version: PostgreSQL's `server_version_num` (150018),
    /// `major*10000 + minor*100 + patch` for MySQL and MariaDB (80036, 101119), SQLite's
    /// `SQLITE_VERSION_NUMBER` (3046000). Templates also see it as `server_version_num`.
    pub version_num: i64,
    pub told: Told,
}

impl ServerIdentity {
    /// The identity assumed for `flavour` before any server told its own.
    pub fn assumed(flavour: Flavour) -> ServerIdentity {
        let (version, version_num) = flavour.assumed_version();
        ServerIdentity { flavour, version: version.to_string(), version_num, told: Told::Assumed }
    }

    /// What a server of `flavour` reported.
    pub fn reported(flavour: Flavour, version: String, version_num: i64) -> ServerIdentity {
        ServerIdentity { flavour, version, version_num, told: Told::Reported }
    }

    /// The first number of the version text (15 of `15.18`, 10 of `10.11.19-MariaDB`); 0 when the
    /// text does not start with one.
    pub fn major(&self) -> i64 {
        version_parts(&self.version).map(|p| p[0]).unwrap_or(0)
    }

    /// The second number of the version text (18 of `15.18`, 11 of `10.11.19-MariaDB`); 0 when absent.
    pub fn minor(&self) -> i64 {
        version_parts(&self.version).map(|p| p[1]).unwrap_or(0)
    }

    /// `mariadb 10.11.19-MariaDB-0+deb12u1`, with `(assumed)` when no server told it: for messages.
    pub fn describe(&self) -> String {
        let assumed = if self.told == Told::Assumed { " (assumed: no server was asked)" } else { "" };
        format!("{} {}{assumed}", self.flavour.as_str(), self.version)
    }

    /// The template context's `server` object.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "flavour": self.flavour.as_str(),
            "version": self.version,
            "version_num": self.version_num,
            "major": self.major(),
            "minor": self.minor(),
        })
    }
}

/// The names a template sees in `server`, for the reference and messages.
pub const SERVER_ATTRIBUTES: [&str; 5] = ["flavour", "version", "version_num", "major", "minor"];

/// MariaDB's replication-compatibility prefix: older MariaDB servers (and some drivers) report
/// `5.5.5-10.11.19-MariaDB` so that MySQL 5 replicas accept them.
const MARIADB_COMPAT_PREFIX: &str = "5.5.5-";

/// The major, minor and patch numbers at the start of a version text (`15.18` → 15, 18, 0;
/// `5.5.5-10.11.19-MariaDB-0+deb12u1` → 10, 11, 19); `None` when it does not start with a number.
pub fn version_parts(text: &str) -> Option<[i64; 3]> {
    let text = text.trim();
    let text = match text.strip_prefix(MARIADB_COMPAT_PREFIX) {
        Some(rest) if rest.starts_with(|c: char| c.is_ascii_digit()) => rest,
        _ => text,
    };
    let end = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let mut numbers = text[..end].split('.').map(|p| p.parse::<i64>().ok());
    let major = numbers.next().flatten()?;
    let minor = numbers.next().flatten().unwrap_or(0);
    let patch = numbers.next().flatten().unwrap_or(0);
    Some([major, minor, patch])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_texts_as_each_server_reports_them() {
        assert_eq!(version_parts("10.11.19-MariaDB-0+deb12u1"), Some([10, 11, 19]));
        assert_eq!(version_parts("5.5.5-10.11.19-MariaDB-0+deb12u1"), Some([10, 11, 19]));
        assert_eq!(version_parts("8.0.36"), Some([8, 0, 36]));
        assert_eq!(version_parts("8.0.36-0ubuntu0.22.04.1"), Some([8, 0, 36]));
        assert_eq!(version_parts("5.5.5"), Some([5, 5, 5]), "a real MySQL 5.5.5 is not the prefix");
        assert_eq!(version_parts("15.18 (Debian 15.18-0+deb12u1)"), Some([15, 18, 0]));
        assert_eq!(version_parts("9.6.24"), Some([9, 6, 24]));
        assert_eq!(version_parts("17beta1"), Some([17, 0, 0]));
        assert_eq!(version_parts("3.46.0"), Some([3, 46, 0]));
        assert_eq!(version_parts("garbage"), None);
        assert_eq!(version_parts(""), None);
    }

    #[test]
    fn identities_and_their_template_object() {
        let maria = ServerIdentity::reported(Flavour::Mariadb, "5.5.5-10.11.19-MariaDB".into(), 101119);
        assert_eq!((maria.major(), maria.minor()), (10, 11));
        let json = maria.to_json();
        assert_eq!(json["flavour"], "mariadb");
        assert_eq!(json["version"], "5.5.5-10.11.19-MariaDB");
        assert_eq!(json["version_num"], 101119);
        let mut keys: Vec<&str> = json.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
        keys.sort_unstable();
        let mut expected = SERVER_ATTRIBUTES.to_vec();
        expected.sort_unstable();
        assert_eq!(keys, expected, "SERVER_ATTRIBUTES lists the object's keys");
        for flavour in Flavour::ALL {
            let assumed = ServerIdentity::assumed(flavour);
            let [major, minor, _] = version_parts(&assumed.version).unwrap_or_default();
            assert!(major > 0 && assumed.version_num > 0, "{flavour:?}");
            assert_eq!((assumed.major(), assumed.minor()), (major, minor));
            assert!(assumed.describe().ends_with("(assumed: no server was asked)"));
        }
        let unknown = ServerIdentity::reported(Flavour::Postgresql, "?".into(), 0);
        assert_eq!((unknown.major(), unknown.minor()), (0, 0));
    }
}
