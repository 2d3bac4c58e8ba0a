//! Authentication: HS256 JWTs for player and private streams, shared secrets for publishers.
pub mod credentials;
pub mod jwt;
pub mod secret;

pub use credentials::Keys;
pub use secret::Secret;
