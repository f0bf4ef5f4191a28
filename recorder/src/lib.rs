//! pinhole's recorder library: the event model, the dataset's Arrow schema, and the
//! crash-safe Parquet sink. It has no libbpf and needs no root, so it is tested alone.

pub mod batch;
pub mod compact;
pub mod conform;
pub mod dns;
pub mod error;
pub mod event;
pub mod evidence;
pub mod file_digest;
mod frames;
pub mod layout;
mod parquet_file;
pub mod printable;
pub mod publish_lock;
pub mod readback;
pub mod regular;
pub mod retention;
pub mod schema;
pub mod sink;
mod staging;
pub mod synth;

pub use batch::BatchBuilder;
pub use error::SinkError;
pub use event::{Event, ExeStatus, Hook, Protocol, Verdict};
pub use parquet_file::Codec;
pub use sink::{DiskFullAction, RecoveryReport, Sink, SinkConfig, SinkStats};
