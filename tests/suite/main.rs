//! The integration tests: every black-box test of the `fivetuple` binary,
//! one module a subject, built into one test binary.
//!
//! One binary, because each test binary links the whole crate and its
//! dependencies again: twenty files were twenty links of the same code,
//! minutes of `cargo test` spent linking. As modules of one crate they
//! link once, and run in one process, in the harness's threads, whichever
//! module they come from (`cargo test --release --test suite serve::`
//! runs one module, `... --test suite NAME` any test whose name holds NAME).
//!
//! Sharing a process is why the harness lends descriptors
//! (`common::Descriptors`): a test of one module that holds a thousand
//! connections may run beside any test of any other.
//!
//! A new module: its file here (`tests/suite/NAME.rs`, opening with its
//! own `//!`), and one `mod NAME;` line below. It reaches the helpers as
//! `crate::common` and `crate::privilege`.
//!
//! The helpers live in `tests/common` and `tests/privilege`, beside this
//! folder rather than in it: the soak test (`tests/soak.rs`), which runs
//! on its own, uses them too.

#[path = "../common/mod.rs"]
mod common;
#[path = "../privilege/mod.rs"]
mod privilege;

mod activation;
mod agree;
mod bounded;
mod browser;
mod connect;
mod conns;
mod demo_hosts;
mod files;
mod hardening;
mod lingering;
mod live;
mod output;
mod proxy;
mod restart;
mod saturation;
mod serve;
mod trace;
mod udp;
mod udp_client;
mod walkthrough;
mod workers;
