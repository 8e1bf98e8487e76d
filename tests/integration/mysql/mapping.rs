//! Every mapping feature and every MySQL type the source decodes, on a real MariaDB: the mapping
//! rule of the PostgreSQL tests gives the same golden exposition over the same rows; each type of
//! the issue is read as declared; a value of the wrong type is `bad_value` for its target only.

use std::collections::BTreeMap;

use crate::harness::{golden, labels, MyDb};
use crate::metric_rules::{load, parse, rules_on, run_once, MAPPING_GOLDEN, MAPPING_RULES};

#[tokio::test]
async fn every_mapping_feature_gives_the_postgresql_exposition() {
    let Some(my) = MyDb::shared() else { return };
    my.mariadb(
        "CREATE TABLE jobs (queue VARCHAR(10), waiting INT, running BIGINT, done DECIMAL(10,0), ratio DOUBLE,
                            paused BOOLEAN, last_run DATETIME(3), version VARCHAR(10));
         INSERT INTO jobs VALUES ('mail', 3, 1, 1200, 0.5, FALSE, '2024-01-01 00:00:00', '1.2'),
                                 ('sms', 0, 2, 7, 0.25, TRUE, '2024-01-01 00:00:01.5', '1.3');",
    )
    .unwrap();
    let (text, ok) = run_once(&rules_on(&my.dsn(), MAPPING_RULES)).await;
    assert!(ok, "{text}");
    assert_eq!(text, golden::read(MAPPING_GOLDEN));
}

#[tokio::test]
async fn every_type_is_read_as_declared() {
    let Some(my) = MyDb::shared() else { return };
    // The TIMESTAMP is written in +02:00: the exporter's UTC session must read it two hours earlier.
    my.mariadb(
        "CREATE TABLE typed (k VARCHAR(10), d DECIMAL(10,3), whole DECIMAL(30,0), big BIGINT UNSIGNED, flag TINYINT(1),
                             bit1 BIT(1), bits BIT(12), dt DATETIME(3), ts TIMESTAMP(3) NULL, n INT NULL,
                             utf8_bin VARBINARY(8), raw VARBINARY(8));
         SET time_zone = '+02:00';
         INSERT INTO typed VALUES ('a', 1.5, 42, 18446744073709551615, 1, b'1', b'000100000001', '2024-01-01 00:00:01.5',
                                   '2024-01-01 02:00:02', NULL, 'ok', 0xFF00);",
    )
    .unwrap();
    let rules = r#"
  - name: typed
    database: main
    query: SELECT k, d, whole, big, flag, bit1, bits, dt, ts, n, utf8_bin FROM typed
    key_labels: [k]
    families:
      - {name: t_decimal, help: DECIMAL., value: d}
      - {name: t_decimal_whole, help: DECIMAL without a fraction., value: whole}
      - {name: t_unsigned, help: BIGINT UNSIGNED beyond i64., value: big}
      - {name: t_tinyint1, help: TINYINT(1) as a boolean., value: flag}
      - {name: t_bit1, help: BIT(1) as a boolean., value: bit1}
      - {name: t_bits, help: BIT(12) as an integer., value: bits}
      - {name: t_datetime, help: DATETIME read as UTC., value: dt}
      - {name: t_timestamp, help: TIMESTAMP in the UTC session., value: ts}
      - {name: t_null, help: NULL is skipped., value: n}
      - {name: t_binary_text_info, help: A UTF-8 binary string is text., type: info, key_labels: [k, utf8_bin]}
  - name: raw_binary
    database: main
    query: SELECT k, raw, 1 AS v FROM typed
    families:
      - {name: t_raw_binary, help: A binary string that is not UTF-8 cannot be a label., key_labels: [raw], value: v}
"#;
    let (text, ok) = run_once(&rules_on(&my.dsn(), rules)).await;
    assert!(!ok, "the rule reading a non-UTF-8 binary string fails:\n{text}");
    let s = parse(&text);
    let a = || labels(&[("k", "a")]);
    assert_eq!(s["t_decimal"], BTreeMap::from([(a(), 1.5)]));
    assert_eq!(s["t_decimal_whole"], BTreeMap::from([(a(), 42.0)]));
    assert_eq!(s["t_unsigned"], BTreeMap::from([(a(), 18446744073709551615.0)]));
    assert_eq!(s["t_tinyint1"], BTreeMap::from([(a(), 1.0)]));
    assert_eq!(s["t_bit1"], BTreeMap::from([(a(), 1.0)]));
    assert_eq!(s["t_bits"], BTreeMap::from([(a(), 257.0)]));
    assert_eq!(s["t_datetime"], BTreeMap::from([(a(), 1704067201.5)]));
    assert_eq!(s["t_timestamp"], BTreeMap::from([(a(), 1704067202.0)]));
    assert!(!s.contains_key("t_null"), "{text}");
    assert_eq!(s["t_binary_text_info"], BTreeMap::from([(labels(&[("k", "a"), ("utf8_bin", "ok")]), 1.0)]));
    assert!(!s.contains_key("t_raw_binary"), "{text}");
}

#[tokio::test]
async fn a_value_of_the_wrong_type_is_bad_value_for_its_target_only() {
    let Some(my) = MyDb::shared() else { return };
    let yaml = r#"version: 1
databases:
  main:
    dsn: "${DSN}"
signals:
  - name: typed_signal
    database: main
    labels: [k]
    targets: [{ k: [good, text, binary] }]
    window: 1
    values: { v: integer }
    success: "v == 0"
    metrics:
      up: { name: typed_up, help: Up. }
      error: { name: typed_error, help: Error. }
    query: |
      SELECT t.k, CASE t.k WHEN 'good' THEN '0' WHEN 'text' THEN 'x' ELSE 0xFF END AS v
      FROM JSON_TABLE(?, '$[*]' COLUMNS (k VARCHAR(10) PATH '$.k')) AS t
"#;
    let set = load(yaml, &[("DSN", my.dsn())]);
    let (text, _) = run_once(&set).await;
    let s = parse(&text);
    let error = |k: &str, reason: &str| s["typed_error"][&labels(&[("k", k), ("reason", reason)])];
    assert_eq!(s["typed_up"][&labels(&[("k", "good")])], 1.0, "{text}");
    assert_eq!(error("good", "bad_value"), 0.0, "{text}");
    assert_eq!(error("text", "bad_value"), 1.0, "{text}");
    assert_eq!(error("binary", "bad_value"), 1.0, "{text}");
}

#[tokio::test]
async fn a_fixture_shadows_the_real_table_and_leaves_nothing_behind() {
    use sql_signal_exporter::source::fixture::{Fixture, FixtureColumn, FixtureTable};
    let Some(my) = MyDb::shared() else { return };
    my.mariadb("CREATE TABLE queue (name VARCHAR(10), depth INT); INSERT INTO queue VALUES ('real', 1);").unwrap();
    let set = rules_on(
        &my.dsn(),
        "  - name: depth\n    database: main\n    query: SELECT name, depth FROM queue\n    families: [{name: depth, help: Depth., key_labels: [name], value: depth}]\n",
    );
    let mut sources = crate::harness::api::Sources::build(&set, Default::default());
    let slot = sources.slot("main");
    let source = crate::harness::api::as_source(&slot).unwrap();
    let column = |name: &str, sql_type: &str| FixtureColumn { name: name.into(), sql_type: sql_type.into() };
    let fixture = Fixture {
        tables: vec![FixtureTable {
            name: "queue".into(),
            columns: vec![column("name", "VARCHAR(10)"), column("depth", "INT")],
            rows: vec![vec!["fixture".into(), 7.into()], vec![serde_json::Value::Null, serde_json::Value::Null]],
        }],
        responses: Vec::new(),
    };
    let session = source.open_fixture(&fixture, std::time::Duration::from_secs(5)).await.unwrap();
    let rule = &set.rules[0];
    let outcome = crate::harness::api::evaluation::evaluate(
        rule,
        &[Ok(session.as_ref() as &dyn sql_signal_exporter::source::Source)],
    )
    .await;
    session.finish().await.unwrap();
    let text = String::from_utf8(crate::harness::api::exposition::text::render(&outcome.families)).unwrap();
    assert_eq!(outcome.rows, 2, "{:?} {text}", outcome.status);
    assert_eq!(parse(&text)["depth"], BTreeMap::from([(labels(&[("name", "fixture")]), 7.0)]), "{text}");
    let (real, _) = run_once(&set).await;
    assert_eq!(parse(&real)["depth"], BTreeMap::from([(labels(&[("name", "real")]), 1.0)]));
    sources.close();
}
