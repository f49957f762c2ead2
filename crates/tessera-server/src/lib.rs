//! The tessera user service: phone-OTP registration and login, password
//! login, who-am-I, logout and device management, on Tessera sessions.
//!
//! `startup` wires it, `configuration` reads flags, environment and file,
//! `routes` holds the HTTP API, `domain` the validated values.

pub mod access_log;
pub mod cli;
pub mod client_ip;
pub mod configuration;
pub mod credentials;
pub mod dispatch;
pub mod domain;
pub mod envelope;
pub mod error;
pub mod events;
pub mod fail_as_200;
pub mod http_front;
pub mod lang;
pub mod limits;
pub mod metrics;
pub mod migrations;
pub mod openapi;
pub mod operator;
pub mod otp;
pub mod outer;
pub mod pages;
pub mod profiles;
pub mod readiness;
pub mod revocation_archive;
pub mod routes;
pub mod secret;
pub mod signing_keys;
pub mod stack;
pub mod startup;
pub mod storage;
pub mod store_mark;
pub mod telemetry;
pub mod users;
