//! Per-application network profiles learned from the recorded dataset (filled by the analyzer issue).
