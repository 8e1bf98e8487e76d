//! Where things are in a rules file: a second, position-keeping parse of the YAML text.
//!
//! serde_yaml turns the file into values without positions, and the JSON Schema and the semantic
//! checks report JSON pointers (`/signals/0/window`). An operator needs a line to fix, so this module
//! parses the same text again with saphyr-parser's event API, whose events carry line and column,
//! keeps the position of every mapping key and every node in a small tree, and maps a pointer to the
//! `line:col` to look at.
//!
//! The same pass finds duplicate keys, which serde_yaml resolves silently, last one wins: a rules file
//! with `window:` twice is almost always a merge mistake, and it must be an error, not a guess.
//!
//! The same pass bounds what the text may become before serde_yaml builds it: nesting deeper than
//! [`MAX_DEPTH`], and aliases that expand the document past [`MAX_EXPANDED`] (the "billion laughs":
//! nine aliases of nine aliases of … are a few hundred bytes that expand to gigabytes). Each anchor's
//! expanded size is counted once, when it is defined, so the count costs one pass whatever the aliases.
//!
//! Why the event API and not saphyr's marked tree: that tree stores a mapping in a map, where a second
//! equal key replaces the first, so the duplicate is gone before it could be reported.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use saphyr_parser::{Event, Parser, Span};

use super::diagnostic::Diagnostic;

/// A 1-based line and column.
pub type Position = (usize, usize);

/// The shape of a YAML document with the position of every node and mapping key.
#[derive(Debug, Clone, Default)]
pub struct SpanTree {
    root: Option<Node>,
}

#[derive(Debug, Clone)]
enum Node {
    /// A scalar, an alias or anything else a pointer cannot descend into.
    Leaf(Position),
    Sequence(Position, Vec<Node>),
    /// The entries in file order, and each key's last entry (the one serde_yaml keeps).
    Mapping(Position, Vec<Entry>, HashMap<String, usize>),
}

#[derive(Debug, Clone)]
struct Entry {
    /// The key's text; empty for a key that is not a scalar (a complex key, which rules never use).
    key: String,
    key_position: Position,
    value: Node,
}

impl Node {
    fn position(&self) -> Position {
        match self {
            Node::Leaf(p) | Node::Sequence(p, _) | Node::Mapping(p, ..) => *p,
        }
    }
}

/// A key given more than once in one mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateKey {
    /// JSON pointer of the key (the mapping's pointer plus the key).
    pub pointer: String,
    pub key: String,
    /// Where the repeated key is, and where the key was first given.
    pub position: Position,
    pub first: Position,
}

/// The YAML does not parse (only reported when serde_yaml disagrees, see [`parse`]), or it exceeds
/// a limit (`limit`), which the loader reports before serde_yaml sees the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub position: Position,
    pub message: String,
    pub limit: bool,
}

/// The deepest nesting of sequences and mappings accepted (serde_yaml's own limit is 128).
pub const MAX_DEPTH: usize = 100;

/// The largest document that aliases may expand a file to, counting one per node plus the length of
/// each scalar: four times the largest file, which a file without aliases cannot come near.
pub const MAX_EXPANDED: u64 = 4 * super::input::MAX_FILE_BYTES as u64;

/// Parses the first document of `text` into a [`SpanTree`], with every duplicate key found.
///
/// The loader parses with serde_yaml first and reports its syntax errors; a file serde_yaml accepts
/// but this parser rejects merely has no positions.
pub fn parse(text: &str) -> Result<(SpanTree, Vec<DuplicateKey>), SyntaxError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    let mut documents = 0;
    while let Some(event) = parser.next_event() {
        let (event, span) = event.map_err(|e| {
            // The scanner's own bound on flow nesting ([[[…): serde_yaml's parser takes quadratic
            // time on such nesting, so it is a limit, reported without asking serde_yaml.
            let limit = e.info() == "recursion limit exceeded";
            SyntaxError {
                position: (e.marker().line(), e.marker().col() + 1),
                message: if limit { too_deep() } else { e.info().to_string() },
                limit,
            }
        })?;
        builder.check_limits(&event, start(span))?;
        match event {
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    break;
                }
            }
            Event::DocumentEnd | Event::StreamEnd => {
                if documents >= 1 {
                    break;
                }
            }
            Event::Scalar(text, ..) => builder.complete(Node::Leaf(start(span)), Some(text.into_owned())),
            Event::Alias(_) => builder.complete(Node::Leaf(start(span)), None),
            Event::SequenceStart(..) => builder.stack.push(Frame::Sequence(start(span), Vec::new())),
            Event::MappingStart(..) => builder.stack.push(Frame::Mapping {
                position: start(span),
                entries: Vec::new(),
                pending_key: None,
                seen: HashMap::new(),
            }),
            Event::SequenceEnd => {
                if let Some(Frame::Sequence(p, items)) = builder.stack.pop() {
                    builder.complete(Node::Sequence(p, items), None);
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Mapping { position, entries, seen, .. }) = builder.stack.pop() {
                    let mut last: HashMap<String, usize> = HashMap::with_capacity(seen.len());
                    for (i, e) in entries.iter().enumerate() {
                        last.insert(e.key.clone(), i);
                    }
                    builder.complete(Node::Mapping(position, entries, last), None);
                }
            }
            Event::Nothing | Event::StreamStart => {}
        }
    }
    Ok((SpanTree { root: builder.root }, builder.duplicates))
}

fn too_deep() -> String {
    format!("nested more than {MAX_DEPTH} levels deep, deeper than any rules file needs")
}

fn start(span: Span) -> Position {
    // saphyr-parser's lines are 1-based and its columns 0-based.
    (span.start.line(), span.start.col() + 1)
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    root: Option<Node>,
    duplicates: Vec<DuplicateKey>,
    /// The expanded size of each open container, for the anchor it may carry.
    sizes: Vec<(usize, u64)>,
    /// Anchor id → expanded size of its node.
    anchors: HashMap<usize, u64>,
    /// The expanded size of the document so far.
    expanded: u64,
}

enum Frame {
    Sequence(Position, Vec<Node>),
    Mapping {
        position: Position,
        entries: Vec<Entry>,
        /// The key whose value comes next.
        pending_key: Option<(String, Position)>,
        /// Key → where it was first given.
        seen: HashMap<String, Position>,
    },
}

impl Builder {
    /// Refuses nesting past [`MAX_DEPTH`] and expansion past [`MAX_EXPANDED`], counting `event`.
    fn check_limits(&mut self, event: &Event, position: Position) -> Result<(), SyntaxError> {
        let limit = |message: String| SyntaxError { position, message, limit: true };
        let size = match event {
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if self.sizes.len() >= MAX_DEPTH {
                    return Err(limit(too_deep()));
                }
                self.sizes.push((*anchor, 0));
                1
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((anchor, size)) = self.sizes.pop() {
                    if anchor != 0 {
                        self.anchors.insert(anchor, size);
                    }
                }
                0
            }
            Event::Scalar(text, _, anchor, _) => {
                let size = 1 + text.len() as u64;
                if *anchor != 0 {
                    self.anchors.insert(*anchor, size);
                }
                size
            }
            Event::Alias(anchor) => self.anchors.get(anchor).copied().unwrap_or(1),
            _ => 0,
        };
        if size == 0 {
            return Ok(());
        }
        for (_, open) in &mut self.sizes {
            *open = open.saturating_add(size);
        }
        self.expanded = self.expanded.saturating_add(size);
        if self.expanded > MAX_EXPANDED {
            return Err(limit(format!(
                "aliases expand the document past {MAX_EXPANDED} nodes and characters, the most a rules \
                 file may expand to; use fewer aliases of large anchors"
            )));
        }
        Ok(())
    }

    /// Hangs a finished node on its parent: an item, a key, or a key's value.
    fn complete(&mut self, node: Node, text: Option<String>) {
        let depth = self.stack.len();
        match self.stack.last_mut() {
            None => {
                self.root = Some(node);
                return;
            }
            Some(Frame::Sequence(_, items)) => {
                items.push(node);
                return;
            }
            Some(Frame::Mapping { entries, pending_key, .. }) => {
                if let Some((key, key_position)) = pending_key.take() {
                    entries.push(Entry { key, key_position, value: node });
                    return;
                }
            }
        }
        // The node is a key.
        let key = text.unwrap_or_default();
        let position = node.position();
        let first = match self.stack.last_mut() {
            Some(Frame::Mapping { seen, .. }) if !key.is_empty() => match seen.get(&key) {
                Some(&first) => Some(first),
                None => {
                    seen.insert(key.clone(), position);
                    None
                }
            },
            _ => None,
        };
        if let Some(first) = first {
            let mut pointer = self.pointer_of(depth - 1);
            pointer.push('/');
            pointer.push_str(&escape(&key));
            self.duplicates.push(DuplicateKey { pointer, key: key.clone(), position, first });
        }
        if let Some(Frame::Mapping { pending_key, .. }) = self.stack.last_mut() {
            *pending_key = Some((key, position));
        }
    }

    /// The JSON pointer of the container at `self.stack[depth]`.
    fn pointer_of(&self, depth: usize) -> String {
        let mut pointer = String::new();
        for frame in &self.stack[..depth] {
            pointer.push('/');
            match frame {
                Frame::Sequence(_, items) => pointer.push_str(&items.len().to_string()),
                Frame::Mapping { pending_key, .. } => {
                    pointer.push_str(&escape(pending_key.as_ref().map(|(k, _)| k.as_str()).unwrap_or("")))
                }
            }
        }
        pointer
    }
}

/// Escapes one JSON pointer segment (RFC 6901).
pub fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

fn unescape(segment: &str) -> String {
    segment.replace("~1", "/").replace("~0", "~")
}

impl SpanTree {
    /// Where an operator should look for the thing `pointer` names.
    ///
    /// A mapping entry resolves to its key (the line of `window:`), a sequence item to the item. When
    /// the pointer goes on past what the file has (a missing key, say), the position is that of the
    /// deepest part that exists, so an error about a missing key points at the mapping that lacks it.
    /// `None` only for an empty document.
    pub fn position(&self, pointer: &str) -> Option<Position> {
        let mut node = self.root.as_ref()?;
        let mut position = node.position();
        if pointer.is_empty() {
            return Some(position);
        }
        for segment in pointer.strip_prefix('/').unwrap_or(pointer).split('/') {
            let segment = unescape(segment);
            match node {
                Node::Mapping(_, entries, last) => match last.get(&segment).and_then(|&i| entries.get(i)) {
                    Some(entry) => {
                        position = entry.key_position;
                        node = &entry.value;
                    }
                    None => break,
                },
                Node::Sequence(_, items) => match segment.parse::<usize>().ok().and_then(|i| items.get(i)) {
                    Some(item) => {
                        position = item.position();
                        node = item;
                    }
                    None => break,
                },
                Node::Leaf(_) => break,
            }
        }
        Some(position)
    }

    /// The position of the value (rather than the key) at `pointer`, when it exists.
    pub fn value_position(&self, pointer: &str) -> Option<Position> {
        let mut node = self.root.as_ref()?;
        if pointer.is_empty() {
            return Some(node.position());
        }
        for segment in pointer.strip_prefix('/').unwrap_or(pointer).split('/') {
            let segment = unescape(segment);
            node = match node {
                Node::Mapping(_, entries, last) => &entries.get(*last.get(&segment)?)?.value,
                Node::Sequence(_, items) => items.get(segment.parse::<usize>().ok()?)?,
                Node::Leaf(_) => return None,
            };
        }
        Some(node.position())
    }
}

/// Fills the position of every diagnostic that has none and whose file has a tree in `trees`.
///
/// A diagnostic about the whole file (empty pointer) is placed at the top of the document.
pub fn fill_positions(diags: &mut [Diagnostic], trees: &BTreeMap<PathBuf, SpanTree>) {
    for d in diags.iter_mut().filter(|d| d.position.is_none()) {
        if let Some(tree) = trees.get(&d.file) {
            d.position = tree.position(&d.pointer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
version: 1
signals:
  - name: a
    window: 3
    metrics:
      up: {name: x, help: y}
  - name: b
    labels: [l1, l2]
\"a/b~c\": 1
";

    fn tree() -> SpanTree {
        let (tree, dups) = parse(TEXT).expect("parses");
        assert!(dups.is_empty(), "{dups:?}");
        tree
    }

    #[test]
    fn pointers_resolve_to_keys_and_items() {
        let t = tree();
        assert_eq!(t.position(""), Some((1, 1)));
        assert_eq!(t.position("/version"), Some((1, 1)));
        assert_eq!(t.position("/signals"), Some((2, 1)));
        assert_eq!(t.position("/signals/0"), Some((3, 5)));
        assert_eq!(t.position("/signals/0/window"), Some((4, 5)));
        assert_eq!(t.position("/signals/0/metrics/up/help"), Some((6, 21)));
        assert_eq!(t.position("/signals/1/labels/1"), Some((8, 18)));
        assert_eq!(t.position("/a~1b~0c"), Some((9, 1)));
        assert_eq!(t.value_position("/signals/0/window"), Some((4, 13)));
    }

    #[test]
    fn missing_parts_resolve_to_the_deepest_existing_parent() {
        let t = tree();
        assert_eq!(t.position("/signals/0/query"), Some((3, 5)));
        assert_eq!(t.position("/signals/0/metrics/error/name"), Some((5, 5)));
        assert_eq!(t.position("/signals/7/window"), Some((2, 1)));
        assert_eq!(t.position("/signals/x"), Some((2, 1)));
        assert_eq!(t.position("/version/deeper"), Some((1, 1)));
        assert_eq!(t.value_position("/signals/0/query"), None);
    }

    #[test]
    fn duplicate_keys_are_found_at_any_depth() {
        let text = "a: 1\nb:\n  - x: 1\n    y: 2\n    x: 3\na: 4\n";
        let (tree, dups) = parse(text).expect("parses");
        assert_eq!(
            dups,
            vec![
                DuplicateKey { pointer: "/b/0/x".into(), key: "x".into(), position: (5, 5), first: (3, 5) },
                DuplicateKey { pointer: "/a".into(), key: "a".into(), position: (6, 1), first: (1, 1) },
            ]
        );
        // The last one is the one serde_yaml keeps, and the one a pointer resolves to.
        assert_eq!(tree.position("/a"), Some((6, 1)));
    }

    #[test]
    fn empty_and_broken_documents() {
        let (tree, _) = parse("").expect("an empty text parses");
        assert_eq!(tree.position(""), None);
        let (tree, _) = parse("# only a comment\n").expect("parses");
        assert_eq!(tree.position("/version"), None);
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert_eq!(err.position.0, 2);
        // Only the first document counts.
        let (tree, dups) = parse("a: 1\n---\na: 2\n").expect("parses");
        assert!(dups.is_empty());
        assert_eq!(tree.position("/a"), Some((1, 1)));
    }
}
