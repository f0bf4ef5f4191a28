//! No input file may crash pinhole. The Parquet decoder can panic on crafted input
//! (seen with fuzzed files); each file's decoding runs under `decode_guarded`, which
//! turns such a panic into that file's error, and keeps its message off stderr.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::Once;

use crate::error::AnalyzeError;

thread_local! {
    /// Set while this thread decodes a file: its panics are reported as the file's error.
    static DECODING: Cell<bool> = const { Cell::new(false) };
    /// Where the last guarded panic happened, for the error (and a bug report upstream).
    static LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Chains a hook that stays quiet for guarded panics and prints every other one as before.
fn install_quiet_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if DECODING.with(Cell::get) {
                let at = info
                    .location()
                    .map(|l| format!("{}:{}", crate_path(l.file()), l.line()));
                LOCATION.with(|l| *l.borrow_mut() = at);
            } else {
                previous(info);
            }
        }));
    });
}

/// `parquet-60.1.0/src/...` rather than the whole cargo registry path.
fn crate_path(file: &str) -> &str {
    match file.split_once("/registry/src/") {
        Some((_, rest)) => rest.split_once('/').map_or(rest, |(_, r)| r),
        None => file,
    }
}

fn message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Runs `decode` on `path`'s contents; a panic inside becomes `AnalyzeError::Corrupt`.
pub fn decode_guarded<T>(
    path: &Path,
    decode: impl FnOnce() -> Result<T, AnalyzeError>,
) -> Result<T, AnalyzeError> {
    install_quiet_hook();
    let was = DECODING.with(|d| d.replace(true));
    // The closure's state is dropped with the panic: nothing half-updated is used after.
    let result = panic::catch_unwind(AssertUnwindSafe(decode));
    DECODING.with(|d| d.set(was));
    result.unwrap_or_else(|payload| {
        let at = LOCATION.with(|l| l.borrow_mut().take());
        let at = at.map(|a| format!(" at {a}")).unwrap_or_default();
        Err(AnalyzeError::corrupt(
            path,
            format!(
                "the Parquet decoder failed on it: {}{at}",
                message(&*payload)
            ),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_the_files_error() {
        let r: Result<(), _> =
            decode_guarded(Path::new("/x.parquet"), || panic!("index 7 out of range"));
        let e = r.unwrap_err().to_string();
        assert!(
            e.contains("/x.parquet") && e.contains("index 7 out of range"),
            "{e}"
        );
        assert_eq!(decode_guarded(Path::new("/y"), || Ok(3)).unwrap(), 3);
        assert!(!DECODING.with(Cell::get));
    }
}
