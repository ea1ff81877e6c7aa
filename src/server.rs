//! `beacon serve`: binds the sockets and runs the tasks until shutdown.
//!
//! Takes a validated [`ServeConfig`] and a shutdown token; produces a running
//! server: the first load of the zone fragments, the fragment watcher
//! thread (reloading on change, on a periodic rescan and on SIGHUP), the
//! heartbeat intake task, the UDP answering workers and the TCP answering
//! task, joined by one published view. It logs every bound address in one stable
//! line (`listening dns_udp=… dns_tcp=… heartbeat=…`) that scripts and tests
//! read to find ports chosen by the system.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

use tokio::signal::unix::{SignalKind, signal};

use crate::answer::forward::Forwarder;
use crate::answer::handler::DnsHandler;
use crate::answer::rrl::RateLimiter;
use crate::answer::{tcp, udp};
use crate::auth::{Mode, Policy};
use crate::config::{ServeConfig, StateDir as StateDirSetting};
use crate::fragments::watch::{self, Request};
use crate::fragments::{Loader, StaticZone};
use crate::intake::Intake;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::state::StateDir;
use crate::supervise::{Death, Guard, Supervisor};
use crate::transfer::Transfers;
use crate::transfer::notify::{Notifier, Plan};
use crate::update::Updates;
use crate::view::feed::StaticFeed;
use crate::view::history::Recorder;
use crate::view::publish::Publisher;
use crate::view::publish::SerialStore;

/// Status requests waiting for the intake thread at once; more are
/// answered 503 (the HTTP endpoint is not a way to load the intake).
const STATUS_QUEUE: usize = 8;

/// Why the server could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A socket could not be bound.
    #[error(
        "cannot listen for {what} on {addr}: {source} (is another server using it? pick another with {flag})"
    )]
    Bind {
        /// What the socket is for.
        what: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// The flag that sets it.
        flag: &'static str,
        /// The system's reason.
        source: io::Error,
    },
    /// The DNS server loop failed.
    #[error("DNS server failed: {0}")]
    Dns(String),
    /// The state directory given with --state-dir cannot be used.
    #[error("{0} (or pass --state-dir off)")]
    State(#[from] crate::state::StateError),
    /// A part of the running server died.
    #[error("{} {}; exiting so that a supervisor can restart the server", .0.part, .0.reason)]
    Died(Death),
}

/// The addresses actually bound (ports resolved when 0 was asked for).
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    /// DNS over UDP.
    pub dns_udp: SocketAddr,
    /// DNS over TCP (same port as UDP).
    pub dns_tcp: SocketAddr,
    /// Heartbeats.
    pub heartbeat: SocketAddr,
    /// The HTTP endpoint, if any.
    pub http: Option<SocketAddr>,
}

/// Binds DNS on UDP and TCP at the same port. With port 0 the UDP port is
/// chosen first and TCP follows it; if that TCP port is taken, try again.
async fn bind_dns(
    addr: SocketAddr,
    udp_workers: usize,
) -> Result<(Vec<std::net::UdpSocket>, TcpListener), ServeError> {
    let bind_error = |what, source| ServeError::Bind {
        what,
        addr,
        flag: "--dns",
        source,
    };
    let attempts = if addr.port() == 0 { 16 } else { 1 };
    let mut last_error = None;
    for _ in 0..attempts {
        let udp =
            udp::bind_reuseport(addr, udp_workers).map_err(|e| bind_error("DNS over UDP", e))?;
        let udp_addr = udp
            .first()
            .ok_or_else(|| io::Error::other("no UDP socket"))
            .and_then(std::net::UdpSocket::local_addr)
            .map_err(|e| bind_error("DNS over UDP", e))?;
        match TcpListener::bind(udp_addr).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last_error = Some(e),
        }
    }
    Err(bind_error(
        "DNS over TCP",
        last_error.unwrap_or_else(|| io::Error::other("no attempt made")),
    ))
}

/// Receive buffer asked for on the heartbeat socket: a burst of heartbeats
/// (a fleet restarting) must wait in the kernel while a view is rebuilt,
/// not be dropped. The kernel may grant less (net.core.rmem_max).
const HEARTBEAT_RECV_BUFFER: usize = 8 * 1024 * 1024;

/// Binds the heartbeat socket with a large receive buffer.
fn bind_heartbeat(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    // Best effort: the kernel caps it at net.core.rmem_max.
    if let Err(error) = socket.set_recv_buffer_size(HEARTBEAT_RECV_BUFFER) {
        tracing::warn!(%error, "cannot enlarge the heartbeat receive buffer");
    }
    // Linux reports twice what it granted; below a quarter of the request
    // the cap is net.core.rmem_max, and bursts may be dropped.
    match socket.recv_buffer_size() {
        Ok(granted) if granted < HEARTBEAT_RECV_BUFFER / 4 => tracing::warn!(
            granted,
            wanted = HEARTBEAT_RECV_BUFFER,
            "heartbeat receive buffer is small; bursts of heartbeats may be dropped \
             (raise it with: sysctl -w net.core.rmem_max={HEARTBEAT_RECV_BUFFER})"
        ),
        _ => {}
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Opens the state directory: an explicit one must work, the default one
/// is used if it can be (with a warning if not).
fn open_state(dir: &StateDirSetting) -> Result<Option<StateDir>, ServeError> {
    let opened = match dir {
        StateDirSetting::Off => return Ok(None),
        StateDirSetting::Explicit(path) => StateDir::open(path)?,
        StateDirSetting::Default(path) => match StateDir::open(path) {
            Ok(state) => state,
            Err(error) => {
                tracing::warn!(%error, "running without a state directory: SOA serials may go back after a restart");
                return Ok(None);
            }
        },
    };
    info!(dir = %opened.path().display(), "state directory");
    Ok(Some(opened))
}

/// Puts the instances of the last registry snapshot back, with the time
/// left on their leases; those whose lease has passed stay out.
fn restore(state: &mut StateDir, registry: &mut Registry, policy: &Policy) {
    let Some(snapshot) = state.read_snapshot() else {
        return;
    };
    let started = std::time::Instant::now();
    let now = tokio::time::Instant::now();
    let now_ms = crate::intake::unix_millis();
    let left = |at_ms: u64| Duration::from_millis(at_ms.saturating_sub(now_ms));
    registry.set_replay_memory(policy.replay_memory());
    let total = snapshot.instances.len();
    let mut restored = 0;
    for kept in snapshot.instances {
        let Some(addr) = kept.announcement.addr else {
            continue;
        };
        let remaining = left(kept.expires_ms);
        restored +=
            usize::from(registry.restore(kept.announcement, addr, remaining, &kept.signer, now));
    }
    let mut gone = snapshot.gone;
    gone.sort_by_key(|g| g.forget_ms);
    for g in gone {
        registry.restore_forgotten(
            crate::registry::Forgotten {
                service: g.service.as_str().into(),
                instance: g.instance.as_str().into(),
                last_ts: g.last_ts,
                remaining: left(g.forget_ms),
            },
            now,
        );
    }
    info!(
        restored,
        expired = total - restored,
        remembered = registry.remembered(),
        age_ms = now_ms.saturating_sub(snapshot.taken_ms),
        took_ms = started.elapsed().as_millis(),
        "registry restored from its snapshot"
    );
}

/// Says at start who may register.
fn log_policy(policy: &Policy) {
    let keys = policy.keyring();
    match policy.mode() {
        Mode::Open => info!(
            "registration is open: any host that reaches the heartbeat port may register any service (--keys FILE requires signed heartbeats)"
        ),
        mode => info!(
            auth = %mode.as_str(),
            keys = %keys.names().join(","),
            window_s = policy.window().as_secs_f64(),
            "heartbeats are authenticated"
        ),
    }
}

/// SIGHUP: reads the key files again; a file that cannot be used keeps
/// the keys in use, and says why.
fn reload_keys(policies: &tokio::sync::watch::Sender<Arc<Policy>>) {
    let current = policies.borrow().clone();
    if current.keyring().files().is_empty() {
        return;
    }
    match current.keyring().reload() {
        Ok(keyring) => {
            let policy = current.with_keyring(keyring);
            for key in policy.unknown_scope_keys() {
                tracing::warn!(
                    key,
                    "--key-scope names a key the key files no longer define"
                );
            }
            info!(keys = %policy.keyring().names().join(","), "SIGHUP: key files read again");
            policies.send_replace(Arc::new(policy));
        }
        Err(error) => {
            tracing::warn!(%error, "SIGHUP: the key files were not reloaded; the keys in use stay");
        }
    }
}

/// Ends a part's supervision: as planned when the server is stopping,
/// as a death otherwise.
fn finish(guard: Guard, shutdown: &CancellationToken) {
    if shutdown.is_cancelled() {
        guard.done();
    }
}

/// Runs the server until `shutdown` is cancelled, or until a part of it
/// dies ([`ServeError::Died`]: the caller should exit at once).
///
/// # Errors
/// [`ServeError`] when a socket cannot be bound, the state directory
/// cannot be used, or a part of the server died.
pub async fn run(config: ServeConfig, shutdown: CancellationToken) -> Result<(), ServeError> {
    let config = Arc::new(config);
    // Before anything slow: a SIGHUP during the first load must not kill
    // the process (the default action); it is acted on once the watcher runs.
    let mut sighup = signal(SignalKind::hangup())
        .map_err(|e| ServeError::Dns(format!("cannot handle SIGHUP: {e}")))?;
    let mut supervisor = Supervisor::default();
    let (dns_udp, dns_tcp) = bind_dns(config.dns, config.udp_workers).await?;
    let heartbeat = bind_heartbeat(config.heartbeat).map_err(|source| ServeError::Bind {
        what: "heartbeats",
        addr: config.heartbeat,
        flag: "--heartbeat",
        source,
    })?;
    let local = |r: io::Result<SocketAddr>, fallback| r.unwrap_or(fallback);
    let http = match config.http {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|source| ServeError::Bind {
                    what: "HTTP",
                    addr,
                    flag: "--http",
                    source,
                })?,
        ),
        None => None,
    };
    let bound = Bound {
        dns_udp: local(dns_tcp.local_addr(), config.dns),
        dns_tcp: local(dns_tcp.local_addr(), config.dns),
        heartbeat: local(heartbeat.local_addr(), config.heartbeat),
        http: http.as_ref().and_then(|l| l.local_addr().ok()),
    };
    let metrics = Arc::new(Metrics::default());
    let tap = match &config.dnstap {
        Some(path) => Some(
            crate::dnstap::Tap::start(path, bound.dns_udp)
                .map_err(|e| ServeError::Dns(format!("--dnstap {}: {e}", path.display())))?,
        ),
        None => None,
    };

    // The watch starts before the first load, so no edit slips between.
    // The load itself runs on the watcher thread: until it is done, views
    // serve a stand-in static zone, live services are answered, and what
    // would be a negative answer is SERVFAIL.
    let watcher = watch::Watcher::start(&config.zones_dir);
    let loader = Loader::new(config.zones_dir.clone(), config.zone.clone())
        .with_max_records(config.limits.static_records);
    let statics = Arc::new(StaticZone::loading());

    let mut registry = Registry::new(
        config.max_instances,
        config.reserved_service().into_iter().collect(),
    )
    .with_max_per_service(config.limits.instances_per_service)
    .with_protection(
        config.protect_threshold,
        config.protect_window,
        config.protect_max,
    );
    let mut state = open_state(&config.state_dir)?;
    // Before any view is published, so the first answers hold every
    // instance that was live when the server stopped.
    if let Some(state) = state.as_mut() {
        restore(state, &mut registry, &config.auth);
    }
    let snapshots = match &state {
        Some(state) => Some(state.snapshot_writer(metrics.clone()).map_err(|e| {
            ServeError::Dns(format!("cannot start the registry snapshot writer: {e}"))
        })?),
        None => None,
    };
    let store = state.map(|state| Box::new(state) as Box<dyn SerialStore>);
    let mut publisher = Publisher::with_store(config.clone(), &registry, statics.clone(), store);
    let views = publisher.handle();
    let views_for_http = views.clone();
    let views_for_systemd = views.clone();
    let policy = Arc::new(config.auth.clone());
    log_policy(&policy);
    let (policy_tx, policy_rx) = tokio::sync::watch::channel(policy);
    let history = if config.transfer.enabled() {
        let (serials_tx, serials_rx) = tokio::sync::watch::channel(publisher.serial());
        let (recorder, history) =
            Recorder::start(views.load(), config.transfer.ixfr_history, move |history| {
                serials_tx.send_replace(history.newest.serial);
            })
            .map_err(|e| ServeError::Dns(format!("cannot start the change history: {e}")))?;
        publisher.record_with(recorder);
        let plan = Plan {
            targets: config.transfer.notify.clone(),
            zones: views
                .load()
                .zones()
                .map(hickory_proto::rr::Name::from)
                .collect(),
            source: bound.dns_udp.ip(),
            delay: config.transfer.notify_delay,
            key: config.transfer.key.clone(),
            policies: policy_rx.clone(),
        };
        Notifier::new(metrics.clone()).start(&plan, &serials_rx, &shutdown);
        Some(history)
    } else {
        None
    };
    let transfers = Transfers::new(
        config.transfer.clone(),
        config.auth.shared_keyring(),
        history,
    )
    .with_metrics(metrics.clone());
    let (statics_tx, statics_rx) = tokio::sync::watch::channel(statics);
    let fragment_requests = watcher.requests();
    let feed = StaticFeed::new(views.clone(), statics_tx);
    let fragment_thread = watcher
        .spawn(
            loader,
            feed,
            config.rescan,
            supervisor.guard("the zone fragment watcher"),
            metrics.clone(),
        )
        .map_err(|e| ServeError::Dns(format!("cannot start the zone fragment watcher: {e}")))?;
    // Transfers and signed queries check TSIG with the keys SIGHUP reads.
    let transfers = Arc::new(transfers.with_policies(policy_rx.clone()));
    let hangup = fragment_requests.clone();
    let guard = supervisor.guard("the SIGHUP handler");
    let stopping = shutdown.clone();
    tokio::spawn(async move {
        while sighup.recv().await.is_some() {
            info!("SIGHUP: reloading every zone fragment");
            if hangup.send(Request::ReloadAll).is_err() {
                break;
            }
            reload_keys(&policy_tx);
        }
        finish(guard, &stopping);
    });
    let (status_tx, status_rx) = tokio::sync::mpsc::channel(STATUS_QUEUE);
    let (update_tx, update_rx) = tokio::sync::mpsc::channel(crate::update::UPDATE_QUEUE);
    let updates = Arc::new(Updates::new(
        config.update.clone(),
        policy_rx.clone(),
        update_tx,
        metrics.clone(),
    ));
    let mut intake = Intake::new(heartbeat, registry, publisher, statics_rx, policy_rx)
        .with_metrics(metrics.clone())
        .with_status(status_rx)
        .with_updates(update_rx);
    if let Some(snapshots) = snapshots {
        intake = intake.with_snapshots(Box::new(snapshots));
    }
    let intake_thread = intake
        .spawn(shutdown.clone(), supervisor.guard("the heartbeat intake"))
        .map_err(|e| ServeError::Dns(format!("cannot start the heartbeat intake: {e}")))?;

    let forwarder = (!config.forward.is_empty()).then(|| {
        Forwarder::new(
            config.forward.clone(),
            config.forward_allow.clone(),
            config.limits.forward_concurrency,
        )
        .with_metrics(metrics.clone())
    });
    let handler = DnsHandler::new(views.clone(), forwarder, config.max_udp_payload, transfers)
        .with_updates(updates);
    let settings = udp::WorkerSettings {
        max_udp_payload: config.max_udp_payload,
        fast_path: config.fast_path,
        limits: config.limits,
        rrl: (config.rrl > 0).then(|| Arc::new(RateLimiter::new(config.rrl, config.rrl_slip))),
        metrics: metrics.clone(),
        tap: tap.clone(),
    };
    let udp_workers = udp::Workers::start(dns_udp, &views, &handler, &settings, |_| {
        supervisor.guard("a DNS UDP worker")
    })
    .map_err(|e| ServeError::Dns(format!("cannot start the UDP workers: {e}")))?;
    let service = tcp::TcpService {
        views,
        general: handler,
        max_udp_payload: config.max_udp_payload,
        fast_path: config.fast_path,
        idle: Duration::from_secs(config.tcp_idle),
        limits: config.limits,
        counters: metrics.tcp.clone(),
        tap,
    };
    let guard = supervisor.guard("the DNS TCP listener");
    let stopping = shutdown.clone();
    let tcp_task = tokio::spawn(async move {
        tcp::serve(dns_tcp, service, stopping.clone()).await;
        finish(guard, &stopping);
    });

    if let Some(listener) = http {
        tokio::spawn(crate::http::serve(
            listener,
            metrics.clone(),
            views_for_http,
            status_tx,
            shutdown.clone(),
        ));
    }
    let http_addr = bound
        .http
        .map_or_else(|| "off".to_string(), |addr| addr.to_string());
    info!(
        dns_udp = %bound.dns_udp,
        dns_tcp = %bound.dns_tcp,
        heartbeat = %bound.heartbeat,
        http = %http_addr,
        zone = %config.zone,
        "listening"
    );
    crate::systemd::start(
        views_for_systemd,
        format!("serving {} on {}", config.zone, bound.dns_udp),
        &shutdown,
    );

    tokio::select! {
        () = shutdown.cancelled() => {}
        death = supervisor.death() => return Err(ServeError::Died(death)),
    }
    info!("shutting down");
    crate::systemd::stopping();
    let _ = fragment_requests.send(Request::Stop);
    drop(fragment_thread);
    if tokio::task::spawn_blocking(move || udp_workers.stop())
        .await
        .is_err()
    {
        tracing::error!("stopping the UDP workers failed");
    }
    // Both watch the same token; a panic there is a bug worth reporting
    // but does not change how we exit.
    if let Err(error) = tcp_task.await {
        tracing::error!(%error, "DNS TCP task failed");
    }
    // The intake stores the serial as it stops: wait for it.
    if tokio::task::spawn_blocking(move || intake_thread.join())
        .await
        .map_or(true, |joined| joined.is_err())
    {
        tracing::error!("the heartbeat intake failed");
    }
    Ok(())
}
