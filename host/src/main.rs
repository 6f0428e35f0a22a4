//! The `baton` binary: parse the command line and hand over to [`baton::cli`].

/// mimalloc rather than the system allocator: a host allocates and frees many small buffers
/// (JSON, events, records) across threads, where glibc's malloc spent a fifth of the host's
/// CPU under load in `baton bench`'s profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    baton::cli::main()
}
