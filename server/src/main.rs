use clap::Parser;

/// mimalloc rather than glibc's allocator: at 10,000 proxies glibc's free lists (coalescing
/// and consolidating the buffers each connection takes and gives back) were a third of the
/// machine's CPU during a commit; with mimalloc the commit took about 0.8 CPU-s instead of
/// 1.06 (bench/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Set before `main` (a constructor), so before the first allocation reserves an arena:
/// arenas are committed as they are used, not all at once, so memory given back leaves the
/// resident set. At 10,000 proxies eager commit held 56 KB per proxy, lazy 44 (glibc 49).
#[allow(unsafe_code)]
#[used]
#[unsafe(link_section = ".init_array")]
static ALLOCATOR_OPTIONS: extern "C" fn() = commit_lazily;

extern "C" fn commit_lazily() {
    /// mimalloc 3's `mi_option_arena_eager_commit` (the -sys crate names only v2's options).
    const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
    // SAFETY: sets one of mimalloc's options; no other thread exists yet.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0)
    }
}

fn main() {
    let cli = trellis_server::cli::Cli::parse();
    let run = tokio::runtime::Runtime::new()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(trellis_server::cli::run(cli)));
    match run {
        Ok(code) => std::process::exit(code),
        // The causes on one line, never a backtrace: the message is for the operator.
        Err(e) => {
            eprintln!("trellis: {e:#}");
            std::process::exit(1)
        }
    }
}
