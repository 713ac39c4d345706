//! The operator's config file (`config.toml`).
//!
//! ```toml
//! state_dir = "state"              # relative paths resolve against this file's folder
//!
//! [plugins.store]
//! use = "filesystem"               # a built-in plugin ...
//! [plugins.store.config]           # ... and its own settings, handed to it as TOML
//!
//! [plugins.approval]
//! library = "plugins/libmy_policy.so"   # ... or an external library
//! name = "allowlist"                    # only when the library holds several
//! sha256 = "9f86d0…"                    # optional pin: refused unless the file matches
//!
//! [gateway]
//! listen = "0.0.0.0:7443"          # IP:PORT the gateway listens on
//! advertise = ["gw.example.net", "192.0.2.7", "[2001:db8::7]:8443"]   # what QR codes carry
//!
//! [admin]                          # the HTTP admin API; off without this table
//! listen = "127.0.0.1:7800"        # any address with TLS; loopback only without
//! tls = "gateway-ca"               # "off" (default) or a certificate from the gateway's CA,
//! names = ["admin.example.net"]    #   issued for these names (default: below) ...
//! # tls_cert_file = "admin.pem"    # ... or a certificate chain and key of your own (PEM)
//! # tls_key_file = "admin-key.pem"
//!
//! [pairing]
//! pin_digits = 8                   # 6..=12
//! code_ttl = "10m"                 # 30s..=24h
//! max_attempts = 5                 # 1..=20
//! request_ttl = "30m"              # 1m..=7d: how long a request waits for a decision
//! free_failures = 3                # 0..=1000 failed attempts per source before delays
//! failure_delay = "2s"             # 1s..=10m: the first delay, doubled for each failure after
//! max_failure_delay = "60s"        # failure_delay..=1h: the longest delay asked for
//! failure_window = "15m"           # 1m..=24h: how long a source's failures are remembered
//! ```
//!
//! Unknown keys, wrong types and unknown plugin names are refused with the
//! file, the line and the key. Parsing only checks the shape; whether a
//! named built-in exists is checked by the plugin host, which reports it
//! with the same file and line.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use keygate_sdk::PluginKind;

use crate::pairing::{GatewayAddr, PairingSettings};
use crate::state::IdentitySettings;
use serde::Deserialize;
use toml::Spanned;

/// The config file used when neither `--config` nor `KEYGATE_CONFIG` is given.
pub const DEFAULT_CONFIG_PATH: &str = "config.toml";

/// Why a config file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read config file: {cause}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// The I/O error (in the message, so not a `source`).
        cause: std::io::Error,
    },
    /// Not valid TOML, an unknown key or a wrong type (the message from the
    /// TOML parser carries the line, column and key).
    #[error("{path}: {message}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A value that parses but makes no sense.
    #[error("{}", Located::fmt_error(path, *line, key, message))]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// 1-based line of the offending key.
        line: usize,
        /// Dotted key, e.g. `plugins.store.use`.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// A value together with where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located<T> {
    /// The value.
    pub value: T,
    /// 1-based line in the config file.
    pub line: usize,
    /// Dotted key, e.g. `plugins.store.use`.
    pub key: String,
}

impl Located<()> {
    fn fmt_error(path: &Path, line: usize, key: &str, message: &str) -> String {
        format!("{}:{line}: {key}: {message}", path.display())
    }
}

/// The validated config.
#[derive(Debug, Clone)]
pub struct Config {
    /// The config file it came from.
    pub path: PathBuf,
    /// That file's folder, against which relative paths resolve.
    pub dir: PathBuf,
    /// Where identity state, locks and the admin socket live.
    pub state_dir: PathBuf,
    /// The plugin slots.
    pub plugins: PluginSlots,
    /// `[identity]`: the CA and certificates.
    pub identity: IdentitySettings,
    /// `[gateway]`: where the gateway listens and how devices reach it.
    pub gateway: GatewaySettings,
    /// `[pairing]`: how pairing codes are minted.
    pub pairing: PairingSettings,
    /// `[admin]`: the HTTP admin API, when the table is present.
    pub admin: Option<AdminSettings>,
}

/// The default `admin.listen`.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:7800";

/// `[admin]`: where the HTTP admin API listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSettings {
    /// `listen`: an IP and port (port 0: any free one); loopback unless
    /// `tls` is on.
    pub listen: SocketAddr,
    /// How it speaks TLS.
    pub tls: AdminTls,
}

impl Default for AdminSettings {
    fn default() -> Self {
        Self {
            listen: DEFAULT_ADMIN_LISTEN.parse().expect("a valid address"),
            tls: AdminTls::Off,
        }
    }
}

/// `[admin] tls`: plain HTTP, or HTTPS with which certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminTls {
    /// `tls = "off"` (the default): plain HTTP, on loopback only.
    Off,
    /// `tls = "gateway-ca"`: a server certificate issued by the gateway's
    /// CA at start, held in memory only and re-issued at two thirds of its
    /// life (`[identity] server_validity`), like the gateway's own.
    GatewayCa {
        /// `names`: what it is issued for. Empty: the listen address, or
        /// when that is unspecified (`0.0.0.0`, `[::]`), the hosts of
        /// `[gateway] advertise`.
        names: Vec<String>,
    },
    /// `tls_cert_file` and `tls_key_file`: a chain (leaf first) and its
    /// PKCS#8, SEC1 or PKCS#1 key, PEM, read at start.
    Files {
        /// The certificate chain.
        cert: PathBuf,
        /// Its private key.
        key: PathBuf,
    },
}

impl AdminTls {
    /// Whether the listener speaks TLS.
    pub fn is_on(&self) -> bool {
        !matches!(self, Self::Off)
    }
}

const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);
/// The shortest client or server certificate validity: 10 seconds (for
/// tests of renewal; devices renew at two thirds of it).
pub const MIN_CERT_VALIDITY: Duration = Duration::from_secs(10);
/// The longest client or server certificate validity: 366 days.
pub const MAX_CERT_VALIDITY: Duration = Duration::from_secs(366 * 86_400);

/// The default `gateway.listen`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7443";
/// The default `gateway.advertise`.
pub const DEFAULT_ADVERTISE: &[&str] = &["localhost", "127.0.0.1"];

/// `[gateway]`: where the gateway listens and the addresses devices reach
/// it at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewaySettings {
    /// `listen`: the local address (IP and port) the gateway binds.
    pub listen: SocketAddr,
    /// `advertise`: the DNS names and IP addresses devices reach the
    /// gateway at, each with its port (the `listen` port unless the entry
    /// gives its own), in order of preference; never empty. QR codes carry
    /// them.
    pub advertise: Vec<GatewayAddr>,
    /// `heartbeat`: how often nodes heartbeat (told to them when they
    /// register); a node silent for three intervals is dropped.
    pub heartbeat: Duration,
    /// `invoke_timeout`: how long an invocation waits for its node's answer.
    pub invoke_timeout: Duration,
    /// `max_frame_len`: the longest frame, bytes, either way.
    pub max_frame_len: u32,
}

/// The default `gateway.heartbeat`.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);
/// The default `gateway.invoke_timeout`.
pub const DEFAULT_INVOKE_TIMEOUT: Duration = Duration::from_secs(30);
/// The default `gateway.max_frame_len`: 1 MiB.
pub const DEFAULT_MAX_FRAME_LEN: u32 = 1 << 20;

impl Default for GatewaySettings {
    fn default() -> Self {
        let listen: SocketAddr = DEFAULT_LISTEN.parse().expect("valid default");
        let advertise = DEFAULT_ADVERTISE
            .iter()
            .map(|a| {
                GatewayAddr::parse_with_default_port(a, Some(listen.port())).expect("valid default")
            })
            .collect();
        Self {
            listen,
            advertise,
            heartbeat: DEFAULT_HEARTBEAT,
            invoke_timeout: DEFAULT_INVOKE_TIMEOUT,
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
        }
    }
}

/// The configured plugin for each slot.
#[derive(Debug, Clone)]
pub struct PluginSlots {
    /// `[plugins.store]`, required.
    pub store: SlotConfig,
    /// `[plugins.approval]`.
    pub approval: Option<SlotConfig>,
    /// `[plugins.transport]`.
    pub transport: Option<SlotConfig>,
}

impl PluginSlots {
    /// The configured slots, store first.
    pub fn iter(&self) -> impl Iterator<Item = &SlotConfig> {
        std::iter::once(&self.store)
            .chain(self.approval.as_ref())
            .chain(self.transport.as_ref())
    }
}

/// One plugin slot.
#[derive(Debug, Clone)]
pub struct SlotConfig {
    /// The slot: store, approval or transport.
    pub kind: PluginKind,
    /// Where the plugin comes from.
    pub source: PluginSource,
    /// The slot's `config` table, re-serialised as TOML for the plugin (empty
    /// when absent).
    pub config_toml: String,
    /// The line of the slot's `[plugins.<slot>]` header.
    pub line: usize,
}

/// Where a slot's plugin comes from.
#[derive(Debug, Clone)]
pub enum PluginSource {
    /// `use = "<name>"`: a plugin linked into the binary.
    Builtin(Located<String>),
    /// `library = "<path>"`: a plugin library loaded by path.
    Library {
        /// The library file, resolved against the config folder.
        path: Located<PathBuf>,
        /// `name`, when the library holds several plugins of the slot's kind.
        name: Option<Located<String>>,
        /// `sha256` pin, 32 bytes.
        sha256: Option<Located<[u8; 32]>>,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    state_dir: Option<Spanned<String>>,
    #[serde(default)]
    plugins: RawPlugins,
    identity: Option<Spanned<RawIdentity>>,
    gateway: Option<RawGateway>,
    pairing: Option<RawPairing>,
    admin: Option<RawAdmin>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: Option<Spanned<String>>,
    tls: Option<Spanned<String>>,
    names: Option<Spanned<Vec<Spanned<String>>>>,
    tls_cert_file: Option<Spanned<String>>,
    tls_key_file: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGateway {
    listen: Option<Spanned<String>>,
    advertise: Option<Spanned<Vec<Spanned<String>>>>,
    heartbeat: Option<Spanned<String>>,
    invoke_timeout: Option<Spanned<String>>,
    max_frame_len: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPairing {
    pin_digits: Option<Spanned<i64>>,
    code_ttl: Option<Spanned<String>>,
    max_attempts: Option<Spanned<i64>>,
    request_ttl: Option<Spanned<String>>,
    free_failures: Option<Spanned<i64>>,
    failure_delay: Option<Spanned<String>>,
    max_failure_delay: Option<Spanned<String>>,
    failure_window: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    ca_common_name: Option<Spanned<String>>,
    ca_validity_days: Option<Spanned<u64>>,
    client_cert_validity_hours: Option<Spanned<u64>>,
    client_cert_validity: Option<Spanned<String>>,
    server_cert_validity: Option<Spanned<String>>,
    lock_timeout_secs: Option<Spanned<u64>>,
    snapshot_interval: Option<Spanned<u64>>,
    change_retention: Option<Spanned<u64>>,
    recheck_interval_secs: Option<Spanned<u64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPlugins {
    store: Option<Spanned<RawSlot>>,
    approval: Option<Spanned<RawSlot>>,
    transport: Option<Spanned<RawSlot>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlot {
    #[serde(rename = "use")]
    builtin: Option<Spanned<String>>,
    library: Option<Spanned<String>>,
    name: Option<Spanned<String>>,
    sha256: Option<Spanned<String>>,
    config: Option<toml::Table>,
}

impl Config {
    /// Reads and validates the config file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
            path: path.to_owned(),
            cause,
        })?;
        Self::parse(&text, path)
    }

    /// Validates config text as if read from `path` (which names it in
    /// errors and anchors relative paths).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: one_paragraph(&e.to_string()),
        })?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let ctx = Ctx {
            text,
            path,
            dir: &dir,
        };

        let state_dir = match &raw.state_dir {
            Some(s) if s.get_ref().trim().is_empty() => {
                return Err(ctx.invalid(s.span().start, "state_dir", "must not be empty"));
            }
            Some(s) => ctx.resolve(s.get_ref()),
            None => dir.join("state"),
        };

        let store = match raw.plugins.store {
            Some(slot) => ctx.slot(PluginKind::Store, slot)?,
            None => {
                return Err(ConfigError::Invalid {
                    path: path.to_owned(),
                    line: 1,
                    key: "plugins.store".into(),
                    message: "missing: add a [plugins.store] table, e.g. use = \"filesystem\""
                        .into(),
                });
            }
        };
        let approval = raw
            .plugins
            .approval
            .map(|s| ctx.slot(PluginKind::Approval, s))
            .transpose()?;
        let transport = raw
            .plugins
            .transport
            .map(|s| ctx.slot(PluginKind::Transport, s))
            .transpose()?;

        let identity = match raw.identity {
            Some(table) => ctx.identity(table.into_inner())?,
            None => IdentitySettings::default(),
        };

        let gateway = match raw.gateway {
            Some(table) => ctx.gateway(table)?,
            None => GatewaySettings::default(),
        };
        let pairing = match raw.pairing {
            Some(table) => ctx.pairing(table)?,
            None => PairingSettings::default(),
        };
        let admin = raw.admin.map(|table| ctx.admin(table)).transpose()?;

        Ok(Config {
            path: path.to_owned(),
            dir,
            state_dir,
            plugins: PluginSlots {
                store,
                approval,
                transport,
            },
            identity,
            gateway,
            pairing,
            admin,
        })
    }
}

struct Ctx<'a> {
    text: &'a str,
    path: &'a Path,
    dir: &'a Path,
}

impl Ctx<'_> {
    fn line(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    fn invalid(&self, offset: usize, key: &str, message: impl fmt::Display) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_owned(),
            line: self.line(offset),
            key: key.to_owned(),
            message: message.to_string(),
        }
    }

    fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.dir.join(p)
        }
    }

    fn located<T>(&self, value: T, offset: usize, key: String) -> Located<T> {
        Located {
            value,
            line: self.line(offset),
            key,
        }
    }

    fn identity(&self, raw: RawIdentity) -> Result<IdentitySettings, ConfigError> {
        let mut settings = IdentitySettings::default();
        let positive = |v: &Spanned<u64>, key: &str, max: u64| -> Result<u64, ConfigError> {
            match *v.get_ref() {
                0 => Err(self.invalid(v.span().start, key, "must be at least 1")),
                n if n > max => {
                    Err(self.invalid(v.span().start, key, format!("must be at most {max}")))
                }
                n => Ok(n),
            }
        };
        if let Some(name) = raw.ca_common_name {
            if name.get_ref().trim().is_empty() {
                return Err(self.invalid(
                    name.span().start,
                    "identity.ca_common_name",
                    "must not be empty",
                ));
            }
            settings.ca_common_name = name.into_inner();
        }
        if let Some(days) = raw.ca_validity_days {
            let days = positive(&days, "identity.ca_validity_days", 36_500)?;
            settings.ca_validity = std::time::Duration::from_secs(days * 86_400);
        }
        match (raw.client_cert_validity_hours, raw.client_cert_validity) {
            (Some(_), Some(both)) => {
                return Err(self.invalid(
                    both.span().start,
                    "identity.client_cert_validity",
                    "give either client_cert_validity or the older client_cert_validity_hours, \
                     not both",
                ));
            }
            (Some(hours), None) => {
                let hours = positive(&hours, "identity.client_cert_validity_hours", 24 * 366)?;
                settings.client_validity = std::time::Duration::from_secs(hours * 3600);
            }
            (None, Some(d)) => {
                settings.client_validity = self.duration_within(
                    &d,
                    "identity.client_cert_validity",
                    MIN_CERT_VALIDITY,
                    MAX_CERT_VALIDITY,
                )?;
            }
            (None, None) => {}
        }
        if let Some(d) = raw.server_cert_validity {
            settings.server_validity = self.duration_within(
                &d,
                "identity.server_cert_validity",
                MIN_CERT_VALIDITY,
                MAX_CERT_VALIDITY,
            )?;
        }
        if let Some(secs) = raw.lock_timeout_secs {
            let secs = positive(&secs, "identity.lock_timeout_secs", 3600)?;
            settings.lock_timeout = std::time::Duration::from_secs(secs);
        }
        if let Some(n) = raw.snapshot_interval {
            settings.snapshot_interval = positive(&n, "identity.snapshot_interval", 1 << 40)?;
        }
        if let Some(n) = raw.change_retention {
            settings.change_retention = positive(&n, "identity.change_retention", 1 << 40)?;
        }
        if let Some(secs) = raw.recheck_interval_secs {
            let secs = positive(&secs, "identity.recheck_interval_secs", 86_400)?;
            settings.recheck_interval = std::time::Duration::from_secs(secs);
        }
        Ok(settings)
    }

    fn gateway(&self, raw: RawGateway) -> Result<GatewaySettings, ConfigError> {
        let mut settings = GatewaySettings::default();
        if let Some(listen) = raw.listen {
            let addr: SocketAddr = listen.get_ref().trim().parse().map_err(|_| {
                self.invalid(
                    listen.span().start,
                    "gateway.listen",
                    format!(
                        "{:?} is not IP:PORT (e.g. \"0.0.0.0:7443\" or \"[::]:7443\")",
                        listen.get_ref()
                    ),
                )
            })?;
            if addr.port() == 0 {
                return Err(self.invalid(
                    listen.span().start,
                    "gateway.listen",
                    "needs a fixed port, not 0 (devices are told the port)",
                ));
            }
            settings.listen = addr;
        }
        let port = settings.listen.port();
        match raw.advertise {
            Some(list) => {
                if list.get_ref().is_empty() {
                    return Err(self.invalid(
                        list.span().start,
                        "gateway.advertise",
                        "must name at least one address devices reach the gateway at",
                    ));
                }
                let mut advertise: Vec<GatewayAddr> = Vec::new();
                for entry in list.into_inner() {
                    let addr =
                        GatewayAddr::parse_with_default_port(entry.get_ref().trim(), Some(port))
                            .map_err(|e| {
                                self.invalid(entry.span().start, "gateway.advertise", e)
                            })?;
                    if advertise.contains(&addr) {
                        return Err(self.invalid(
                            entry.span().start,
                            "gateway.advertise",
                            format!("{addr} is listed twice"),
                        ));
                    }
                    advertise.push(addr);
                }
                settings.advertise = advertise;
            }
            None => {
                // The defaults, with the configured listen port.
                for addr in &mut settings.advertise {
                    addr.port = port;
                }
            }
        }
        if let Some(d) = raw.heartbeat {
            settings.heartbeat =
                self.duration_within(&d, "gateway.heartbeat", SECOND, 60 * MINUTE)?;
        }
        if let Some(d) = raw.invoke_timeout {
            settings.invoke_timeout =
                self.duration_within(&d, "gateway.invoke_timeout", SECOND, 60 * MINUTE)?;
        }
        if let Some(n) = raw.max_frame_len {
            let len = *n.get_ref();
            const MIN: i64 = keygate_proto::MAX_MESSAGE_LEN as i64;
            const MAX: i64 = 64 << 20;
            if !(MIN..=MAX).contains(&len) {
                return Err(self.invalid(
                    n.span().start,
                    "gateway.max_frame_len",
                    format!("must be between {MIN} and {MAX} bytes, not {len}"),
                ));
            }
            settings.max_frame_len = u32::try_from(len).unwrap_or(DEFAULT_MAX_FRAME_LEN);
        }
        Ok(settings)
    }

    fn admin(&self, raw: RawAdmin) -> Result<AdminSettings, ConfigError> {
        let mut settings = AdminSettings {
            tls: self.admin_tls(&raw)?,
            ..AdminSettings::default()
        };
        if let Some(listen) = raw.listen {
            let at = listen.span().start;
            let addr: SocketAddr = listen.get_ref().trim().parse().map_err(|_| {
                self.invalid(
                    at,
                    "admin.listen",
                    format!(
                        "{:?} is not IP:PORT (e.g. \"127.0.0.1:7800\")",
                        listen.get_ref()
                    ),
                )
            })?;
            if !addr.ip().is_loopback() && !settings.tls.is_on() {
                return Err(self.invalid(
                    at,
                    "admin.listen",
                    format!(
                        "{addr} is not a loopback address, and without TLS the admin API is \
                         served only on 127.0.0.1 or [::1]: set `tls = \"gateway-ca\"` (or \
                         `tls_cert_file` and `tls_key_file`) to serve it on the network"
                    ),
                ));
            }
            settings.listen = addr;
        }
        Ok(settings)
    }

    /// `[admin] tls`, `names`, `tls_cert_file`, `tls_key_file`.
    fn admin_tls(&self, raw: &RawAdmin) -> Result<AdminTls, ConfigError> {
        let names = match &raw.names {
            None => Vec::new(),
            Some(list) => {
                let mut names = Vec::new();
                for name in list.get_ref() {
                    let text = name.get_ref().trim();
                    if text.is_empty() || text.contains(|c: char| c.is_whitespace() || c == '/') {
                        return Err(self.invalid(
                            name.span().start,
                            "admin.names",
                            format!("{:?} is not a DNS name or an IP address", name.get_ref()),
                        ));
                    }
                    names.push(text.to_owned());
                }
                names
            }
        };
        let files = match (&raw.tls_cert_file, &raw.tls_key_file) {
            (None, None) => None,
            (Some(cert), Some(key)) => {
                Some((self.resolve(cert.get_ref()), self.resolve(key.get_ref())))
            }
            (Some(cert), None) => {
                return Err(self.invalid(
                    cert.span().start,
                    "admin.tls_key_file",
                    "missing: tls_cert_file needs the key that goes with it",
                ));
            }
            (None, Some(key)) => {
                return Err(self.invalid(
                    key.span().start,
                    "admin.tls_cert_file",
                    "missing: tls_key_file needs the certificate that goes with it",
                ));
            }
        };
        let mode = raw
            .tls
            .as_ref()
            .map(|t| (t.get_ref().trim(), t.span().start));
        match (mode, files) {
            (None, None) | (Some(("off", _)), None) => {
                if let Some(list) = &raw.names {
                    return Err(self.invalid(
                        list.span().start,
                        "admin.names",
                        "names are for `tls = \"gateway-ca\"`".to_owned(),
                    ));
                }
                Ok(AdminTls::Off)
            }
            (Some(("gateway-ca", _)), None) => Ok(AdminTls::GatewayCa { names }),
            (None | Some(("files", _)), Some((cert, key))) if raw.names.is_none() => {
                Ok(AdminTls::Files { cert, key })
            }
            (None | Some(("files", _)), Some(_)) => Err(self.invalid(
                raw.names.as_ref().map_or(0, |n| n.span().start),
                "admin.names",
                "names are for `tls = \"gateway-ca\"`; a certificate of your own carries its own"
                    .to_owned(),
            )),
            (Some((_, at)), Some(_)) => Err(self.invalid(
                at,
                "admin.tls",
                "tls_cert_file and tls_key_file bring their own certificate: drop `tls` \
                 or set it to \"files\""
                    .to_owned(),
            )),
            (Some((other, at)), None) => Err(self.invalid(
                at,
                "admin.tls",
                format!("{other:?} is not \"off\" or \"gateway-ca\" (or set tls_cert_file and tls_key_file)"),
            )),
        }
    }

    /// A duration (with units) between `min` and `max`.
    fn duration_within(
        &self,
        v: &Spanned<String>,
        key: &str,
        min: Duration,
        max: Duration,
    ) -> Result<Duration, ConfigError> {
        crate::time::parse_duration(v.get_ref())
            .and_then(|d| {
                if (min..=max).contains(&d) {
                    Ok(d)
                } else {
                    Err(format!(
                        "must be between {} and {}, not {}",
                        crate::time::human_duration(min),
                        crate::time::human_duration(max),
                        crate::time::human_duration(d)
                    ))
                }
            })
            .map_err(|m| self.invalid(v.span().start, key, m))
    }

    fn pairing(&self, raw: RawPairing) -> Result<PairingSettings, ConfigError> {
        use crate::pairing::{MAX_ATTEMPTS, MAX_PIN_DIGITS, MIN_PIN_DIGITS};
        let mut settings = PairingSettings::default();
        let bounded = |v: &Spanned<i64>, key: &str, min: i64, max: i64| {
            let n = *v.get_ref();
            if (min..=max).contains(&n) {
                Ok(n)
            } else {
                Err(self.invalid(
                    v.span().start,
                    key,
                    format!("must be between {min} and {max}, not {n}"),
                ))
            }
        };
        if let Some(digits) = raw.pin_digits {
            let n = bounded(
                &digits,
                "pairing.pin_digits",
                MIN_PIN_DIGITS as i64,
                MAX_PIN_DIGITS as i64,
            )?;
            settings.pin_digits = usize::try_from(n).unwrap_or(MIN_PIN_DIGITS);
        }
        if let Some(ttl) = raw.code_ttl {
            let d = crate::time::parse_duration(ttl.get_ref())
                .and_then(crate::pairing::check_code_ttl)
                .map_err(|m| self.invalid(ttl.span().start, "pairing.code_ttl", m))?;
            settings.code_ttl = d;
        }
        if let Some(attempts) = raw.max_attempts {
            let n = bounded(
                &attempts,
                "pairing.max_attempts",
                1,
                i64::from(MAX_ATTEMPTS),
            )?;
            settings.max_attempts = u32::try_from(n).unwrap_or(1);
        }
        if let Some(ttl) = raw.request_ttl {
            let d = crate::time::parse_duration(ttl.get_ref())
                .and_then(crate::pairing::check_request_ttl)
                .map_err(|m| self.invalid(ttl.span().start, "pairing.request_ttl", m))?;
            settings.request_ttl = d;
        }
        let limit = &mut settings.rate_limit;
        if let Some(free) = raw.free_failures {
            let n = bounded(&free, "pairing.free_failures", 0, 1000)?;
            limit.free_failures = u32::try_from(n).unwrap_or(0);
        }
        let duration = |v: &Spanned<String>, key: &str, min: Duration, max: Duration| {
            self.duration_within(v, key, min, max)
        };
        if let Some(d) = raw.failure_delay {
            limit.base_delay = duration(&d, "pairing.failure_delay", SECOND, 10 * MINUTE)?;
        }
        match raw.max_failure_delay {
            Some(d) => {
                limit.max_delay = duration(
                    &d,
                    "pairing.max_failure_delay",
                    limit.base_delay,
                    60 * MINUTE,
                )?
            }
            // The default cap stays above a configured first delay.
            None => limit.max_delay = limit.max_delay.max(limit.base_delay),
        }
        if let Some(d) = raw.failure_window {
            limit.window = duration(&d, "pairing.failure_window", MINUTE, 24 * 60 * MINUTE)?;
        }
        Ok(settings)
    }

    fn slot(&self, kind: PluginKind, raw: Spanned<RawSlot>) -> Result<SlotConfig, ConfigError> {
        let table = format!("plugins.{kind}");
        let start = raw.span().start;
        let raw = raw.into_inner();
        let key = |k: &str| format!("{table}.{k}");

        let source = match (raw.builtin, raw.library) {
            (Some(_), Some(lib)) => {
                return Err(self.invalid(
                    lib.span().start,
                    &key("library"),
                    "give either `use` (a built-in) or `library` (a file), not both",
                ));
            }
            (None, None) => {
                return Err(self.invalid(
                    start,
                    &table,
                    "needs `use = \"<built-in name>\"` or `library = \"<path>\"`",
                ));
            }
            (Some(name), None) => {
                for (field, value) in [
                    ("name", raw.name.as_ref().map(|s| s.span())),
                    ("sha256", raw.sha256.as_ref().map(|s| s.span())),
                ] {
                    if let Some(span) = value {
                        return Err(self.invalid(
                            span.start,
                            &key(field),
                            "only applies to `library` plugins",
                        ));
                    }
                }
                if name.get_ref().is_empty() {
                    return Err(self.invalid(name.span().start, &key("use"), "must not be empty"));
                }
                let offset = name.span().start;
                PluginSource::Builtin(self.located(name.into_inner(), offset, key("use")))
            }
            (None, Some(lib)) => {
                if lib.get_ref().is_empty() {
                    return Err(self.invalid(
                        lib.span().start,
                        &key("library"),
                        "must not be empty",
                    ));
                }
                let path = self.located(
                    self.resolve(lib.get_ref()),
                    lib.span().start,
                    key("library"),
                );
                let name = raw
                    .name
                    .map(|n| self.located(n.get_ref().clone(), n.span().start, key("name")));
                let sha256 = raw
                    .sha256
                    .map(|s| {
                        parse_sha256(s.get_ref())
                            .map(|d| self.located(d, s.span().start, key("sha256")))
                            .map_err(|m| self.invalid(s.span().start, &key("sha256"), m))
                    })
                    .transpose()?;
                PluginSource::Library { path, name, sha256 }
            }
        };

        let config_toml = match raw.config {
            Some(table) => toml::to_string(&table).map_err(|e| {
                self.invalid(start, &key("config"), format!("cannot re-serialise: {e}"))
            })?,
            None => String::new(),
        };
        Ok(SlotConfig {
            kind,
            source,
            config_toml,
            line: self.line(start),
        })
    }
}

fn parse_sha256(text: &str) -> Result<[u8; 32], String> {
    let bytes = hex::decode(text.trim()).map_err(|e| format!("not a hex SHA-256 digest ({e})"))?;
    bytes.try_into().map_err(|b: Vec<u8>| {
        format!(
            "a SHA-256 digest is 64 hex digits, this has {}",
            b.len() * 2
        )
    })
}

/// The TOML parser's message on one line ("TOML parse error at line 3,
/// column 1 | ... | unknown field `x`").
fn one_paragraph(message: &str) -> String {
    message
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty() && l.trim() != "|")
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/keygate/config.toml"))
    }

    #[test]
    fn relative_paths_resolve_against_the_config_folder() {
        let c =
            parse("state_dir = \"st\"\n[plugins.store]\nlibrary = \"lib/libx.so\"\nname = \"x\"\n")
                .unwrap();
        assert_eq!(c.state_dir, Path::new("/etc/keygate/st"));
        match &c.plugins.store.source {
            PluginSource::Library { path, name, sha256 } => {
                assert_eq!(path.value, Path::new("/etc/keygate/lib/libx.so"));
                assert_eq!(name.as_ref().unwrap().value, "x");
                assert!(sha256.is_none());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn plugin_config_table_is_handed_over_as_toml() {
        let c = parse(
            "[plugins.store]\nuse = \"memory\"\n[plugins.store.config]\npath = \"a\"\nn = 3\n",
        )
        .unwrap();
        let table: toml::Table = toml::from_str(&c.plugins.store.config_toml).unwrap();
        assert_eq!(table["path"].as_str(), Some("a"));
        assert_eq!(table["n"].as_integer(), Some(3));
        assert_eq!(c.state_dir, Path::new("/etc/keygate/state"));
    }

    #[test]
    fn the_admin_api_is_off_without_its_table_and_listens_on_loopback_only() {
        let store = "[plugins.store]\nuse = \"memory\"\n";
        assert_eq!(parse(store).unwrap().admin, None);
        let on = parse(&format!("{store}[admin]\n")).unwrap();
        assert_eq!(on.admin, Some(AdminSettings::default()));
        assert_eq!(on.admin.unwrap().listen.to_string(), DEFAULT_ADMIN_LISTEN);
        let v6 = parse(&format!("{store}[admin]\nlisten = \"[::1]:0\"\n")).unwrap();
        assert_eq!(v6.admin.unwrap().listen.to_string(), "[::1]:0");
        for (listen, says) in [
            ("0.0.0.0:7800", "is not a loopback address"),
            ("192.0.2.7:7800", "is not a loopback address"),
            ("localhost:7800", "is not IP:PORT"),
            ("127.0.0.1", "is not IP:PORT"),
        ] {
            let err = parse(&format!("{store}[admin]\nlisten = \"{listen}\"\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("config.toml:4: admin.listen"), "{err}");
            assert!(err.contains(says), "{listen}: {err}");
        }
        let err = parse(&format!("{store}[admin]\ncolour = true\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 4") && err.contains("colour"), "{err}");
    }

    #[test]
    fn the_admin_api_serves_off_loopback_only_with_tls_from_the_ca_or_files() {
        let store = "[plugins.store]\nuse = \"memory\"\n";
        let admin = |lines: &str| parse(&format!("{store}[admin]\n{lines}"));
        let ca = admin("listen = \"0.0.0.0:7800\"\ntls = \"gateway-ca\"\n").unwrap();
        assert_eq!(ca.admin.unwrap().tls, AdminTls::GatewayCa { names: vec![] });
        let named = admin("tls = \"gateway-ca\"\nnames = [\"admin.example.net\", \"192.0.2.7\"]\n")
            .unwrap()
            .admin
            .unwrap();
        assert_eq!(
            named.tls,
            AdminTls::GatewayCa {
                names: vec!["admin.example.net".into(), "192.0.2.7".into()]
            }
        );
        assert!(named.tls.is_on());
        let files = admin(
            "listen = \"192.0.2.7:443\"\ntls_cert_file = \"a.pem\"\ntls_key_file = \"/k.pem\"\n",
        )
        .unwrap()
        .admin
        .unwrap();
        assert_eq!(
            files.tls,
            AdminTls::Files {
                cert: PathBuf::from("/etc/keygate/a.pem"),
                key: PathBuf::from("/k.pem"),
            }
        );
        assert_eq!(
            admin("tls = \"off\"\n").unwrap().admin.unwrap().tls,
            AdminTls::Off
        );
        assert!(!AdminTls::Off.is_on());
        for (lines, line, key, says) in [
            (
                "listen = \"0.0.0.0:1\"\ntls = \"off\"\n",
                4,
                "admin.listen",
                "not a loopback address",
            ),
            ("tls = \"yes\"\n", 4, "admin.tls", "is not \"off\""),
            (
                "tls = \"off\"\nnames = [\"a\"]\n",
                5,
                "admin.names",
                "gateway-ca",
            ),
            (
                "tls = \"gateway-ca\"\nnames = [\"a b\"]\n",
                5,
                "admin.names",
                "not a DNS name",
            ),
            (
                "tls_cert_file = \"a.pem\"\n",
                4,
                "admin.tls_key_file",
                "missing",
            ),
            (
                "tls_key_file = \"a.pem\"\n",
                4,
                "admin.tls_cert_file",
                "missing",
            ),
            (
                "tls = \"gateway-ca\"\ntls_cert_file = \"a\"\ntls_key_file = \"b\"\n",
                4,
                "admin.tls",
                "bring their own",
            ),
            (
                "names = [\"x\"]\ntls_cert_file = \"a\"\ntls_key_file = \"b\"\n",
                4,
                "admin.names",
                "carries its own",
            ),
        ] {
            let err = admin(lines).unwrap_err().to_string();
            assert!(
                err.contains(&format!("config.toml:{line}: {key}")),
                "{lines}: {err}"
            );
            assert!(err.contains(says), "{lines}: {err}");
        }
    }

    #[test]
    fn unknown_key_is_refused_with_line_and_key() {
        let err = parse("[plugins.store]\nuse = \"memory\"\nflavour = 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("/etc/keygate/config.toml"), "{err}");
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("flavour"), "{err}");
    }

    #[test]
    fn wrong_type_is_refused_with_line_and_key() {
        let err = parse("state_dir = 5\n[plugins.store]\nuse = \"memory\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1"), "{err}");
        assert!(err.contains("state_dir") || err.contains("string"), "{err}");
    }

    #[test]
    fn use_and_library_together_are_refused() {
        let err = parse("[plugins.store]\nuse = \"memory\"\nlibrary = \"x.so\"\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "/etc/keygate/config.toml:3: plugins.store.library: give either `use` (a built-in) or `library` (a file), not both"
        );
    }

    #[test]
    fn bad_sha256_is_refused() {
        let err = parse("[plugins.store]\nlibrary = \"x.so\"\nsha256 = \"abc\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("/etc/keygate/config.toml:3: plugins.store.sha256: "),
            "{err}"
        );
    }

    #[test]
    fn missing_store_slot_is_refused() {
        let err = parse("state_dir = \"s\"\n").unwrap_err().to_string();
        assert!(err.contains("plugins.store"), "{err}");
    }

    #[test]
    fn identity_settings_are_read_and_checked() {
        let c = parse("[plugins.store]\nuse = \"memory\"\n[identity]\nclient_cert_validity_hours = 2\nca_common_name = \"Lab CA\"\n").unwrap();
        assert_eq!(
            c.identity.client_validity,
            std::time::Duration::from_secs(7200)
        );
        assert_eq!(c.identity.ca_common_name, "Lab CA");
        let err = parse(
            "[plugins.store]\nuse = \"memory\"\n[identity]\nclient_cert_validity_hours = 0\n",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "/etc/keygate/config.toml:4: identity.client_cert_validity_hours: must be at least 1"
        );
    }

    #[test]
    fn change_log_settings_are_read_and_checked() {
        let c = parse(
            "[plugins.store]\nuse = \"memory\"\n[identity]\nsnapshot_interval = 8\nchange_retention = 3\nrecheck_interval_secs = 5\n",
        )
        .unwrap();
        assert_eq!(c.identity.snapshot_interval, 8);
        assert_eq!(c.identity.change_retention, 3);
        assert_eq!(
            c.identity.recheck_interval,
            std::time::Duration::from_secs(5)
        );
        let defaults = parse("[plugins.store]\nuse = \"memory\"\n").unwrap();
        assert_eq!(defaults.identity.snapshot_interval, 1024);
        assert_eq!(defaults.identity.change_retention, 4096);
        for (line, message) in [
            (
                "snapshot_interval = 0",
                "identity.snapshot_interval: must be at least 1",
            ),
            (
                "change_retention = 0",
                "identity.change_retention: must be at least 1",
            ),
            (
                "recheck_interval_secs = 90000",
                "identity.recheck_interval_secs: must be at most 86400",
            ),
        ] {
            let err = parse(&format!(
                "[plugins.store]\nuse = \"memory\"\n[identity]\n{line}\n"
            ))
            .unwrap_err()
            .to_string();
            assert_eq!(err, format!("/etc/keygate/config.toml:4: {message}"));
        }
    }

    #[test]
    fn gateway_and_pairing_defaults() {
        let c = parse("[plugins.store]\nuse = \"memory\"\n").unwrap();
        assert_eq!(c.gateway.listen.to_string(), "127.0.0.1:7443");
        let advertised: Vec<String> = c.gateway.advertise.iter().map(|a| a.to_string()).collect();
        assert_eq!(advertised, ["localhost:7443", "127.0.0.1:7443"]);
        assert_eq!(c.pairing, PairingSettings::default());
        assert_eq!(c.pairing.pin_digits, 8);
        assert_eq!(c.pairing.code_ttl, std::time::Duration::from_secs(600));
        assert_eq!(c.pairing.max_attempts, 5);
    }

    #[test]
    fn certificate_validities_and_node_settings_take_durations() {
        let c = parse("[plugins.store]\nuse = \"memory\"\n[identity]\nclient_cert_validity = \"20s\"\nserver_cert_validity = \"7d\"\n[gateway]\nheartbeat = \"5s\"\ninvoke_timeout = \"2m\"\nmax_frame_len = 65536\n").unwrap();
        assert_eq!(c.identity.client_validity, Duration::from_secs(20));
        assert_eq!(c.identity.server_validity, Duration::from_secs(7 * 86_400));
        assert_eq!(c.gateway.heartbeat, Duration::from_secs(5));
        assert_eq!(c.gateway.invoke_timeout, Duration::from_secs(120));
        assert_eq!(c.gateway.max_frame_len, 65536);
        let d = parse("[plugins.store]\nuse = \"memory\"\n").unwrap();
        assert_eq!(d.gateway.max_frame_len, DEFAULT_MAX_FRAME_LEN);
        assert_eq!(d.gateway.heartbeat, DEFAULT_HEARTBEAT);
        for (body, expected) in [
            (
                "[identity]\nclient_cert_validity = \"5s\"\n",
                ":4: identity.client_cert_validity: must be between 10s and",
            ),
            (
                "[identity]\nclient_cert_validity_hours = 2\nclient_cert_validity = \"1h\"\n",
                ":5: identity.client_cert_validity: give either",
            ),
            (
                "[identity]\nserver_cert_validity = \"soon\"\n",
                ":4: identity.server_cert_validity: \"soon\" is not a duration",
            ),
            (
                "[gateway]\nheartbeat = \"0s\"\n",
                ":4: gateway.heartbeat: must be between 1s and",
            ),
            (
                "[gateway]\nmax_frame_len = 100\n",
                ":4: gateway.max_frame_len: must be between 16384 and",
            ),
        ] {
            let text = format!("[plugins.store]\nuse = \"memory\"\n{body}");
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains(expected), "{body}: {err}");
        }
    }

    #[test]
    fn gateway_and_pairing_settings_are_read() {
        let c = parse(
            "[plugins.store]\nuse = \"memory\"\n[gateway]\nlisten = \"[::]:9000\"\nadvertise = [\"gw.example.net\", \"192.0.2.7:9443\", \"2001:db8::7\", \"[2001:db8::8]:1\"]\n[pairing]\npin_digits = 6\ncode_ttl = \"90s\"\nmax_attempts = 3\nrequest_ttl = \"2h\"\n",
        )
        .unwrap();
        assert_eq!(c.gateway.listen.to_string(), "[::]:9000");
        let advertised: Vec<String> = c.gateway.advertise.iter().map(|a| a.to_string()).collect();
        assert_eq!(
            advertised,
            [
                "gw.example.net:9000",
                "192.0.2.7:9443",
                "[2001:db8::7]:9000",
                "[2001:db8::8]:1"
            ]
        );
        assert_eq!(c.pairing.pin_digits, 6);
        assert_eq!(c.pairing.code_ttl, std::time::Duration::from_secs(90));
        assert_eq!(c.pairing.max_attempts, 3);
        assert_eq!(c.pairing.request_ttl, std::time::Duration::from_secs(7200));
        assert_eq!(
            c.pairing.rate_limit,
            crate::state::ratelimit::RateLimitSettings::default()
        );
        let c = parse(
            "[plugins.store]\nuse = \"memory\"\n[pairing]\nfree_failures = 0\nfailure_delay = \"5s\"\nmax_failure_delay = \"2m\"\nfailure_window = \"1h\"\n",
        )
        .unwrap();
        let limit = c.pairing.rate_limit;
        assert_eq!(limit.free_failures, 0);
        assert_eq!(limit.base_delay, std::time::Duration::from_secs(5));
        assert_eq!(limit.max_delay, std::time::Duration::from_secs(120));
        assert_eq!(limit.window, std::time::Duration::from_secs(3600));
        let gateway = crate::pairing::gateway::ServiceSettings::from(&c.pairing);
        assert_eq!(gateway.rate_limit, limit);
        // A first delay past the default cap raises the cap with it.
        let c = parse("[plugins.store]\nuse = \"memory\"\n[pairing]\nfailure_delay = \"5m\"\n")
            .unwrap();
        assert_eq!(
            c.pairing.rate_limit.max_delay,
            std::time::Duration::from_secs(300)
        );
        // Default advertise entries take the configured listen port.
        let c = parse("[plugins.store]\nuse = \"memory\"\n[gateway]\nlisten = \"0.0.0.0:8000\"\n")
            .unwrap();
        let advertised: Vec<String> = c.gateway.advertise.iter().map(|a| a.to_string()).collect();
        assert_eq!(advertised, ["localhost:8000", "127.0.0.1:8000"]);
    }

    #[test]
    fn bad_gateway_and_pairing_settings_name_file_line_and_field() {
        for (table, line, message) in [
            (
                "gateway",
                "listen = \"localhost:7443\"",
                "gateway.listen: \"localhost:7443\" is not IP:PORT",
            ),
            (
                "gateway",
                "listen = \"127.0.0.1:0\"",
                "gateway.listen: needs a fixed port",
            ),
            (
                "gateway",
                "advertise = []",
                "gateway.advertise: must name at least one address",
            ),
            (
                "gateway",
                "advertise = [\"bad host\"]",
                "gateway.advertise: \"bad host\" is not a gateway address",
            ),
            (
                "gateway",
                "advertise = [\"a\", \"a:7443\"]",
                "gateway.advertise: a:7443 is listed twice",
            ),
            (
                "pairing",
                "pin_digits = 5",
                "pairing.pin_digits: must be between 6 and 12, not 5",
            ),
            (
                "pairing",
                "pin_digits = 13",
                "pairing.pin_digits: must be between 6 and 12, not 13",
            ),
            (
                "pairing",
                "code_ttl = \"10\"",
                "pairing.code_ttl: \"10\" is not a duration",
            ),
            (
                "pairing",
                "code_ttl = \"29s\"",
                "pairing.code_ttl: must be between 30s and 24h, not 29s",
            ),
            (
                "pairing",
                "code_ttl = \"25h\"",
                "pairing.code_ttl: must be between 30s and 24h",
            ),
            (
                "pairing",
                "request_ttl = \"30s\"",
                "pairing.request_ttl: must be between 1m and 7d, not 30s",
            ),
            (
                "pairing",
                "max_attempts = 0",
                "pairing.max_attempts: must be between 1 and 20, not 0",
            ),
            (
                "pairing",
                "max_attempts = 21",
                "pairing.max_attempts: must be between 1 and 20, not 21",
            ),
            (
                "pairing",
                "free_failures = -1",
                "pairing.free_failures: must be between 0 and 1000, not -1",
            ),
            (
                "pairing",
                "failure_delay = \"0s\"",
                "pairing.failure_delay: must be between 1s and 600s, not 0ms",
            ),
            (
                "pairing",
                "failure_delay = \"5\"",
                "pairing.failure_delay: \"5\" is not a duration",
            ),
            (
                "pairing",
                "max_failure_delay = \"5s\"\nfailure_delay = \"10s\"",
                "pairing.max_failure_delay: must be between 10s and 3600s, not 5s",
            ),
            (
                "pairing",
                "failure_window = \"25h\"",
                "pairing.failure_window: must be between 60s and 86400s, not 90000s",
            ),
        ] {
            let err = parse(&format!(
                "[plugins.store]\nuse = \"memory\"\n[{table}]\n{line}\n"
            ))
            .unwrap_err()
            .to_string();
            assert!(
                err.starts_with(&format!("/etc/keygate/config.toml:4: {message}")),
                "{err}"
            );
        }
        let err = parse("[plugins.store]\nuse = \"memory\"\n[pairing]\npin_digit = 6\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 4") && err.contains("pin_digit"), "{err}");
    }

    #[test]
    fn name_without_library_is_refused() {
        let err = parse("[plugins.approval]\nuse = \"pin-qr\"\nname = \"x\"\n[plugins.store]\nuse = \"memory\"\n").unwrap_err().to_string();
        assert!(err.contains(":3: plugins.approval.name"), "{err}");
    }
}
