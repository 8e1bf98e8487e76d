//! Generated rules files of many shapes, each about a given size: what a templating tool gone wrong
//! might produce.

const HEAD: &str = "version: 1\ndatabases:\n  main:\n    dsn: \"postgresql://exporter@localhost/app\"\n";

fn signal(i: usize, bad: bool) -> String {
    format!(
        "  - name: s{i}\n    database: main\n    interval: {}\n    labels: [cluster]\n    targets:\n      - cluster: [east, west]\n    \
         window: {}\n    values:\n      failures: integer\n    success: \"failures == 0\"\n    bogus{i}: 1\n    metrics:\n      \
         up: {{name: m{i}_up, help: \"h\"}}\n      error: {{name: m{i}_error, help: \"h\"}}\n    query: \"SELECT cluster, failures FROM t\"\n",
        if bad { "0s" } else { "1m" },
        if bad { 0 } else { 3 }
    )
}

/// Repeats `part(i)` after `head` until the text reaches `size`, staying below it.
fn fill(size: usize, head: &str, tail: &str, part: impl Fn(usize) -> String) -> String {
    let mut text = head.to_string();
    for i in 0.. {
        let p = part(i);
        if text.len() + p.len() + tail.len() > size {
            break;
        }
        text.push_str(&p);
    }
    text.push_str(tail);
    text
}

/// Every shape, each at most `size` bytes.
pub fn all(size: usize) -> Vec<(&'static str, String)> {
    let signals = format!("{HEAD}signals:\n");
    let half = size / 2 - 16;
    vec![
        ("many-rules", fill(size, &signals, "", |i| signal(i, false))),
        ("many-bad-rules", fill(size, &signals, "", |i| signal(i, true))),
        ("deep-flow", format!("version: 1\nx: {}{}\n", "[".repeat(half), "]".repeat(half))),
        ("deep-flow-maps", fill(size, "version: 1\nx: ", "", |_| "{a: ".to_string())),
        ("deep-block", fill(size, "version: 1\nx:\n", "", |i| format!("{}- \n", " ".repeat(i % 5000 + 1)))),
        ("long-string", format!("{signals}  - name: \"{}\"\n", "a".repeat(size - signals.len() - 20))),
        (
            "long-block-string",
            fill(size, &format!("{signals}  - name: x\n    query: |\n"), "", |_| "      SELECT 1\n".into()),
        ),
        ("many-keys", fill(size, &format!("{signals}  - name: x\n"), "", |i| format!("    k{i}: {i}\n"))),
        ("duplicate-keys", fill(size, &format!("{signals}  - name: x\n"), "", |i| format!("    k: {i}\n"))),
        ("many-top-level-keys", fill(size, "version: 1\n", "", |i| format!("k{i}: {i}\n"))),
        (
            "chained-anchors",
            fill(size, "version: 1\na: [&x0 1]\n", "", |i| format!("k{}: &x{} [*x{i}, *x{i}]\n", i + 1, i + 1)),
        ),
        ("many-aliases", fill(size, "version: 1\na: &a x\nb: [", "]\n", |_| "*a, ".into())),
        ("laughs", {
            let mut t = "version: 1\na0: &a0 [x,x,x,x,x,x,x,x,x]\n".to_string();
            for i in 1..12 {
                t.push_str(&format!("a{i}: &a{i} [{}]\n", vec![format!("*a{}", i - 1); 9].join(",")));
            }
            t
        }),
        ("many-items", fill(size, &signals, "", |_| "  - 1\n".into())),
        (
            "many-databases",
            fill(size, "version: 1\ndatabases:\n", "", |i| format!("  d{i}: {{dsn: \"x\", bogus: 1}}\n")),
        ),
        ("many-targets", {
            let s = signal(0, false);
            let (a, b) = s.split_once("      - cluster: [east, west]\n").unwrap_or((&s, ""));
            fill(size - b.len(), &format!("{signals}{a}"), b, |i| format!("      - cluster: c{i}\n"))
        }),
        (
            "many-undeclared-databases",
            fill(size, &format!("{HEAD}databases:\n"), "", |i| format!("  d{i}: {{dsn: \"host=h\"}}\n")),
        ),
        ("many-documents", fill(size, "version: 1\n", "", |_| "---\nversion: 1\n".into())),
        ("many-comments", fill(size, &signals, "", |i| format!("# comment {i}\n"))),
    ]
}
