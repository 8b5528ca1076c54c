//! Statements built once, on first use, from the Rust definitions they depend on (see
//! [`super::sql`]), then kept for the life of the process as `&'static str`, which is what the
//! store's queries take.

use std::sync::LazyLock;

/// A statement built once, on first use, from the Rust definitions it depends on.
pub struct Sql(LazyLock<String>);

impl Sql {
    /// A statement built by `build`.
    pub const fn new(build: fn() -> String) -> Sql {
        Sql(LazyLock::new(build))
    }

    /// The statement's text.
    pub fn text(&'static self) -> &'static str {
        self.0.as_str()
    }
}
