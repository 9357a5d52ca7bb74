#![doc = include_str!("../README.md")]

pub mod app;
pub mod call;
pub mod codec;
pub mod config;
pub mod deadline;
pub mod door;
pub mod drain;
pub mod error;
pub mod listen;
pub mod logging;
#[cfg(feature = "otlp")]
pub mod otlp;
pub mod reload;
pub mod request_id;
pub mod server;
pub mod tls;
