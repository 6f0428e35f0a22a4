//! The `baton` binary: parse the command line and hand over to [`baton::cli`].

fn main() -> std::process::ExitCode {
    baton::cli::main()
}
