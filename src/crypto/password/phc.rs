//! argon2 itself, on one pool thread: PHC strings made and checked in that thread's
//! reusable working memory, with the memory a stored hash may ask for bounded.

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};

use super::{PasswordError, Verified};

/// Bytes of salt in a new hash.
const SALT_LEN: usize = 16;

/// A stored hash may ask for more memory than the configured cost (it was made under an
/// older, higher one) up to this many times the configured blocks...
const MAX_STORED_COST_FACTOR: usize = 4;
/// ... or up to this many blocks (256 MiB), whichever is larger; beyond both it is
/// refused as an error rather than allocated.
const MAX_STORED_BLOCKS: usize = 256 * 1024 * 1024 / Block::SIZE;

/// A hashing thread's reusable argon2 working memory.
pub(super) type Memory = Vec<Block>;

/// Runs `f` on `blocks` blocks of working memory: a prefix of the thread's buffer (grown
/// once to the configured size) when they fit in the configured cost, else a buffer for
/// this call only (a stored hash of an older, higher cost), up to a bound.
fn with_memory<T>(
    memory: &mut Memory,
    configured: &Params,
    blocks: usize,
    f: impl FnOnce(&mut [Block]) -> T,
) -> Result<T, PasswordError> {
    let configured = configured.block_count();
    if blocks <= configured {
        if memory.len() < configured {
            let missing = configured - memory.len();
            memory
                .try_reserve_exact(missing)
                .map_err(|e| PasswordError::Hash(e.to_string()))?;
            memory.resize(configured, Block::new());
        }
        return Ok(f(&mut memory[..blocks]));
    }
    let limit = (configured * MAX_STORED_COST_FACTOR).max(MAX_STORED_BLOCKS);
    if blocks > limit {
        return Err(PasswordError::Hash(format!(
            "stored hash asks for {blocks} KiB of memory, more than the {limit} KiB allowed"
        )));
    }
    let mut once = Memory::new();
    once.try_reserve_exact(blocks)
        .map_err(|e| PasswordError::Hash(e.to_string()))?;
    once.resize(blocks, Block::new());
    Ok(f(&mut once))
}

pub(super) fn hash_blocking(
    memory: &mut Memory,
    params: &Params,
    password: &str,
) -> Result<String, PasswordError> {
    let salt = crate::crypto::random_bytes::<SALT_LEN>();
    hash_with_salt(memory, params, password, &salt)
}

/// The PHC string `$argon2id$v=19$m=..,t=..,p=..$salt$hash`, as the argon2 crate's own
/// `PasswordHasher` writes it.
fn hash_with_salt(
    memory: &mut Memory,
    params: &Params,
    password: &str,
    salt: &[u8],
) -> Result<String, PasswordError> {
    let error = |e: &dyn std::fmt::Display| PasswordError::Hash(e.to_string());
    let (algorithm, version) = (Algorithm::Argon2id, Version::V0x13);
    let salt = Salt::new(salt).map_err(|e| error(&e))?;
    let output = derive(memory, params, algorithm, version, params, password, &salt)?;
    let hash = PasswordHash {
        algorithm: algorithm.ident(),
        version: Some(version.into()),
        params: ParamsString::try_from(params).map_err(|e| error(&e))?,
        salt: Some(salt),
        hash: Some(output),
    };
    Ok(hash.to_string())
}

/// argon2 of `password` under `params`, in the thread's memory (see [`with_memory`]).
fn derive(
    memory: &mut Memory,
    configured: &Params,
    algorithm: Algorithm,
    version: Version,
    params: &Params,
    password: &str,
    salt: &[u8],
) -> Result<Output, PasswordError> {
    let output_len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let mut buffer = [0u8; Output::MAX_LENGTH];
    let out = buffer
        .get_mut(..output_len)
        .ok_or_else(|| PasswordError::Hash(format!("output length {output_len} too large")))?;
    let argon2 = Argon2::new(algorithm, version, params.clone());
    with_memory(memory, configured, params.block_count(), |blocks| {
        argon2
            .hash_password_into_with_memory(password.as_bytes(), salt, out, blocks)
            .map_err(|e| PasswordError::Hash(e.to_string()))?;
        Output::new(out).map_err(|e| PasswordError::Hash(e.to_string()))
    })?
}

pub(super) fn verify_blocking(
    memory: &mut Memory,
    params: &Params,
    password: &str,
    stored: &str,
) -> Result<Verified, PasswordError> {
    let error = |e: &dyn std::fmt::Display| PasswordError::Hash(e.to_string());
    let parsed = PasswordHash::new(stored).map_err(|e| error(&e))?;
    // As the argon2 crate's `PasswordVerifier`: a hash without salt or output matches
    // nothing, and the algorithm, version and parameters are those recorded in the hash.
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return Ok(Verified::Wrong);
    };
    let algorithm = Algorithm::try_from(parsed.algorithm.as_str()).map_err(|e| error(&e))?;
    let version = parsed
        .version
        .map(Version::try_from)
        .transpose()
        .map_err(|e| error(&e))?
        .unwrap_or_default();
    let used = Params::try_from(&parsed).map_err(|e| error(&e))?;
    let computed = derive(memory, params, algorithm, version, &used, password, salt)?;
    // `Output`'s equality is constant-time.
    if computed != *expected {
        return Ok(Verified::Wrong);
    }
    let current = algorithm == Algorithm::Argon2id
        && used.m_cost() == params.m_cost()
        && used.t_cost() == params.t_cost()
        && used.p_cost() == params.p_cost();
    Ok(if current {
        Verified::Correct
    } else {
        Verified::CorrectNeedsRehash
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::{PasswordHasher as _, PasswordVerifier as _};

    fn params(m: u32, t: u32, p: u32) -> Params {
        Params::new(m, t, p, None).unwrap()
    }

    fn crate_argon2(params: &Params) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
    }

    #[test]
    fn the_phc_string_is_the_one_the_argon2_crate_writes() {
        let params = params(1024, 2, 1);
        let salt = b"sixteen byte slt";
        let ours = hash_with_salt(&mut Memory::new(), &params, "correct horse", salt).unwrap();
        let theirs = crate_argon2(&params)
            .hash_password_with_salt(b"correct horse", salt)
            .unwrap()
            .to_string();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn our_hashes_verify_with_the_argon2_crate() {
        let params = params(1024, 2, 1);
        let ours = hash_blocking(&mut Memory::new(), &params, "correct horse").unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert_eq!(parsed.salt.unwrap().len(), SALT_LEN);
        let argon2 = Argon2::default();
        assert!(
            argon2
                .verify_password(b"correct horse", ours.as_str())
                .is_ok()
        );
        assert!(
            argon2
                .verify_password(b"battery staple", ours.as_str())
                .is_err()
        );
    }

    #[test]
    fn the_argon2_crates_hashes_verify_here() {
        let configured = params(1024, 2, 1);
        let mut memory = Memory::new();
        use Algorithm::{Argon2d, Argon2i, Argon2id};
        use Verified::{Correct, CorrectNeedsRehash as Rehash};
        let (v13, v10) = (Version::V0x13, Version::V0x10);
        let cases = [
            (Argon2id, v13, params(1024, 2, 1), Correct),
            (Argon2id, v13, params(512, 1, 2), Rehash),
            (Argon2id, v13, params(3000, 3, 3), Rehash),
            (Argon2i, v13, params(1024, 2, 1), Rehash),
            (Argon2d, v10, params(1024, 2, 1), Rehash),
            (
                Argon2id,
                v13,
                Params::new(1024, 2, 1, Some(64)).unwrap(),
                Correct,
            ),
        ];
        for (algorithm, version, params, expected) in cases {
            let theirs = Argon2::new(algorithm, version, params)
                .hash_password(b"correct horse")
                .unwrap()
                .to_string();
            let ok = verify_blocking(&mut memory, &configured, "correct horse", &theirs);
            assert_eq!(ok.unwrap(), expected, "{theirs}");
            let wrong = verify_blocking(&mut memory, &configured, "battery staple", &theirs);
            assert_eq!(wrong.unwrap(), Verified::Wrong, "{theirs}");
        }
    }

    /// Reference vectors of the argon2 crate and of the argon2 C implementation.
    const REFERENCE: [&str; 3] = [
        "$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4",
        "$argon2id$v=19$m=256,t=2,p=2$c29tZXNhbHQ$bQk8UB/VmZZF4Oo79iDXuL5/0ttZwg2f/5U52iv1cDc",
        "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
    ];

    #[test]
    fn reference_hashes_verify_and_are_reproduced() {
        let configured = params(1024, 2, 1);
        let mut memory = Memory::new();
        for stored in REFERENCE {
            let ok = verify_blocking(&mut memory, &configured, "password", stored);
            assert_eq!(ok.unwrap(), Verified::CorrectNeedsRehash, "{stored}");
            let wrong = verify_blocking(&mut memory, &configured, "sassword", stored);
            assert_eq!(wrong.unwrap(), Verified::Wrong, "{stored}");
        }
        let made = hash_with_salt(&mut memory, &params(256, 2, 1), "password", b"somesalt");
        assert_eq!(made.unwrap(), REFERENCE[0]);
    }

    #[test]
    fn the_thread_memory_is_sized_once_and_reused() {
        let configured = params(1024, 1, 1);
        let mut memory = Memory::new();
        let first = hash_blocking(&mut memory, &configured, "correct horse").unwrap();
        assert_eq!((memory.len(), memory.capacity()), (1024, 1024));
        let buffer = memory.as_ptr();
        // Smaller and larger stored costs, then the configured one again.
        let small = hash_blocking(&mut memory, &params(64, 1, 1), "x").unwrap();
        let large = hash_blocking(&mut Memory::new(), &params(2048, 1, 1), "x").unwrap();
        for (stored, password) in [(&small, "x"), (&large, "x"), (&first, "correct horse")] {
            let verified = verify_blocking(&mut memory, &configured, password, stored).unwrap();
            assert_ne!(verified, Verified::Wrong);
        }
        assert_eq!((memory.as_ptr(), memory.capacity()), (buffer, 1024));
    }

    #[test]
    fn an_absurd_memory_cost_in_a_stored_hash_is_refused() {
        let configured = params(1024, 1, 1);
        let mut memory = Memory::new();
        let hash = hash_blocking(&mut memory, &configured, "correct horse").unwrap();
        let absurd = hash.replace("m=1024,", &format!("m={},", MAX_STORED_BLOCKS + 8));
        let verified = verify_blocking(&mut memory, &configured, "correct horse", &absurd);
        assert!(
            matches!(verified, Err(PasswordError::Hash(_))),
            "{verified:?}"
        );
        assert_eq!(memory.capacity(), 1024);
    }

    #[test]
    fn a_hash_without_salt_or_output_matches_nothing() {
        let configured = params(1024, 1, 1);
        let mut memory = Memory::new();
        for stored in [
            "$argon2id$v=19$m=1024,t=1,p=1",
            "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ",
        ] {
            let verified = verify_blocking(&mut memory, &configured, "x", stored);
            assert_eq!(verified.unwrap(), Verified::Wrong);
        }
    }
}
