use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network as written in a CIDR (`10.42.0.0/16`), rendered back the same way for nft.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Cidr {
    pub address: Ipv4Addr,
    pub prefix: u8,
}

impl Ipv4Cidr {
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = if self.prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(self.prefix)) };
        u32::from(ip) & mask == u32::from(self.address) & mask
    }
}

impl FromStr for Ipv4Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || format!("invalid IPv4 CIDR {text:?}: expected a.b.c.d/n with n at most 32");
        let (address, prefix) = text.split_once('/').ok_or_else(invalid)?;
        let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32).ok_or_else(invalid)?;
        Ok(Ipv4Cidr { address: address.parse().map_err(|_| invalid())?, prefix })
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_renders_and_contains() {
        let cidr: Ipv4Cidr = "10.42.0.0/16".parse().unwrap();
        assert_eq!(cidr.to_string(), "10.42.0.0/16");
        assert!(cidr.contains("10.42.7.1".parse().unwrap()));
        assert!(!cidr.contains("10.43.0.1".parse().unwrap()));
        assert!("0.0.0.0/0".parse::<Ipv4Cidr>().unwrap().contains("1.2.3.4".parse().unwrap()));
        for bad in ["10.42.0.0", "10.42.0.0/33", "fd00::/64", "x/8"] {
            assert!(bad.parse::<Ipv4Cidr>().is_err(), "{bad}");
        }
    }
}
