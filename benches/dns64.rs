//! DNS64 per-query costs in user space (criterion): `cargo bench --bench dns64`.
//! - `cache_hit`: what the UDP loop does for a cached answer: parse the
//!   query's question (`wire::parse_query`), look the key up, copy the
//!   answer and patch its id, name and TTLs (`Cache::get`), among 1000
//!   cached names;
//! - `synthesize`: the RFC 6147 core on a cache miss: the verdict on a
//!   NODATA AAAA answer and the synthesised answer from an A answer,
//!   encoded (hickory-proto messages, as the full path uses them).
//!
//! The whole server, sockets included, against unbound: scripts/dns_bench.py.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use nat64d::dns64::cache::Cache;
use nat64d::dns64::wire::{parse_query, KEY_MAX};
use nat64d::dns64::{reply_to, AaaaVerdict, Dns64};

fn query(name: &str, t: RecordType) -> Message {
    let mut m = Message::new();
    m.set_id(7).set_recursion_desired(true);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
    m
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("dns64");
    g.throughput(Throughput::Elements(1));

    let cache = Cache::new(100_000, 86_400);
    let mut queries = Vec::new();
    for i in 0..1000 {
        let name = format!("host{i}.example.");
        let q = query(&name, RecordType::AAAA);
        let mut a = reply_to(&q, ResponseCode::NoError);
        a.set_message_type(MessageType::Response);
        a.add_answer(Record::from_rdata(
            Name::from_ascii(&name).unwrap(),
            300,
            RData::AAAA(hickory_proto::rr::rdata::AAAA("2001:db8:64::c000:201".parse().unwrap())),
        ));
        let qb = q.to_vec().unwrap();
        let mut key = [0u8; KEY_MAX];
        let h = parse_query(&qb, &mut key).unwrap();
        assert!(cache.put(&key[..h.key_len], &a.to_vec().unwrap(), 0));
        queries.push(qb);
    }
    let mut out = Vec::with_capacity(512);
    let mut key = [0u8; KEY_MAX];
    let mut i = 0;
    g.bench_function("cache_hit", |b| {
        b.iter(|| {
            let q = &queries[i % 1000];
            i += 1;
            let h = parse_query(black_box(q), &mut key).unwrap();
            assert!(cache.get(&key[..h.key_len], q, &h, 5_000, &mut out));
            out.len()
        })
    });

    let d = Dns64::new(vec!["2001:db8:64::/96".parse().unwrap()]);
    let q = query("web.example.", RecordType::AAAA);
    let mut aaaa = reply_to(&q, ResponseCode::NoError);
    let soa =
        SOA::new(Name::from_ascii("ns.example.").unwrap(), Name::from_ascii("a.example.").unwrap(), 1, 2, 3, 4, 60);
    aaaa.add_name_server(Record::from_rdata(Name::from_ascii("example.").unwrap(), 3600, RData::SOA(soa)));
    let mut a = reply_to(&query("web.example.", RecordType::A), ResponseCode::NoError);
    a.add_answer(Record::from_rdata(Name::from_ascii("web.example.").unwrap(), 300, RData::A(A::new(192, 0, 2, 1))));
    g.bench_function("synthesize", |b| {
        b.iter(|| {
            assert_eq!(d.aaaa_verdict(black_box(&aaaa)), AaaaVerdict::QueryA);
            d.synthesize(&q, &aaaa, black_box(&a)).to_vec().unwrap().len()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
