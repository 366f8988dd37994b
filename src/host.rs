//! Facts about this process and machine that Hydra publishes: host name,
//! process ID, architecture and platform in Node's spelling, resident memory,
//! the service IP and a free service port.

use std::net::{IpAddr, Ipv4Addr, TcpListener, ToSocketAddrs};

use crate::config::PortSpec;
use crate::error::{Error, Result};

/// `os.hostname()`.
pub(crate) fn hostname() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// `process.arch` spelling.
pub(crate) fn architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "x64",
        "x86" => "ia32",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64",
        other => other,
    }
}

/// `process.platform` spelling.
pub(crate) fn platform() -> &'static str {
    match std::env::consts::OS {
        "macos" => "darwin",
        "windows" => "win32",
        other => other,
    }
}

/// Resident set size in bytes (Linux `/proc/self/status`); 0 where unknown.
pub(crate) fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// The address published for this instance (spec §11.1): `serviceDNS` wins;
/// `""` → first non-loopback IPv4 (127.0.0.1 when there is none); a prefix
/// pattern `"10.0.*"` → the first IPv4 starting with `10.0.`; an IP → itself;
/// anything else is a host name, resolved to its first IPv4.
pub(crate) fn resolve_service_ip(service_ip: &str, service_dns: &str) -> Result<String> {
    if !service_dns.trim().is_empty() {
        return Ok(service_dns.trim().to_string());
    }
    let wanted = service_ip.trim();
    if wanted.is_empty() {
        return Ok(local_ipv4s()
            .into_iter()
            .find(|ip| !ip.is_loopback())
            .unwrap_or(Ipv4Addr::LOCALHOST)
            .to_string());
    }
    if let Some(prefix) = wanted.strip_suffix('*') {
        return local_ipv4s()
            .into_iter()
            .map(|ip| ip.to_string())
            .find(|ip| ip.starts_with(prefix))
            .ok_or_else(|| Error::invalid_config("serviceIP", format!("no local IPv4 address matches {wanted:?}")));
    }
    if wanted.parse::<IpAddr>().is_ok() {
        return Ok(wanted.to_string());
    }
    (wanted, 0)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.find(|a| a.is_ipv4()))
        .map(|a| a.ip().to_string())
        .ok_or_else(|| Error::invalid_config("serviceIP", format!("cannot resolve host name {wanted:?}")))
}

fn local_ipv4s() -> Vec<Ipv4Addr> {
    if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|iface| match iface.ip() {
            IpAddr::V4(ip) => Some(ip),
            IpAddr::V6(_) => None,
        })
        .collect()
}

/// Picks the service port. A fixed port is used as is (the application
/// listens on it); `Random` and ranges pick a port that is free right now.
pub(crate) fn choose_port(spec: &PortSpec) -> Result<u16> {
    match spec {
        PortSpec::Fixed(port) => Ok(*port),
        PortSpec::Random => TcpListener::bind("0.0.0.0:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| Error::invalid_config("servicePort", format!("no free port: {e}"))),
        PortSpec::Ranges(ranges) => {
            let size: u32 = ranges.iter().map(|(lo, hi)| u32::from(*hi - *lo) + 1).sum();
            // Random probes first (spreads instances as Node does), then every port.
            let nth = |mut n: u32| -> u16 {
                for (lo, hi) in ranges {
                    let len = u32::from(*hi - *lo) + 1;
                    if n < len {
                        return *lo + n as u16;
                    }
                    n -= len;
                }
                unreachable!("index within the total size of the ranges")
            };
            let random = (0..32.min(size)).map(|_| fastrand::u32(0..size));
            random
                .chain(0..size)
                .map(nth)
                .find(|port| TcpListener::bind(("0.0.0.0", *port)).is_ok())
                .ok_or_else(|| Error::invalid_config("servicePort", "no free port in the configured ranges"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_ip_forms() {
        assert_eq!(resolve_service_ip("10.1.2.3", "").unwrap(), "10.1.2.3");
        assert_eq!(resolve_service_ip("10.1.2.3", "svc.internal").unwrap(), "svc.internal");
        assert_eq!(resolve_service_ip("localhost", "").unwrap(), "127.0.0.1");
        assert_eq!(resolve_service_ip("127.*", "").unwrap(), "127.0.0.1");
        let auto = resolve_service_ip("", "").unwrap();
        assert!(auto.parse::<Ipv4Addr>().is_ok(), "{auto}");
        assert!(resolve_service_ip("203.0.113.*", "").is_err());
    }

    #[test]
    fn ports_come_from_the_spec() {
        assert_eq!(choose_port(&PortSpec::Fixed(8080)).unwrap(), 8080);
        assert!(choose_port(&PortSpec::Random).unwrap() > 0);
        let p = choose_port(&PortSpec::Ranges(vec![(41000, 41010), (42000, 42000)])).unwrap();
        assert!((41000..=41010).contains(&p) || p == 42000, "{p}");
    }

    #[test]
    fn process_facts() {
        assert!(rss_bytes() > 0);
        assert!(!hostname().is_empty());
        assert_eq!(
            architecture(),
            if cfg!(target_arch = "x86_64") {
                "x64"
            } else {
                architecture()
            }
        );
    }
}
