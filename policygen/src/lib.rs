//! Per-binary allow policies generated from profiles and replayed against recorded traffic (filled by the policy generator issue).
