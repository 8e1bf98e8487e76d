//! The exposition served on `/metrics`: rendered once per evaluation, swapped in atomically.
//!
//! Each rule's families are rendered to bytes when its evaluation completes, in both formats (the
//! text format and OpenMetrics, see [`Rendered`]); the body served in each is the concatenation of
//! every rule's bytes in rule order, rebuilt on each update. A scrape only clones an
//! `Arc` (no lock, no rendering, no database), so scrapes never wait on an evaluation and any number
//! of scrapers cost the database nothing.
//!
//! Gzip is just as lazy and just as shared: the first scrape that asks for it compresses each rule's
//! block once (on the blocking pool, so no runtime thread stalls), and every later scrape of any
//! snapshot that still holds that block reuses the compressed bytes. Blocks are compressed as raw
//! DEFLATE ending in a sync flush, so they concatenate into one valid stream; the HTTP layer appends
//! the exporter's own metrics as the final block and the gzip trailer ([`GzipBody::finish`]).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use bytes::Bytes;
use flate2::{Compress, Compression, FlushCompress, Status};
use tokio::sync::OnceCell;

use crate::eval::exposition::{openmetrics, text, Family, Format};

/// One rule's families rendered in every format, once per evaluation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendered {
    pub text: Vec<u8>,
    pub openmetrics: Vec<u8>,
}

impl Rendered {
    /// `families` in both formats.
    pub fn of(families: &[Family]) -> Rendered {
        Rendered { text: text::render(families), openmetrics: openmetrics::render(families) }
    }

    /// The same bytes in both formats: for a block that reads alike in both (an empty one, or
    /// gauges in a test).
    pub fn same(bytes: Vec<u8>) -> Rendered {
        Rendered { openmetrics: bytes.clone(), text: bytes }
    }
}

/// A pair of anything, one per [`Format`].
#[derive(Debug, Default)]
struct PerFormat<T>([T; 2]);

impl<T> PerFormat<T> {
    fn get(&self, format: Format) -> &T {
        match format {
            Format::Text => &self.0[0],
            Format::OpenMetrics => &self.0[1],
        }
    }
}

/// The compression level of served gzip: bodies are compressed once per change and served many
/// times, and the text format compresses about as well at a low level as at a high one.
const GZIP_LEVEL: u32 = 4;

/// The gzip member header: no name, no mtime, unknown OS (RFC 1952).
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// What a scrape sees.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The rules' exposition in the text format, every rule's block in rule order.
    pub body: Bytes,
    /// The same in OpenMetrics (without its `# EOF`, which follows the exporter's own metrics).
    pub openmetrics: Bytes,
    /// Every current rule has completed at least one evaluation.
    pub ready: bool,
    /// Increases with every snapshot published by a store.
    generation: u64,
    /// The rules' blocks that make up the bodies, in order.
    blocks: Vec<Arc<Block>>,
    /// Each body as gzip, less its final block and trailer; made on first use.
    gzip: PerFormat<OnceCell<Arc<GzipBody>>>,
}

/// One rule's rendered exposition in each format and, once a client asked for gzip, its compressed
/// form.
#[derive(Debug)]
struct Block {
    rendered: PerFormat<Bytes>,
    deflated: PerFormat<OnceCell<Bytes>>,
}

impl Block {
    async fn deflated(self: &Arc<Self>, format: Format) -> Bytes {
        self.deflated
            .get(format)
            .get_or_init(|| async {
                let block = self.clone();
                let compress = move || deflate(block.rendered.get(format), FlushCompress::Sync);
                match tokio::task::spawn_blocking(compress).await {
                    Ok(d) => d,
                    // No blocking pool (the runtime is shutting down): compress here.
                    Err(_) => deflate(self.rendered.get(format), FlushCompress::Sync),
                }
            })
            .await
            .clone()
    }
}

/// A snapshot's body as the start of a gzip member: the header and every block as raw DEFLATE
/// without a final block, with the CRC-32 and length of the uncompressed body.
#[derive(Debug)]
pub struct GzipBody {
    /// The header, then each non-empty block's DEFLATE data.
    pub chunks: Vec<Bytes>,
    crc: u32,
    len: u64,
}

impl GzipBody {
    /// The rest of the member after `chunks`: `tail` compressed as the final DEFLATE block, and the
    /// trailer (CRC-32 and length of body + tail).
    pub fn finish(&self, tail: &[u8]) -> Bytes {
        let mut out = deflate(tail, FlushCompress::Finish).to_vec();
        let mut crc = crc32fast::Hasher::new_with_initial_len(self.crc, self.len);
        crc.update(tail);
        out.extend_from_slice(&crc.finalize().to_le_bytes());
        // ISIZE is the length modulo 2^32.
        out.extend_from_slice(&((self.len + tail.len() as u64) as u32).to_le_bytes());
        Bytes::from(out)
    }
}

impl Snapshot {
    /// Tells snapshots apart: a new snapshot has a new generation.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The rules' body in `format`.
    pub fn body_in(&self, format: Format) -> &Bytes {
        match format {
            Format::Text => &self.body,
            Format::OpenMetrics => &self.openmetrics,
        }
    }

    /// The body in `format` as gzip (see [`GzipBody`]); compressed on the first call, shared
    /// afterwards.
    pub async fn gzip(&self, format: Format) -> Arc<GzipBody> {
        self.gzip
            .get(format)
            .get_or_init(|| async {
                let mut chunks = Vec::with_capacity(self.blocks.len() + 1);
                chunks.push(Bytes::from_static(&GZIP_HEADER));
                for block in self.blocks.iter().filter(|b| !b.rendered.get(format).is_empty()) {
                    chunks.push(block.deflated(format).await);
                }
                let body = self.body_in(format);
                let crc = crc32fast::hash(body);
                Arc::new(GzipBody { chunks, crc, len: body.len() as u64 })
            })
            .await
            .clone()
    }
}

/// Raw DEFLATE of `data`: the final block with `FlushCompress::Finish`, else (`Sync`) ending in a
/// sync flush (byte-aligned, not final) so that more DEFLATE data may follow it in the same stream.
fn deflate(data: &[u8], flush: FlushCompress) -> Bytes {
    let finish = flush == FlushCompress::Finish;
    let mut c = Compress::new(Compression::new(GZIP_LEVEL), false);
    let mut out: Vec<u8> = Vec::with_capacity(data.len() / 6 + 128);
    loop {
        if out.capacity() - out.len() < 128 {
            out.reserve(out.capacity().max(4096));
        }
        let consumed = c.total_in() as usize;
        // Compressing into memory cannot fail; a stream error would be a bug in the backend.
        let status = c.compress_vec(&data[consumed..], &mut out, flush).expect("in-memory DEFLATE does not fail");
        let all_in = c.total_in() as usize == data.len();
        match status {
            Status::StreamEnd => break,
            // A sync flush is complete once the input is gone and the output had room to spare.
            _ if all_in && !finish && out.capacity() > out.len() => break,
            Status::BufError if all_in && !finish => break,
            _ => {}
        }
    }
    // Kept for as long as the block is served: give back the room reserved for worse compression.
    out.shrink_to_fit();
    Bytes::from(out)
}

#[derive(Default)]
struct Blocks {
    order: Vec<String>,
    by_rule: HashMap<String, Arc<Block>>,
}

/// Holds the current [`Snapshot`]; written by rule tasks, read by HTTP handlers.
#[derive(Default)]
pub struct SnapshotStore {
    current: ArcSwap<Snapshot>,
    /// Serialises writers only; readers never take it.
    blocks: Mutex<Blocks>,
    generation: AtomicU64,
}

impl SnapshotStore {
    pub fn new() -> SnapshotStore {
        SnapshotStore::default()
    }

    /// The snapshot to serve. Never blocks.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Sets which rules exist, in order. Blocks of rules no longer listed are dropped (their series
    /// disappear); blocks of rules still listed are kept (no blip on reload).
    pub fn set_rules(&self, order: Vec<String>) {
        let mut blocks = self.lock();
        let keep: BTreeSet<&String> = order.iter().collect();
        blocks.by_rule.retain(|name, _| keep.contains(name));
        blocks.order = order;
        self.publish(&blocks);
    }

    /// Replaces one rule's block with a fresh rendering.
    pub fn update(&self, rule: &str, rendered: Rendered) {
        let mut blocks = self.lock();
        if !blocks.order.iter().any(|r| r == rule) {
            return; // the rule was removed while it was evaluating
        }
        let pair = [Bytes::from(rendered.text), Bytes::from(rendered.openmetrics)];
        let block = Arc::new(Block { rendered: PerFormat(pair), deflated: PerFormat::default() });
        blocks.by_rule.insert(rule.to_string(), block);
        self.publish(&blocks);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Blocks> {
        // A panic while holding the lock leaves consistent data (we only insert and retain).
        self.blocks.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn publish(&self, blocks: &Blocks) {
        let in_order: Vec<Arc<Block>> =
            blocks.order.iter().filter_map(|name| blocks.by_rule.get(name).cloned()).collect();
        let ready = blocks.order.iter().all(|r| blocks.by_rule.contains_key(r));
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        self.current.store(Arc::new(Snapshot {
            body: concatenate(&in_order, Format::Text),
            openmetrics: concatenate(&in_order, Format::OpenMetrics),
            ready,
            generation,
            blocks: in_order,
            gzip: PerFormat::default(),
        }));
    }
}

/// The blocks' bytes in `format`, in order.
fn concatenate(blocks: &[Arc<Block>], format: Format) -> Bytes {
    match blocks {
        // One rule: its block is the body, shared rather than copied.
        [only] => only.rendered.get(format).clone(),
        many => {
            let mut body = Vec::with_capacity(many.iter().map(|b| b.rendered.get(format).len()).sum());
            for b in many {
                body.extend_from_slice(b.rendered.get(format));
            }
            Bytes::from(body)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn blocks_concatenate_in_rule_order_and_ready_waits_for_all() {
        let store = SnapshotStore::new();
        store.set_rules(vec!["a".into(), "b".into()]);
        assert!(!store.load().ready);
        store.update("b", Rendered::same(b"B\n".to_vec()));
        assert_eq!(&store.load().body[..], b"B\n");
        assert!(!store.load().ready);
        store.update("a", Rendered::same(b"A\n".to_vec()));
        assert_eq!(&store.load().body[..], b"A\nB\n");
        assert!(store.load().ready);
        store.set_rules(vec!["b".into()]);
        assert_eq!(&store.load().body[..], b"B\n");
        store.update("gone", Rendered::same(b"X\n".to_vec()));
        assert_eq!(&store.load().body[..], b"B\n");
    }

    #[test]
    fn every_publish_is_a_new_generation() {
        let store = SnapshotStore::new();
        let g0 = store.load().generation();
        store.set_rules(vec!["a".into()]);
        let g1 = store.load().generation();
        store.update("a", Rendered::same(b"A\n".to_vec()));
        assert!(g0 < g1 && g1 < store.load().generation());
    }

    fn gunzip(parts: &[Bytes]) -> Vec<u8> {
        let all: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
        let mut out = Vec::new();
        // GzDecoder reads one member and checks its CRC and length.
        flate2::read::GzDecoder::new(&all[..]).read_to_end(&mut out).expect("valid gzip");
        out
    }

    #[tokio::test]
    async fn gzip_of_blocks_and_tail_is_one_valid_member() {
        let store = SnapshotStore::new();
        store.set_rules(vec!["a".into(), "empty".into(), "b".into()]);
        let big: Vec<u8> = (0..20_000).flat_map(|i| format!("m{{i=\"{i}\"}} {}\n", i % 7).into_bytes()).collect();
        store.update("a", Rendered::same(big.clone()));
        store.update("empty", Rendered::default());
        store.update("b", Rendered::same(b"b 1\n".to_vec()));
        let snap = store.load();
        let gz = snap.gzip(Format::Text).await;
        let mut parts = gz.chunks.clone();
        parts.push(gz.finish(b"# own metrics\nown 1\n"));
        let mut want = big.clone();
        want.extend_from_slice(b"b 1\n# own metrics\nown 1\n");
        assert_eq!(gunzip(&parts), want);
        assert!(parts.iter().map(Bytes::len).sum::<usize>() < want.len() / 3);

        // An update recompresses only the block that changed.
        let a_before = gz.chunks[1].clone();
        store.update("b", Rendered::same(b"b 2\n".to_vec()));
        let gz2 = store.load().gzip(Format::Text).await;
        assert_eq!(gz2.chunks[1].as_ptr(), a_before.as_ptr());
        let mut parts = gz2.chunks.clone();
        parts.push(gz2.finish(b""));
        let mut want = big;
        want.extend_from_slice(b"b 2\n");
        assert_eq!(gunzip(&parts), want);
    }

    #[tokio::test]
    async fn gzip_of_an_empty_snapshot_is_valid() {
        let store = SnapshotStore::new();
        let gz = store.load().gzip(Format::Text).await;
        let mut parts = gz.chunks.clone();
        parts.push(gz.finish(b"own 1\n"));
        assert_eq!(gunzip(&parts), b"own 1\n");
    }
}
