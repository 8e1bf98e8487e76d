//! The exposition served on `/metrics`: rendered once per evaluation, swapped in atomically.
//!
//! Each rule's families are rendered to bytes when its evaluation completes, in both formats (the
//! text format and OpenMetrics, see [`Rendered`]); the body served in each is every rule's bytes in
//! rule order, rebuilt on each update. OpenMetrics is kept as pieces: its own metadata lines around
//! shared runs of the text format's series lines ([`Exposed`]), so serving both formats costs about
//! the memory of one (at 100,000 series, 9 MB rather than 18, for the current snapshot and again for
//! the one being built). A scrape only clones `Arc`s (no lock, no rendering, no database), so
//! scrapes never wait on an evaluation and any number of scrapers cost the database nothing.
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

use crate::eval::exposition::{render_exposed, Exposed, Family, Format, Piece};

/// One rule's families rendered in every format, once per evaluation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendered(pub Exposed);

impl Rendered {
    /// `families` in both formats.
    pub fn of(families: &[Family]) -> Rendered {
        Rendered(render_exposed(families))
    }

    /// The same bytes in both formats: for a block that reads alike in both (an empty one, or
    /// gauges in a test).
    pub fn same(bytes: Vec<u8>) -> Rendered {
        let whole = Piece::Text(0..bytes.len());
        Rendered(Exposed { text: bytes, openmetrics: vec![whole] })
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
    /// The rules' exposition in each format, every rule's block in rule order: the text format in
    /// one buffer; OpenMetrics (without its `# EOF`, which follows the exporter's own metrics) as
    /// each block's pieces.
    bodies: PerFormat<Vec<Bytes>>,
    /// Every current rule has completed at least one evaluation.
    pub ready: bool,
    /// Increases with every snapshot published by a store.
    generation: u64,
    /// The rules' blocks that make up the bodies, in order.
    blocks: Vec<Arc<Block>>,
    /// Each body as gzip, less its final block and trailer; made on first use.
    gzip: PerFormat<OnceCell<Arc<GzipBody>>>,
}

/// One rule's rendered exposition in each format (the text format in one buffer, OpenMetrics as
/// pieces sharing it) and, once a client asked for gzip, its compressed form.
#[derive(Debug)]
struct Block {
    rendered: PerFormat<Vec<Bytes>>,
    deflated: PerFormat<OnceCell<Bytes>>,
}

impl Block {
    fn new(rendered: Rendered) -> Block {
        let Exposed { text, openmetrics } = rendered.0;
        let text = Bytes::from(text);
        let pieces = openmetrics
            .into_iter()
            .map(|p| match p {
                Piece::Text(range) => text.slice(range),
                Piece::Own(bytes) => Bytes::from(bytes),
            })
            .filter(|b| !b.is_empty())
            .collect();
        let text = if text.is_empty() { Vec::new() } else { vec![text] };
        Block { rendered: PerFormat([text, pieces]), deflated: PerFormat::default() }
    }

    fn is_empty(&self, format: Format) -> bool {
        self.rendered.get(format).is_empty()
    }

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
        let mut out = deflate(&[tail], FlushCompress::Finish).to_vec();
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

    /// The rules' body in `format`, as buffers to send in order.
    pub fn body_in(&self, format: Format) -> &[Bytes] {
        self.bodies.get(format)
    }

    /// The body in `format` as gzip (see [`GzipBody`]); compressed on the first call, shared
    /// afterwards.
    pub async fn gzip(&self, format: Format) -> Arc<GzipBody> {
        self.gzip
            .get(format)
            .get_or_init(|| async {
                let mut chunks = Vec::with_capacity(self.blocks.len() + 1);
                chunks.push(Bytes::from_static(&GZIP_HEADER));
                for block in self.blocks.iter().filter(|b| !b.is_empty(format)) {
                    chunks.push(block.deflated(format).await);
                }
                let mut crc = crc32fast::Hasher::new();
                let mut len = 0;
                for part in self.body_in(format) {
                    crc.update(part);
                    len += part.len() as u64;
                }
                Arc::new(GzipBody { chunks, crc: crc.finalize(), len })
            })
            .await
            .clone()
    }
}

/// Raw DEFLATE of `parts`, one after the other: the final block with `FlushCompress::Finish`, else
/// (`Sync`) ending in a sync flush (byte-aligned, not final) so that more DEFLATE data may follow it
/// in the same stream.
fn deflate<T: AsRef<[u8]>>(parts: &[T], flush: FlushCompress) -> Bytes {
    let total: usize = parts.iter().map(|p| p.as_ref().len()).sum();
    let mut c = Compress::new(Compression::new(GZIP_LEVEL), false);
    let mut out: Vec<u8> = Vec::with_capacity(total / 6 + 128);
    for (i, part) in parts.iter().enumerate() {
        let ending = if i + 1 == parts.len() { flush } else { FlushCompress::None };
        deflate_part(&mut c, &mut out, part.as_ref(), ending);
    }
    if parts.is_empty() {
        deflate_part(&mut c, &mut out, &[], flush);
    }
    // Kept for as long as the block is served: give back the room reserved for worse compression.
    out.shrink_to_fit();
    Bytes::from(out)
}

/// Feeds `data` to `c`, appending its output to `out`, and ends with `flush` (`None`: more follows).
fn deflate_part(c: &mut Compress, out: &mut Vec<u8>, data: &[u8], flush: FlushCompress) {
    let finish = flush == FlushCompress::Finish;
    let more = flush == FlushCompress::None;
    let start = c.total_in();
    loop {
        if out.capacity() - out.len() < 128 {
            out.reserve(out.capacity().max(4096));
        }
        let consumed = (c.total_in() - start) as usize;
        // Compressing into memory cannot fail; a stream error would be a bug in the backend.
        let status = c.compress_vec(&data[consumed..], out, flush).expect("in-memory DEFLATE does not fail");
        let all_in = (c.total_in() - start) as usize == data.len();
        match status {
            Status::StreamEnd => break,
            _ if all_in && more => break,
            // A sync flush is complete once the input is gone and the output had room to spare.
            _ if all_in && !finish && out.capacity() > out.len() => break,
            Status::BufError if all_in && !finish => break,
            _ => {}
        }
    }
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
        blocks.by_rule.insert(rule.to_string(), Arc::new(Block::new(rendered)));
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
        let openmetrics = in_order.iter().flat_map(|b| b.rendered.get(Format::OpenMetrics).iter().cloned()).collect();
        self.current.store(Arc::new(Snapshot {
            bodies: PerFormat([concatenate(&in_order), openmetrics]),
            ready,
            generation,
            blocks: in_order,
            gzip: PerFormat::default(),
        }));
    }
}

/// The blocks' text, in order, in one buffer (a scrape of the text format sends one).
fn concatenate(blocks: &[Arc<Block>]) -> Vec<Bytes> {
    let texts = || blocks.iter().flat_map(|b| b.rendered.get(Format::Text).iter());
    match texts().count() {
        // One rule with series: its block is the body, shared rather than copied.
        0 | 1 => texts().cloned().collect(),
        _ => {
            let mut body = Vec::with_capacity(texts().map(Bytes::len).sum());
            for t in texts() {
                body.extend_from_slice(t);
            }
            vec![Bytes::from(body)]
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn text(store: &SnapshotStore) -> Vec<u8> {
        store.load().body_in(Format::Text).concat()
    }

    #[test]
    fn blocks_concatenate_in_rule_order_and_ready_waits_for_all() {
        let store = SnapshotStore::new();
        store.set_rules(vec!["a".into(), "b".into()]);
        assert!(!store.load().ready);
        store.update("b", Rendered::same(b"B\n".to_vec()));
        assert_eq!(&text(&store)[..], b"B\n");
        assert!(!store.load().ready);
        store.update("a", Rendered::same(b"A\n".to_vec()));
        assert_eq!(&text(&store)[..], b"A\nB\n");
        assert!(store.load().ready);
        store.set_rules(vec!["b".into()]);
        assert_eq!(&text(&store)[..], b"B\n");
        store.update("gone", Rendered::same(b"X\n".to_vec()));
        assert_eq!(&text(&store)[..], b"B\n");
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

    /// A counter of `n` series, the last `with_created` of them with a `_created` time.
    fn counter(n: usize, with_created: usize) -> Family {
        let mut f = Family::new("c_total", "C.", crate::eval::exposition::MetricType::Counter);
        for i in 0..n {
            f.samples.push(crate::eval::exposition::Sample::owned(vec![("i".into(), format!("{i:06}"))], 1.0));
        }
        f.created = (0..n).map(|i| if i + with_created >= n { 1e9 } else { f64::NAN }).collect();
        f
    }

    #[tokio::test]
    async fn openmetrics_is_served_from_pieces_sharing_the_text_and_gzips_alike() {
        use crate::eval::exposition::{openmetrics, text as text_format};
        let store = SnapshotStore::new();
        store.set_rules(vec!["a".into(), "b".into()]);
        let (a, b) = (vec![counter(5000, 0)], vec![counter(3, 1)]);
        store.update("a", Rendered::of(&a));
        store.update("b", Rendered::of(&b));
        let snap = store.load();
        let mut want = openmetrics::render(&a);
        want.extend(openmetrics::render(&b));
        assert_eq!(snap.body_in(Format::OpenMetrics).concat(), want);
        let mut want_text = text_format::render(&a);
        want_text.extend(text_format::render(&b));
        assert_eq!(snap.body_in(Format::Text).concat(), want_text);
        // One rule: the 5,000 series lines OpenMetrics serves are the text body's bytes, not a copy.
        let one = SnapshotStore::new();
        one.set_rules(vec!["a".into()]);
        one.update("a", Rendered::of(&a));
        let snap_one = one.load();
        let text_range = snap_one.body_in(Format::Text)[0].as_ptr_range();
        assert!(snap_one.body_in(Format::OpenMetrics).iter().any(|p| text_range.contains(&p.as_ptr())));
        let gz = snap.gzip(Format::OpenMetrics).await;
        let mut parts = gz.chunks.clone();
        parts.push(gz.finish(b"# EOF\n"));
        want.extend_from_slice(b"# EOF\n");
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
