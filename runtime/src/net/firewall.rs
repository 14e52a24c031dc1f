//! The firewall: one nftables table, `ip hoist`, owned by hoist and rebuilt whole from the
//! network records on every change (one atomic `nft` transaction: the table flushed and filled
//! again), so what a crash left behind is gone at the next change, and removing the table
//! removes every rule hoist made. netavark keeps its rules the same way.
//!
//! - `prerouting`/`output` (nat): traffic for a local address jumps to `ports`, where each
//!   published port is a DNAT to its container's address. The `output` hook covers the host's
//!   own connections, 127.0.0.1 included: the bridges have `route_localnet` set, and
//!   `postrouting` masquerades loopback sources leaving through a bridge so the replies return.
//! - `postrouting` (nat): masquerade of what leaves a network that is not internal.
//! - `forward` (filter): an internal network reaches nothing beyond its bridge; networks do not
//!   reach each other (docker's isolation).

use std::borrow::Cow;
use std::collections::HashSet;

use ipnet::Ipv4Net;
use nftables::batch::Batch;
use nftables::expr::{
    Expression, Fib, FibFlag, FibResult, Meta, MetaKey, NamedExpression, Payload, PayloadField,
    Prefix, SetItem,
};
use nftables::schema::{Chain, NfListObject, Nftables, Rule, Table};
use nftables::stmt::{JumpTarget, Match, NAT, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use super::NetError;
use super::store::Network;

pub const TABLE: &str = "hoist";

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

fn set_of(items: &[String]) -> Expression<'static> {
    Expression::Named(NamedExpression::Set(
        items
            .iter()
            .map(|i| SetItem::Element(s(i.clone())))
            .collect(),
    ))
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

fn chain(name: &'static str, base: Option<(NfChainType, NfHook, i32)>) -> NfListObject<'static> {
    NfListObject::Chain(Chain {
        family: NfFamily::IP,
        table: Cow::Borrowed(TABLE),
        name: Cow::Borrowed(name),
        _type: base.map(|b| b.0),
        hook: base.map(|b| b.1),
        prio: base.map(|b| b.2),
        policy: base.map(|_| NfChainPolicy::Accept),
        ..Chain::default()
    })
}

fn rule(
    chain: &'static str,
    expr: Vec<Statement<'static>>,
    comment: Option<String>,
) -> NfListObject<'static> {
    NfListObject::Rule(Rule {
        family: NfFamily::IP,
        table: Cow::Borrowed(TABLE),
        chain: Cow::Borrowed(chain),
        expr: Cow::Owned(expr),
        handle: None,
        index: None,
        comment: comment.map(Cow::Owned),
    })
}

fn table() -> NfListObject<'static> {
    NfListObject::Table(Table {
        family: NfFamily::IP,
        name: Cow::Borrowed(TABLE),
        handle: None,
    })
}

/// The whole table for `networks`: one transaction that creates the table if missing,
/// empties it and fills it again.
pub fn ruleset(networks: &[Network]) -> Nftables<'static> {
    let mut b = Batch::new();
    b.add(table());
    b.delete(table());
    b.add(table());
    b.add(chain(
        "prerouting",
        Some((NfChainType::NAT, NfHook::Prerouting, -100)),
    ));
    b.add(chain(
        "output",
        Some((NfChainType::NAT, NfHook::Output, -100)),
    ));
    b.add(chain(
        "postrouting",
        Some((NfChainType::NAT, NfHook::Postrouting, 100)),
    ));
    b.add(chain(
        "forward",
        Some((NfChainType::Filter, NfHook::Forward, 0)),
    ));
    b.add(chain("ports", None));
    let jump = || {
        Statement::Jump(JumpTarget {
            target: Cow::Borrowed("ports"),
        })
    };
    b.add(rule("prerouting", vec![local_daddr(), jump()], None));
    b.add(rule("output", vec![local_daddr(), jump()], None));
    let bridges: Vec<String> = networks.iter().map(|n| n.bridge.clone()).collect();
    for n in networks {
        let br = || s(n.bridge.clone());
        let others: Vec<String> = bridges
            .iter()
            .filter(|b| **b != n.bridge)
            .cloned()
            .collect();
        if n.internal {
            b.add(rule(
                "forward",
                vec![
                    is(meta(MetaKey::Iifname), br()),
                    is_not(meta(MetaKey::Oifname), br()),
                    Statement::Drop(None),
                ],
                Some(format!("internal network {}", n.name)),
            ));
            b.add(rule(
                "forward",
                vec![
                    is(meta(MetaKey::Oifname), br()),
                    is_not(meta(MetaKey::Iifname), br()),
                    Statement::Drop(None),
                ],
                Some(format!("internal network {}", n.name)),
            ));
        } else {
            b.add(rule(
                "postrouting",
                vec![
                    is(field("ip", "saddr"), prefix(&n.subnet)),
                    is_not(meta(MetaKey::Oifname), br()),
                    Statement::Masquerade(None),
                ],
                Some(format!("network {}", n.name)),
            ));
        }
        if !others.is_empty() {
            b.add(rule(
                "forward",
                vec![
                    is(meta(MetaKey::Iifname), br()),
                    is(meta(MetaKey::Oifname), set_of(&others)),
                    Statement::Drop(None),
                ],
                Some(format!("isolation of network {}", n.name)),
            ));
        }
        b.add(rule(
            "postrouting",
            vec![
                is(meta(MetaKey::Oifname), br()),
                is(
                    field("ip", "saddr"),
                    prefix(&"127.0.0.0/8".parse().expect("cidr")),
                ),
                Statement::Masquerade(None),
            ],
            Some(format!(
                "published ports of network {} on 127.0.0.1",
                n.name
            )),
        ));
        for e in n.endpoints.values() {
            for p in &e.ports {
                let mut expr = Vec::new();
                if let Some(ip) = p.host_ip {
                    expr.push(is(field("ip", "daddr"), s(ip.to_string())));
                }
                let proto: &'static str = if p.protocol == "udp" { "udp" } else { "tcp" };
                expr.push(is(
                    field(proto, "dport"),
                    Expression::Number(u32::from(p.host_port)),
                ));
                expr.push(Statement::DNAT(Some(NAT {
                    addr: Some(s(e.ip.to_string())),
                    family: None,
                    port: Some(Expression::Number(u32::from(p.container_port))),
                    flags: None,
                })));
                b.add(rule("ports", expr, Some(format!("container {}", e.name))));
            }
        }
    }
    b.to_nftables()
}

fn nft_error(what: &str) -> impl FnOnce(nftables::helper::NftablesError) -> NetError + '_ {
    move |e| NetError::Firewall(format!("{what}: {e}"))
}

/// Makes the table match `networks` (none: the table is removed).
pub fn apply(networks: &[Network]) -> Result<(), NetError> {
    if networks.is_empty() {
        return remove();
    }
    nftables::helper::apply_ruleset(&ruleset(networks))
        .map_err(nft_error("applying the firewall rules"))
}

/// Removes hoist's table (missing: nothing to do).
pub fn remove() -> Result<(), NetError> {
    let mut b = Batch::new();
    // Adding first makes the delete succeed when there is no table.
    b.add(table());
    b.delete(table());
    nftables::helper::apply_ruleset(&b.to_nftables())
        .map_err(nft_error("removing the firewall rules"))
}
