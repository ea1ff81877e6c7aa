//! beacon: an authoritative DNS server for service discovery.
//!
//! Service instances announce themselves with small UDP heartbeats; beacon
//! keeps each one while its heartbeats keep coming and answers A, AAAA and
//! SRV queries for them, rotating the answers so clients spread their load.
//!
//! # Data flow
//!
//! ```text
//! heartbeat datagrams ─▶ intake ─▶ registry ─▶ view (published snapshot) ─▶ answer ─▶ DNS replies
//! ```
//!
//! # Layout
//!
//! Modules in the order the data passes through them:
//!
//! - [`intake`]: the heartbeat socket task; [`intake::wire`] decodes datagrams.
//! - [`registry`]: live instances and their lease deadlines.
//! - [`view`]: the immutable snapshot the answering path reads, and
//!   [`view::publish`], which swaps it atomically.
//! - [`answer`]: pure question → records ([`answer::resolve`]), load spreading
//!   ([`answer::rotate`]), and the hickory-server bridge ([`answer::handler`]).
//! - [`server`]: binds the sockets and runs the tasks.
//!
//! Around them: [`config`] (validated settings and defaults), [`cli`] (the
//! command line) and [`beat`] (the `beacon beat` heartbeat sender).

#![warn(missing_docs)]

pub mod answer;
pub mod fragments;
pub mod intake;
pub mod registry;
pub mod server;
pub mod view;

pub mod beat;
pub mod cli;
pub mod config;
