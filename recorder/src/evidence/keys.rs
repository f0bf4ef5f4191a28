//! The trail's keys: an Ed25519 key pair in the C2SP signed-note encodings (the
//! private `PRIVATE+KEY+<name>+<id>+<key>`, the public `<name>+<id>+<key>`, as Go's
//! `note` package and other checkpoint tools read them). The private key is read from a
//! file only its owner may read, and never printed, logged or passed on a command line.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use signed_note::{
    Note, Signature, Signer, StandardSigner, StandardVerifier, Verifier, VerifierList,
};

pub const PRIVATE_KEY_FILE: &str = "pinhole.key";
pub const PUBLIC_KEY_FILE: &str = "pinhole.pub";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} is not a {what} (made by `pinhole trail keygen`)")]
    Format { path: PathBuf, what: &'static str },
    #[error("{path} may be read by others (mode {mode:o}): a signing key must be its owner's alone (chmod 600)")]
    Exposed { path: PathBuf, mode: u32 },
    #[error("{0} is not a valid key name (no spaces or '+')")]
    Name(String),
}

/// The key that signs checkpoints.
#[derive(Clone)]
pub struct SigningKey(StandardSigner);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.0.name())
    }
}

impl SigningKey {
    /// Reads a private key file, refusing one that others may read.
    pub fn load(path: &Path) -> Result<SigningKey, KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_owned(),
            source,
        };
        let mode = fs::metadata(path).map_err(io)?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(KeyError::Exposed {
                path: path.to_owned(),
                mode: mode & 0o777,
            });
        }
        let text = fs::read_to_string(path).map_err(io)?;
        StandardSigner::new(text.trim())
            .map(SigningKey)
            .map_err(|_| KeyError::Format {
                path: path.to_owned(),
                what: "private signing key",
            })
    }

    pub fn name(&self) -> &str {
        self.0.name()
    }

    /// `text` as a signed note.
    pub fn sign(&self, text: &[u8]) -> Vec<u8> {
        let mut note = Note::new(text, &[]).expect("a checkpoint is a valid note text");
        note.add_sigs(&[&self.0 as &dyn Signer])
            .expect("an Ed25519 key with a valid name signs");
        note.to_bytes()
    }
}

/// The public key a verifier is given.
pub struct VerifyingKey {
    list: VerifierList,
    name: String,
    id: u32,
}

impl VerifyingKey {
    pub fn load(path: &Path) -> Result<VerifyingKey, KeyError> {
        let text = fs::read_to_string(path).map_err(|source| KeyError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(text.trim()).ok_or_else(|| KeyError::Format {
            path: path.to_owned(),
            what: "public key",
        })
    }

    pub fn parse(text: &str) -> Option<VerifyingKey> {
        let v = StandardVerifier::new(text).ok()?;
        let (name, id) = (v.name().to_owned(), v.key_id());
        Some(VerifyingKey {
            list: VerifierList::new(vec![Box::new(v)]),
            name,
            id,
        })
    }

    /// The key as `<name>+<id>`, for messages.
    pub fn describe(&self) -> String {
        format!("{}+{:08x}", self.name, self.id)
    }

    /// The text of `note` if this key signed it, else why not.
    pub fn open(&self, note: &[u8]) -> Result<Vec<u8>, String> {
        let note = Note::from_bytes(note).map_err(|e| format!("not a signed note ({e})"))?;
        match note.verify(&self.list) {
            Ok(_) => Ok(note.text().to_vec()),
            Err(signed_note::NoteError::UnverifiedNote) => Err(format!(
                "not signed by the key {} (signed by {})",
                self.describe(),
                signers(&note)
            )),
            Err(e) => Err(format!("its signature does not verify ({e})")),
        }
    }
}

/// Who signed `note`, as `<name>+<id>` each.
fn signers(note: &Note) -> String {
    let text = String::from_utf8_lossy(&note.to_bytes()).into_owned();
    let names: Vec<String> = text
        .lines()
        .filter_map(|l| Signature::from_bytes(l.as_bytes()).ok())
        .map(|s| format!("{}+{:08x}", s.name(), s.id()))
        .collect();
    match names.is_empty() {
        true => "nobody".into(),
        false => names.join(", "),
    }
}

/// Makes a key pair in `dir` named `name`: `pinhole.key` (created 0600, never
/// overwritten) and `pinhole.pub`. Returns both paths.
pub fn generate(dir: &Path, name: &str) -> Result<(PathBuf, PathBuf), KeyError> {
    if !signed_note::is_key_name_valid(name) {
        return Err(KeyError::Name(name.to_owned()));
    }
    let (private, public) = signed_note::generate_key(&mut rand_core::OsRng, name);
    let key = dir.join(PRIVATE_KEY_FILE);
    let public_path = dir.join(PUBLIC_KEY_FILE);
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| KeyError::Io { path, source }
    };
    fs::create_dir_all(dir).map_err(io(dir))?;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&key)
        .map_err(io(&key))?;
    f.write_all(format!("{private}\n").as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(io(&key))?;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&public_path)
        .and_then(|mut f| f.write_all(format!("{public}\n").as_bytes()))
        .map_err(io(&public_path))?;
    Ok((key, public_path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_pair_signs_and_verifies_and_another_key_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let (key, public) = generate(dir.path(), "pinhole.test/a").unwrap();
        assert_eq!(
            fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let signer = SigningKey::load(&key).unwrap();
        assert!(!format!("{signer:?}").contains("PRIVATE"));
        let note = signer.sign(b"pinhole/x\n1\nAAAA\n");
        let verifier = VerifyingKey::load(&public).unwrap();
        assert_eq!(verifier.open(&note).unwrap(), b"pinhole/x\n1\nAAAA\n");
        let other = tempfile::tempdir().unwrap();
        let (_, other_public) = generate(other.path(), "pinhole.test/b").unwrap();
        let err = VerifyingKey::load(&other_public)
            .unwrap()
            .open(&note)
            .unwrap_err();
        assert!(err.contains("signed by pinhole.test/a"), "{err}");
        // Never overwritten.
        assert!(generate(dir.path(), "pinhole.test/a").is_err());
    }

    #[test]
    fn a_key_others_may_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (key, _) = generate(dir.path(), "pinhole.test/c").unwrap();
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        let err = SigningKey::load(&key).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }
}
