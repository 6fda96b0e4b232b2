//! Examples live in `examples/`; run them with `cargo run -p bpg-examples --example NAME`.
