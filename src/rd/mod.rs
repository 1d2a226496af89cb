//! The Resource Directory (RFC 9176).
