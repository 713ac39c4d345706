//! The `keygate://` pairing URI a QR code carries: how the gateway writes
//! it and how a device reads it back.
//!
//! ```text
//! keygate://pair?v=1&gw=gw.example.net:7443&gw=192.0.2.7:7443&gw=%5B2001:db8::7%5D:7443
//!               &ca=<64 hex>&id=<32 hex>&t=<32 hex>
//! ```
//! (one line, no spaces). The parameters:
//!
//! | name | meaning | count |
//! |---|---|---|
//! | `v` | format version, `1` | exactly one |
//! | `gw` | a gateway address `HOST:PORT`: a DNS name, an IPv4 address, or an IPv6 address in brackets (`[::1]:7443`, written `%5B::1%5D:7443`) | one or more, tried in order |
//! | `ca` | SHA-256 of the gateway CA certificate's DER, 64 hex digits: the device pins it | exactly one |
//! | `id` | the pairing session id, 32 hex digits | exactly one |
//! | `t` | the one-time token, 128 bits as 32 hex digits | exactly one |
//!
//! Writing: lowercase hex, parameters in the order above, every byte
//! outside `A-Z a-z 0-9 - . _ ~ :` percent-encoded (so the brackets of an
//! IPv6 address are `%5B` / `%5D`).
//!
//! Reading: the scheme is matched without regard to case; values are
//! percent-decoded (`+` is a plus, not a space); hex of either case is
//! accepted; parameters may come in any order; a parameter this version does
//! not know is ignored, so later versions can add optional ones (one that
//! changes the meaning of the others bumps `v`). Everything else is refused
//! with a [`UriError`] that names the parameter.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use zeroize::Zeroizing;

/// The URI scheme.
pub const SCHEME: &str = "keygate";
/// The URI's target: `keygate://pair?…`.
pub const TARGET: &str = "pair";
/// The format version this module writes and reads.
pub const VERSION: u32 = 1;

/// What stays unencoded in a value: RFC 3986's unreserved characters and `:`.
const VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b':');

/// Why a pairing URI was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UriError {
    /// Not a `keygate:` URI.
    #[error("not a Keygate pairing URI: the scheme is {found:?}, expected \"keygate://\"")]
    WrongScheme {
        /// What stood before `://` (or the start of the text).
        found: String,
    },
    /// A `keygate:` URI for something other than pairing.
    #[error(
        "not a Keygate pairing URI: expected \"keygate://pair?…\", found \"keygate://{found}\""
    )]
    WrongTarget {
        /// What followed `keygate://` up to the query.
        found: String,
    },
    /// A parameter that is not `name=value`, or not valid percent-encoded
    /// UTF-8.
    #[error("pairing URI: malformed parameter {param:?}: {reason}")]
    Malformed {
        /// The parameter as written (shortened).
        param: String,
        /// What is wrong.
        reason: String,
    },
    /// A required parameter is absent.
    #[error("pairing URI: parameter `{0}` is missing")]
    Missing(&'static str),
    /// A parameter that must appear once appears again.
    #[error("pairing URI: parameter `{0}` is given more than once")]
    Duplicate(&'static str),
    /// `v` names a version this build does not read.
    #[error("pairing URI: unsupported version v={0:?} (this gateway reads v=1)")]
    UnsupportedVersion(String),
    /// `ca`, `id` or `t` is not hex of the right length.
    #[error("pairing URI: parameter `{param}` must be {expected} hex digits: {reason}")]
    BadHex {
        /// The parameter.
        param: &'static str,
        /// How many hex digits it must have.
        expected: usize,
        /// What is wrong.
        reason: String,
    },
    /// No `gw` parameter.
    #[error("pairing URI: no gateway address (parameter `gw`)")]
    NoGateway,
    /// A `gw` value that is not `HOST:PORT`.
    #[error("pairing URI: parameter `gw`: {0}")]
    BadGateway(#[from] AddrError),
}

/// Why a gateway address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a gateway address: {reason}")]
pub struct AddrError {
    /// The address as given (shortened).
    pub value: String,
    /// What is wrong.
    pub reason: String,
}

/// Where a device reaches the gateway: host and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GatewayAddr {
    /// The host.
    pub host: Host,
    /// The UDP port (never 0).
    pub port: u16,
}

/// A gateway host: an IP address or a DNS name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// An IPv4 or IPv6 address.
    Ip(IpAddr),
    /// A DNS name: dot-separated labels of letters, digits and `-` (not at
    /// either end of a label), each 1 to 63 characters, 253 at most in all.
    Dns(String),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Dns(name) => f.write_str(name),
        }
    }
}

impl fmt::Display for GatewayAddr {
    /// `host:port`, an IPv6 host in brackets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl Host {
    /// Parses a bare host: an IP address (IPv6 with or without brackets) or
    /// a DNS name.
    ///
    /// # Errors
    /// [`AddrError`] saying what is wrong.
    pub fn parse(text: &str) -> Result<Host, AddrError> {
        let err = |reason: &str| AddrError {
            value: shorten(text),
            reason: reason.to_owned(),
        };
        if let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            return Ipv6Addr::from_str(inner)
                .map(|ip| Host::Ip(IpAddr::V6(ip)))
                .map_err(|_| err("not an IPv6 address between the brackets"));
        }
        if let Ok(ip) = IpAddr::from_str(text) {
            return Ok(Host::Ip(ip));
        }
        check_dns_name(text).map_err(|reason| err(&reason))?;
        Ok(Host::Dns(text.to_owned()))
    }
}

fn check_dns_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the host is empty".into());
    }
    if name.len() > 253 {
        return Err("a DNS name has at most 253 characters".into());
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("each DNS label has 1 to 63 characters".into());
        }
        if let Some(c) = label
            .chars()
            .find(|c| !c.is_ascii_alphanumeric() && *c != '-')
        {
            return Err(format!(
                "{c:?} is not allowed in a DNS name (letters, digits, '-', '.')"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a DNS label neither starts nor ends with '-'".into());
        }
    }
    if name
        .split('.')
        .next_back()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("neither an IP address nor a DNS name (the last label is all digits)".into());
    }
    Ok(())
}

impl GatewayAddr {
    /// Parses `HOST:PORT` (`[IPv6]:PORT` for an IPv6 address).
    ///
    /// # Errors
    /// [`AddrError`] saying what is wrong.
    pub fn parse(text: &str) -> Result<GatewayAddr, AddrError> {
        Self::parse_with_default_port(text, None)
    }

    /// Parses `HOST:PORT`, or a bare `HOST` that takes `default_port` (as
    /// `advertise` entries in the config do). A bare IPv6 address needs no
    /// brackets; with a port it does.
    ///
    /// # Errors
    /// [`AddrError`] saying what is wrong.
    pub fn parse_with_default_port(
        text: &str,
        default_port: Option<u16>,
    ) -> Result<GatewayAddr, AddrError> {
        let err = |reason: String| AddrError {
            value: shorten(text),
            reason,
        };
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let Some((ip, after)) = rest.split_once(']') else {
                return Err(err("an opening '[' without its ']'".into()));
            };
            let port = match after.strip_prefix(':') {
                Some(port) => Some(port),
                None if after.is_empty() => None,
                None => return Err(err(format!("unexpected {after:?} after ']'"))),
            };
            (Host::parse(&format!("[{ip}]"))?, port)
        } else if let Ok(ip) = Ipv6Addr::from_str(text) {
            (Host::Ip(IpAddr::V6(ip)), None)
        } else {
            match text.rsplit_once(':') {
                Some((host, _)) if host.contains(':') => {
                    return Err(err(
                        "an IPv6 address with a port is written in brackets: [::1]:7443".into(),
                    ));
                }
                Some((host, port)) => (Host::parse(host)?, Some(port)),
                None => (Host::parse(text)?, None),
            }
        };
        let port = match (port, default_port) {
            (Some(p), _) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| err(format!("{p:?} is not a port (1 to 65535)")))?,
            (None, Some(p)) => p,
            (None, None) => return Err(err("no port: write HOST:PORT".into())),
        };
        Ok(GatewayAddr { host, port })
    }
}

impl FromStr for GatewayAddr {
    type Err = AddrError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// What a pairing QR code carries (see the [module docs](self) for the
/// text form).
#[derive(Clone, PartialEq, Eq)]
pub struct PairingUri {
    /// Where the device reaches the gateway, in order of preference; never
    /// empty.
    pub gateways: Vec<GatewayAddr>,
    /// SHA-256 of the gateway CA certificate's DER.
    pub ca_fingerprint: [u8; 32],
    /// The pairing session id.
    pub session_id: [u8; 16],
    /// The one-time token (128 bits).
    pub token: Zeroizing<[u8; 16]>,
}

impl fmt::Debug for PairingUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PairingUri")
            .field("gateways", &self.gateways)
            .field("ca_fingerprint", &hex::encode(self.ca_fingerprint))
            .field("session_id", &hex::encode(self.session_id))
            .finish_non_exhaustive()
    }
}

impl PairingUri {
    /// The URI text (it holds the token: show it only to the operator).
    pub fn to_uri(&self) -> Zeroizing<String> {
        let mut out = format!("{SCHEME}://{TARGET}?v={VERSION}");
        for gw in &self.gateways {
            out.push_str("&gw=");
            out.extend(utf8_percent_encode(&gw.to_string(), VALUE));
        }
        out.push_str("&ca=");
        out.push_str(&hex::encode(self.ca_fingerprint));
        out.push_str("&id=");
        out.push_str(&hex::encode(self.session_id));
        let mut uri = Zeroizing::new(out);
        uri.push_str("&t=");
        uri.push_str(&Zeroizing::new(hex::encode(*self.token)));
        uri
    }

    /// Reads a pairing URI (see the [module docs](self) for what is accepted).
    ///
    /// # Errors
    /// [`UriError`] naming the first problem found.
    pub fn parse(text: &str) -> Result<PairingUri, UriError> {
        let text = text.trim();
        let rest = match text.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case(SCHEME) => rest,
            Some((scheme, _)) => {
                return Err(UriError::WrongScheme {
                    found: shorten(scheme),
                });
            }
            None => {
                return Err(UriError::WrongScheme {
                    found: shorten(text.split(':').next().unwrap_or_default()),
                });
            }
        };
        let (target, query) = rest.split_once('?').unwrap_or((rest, ""));
        if target != TARGET {
            return Err(UriError::WrongTarget {
                found: shorten(target),
            });
        }

        let mut version = None;
        let mut gateways = Vec::new();
        let mut ca = None;
        let mut id = None;
        let mut token = None;
        for param in query.split('&').filter(|p| !p.is_empty()) {
            let Some((name, raw)) = param.split_once('=') else {
                return Err(UriError::Malformed {
                    param: shorten(param),
                    reason: "expected name=value".into(),
                });
            };
            let value = Zeroizing::new(
                percent_decode_str(raw)
                    .decode_utf8()
                    .map_err(|_| UriError::Malformed {
                        param: shorten(name),
                        reason: "not UTF-8 once percent-decoded".into(),
                    })?
                    .into_owned(),
            );
            match name {
                "v" => once(&mut version, "v", value)?,
                "gw" => gateways.push(GatewayAddr::parse(&value)?),
                "ca" => once(&mut ca, "ca", value)?,
                "id" => once(&mut id, "id", value)?,
                "t" => once(&mut token, "t", value)?,
                _ => {} // a later version's optional parameter
            }
        }
        let version = version.ok_or(UriError::Missing("v"))?;
        if version.as_str() != VERSION.to_string() {
            return Err(UriError::UnsupportedVersion(shorten(&version)));
        }
        if gateways.is_empty() {
            return Err(UriError::NoGateway);
        }
        let ca_fingerprint = fixed_hex::<32>("ca", ca.as_deref())?;
        let session_id = fixed_hex::<16>("id", id.as_deref())?;
        let token = Zeroizing::new(fixed_hex::<16>("t", token.as_deref())?);
        Ok(PairingUri {
            gateways,
            ca_fingerprint,
            session_id,
            token,
        })
    }
}

impl FromStr for PairingUri {
    type Err = UriError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

fn once(
    slot: &mut Option<Zeroizing<String>>,
    name: &'static str,
    value: Zeroizing<String>,
) -> Result<(), UriError> {
    if slot.replace(value).is_some() {
        return Err(UriError::Duplicate(name));
    }
    Ok(())
}

fn fixed_hex<const N: usize>(
    param: &'static str,
    value: Option<&String>,
) -> Result<[u8; N], UriError> {
    let value = value.ok_or(UriError::Missing(param))?;
    let bad = |reason: String| UriError::BadHex {
        param,
        expected: 2 * N,
        reason,
    };
    if value.len() != 2 * N {
        return Err(bad(format!("found {} characters", value.chars().count())));
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(value, &mut out).map_err(|e| bad(e.to_string()))?;
    Ok(out)
}

fn shorten(text: &str) -> String {
    const MAX: usize = 64;
    if text.chars().count() <= MAX {
        text.to_owned()
    } else {
        let mut s: String = text.chars().take(MAX).collect();
        s.push('…');
        s
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use proptest::prelude::*;

    use super::*;

    fn sample() -> PairingUri {
        PairingUri {
            gateways: vec![
                GatewayAddr::parse("gw.example.net:7443").unwrap(),
                GatewayAddr::parse("192.0.2.7:7443").unwrap(),
                GatewayAddr::parse("[2001:db8::7]:8443").unwrap(),
            ],
            ca_fingerprint: [0xab; 32],
            session_id: [0x01; 16],
            token: Zeroizing::new([0xfe; 16]),
        }
    }

    const SAMPLE: &str = "keygate://pair?v=1&gw=gw.example.net:7443&gw=192.0.2.7:7443&gw=%5B2001:db8::7%5D:8443&ca=abababababababababababababababababababababababababababababababab&id=01010101010101010101010101010101&t=fefefefefefefefefefefefefefefefe";

    fn with(param: &str, replacement: Option<&str>) -> String {
        let parts: Vec<String> = SAMPLE
            .split('&')
            .filter_map(|p| {
                let name = p
                    .split('=')
                    .next()
                    .unwrap()
                    .trim_start_matches("keygate://pair?");
                if name == param {
                    replacement.map(|r| {
                        if p.starts_with("keygate://") {
                            format!("keygate://pair?{r}")
                        } else {
                            r.to_owned()
                        }
                    })
                } else {
                    Some(p.to_owned())
                }
            })
            .collect();
        parts.join("&")
    }

    #[test]
    fn writes_the_documented_form() {
        assert_eq!(sample().to_uri().as_str(), SAMPLE);
        assert_eq!(PairingUri::parse(SAMPLE).unwrap(), sample());
    }

    #[test]
    fn reads_leniently_what_it_documents() {
        let upper = SAMPLE
            .replace("keygate://", "KeyGate://")
            .replace("abab", "ABAB")
            .replace("%5B", "[")
            .replace("%5D", "]");
        assert_eq!(PairingUri::parse(&upper).unwrap(), sample());
        let reordered = format!(
            "keygate://pair?t={}&x-later=1&id={}&ca={}&gw=gw.example.net:7443&gw=192.0.2.7:7443&gw=%5b2001:db8::7%5d:8443&v=1",
            "fe".repeat(16),
            "01".repeat(16),
            "ab".repeat(32)
        );
        assert_eq!(PairingUri::parse(&reordered).unwrap(), sample());
    }

    #[test]
    fn refusals_name_the_parameter() {
        let cases: Vec<(String, UriError)> = vec![
            (
                SAMPLE.replace("keygate://", "https://"),
                UriError::WrongScheme {
                    found: "https".into(),
                },
            ),
            (
                "mailto:x@example.net".into(),
                UriError::WrongScheme {
                    found: "mailto".into(),
                },
            ),
            (
                SAMPLE.replace("//pair?", "//admin?"),
                UriError::WrongTarget {
                    found: "admin".into(),
                },
            ),
            (
                with("v", Some("v=2")),
                UriError::UnsupportedVersion("2".into()),
            ),
            (SAMPLE.replace("?v=1&", "?"), UriError::Missing("v")),
            (with("ca", None), UriError::Missing("ca")),
            (with("id", None), UriError::Missing("id")),
            (with("t", None), UriError::Missing("t")),
            (
                format!("{SAMPLE}&t={}", "00".repeat(16)),
                UriError::Duplicate("t"),
            ),
            (
                format!("{SAMPLE}&ca={}", "00".repeat(32)),
                UriError::Duplicate("ca"),
            ),
            (
                format!("{SAMPLE}&id={}", "00".repeat(16)),
                UriError::Duplicate("id"),
            ),
            (format!("{SAMPLE}&v=1"), UriError::Duplicate("v")),
            (
                SAMPLE
                    .replace("&gw=gw.example.net:7443", "")
                    .replace("&gw=192.0.2.7:7443", "")
                    .replace("&gw=%5B2001:db8::7%5D:8443", ""),
                UriError::NoGateway,
            ),
        ];
        for (uri, expected) in cases {
            assert_eq!(PairingUri::parse(&uri), Err(expected), "{uri}");
        }
        for (param, value, len) in [("ca", "ab", 64), ("id", "0101", 32), ("t", "fe", 32)] {
            let short = format!("{param}={}", value.repeat(3));
            match PairingUri::parse(&with(param, Some(&short))) {
                Err(UriError::BadHex {
                    param: p, expected, ..
                }) => {
                    assert_eq!((p, expected), (param, len));
                }
                other => panic!("{param}: {other:?}"),
            }
        }
        let not_hex = with("t", Some(&format!("t={}", "zz".repeat(16))));
        let err = PairingUri::parse(&not_hex).unwrap_err();
        assert!(
            matches!(err, UriError::BadHex { param: "t", .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("`t`"), "{err}");
        let err = PairingUri::parse(&format!("{SAMPLE}&gw=::1:7443")).unwrap_err();
        assert!(matches!(err, UriError::BadGateway(_)), "{err:?}");
        assert!(err.to_string().contains("`gw`"), "{err}");
        let err = PairingUri::parse(&format!("{SAMPLE}&gw")).unwrap_err();
        assert!(matches!(err, UriError::Malformed { .. }), "{err:?}");
    }

    #[test]
    fn gateway_addresses() {
        let ok = |s: &str, port: Option<u16>| GatewayAddr::parse_with_default_port(s, port);
        assert_eq!(
            ok("localhost", Some(7443)).unwrap().to_string(),
            "localhost:7443"
        );
        assert_eq!(ok("::1", Some(7443)).unwrap().to_string(), "[::1]:7443");
        assert_eq!(ok("[::1]", Some(7443)).unwrap().to_string(), "[::1]:7443");
        assert_eq!(ok("[::1]:9", Some(7443)).unwrap().to_string(), "[::1]:9");
        assert_eq!(
            ok("10.0.0.1:9000", Some(7443)).unwrap(),
            GatewayAddr {
                host: Host::Ip(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))),
                port: 9000
            }
        );
        for bad in [
            "localhost",
            "host:0",
            "host:70000",
            "host:",
            ":7443",
            "-bad-.example:1",
            "a..b:1",
            "under_score:1",
            "[::1:1",
            "[nope]:1",
            "::1:7443",
            "1.2.3.999:1",
        ] {
            assert!(GatewayAddr::parse(bad).is_err(), "{bad} accepted");
        }
    }

    fn arb_host() -> impl Strategy<Value = Host> {
        prop_oneof![
            any::<[u8; 4]>().prop_map(|b| Host::Ip(IpAddr::from(b))),
            any::<[u8; 16]>().prop_map(|b| Host::Ip(IpAddr::from(b))),
            "[a-z]([a-z0-9-]{0,10}[a-z0-9])?(\\.[a-z]([a-z0-9-]{0,10}[a-z0-9])?){0,3}"
                .prop_map(Host::Dns),
        ]
    }

    fn arb_uri() -> impl Strategy<Value = PairingUri> {
        (
            prop::collection::vec((arb_host(), 1..=u16::MAX), 1..5),
            any::<[u8; 32]>(),
            any::<[u8; 16]>(),
            any::<[u8; 16]>(),
        )
            .prop_map(|(gws, ca, id, t)| PairingUri {
                gateways: gws
                    .into_iter()
                    .map(|(host, port)| GatewayAddr { host, port })
                    .collect(),
                ca_fingerprint: ca,
                session_id: id,
                token: Zeroizing::new(t),
            })
    }

    proptest! {
        #[test]
        fn every_uri_reads_back_as_written(uri in arb_uri()) {
            let text = uri.to_uri();
            let back = PairingUri::parse(&text).unwrap();
            prop_assert_eq!(&back, &uri);
            prop_assert_eq!(back.to_uri(), text);
        }

        #[test]
        fn parsing_never_panics(text in "keygate://pair\\?[a-z=&%0-9:\\[\\]]{0,80}") {
            let _ = PairingUri::parse(&text);
        }
    }
}
