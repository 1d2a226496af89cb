//! Block-wise transfer (RFC 7959): the Block1/Block2 option value, response slicing, and the
//! server's Block1 reassembly state.
//!
//! Pure logic: the endpoint owns a [`Block1Assembler`] and asks it what to answer; time is
//! passed in so tests need no clock.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::bounded_cache::BoundedCache;

/// A Block1/Block2 option value (RFC 7959 §2.2): block number, more flag, size exponent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockOption {
    pub num: u32,
    pub more: bool,
    /// SZX: the block size is `16 << szx`; 7 is reserved (BERT, RFC 8323) and rejected here.
    pub szx: u8,
}

impl BlockOption {
    pub fn new(num: u32, more: bool, size: usize) -> BlockOption {
        BlockOption {
            num,
            more,
            szx: szx_for(size),
        }
    }

    pub fn size(self) -> usize {
        16usize << self.szx.min(6)
    }

    /// Byte offset of this block in the body.
    pub fn offset(self) -> usize {
        self.num as usize * self.size()
    }

    /// `None` when the value is longer than 3 bytes, the number exceeds 20 bits, or SZX is 7.
    pub fn decode(bytes: &[u8]) -> Option<BlockOption> {
        if bytes.len() > 3 {
            return None;
        }
        let v = bytes.iter().fold(0u32, |acc, b| acc << 8 | u32::from(*b));
        let szx = (v & 0x7) as u8;
        if szx == 7 {
            return None;
        }
        Some(BlockOption {
            num: v >> 4,
            more: v & 0x8 != 0,
            szx,
        })
    }

    /// Minimal-length uint encoding (a zero value is the empty option).
    pub fn encode(self) -> Vec<u8> {
        let v = (self.num << 4) | (u32::from(self.more) << 3) | u32::from(self.szx & 0x7);
        encode_uint(v)
    }
}

/// SZX for the largest power-of-two block not above `size` (clamped to 16..=1024).
pub fn szx_for(size: usize) -> u8 {
    let mut szx = 6u8;
    while szx > 0 && (16usize << szx) > size {
        szx -= 1;
    }
    szx
}

/// Minimal big-endian uint option value (RFC 7252 §3.2).
pub fn encode_uint(v: u32) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    bytes[skip..].to_vec()
}

/// The slice of `body` that block `req` (num, szx) designates, and whether more follow.
/// `None` when the block starts beyond the body (RFC 7959 §2.4: answer 4.02).
pub fn slice_block(body: &[u8], req: BlockOption) -> Option<(&[u8], BlockOption)> {
    let size = req.size();
    let start = req.offset();
    if start >= body.len() && !(start == 0 && body.is_empty()) {
        return None;
    }
    let end = (start + size).min(body.len());
    Some((
        &body[start..end],
        BlockOption {
            num: req.num,
            more: end < body.len(),
            szx: req.szx,
        },
    ))
}

/// What the server answers to one Block1 block.
#[derive(Debug, PartialEq, Eq)]
pub enum Block1Outcome {
    /// Stored; answer 2.31 Continue echoing this block option.
    Continue(BlockOption),
    /// The last block arrived: the whole body, and the block option to echo in the response.
    Complete(Vec<u8>, BlockOption),
    /// Out of order or unknown transfer: 4.08 Request Entity Incomplete.
    Incomplete,
    /// Over the body bound: 4.13 with Size1 = the bound.
    TooLarge,
}

struct Transfer {
    body: Vec<u8>,
    next_num: u32,
    szx: u8,
    touched: Instant,
    /// The per-source limit's key (an address or IPv6 prefix); `None` when exempt.
    source: Option<IpAddr>,
}

/// Transfers one source may hold at once by default: a device uploads one body at a time, a
/// NAT or border router in front of a few devices a handful.
pub const DEFAULT_TRANSFERS_PER_SOURCE: usize = 16;

/// Block1 reassembly keyed by (peer, request key) — the request key is everything that
/// identifies the resource (RFC 7959 §2.5: same endpoint, same Uri options).
///
/// Bounded twice: at most `max_per_source` transfers per source (a new one
/// beyond it replaces that source's least recently active transfer), and at most
/// `max_transfers` in all (a new one beyond it, after expiry, replaces the least recently
/// active transfer of anyone). Before, 1,030 first blocks from one address filled the table and
/// every other host's upload got 4.08 for minutes; now one source can only cycle its own slots,
/// and a flood of first blocks from many (spoofed) addresses must outpace an honest client's
/// round trip to displace its upload.
pub struct Block1Assembler {
    transfers: HashMap<(SocketAddr, String), Transfer>,
    per_source: HashMap<IpAddr, usize>,
    max_body: usize,
    max_transfers: usize,
    max_per_source: usize,
    idle_timeout: Duration,
    evicted: u64,
}

impl Block1Assembler {
    pub fn new(max_body: usize, max_transfers: usize, idle_timeout: Duration) -> Self {
        Block1Assembler {
            transfers: HashMap::new(),
            per_source: HashMap::new(),
            max_body,
            max_transfers,
            max_per_source: DEFAULT_TRANSFERS_PER_SOURCE,
            idle_timeout,
            evicted: 0,
        }
    }

    /// Transfers displaced by newer ones so far (for the endpoint's warning).
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    fn remove(&mut self, key: &(SocketAddr, String)) -> Option<Transfer> {
        let t = self.transfers.remove(key)?;
        if let Some(src) = t.source {
            if let Some(n) = self.per_source.get_mut(&src) {
                *n -= 1;
                if *n == 0 {
                    self.per_source.remove(&src);
                }
            }
        }
        Some(t)
    }

    /// Displace the least recently active transfer, of `source` only when given.
    fn evict_oldest(&mut self, source: Option<IpAddr>) {
        let oldest = self
            .transfers
            .iter()
            .filter(|(_, t)| source.is_none() || t.source == source)
            .min_by_key(|(_, t)| t.touched)
            .map(|(k, _)| k.clone());
        if let Some(k) = oldest {
            self.remove(&k);
            self.evicted += 1;
        }
    }

    pub fn len(&self) -> usize {
        self.transfers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.transfers.is_empty()
    }

    /// One block from `peer`; `source` is what the per-source bound counts it as (`None`:
    /// exempt, e.g. trusted loopback).
    #[allow(clippy::too_many_arguments)]
    pub fn offer(
        &mut self,
        peer: SocketAddr,
        source: Option<IpAddr>,
        key: String,
        block: BlockOption,
        payload: &[u8],
        size1: Option<u32>,
        now: Instant,
    ) -> Block1Outcome {
        if size1.is_some_and(|s| s as usize > self.max_body) {
            self.remove(&(peer, key));
            return Block1Outcome::TooLarge;
        }
        let map_key = (peer, key);
        if block.num == 0 {
            // A fresh start replaces any earlier transfer of the same resource.
            if !block.more {
                self.remove(&map_key);
                if payload.len() > self.max_body {
                    return Block1Outcome::TooLarge;
                }
                return Block1Outcome::Complete(payload.to_vec(), block);
            }
            // The client must send full blocks except the last (RFC 7959 §2.3).
            if payload.len() != block.size() {
                return Block1Outcome::Incomplete;
            }
            // A fresh start replaces an earlier transfer of the same resource.
            self.remove(&map_key);
            if let Some(src) = source {
                if self.per_source.get(&src).copied().unwrap_or(0) >= self.max_per_source {
                    self.evict_oldest(Some(src));
                }
            }
            if self.transfers.len() >= self.max_transfers {
                self.expire(now);
                if self.transfers.len() >= self.max_transfers {
                    self.evict_oldest(None);
                }
            }
            self.transfers.insert(
                map_key,
                Transfer {
                    body: payload.to_vec(),
                    next_num: 1,
                    szx: block.szx,
                    touched: now,
                    source,
                },
            );
            if let Some(src) = source {
                *self.per_source.entry(src).or_insert(0) += 1;
            }
            return Block1Outcome::Continue(block);
        }
        let Some(t) = self.transfers.get_mut(&map_key) else {
            return Block1Outcome::Incomplete;
        };
        // A client may lower the block size mid-transfer (RFC 7959 §2.5), which renumbers:
        // accept any block whose byte offset is exactly where we are.
        if block.offset() != t.body.len() || (block.szx != t.szx && block.szx > t.szx) {
            self.remove(&map_key);
            return Block1Outcome::Incomplete;
        }
        if t.body.len() + payload.len() > self.max_body {
            self.remove(&map_key);
            return Block1Outcome::TooLarge;
        }
        if block.more && payload.len() != block.size() {
            self.remove(&map_key);
            return Block1Outcome::Incomplete;
        }
        t.body.extend_from_slice(payload);
        t.next_num = block.num + 1;
        t.szx = block.szx;
        t.touched = now;
        if block.more {
            Block1Outcome::Continue(block)
        } else {
            let body = self.remove(&map_key).map(|t| t.body).unwrap_or_default();
            Block1Outcome::Complete(body, block)
        }
    }

    /// Forget transfers idle longer than the timeout.
    pub fn expire(&mut self, now: Instant) {
        let idle = self.idle_timeout;
        let stale: Vec<_> = self
            .transfers
            .iter()
            .filter(|(_, t)| now.saturating_duration_since(t.touched) >= idle)
            .map(|(k, _)| k.clone())
            .collect();
        for k in stale {
            self.remove(&k);
        }
    }
}

#[cfg(test)]
mod cache_growth_tests {
    use super::*;

    #[test]
    fn re_inserting_one_key_keeps_the_queue_bounded() {
        let mut c: Block2Cache<u32> = Block2Cache::new(Duration::from_secs(60), 100, 1 << 20);
        let peer: SocketAddr = "192.0.2.1:5683".parse().unwrap();
        let now = Instant::now();
        for i in 0..100_000 {
            c.insert(peer, "k".into(), i, 10, now);
        }
        assert_eq!(c.len(), 1);
        assert!(c.queued() <= 20, "queue grew to {}", c.queued());
        assert_eq!(c.get(peer, "k", now), Some(99_999));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> SocketAddr {
        "127.0.0.1:5683".parse().unwrap()
    }

    #[test]
    fn option_value_round_trips() {
        for (num, more, szx) in [
            (0, false, 0),
            (0, true, 6),
            (1, true, 2),
            (1_000_000, false, 6),
        ] {
            let b = BlockOption { num, more, szx };
            assert_eq!(BlockOption::decode(&b.encode()), Some(b));
        }
        assert_eq!(
            BlockOption {
                num: 0,
                more: false,
                szx: 0
            }
            .encode(),
            Vec::<u8>::new()
        );
        assert_eq!(BlockOption::decode(&[0x0f]), None, "szx 7 is BERT");
        assert_eq!(BlockOption::decode(&[1, 2, 3, 4]), None);
        assert_eq!(szx_for(1024), 6);
        assert_eq!(szx_for(100), 2);
    }

    #[test]
    fn slicing_covers_the_body_exactly() {
        let body: Vec<u8> = (0..10_240u32).map(|i| i as u8).collect();
        let mut out = Vec::new();
        let mut num = 0;
        loop {
            let (chunk, b) = slice_block(&body, BlockOption::new(num, false, 1024)).unwrap();
            out.extend_from_slice(chunk);
            if !b.more {
                break;
            }
            num += 1;
        }
        assert_eq!(out, body);
        assert_eq!(num, 9);
        assert!(slice_block(&body, BlockOption::new(10, false, 1024)).is_none());
        let (empty, b) = slice_block(&[], BlockOption::new(0, false, 64)).unwrap();
        assert!(empty.is_empty() && !b.more);
    }

    #[test]
    fn block1_reassembles_in_order_and_rejects_gaps() {
        let now = Instant::now();
        let mut a = Block1Assembler::new(4096, 4, Duration::from_secs(60));
        let k = || "POST /rd".to_string();
        let blk = |num, more| BlockOption::new(num, more, 16);
        assert_eq!(
            a.offer(peer(), None, k(), blk(0, true), &[1; 16], None, now),
            Block1Outcome::Continue(blk(0, true))
        );
        assert_eq!(
            a.offer(peer(), None, k(), blk(1, true), &[2; 16], None, now),
            Block1Outcome::Continue(blk(1, true))
        );
        match a.offer(peer(), None, k(), blk(2, false), &[3; 5], None, now) {
            Block1Outcome::Complete(body, b) => {
                assert_eq!(body.len(), 37);
                assert_eq!(&body[16..32], &[2; 16]);
                assert_eq!(b, blk(2, false));
            }
            other => panic!("{other:?}"),
        }
        assert!(a.is_empty());
        // A gap is 4.08.
        a.offer(peer(), None, k(), blk(0, true), &[1; 16], None, now);
        assert_eq!(
            a.offer(peer(), None, k(), blk(2, true), &[1; 16], None, now),
            Block1Outcome::Incomplete
        );
        // A middle block without a transfer is 4.08.
        assert_eq!(
            a.offer(peer(), None, k(), blk(1, true), &[1; 16], None, now),
            Block1Outcome::Incomplete
        );
    }

    #[test]
    fn block1_enforces_the_body_bound_and_expiry() {
        let now = Instant::now();
        let mut a = Block1Assembler::new(32, 4, Duration::from_secs(1));
        let blk = |num, more| BlockOption::new(num, more, 16);
        assert_eq!(
            a.offer(
                peer(),
                None,
                "x".into(),
                blk(0, true),
                &[0; 16],
                Some(100),
                now
            ),
            Block1Outcome::TooLarge
        );
        a.offer(peer(), None, "x".into(), blk(0, true), &[0; 16], None, now);
        a.offer(peer(), None, "x".into(), blk(1, true), &[0; 16], None, now);
        assert_eq!(
            a.offer(peer(), None, "x".into(), blk(2, false), &[0; 1], None, now),
            Block1Outcome::TooLarge
        );
        a.offer(peer(), None, "y".into(), blk(0, true), &[0; 16], None, now);
        a.expire(now + Duration::from_secs(2));
        assert!(a.is_empty());
    }

    fn start(a: &mut Block1Assembler, ip: [u8; 4], port: u16, key: &str, now: Instant) {
        let peer = SocketAddr::from((ip, port));
        let block = BlockOption::new(0, true, 16);
        let out = a.offer(
            peer,
            Some(peer.ip()),
            key.into(),
            block,
            &[0; 16],
            None,
            now,
        );
        assert_eq!(out, Block1Outcome::Continue(block));
    }

    fn finish(a: &mut Block1Assembler, ip: [u8; 4], port: u16, key: &str, now: Instant) -> bool {
        let peer = SocketAddr::from((ip, port));
        let block = BlockOption::new(1, false, 16);
        let out = a.offer(peer, Some(peer.ip()), key.into(), block, &[1; 3], None, now);
        matches!(out, Block1Outcome::Complete(body, _) if body.len() == 19)
    }

    #[test]
    fn one_source_cycles_its_own_slots_and_never_fills_the_table() {
        let t0 = Instant::now();
        let mut a = Block1Assembler::new(4096, 1_024, Duration::from_secs(247));
        // The review's attack: 1,030 first blocks from one address.
        for n in 0..1_030u16 {
            start(&mut a, [192, 0, 2, 66], 10_000 + n, "POST rd?ep=x", t0);
        }
        assert_eq!(a.len(), DEFAULT_TRANSFERS_PER_SOURCE);
        // Another host's upload goes through.
        let t1 = t0 + Duration::from_millis(5);
        start(&mut a, [192, 0, 2, 7], 5683, "POST rd?ep=honest", t1);
        assert!(finish(
            &mut a,
            [192, 0, 2, 7],
            5683,
            "POST rd?ep=honest",
            t1
        ));
    }

    #[test]
    fn a_full_table_displaces_the_least_recently_active_transfer() {
        let t0 = Instant::now();
        let mut a = Block1Assembler::new(4096, 64, Duration::from_secs(247));
        let honest_at = t0 + Duration::from_millis(1);
        start(&mut a, [192, 0, 2, 7], 5683, "POST rd", honest_at);
        // 64 addresses (a spoofed flood) start 2 transfers each, after the honest client.
        for n in 0..128u16 {
            let at = t0 + Duration::from_millis(2 + u64::from(n));
            start(
                &mut a,
                [198, 51, 100, (n / 2) as u8],
                1_000 + n,
                "POST rd",
                at,
            );
        }
        assert_eq!(a.len(), 64);
        assert!(a.evicted() >= 65);
        // The honest client went quiet for 128 ms while 128 starts arrived: displaced.
        let late = t0 + Duration::from_millis(200);
        assert!(!finish(&mut a, [192, 0, 2, 7], 5683, "POST rd", late));
        // A client that answers faster than the flood's 64 new starts keeps its slot.
        start(&mut a, [192, 0, 2, 8], 5683, "POST rd", late);
        for n in 0..63u16 {
            start(&mut a, [203, 0, 113, (n / 2) as u8], n, "POST rd", late);
        }
        assert!(finish(&mut a, [192, 0, 2, 8], 5683, "POST rd", late));
    }

    #[test]
    fn an_exempt_source_is_not_bounded_per_source() {
        let now = Instant::now();
        let mut a = Block1Assembler::new(4096, 1_024, Duration::from_secs(60));
        let block = BlockOption::new(0, true, 16);
        for port in 0..100u16 {
            let peer = SocketAddr::from(([127, 0, 0, 1], port));
            a.offer(peer, None, "POST rd".into(), block, &[0; 16], None, now);
        }
        assert_eq!(a.len(), 100);
    }
}

/// Bodies of block-wise responses, so that follow-up Block2 requests are served from the
/// same representation without re-running the handler (RFC 7959 §2.4; needed for a POST
/// whose response is block-wise, and keeps large lookups consistent across blocks).
/// Keyed by (peer, request key); bounded by entries and bytes; entries expire after `ttl`
/// (the endpoint's one [`BoundedCache`]).
pub struct Block2Cache<V> {
    cache: BoundedCache<(SocketAddr, String), V>,
}

impl<V: Clone> Block2Cache<V> {
    pub fn new(ttl: Duration, max_entries: usize, max_bytes: usize) -> Self {
        Block2Cache {
            cache: BoundedCache::new(ttl, max_entries, max_bytes, 0),
        }
    }

    pub fn len(&self) -> usize {
        self.cache.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }

    /// Remember `value` (of `size` bytes) for (peer, key), replacing an older one.
    pub fn insert(&mut self, peer: SocketAddr, key: String, value: V, size: usize, now: Instant) {
        self.cache.insert((peer, key), value, size, now);
    }

    pub fn get(&mut self, peer: SocketAddr, key: &str, now: Instant) -> Option<V> {
        self.cache.get(&(peer, key.to_string()), now).cloned()
    }

    /// Entries in the order queue, live or not (bounded by the cache's compaction).
    pub fn queued(&self) -> usize {
        self.cache.queued()
    }
}

#[cfg(test)]
mod cache_tests {
    use super::*;

    #[test]
    fn block2_cache_is_bounded_and_expires() {
        let now = Instant::now();
        let p: SocketAddr = "[::1]:1".parse().unwrap();
        let mut c = Block2Cache::new(Duration::from_secs(10), 2, 100);
        c.insert(p, "a".into(), 1, 40, now);
        c.insert(p, "b".into(), 2, 40, now);
        assert_eq!(c.get(p, "a", now), Some(1));
        c.insert(p, "c".into(), 3, 40, now);
        assert_eq!(c.get(p, "a", now), None, "evicted by count/bytes");
        assert_eq!(c.get(p, "c", now), Some(3));
        c.insert(p, "c".into(), 4, 10, now + Duration::from_secs(5));
        assert_eq!(
            c.get(p, "c", now + Duration::from_secs(12)),
            Some(4),
            "replaced entry lives on"
        );
        assert_eq!(
            c.get(p, "b", now + Duration::from_secs(12)),
            None,
            "expired"
        );
        c.insert(p, "huge".into(), 5, 1000, now);
        assert_eq!(c.get(p, "huge", now), None, "larger than the byte bound");
    }
}
