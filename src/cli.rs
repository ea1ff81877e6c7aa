//! The command line: what the user typed, turned into validated settings.
//!
//! Takes the process arguments (through clap); produces a [`ServeConfig`] or
//! a [`BeatConfig`]. Every value is checked here or in
//! [`ServeConfig::validate`], before anything is bound or sent, and an error
//! names the flag and what would be accepted.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use hickory_proto::rr::Name;

use crate::auth::{Mode, Policy, Scope};
use crate::beat::{self, BeatConfig};
use crate::config::{self, Limits, ServeConfig};
use crate::intake::wire;
use crate::keys::{Algorithm, Keyring};
use crate::probe::Probe;
use crate::registry::announcement::{self, Announcement, Proto, State};

/// beacon: an authoritative DNS server for service discovery.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
pub struct Cli {
    /// Log lines as text, or as one JSON object per line (for log
    /// shippers; the same fields).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the zone over DNS, fed by heartbeats and zone fragments.
    Serve(Box<ServeArgs>),
    /// Announce one instance: send heartbeats until stopped, then "down".
    Beat(BeatArgs),
    /// Check the zone fragments of a folder; exit non-zero on any problem.
    Check(CheckArgs),
    /// Print a new random key in BIND's key-file format (for --keys,
    /// `beat --key-file`, nsupdate -k and named).
    Keygen(KeygenArgs),
    /// Show what a running server has registered, as a table.
    Status(StatusArgs),
}

/// Flags of `beacon status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The server's HTTP endpoint.
    #[arg(long, value_name = "ADDR:PORT", default_value_t = config::DEFAULT_HTTP)]
    pub http: SocketAddr,
}

/// Flags of `beacon keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// The key's name (letters, digits, `-`, `_`, `.`), such as web-team.
    pub name: String,
    /// HMAC algorithm.
    #[arg(long, value_enum, default_value_t = AlgorithmArg::HmacSha256)]
    pub algorithm: AlgorithmArg,
}

/// `--algorithm` of `beacon keygen`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AlgorithmArg {
    /// HMAC with SHA-256 (32-byte secret).
    HmacSha256,
    /// HMAC with SHA-384 (48-byte secret).
    HmacSha384,
    /// HMAC with SHA-512 (64-byte secret).
    HmacSha512,
}

impl From<AlgorithmArg> for Algorithm {
    fn from(arg: AlgorithmArg) -> Algorithm {
        match arg {
            AlgorithmArg::HmacSha256 => Algorithm::HmacSha256,
            AlgorithmArg::HmacSha384 => Algorithm::HmacSha384,
            AlgorithmArg::HmacSha512 => Algorithm::HmacSha512,
        }
    }
}

/// `--auth` of `beacon serve`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AuthArg {
    /// Only signed heartbeats are accepted.
    Required,
    /// Unsigned heartbeats are accepted too, but never change an instance a key registered.
    Optional,
}

/// Flags of `beacon check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Folder of zone fragments.
    #[arg(default_value = config::DEFAULT_ZONES_DIR)]
    pub dir: PathBuf,
    /// Check this `serve` configuration file instead (every key, value
    /// and key file), without starting anything.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Zone the fragments belong to.
    #[arg(long, default_value = config::DEFAULT_ZONE, value_parser = config::parse_domain)]
    pub zone: Name,
}

/// Flags of `beacon serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML file whose keys are these flags (`zone = "svc.internal."`,
    /// lists for repeatable flags); flags given here win.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Zone to serve.
    #[arg(long, default_value = config::DEFAULT_ZONE, value_parser = config::parse_domain)]
    pub zone: Name,
    /// DNS address, UDP and TCP (port 0 picks a free port).
    #[arg(long, value_name = "ADDR:PORT", default_value_t = config::DEFAULT_DNS)]
    pub dns: SocketAddr,
    /// Heartbeat address, UDP (port 0 picks a free port).
    #[arg(long, value_name = "ADDR:PORT", default_value_t = config::DEFAULT_HEARTBEAT)]
    pub heartbeat: SocketAddr,
    /// HTTP endpoint for metrics, health probes, the status API and page
    /// (`off` for none; port 0 picks a free port).
    #[arg(long, value_name = "ADDR:PORT|off", default_value = "127.0.0.1:5380", value_parser = parse_http)]
    pub http: HttpArg,
    /// Write every query and reply as dnstap (Frame Streams) to this file,
    /// for `dnstap-read` and other dnstap tools [default: off].
    #[arg(long, value_name = "FILE")]
    pub dnstap: Option<PathBuf>,
    /// Folder of zone fragments (may be missing).
    #[arg(long, value_name = "DIR", default_value = config::DEFAULT_ZONES_DIR)]
    pub zones: PathBuf,
    /// TTL of answers about live instances, in seconds (never more than an instance's own ttl).
    #[arg(long, value_name = "SECS", default_value_t = config::DEFAULT_ANSWER_TTL)]
    pub answer_ttl: u32,
    /// Most live instances; heartbeats from new instances beyond it are refused.
    #[arg(long, value_name = "N", default_value_t = config::DEFAULT_MAX_INSTANCES)]
    pub max_instances: usize,
    /// Primary name server (SOA MNAME and apex NS) [default: ns.<zone>].
    #[arg(long, value_name = "NAME", value_parser = config::parse_domain)]
    pub soa_primary: Option<Name>,
    /// Zone contact, as a mailbox or SOA RNAME [default: hostmaster@<zone>].
    #[arg(long, value_name = "MAILBOX", value_parser = config::parse_contact)]
    pub soa_contact: Option<Name>,
    /// Address of the primary name server when it is inside the zone
    /// (repeatable) [default: the --dns address, unless it is 0.0.0.0 or ::].
    #[arg(long, value_name = "IP")]
    pub ns_addr: Vec<IpAddr>,
    /// TTL of the SOA and NS records, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = config::DEFAULT_SOA_TTL)]
    pub soa_ttl: u32,
    /// SOA MINIMUM, in seconds: negative answers are cached for min(this, --soa-ttl).
    #[arg(long, value_name = "SECS", default_value_t = config::DEFAULT_SOA_MINIMUM)]
    pub soa_minimum: u32,
    /// Seconds a TCP connection may stay idle before it is closed.
    #[arg(long, value_name = "SECS", default_value_t = config::DEFAULT_TCP_IDLE)]
    pub tcp_idle: u64,
    /// Seconds between full rescans of the zones folder (a safety net for
    /// changes the file watcher misses; fractions allowed).
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = parse_seconds)]
    pub rescan: Duration,
    /// Reverse zone to serve PTR records in for live instances' addresses,
    /// such as 10.in-addr.arpa or 8.b.d.0.1.0.0.2.ip6.arpa (repeatable).
    #[arg(long, value_name = "NAME", value_parser = config::parse_domain)]
    pub reverse_zone: Vec<Name>,
    /// Upstream DNS server for every name outside our zones (repeatable,
    /// tried in order). Without it such names are REFUSED. Never taken
    /// from the system's resolv.conf.
    #[arg(long, value_name = "ADDR:PORT")]
    pub forward: Vec<SocketAddr>,
    /// Network whose clients may use forwarding (repeatable)
    /// [default: 127.0.0.0/8 and ::1/128].
    #[arg(long, value_name = "CIDR")]
    pub forward_allow: Vec<ipnet::IpNet>,
    /// Largest UDP reply offered to EDNS clients, in bytes (512 to 4096).
    #[arg(long, value_name = "BYTES", default_value_t = config::DEFAULT_MAX_UDP_PAYLOAD)]
    pub max_udp_payload: u16,
    /// UDP answering threads, each with its own SO_REUSEPORT socket
    /// [default: the CPUs this process may run on].
    #[arg(long, value_name = "N")]
    pub udp_workers: Option<usize>,
    /// Most A, AAAA and SRV records in one answer: a window that rotates
    /// through the whole set, so big services fit UDP [default: no cap].
    #[arg(long, value_name = "N")]
    pub max_answers: Option<usize>,
    /// Folder for state that outlives restarts (the SOA serial), or `off`
    /// [default: $STATE_DIRECTORY, else $XDG_STATE_HOME/beacon/<zone>,
    /// else ~/.local/state/beacon/<zone>].
    #[arg(long, value_name = "DIR|off")]
    pub state_dir: Option<PathBuf>,
    /// Most live instances in one service; more are refused.
    #[arg(long, value_name = "N", default_value_t = Limits::default().instances_per_service)]
    pub max_instances_per_service: usize,
    /// MiB of pre-encoded answers each answering thread keeps before it
    /// starts over.
    #[arg(long, value_name = "MIB", default_value_t = Limits::default().answer_cache >> 20)]
    pub answer_cache: usize,
    /// Most TCP connections open at once.
    #[arg(long, value_name = "N", default_value_t = Limits::default().tcp_connections)]
    pub tcp_connections: usize,
    /// Most TCP connections from one client address at once.
    #[arg(long, value_name = "N", default_value_t = Limits::default().tcp_per_client)]
    pub tcp_per_client: usize,
    /// Seconds a TCP query may take to arrive once its first byte has (and
    /// a new connection to send its first query); slower clients are
    /// closed (fractions allowed).
    #[arg(long, value_name = "SECS", default_value = "2", value_parser = parse_seconds)]
    pub tcp_message_timeout: Duration,
    /// KiB buffered per TCP connection each way beyond one message: a
    /// client that stops reading its replies stops being read.
    #[arg(long, value_name = "KIB", default_value_t = Limits::default().tcp_buffer >> 10)]
    pub tcp_buffer: usize,
    /// Forwarded queries waiting for an upstream at once; more get SERVFAIL.
    #[arg(long, value_name = "N", default_value_t = Limits::default().forward_concurrency)]
    pub forward_concurrency: usize,
    /// UDP queries waiting for the general path (rare shapes, forwarding)
    /// at once; more are dropped.
    #[arg(long, value_name = "N", default_value_t = Limits::default().general_queue)]
    pub general_queue: usize,
    /// Records from all zone fragments together; a file that would go past
    /// it is refused (its last good version keeps serving).
    #[arg(long, value_name = "N", default_value_t = Limits::default().static_records)]
    pub max_static_records: usize,
    /// Response rate limiting for UDP: responses a second per client
    /// network (/24, /56) and answer class; 0 turns it off.
    #[arg(long, value_name = "RATE", default_value_t = 0)]
    pub rrl: u32,
    /// Every Nth rate-limited response goes out truncated (a real client
    /// then asks over TCP); the others are dropped. 0 drops them all.
    #[arg(long, value_name = "N", default_value_t = config::DEFAULT_RRL_SLIP)]
    pub rrl_slip: u32,
    /// Answer common UDP queries from pre-encoded replies (`off`: every
    /// query takes the general path; for comparison and debugging).
    #[arg(long, value_name = "on|off", default_value = "on", value_parser = parse_switch, action = clap::ArgAction::Set)]
    pub fast_path: bool,
    /// Key file (BIND `key "NAME" { ... };` blocks, or Knot's
    /// `hmac-sha256:NAME:SECRET` lines); repeatable. With keys,
    /// heartbeats must be signed. SIGHUP reads the files again.
    #[arg(long, value_name = "FILE")]
    pub keys: Vec<PathBuf>,
    /// The services a key may register: shell-style patterns on service
    /// names, such as `web-team=web,web-*` (repeatable; a key without a
    /// scope may register any service).
    #[arg(long, value_name = "NAME=PATTERN[,PATTERN...]", value_parser = Scope::parse)]
    pub key_scope: Vec<Scope>,
    /// Whether heartbeats must be signed once keys are configured
    /// (`optional` accepts unsigned ones too, for migrating a fleet)
    /// [default: required when keys are given].
    #[arg(long, value_enum)]
    pub auth: Option<AuthArg>,
    /// Mass-failure guard: when leases running out at once would leave a
    /// service with fewer instances than this share of its recent peak,
    /// they stay in the answers, stale (0 turns it off; at most 1).
    #[arg(long, value_name = "RATIO", default_value_t = config::DEFAULT_PROTECT_THRESHOLD, value_parser = parse_ratio)]
    pub protect_threshold: f64,
    /// Seconds back the peak of --protect-threshold is taken from.
    #[arg(long, value_name = "SECS", default_value = "300", value_parser = parse_seconds)]
    pub protect_window: Duration,
    /// Longest an instance is kept stale by --protect-threshold, in seconds.
    #[arg(long, value_name = "SECS", default_value = "3600", value_parser = parse_seconds)]
    pub protect_max: Duration,
    /// Seconds a signed heartbeat's timestamp may be from the server's
    /// clock, either way.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = parse_seconds)]
    pub auth_window: Duration,
    /// Clients (networks) allowed to transfer the zones by AXFR and IXFR
    /// over TCP; repeatable [default: none].
    #[arg(long, value_name = "CIDR")]
    pub allow_transfer: Vec<ipnet::IpNet>,
    /// A key from --keys that transfers must be TSIG-signed with; replies
    /// are signed with it [default: transfers are not signed].
    #[arg(long, value_name = "NAME")]
    pub transfer_key: Option<String>,
    /// A secondary to send NOTIFY to after each change (ADDR:PORT);
    /// repeatable.
    #[arg(long, value_name = "ADDR:PORT")]
    pub notify: Vec<SocketAddr>,
    /// Seconds changes wait to share one NOTIFY (fractions allowed).
    #[arg(long, value_name = "SECS", default_value = "0.1", value_parser = parse_seconds)]
    pub notify_delay: Duration,
    /// Serials whose changes are kept for IXFR; a secondary further behind
    /// gets the whole zone.
    #[arg(long, value_name = "N", default_value_t = config::DEFAULT_IXFR_HISTORY)]
    pub ixfr_history: usize,
    /// Clients (networks) whose unsigned DNS UPDATEs are accepted when no
    /// --keys are configured (with keys, UPDATE must be TSIG-signed);
    /// repeatable [default: none].
    #[arg(long, value_name = "CIDR")]
    pub allow_update: Vec<ipnet::IpNet>,
    /// Lease, in seconds, of an instance an UPDATE registers without the
    /// update-lease option (RFC 9664).
    #[arg(long, value_name = "SECS", default_value_t = config::DEFAULT_UPDATE_LEASE)]
    pub update_lease: u32,
    /// Shortest lease, in seconds, an UPDATE is granted.
    #[arg(long, value_name = "SECS", default_value_t = config::DEFAULT_MIN_LEASE)]
    pub min_lease: u32,
    /// Longest lease, in seconds, an UPDATE is granted.
    #[arg(long, value_name = "SECS", default_value_t = config::DEFAULT_MAX_LEASE)]
    pub max_lease: u32,
}

/// The command line with `serve`'s configuration file merged in (the
/// command line wins), and where each setting from the file came from.
///
/// Exits, as clap does, for help, version and flags clap refuses.
///
/// # Errors
/// The file's problem, as `error: file:line:col: message`.
pub fn with_config_file(
    args: Vec<std::ffi::OsString>,
) -> Result<(Cli, Vec<crate::config_file::Setting>), String> {
    use clap::{CommandFactory, FromArgMatches, parser::ValueSource};
    let command = Cli::command();
    // Help, version and bad flags end here, as clap prints them.
    let matches = command
        .clone()
        .try_get_matches_from(&args)
        .unwrap_or_else(|e| e.exit());
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let (Command::Serve(serve), Some(sub)) = (&cli.command, matches.subcommand_matches("serve"))
    else {
        return Ok((cli, Vec::new()));
    };
    let Some(path) = serve.config.clone() else {
        return Ok((cli, Vec::new()));
    };
    // Built, so that global flags (`log-format`) are among serve's.
    let mut built = command.clone();
    built.build();
    let serve_command = built
        .find_subcommand("serve")
        .cloned()
        .ok_or("no serve command")?;
    let settings =
        crate::config_file::read(&path, &serve_command).map_err(|e| format!("error: {e}"))?;
    let given: std::collections::HashSet<String> = sub
        .ids()
        .filter(|id| sub.value_source(id.as_str()) == Some(ValueSource::CommandLine))
        .map(|id| id.as_str().to_string())
        .collect();
    let merged = crate::config_file::merge(args, &settings, &given);
    let cli = Cli::try_parse_from(merged).unwrap_or_else(|e| e.exit());
    Ok((cli, settings))
}

/// `--http`: an address, or `off`.
#[derive(Debug, Clone, Copy)]
pub struct HttpArg(pub Option<SocketAddr>);

fn parse_http(text: &str) -> Result<HttpArg, String> {
    if text == "off" {
        return Ok(HttpArg(None));
    }
    text.parse()
        .map(|addr| HttpArg(Some(addr)))
        .map_err(|_| format!("`{text}` is neither ADDR:PORT nor off"))
}

/// A share between 0 and 1.
fn parse_ratio(value: &str) -> Result<f64, String> {
    let ratio: f64 = value
        .parse()
        .map_err(|_| format!("`{value}` is not a number"))?;
    if (0.0..=1.0).contains(&ratio) {
        Ok(ratio)
    } else {
        Err(format!("{value} is outside 0 to 1 (0 turns the guard off)"))
    }
}

/// `on` or `off`.
fn parse_switch(value: &str) -> Result<bool, String> {
    match value {
        "on" => Ok(true),
        "off" => Ok(false),
        other => Err(format!("{other:?} is neither on nor off")),
    }
}

impl ServeArgs {
    /// The validated configuration.
    ///
    /// # Errors
    /// The first flag whose value cannot work.
    pub fn into_config(self) -> Result<ServeConfig, config::ConfigError> {
        let mut cfg = ServeConfig::new(self.zone);
        cfg.dns = self.dns;
        cfg.heartbeat = self.heartbeat;
        cfg.http = self.http.0;
        cfg.dnstap = self.dnstap;
        cfg.zones_dir = self.zones;
        cfg.answer_ttl = self.answer_ttl;
        cfg.max_instances = self.max_instances;
        if let Some(primary) = self.soa_primary {
            cfg.primary_ns = primary;
        }
        if let Some(contact) = self.soa_contact {
            cfg.contact = contact;
        }
        cfg.ns_addrs = self.ns_addr;
        if cfg.ns_addrs.is_empty() && !self.dns.ip().is_unspecified() {
            cfg.ns_addrs.push(self.dns.ip());
        }
        cfg.soa_ttl = self.soa_ttl;
        cfg.soa_minimum = self.soa_minimum;
        cfg.tcp_idle = self.tcp_idle;
        cfg.rescan = self.rescan;
        cfg.reverse_zones = self.reverse_zone;
        cfg.forward = self.forward;
        cfg.max_udp_payload = self.max_udp_payload;
        if let Some(workers) = self.udp_workers {
            cfg.udp_workers = workers;
        }
        cfg.fast_path = self.fast_path;
        cfg.max_answers = self.max_answers;
        cfg.rrl = self.rrl;
        cfg.rrl_slip = self.rrl_slip;
        cfg.limits = Limits {
            answer_cache: self.answer_cache.saturating_mul(1 << 20),
            tcp_connections: self.tcp_connections,
            tcp_per_client: self.tcp_per_client,
            tcp_message_timeout: self.tcp_message_timeout,
            tcp_buffer: self.tcp_buffer.saturating_mul(1 << 10),
            forward_concurrency: self.forward_concurrency,
            general_queue: self.general_queue,
            static_records: self.max_static_records,
            instances_per_service: self.max_instances_per_service,
        };
        match self.state_dir {
            Some(dir) if dir.as_os_str() == "off" => cfg.state_dir = config::StateDir::Off,
            Some(dir) => cfg.state_dir = config::StateDir::Explicit(dir),
            None => {}
        }
        if !self.forward_allow.is_empty() {
            cfg.forward_allow = self.forward_allow;
        }
        cfg.protect_threshold = self.protect_threshold;
        cfg.protect_window = self.protect_window;
        cfg.protect_max = self.protect_max;
        cfg.auth = auth_policy(&self.keys, self.key_scope, self.auth, self.auth_window)?;
        cfg.transfer = config::TransferConfig {
            allow: self.allow_transfer,
            key: self.transfer_key,
            notify: self.notify,
            notify_delay: self.notify_delay,
            ixfr_history: self.ixfr_history,
        };
        cfg.update = config::UpdateConfig {
            allow: self.allow_update,
            default_lease: self.update_lease,
            min_lease: self.min_lease,
            max_lease: self.max_lease,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

/// The heartbeat authentication policy the auth flags ask for, with the
/// key files read.
fn auth_policy(
    files: &[PathBuf],
    scopes: Vec<Scope>,
    mode: Option<AuthArg>,
    window: Duration,
) -> Result<Policy, config::ConfigError> {
    let invalid = |flag, reason: String| config::ConfigError::Invalid { flag, reason };
    if files.is_empty() {
        if let Some(mode) = mode {
            let mode = format!("{mode:?}").to_ascii_lowercase();
            return Err(invalid(
                "--auth",
                format!("--auth {mode} needs --keys FILE"),
            ));
        }
        if !scopes.is_empty() {
            return Err(invalid("--key-scope", "needs --keys FILE".into()));
        }
    }
    if window < Duration::from_secs(1) || window > config::MAX_AUTH_WINDOW {
        return Err(invalid(
            "--auth-window",
            format!(
                "{:.2} s is outside 1 to {} s",
                window.as_secs_f64(),
                config::MAX_AUTH_WINDOW.as_secs()
            ),
        ));
    }
    let keyring = if files.is_empty() {
        Keyring::default()
    } else {
        Keyring::load(files)?
    };
    let mode = mode.map(|m| match m {
        AuthArg::Required => Mode::Required,
        AuthArg::Optional => Mode::Optional,
    });
    Policy::new(keyring, scopes, mode, window).map_err(|reason| invalid("--key-scope", reason))
}

/// Transport protocol flag.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ProtoArg {
    /// SRV under `_<service>._tcp`.
    Tcp,
    /// SRV under `_<service>._udp`.
    Udp,
}

/// State flag.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StateArg {
    /// In its service's answers.
    Up,
    /// Resolvable by its own name only.
    Drain,
    /// Deregister now (useful with --once).
    Down,
}

fn parse_service(text: &str) -> Result<String, String> {
    announcement::check_service(text)
}

fn parse_instance(text: &str) -> Result<String, String> {
    announcement::check_instance(text)
}

fn parse_meta(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{text}` is not key=value"))
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if !(secs.is_finite() && secs >= 0.01) {
        return Err(format!("`{text}`: give at least 0.01 seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Flags of `beacon beat`.
#[derive(Debug, Args)]
pub struct BeatArgs {
    /// Service name (one DNS label of up to 62 letters, digits, hyphens).
    #[arg(long, value_parser = parse_service)]
    pub service: String,
    /// Port the instance serves on.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,
    /// Instance id, unique within the service [default: <hostname>-<port>].
    #[arg(long, value_parser = parse_instance)]
    pub instance: Option<String>,
    /// Address to serve [default: the source address the server sees].
    #[arg(long, value_name = "IP")]
    pub addr: Option<IpAddr>,
    /// Transport protocol, for the SRV name.
    #[arg(long, value_enum, default_value_t = ProtoArg::Tcp)]
    pub proto: ProtoArg,
    /// Lease in seconds: the instance expires this long after its last heartbeat.
    #[arg(long, value_name = "SECS", default_value_t = config::DEFAULT_LEASE,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(config::MAX_LEASE)))]
    pub ttl: u32,
    /// Seconds between heartbeats (fractions allowed) [default: a third of the ttl].
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    pub interval: Option<Duration>,
    /// RFC 2782 weight: relative share of the load within a priority.
    #[arg(long, default_value_t = config::DEFAULT_WEIGHT)]
    pub weight: u16,
    /// RFC 2782 priority: lower is preferred.
    #[arg(long, default_value_t = 0)]
    pub priority: u16,
    /// Metadata as key=value (repeatable).
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_meta)]
    pub meta: Vec<(String, String)>,
    /// A tag (repeatable): the instance is listed under the DNS-SD
    /// subtype `_<tag>._sub._<service>._<proto>` and the tag-filtered names.
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// State to announce.
    #[arg(long, value_enum, default_value_t = StateArg::Up)]
    pub state: StateArg,
    /// A server's heartbeat address, HOST:PORT; repeatable: every server
    /// gets every heartbeat. A host name is looked up again before each
    /// heartbeat, and each of its addresses gets it [default: 127.0.0.1:5301].
    #[arg(long, value_name = "HOST:PORT", value_parser = beat::Target::parse)]
    pub server: Vec<beat::Target>,
    /// Send one heartbeat and exit (for scripts and cron).
    #[arg(long)]
    pub once: bool,
    /// Sign every heartbeat with a key from this key file (the server's
    /// --keys format).
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// Which key of --key-file to sign with [default: its only key].
    #[arg(long, value_name = "NAME", requires = "key_file")]
    pub key: Option<String>,
    /// Health probe: GET this http:// URL; 2xx and 3xx are healthy
    /// (repeatable; every probe must pass).
    #[arg(long, value_name = "URL")]
    pub check_http: Vec<String>,
    /// Health probe: open a TCP connection to HOST:PORT (repeatable).
    #[arg(long, value_name = "HOST:PORT")]
    pub check_tcp: Vec<String>,
    /// Health probe: run CMD with sh -c; exit status 0 is healthy
    /// (repeatable).
    #[arg(long, value_name = "CMD")]
    pub check_exec: Vec<String>,
    /// Seconds between probe rounds.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_seconds)]
    pub check_interval: Duration,
    /// Seconds one probe may take.
    #[arg(long, value_name = "SECS", default_value = "2", value_parser = parse_seconds)]
    pub check_timeout: Duration,
    /// Failed rounds in a row that make the instance unhealthy.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub check_failures: u32,
    /// Passed rounds in a row that make it healthy again.
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub check_successes: u32,
    /// What an unhealthy instance announces: drain (resolvable by its own
    /// name, out of its service) or down (removed).
    #[arg(long, value_enum, default_value_t = FailureArg::Drain)]
    pub on_failure: FailureArg,
}

/// `--on-failure` of `beacon beat`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FailureArg {
    /// Announce `drain`.
    Drain,
    /// Announce `down`.
    Down,
}

impl BeatArgs {
    /// The validated beat settings.
    ///
    /// # Errors
    /// A message naming the flag that cannot work.
    pub fn into_config(self) -> Result<BeatConfig, String> {
        let instance = self
            .instance
            .unwrap_or_else(|| beat::default_instance(self.port));
        let mut hb = Announcement::new(&self.service, &instance, self.port);
        hb.addr = self.addr;
        hb.proto = match self.proto {
            ProtoArg::Tcp => Proto::Tcp,
            ProtoArg::Udp => Proto::Udp,
        };
        hb.ttl = self.ttl;
        hb.weight = self.weight;
        hb.priority = self.priority;
        hb.meta = self.meta;
        hb.tags = crate::registry::announcement::check_tags(self.tags.iter().map(String::as_str))
            .map_err(|e| format!("--tag: {e}"))?;
        hb.state = match self.state {
            StateArg::Up => State::Up,
            StateArg::Drain => State::Drain,
            StateArg::Down => State::Down,
        };
        if hb.state == State::Down && !self.once {
            return Err("--state down only makes sense with --once (a beating instance sends down when stopped)".into());
        }
        // The server will run the same checks; running them here turns a
        // silently dropped datagram into an error at start.
        let checked = wire::decode(wire::encode(&hb).as_bytes())
            .map_err(|e| format!("invalid heartbeat: {e}"))?;
        let ttl = Duration::from_secs(u64::from(hb.ttl));
        let interval = self.interval.unwrap_or(ttl / 3);
        if interval >= ttl {
            return Err(format!(
                "--interval {:.2} s is not shorter than --ttl {} s: the instance would expire between heartbeats",
                interval.as_secs_f64(),
                hb.ttl
            ));
        }
        let key = match &self.key_file {
            None => None,
            Some(file) => Some(signing_key(file, self.key.as_deref())?),
        };
        let mut probes: Vec<Probe> = self.check_http.into_iter().map(Probe::Http).collect();
        for url in probes.iter().filter_map(|p| match p {
            Probe::Http(url) => Some(url),
            _ => None,
        }) {
            if !url.starts_with("http://") {
                return Err(format!("--check-http {url}: give an http:// URL"));
            }
        }
        for target in &self.check_tcp {
            if target
                .rsplit_once(':')
                .is_none_or(|(_, port)| port.parse::<u16>().is_err())
            {
                return Err(format!("--check-tcp {target}: give HOST:PORT"));
            }
        }
        probes.extend(self.check_tcp.into_iter().map(Probe::Tcp));
        probes.extend(self.check_exec.into_iter().map(Probe::Exec));
        if !probes.is_empty() && self.once {
            return Err("health probes (--check-*) need a beating instance, not --once".into());
        }
        if self.check_timeout > self.check_interval {
            return Err("--check-timeout is longer than --check-interval".into());
        }
        Ok(BeatConfig {
            checks: beat::Checks {
                probes,
                interval: self.check_interval,
                timeout: self.check_timeout,
                failures: self.check_failures,
                successes: self.check_successes,
                on_failure: match self.on_failure {
                    FailureArg::Drain => State::Drain,
                    FailureArg::Down => State::Down,
                },
            },
            heartbeat: checked,
            servers: if self.server.is_empty() {
                vec![beat::Target::from(config::DEFAULT_HEARTBEAT)]
            } else {
                self.server
            },
            interval,
            once: self.once,
            key,
        })
    }
}

/// The key `beat` signs with: `name` from `file`, or the file's only key.
fn signing_key(
    file: &std::path::Path,
    name: Option<&str>,
) -> Result<std::sync::Arc<crate::keys::Key>, String> {
    let keyring = Keyring::load(&[file.to_path_buf()]).map_err(|e| e.to_string())?;
    match name {
        Some(name) => keyring.get(name).cloned().ok_or_else(|| {
            format!(
                "--key {name}: {} holds no such key (it holds {})",
                file.display(),
                keyring.names().join(", ")
            )
        }),
        None if keyring.len() == 1 => keyring
            .names()
            .first()
            .and_then(|only| keyring.get(only))
            .cloned()
            .ok_or_else(|| format!("{}: holds no key", file.display())),
        None => Err(format!(
            "{} holds {} keys ({}): choose one with --key NAME",
            file.display(),
            keyring.len(),
            keyring.names().join(", ")
        )),
    }
}
