//! The firewall: two nftables tables per network, `ip hoist-<id>` and `netdev hoist-<id>`,
//! owned by hoist. The tables are made whole from the network's record (one atomic `nft`
//! transaction: the tables deleted and made again) when their shape changes: the first start on
//! a network, and after a crash (the record keeps the digest of what was applied). Removing the
//! tables removes every rule of the network; netavark keeps its rules the same way. A start or
//! stop touches only its own endpoint, and only by adding rules: every removal from an nftables
//! table waits for an RCU grace period (~14 ms on the CI machine, against ~2 ms for an
//! addition), which rebuilding the tables on each start and stop would pay twice. A start
//! appends its DNAT rules to `ports`; a stop retires them by inserting a `return` for the same
//! address and port before them. The retired rules (the record lists them) go when `ports` is
//! made again (flushed and filled from the record in one transaction): when a start publishes a
//! port that was retired, or once [`RETIRED_MAX`] have gathered.
//!
//! - `prerouting`/`output` (nat): traffic for a local address jumps to `ports`, where each
//!   published port is a DNAT to its container's address. The `output` hook covers the host's
//!   own connections, 127.0.0.1 included: the bridges have `route_localnet` set, and
//!   `postrouting` masquerades loopback sources leaving through a bridge so the replies return.
//! - `postrouting` (nat): masquerade of what leaves a network that is not internal, and of a
//!   container's connection to a published port of its own network through the host (hairpin),
//!   so that the answer comes back through the host to be translated.
//! - `forward` (filter): an internal network reaches nothing beyond its bridge; networks do not
//!   reach each other's bridges (docker's isolation).
//! - The fast path (netdev): traffic between two containers of the network skips the bridge.
//!   Each endpoint's host veth has an ingress chain (`ep-<veth>`) that jumps to `peers`, where
//!   each endpoint's address is forwarded (`fwd`) straight to its host veth, so the packet goes
//!   from one veth to the other as on a bare veth pair. Through the bridge, every packet also
//!   passes the IP hooks (`br_netfilter`, which docker needs and this kernel has on), about 10%
//!   of the throughput between two containers. A start inserts its address at the head of
//!   `peers` (so a reused address reaches its new owner); a stop leaves its rule and chain (the
//!   record lists them as stale) until the tables are made again, once [`RETIRED_MAX`] have
//!   gathered or when a start's veth has a stale chain (a container started again). Traffic to
//!   any other address (the gateway, published ports, the outside, broadcasts, ARP) takes the
//!   bridge as before.

use std::borrow::Cow;
use std::collections::HashSet;

use ipnet::Ipv4Net;
use nftables::batch::Batch;
use nftables::expr::{
    CT, Expression, Fib, FibFlag, FibResult, Meta, MetaKey, NamedExpression, Payload, PayloadField,
    Prefix,
};
use nftables::schema::{Chain, FlushObject, NfCmd, NfListObject, Nftables, Rule, Table};
use nftables::stmt::{FWD, JumpTarget, Match, NAT, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use super::store::{Endpoint, Network};
use super::{NetError, PortMapping};

/// The bridges of hoist's networks, for isolation: the default `hoistN`s and the `hbr-`s.
const BRIDGES: [&str; 2] = ["hoist*", "hbr-*"];

/// The table of network `n`.
pub fn table_name(n: &Network) -> String {
    format!("hoist-{}", &n.id[..n.id.len().min(12)])
}

fn s(v: impl Into<String>) -> Expression<'static> {
    Expression::String(Cow::Owned(v.into()))
}

fn is(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match {
        left,
        right,
        op: Operator::EQ,
    })
}

fn is_not(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match {
        left,
        right,
        op: Operator::NEQ,
    })
}

fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

fn field(protocol: &'static str, name: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: Cow::Borrowed(protocol),
            field: Cow::Borrowed(name),
        },
    )))
}

fn prefix(net: &Ipv4Net) -> Expression<'static> {
    Expression::Named(NamedExpression::Prefix(Prefix {
        addr: Box::new(s(net.network().to_string())),
        len: u32::from(net.prefix_len()),
    }))
}

fn local_daddr() -> Statement<'static> {
    is(
        Expression::Named(NamedExpression::Fib(Fib {
            result: FibResult::Type,
            flags: HashSet::from([FibFlag::Daddr]),
        })),
        s("local"),
    )
}

fn chain(
    table: &str,
    name: &'static str,
    base: Option<(NfChainType, NfHook, i32)>,
) -> NfListObject<'static> {
    NfListObject::Chain(Chain {
        family: NfFamily::IP,
        table: Cow::Owned(table.to_owned()),
        name: Cow::Borrowed(name),
        _type: base.map(|b| b.0),
        hook: base.map(|b| b.1),
        prio: base.map(|b| b.2),
        policy: base.map(|_| NfChainPolicy::Accept),
        ..Chain::default()
    })
}

fn rule(
    table: &str,
    chain: &'static str,
    expr: Vec<Statement<'static>>,
    comment: Option<String>,
) -> NfListObject<'static> {
    rule_in(NfFamily::IP, table, Cow::Borrowed(chain), expr, comment)
}

fn rule_in(
    family: NfFamily,
    table: &str,
    chain: Cow<'static, str>,
    expr: Vec<Statement<'static>>,
    comment: Option<String>,
) -> NfListObject<'static> {
    NfListObject::Rule(Rule {
        family,
        table: Cow::Owned(table.to_owned()),
        chain,
        expr: Cow::Owned(expr),
        handle: None,
        index: None,
        comment: comment.map(Cow::Owned),
    })
}

fn table_in(family: NfFamily, name: &str) -> NfListObject<'static> {
    NfListObject::Table(Table {
        family,
        name: Cow::Owned(name.to_owned()),
        handle: None,
    })
}

/// The chain of the fast path that hooks the ingress of host veth `veth`.
fn fast_chain_name(veth: &str) -> String {
    format!("ep-{veth}")
}

/// The fast path of endpoint `e` in table `t` (netdev): a chain on the ingress of its host veth
/// that jumps to `peers`, and, at the head of `peers`, its address forwarded to that veth
/// (the newest rule for an address first, so a reused address reaches its new owner).
fn fast_path_rules(b: &mut Batch<'static>, t: &str, e: &Endpoint) {
    b.add(NfListObject::Chain(Chain {
        family: NfFamily::NetDev,
        table: Cow::Owned(t.to_owned()),
        name: Cow::Owned(fast_chain_name(&e.host_veth)),
        _type: Some(NfChainType::Filter),
        hook: Some(NfHook::Ingress),
        prio: Some(0),
        dev: Some(Cow::Owned(e.host_veth.clone())),
        policy: Some(NfChainPolicy::Accept),
        ..Chain::default()
    }));
    b.add(rule_in(
        NfFamily::NetDev,
        t,
        Cow::Owned(fast_chain_name(&e.host_veth)),
        vec![Statement::Jump(JumpTarget {
            target: Cow::Borrowed(PEERS),
        })],
        None,
    ));
    b.add_cmd(NfCmd::Insert(rule_in(
        NfFamily::NetDev,
        t,
        Cow::Borrowed(PEERS),
        vec![
            is(field("ip", "daddr"), s(e.ip.to_string())),
            Statement::Counter(nftables::stmt::Counter::Anonymous(None)),
            Statement::FWD(Some(FWD {
                dev: Some(s(e.host_veth.clone())),
                family: None,
                addr: None,
            })),
        ],
        Some(format!("container {}", e.name)),
    )));
}

/// How many retired rules a table keeps before a stop makes its `ports` again.
pub const RETIRED_MAX: usize = 32;

/// The match of published port `p`: `[ip daddr HOST_IP] PROTO dport HOST_PORT`.
fn port_match(p: &PortMapping) -> Vec<Statement<'static>> {
    let mut expr = Vec::new();
    if let Some(ip) = p.host_ip {
        expr.push(is(field("ip", "daddr"), s(ip.to_string())));
    }
    let proto: &'static str = if p.protocol == "udp" { "udp" } else { "tcp" };
    expr.push(is(
        field(proto, "dport"),
        Expression::Number(u32::from(p.host_port)),
    ));
    expr
}

/// Appends the DNAT rules of `e`'s published ports to the `ports` chain of table `t`, in `b`.
fn port_rules(b: &mut Batch<'static>, t: &str, e: &Endpoint) {
    for p in &e.ports {
        let mut expr = port_match(p);
        expr.push(Statement::DNAT(Some(NAT {
            addr: Some(s(e.ip.to_string())),
            family: None,
            port: Some(Expression::Number(u32::from(p.container_port))),
            flags: None,
        })));
        b.add(rule(
            t,
            "ports",
            expr,
            Some(format!("container {}", e.name)),
        ));
    }
}

/// The chain of the fast path's table that every endpoint's ingress chain jumps to.
const PEERS: &str = "peers";

/// The tables of network `n` without their published ports and endpoints: what [`digest`]
/// covers.
fn base(n: &Network) -> Batch<'static> {
    let t = table_name(n);
    let t = t.as_str();
    let mut b = Batch::new();
    // Adding first makes the delete succeed when there is no table yet.
    for family in [NfFamily::IP, NfFamily::NetDev] {
        b.add(table_in(family, t));
        b.delete(table_in(family, t));
        b.add(table_in(family, t));
    }
    b.add(NfListObject::Chain(Chain {
        family: NfFamily::NetDev,
        table: Cow::Owned(t.to_owned()),
        name: Cow::Borrowed(PEERS),
        ..Chain::default()
    }));
    b.add(chain(
        t,
        "prerouting",
        Some((NfChainType::NAT, NfHook::Prerouting, -100)),
    ));
    b.add(chain(
        t,
        "output",
        Some((NfChainType::NAT, NfHook::Output, -100)),
    ));
    b.add(chain(
        t,
        "postrouting",
        Some((NfChainType::NAT, NfHook::Postrouting, 100)),
    ));
    b.add(chain(
        t,
        "forward",
        Some((NfChainType::Filter, NfHook::Forward, 0)),
    ));
    b.add(chain(t, "ports", None));
    let jump = || {
        Statement::Jump(JumpTarget {
            target: Cow::Borrowed("ports"),
        })
    };
    b.add(rule(t, "prerouting", vec![local_daddr(), jump()], None));
    b.add(rule(t, "output", vec![local_daddr(), jump()], None));
    let br = || s(n.bridge.clone());
    if n.internal {
        for (a, z) in [
            (MetaKey::Iifname, MetaKey::Oifname),
            (MetaKey::Oifname, MetaKey::Iifname),
        ] {
            b.add(rule(
                t,
                "forward",
                vec![
                    is(meta(a), br()),
                    is_not(meta(z), br()),
                    Statement::Drop(None),
                ],
                Some("internal network".into()),
            ));
        }
    } else {
        b.add(rule(
            t,
            "postrouting",
            // From the bridge, not only from the subnet: with `br_netfilter` loaded, traffic
            // bridged between two containers of another bridge passes here too, and another
            // home's network may have the same subnet.
            vec![
                is(meta(MetaKey::Iifname), br()),
                is(field("ip", "saddr"), prefix(&n.subnet)),
                is_not(meta(MetaKey::Oifname), br()),
                Statement::Masquerade(None),
            ],
            None,
        ));
    }
    for other in BRIDGES {
        b.add(rule(
            t,
            "forward",
            vec![
                is(meta(MetaKey::Iifname), br()),
                is_not(meta(MetaKey::Oifname), br()),
                is(meta(MetaKey::Oifname), s(other)),
                Statement::Drop(None),
            ],
            Some("isolation from other networks".into()),
        ));
    }
    b.add(rule(
        t,
        "postrouting",
        vec![
            is(meta(MetaKey::Oifname), br()),
            is(
                field("ip", "saddr"),
                prefix(&"127.0.0.0/8".parse().expect("cidr")),
            ),
            Statement::Masquerade(None),
        ],
        Some("published ports on 127.0.0.1".into()),
    ));
    // A container reaching a published port of its own network through the host (hairpin):
    // the answer must come back through the host, to be translated back, not straight from the
    // other container (the fast path would carry it there). No `iifname`: `br_netfilter`
    // bridges such a connection once translated, and a bridged packet has no input device here.
    b.add(rule(
        t,
        "postrouting",
        vec![
            is(field("ip", "saddr"), prefix(&n.subnet)),
            is(meta(MetaKey::Oifname), br()),
            // `in`: the flag is among the status bits (`==` would compare them all).
            Statement::Match(Match {
                left: Expression::Named(NamedExpression::CT(CT {
                    key: Cow::Borrowed("status"),
                    family: None,
                    dir: None,
                })),
                right: s("dnat"),
                op: Operator::IN,
            }),
            Statement::Masquerade(None),
        ],
        Some("hairpin".into()),
    ));
    b
}

/// The whole tables of network `n`: one transaction that makes them again from nothing, with
/// the published ports of every endpoint in its record, and the fast path of those whose host
/// veth `present` says is there.
pub fn ruleset(n: &Network, present: impl Fn(&Endpoint) -> bool) -> Nftables<'static> {
    let mut b = base(n);
    let t = table_name(n);
    for e in n.endpoints.values() {
        port_rules(&mut b, &t, e);
        if present(e) {
            fast_path_rules(&mut b, &t, e);
        }
    }
    b.to_nftables()
}

fn nft_error(what: &str) -> impl FnOnce(nftables::helper::NftablesError) -> NetError + '_ {
    move |e| NetError::Firewall(format!("{what}: {e}"))
}

/// The digest of `n`'s table as [`apply`] would make it, its published ports aside (those
/// change by [`publish`], [`retire`] and [`republish`]).
pub fn digest(n: &Network) -> String {
    let json = serde_json::to_vec(&base(n).to_nftables()).expect("a ruleset encodes");
    hoist_oci::Digest::sha256_of(&json).to_string()
}

/// Adds endpoint `e` to the tables of `n`: its published ports and its fast path.
pub fn publish(n: &Network, e: &Endpoint) -> Result<(), NetError> {
    let mut b = Batch::new();
    port_rules(&mut b, &table_name(n), e);
    fast_path_rules(&mut b, &table_name(n), e);
    nftables::helper::apply_ruleset(&b.to_nftables()).map_err(nft_error("publishing the ports"))
}

/// Retires the published ports of endpoint `e` (gone from `n`): a `return` for each, inserted
/// at the head of `ports`, so its DNAT rules no longer match.
pub fn retire(n: &Network, e: &Endpoint) -> Result<(), NetError> {
    if e.ports.is_empty() {
        return Ok(());
    }
    let t = table_name(n);
    let mut b = Batch::new();
    for p in &e.ports {
        let mut expr = port_match(p);
        expr.push(Statement::Return(None));
        b.add_cmd(NfCmd::Insert(rule(
            &t,
            "ports",
            expr,
            Some(format!("retired {}", e.name)),
        )));
    }
    nftables::helper::apply_ruleset(&b.to_nftables())
        .map_err(nft_error("removing the published ports"))
}

/// Makes `ports` of `n`'s table the published ports of its record, retired rules gone (flushed
/// and filled again, in one transaction).
pub fn republish(n: &Network) -> Result<(), NetError> {
    let t = table_name(n);
    let mut b = Batch::new();
    b.add_cmd(NfCmd::Flush(FlushObject::Chain(Chain {
        family: NfFamily::IP,
        table: Cow::Owned(t.clone()),
        name: Cow::Borrowed("ports"),
        ..Chain::default()
    })));
    for e in n.endpoints.values() {
        port_rules(&mut b, &t, e);
    }
    nftables::helper::apply_ruleset(&b.to_nftables())
        .map_err(nft_error("making the published ports again"))
}

/// Makes the tables of `n` match its record (the fast path of the endpoints whose host veth
/// is there: `nft` names a device by its index, so it must exist).
pub fn apply(n: &Network) -> Result<(), NetError> {
    let present = |e: &Endpoint| super::link::exists(&e.host_veth).unwrap_or(false);
    nftables::helper::apply_ruleset(&ruleset(n, present))
        .map_err(nft_error("applying the firewall rules"))
}

/// Removes the tables of `n` (missing: nothing to do).
pub fn remove(n: &Network) -> Result<(), NetError> {
    remove_table(&table_name(n))
}

/// Removes the tables named `t`, ip and netdev (missing: nothing to do).
pub fn remove_table(t: &str) -> Result<(), NetError> {
    let mut b = Batch::new();
    for family in [NfFamily::IP, NfFamily::NetDev] {
        b.add(table_in(family, t));
        b.delete(table_in(family, t));
    }
    nftables::helper::apply_ruleset(&b.to_nftables())
        .map_err(nft_error("removing the firewall rules"))
}
