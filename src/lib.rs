//! beacon: an authoritative DNS server for service discovery.
//!
//! Service instances announce themselves with small UDP heartbeats; beacon
//! keeps each one while its heartbeats keep coming and answers A, AAAA, SRV
//! and DNS-SD queries for them, rotating the answers so clients spread their
//! load. Zone fragments (master files in a watched folder) add static data.
//!
//! # Data flow
//!
//! ```text
//! heartbeat datagrams ─▶ intake ─▶ registry ─┐
//!                                            ├─▶ view (published snapshot) ─▶ answer ─▶ DNS replies
//! zone files ─▶ fragments (loader, watcher) ─┘                                  └─▶ forward (names outside our zones)
//!
//! answering: UDP workers (recvmmsg/sendmmsg) and TCP connections
//!            ─▶ fast path (pre-encoded answers) ─▶ else general path (hickory)
//! ```
//!
//! # Layout
//!
//! Modules in the order the data passes through them:
//!
//! - [`intake`]: the heartbeat socket task; [`intake::wire`] decodes datagrams,
//!   [`auth`] checks signed ones against the [`keys`] read from key files.
//! - [`registry`]: live instances and their lease deadlines.
//! - [`fragments`]: zone files parsed with line numbers, checked, and
//!   reloaded by [`fragments::watch`] when they change.
//! - [`view`]: the immutable snapshot the answering path reads, and
//!   [`view::publish`], which swaps it atomically.
//! - [`answer`]: pure question → records ([`answer::resolve`]), load spreading
//!   ([`answer::rotate`]), forwarding ([`answer::forward`]), the socket loops
//!   ([`answer::udp`], [`answer::tcp`]), the pre-encoded fast path
//!   ([`answer::fast`]) and the hickory-server bridge for everything else
//!   ([`answer::handler`]).
//! - [`server`]: binds the sockets and runs the tasks.
//!
//! Around them: [`config`] (validated settings and defaults), [`cli`] (the
//! command line) and [`beat`] (the `beacon beat` heartbeat sender).

#![warn(missing_docs)]

pub mod answer;
pub mod auth;
pub mod fragments;
pub mod intake;
pub mod net;
pub mod probe;
pub mod registry;
pub mod rrset;
pub mod server;
pub mod state;
pub mod supervise;
pub mod systemd;
pub mod transfer;
pub mod tsig;
pub mod update;
pub mod view;

pub mod beat;
pub mod cli;
pub mod config;
pub mod config_file;
pub mod dnstap;
pub mod fuzz;
pub mod http;
pub mod keys;
pub mod metrics;
