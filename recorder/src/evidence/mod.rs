//! The tamper-evident trail: every published file, every start and stop of a writer,
//! and every retirement or replacement of files is a leaf of an append-only log hashed
//! as an RFC 6962 Merkle tree; with a signing key each append is followed by a signed
//! checkpoint (C2SP tlog-checkpoint in a C2SP signed note, Ed25519), which a third
//! party verifies with the public key alone.

mod keys;
mod leaf;
mod log;
mod verify;

pub use keys::{generate, KeyError, SigningKey, VerifyingKey, PRIVATE_KEY_FILE, PUBLIC_KEY_FILE};
pub use leaf::{relative, Entry, FileFacts, Leaf};
pub use log::{checkpoint_path, is_signed, log_path, EvidenceLog, LogError, EVIDENCE_DIR};
pub use verify::{verify, CannotVerify, Report};

/// Now, as the log writes times.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}
