//! Addresses of a network: subnets picked from docker's default pools where none is given, and
//! container addresses given out in order (the next after the last one given, as docker's
//! allocator does, so a freed address is not handed out again at once).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::NetError;

/// docker's default address pools (`daemon/config` `DefaultAddressPools`): 172.17-31.0.0/16,
/// then 192.168.0.0/16 in /20s.
pub fn default_pools() -> impl Iterator<Item = Ipv4Net> {
    let b16 = (17u8..=31).map(|b| Ipv4Net::new(Ipv4Addr::new(172, b, 0, 0), 16).expect("prefix"));
    let c20 =
        (0u8..16).map(|i| Ipv4Net::new(Ipv4Addr::new(192, 168, i * 16, 0), 20).expect("prefix"));
    b16.chain(c20)
}

/// `--subnet`: an IPv4 CIDR whose host bits are zero.
pub fn parse_subnet(s: &str) -> Result<Ipv4Net, NetError> {
    let net: Ipv4Net = s.parse().map_err(|_| {
        NetError::Invalid(format!(
            "invalid subnet {s:?}: expected an IPv4 CIDR such as 10.1.0.0/24"
        ))
    })?;
    if net.network() != net.addr() {
        return Err(NetError::Invalid(format!(
            "invalid subnet {s:?}: host bits are set (did you mean {}?)",
            net.trunc()
        )));
    }
    if net.prefix_len() > 30 {
        return Err(NetError::Invalid(format!(
            "invalid subnet {s:?}: a /{} has no room for a gateway and a container",
            net.prefix_len()
        )));
    }
    Ok(net)
}

/// The first free pool: one overlapping none of `taken` (other networks, the host's routes).
pub fn pick_subnet(taken: &[Ipv4Net]) -> Option<Ipv4Net> {
    default_pools().find(|p| !taken.iter().any(|t| overlaps(p, t)))
}

pub fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The gateway of `subnet` when none is given: its first host address.
pub fn default_gateway(subnet: &Ipv4Net) -> Ipv4Addr {
    subnet.hosts().next().expect("a /30 or larger has hosts")
}

/// `--gateway`: inside the subnet, not its network or broadcast address.
pub fn check_gateway(subnet: &Ipv4Net, gw: Ipv4Addr) -> Result<(), NetError> {
    if !subnet.contains(&gw) || gw == subnet.network() || gw == subnet.broadcast() {
        return Err(NetError::Invalid(format!(
            "invalid gateway {gw}: not a host address of subnet {subnet}"
        )));
    }
    Ok(())
}

/// The next free host address of `subnet` after `last` (wrapping round), none of `used` and
/// not the gateway.
pub fn allocate(
    subnet: &Ipv4Net,
    gateway: Ipv4Addr,
    used: &BTreeSet<Ipv4Addr>,
    last: Option<Ipv4Addr>,
) -> Option<Ipv4Addr> {
    let first = u32::from(subnet.network()) + 1;
    let end = u32::from(subnet.broadcast()); // exclusive
    let n = end.checked_sub(first)?;
    let start = match last {
        Some(l) if subnet.contains(&l) => u32::from(l) + 1 - first,
        _ => 0,
    };
    (0..n)
        .map(|i| Ipv4Addr::from(first + (start + i) % n))
        .find(|ip| *ip != gateway && !used.contains(ip))
}

/// `--ip`: a host address of `subnet`, not the gateway, not in use.
pub fn check_requested(
    subnet: &Ipv4Net,
    gateway: Ipv4Addr,
    used: &BTreeSet<Ipv4Addr>,
    ip: Ipv4Addr,
) -> Result<(), NetError> {
    if !subnet.contains(&ip) || ip == subnet.network() || ip == subnet.broadcast() {
        return Err(NetError::Invalid(format!(
            "invalid address {ip}: not a host address of subnet {subnet}"
        )));
    }
    if ip == gateway || used.contains(&ip) {
        return Err(NetError::Conflict(format!(
            "address {ip} is already in use"
        )));
    }
    Ok(())
}

/// The host's IPv4 routes (`/proc/net/route`): destinations a new subnet must not overlap.
/// The default route is left out.
pub fn host_routes() -> Vec<Ipv4Net> {
    let Ok(text) = std::fs::read_to_string("/proc/net/route") else {
        return Vec::new();
    };
    parse_proc_routes(&text)
}

fn parse_proc_routes(text: &str) -> Vec<Ipv4Net> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let dest = u32::from_str_radix(f.get(1)?, 16).ok()?;
            let mask = u32::from_str_radix(f.get(7)?, 16).ok()?;
            // The kernel prints the address's bytes as a native-endian number.
            let dest = Ipv4Addr::from(dest.to_ne_bytes());
            let prefix = mask.count_ones() as u8;
            (prefix > 0)
                .then(|| Ipv4Net::new(dest, prefix).ok())
                .flatten()
        })
        .collect()
}

/// A MAC address for `ip`, as docker derives one: `02:42` then the address's four bytes.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

pub fn mac_string(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn subnets_must_be_cidrs_with_room() {
        assert_eq!(parse_subnet("10.1.0.0/24").unwrap(), net("10.1.0.0/24"));
        let e = parse_subnet("10.1.0.5/24").unwrap_err().to_string();
        assert!(
            e.contains("host bits are set (did you mean 10.1.0.0/24?)"),
            "{e}"
        );
        assert!(parse_subnet("10.1.0.0/31").is_err());
        assert!(parse_subnet("fe80::/64").is_err());
        assert!(parse_subnet("nonsense").is_err());
    }

    #[test]
    fn the_first_free_pool_is_picked() {
        assert_eq!(pick_subnet(&[]), Some(net("172.17.0.0/16")));
        let taken = [net("172.17.0.0/16"), net("172.18.5.0/24")];
        assert_eq!(pick_subnet(&taken), Some(net("172.19.0.0/16")));
        // A route covering the pools pushes the pick to 192.168.
        assert_eq!(
            pick_subnet(&[net("172.16.0.0/12")]),
            Some(net("192.168.0.0/20"))
        );
    }

    #[test]
    fn addresses_go_out_in_order_and_wrap() {
        let s = net("10.0.0.0/29"); // hosts .1-.6
        let gw = default_gateway(&s);
        assert_eq!(gw, Ipv4Addr::new(10, 0, 0, 1));
        let mut used = BTreeSet::new();
        let mut last = None;
        let mut got = Vec::new();
        while let Some(ip) = allocate(&s, gw, &used, last) {
            used.insert(ip);
            last = Some(ip);
            got.push(ip.octets()[3]);
        }
        assert_eq!(got, [2, 3, 4, 5, 6]);
        // A freed address is not the next one given while others are free.
        used.remove(&Ipv4Addr::new(10, 0, 0, 3));
        used.remove(&Ipv4Addr::new(10, 0, 0, 6));
        assert_eq!(
            allocate(&s, gw, &used, Some(Ipv4Addr::new(10, 0, 0, 4))),
            Some(Ipv4Addr::new(10, 0, 0, 6))
        );
        assert_eq!(
            allocate(&s, gw, &used, Some(Ipv4Addr::new(10, 0, 0, 6))),
            Some(Ipv4Addr::new(10, 0, 0, 3))
        );
    }

    #[test]
    fn requested_addresses_are_checked() {
        let s = net("10.0.0.0/24");
        let gw = Ipv4Addr::new(10, 0, 0, 1);
        let used = BTreeSet::from([Ipv4Addr::new(10, 0, 0, 9)]);
        check_requested(&s, gw, &used, Ipv4Addr::new(10, 0, 0, 8)).unwrap();
        for ip in [[10, 0, 0, 9], [10, 0, 0, 1]] {
            let e = check_requested(&s, gw, &used, ip.into()).unwrap_err();
            assert!(matches!(e, NetError::Conflict(_)), "{e}");
        }
        for ip in [[10, 0, 1, 8], [10, 0, 0, 0], [10, 0, 0, 255]] {
            let e = check_requested(&s, gw, &used, ip.into()).unwrap_err();
            assert!(matches!(e, NetError::Invalid(_)), "{e}");
        }
        assert!(check_gateway(&s, Ipv4Addr::new(10, 0, 0, 254)).is_ok());
        assert!(check_gateway(&s, Ipv4Addr::new(10, 0, 1, 1)).is_err());
    }

    #[test]
    fn proc_routes_read_in_the_kernel_byte_order() {
        let text = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        assert_eq!(parse_proc_routes(text), [net("192.0.2.0/24")]);
    }

    #[test]
    fn macs_are_docker_s() {
        assert_eq!(
            mac_string(&mac_for(Ipv4Addr::new(172, 17, 0, 2))),
            "02:42:ac:11:00:02"
        );
    }
}
