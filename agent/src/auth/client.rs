//! Who is really connecting (behind trusted proxies), and how often they may try.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use http::HeaderMap;
use ipnet::IpNet;

/// The client's address: the TCP peer, or, when the peer is a trusted proxy, the nearest
/// untrusted address in `X-Forwarded-For` (reading right to left, as proxies append).
pub struct ClientAddress {
    trusted: Vec<IpNet>,
}

impl ClientAddress {
    pub fn new(trusted: &[String]) -> Self {
        let trusted = trusted
            .iter()
            .filter_map(|p| {
                p.parse::<IpNet>()
                    .ok()
                    .or_else(|| p.parse::<IpAddr>().ok().map(IpNet::from))
            })
            .collect();
        Self { trusted }
    }

    pub fn of(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.is_trusted(peer) {
            return peer;
        }
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        for entry in forwarded.iter().rev() {
            match entry.parse::<IpAddr>() {
                Ok(ip) if self.is_trusted(ip) => continue,
                Ok(ip) => return ip,
                // A malformed entry: nothing to its left can be trusted.
                Err(_) => return peer,
            }
        }
        peer
    }

    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.trusted.iter().any(|net| net.contains(&ip))
    }
}

/// Handshakes per client address per minute (a token bucket that allows the whole minute's
/// quota as a burst).
pub struct HandshakeLimiter {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
}

impl HandshakeLimiter {
    pub fn new(per_minute: u32) -> Option<Self> {
        let per_minute = NonZeroU32::new(per_minute)?;
        Some(Self {
            limiter: DefaultKeyedRateLimiter::keyed(Quota::per_minute(per_minute)),
        })
    }

    /// `Err` with the time until the next handshake is allowed.
    pub fn check(&self, client: IpAddr) -> Result<(), Duration> {
        self.limiter
            .check_key(&client)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Forgets clients that are back to a full quota, so memory follows the active clients.
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", xff.parse().expect("header"));
        h
    }

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let addresses = ClientAddress::new(&["10.0.0.0/8".into()]);
        let proxy: IpAddr = "10.1.2.3".parse().expect("ip");
        let stranger: IpAddr = "203.0.113.9".parse().expect("ip");
        assert_eq!(
            addresses.of(proxy, &headers("198.51.100.7")),
            "198.51.100.7".parse::<IpAddr>().expect("ip")
        );
        assert_eq!(
            addresses.of(stranger, &headers("198.51.100.7")),
            stranger,
            "spoofed header ignored"
        );
    }

    #[test]
    fn the_nearest_untrusted_hop_is_the_client() {
        let addresses = ClientAddress::new(&["10.0.0.0/8".into(), "192.168.1.1".into()]);
        let proxy: IpAddr = "10.0.0.5".parse().expect("ip");
        let chain = headers("1.1.1.1, 198.51.100.7, 192.168.1.1");
        assert_eq!(
            addresses.of(proxy, &chain),
            "198.51.100.7".parse::<IpAddr>().expect("ip")
        );
        assert_eq!(addresses.of(proxy, &headers("garbage, 10.0.0.9")), proxy);
        assert_eq!(addresses.of(proxy, &HeaderMap::new()), proxy);
    }

    #[test]
    fn the_limiter_allows_the_quota_then_refuses() {
        let limiter = HandshakeLimiter::new(3).expect("limiter");
        let ip: IpAddr = "198.51.100.1".parse().expect("ip");
        let other: IpAddr = "198.51.100.2".parse().expect("ip");
        for _ in 0..3 {
            assert!(limiter.check(ip).is_ok());
        }
        let wait = limiter.check(ip).expect_err("over quota");
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(20));
        assert!(limiter.check(other).is_ok(), "limits are per client");
        assert!(HandshakeLimiter::new(0).is_none());
    }
}
