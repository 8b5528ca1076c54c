//! End-to-end tests: the real gateway on port 0, with its own SQLite file or PostgreSQL schema,
//! fake providers on 127.0.0.1, driven over HTTP like a client would.
//!
//! Tests marked with `both_backends!` run on SQLite and, when `TEST_DATABASE_URL` is set, on
//! PostgreSQL.

mod helpers;

mod agents;
mod agents_catalogue;
mod api_channel;
mod binary;
mod browser;
mod chat;
mod conversations;
mod dashboard;
mod email;
mod errors;
mod evaluations;
mod events;
mod experts;
mod hardening;
mod imap;
mod ingest;
mod instances;
mod limits;
mod live_across_instances;
mod openapi;
mod operations;
mod ordering;
mod privacy;
mod quotas;
mod resources;
mod retention;
mod routing;
mod store;
mod supervision;
mod telegram;
mod uploads;
mod usage;
mod websocket;
mod whatsapp;
