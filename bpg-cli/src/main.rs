//! The `bpg` command line (filled by the CLI issue).

fn main() {
    eprintln!("bpg: no commands yet");
    std::process::exit(2);
}
