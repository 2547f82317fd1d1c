//! Cryptographic building blocks: password hashing, refresh-token material and the
//! access-token signing keys. Nothing here touches the database or HTTP.

pub mod master;
pub mod password;
pub mod refresh;
pub mod signing;

/// Fills a fresh array from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // The OS generator failing is unrecoverable for an auth service: no token can be made.
    #[allow(clippy::expect_used)]
    getrandom::getrandom(&mut bytes).expect("the operating system's random generator failed");
    bytes
}
