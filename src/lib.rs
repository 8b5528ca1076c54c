//! Switchboard: a multi-channel messaging bot gateway.
//!
//! Messaging channels and the website chat reach one conversation pipeline: channel adapters
//! (the `switchboard-*` crates under `channels/`) normalize inbound messages, the [`pipeline`]
//! stores them durably and answers them in order per conversation with an [`agents`] agent or
//! hands them to a human, and replies go back through the channel they came from.
//!
//! [`app::Gateway`] assembles everything; `main.rs` only parses the command line.
//!
//! # Layout
//!
//! A message travels down this list and its reply back up; each module imports only modules
//! below it (no module cycles):
//!
//! - [`app`]: the gateway assembled — storage, channels, services, jobs, the HTTP server — with
//!   start-up and shutdown.
//! - [`http`]: every route; [`http`]`::webhook` hands each channel's webhooks to its plug-in.
//! - [`inbox`]: what channel plug-ins deliver to (files inside messages, replies to experts'
//!   notifications, then the pipeline).
//! - [`evaluations`]: checks of AI replies, and what a failed one causes.
//! - [`retention`]: old data removed on a schedule, and stored files no row needs any more.
//! - [`instances`]: this process among those sharing the database; the work of stopped ones
//!   taken over. [`leases`]: work one instance does at a time (pollers, scheduled runs).
//! - [`jobs`]: the durable queues and schedules; the services register their handlers.
//! - [`pipeline`]: ingest (one transaction), lanes (one message of a conversation at a time),
//!   routing, the agent's turn, handoff, the sweeper.
//! - [`experts`]: who owns a conversation in expert mode; notifications; supervisors' lookups.
//! - [`agents`], [`staff`], [`live`] (event fan-out, across instances too), [`limits`] (rates
//!   and caps).
//! - [`store`]: the database (SQLite or PostgreSQL), one module per table family; [`media_dir`]: the
//!   media directory.
//! - [`channels`]: the registry — the one place that names the channel crates.
//! - [`shared`], [`ids`], [`config`], [`time`], [`text`], [`private_files`], [`telemetry`] (logs,
//!   request ids, metrics), [`lifecycle`] (starting, serving, stopping): what everything uses.

/// The allocator's options, which the binaries (the gateway's and the benchmark's) hand to
/// jemalloc as its compile-time `malloc_conf`: one arena per CPU, instead of jemalloc's default of
/// four per CPU, each thread allocating from the arena of the CPU it runs on. Every arena keeps
/// freed pages of its own for a while; with four times as many arenas as cores, most of them
/// serve the threads that seldom allocate (the SQLite threads, the database pool's workers) and
/// still hold pages. Under the load of the README's comparison it is 5 MB of anonymous memory less
/// (22 → 17 MB) for no measurable difference in speed.
pub const ALLOCATOR_OPTIONS: &std::ffi::CStr = c"percpu_arena:percpu";

pub mod agents;
pub mod app;
pub mod channels;
pub mod config;
pub mod evaluations;
pub mod experts;
pub mod http;
pub mod ids;
pub mod inbox;
pub mod instances;
pub mod jobs;
pub mod leases;
pub mod lifecycle;
pub mod limits;
pub mod live;
pub mod media_dir;
pub mod pipeline;
pub mod private_files;
pub mod replay;
pub mod retention;
pub mod shared;
pub mod staff;
pub mod store;
pub mod telemetry;
pub mod text;
pub mod time;
