//! The answer cache: finished answers as wire bytes, keyed by the query's
//! name (lower case), type, class and the bits that change the answer (RD,
//! CD, DO, EDNS). A hit costs one copy and a few TTL patches, no parsing.
//! Time comes in as milliseconds; entries live for the smallest TTL of
//! their records (RFC 1035 and RFC 2308 5 for negative answers, whose SOA
//! is in the authority section), capped by `max_ttl`.

use super::wire::{self, QueryHead, KEY_MAX};
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;

struct Entry {
    wire: Box<[u8]>,
    ttl_offs: Box<[u16]>,
    stored_ms: u64,
    expires_ms: u64,
}

type Shard = HashMap<Box<[u8]>, Entry, foldhash::fast::RandomState>;

/// A sharded map with a bound on entries.
pub struct Cache {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    max_ttl: u32,
    hasher: foldhash::fast::RandomState,
}

const SHARDS: usize = 16;

impl Cache {
    /// `capacity` entries at most (0 turns caching off); TTLs above
    /// `max_ttl` seconds are served, but the entry expires after `max_ttl`.
    pub fn new(capacity: usize, max_ttl: u32) -> Self {
        Cache {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard: capacity.div_ceil(SHARDS),
            max_ttl,
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    fn shard(&self, key: &[u8]) -> &Mutex<Shard> {
        &self.shards[self.hasher.hash_one(key) as usize % SHARDS]
    }

    /// Writes the cached answer to query `q` into `out`, fitted to it.
    pub fn get(&self, key: &[u8], q: &[u8], h: &QueryHead, now_ms: u64, out: &mut Vec<u8>) -> bool {
        if self.per_shard == 0 {
            return false;
        }
        let mut s = self.shard(key).lock().unwrap_or_else(|e| e.into_inner());
        let Some(e) = s.get(key) else { return false };
        if now_ms >= e.expires_ms {
            s.remove(key);
            return false;
        }
        out.clear();
        out.extend_from_slice(&e.wire);
        let age = ((now_ms - e.stored_ms) / 1000) as u32;
        wire::patch_cached(out, q, h, &e.ttl_offs, age);
        true
    }

    /// Stores an answer for later queries with the same key, if it is
    /// cacheable: NOERROR or NXDOMAIN, and at least one record with a TTL
    /// above zero (a negative answer without an SOA is not cached,
    /// RFC 2308 5).
    pub fn put(&self, key: &[u8], answer: &[u8], now_ms: u64) -> bool {
        if self.per_shard == 0 || key.len() > KEY_MAX || answer.len() < 12 {
            return false;
        }
        let rcode = answer[3] & 0xf;
        if (rcode != 0 && rcode != 3) || answer[2] & 0x02 != 0 {
            return false; // errors and truncated answers are not kept
        }
        let Some((offs, Some(ttl))) = wire::ttl_fields(answer) else { return false };
        let ttl = ttl.min(self.max_ttl);
        if ttl == 0 {
            return false;
        }
        let mut s = self.shard(key).lock().unwrap_or_else(|e| e.into_inner());
        if s.len() >= self.per_shard && !s.contains_key(key) {
            // Full: evict one of the first few entries in table order (which
            // follows the keyed hash, so is arbitrary), an expired one if
            // there is one. O(1), unlike scanning the shard.
            let victim = {
                let mut first = None;
                let mut expired = None;
                for (k, e) in s.iter().take(8) {
                    first.get_or_insert(k);
                    if e.expires_ms <= now_ms {
                        expired = Some(k);
                        break;
                    }
                }
                expired.or(first).cloned()
            };
            if let Some(k) = victim {
                s.remove(&k);
            }
        }
        s.insert(
            key.into(),
            Entry {
                wire: answer.into(),
                ttl_offs: offs.into(),
                stored_ms: now_ms,
                expires_ms: now_ms + ttl as u64 * 1000,
            },
        );
        true
    }

    pub fn clear(&self) {
        for s in self.shards.iter() {
            s.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
