//! Validated settings for `beacon serve`, with every default and bound.
//!
//! Takes nothing from the outside world itself: the command line (see
//! [`crate::cli`]) fills a [`ServeConfig`] and calls [`ServeConfig::validate`]
//! before any socket is bound, so a bad value fails at start with a message
//! saying what to fix. Every default, and every bound on what the network
//! can make the server hold, is a named constant here; the modules that
//! apply them import them from here. It depends on nothing else of ours.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use hickory_proto::rr::Name;

/// Zone served when none is given.
pub const DEFAULT_ZONE: &str = "svc.internal.";
/// DNS address (UDP and TCP). Port 5300 collides with neither mDNS (5353)
/// nor Consul's DNS (8600), and needs no privileges.
pub const DEFAULT_DNS: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5300);
/// Heartbeat address (UDP), next to the DNS port.
pub const DEFAULT_HEARTBEAT: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5301);
/// Default HTTP endpoint (`--http`): metrics, health, the status API and
/// page; loopback only, as it has no authentication.
pub const DEFAULT_HTTP: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5380);
/// Folder of zone fragments.
pub const DEFAULT_ZONES_DIR: &str = "zones";
/// TTL of answers built from live instances, in seconds. Short, because a
/// cached answer outlives the instance it names by up to this long.
pub const DEFAULT_ANSWER_TTL: u32 = 5;
/// TTL of the SOA and NS records, in seconds.
pub const DEFAULT_SOA_TTL: u32 = 60;
/// SOA MINIMUM: with the SOA TTL, it caps how long resolvers cache a
/// negative answer (RFC 2308), so a new service is not hidden for long.
pub const DEFAULT_SOA_MINIMUM: u32 = 5;
/// SOA REFRESH: how often a secondary asks for the serial without a
/// NOTIFY. NOTIFY brings changes within a second; this bounds the lag when
/// NOTIFYs are lost (a firewall, a restarted secondary).
pub const SOA_REFRESH: i32 = 60;
/// SOA RETRY: how soon a secondary that could not reach any primary asks
/// again. Short: a primary restart takes a second.
pub const SOA_RETRY: i32 = 10;
/// SOA EXPIRE: a secondary that has reached no primary for this long
/// stops answering for the zone. Live data goes stale within a lease
/// (seconds), so a day (the usual value) would serve dead instances for a
/// day; five minutes rides out a primary's restart or a short partition
/// (five refreshes, thirty retries) and then fails loudly (SERVFAIL)
/// rather than sending clients to instances that may be gone.
pub const SOA_EXPIRE: i32 = 300;
/// Registry events the status API and page keep to show (the newest).
pub const RECENT_EVENTS: usize = 100;
/// Default `--ixfr-history`: serials whose changes are kept for IXFR. At
/// one change per publish (several per second under churn) this covers
/// minutes; a secondary further behind gets a full transfer.
pub const DEFAULT_IXFR_HISTORY: usize = 1000;
/// Most records (removed plus added) the IXFR history keeps in all,
/// whatever `--ixfr-history` says: about 100 MiB at worst.
pub const MAX_HISTORY_RECORDS: usize = 400_000;
/// Default `--notify-delay`: changes coming faster than this share one
/// NOTIFY.
pub const DEFAULT_NOTIFY_DELAY: Duration = Duration::from_millis(100);
/// First wait for a NOTIFY's acknowledgement; doubled at each retry.
pub const NOTIFY_TIMEOUT: Duration = Duration::from_millis(500);
/// Longest wait between NOTIFY retries.
pub const NOTIFY_MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Transfers served at once (each holds a copy of its zone's records
/// while it runs); more are refused until one ends.
pub const MAX_TRANSFERS: usize = 8;
/// Size a zone transfer's messages are filled to. Small, because name
/// compression (hickory-proto) keeps at most 64 names per message: with
/// 2 KiB messages an AXFR is about the size of Knot's (measured at 1,000
/// instances: 158,784 bytes beside Knot's 163,417; 16 KiB messages made
/// 252,032). A record larger than this goes alone in a message of up to
/// [`MAX_TCP_MESSAGE`] bytes less room for the TSIG record.
pub const MAX_TRANSFER_MESSAGE: u16 = 2 * 1024;
/// Idle time after which a TCP connection is closed, in seconds.
pub const DEFAULT_TCP_IDLE: u64 = 10;
/// Largest UDP reply offered to EDNS clients (DNS flag day 2020: 1232
/// bytes avoids IP fragmentation on common paths).
pub const DEFAULT_MAX_UDP_PAYLOAD: u16 = 1232;
/// Time between full rescans of the zones folder.
pub const DEFAULT_RESCAN: Duration = Duration::from_secs(30);
/// Default cap on live instances.
pub const DEFAULT_MAX_INSTANCES: usize = 100_000;

/// Lease, in seconds, when a heartbeat names none.
pub const DEFAULT_LEASE: u32 = 15;
/// Longest lease a heartbeat may ask for: one day. Anything longer is a
/// mistake (or a sender pretending to be permanent), so it is refused.
pub const MAX_LEASE: u32 = 86_400;
/// RFC 2782 weight when a sender names none (weights are relative).
pub const DEFAULT_WEIGHT: u16 = 1;
/// Longest heartbeat datagram accepted. Fits one unfragmented packet on
/// any common path, and bounds the work one sender can cause.
pub const MAX_HEARTBEAT_BYTES: usize = 1400;
/// Most metadata pairs one instance may carry.
pub const MAX_META_PAIRS: usize = 32;
/// Longest service name: `_<service>` must still be one DNS label (63
/// octets) for its SRV and DNS-SD names.
pub const MAX_SERVICE_LABEL: usize = 62;
/// Longest instance id: one DNS label.
pub const MAX_INSTANCE_LABEL: usize = 63;
/// Most tags one instance may carry (each gives DNS-SD subtype and
/// filtered names, so tags bound the names an instance creates).
pub const MAX_TAGS: usize = 16;
/// Longest tag: a DNS label short enough that the DNS-SD subtype name
/// `_<tag>._sub._<service>._tcp` fits where the instance's DNS-SD name
/// `<instance>._<service>._tcp` does (`_sub` takes 5 octets).
pub const MAX_TAG_LABEL: usize = 57;
/// Most rotation-cursor slots a service keeps for tag-filtered answers
/// (two per distinct tag up to this). Tag combinations come from
/// queries, so they share these slots (by a hash of the combination)
/// instead of growing with them.
pub const TAG_CURSOR_SLOTS: usize = 32;

/// Largest zone fragment read. A bigger file is refused with a message,
/// so a stray log or dump named `*.zone` cannot stall the loader.
pub const MAX_FRAGMENT_BYTES: u64 = 16 * 1024 * 1024;
/// Time allowed to each forwarding upstream for one query.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest DNS message over TCP (RFC 1035 §4.2.2: a two-octet length).
pub const MAX_TCP_MESSAGE: usize = 65_535;
/// More records than any DNS message can hold (65,535 bytes, at least 13
/// bytes a record): lists that do not rotate (DNS-SD service types and
/// instance lists) are built no longer than this, whatever their size.
pub const MAX_LISTED_RECORDS: usize = 5_040;

/// Audit lines (register, change, drain, deregister, expiry) written one
/// by one each second; past it they are counted and summed up once a
/// second, so a flood cannot make logging the bottleneck.
pub const AUDIT_LINES_PER_SECOND: u32 = 200;

/// Serials reserved ahead in the state directory: the stored ceiling is
/// rewritten only when the serial passes it, and a restart continues above
/// it, so a serial never goes back even after kill -9.
pub const SERIAL_RESERVE: u32 = 1000;

/// Exit status when a part of the server died (sysexits' EX_SOFTWARE), so
/// a supervisor tells a crash from a clean stop.
pub const EXIT_DIED: u8 = 70;

/// Where serials (and, later, the registry snapshot) persist when
/// `--state-dir` is not given: systemd's `$STATE_DIRECTORY`, else
/// `$XDG_STATE_HOME/beacon/<zone>`, else `~/.local/state/beacon/<zone>`.
/// Never inside the working directory, so `serve` in a checkout leaves
/// the checkout clean. `None` when no home is known.
pub fn default_state_dir(zone: &Name) -> Option<PathBuf> {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("STATE_DIRECTORY") {
        return Some(PathBuf::from(dir));
    }
    let base = var("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|home| PathBuf::from(home).join(".local/state")))?;
    let zone = zone.to_string();
    Some(base.join("beacon").join(zone.trim_end_matches('.')))
}

/// Bounds on what the network (or a careless operator) can make the server
/// hold. Each is a flag; the defaults suit one modest server. Memory for
/// answering is about `answer_cache × answering threads`, plus
/// `tcp_buffer × 2 × tcp_connections` at worst, plus the registry (~250
/// bytes an instance) and the fragments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of pre-encoded answers each answering thread keeps before it
    /// starts over (`--answer-cache`, in MiB).
    pub answer_cache: usize,
    /// TCP connections open at once; more are closed on accept
    /// (`--tcp-connections`).
    pub tcp_connections: usize,
    /// TCP connections from one address at once (`--tcp-per-client`).
    pub tcp_per_client: usize,
    /// How long a TCP query may take to arrive once its first byte has
    /// (and a new connection to send its first query): a slow client is
    /// closed (`--tcp-message-timeout`).
    pub tcp_message_timeout: Duration,
    /// Bytes buffered per TCP connection each way, beyond one message: a
    /// client that stops reading its replies stops being read, then is
    /// closed (`--tcp-buffer`, in KiB).
    pub tcp_buffer: usize,
    /// Forwarded queries waiting for an upstream at once; more get
    /// SERVFAIL (`--forward-concurrency`).
    pub forward_concurrency: usize,
    /// UDP queries waiting for the general path at once; more are dropped
    /// (`--general-queue`).
    pub general_queue: usize,
    /// Records from all zone fragments together; a file that would go
    /// past it is refused (`--max-static-records`).
    pub static_records: usize,
    /// Live instances in one service (`--max-instances-per-service`).
    pub instances_per_service: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            answer_cache: 32 * 1024 * 1024,
            // BIND allows 150 TCP clients, Knot a share of its descriptors:
            // a thousand is plenty for resolvers that reuse connections.
            tcp_connections: 1_000,
            tcp_per_client: 32,
            tcp_message_timeout: Duration::from_secs(2),
            tcp_buffer: 64 * 1024,
            forward_concurrency: 256,
            general_queue: 1024,
            static_records: 2_000_000,
            instances_per_service: 25_000,
        }
    }
}

/// Networks allowed to use forwarding by default: loopback only, so that
/// beacon is never an open resolver.
pub fn default_forward_allow() -> Vec<ipnet::IpNet> {
    vec![
        ipnet::IpNet::V4(ipnet::Ipv4Net::new(Ipv4Addr::new(127, 0, 0, 0), 8).unwrap_or_default()),
        ipnet::IpNet::V6(
            ipnet::Ipv6Net::new(std::net::Ipv6Addr::LOCALHOST, 128).unwrap_or_default(),
        ),
    ]
}

/// Everything `beacon serve` needs, validated.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The served zone, absolute, lower case.
    pub zone: Name,
    /// Where DNS listens (UDP and TCP on the same port).
    pub dns: SocketAddr,
    /// The HTTP endpoint, if any (`--http`).
    pub http: Option<SocketAddr>,
    /// Where dnstap messages go, if anywhere (`--dnstap`).
    pub dnstap: Option<PathBuf>,
    /// Where heartbeats arrive (UDP).
    pub heartbeat: SocketAddr,
    /// Folder of zone fragments; it may be missing.
    pub zones_dir: PathBuf,
    /// TTL of answers from live instances (capped by each instance's lease).
    pub answer_ttl: u32,
    /// Cap on live instances.
    pub max_instances: usize,
    /// SOA MNAME and the apex NS target.
    pub primary_ns: Name,
    /// SOA RNAME (the contact mailbox, `hostmaster.svc.internal.` form).
    pub contact: Name,
    /// Addresses served for `primary_ns` when it lies inside the zone.
    pub ns_addrs: Vec<IpAddr>,
    /// TTL of SOA and NS records.
    pub soa_ttl: u32,
    /// SOA MINIMUM (negative-caching TTL, capped by `soa_ttl`).
    pub soa_minimum: u32,
    /// TCP idle timeout in seconds.
    pub tcp_idle: u64,
    /// Time between full rescans of the zones folder.
    pub rescan: std::time::Duration,
    /// Reverse zones served with PTR records for live instances.
    pub reverse_zones: Vec<Name>,
    /// Upstreams for names outside our zones (none: REFUSED).
    pub forward: Vec<SocketAddr>,
    /// Clients whose questions may be forwarded.
    pub forward_allow: Vec<ipnet::IpNet>,
    /// Largest UDP reply offered to EDNS clients.
    pub max_udp_payload: u16,
    /// UDP answering threads (one SO_REUSEPORT socket each).
    pub udp_workers: usize,
    /// Whether common UDP queries are answered from pre-encoded replies.
    pub fast_path: bool,
    /// Most A/AAAA/SRV records in one answer (a rotated window); `None`
    /// sends the whole RRset when it fits.
    pub max_answers: Option<usize>,
    /// Where the SOA serial persists, and whether that place was chosen
    /// by the user (an unusable explicit one stops the server at start).
    pub state_dir: StateDir,
    /// Bounds on what the network can make the server hold.
    pub limits: Limits,
    /// Response rate limiting for UDP: responses a second per client
    /// network and answer class (0: off).
    pub rrl: u32,
    /// Every this many rate-limited responses, one goes out truncated.
    pub rrl_slip: u32,
    /// Who may register which service (keys, scopes, mode, clock window).
    pub auth: crate::auth::Policy,
    /// The mass-failure guard: expiry never takes a service below this
    /// share of its recent peak (0: off).
    pub protect_threshold: f64,
    /// How far back the peak is taken.
    pub protect_window: std::time::Duration,
    /// Longest an instance is kept stale.
    pub protect_max: std::time::Duration,
    /// Zone transfers and NOTIFY.
    pub transfer: TransferConfig,
    /// DNS UPDATE: who may send it, and the leases it gets.
    pub update: UpdateConfig,
}

/// Lease of an instance registered by DNS UPDATE without the update-lease
/// option (RFC 9664): an hour, so a client that registered once and went
/// away leaves within the hour, while one that renews (as SRP clients do)
/// stays.
pub const DEFAULT_UPDATE_LEASE: u32 = 3600;
/// Shortest lease an UPDATE is granted: RFC 9664 §4 asks servers not to
/// grant less than 30 s, so a client's renewals stay rare.
pub const DEFAULT_MIN_LEASE: u32 = 30;
/// Longest lease an UPDATE is granted: a day, the registry's own bound
/// ([`MAX_LEASE`]).
pub const DEFAULT_MAX_LEASE: u32 = MAX_LEASE;
/// Most UPDATE messages waiting for the intake; past it they get SERVFAIL
/// (the client retries), so a flood cannot queue without bound.
pub const UPDATE_QUEUE: usize = 256;
/// Longest an UPDATE waits for the intake before SERVFAIL.
pub const UPDATE_TIMEOUT: Duration = Duration::from_secs(5);

/// Who may send DNS UPDATE, and the leases it gets.
#[derive(Debug, Clone)]
pub struct UpdateConfig {
    /// Client networks whose unsigned UPDATEs are accepted when no keys
    /// are configured (`--allow-update`; none by default).
    pub allow: Vec<ipnet::IpNet>,
    /// Lease without the update-lease option (`--update-lease`).
    pub default_lease: u32,
    /// Bounds on granted leases (`--min-lease`, `--max-lease`).
    pub min_lease: u32,
    /// See `min_lease`.
    pub max_lease: u32,
}

impl Default for UpdateConfig {
    fn default() -> Self {
        UpdateConfig {
            allow: Vec::new(),
            default_lease: DEFAULT_UPDATE_LEASE,
            min_lease: DEFAULT_MIN_LEASE,
            max_lease: DEFAULT_MAX_LEASE,
        }
    }
}

impl UpdateConfig {
    /// The lease granted for a requested one (`None`: the option was absent).
    pub fn grant(&self, requested: Option<u32>) -> u32 {
        requested
            .unwrap_or(self.default_lease)
            .clamp(self.min_lease, self.max_lease)
    }
}

/// Who may transfer the zones, and whom to notify of changes.
#[derive(Debug, Clone)]
pub struct TransferConfig {
    /// Client networks allowed to transfer (`--allow-transfer`; none by
    /// default).
    pub allow: Vec<ipnet::IpNet>,
    /// The key transfers must be signed with (`--transfer-key`), a name in
    /// the keyring.
    pub key: Option<String>,
    /// Secondaries to NOTIFY after each change (`--notify`).
    pub notify: Vec<SocketAddr>,
    /// Changes within this time share one NOTIFY (`--notify-delay`).
    pub notify_delay: Duration,
    /// Serials of changes kept for IXFR (`--ixfr-history`).
    pub ixfr_history: usize,
}

impl Default for TransferConfig {
    fn default() -> Self {
        TransferConfig {
            allow: Vec::new(),
            key: None,
            notify: Vec::new(),
            notify_delay: DEFAULT_NOTIFY_DELAY,
            ixfr_history: DEFAULT_IXFR_HISTORY,
        }
    }
}

impl TransferConfig {
    /// True when anyone may transfer or be notified: only then is the
    /// change history kept.
    pub fn enabled(&self) -> bool {
        !self.allow.is_empty() || !self.notify.is_empty()
    }
}

/// Default protect threshold: a service keeps at least half of the most
/// instances it had in the protect window when leases run out at once.
/// Half, because losing more than half of a service's heartbeats within
/// one lease is far more often a network problem between the senders and
/// beacon than a crash of most instances, and a service of two survives
/// losing one.
pub const DEFAULT_PROTECT_THRESHOLD: f64 = 0.5;

/// Default protect window: the peak is the most instances within 5 minutes.
pub const DEFAULT_PROTECT_WINDOW: std::time::Duration = std::time::Duration::from_secs(300);

/// Default longest time an instance stays stale: an hour.
pub const DEFAULT_PROTECT_MAX: std::time::Duration = std::time::Duration::from_secs(3600);

/// How far a signed heartbeat's `ts` may be from the server's clock.
pub const DEFAULT_AUTH_WINDOW: std::time::Duration = std::time::Duration::from_secs(30);

/// Widest `--auth-window` accepted: a replayed heartbeat is refused only
/// once its timestamp is this old.
pub const MAX_AUTH_WINDOW: std::time::Duration = std::time::Duration::from_secs(3600);

/// Default RRL slip: every second limited response goes out truncated, as
/// BIND does.
pub const DEFAULT_RRL_SLIP: u32 = 2;

/// Where state persists across restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateDir {
    /// Given with `--state-dir`: it must be usable.
    Explicit(PathBuf),
    /// The default place: used if it can be, with a warning if not.
    Default(PathBuf),
    /// Nothing persists (`--state-dir off`, or no home directory).
    Off,
}

/// Longest zone name, in wire octets, that leaves room for the longest
/// name heartbeats create: an instance label (1 + 63 octets), `_<service>`
/// (1 + 63) and `_tcp` (1 + 4) in 255 octets.
pub const MAX_ZONE_WIRE_LEN: usize = 255 - 64 - 64 - 5;

/// Length of `name` in wire octets (labels with their length octets,
/// and the root's zero octet).
pub fn zone_wire_len(name: &Name) -> usize {
    name.iter().map(|label| label.len() + 1).sum::<usize>() + 1
}

/// Most UDP workers allowed: beyond the CPU count they only add switching.
pub const MAX_UDP_WORKERS: usize = 256;

/// One UDP worker per CPU this process may run on (a `taskset` or cgroup
/// limit counts).
fn default_udp_workers() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// A setting that cannot be used, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value is out of range or malformed.
    #[error("{flag}: {reason}")]
    Invalid {
        /// The flag (or setting) at fault.
        flag: &'static str,
        /// What is wrong and what would be right.
        reason: String,
    },
    /// A key file cannot be used (the message has its file and line).
    #[error("{0}")]
    Keys(#[from] crate::keys::KeyError),
}

fn invalid(flag: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        flag,
        reason: reason.into(),
    }
}

/// Parses a domain name given on the command line, making it absolute and
/// lower case.
///
/// # Errors
/// A sentence saying why the text is not a domain name.
pub fn parse_domain(text: &str) -> Result<Name, String> {
    let mut name =
        Name::from_ascii(text).map_err(|e| format!("`{text}` is not a domain name: {e}"))?;
    name.set_fqdn(true);
    Ok(name.to_lowercase())
}

/// Parses a contact: either a mailbox (`hostmaster@example.com`) or the SOA
/// RNAME form (`hostmaster.example.com.`).
///
/// # Errors
/// A sentence saying why the text is not a contact.
pub fn parse_contact(text: &str) -> Result<Name, String> {
    match text.split_once('@') {
        Some((local, domain)) => {
            if local.is_empty() || local.contains('.') {
                return Err(format!(
                    "`{text}`: the part before @ must be one non-empty label without dots"
                ));
            }
            parse_domain(&format!("{local}.{domain}"))
        }
        None => parse_domain(text),
    }
}

impl ServeConfig {
    /// Checks the bounds: each must leave the server able to work.
    fn validate_limits(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        let at_least = |flag, value: usize, min: usize, unit: &str| {
            if value < min {
                Err(invalid(flag, format!("must be at least {min}{unit}")))
            } else {
                Ok(())
            }
        };
        at_least("--answer-cache", l.answer_cache, 1024 * 1024, " MiB (1)")?;
        at_least("--tcp-connections", l.tcp_connections, 1, "")?;
        at_least("--tcp-per-client", l.tcp_per_client, 1, "")?;
        at_least("--tcp-buffer", l.tcp_buffer, 1024, " KiB (1)")?;
        at_least("--forward-concurrency", l.forward_concurrency, 1, "")?;
        at_least("--general-queue", l.general_queue, 1, "")?;
        at_least(
            "--max-instances-per-service",
            l.instances_per_service,
            1,
            "",
        )?;
        if l.tcp_message_timeout.is_zero() {
            return Err(invalid(
                "--tcp-message-timeout",
                "must be more than 0 seconds",
            ));
        }
        if l.tcp_per_client > l.tcp_connections {
            return Err(invalid(
                "--tcp-per-client",
                format!(
                    "{} is more than --tcp-connections ({})",
                    l.tcp_per_client, l.tcp_connections
                ),
            ));
        }
        Ok(())
    }

    /// The embedded default: zone `svc.internal.` on loopback ports.
    pub fn new(zone: Name) -> Self {
        let primary_ns = Name::from_ascii("ns")
            .and_then(|ns| ns.append_domain(&zone))
            .unwrap_or_else(|_| zone.clone());
        let contact = Name::from_ascii("hostmaster")
            .and_then(|h| h.append_domain(&zone))
            .unwrap_or_else(|_| zone.clone());
        let state_dir = default_state_dir(&zone).map_or(StateDir::Off, StateDir::Default);
        ServeConfig {
            zone,
            dns: DEFAULT_DNS,
            http: Some(DEFAULT_HTTP),
            dnstap: None,
            heartbeat: DEFAULT_HEARTBEAT,
            zones_dir: PathBuf::from(DEFAULT_ZONES_DIR),
            answer_ttl: DEFAULT_ANSWER_TTL,
            max_instances: DEFAULT_MAX_INSTANCES,
            primary_ns,
            contact,
            ns_addrs: Vec::new(),
            soa_ttl: DEFAULT_SOA_TTL,
            soa_minimum: DEFAULT_SOA_MINIMUM,
            tcp_idle: DEFAULT_TCP_IDLE,
            rescan: DEFAULT_RESCAN,
            reverse_zones: Vec::new(),
            forward: Vec::new(),
            forward_allow: default_forward_allow(),
            max_udp_payload: DEFAULT_MAX_UDP_PAYLOAD,
            udp_workers: default_udp_workers(),
            fast_path: true,
            max_answers: None,
            state_dir,
            limits: Limits::default(),
            rrl: 0,
            rrl_slip: DEFAULT_RRL_SLIP,
            auth: crate::auth::Policy::open(),
            protect_threshold: DEFAULT_PROTECT_THRESHOLD,
            protect_window: DEFAULT_PROTECT_WINDOW,
            protect_max: DEFAULT_PROTECT_MAX,
            transfer: TransferConfig::default(),
            update: UpdateConfig::default(),
        }
    }

    /// The negative-caching TTL put on the SOA of NXDOMAIN and NODATA
    /// answers: min(SOA TTL, SOA MINIMUM), as RFC 2308 §5 asks.
    pub fn negative_ttl(&self) -> u32 {
        self.soa_ttl.min(self.soa_minimum)
    }

    /// The service name reserved by the primary name server's host name,
    /// when that host sits directly under the zone (`ns.svc.internal.`).
    pub fn reserved_service(&self) -> Option<String> {
        if self.zone.zone_of(&self.primary_ns)
            && self.primary_ns.num_labels() == self.zone.num_labels() + 1
        {
            self.primary_ns
                .iter()
                .next()
                .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
        } else {
            None
        }
    }

    /// Checks every value; call before binding anything.
    ///
    /// # Errors
    /// The first setting that cannot work, with what to change.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let u = &self.update;
        if u.min_lease == 0 || u.max_lease > MAX_LEASE || u.min_lease > u.max_lease {
            return Err(invalid(
                "--min-lease",
                format!(
                    "leases must satisfy 1 <= --min-lease ({}) <= --max-lease ({}) <= {MAX_LEASE}",
                    u.min_lease, u.max_lease
                ),
            ));
        }
        if u.default_lease == 0 || u.default_lease > MAX_LEASE {
            return Err(invalid(
                "--update-lease",
                format!("must be 1 to {MAX_LEASE} seconds"),
            ));
        }
        if self.zone.is_root() {
            return Err(invalid(
                "--zone",
                "the root zone cannot be served; name a zone such as svc.internal",
            ));
        }
        // The longest name heartbeats create, `<instance>._<service>._tcp.<zone>`,
        // must fit in 255 octets.
        if zone_wire_len(&self.zone) > MAX_ZONE_WIRE_LEN {
            return Err(invalid(
                "--zone",
                format!(
                    "`{}` is too long to leave room for <instance>._<service>._tcp labels (at most {} characters)",
                    self.zone,
                    MAX_ZONE_WIRE_LEN - 1
                ),
            ));
        }
        if self.dns == self.heartbeat && self.dns.port() != 0 {
            return Err(invalid(
                "--heartbeat",
                format!(
                    "{} is also the DNS address; give heartbeats their own port",
                    self.dns
                ),
            ));
        }
        if self.answer_ttl > 86_400 {
            return Err(invalid(
                "--answer-ttl",
                format!("{} s is over one day (86400 s)", self.answer_ttl),
            ));
        }
        if self.max_instances == 0 {
            return Err(invalid("--max-instances", "must be at least 1"));
        }
        if let Some(key) = &self.transfer.key
            && self.auth.keyring().get(key).is_none()
        {
            let known = self.auth.keyring().names().join(", ");
            return Err(invalid(
                "--transfer-key",
                if known.is_empty() {
                    format!("key `{key}` needs a key file with it: add --keys FILE")
                } else {
                    format!("no key `{key}` in --keys (known: {known})")
                },
            ));
        }
        if self.transfer.ixfr_history == 0 {
            return Err(invalid(
                "--ixfr-history",
                "must be at least 1 (a secondary then gets the whole zone when more than one change behind)",
            ));
        }
        if self.soa_ttl > 86_400 || self.soa_minimum > 86_400 {
            return Err(invalid("--soa-ttl/--soa-minimum", "at most 86400 s"));
        }
        let in_addr = parse_domain("in-addr.arpa").map_err(|e| invalid("--reverse-zone", e))?;
        let ip6 = parse_domain("ip6.arpa").map_err(|e| invalid("--reverse-zone", e))?;
        for reverse in &self.reverse_zones {
            if !(in_addr.zone_of(reverse) || ip6.zone_of(reverse)) {
                return Err(invalid(
                    "--reverse-zone",
                    format!(
                        "{reverse} is not under in-addr.arpa. or ip6.arpa. (for 10.0.0.0/8 use 10.in-addr.arpa)"
                    ),
                ));
            }
            if reverse.zone_of(&self.zone) || self.zone.zone_of(reverse) {
                return Err(invalid(
                    "--reverse-zone",
                    format!("{reverse} overlaps the zone {}", self.zone),
                ));
            }
            if self
                .reverse_zones
                .iter()
                .filter(|other| other.zone_of(reverse) || reverse.zone_of(other))
                .count()
                > 1
            {
                return Err(invalid(
                    "--reverse-zone",
                    format!("{reverse} overlaps another reverse zone"),
                ));
            }
        }
        for upstream in &self.forward {
            if *upstream == self.dns || upstream.port() == 0 {
                return Err(invalid(
                    "--forward",
                    format!(
                        "{upstream} is beacon itself or has no port: forwarding there would loop or go nowhere"
                    ),
                ));
            }
        }
        if !(512..=4096).contains(&self.max_udp_payload) {
            return Err(invalid(
                "--max-udp-payload",
                format!(
                    "{} bytes is outside 512..=4096 (1232 avoids fragmentation)",
                    self.max_udp_payload
                ),
            ));
        }
        if !(1..=MAX_UDP_WORKERS).contains(&self.udp_workers) {
            return Err(invalid(
                "--udp-workers",
                format!(
                    "{} is outside 1..={MAX_UDP_WORKERS} (one per CPU is usual)",
                    self.udp_workers
                ),
            ));
        }
        self.validate_limits()?;
        if self.rrl > (1 << 24) - 1 {
            return Err(invalid("--rrl", "at most 16777215 responses a second"));
        }
        if self.rrl_slip > 255 {
            return Err(invalid(
                "--rrl-slip",
                "0 to 255 (0: drop every limited response)",
            ));
        }
        if self.max_answers == Some(0) {
            return Err(invalid(
                "--max-answers",
                "must be at least 1 (leave it out for no cap)",
            ));
        }
        if self.rescan.is_zero() {
            return Err(invalid("--rescan", "must be more than 0 seconds"));
        }
        if self.tcp_idle == 0 {
            return Err(invalid("--tcp-idle", "must be at least 1 second"));
        }
        let ns_in_zone = self.zone.zone_of(&self.primary_ns);
        if ns_in_zone && self.ns_addrs.is_empty() {
            return Err(invalid(
                "--ns-addr",
                format!(
                    "the name server {} lies inside the zone, so it needs an address: pass --ns-addr IP (or listen on a specific --dns address)",
                    self.primary_ns
                ),
            ));
        }
        if ns_in_zone && self.reserved_service().is_none() {
            return Err(invalid(
                "--soa-primary",
                format!(
                    "{} must be directly under the zone (like ns.{}) or outside it",
                    self.primary_ns, self.zone
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_once_the_ns_has_an_address() {
        let mut cfg = ServeConfig::new(parse_domain("svc.internal").expect("name"));
        assert!(cfg.validate().is_err());
        cfg.ns_addrs.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
        cfg.validate().expect("valid");
        assert_eq!(cfg.primary_ns.to_string(), "ns.svc.internal.");
        assert_eq!(cfg.contact.to_string(), "hostmaster.svc.internal.");
        assert_eq!(cfg.reserved_service().as_deref(), Some("ns"));
        assert_eq!(cfg.negative_ttl(), 5);
    }

    #[test]
    fn contact_accepts_mailbox_and_rname() {
        assert_eq!(
            parse_contact("ops@Example.com").expect("ok").to_string(),
            "ops.example.com."
        );
        assert_eq!(
            parse_contact("ops.example.com").expect("ok").to_string(),
            "ops.example.com."
        );
        assert!(parse_contact("a.b@example.com").is_err());
    }

    #[test]
    fn rejects_bad_values_with_the_flag_name() {
        let mut cfg = ServeConfig::new(parse_domain("svc.internal").expect("name"));
        cfg.ns_addrs.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
        cfg.heartbeat = cfg.dns;
        assert!(
            cfg.validate()
                .expect_err("same port")
                .to_string()
                .starts_with("--heartbeat")
        );
        cfg.heartbeat = DEFAULT_HEARTBEAT;
        cfg.max_instances = 0;
        assert!(
            cfg.validate()
                .expect_err("cap")
                .to_string()
                .starts_with("--max-instances")
        );
    }
}
