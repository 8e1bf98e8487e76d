//! Heuristics on a query's SQL text, for warnings at load: the rendered text should mention every
//! column the rule reads. Only `--check-rules --db` knows the real result columns; this catches the
//! common typo without a server.

/// A warning when the rendered SQL never mentions `column` as a word. Only a heuristic on the text:
/// a query that selects `*` is skipped, and a column the text mentions may still not be returned;
/// `--check-rules --db` checks the real result columns.
pub(super) fn unmentioned_column(sql: &str, role: &str, column: &str) -> Option<String> {
    if selects_star(sql) || mentions_word(sql, column) {
        return None;
    }
    Some(format!(
        "the query never mentions '{column}' ({role}), but must return a column of that name (a check of the SQL text only; --db checks the real columns)"
    ))
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

/// Whether `word` occurs in `text` as a whole word, ignoring case (unquoted SQL names fold case).
fn mentions_word(text: &str, word: &str) -> bool {
    let text = text.to_lowercase();
    let word = word.to_lowercase();
    if word.is_empty() {
        return false;
    }
    let mut from = 0;
    while let Some(at) = text[from..].find(&word) {
        let start = from + at;
        let end = start + word.len();
        let before_ok = !text[..start].chars().next_back().is_some_and(is_word_char);
        let after_ok = !text[end..].chars().next().is_some_and(is_word_char);
        if before_ok && after_ok {
            return true;
        }
        from = start + word.len().max(1);
    }
    false
}

/// Whether the SQL selects `*` or `t.*` somewhere, so its columns cannot be read from the text.
fn selects_star(sql: &str) -> bool {
    let lower = sql.to_lowercase();
    lower.char_indices().filter(|(_, c)| *c == '*').any(|(i, _)| {
        let before = lower[..i].trim_end();
        before.ends_with(',') || before.ends_with('.') || before.ends_with("select") || before.ends_with("distinct")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_found_whole_and_case_insensitively() {
        assert!(mentions_word("SELECT Cluster, n FROM t", "cluster"));
        assert!(mentions_word("x.failures)", "failures"));
        assert!(!mentions_word("SELECT clusters FROM t", "cluster"));
        assert!(!mentions_word("SELECT my_cluster FROM t", "cluster"));
        assert!(!mentions_word("SELECT 1", ""));
    }

    #[test]
    fn star_selects_are_recognised() {
        assert!(selects_star("SELECT * FROM t"));
        assert!(selects_star("select distinct * from t"));
        assert!(selects_star("SELECT a, t.* FROM t"));
        assert!(!selects_star("SELECT count(*), a * 2 FROM t"));
    }
}
