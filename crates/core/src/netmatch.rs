//! Networks and the "override authorization client" proxy chains of privacyIDEA (seed 002).
//!
//! A chain `A > B > C` says: a proxy in network A may claim to forward for a host in B, and a
//! proxy in B may claim to forward for a host in C. A chain of one network `A` lets a proxy in A
//! claim any address. The path of a request is the connecting address, then the
//! `X-Forwarded-For` entries from the nearest hop outwards, then the `client` parameter; the
//! client is the furthest address along the path that some chain vouches for.

use ipnet::IpNet;
use std::net::IpAddr;

/// Parses `10.0.0.0/8`, `10.1.2.3` (a single host) or `::1`.
/// The group a client address counts in for budgets and fairness: an IPv4 address itself
/// (IPv4-mapped IPv6 included), an IPv6 address by its /64 (one host is usually given a whole
/// /64, so single addresses would be free for the taking).
pub fn client_group(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from(
            u128::from(v6) & !u128::from(u64::MAX),
        )),
        v4 => v4,
    }
}

pub fn parse_net(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    s.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("'{s}' is not an IP address or network (CIDR)"))
}

/// The parsed proxy chains of the `override_client` setting.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyChains(Vec<Vec<IpNet>>);

impl ProxyChains {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut chains = Vec::new();
        for chain in text.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            let mut nets = Vec::new();
            for part in chain.split('>') {
                nets.push(parse_net(part)?);
            }
            if let [only] = nets[..] {
                // A lone network may map to any client, IPv4 or IPv6.
                let any4 = IpNet::from(IpAddr::from([0u8; 4]));
                let any6 = IpNet::from(IpAddr::from([0u8; 16]));
                chains.push(vec![only, IpNet::new(any4.addr(), 0).unwrap_or(any4)]);
                chains.push(vec![only, IpNet::new(any6.addr(), 0).unwrap_or(any6)]);
                continue;
            }
            chains.push(nets);
        }
        Ok(ProxyChains(chains))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The client of a request whose hops are `path[0]` (the connecting peer), `path[1]`, ….
    pub fn resolve(&self, path: &[IpAddr]) -> Option<IpAddr> {
        let first = *path.first()?;
        let mut best = 0usize;
        for chain in &self.0 {
            let Some(head) = chain.first() else { continue };
            if !head.contains(&first) {
                continue;
            }
            let mut i = 0usize;
            while let (Some(next_hop), Some(next_net)) = (path.get(i + 1), chain.get(i + 1)) {
                if next_net.contains(next_hop) {
                    i += 1;
                } else {
                    break;
                }
            }
            best = best.max(i);
        }
        path.get(best).copied().or(Some(first))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn without_chains_the_peer_is_the_client() {
        let chains = ProxyChains::parse("").unwrap();
        assert_eq!(
            chains.resolve(&[ip("10.0.0.1"), ip("192.168.1.1")]),
            Some(ip("10.0.0.1"))
        );
    }

    #[test]
    fn single_network_may_claim_any_client() {
        let chains = ProxyChains::parse("10.0.0.0/8").unwrap();
        assert_eq!(
            chains.resolve(&[ip("10.0.0.1"), ip("8.8.8.8")]),
            Some(ip("8.8.8.8"))
        );
        assert_eq!(
            chains.resolve(&[ip("10.0.0.1"), ip("2001:db8::1")]),
            Some(ip("2001:db8::1"))
        );
        // A peer outside the network cannot.
        assert_eq!(
            chains.resolve(&[ip("11.0.0.1"), ip("8.8.8.8")]),
            Some(ip("11.0.0.1"))
        );
    }

    #[test]
    fn chain_limits_claimed_clients() {
        let chains = ProxyChains::parse("10.0.0.1 > 192.168.0.0/16").unwrap();
        assert_eq!(
            chains.resolve(&[ip("10.0.0.1"), ip("192.168.3.4")]),
            Some(ip("192.168.3.4"))
        );
        assert_eq!(
            chains.resolve(&[ip("10.0.0.1"), ip("172.16.0.1")]),
            Some(ip("10.0.0.1"))
        );
    }

    #[test]
    fn nested_hops() {
        // A proxy in 10.0.0.0/24 may forward for a proxy in 10.1.2.0/24, which may forward for
        // clients in 192.168.0.0/16.
        let chains = ProxyChains::parse("10.0.0.0/24 > 10.1.2.0/24 > 192.168.0.0/16").unwrap();
        let path = [ip("10.0.0.5"), ip("10.1.2.7"), ip("192.168.9.9")];
        assert_eq!(chains.resolve(&path), Some(ip("192.168.9.9")));
        let path = [ip("10.0.0.5"), ip("10.1.2.7"), ip("8.8.8.8")];
        assert_eq!(chains.resolve(&path), Some(ip("10.1.2.7")));
        let path = [ip("10.0.0.5"), ip("10.9.9.9"), ip("192.168.9.9")];
        assert_eq!(chains.resolve(&path), Some(ip("10.0.0.5")));
    }

    #[test]
    fn bad_networks_are_reported() {
        assert!(ProxyChains::parse("10.0.0.0/33").is_err());
        assert!(ProxyChains::parse("10.0.0.1 > nonsense").is_err());
        assert!(ProxyChains::parse(" 10.0.0.1 , ::1 ").is_ok());
    }
}
