//! The error type of the bodies and services in this crate.

use std::error::Error;

/// Any error, as the bodies of this crate yield it and the servers take it.
pub(crate) type BoxError = Box<dyn Error + Send + Sync>;
