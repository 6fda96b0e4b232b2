//! The file formats a [`SparkJob`](crate::SparkJob) is read from and rendered to.
//!
//! - [`bpg`]: BPG's `SubmitApplicationRequest` wire types.

pub mod bpg;
