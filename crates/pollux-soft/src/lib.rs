//! Software ports.
