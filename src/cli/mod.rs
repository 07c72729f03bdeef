//! The command line of `fivetuple connect` and `fivetuple conns`: part of
//! the binary, not of the library.
//!
//! Each file here holds one command's arguments (clap), turns them into the
//! plain options the library takes, calls it, and prints what it returns,
//! as text or JSON. The library never prints (see `src/error.rs`); the
//! choices of how to show things to a person live here. `fivetuple serve`'s
//! arguments are in `main.rs`.

pub mod connect;
pub mod conns;
