use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::*;

struct Map(BTreeMap<&'static str, Vec<Ipv4Addr>>);

impl Resolver for Map {
    fn lookup(&self, name: &str) -> Vec<Ipv4Addr> {
        self.0.get(name).cloned().unwrap_or_default()
    }
    fn reverse(&self, ip: Ipv4Addr) -> Option<String> {
        self.0
            .iter()
            .find(|(_, v)| v.contains(&ip))
            .map(|(k, _)| (*k).to_owned())
    }
}

const WEB: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 2);
const DB: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 3);
/// What the fake upstream answers.
const OUTSIDE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);

fn resolver() -> Arc<dyn Resolver> {
    Arc::new(Map(BTreeMap::from([
        ("web", vec![WEB]),
        ("backend", vec![WEB]),
        ("db.internal", vec![DB]),
    ])))
}

fn server(upstream: Vec<SocketAddr>) -> DnsServer {
    DnsServer::start("127.0.0.1:0".parse().unwrap(), resolver(), upstream).unwrap()
}

fn query(id: u16, name: &str, ty: RecordType) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), ty));
    m.to_vec().unwrap()
}

fn udp_raw(to: SocketAddr, q: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(wait)).unwrap();
    c.send_to(q, to).unwrap();
    let mut buf = vec![0u8; 65535];
    let (n, from) = c.recv_from(&mut buf).ok()?;
    assert_eq!(from, to);
    Some(buf[..n].to_vec())
}

fn ask(to: SocketAddr, id: u16, name: &str, ty: RecordType) -> Message {
    let r = udp_raw(to, &query(id, name, ty), Duration::from_secs(8)).expect("an answer");
    Message::from_vec(&r).unwrap()
}

fn tcp_raw(to: SocketAddr, q: &[u8]) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect(to).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    write_framed(&mut s, q).unwrap();
    read_framed(&mut s, 65535, Instant::now() + Duration::from_secs(8))
}

fn a_records(m: &Message) -> Vec<(Ipv4Addr, u32)> {
    m.answers
        .iter()
        .filter_map(|r| match r.data {
            RData::A(A(ip)) => Some((ip, r.ttl)),
            _ => None,
        })
        .collect()
}

/// How the fake upstream behaves.
#[derive(Clone, Copy, PartialEq)]
enum Up {
    /// Answers `OUTSIDE`.
    Answer,
    /// Answers REFUSED.
    Refuse,
    /// Says nothing.
    Silent,
    /// Truncated over UDP, whole over TCP.
    Truncate,
    /// As `Truncate`, the whole answer too long for UDP (60 records).
    TruncateBig,
}

/// A fake upstream on UDP and TCP of one loopback port; the id of the last query it saw.
fn upstream(how: Up) -> (SocketAddr, Arc<AtomicU16>) {
    let (udp, tcp) = loop {
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        if let Ok(t) = TcpListener::bind(u.local_addr().unwrap()) {
            break (u, t);
        }
    };
    let addr = udp.local_addr().unwrap();
    let seen = Arc::new(AtomicU16::new(0));
    let answer = move |q: &[u8], tc: bool| -> Vec<u8> {
        let q = Message::from_vec(q).unwrap();
        let mut r = Message::response(q.metadata.id, OpCode::Query);
        r.add_query(q.queries[0].clone());
        if how == Up::Refuse {
            r.metadata.response_code = ResponseCode::Refused;
        } else if tc {
            r.metadata.truncation = true;
        } else {
            let n = if how == Up::TruncateBig { 60 } else { 1 };
            r.add_answers((0..n).map(|_| {
                Record::from_rdata(q.queries[0].name().clone(), 30, RData::A(A(OUTSIDE)))
            }));
        }
        r.to_vec().unwrap()
    };
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, from)) = udp.recv_from(&mut buf) {
            seen2.store(u16::from_be_bytes([buf[0], buf[1]]), Ordering::SeqCst);
            if how != Up::Silent {
                let tc = matches!(how, Up::Truncate | Up::TruncateBig);
                let _ = udp.send_to(&answer(&buf[..n], tc), from);
            }
        }
    });
    std::thread::spawn(move || {
        for mut c in tcp.incoming().flatten() {
            let deadline = Instant::now() + Duration::from_secs(5);
            if let Some(q) = read_framed(&mut c, 65535, deadline)
                && how != Up::Silent
            {
                let _ = write_framed(&mut c, &answer(&q, false));
            }
        }
    });
    (addr, seen)
}

/// A loopback port nothing listens on (UDP answers with a refusal at once).
fn closed_port() -> SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap()
}

#[test]
fn known_names_get_a_records_without_the_authoritative_bit_as_docker_s() {
    let s = server(Vec::new());
    let to = s.local_addr();
    for name in ["web", "web.", "WEB", "Backend."] {
        let r = ask(to, 7, name, RecordType::A);
        assert_eq!(r.metadata.id, 7);
        assert_eq!(r.metadata.message_type, MessageType::Response);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{name}");
        assert!(!r.metadata.authoritative, "{name}");
        assert!(r.metadata.recursion_available, "{name}");
        assert_eq!(a_records(&r), [(WEB, 600)], "{name}");
        assert_eq!(r.queries.len(), 1);
    }
    assert_eq!(
        a_records(&ask(to, 8, "db.internal", RecordType::A)),
        [(DB, 600)]
    );
}

#[test]
fn other_types_of_a_known_name_are_empty_noerror() {
    let s = server(Vec::new());
    for ty in [RecordType::AAAA, RecordType::MX, RecordType::TXT] {
        let r = ask(s.local_addr(), 9, "web", ty);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{ty}");
        assert!(r.answers.is_empty(), "{ty}");
        assert!(!r.metadata.authoritative);
    }
}

#[test]
fn ptr_of_a_container_address_is_its_name() {
    let s = server(Vec::new());
    let r = ask(
        s.local_addr(),
        10,
        "3.0.9.10.in-addr.arpa.",
        RecordType::PTR,
    );
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    let names: Vec<String> = r
        .answers
        .iter()
        .filter_map(|a| match &a.data {
            RData::PTR(p) => Some(p.0.to_ascii()),
            _ => None,
        })
        .collect();
    assert_eq!(names, ["db.internal."]);
    assert_eq!(r.answers[0].ttl, 600);
    assert_eq!(reverse_name("3.0.9.10.in-addr.arpa"), Some(DB));
    assert_eq!(reverse_name("0.9.10.in-addr.arpa"), None);
    assert_eq!(reverse_name("x.0.9.10.in-addr.arpa"), None);
}

#[test]
fn unknown_names_are_forwarded_in_order_with_the_client_id() {
    let (refusing, _) = upstream(Up::Refuse);
    let (good, seen) = upstream(Up::Answer);
    let s = server(vec![closed_port(), refusing, good]);
    let r = ask(s.local_addr(), 0x4242, "example.org", RecordType::A);
    assert_eq!(r.metadata.id, 0x4242);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a_records(&r), [(OUTSIDE, 30)]);
    assert!(!r.metadata.authoritative);
    assert_ne!(seen.load(Ordering::SeqCst), 0, "the upstream was asked");
    // A PTR of an address no container has is forwarded too.
    let r = ask(s.local_addr(), 5, "9.9.9.10.in-addr.arpa", RecordType::PTR);
    assert_eq!(r.metadata.id, 5);
    assert_eq!(r.queries[0].query_type(), RecordType::PTR);
}

#[test]
fn a_truncated_upstream_answer_is_asked_again_over_tcp() {
    let (up, _) = upstream(Up::Truncate);
    let s = server(vec![up]);
    let r = ask(s.local_addr(), 77, "big.example", RecordType::A);
    assert!(!r.metadata.truncation);
    assert_eq!(a_records(&r), [(OUTSIDE, 30)]);
}

#[test]
fn a_whole_answer_too_long_for_the_client_is_relayed_truncated() {
    let (up, _) = upstream(Up::TruncateBig);
    let s = server(vec![up]);
    let r = ask(s.local_addr(), 78, "big.example", RecordType::A);
    assert!(r.metadata.truncation);
    assert!(r.answers.is_empty());
    let r = tcp_raw(s.local_addr(), &query(79, "big.example", RecordType::A)).unwrap();
    assert_eq!(a_records(&Message::from_vec(&r).unwrap()).len(), 60);
}

#[test]
fn no_upstream_answering_is_servfail_in_bounded_time() {
    let (silent, _) = upstream(Up::Silent);
    let (refusing, _) = upstream(Up::Refuse);
    let s = server(vec![silent, refusing]);
    let t = Instant::now();
    let r = ask(s.local_addr(), 31, "example.org", RecordType::A);
    assert_eq!(r.metadata.id, 31);
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    let took = t.elapsed();
    assert!(
        took >= UPSTREAM_TIMEOUT && took < UPSTREAM_TIMEOUT + Duration::from_secs(2),
        "{took:?}"
    );
    let none = server(Vec::new());
    let r = ask(none.local_addr(), 32, "example.org", RecordType::A);
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
}

#[test]
fn queries_over_tcp_are_answered_and_forwarded_over_tcp() {
    let (up, _) = upstream(Up::Answer);
    let s = server(vec![up]);
    let r = tcp_raw(s.local_addr(), &query(3, "web", RecordType::A)).unwrap();
    let r = Message::from_vec(&r).unwrap();
    assert_eq!((r.metadata.id, a_records(&r)), (3, vec![(WEB, 600)]));
    let r = tcp_raw(s.local_addr(), &query(4, "example.org", RecordType::A)).unwrap();
    let r = Message::from_vec(&r).unwrap();
    assert_eq!((r.metadata.id, a_records(&r)), (4, vec![(OUTSIDE, 30)]));
    // Several queries on one connection.
    let mut c = TcpStream::connect(s.local_addr()).unwrap();
    for id in 10..13 {
        write_framed(&mut c, &query(id, "backend", RecordType::A)).unwrap();
        let r = read_framed(&mut c, 65535, Instant::now() + Duration::from_secs(5)).unwrap();
        assert_eq!(Message::from_vec(&r).unwrap().metadata.id, id);
    }
}

#[test]
fn two_servers_share_an_address_and_one_stopping_leaves_the_other() {
    let a = DnsServer::start("127.0.0.2:0".parse().unwrap(), resolver(), Vec::new()).unwrap();
    let b = DnsServer::start(a.local_addr(), resolver(), Vec::new()).unwrap();
    let to = a.local_addr();
    assert_eq!(b.local_addr(), to);
    for id in 0..8 {
        assert_eq!(a_records(&ask(to, id, "web", RecordType::A)), [(WEB, 600)]);
    }
    a.stop();
    // Every query (from new source ports, so spread over the group) is answered.
    for id in 0..16 {
        let r = udp_raw(to, &query(id, "web", RecordType::A), Duration::from_secs(2));
        assert!(
            r.is_some(),
            "query {id} unanswered after one server stopped"
        );
    }
    let r = tcp_raw(to, &query(99, "web", RecordType::A)).unwrap();
    assert_eq!(Message::from_vec(&r).unwrap().metadata.id, 99);
    b.stop();
    assert!(
        udp_raw(
            to,
            &query(1, "web", RecordType::A),
            Duration::from_millis(300)
        )
        .is_none()
    );
}

#[test]
fn malformed_input_is_formerr_or_dropped() {
    let s = server(Vec::new());
    let to = s.local_addr();
    let short = Duration::from_millis(300);
    // Too short for a header, a response, or too long: dropped.
    assert!(udp_raw(to, &[1, 2, 3], short).is_none());
    let mut resp = query(5, "web", RecordType::A);
    resp[2] |= 0x80;
    assert!(udp_raw(to, &resp, short).is_none());
    assert!(udp_raw(to, &vec![0u8; MAX_QUERY + 10], short).is_none());
    // A header promising a question that is not there.
    let hdr = [0xab, 0xcd, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    let r = Message::from_vec(&udp_raw(to, &hdr, Duration::from_secs(2)).unwrap()).unwrap();
    assert_eq!(
        (r.metadata.id, r.metadata.response_code),
        (0xabcd, ResponseCode::FormErr)
    );
    // Two questions.
    let mut two = Message::new(6, MessageType::Query, OpCode::Query);
    two.add_query(Query::query(
        Name::from_ascii("web").unwrap(),
        RecordType::A,
    ));
    two.add_query(Query::query(Name::from_ascii("db").unwrap(), RecordType::A));
    let r = udp_raw(to, &two.to_vec().unwrap(), Duration::from_secs(2)).unwrap();
    let r = Message::from_vec(&r).unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
    // Another opcode.
    let mut upd = query(7, "web", RecordType::A);
    upd[2] |= 5 << 3;
    let r = Message::from_vec(&udp_raw(to, &upd, Duration::from_secs(2)).unwrap()).unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::NotImp);
    // Random bytes: never a panic.
    let mut x: u32 = 0x1234_5678;
    for len in 12..200 {
        let junk: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.send_to(&junk, to).unwrap();
    }
    // An oversized TCP message closes the connection.
    let mut c = TcpStream::connect(to).unwrap();
    c.write_all(&[0xff, 0xff]).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut b = [0u8; 1];
    assert!(matches!(c.read(&mut b), Ok(0) | Err(_)));
    // Still serving.
    assert_eq!(a_records(&ask(to, 8, "web", RecordType::A)), [(WEB, 600)]);
}

/// Waits (a while at most) until `f` holds.
fn wait_for(f: impl Fn() -> bool) {
    let end = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < end, "timed out");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn tcp_connections_are_capped() {
    let s = server(Vec::new());
    let idle: Vec<TcpStream> = (0..MAX_TCP)
        .map(|_| TcpStream::connect(s.local_addr()).unwrap())
        .collect();
    // Let the server take them all.
    wait_for(|| s.shared.tcp.load(Ordering::SeqCst) == MAX_TCP);
    let mut extra = TcpStream::connect(s.local_addr()).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut b = [0u8; 1];
    assert!(matches!(extra.read(&mut b), Ok(0)), "not closed");
    drop(idle);
    // Their threads end with them, and others are served again.
    wait_for(|| s.shared.tcp.load(Ordering::SeqCst) == 0);
    let r = tcp_raw(s.local_addr(), &query(1, "web", RecordType::A)).unwrap();
    assert_eq!(Message::from_vec(&r).unwrap().metadata.id, 1);
}

#[test]
fn file_resolver_rereads_a_changed_file() {
    use crate::net::store::{NetworkStore, NewNetwork};
    let home = tempfile::tempdir().unwrap();
    let store = NetworkStore::open(home.path());
    let new = NewNetwork {
        name: "web".into(),
        ..Default::default()
    };
    let n = store.create(new).unwrap();
    let path = home.path().join("networks").join(format!("{}.json", n.id));
    let r = FileResolver::new(&path);
    assert!(r.lookup("api").is_empty());
    let add = |name: &str, ip: Ipv4Addr| {
        let e = endpoint(name, ip, &["svc"]);
        store
            .update("web", move |n| {
                n.endpoints.insert(e.name.clone(), e);
                Ok(())
            })
            .unwrap();
    };
    add("api", WEB);
    assert_eq!(r.lookup("API."), [WEB]);
    assert_eq!(r.lookup("api.web"), [WEB]);
    assert_eq!(r.reverse(WEB).as_deref(), Some("api"));
    add("db", DB);
    assert_eq!(r.lookup("db"), [DB]);
    assert_eq!(r.lookup("svc").len(), 2);
    assert_eq!(r.reverse(DB).as_deref(), Some("db"));
    std::fs::remove_file(&path).unwrap();
    assert!(r.lookup("db").is_empty());
    // Served from the file.
    std::fs::write(&path, serde_json::to_vec(&store_net(&n, DB)).unwrap()).unwrap();
    let s = DnsServer::start("127.0.0.1:0".parse().unwrap(), Arc::new(r), Vec::new()).unwrap();
    assert_eq!(
        a_records(&ask(s.local_addr(), 1, "x", RecordType::A)),
        [(DB, 600)]
    );
}

/// Network `n` with one container `x` at `ip`.
fn store_net(n: &crate::net::store::Network, ip: Ipv4Addr) -> crate::net::store::Network {
    let mut n = n.clone();
    n.endpoints.insert("x".into(), endpoint("x", ip, &[]));
    n
}

/// Container `name` at `ip`, as the store's record has it.
fn endpoint(name: &str, ip: Ipv4Addr, aliases: &[&str]) -> crate::net::store::Endpoint {
    serde_json::from_value(serde_json::json!({
        "container": format!("{name:0>64}"),
        "name": name,
        "aliases": aliases,
        "ip": ip,
        "mac": "",
        "host_veth": "",
    }))
    .unwrap()
}

#[test]
fn nameservers_of_a_resolv_conf() {
    let conf = "# generated\nsearch example.com\nnameserver 10.0.0.1\nnameserver  2001:db8::1 \n\
                nameserver fe80::1%eth0\nnameserver bogus\nnameserver\n;nameserver 1.1.1.1\n\
                options ndots:2\n\tnameserver 9.9.9.9\n";
    assert_eq!(
        upstream_servers(conf),
        [
            "10.0.0.1:53".parse::<SocketAddr>().unwrap(),
            "[2001:db8::1]:53".parse().unwrap(),
            "9.9.9.9:53".parse().unwrap(),
        ]
    );
    assert!(upstream_servers("").is_empty());
}

#[test]
fn forwards_beyond_the_cap_are_dropped_and_local_names_still_answered() {
    let (silent, _) = upstream(Up::Silent);
    let s = server(vec![silent]);
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    let extra = 20;
    for id in 0..(MAX_FORWARDS + extra) as u16 {
        c.send_to(&query(id, "example.org", RecordType::A), s.local_addr())
            .unwrap();
    }
    // While the upstream keeps them all waiting, a container's name is answered at once.
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    assert_eq!(
        a_records(&ask(s.local_addr(), 9999, "web", RecordType::A)),
        [(WEB, 600)]
    );
    assert!(t.elapsed() < Duration::from_secs(1));
    c.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let deadline = Instant::now() + UPSTREAM_TIMEOUT + Duration::from_secs(3);
    let mut failed = 0;
    let mut buf = vec![0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(n) = c.recv(&mut buf) {
            let r = Message::from_vec(&buf[..n]).unwrap();
            assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
            failed += 1;
        }
    }
    assert_eq!(failed, MAX_FORWARDS);
}
